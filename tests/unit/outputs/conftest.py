"""Shared helpers of the outputs tests."""

from __future__ import annotations

import numpy as np

DIM = 16


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)

"""Shared helpers of the selection tests: unit vectors, candidates, a reference k-center."""

from __future__ import annotations

import numpy as np

from winnow.records import Candidates


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_candidates(
    embedding: np.ndarray,
    *,
    keys: list[str] | None = None,
    frames: list[int] | None = None,
    hashes: list[str] | None = None,
    **meta: np.ndarray,
) -> Candidates:
    n = len(embedding)
    keys = keys or [f"img-{i:04d}.jpg" for i in range(n)]
    frames = frames if frames is not None else [0] * n
    cols = {
        "sample_id": np.array([f"id-{i}" for i in range(n)], dtype=object),
        "key": np.array(keys, dtype=object),
        "fingerprint": np.array(["mtime:1:1"] * n, dtype=object),
        "content_hash": np.array(hashes or [f"h{i}" for i in range(n)], dtype=object),
        "frame_index": np.asarray(frames, dtype=np.int64),
        "pts_seconds": np.zeros(n),
        "width": np.full(n, 64, np.int32),
        "height": np.full(n, 64, np.int32),
        "brightness": np.full(n, 0.5, np.float32),
        "contrast": np.full(n, 0.2, np.float32),
        "sharpness": np.full(n, 10.0, np.float32),
    }
    cols.update({k: np.asarray(v) for k, v in meta.items()})
    return Candidates(
        **cols, embedding=np.asarray(embedding, np.float16), run_id=np.full(n, "", object)
    )


def reference_kcenter(x: np.ndarray, existing: np.ndarray | None, k: int) -> tuple[list, list]:
    """Plain float64 greedy k-center: full distances, argmax with ties to the lowest index."""
    x = x.astype(np.float64)
    if existing is None or len(existing) == 0:
        d = np.full(len(x), np.inf)
    else:
        e = existing.astype(np.float64)
        d = np.sqrt(((x[:, None, :] - e[None, :, :]) ** 2).sum(-1)).min(1)
    picks, dists = [], []
    for _ in range(k):
        i = int(np.argmax(d))
        picks.append(i)
        dists.append(d[i])
        d = np.minimum(d, np.sqrt(((x - x[i]) ** 2).sum(1)))
        d[picks] = -1
    return picks, dists


CPU = "cpu"

"""Tiled exact distances and the coverage radius."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.unit.selection.conftest import CPU, unit
from winnow import selection
from winnow.selection import _distances


def test_nearest_distances_and_coverage_radius_agree_with_brute_force(monkeypatch):
    monkeypatch.setattr(_distances, "_BLOCK_COLS", 7)  # several tiles of centers, too
    x, c = unit(53, 12, 9), unit(31, 12, 10)
    brute = np.sqrt(((x[:, None] - c[None]) ** 2).sum(-1)).min(1)
    got = selection.nearest_distances(x, c, device=CPU, block_rows=8)
    np.testing.assert_allclose(got, brute, atol=1e-5)
    assert selection.coverage_radius(x, c, device=CPU, block_rows=5) == pytest.approx(
        brute.max(), abs=1e-5
    )
    assert math.isinf(selection.coverage_radius(x, np.zeros((0, 12)), device=CPU))
    assert selection.coverage_radius(np.zeros((0, 12)), c, device=CPU) == 0.0

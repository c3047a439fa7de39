"""k-center greedy: picks equal a plain reference, the float16 filter changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.unit.selection.conftest import CPU, reference_kcenter, unit
from winnow import selection
from winnow.device import resolve_device
from winnow.errors import ConfigError
from winnow.selection import _kcenter


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("with_existing", [False, True])
@pytest.mark.parametrize("use_filter", [False, True])
def test_kcenter_picks_equal_a_plain_numpy_reference(seed, with_existing, use_filter):
    x = np.random.default_rng(seed).standard_normal((300, 24)).astype(np.float32)
    existing = (
        np.random.default_rng(seed + 100).standard_normal((40, 24)) if with_existing else None
    )
    want, want_d = reference_kcenter(x, existing, 60)
    got, got_d = _kcenter._kcenter_greedy(
        x,
        existing,
        k=60,
        min_distance=None,
        device=resolve_device(CPU),
        use_filter=use_filter,
    )
    assert got.tolist() == want
    np.testing.assert_allclose(got_d, want_d, atol=1e-4)


def test_float16_filter_gives_the_same_picks_as_the_exact_path_on_unit_float16_data():
    centers = unit(20, 64, 0)
    rng = np.random.default_rng(1)
    x = centers[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 64)) * 0.03
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    x[2500:2510] = x[7]  # exact duplicates
    existing = x[:300].astype(np.float32)
    dev = resolve_device(CPU)
    fast = _kcenter._kcenter_greedy(
        x, existing, k=400, min_distance=None, device=dev, use_filter=True
    )
    slow = _kcenter._kcenter_greedy(
        x, existing, k=400, min_distance=None, device=dev, use_filter=False
    )
    assert fast[0].tolist() == slow[0].tolist()
    np.testing.assert_array_equal(fast[1], slow[1])


def test_picks_are_distinct_in_range_and_exhaust_the_candidates():
    x = unit(50, 8, 3)
    x[10] = x[3]  # a duplicate must still be picked exactly once
    picks, dists = selection.kcenter_greedy(x, k=500, device=CPU)
    assert sorted(picks.tolist()) == list(range(50))
    assert np.all(np.diff(dists[1:]) <= 1e-6)  # farthest-first: distances never grow


def test_first_pick_is_the_candidate_farthest_from_the_dataset():
    x, existing = unit(200, 16, 4), unit(30, 16, 5)
    picks, dists = selection.kcenter_greedy(x, existing=existing, k=5, device=CPU)
    nearest = selection.nearest_distances(x, existing, device=CPU)
    assert picks[0] == int(np.argmax(nearest))
    assert dists[0] == pytest.approx(nearest.max(), abs=1e-5)


def test_without_dataset_the_first_pick_is_row_zero_at_infinite_distance():
    picks, dists = selection.kcenter_greedy(unit(20, 4, 6), k=3, device=CPU)
    assert picks[0] == 0 and math.isinf(dists[0]) and np.isfinite(dists[1:]).all()


def test_ties_go_to_the_lowest_index():
    x = np.zeros((6, 4), np.float32)
    x[:, 0] = [0.0, 1.0, -1.0, 1.0, -1.0, 0.5]  # 1, 2, 3, 4 tie at distance 1 from the dataset
    picks, _ = selection.kcenter_greedy(x, existing=np.zeros((1, 4)), k=3, device=CPU)
    assert picks.tolist() == [1, 2, 5]


def test_min_distance_stops_before_a_closer_pick():
    x, existing = unit(300, 8, 7), unit(20, 8, 8)
    picks, dists = selection.kcenter_greedy(x, existing=existing, min_distance=0.6, device=CPU)
    assert len(picks) and (dists >= 0.6).all()
    remaining = selection.nearest_distances(x, np.vstack([existing, x[picks]]), device=CPU)
    assert remaining.max() < 0.6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": np.zeros(5)}, "2-D"),
        ({"x": np.full((3, 2), np.nan)}, "NaN or infinite"),
        ({"existing": np.zeros((2, 3))}, "3 dims but the candidates have 4"),
        ({"k": -1}, "k must be an integer >= 0"),
        ({"min_distance": -0.5}, "min_distance must be"),
        ({"device": "tpu"}, "use 'auto', 'cpu'"),
        ({"block_rows": 0}, "block_rows"),
    ],
)
def test_kcenter_rejects_bad_arguments(kwargs, match):
    args = {"x": unit(5, 4, 0), **kwargs}
    with pytest.raises(ConfigError, match=match):
        selection.kcenter_greedy(**args)

"""k-center greedy: picks equal a plain reference, the float16 filter changes nothing."""

from __future__ import annotations

import logging
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


def _near_tie_rows(filler: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Candidates where a correct pick depends on the float16 filter's error margin.

    The dataset is the origin; row 0, `p`, is the farthest (norm 1, so the filter's scale is 1)
    and is picked first. Row 1, `b`, is a hair closer to `p` than to the origin (its squared
    distance drops by 2·eta when `p` is picked), but its float16 dot product with `p` is below
    the "closer to p" threshold by far more than eta (its first four coordinates round down in
    float16). Row 2, `c`, has squared distance |b|² - eta to the dataset. The exact greedy picks
    `c` second; a greedy that trusts the float16 screen without its margin never lowers `b`'s
    distance and picks `b`. The filler rows sit near the origin and make the filter worth using.
    """
    u, eta = 2.0**-12, 1e-5  # u: float16 spacing in [0.25, 0.5); eta: far below float16 rounding
    dim, r2 = 8, 0.6
    x = np.zeros((3 + filler, dim))
    x[0, :4] = 0.5
    head = [0.25 + 0.45 * u] * 3 + [0.25 - 1.35 * u + 2 * eta]  # sums to 1 + 2·eta
    x[1, :4] = head
    x[1, 4] = math.sqrt(r2 - sum(h * h for h in head))
    x[2, :4] = -0.25
    x[2, 5] = math.sqrt(r2 - eta - 0.25)
    rng = np.random.default_rng(0)
    f = rng.standard_normal((filler, dim))
    x[3:] = f / np.linalg.norm(f, axis=1, keepdims=True) * rng.uniform(0.05, 0.3, (filler, 1))
    return x.astype(np.float32), np.zeros((1, dim), np.float32), eta


def test_float16_filter_keeps_exact_picks_on_ties_closer_than_float16_rounding(caplog):
    x, existing, eta = _near_tie_rows(filler=_kcenter._FILTER_MIN_ROWS)
    p, b, c = x[:3].astype(np.float64)
    # The data is as designed: b gets closer to p than to the dataset by 2·eta, c lies between.
    assert (b @ b) - ((b - p) @ (b - p)) == pytest.approx(2 * eta, rel=1e-2)
    assert (b - p) @ (b - p) < (c @ c) < (b @ b) < (p @ p) == 1.0
    # ...and the float16 screen alone would say b does not get closer (margin needed).
    dot16 = float(x[1].astype(np.float16).astype(np.float64) @ x[0].astype(np.float16))
    assert dot16 < 0.5 - 1e-4 < 0.5 < b @ p

    want, _ = reference_kcenter(x, existing, 20)
    assert want[:2] == [0, 2]
    with caplog.at_level(logging.DEBUG, logger="winnow.selection._kcenter"):
        got, _ = selection.kcenter_greedy(x, existing=existing, k=20, device=CPU)
    (phases,) = [r.getMessage() for r in caplog.records if "k-center:" in r.getMessage()]
    assert "float16 filter on" in phases  # the screen really ran (not the exact fallback)
    assert got.tolist() == want


def _filter_state(caplog) -> str:
    (phases,) = [r.getMessage() for r in caplog.records if "k-center:" in r.getMessage()]
    return "on" if "float16 filter on" in phases else "off"


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_float16_filter_is_on_from_its_row_threshold_at_any_scale(caplog, scale):
    n = _kcenter._FILTER_MIN_ROWS
    x = np.random.default_rng(7).standard_normal((n, 32)) * scale
    x[5] = 0.0  # a zero row: its error bound is the absolute term alone
    x[9] *= 1e-6
    x = x.astype(np.float32)
    existing = (np.random.default_rng(8).standard_normal((3, 32)) * scale).astype(np.float32)
    want, _ = reference_kcenter(x, existing, 30)
    states = []
    for rows in (n, n - 1):  # on at the threshold, off just below it
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="winnow.selection._kcenter"):
            got, _ = selection.kcenter_greedy(x[:rows], existing=existing, k=30, device=CPU)
        states.append(_filter_state(caplog))
        if rows == n:
            assert got.tolist() == want
    assert states == ["on", "off"]


def test_a_pick_exactly_at_min_distance_or_the_near_duplicate_distance_is_made():
    import torch

    x = np.array([[1.0, 0.0], [0.0, 0.5]], np.float32)  # 1 and exactly 0.5 from the origin
    picks, dists = selection.kcenter_greedy(
        x, existing=np.zeros((1, 2)), min_distance=0.5, device=CPU
    )
    assert picks.tolist() == [0, 1] and dists.tolist() == [1.0, 0.5]
    xt = torch.from_numpy(x)
    cover = _kcenter._Cover(xt, (xt * xt).sum(1))
    got = _kcenter._greedy_farthest(cover, xt, k=None, min_distance=None, exclude_below=0.5)
    assert got == ([0, 1], [1.0, 0.5], "exhausted")  # only rows *closer* than 0.5 are excluded

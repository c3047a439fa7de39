"""Herding (the default's kernel coverage) and the degenerate cases of coverage's δ-balls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.selection.conftest import CPU, make_candidates, unit
from tests.unit.selection.test_coverage import blobs
from winnow import selection
from winnow.selection import SelectionConfig
from winnow.selection import _herding as herding_mod
from winnow.selection._herding import HerdingState, auto_bandwidth

DEFAULT = None  # SelectionConfig's own strategies


def choose(x, data, k, strategies=DEFAULT, **extra):
    kw = {} if strategies is None else {"strategies": strategies}
    config = SelectionConfig(n_samples=k, **kw, **extra)
    return selection.select(make_candidates(x), dataset=data, config=config, device=CPU)


def reference_gains(x, data, picks, sigma, rows):
    """Brute-force float64 facility-location gains over the evaluation rows."""
    x = x.astype(np.float64)
    e = x[rows]
    k = np.exp(-(((x[:, None] - e[None]) ** 2).sum(-1)) / (2 * sigma * sigma))
    best = np.zeros(len(rows))
    if len(data):
        dd = ((e[:, None] - data.astype(np.float64)[None]) ** 2).sum(-1).min(1)
        best = np.exp(-dd / (2 * sigma * sigma))
    for p in picks:
        best = np.maximum(best, k[p])
    return np.maximum(k - best[None], 0).sum(1) * (len(x) / len(rows))


@pytest.mark.parametrize("eval_rows", [None, 37])
def test_herding_gains_stay_exact_as_picks_happen(monkeypatch, eval_rows):
    if eval_rows is not None:  # the sampled evaluation rows of a large run, made small
        monkeypatch.setattr(herding_mod, "EVAL_ROWS", eval_rows)
    x, data = blobs(20, 4, 8, 3), blobs(4, 2, 8, 4)
    xt = torch.from_numpy(x)
    d0 = torch.cdist(xt.double(), torch.from_numpy(data).double()).min(1).values ** 2
    state = HerdingState(xt, d0.float(), sigma=0.3, seed=5)
    rows = herding_mod._eval_rows(len(x), 5)
    assert len(rows) == (eval_rows or len(x))
    picks = []
    for p in (7, 41, 2, 66):
        np.testing.assert_allclose(
            state.values(), reference_gains(x, data, picks, 0.3, rows), rtol=1e-5, atol=1e-4
        )
        state.picked(p)
        picks.append(p)
    np.testing.assert_allclose(
        state.values(), reference_gains(x, data, picks, 0.3, rows), rtol=1e-5, atol=1e-4
    )


def test_auto_bandwidth_follows_the_budget_and_never_collapses():
    x = torch.from_numpy(blobs(50, 6, 16, 8))
    cold = torch.full((len(x),), float("inf"))
    wide = auto_bandwidth(x, cold, 3, scale=1.0, seed=0)
    narrow = auto_bandwidth(x, cold, 60, scale=1.0, seed=0)
    assert narrow < wide  # more picks represent the candidates at a finer scale
    assert auto_bandwidth(x, cold, 3, scale=2.0, seed=0) == pytest.approx(2 * wide)
    same = torch.ones((10, 4)) / 2  # identical candidates: no zero bandwidth
    assert auto_bandwidth(same, torch.full((10,), float("inf")), 3, scale=2.0, seed=0) == 1e-6
    r = choose(
        np.ones((10, 4), np.float32) / 2,
        np.zeros((0, 4), np.float32),
        3,
        remove_exact_duplicates=False,
    )
    assert len(r.picks) == 3


def test_the_default_picks_dense_centres_first_then_fills_gaps_with_a_dataset():
    # 3 tight blobs of 40 and 3 stray points: the first 3 picks are one per blob (the
    # strays represent nothing); k-center would take the strays first
    rng = np.random.default_rng(0)
    x = np.r_[blobs(40, 3, 16, 11, noise=0.05), unit(3, 16, 99)]
    x = x[rng.permutation(len(x))]
    blob_of = _blob_labels(x, 3)
    empty = np.zeros((0, 16), np.float32)
    r = choose(x, empty, 3)
    assert sorted(blob_of[r.indices]) == [0, 1, 2]
    assert all(p.reason.startswith("herding: represents") for p in r.picks)
    kc = choose(x, empty, 3, ["diversity"])
    assert (blob_of[kc.indices] == -1).any()  # k-center: an outlier
    # with two blobs in the dataset, the first pick is in the third
    held = x[np.isin(blob_of, [0, 1])][:5]
    r = choose(x, held, 1)
    assert blob_of[r.indices[0]] == 2


def _blob_labels(x, n_blobs):
    centers = unit(n_blobs, x.shape[1], 12)
    sim = x @ centers.T
    return np.where(sim.max(1) > 0.9, sim.argmax(1), -1)


def test_herding_size_rule_runs_k_center_above_max_candidates():
    x, data = blobs(30, 4, 8, 70), blobs(5, 2, 8, 71)
    big = choose(x, data, 10, [{"type": "herding", "max_candidates": 119}])
    assert all(
        p.reason.startswith("k-center (herding is for <= 119 candidates)") for p in big.picks
    )
    kc = choose(x, data, 10, ["diversity"])
    assert big.indices.tolist() == kc.indices.tolist()
    small = choose(x, data, 10, [{"type": "herding", "max_candidates": 120}])
    assert small.picks[0].reason.startswith("herding")


def test_singleton_balls_rank_by_distance_like_k_center():
    # δ far below every pairwise distance: every ball holds only itself, so counts are all 1
    # and coverage must not fall back to input order
    x = blobs(30, 4, 16, 21)
    for data in (np.zeros((0, 16), np.float32), blobs(3, 2, 16, 22)):
        cov = choose(x, data, 8, [{"type": "coverage", "delta": 1e-4, "when_covered": "farthest"}])
        kc = choose(x, data, 8, ["diversity"])
        assert cov.indices.tolist() == kc.indices.tolist()
        assert "too sparse to rank" in cov.picks[1].reason


@pytest.fixture(scope="module")
def two_short_videos(tmp_path_factory):
    """Two 60-frame street videos (PyAV), every frame embedded by a random-weight resnet18."""
    from winnow import demo
    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.engine import embed_keys
    from winnow.media import FrameOptions
    from winnow.storage import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("two-videos"))
    keys = demo.write_demo_files(store, n_videos=2, n_images=0, frames_per_video=60)
    torch.manual_seed(0)
    embedder = load_embedder(
        EmbeddingOptions(weights="none", input_size=64, device="cpu", batch_size=32)
    )
    parts = [embed_keys([k], source=store, frames=FrameOptions(), embedder=embedder) for k in keys]
    video = np.repeat([0, 1], [len(p) for p in parts])
    return np.concatenate(parts).astype(np.float32), video


def _nearest_other(x):
    d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0))
    np.fill_diagonal(d, np.inf)
    return float(d.min(1).mean())


def test_two_short_videos_the_picks_spread_over_both_and_beyond_random(two_short_videos):
    """The issue's case: 120 frames of two videos, 5 picks (coverage took 5 of one video)."""
    x, video = two_short_videos
    assert len(x) == 120
    empty = np.zeros((0, x.shape[1]), np.float32)
    rng = np.random.default_rng(0)
    random = np.mean([_nearest_other(x[rng.choice(120, 5, replace=False)]) for _ in range(20)])
    for strategies in (DEFAULT, [{"type": "coverage", "when_covered": "farthest"}]):
        r = choose(x, empty, 5, strategies)
        assert set(video[r.indices]) == {0, 1}, strategies
        assert _nearest_other(x[r.indices]) >= random, strategies
        # no two picks are neighbouring frames of one video
        frames = sorted(zip(video[r.indices], r.indices, strict=True))
        pairs = zip(frames, frames[1:], strict=False)
        assert all(b - a > 1 for (va, a), (vb, b) in pairs if va == vb)

"""Coverage (ProbCover), TypiClust per-cluster typicality and the k-center local search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.unit.selection.conftest import CPU, make_candidates, unit
from winnow import selection
from winnow.selection import SelectionConfig
from winnow.selection import _coverage as coverage_mod
from winnow.selection._coverage import _auto_delta, _BallGraph


def blobs(n_per: int, n_blobs: int, dim: int, seed: int, noise: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = unit(n_blobs, dim, seed + 1)
    x = np.repeat(centers, n_per, axis=0) + rng.standard_normal((n_per * n_blobs, dim)) * noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def reference_probcover(x, data, delta, k):
    """Plain float64 ProbCover: full distance matrices; ties to the row farthest from the
    dataset and the picks, then to the lowest row."""
    x = x.astype(np.float64)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    ball = d <= delta
    covered = np.zeros(len(x), bool)
    held = np.full(len(x), np.inf)
    if len(data):
        held = np.sqrt(((x[:, None] - data.astype(np.float64)[None]) ** 2).sum(-1)).min(1)
        covered = held <= delta
    picks, taken = [], np.zeros(len(x), bool)
    for _ in range(k):
        count = (ball & ~covered[None]).sum(1)
        count[taken] = -1
        if count.max() <= 0:
            break
        ties = np.flatnonzero(count == count.max())
        i = int(ties[np.argmax(held[ties])])
        picks.append(i)
        taken[i] = True
        covered |= ball[i]
        held = np.minimum(held, d[i])
    return picks


def graph(x, data=None, *, delta, max_degree=10_000, block_rows=None):
    xt = torch.from_numpy(x)
    if data is None or len(data) == 0:
        d0 = torch.full((len(x),), float("inf"))
    else:
        d0 = torch.cdist(xt.double(), torch.from_numpy(data).double()).min(1).values.float() ** 2
    return _BallGraph(xt, d0, delta=delta, max_degree=max_degree, block_rows=block_rows)


def test_coverage_equals_a_plain_probcover_with_the_dataset_covering_first():
    x, data = blobs(30, 6, 16, 0), blobs(5, 2, 16, 0)
    config = SelectionConfig(n_samples=8, strategies=[{"type": "coverage", "delta": 0.3}])
    result = selection.select(make_candidates(x), dataset=data, config=config, device=CPU)
    expected = reference_probcover(x.astype(np.float16).astype(np.float32), data, 0.3, 8)
    assert result.indices.tolist() == expected
    assert result.delta == 0.3
    assert all(p.reason.startswith("coverage: ") for p in result.picks)


def test_the_dataset_balls_are_covered_before_any_pick():
    x, data = blobs(20, 4, 8, 3), blobs(3, 1, 8, 3)
    g = graph(x, data, delta=0.4)
    dd = np.sqrt(((x[:, None] - data[None]) ** 2).sum(-1)).min(1)
    assert g.covered.tolist() == (dd <= 0.4).tolist()
    assert g.covered.any() and not g.covered.all()
    # counts are of uncovered units only: a unit's count is its ball minus the covered part
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    assert g.count.tolist() == ((d <= 0.4) & ~g.covered[None]).sum(1).tolist()


def test_covered_sets_grow_monotonically_and_counts_never_rise():
    x = blobs(25, 5, 12, 4)
    g = graph(x, delta=0.35)
    before_cov, before_count = g.covered.copy(), g.count.copy()
    for i in [0, 30, 60, 61, 99, 124]:
        g.cover_from(i)
        assert (g.covered >= before_cov).all() and g.covered[i]
        assert (g.count <= before_count).all()
        uncovered = ~g.covered
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        assert g.count.tolist() == ((d <= 0.35) & uncovered[None]).sum(1).tolist()
        before_cov, before_count = g.covered.copy(), g.count.copy()


def test_blockwise_and_one_block_graphs_and_picks_are_identical(monkeypatch):
    x = blobs(40, 5, 16, 5)
    one, blocks = graph(x, delta=0.3), graph(x, delta=0.3, block_rows=7)
    assert np.array_equal(one.in_src, blocks.in_src) and np.array_equal(one.in_ptr, blocks.in_ptr)
    assert np.array_equal(one.count, blocks.count)
    config = SelectionConfig(n_samples=12, strategies=["coverage"])
    cands = make_candidates(x)
    whole = selection.select(cands, dataset=np.zeros((0, 16)), config=config, device=CPU)
    monkeypatch.setattr(coverage_mod, "_BLOCK_ELEMENTS", 300)  # 1-row blocks
    split = selection.select(cands, dataset=np.zeros((0, 16)), config=config, device=CPU)
    assert whole.indices.tolist() == split.indices.tolist() and whole.delta == split.delta


def test_same_seed_same_delta_and_picks():
    x = blobs(40, 6, 16, 6)
    cands = make_candidates(x)

    def run(seed):
        config = SelectionConfig(n_samples=10, seed=seed, strategies=["coverage"])
        return selection.select(cands, dataset=np.zeros((0, 16)), config=config, device=CPU)

    a, b = run(3), run(3)
    assert a.indices.tolist() == b.indices.tolist() and a.delta == b.delta
    assert 0 < a.delta <= 2


def test_automatic_delta_is_the_largest_with_95_percent_pure_pairs():
    x = blobs(50, 4, 32, 7, noise=0.05)
    delta = _auto_delta(torch.from_numpy(x), clusters=4, purity=0.95, seed=0)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    label = np.repeat(np.arange(4), 50)  # k-means finds the four blobs
    off = ~np.eye(len(x), dtype=bool)
    same = label[:, None] == label[None]

    def purity(r):
        inside = (d <= r) & off
        return (inside & same).sum() / inside.sum()

    assert d[same & off].max() <= delta  # whole clusters fit in a ball
    assert purity(delta) >= 0.95 > purity(delta + 0.02)


def test_everything_covered_stops_the_selection():
    x = blobs(10, 3, 8, 8, noise=0.05)
    config = SelectionConfig(n_samples=50, strategies=[{"type": "coverage", "delta": 0.5}])
    result = selection.select(make_candidates(x), dataset=np.zeros((0, 8)), config=config)
    assert result.stop_reason == "covered" and len(result.picks) == 3
    labels = {p.index // 10 for p in result.picks}
    assert labels == {0, 1, 2}  # one per blob
    onward = {"type": "coverage", "delta": 0.5, "when_covered": "farthest"}
    more = selection.select(
        make_candidates(x),
        dataset=np.zeros((0, 8)),
        config=SelectionConfig(n_samples=6, strategies=[onward]),
    )
    assert more.indices[:3].tolist() == result.indices.tolist()
    assert more.stop_reason == "n_samples" and len(more.picks) == 6
    # after full coverage the picks are k-center's: each the farthest from the centers so far
    assert [p.distance for p in more.picks[3:]] == sorted(
        [p.distance for p in more.picks[3:]], reverse=True
    )


def test_coverage_combines_with_thresholds_and_near_duplicates():
    x = blobs(20, 4, 8, 9)
    sharp = np.where(np.arange(80) < 40, 1.0, 20.0).astype(np.float32)
    config = SelectionConfig(
        n_samples=5,
        near_duplicate_distance=0.2,
        strategies=[
            {"type": "threshold", "column": "sharpness", "min": 10},
            {"type": "coverage", "delta": 0.3},
        ],
    )
    result = selection.select(
        make_candidates(x, sharpness=sharp), dataset=np.zeros((0, 8)), config=config, device=CPU
    )
    picked = result.indices
    assert (picked >= 40).all() and result.n_removed_thresholds == 40
    d = np.sqrt(((x[picked][:, None] - x[picked][None]) ** 2).sum(-1))
    assert (d[~np.eye(len(picked), dtype=bool)] >= 0.2 - 1e-3).all()


def test_the_degree_cap_bounds_the_edges():
    x = blobs(30, 2, 8, 10, noise=0.05)
    g = graph(x, delta=0.5, max_degree=5)
    assert g.edges == 60 * 5 and g.capped == 60 and g.count.max() == 5


def test_local_search_never_raises_the_radius_and_keeps_the_dataset_centers():
    x, data = unit(300, 8, 11), unit(20, 8, 12)
    for existing in (None, data):
        greedy, _ = selection.kcenter_greedy(x, existing=existing, k=15, device=CPU)
        refined, dists = selection.kcenter_greedy(
            x, existing=existing, k=15, device=CPU, local_search_rounds=50
        )
        again, _ = selection.kcenter_greedy(
            x, existing=existing, k=15, device=CPU, local_search_rounds=50
        )
        assert refined.tolist() == again.tolist()  # deterministic
        assert len(set(refined.tolist())) == 15
        centers = x[greedy] if existing is None else np.vstack([existing, x[greedy]])
        new = x[refined] if existing is None else np.vstack([existing, x[refined]])
        assert (
            selection.coverage_radius(x, new, device=CPU)
            <= selection.coverage_radius(x, centers, device=CPU) + 1e-6
        )
        assert len(dists) == 15 and np.isfinite(dists[1:]).all()


def test_local_search_through_select_reports_its_swaps_and_is_diversity_only():
    x = unit(200, 8, 13)
    config = SelectionConfig(
        n_samples=10, strategies=[{"type": "diversity", "local_search_rounds": 20}]
    )
    result = selection.select(make_candidates(x), dataset=unit(5, 8, 14), config=config)
    assert all("local search" in p.reason for p in result.picks)
    radius = selection.coverage_radius(
        x.astype(np.float16).astype(np.float32),
        np.vstack([unit(5, 8, 14), x[result.indices].astype(np.float16).astype(np.float32)]),
    )
    assert result.coverage_after == pytest.approx(radius, abs=1e-3)
    with pytest.raises(ValidationError, match="only ranking strategy"):
        SelectionConfig(strategies=[{"type": "diversity", "local_search_rounds": 5}, "random"])


def test_typiclust_picks_one_typical_sample_per_free_cluster_largest_first():
    sizes = [60, 40, 25, 10]
    rng = np.random.default_rng(15)
    centers = unit(4, 16, 16)
    x = np.vstack(
        [c + rng.standard_normal((s, 16)) * 0.05 for c, s in zip(centers, sizes, strict=True)]
    )
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    label = np.repeat(np.arange(4), sizes)
    config = SelectionConfig(n_samples=4, strategies=[{"type": "typicality", "per_cluster": True}])
    result = selection.select(make_candidates(x), dataset=np.zeros((0, 16)), config=config)
    assert label[result.indices].tolist() == [0, 1, 2, 3]
    # the first pick is the most typical member of the largest cluster (nearest its centre)
    members = np.flatnonzero(label == 0)
    d = np.sqrt(((x[members][:, None] - x[members][None]) ** 2).sum(-1))
    typical = members[np.argmin(np.sort(d, 1)[:, 1:21].mean(1))]
    assert result.indices[0] == typical
    # with a dataset sample in the largest cluster, that cluster is held: it comes last
    config3 = config.model_copy(update={"n_samples": 3})
    held = selection.select(make_candidates(x), dataset=centers[:1], config=config3)
    assert 0 not in label[held.indices].tolist()


def test_the_half_graph_is_the_exact_delta_ball_graph_capped_to_the_nearest():
    x = blobs(60, 4, 8, 21, noise=0.2)
    delta, k = 0.45, 12
    d = ((x.astype(np.float64)[:, None] - x.astype(np.float64)[None]) ** 2).sum(-1)
    for rows in (None, 5, 64):
        g = graph(x, delta=delta, max_degree=k, block_rows=rows)
        assert 0 < g.capped < len(x)
        for u in range(len(x)):
            ball = np.flatnonzero(d[u] <= delta * delta)
            if len(ball) > k:  # itself, then its nearest (ties: lowest index)
                order = np.lexsort((ball, d[u, ball]))
                ball = np.sort(np.r_[u, ball[order][ball[order] != u][: k - 1]])
            assert g.out_dst[g.out_ptr[u] : g.out_ptr[u + 1]].tolist() == ball.tolist()
            assert g.is_capped[u] == (int((d[u] <= delta * delta).sum()) > k)


def test_with_a_dataset_the_graph_holds_only_edges_into_uncovered_units():
    x = blobs(60, 4, 8, 21, noise=0.2)
    data = blobs(10, 2, 8, 22, noise=0.2)
    delta, k = 0.45, 6
    d = ((x.astype(np.float64)[:, None] - x.astype(np.float64)[None]) ** 2).sum(-1)
    dd = ((x.astype(np.float64)[:, None] - data.astype(np.float64)[None]) ** 2).sum(-1).min(1)
    open_ = dd > delta * delta
    assert 0 < open_.sum() < len(x)  # the units are mixed, so blocks straddle
    for rows in (None, 5, 64):  # one block, many (covered-only tiles skipped), a straddling one
        g = graph(x, data, delta=delta, max_degree=k, block_rows=rows)
        assert (g.covered == ~open_).all()
        assert 0 < g.capped < len(x)
        for u in range(len(x)):
            ball = np.flatnonzero((d[u] <= delta * delta) & open_)
            ball = ball[ball != u]
            held = len(ball)
            if held + 1 > k:  # itself, then its nearest uncovered (ties: lowest index)
                ball = ball[np.lexsort((ball, d[u, ball]))][: k - 1]
            ball = np.sort(np.r_[u, ball])
            assert g.out_dst[g.out_ptr[u] : g.out_ptr[u + 1]].tolist() == ball.tolist(), (rows, u)
            assert g.is_capped[u] == (held + 1 > k)
            assert g.count[u] == len(ball) - (not open_[u])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_coverage_greedy_gives_the_combined_greedys_picks(monkeypatch, seed):
    from winnow.selection import _select

    # 2,104 units: the k-center float16 filter is on, so capped balls come from its pass
    x = blobs(263, 8, 16, 30 + seed, noise=0.25)
    data = blobs(40, 3, 16, 40 + seed, noise=0.25)
    cands = make_candidates(x)
    settings = [
        ({"type": "coverage", "delta": 0.7, "max_degree": 8}, {}),
        (
            {"type": "coverage", "delta": 0.6, "max_degree": 8, "when_covered": "farthest"},
            {"near_duplicate_distance": 0.35},
        ),
        (
            {"type": "coverage", "delta": 0.6, "max_degree": 4, "strength": 2.0},
            {"min_distance": 0.3},
        ),
    ]
    if seed == 0:  # automatic δ (the slowest part)
        settings.append(({"type": "coverage", "max_degree": 16, "when_covered": "farthest"}, {}))
    for strategy, extra in settings:
        for dataset in (np.zeros((0, 16), np.float32), data):
            config = SelectionConfig(n_samples=120, seed=seed, strategies=[strategy], **extra)
            results = []
            for fast in (True, False):
                monkeypatch.setattr(_select, "_COVERAGE_FAST", fast)
                results.append(selection.select(cands, dataset=dataset, config=config, device=CPU))
            fast_r, combined = results
            assert fast_r.indices.tolist() == combined.indices.tolist(), (strategy, len(dataset))
            assert [p.distance for p in fast_r.picks] == [p.distance for p in combined.picks]
            assert [p.reason for p in fast_r.picks] == [p.reason for p in combined.picks]
            assert [p.score for p in fast_r.picks] == pytest.approx(
                [p.score for p in combined.picks], rel=1e-12
            )
            assert fast_r.stop_reason == combined.stop_reason
            assert fast_r.delta == combined.delta
            assert fast_r.coverage_after == combined.coverage_after
    # the degree cap was active in these runs
    g = graph(x, delta=0.7, max_degree=8)
    assert g.capped > 800


def test_the_size_rule_runs_coverage_as_k_center_above_max_candidates():
    x, data = blobs(30, 4, 8, 70), blobs(5, 2, 8, 71)
    cands = make_candidates(x)

    def run(strategy):
        config = SelectionConfig(n_samples=10, strategies=[strategy])
        return selection.select(cands, dataset=data, config=config, device=CPU)

    big = run({"type": "coverage", "max_candidates": 119})  # 120 eligible: too many
    kcenter = run("diversity")
    assert big.indices.tolist() == kcenter.indices.tolist() and big.delta is None
    assert all(p.reason.startswith("k-center (coverage is for <= 119 uncovered") for p in big.picks)
    small = run({"type": "coverage", "max_candidates": 120})
    assert small.delta is not None and small.picks[0].reason.startswith("coverage: ")
    assert SelectionConfig().strategies[0].max_candidates == 50_000  # the default's rule

    # The limit is on the candidates the dataset leaves uncovered (the graph's cost): a
    # dataset holding two of the four blobs leaves 60 of the 120.
    held = x[:60].copy()
    for limit, coverage in ((59, False), (60, True)):
        config = SelectionConfig(
            n_samples=10, strategies=[{"type": "coverage", "delta": 0.3, "max_candidates": limit}]
        )
        got = selection.select(cands, dataset=held, config=config, device=CPU)
        assert (got.delta is not None) == coverage, limit
        assert got.picks[0].reason.startswith("coverage: " if coverage else "k-center (coverage")
        assert all(int(i) >= 60 for i in got.indices)  # the picks fill the uncovered blobs


def test_a_unit_exactly_at_delta_from_the_dataset_is_covered():
    # Coordinates and δ exact in float16 and float32: every distance below is exact in float.
    e = np.eye(8, dtype=np.float32)
    data = e[:1]  # one dataset sample at e1
    at_delta = e[0] + 0.5 * e[1]  # exactly δ = 0.5 from it
    beyond = e[0] - 0.625 * e[1]  # 0.625 from it: not covered
    x = np.stack([at_delta, beyond])
    g = graph(x, data, delta=0.5)  # float32 nearest distances decide alone
    assert g.covered.tolist() == [True, False]
    assert g.count.tolist() == [0, 1]  # neither ball holds the other (1.125 apart)
    d0 = torch.from_numpy(np.array([0.25, 0.625**2], np.float32))
    checked = _BallGraph(torch.from_numpy(x), d0, delta=0.5, max_degree=10, dataset=data)
    assert checked.covered.tolist() == [True, False]  # border units checked in float64
    config = SelectionConfig(n_samples=5, strategies=[{"type": "coverage", "delta": 0.5}])
    result = selection.select(make_candidates(x), dataset=data, config=config, device=CPU)
    assert result.indices.tolist() == [1] and result.stop_reason == "covered"

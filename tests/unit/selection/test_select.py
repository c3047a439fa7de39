"""select(): the filters, the strategies and the run's measures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.unit.selection.conftest import CPU, make_candidates, unit
from winnow import selection
from winnow.errors import ConfigError
from winnow.records import Candidates
from winnow.selection import SelectionConfig, _strategies


def test_pure_diversity_select_equals_kcenter_and_explains_each_pick():
    emb, data = unit(120, 16, 11), unit(25, 16, 12)
    cands = make_candidates(emb)
    result = selection.select(
        cands,
        dataset=data,
        config=SelectionConfig(n_samples=10, strategies=["diversity"]),
        device=CPU,
    )
    picks, dists = selection.kcenter_greedy(emb.astype(np.float16), existing=data, k=10, device=CPU)
    assert result.indices.tolist() == picks.tolist()
    assert [p.distance for p in result.picks] == pytest.approx(dists.tolist(), abs=1e-6)
    assert all(p.reason.startswith("diversity: farthest") for p in result.picks)
    assert result.sample_ids == [f"id-{i}" for i in picks]
    assert result.stop_reason == "n_samples" and result.n_candidates == 120


def test_stopping_rules_n_samples_proportion_min_distance_and_exhaustion():
    cands, data = make_candidates(unit(40, 8, 13)), unit(5, 8, 14)

    def run(**kw):
        return selection.select(
            cands, dataset=data, config=SelectionConfig(strategies=["diversity"], **kw), device=CPU
        )

    assert (len(run(n_samples=7).picks), run(n_samples=7).stop_reason) == (7, "n_samples")
    by_share = run(proportion=0.25)
    assert (len(by_share.picks), by_share.stop_reason) == (10, "proportion")
    assert run(proportion=0.25, n_samples=3).stop_reason == "n_samples"
    near = run(min_distance=0.9)
    assert near.stop_reason == "min_distance" and all(p.distance >= 0.9 for p in near.picks)
    assert near.coverage_after < 0.9
    everything = run(n_samples=1000)
    assert (len(everything.picks), everything.stop_reason) == (40, "exhausted")


def test_coverage_after_is_not_above_before_and_picks_beat_random_on_a_gap():
    rng = np.random.default_rng(15)
    a, b = unit(1, 32, 16)[0], unit(1, 32, 17)[0]
    covered = a + rng.standard_normal((200, 32)) * 0.05
    gap = b + rng.standard_normal((20, 32)) * 0.05
    emb = np.vstack([covered, gap])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    data = a + rng.standard_normal((50, 32)) * 0.05
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    result = selection.select(
        make_candidates(emb),
        dataset=data,
        config=SelectionConfig(n_samples=10, strategies=["diversity"]),
        device=CPU,
    )
    assert result.coverage_after <= result.coverage_before
    assert result.picks[0].index >= 200  # the gap is filled first
    assert result.mean_pick_distance > result.mean_random_distance
    radius = selection.coverage_radius(emb, data, device=CPU)
    assert result.coverage_before == pytest.approx(radius, abs=1e-3)
    after = selection.coverage_radius(emb, np.vstack([data, emb[result.indices]]), device=CPU)
    assert result.coverage_after == pytest.approx(after, abs=1e-3)


def test_empty_dataset_measures_use_nearest_other_pick():
    emb = unit(30, 8, 18)
    result = selection.select(
        make_candidates(emb),
        dataset=np.zeros((0, 0)),
        config=SelectionConfig(n_samples=5),
        device=CPU,
    )
    assert math.isinf(result.coverage_before) and math.isfinite(result.coverage_after)
    picked = emb[result.indices].astype(np.float16).astype(np.float64)
    d = np.sqrt(((picked[:, None] - picked[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert result.mean_pick_distance == pytest.approx(d.min(1).mean(), abs=1e-4)
    assert math.isfinite(result.mean_random_distance)


def test_no_candidates_is_an_empty_selection():
    result = selection.select(
        Candidates.empty(8), dataset=unit(3, 8, 0), config=SelectionConfig(), device=CPU
    )
    assert result.picks == () and result.n_candidates == 0 and result.stop_reason == "exhausted"


def test_dataset_members_are_never_picked():
    emb = unit(30, 8, 19).astype(np.float16)
    cands = make_candidates(emb)
    data = emb[[2, 5, 11]].astype(np.float32)  # the pool stores what the candidates hold
    config = SelectionConfig(n_samples=100, strategies=["random"])
    result = selection.select(cands, dataset=data, config=config, device=CPU, dataset_ids=["id-20"])
    assert {2, 5, 11, 20}.isdisjoint(result.indices.tolist())
    assert len(result.picks) == 26 and result.n_removed_duplicates == 4


def test_exact_duplicates_are_removed_by_content_hash_keeping_the_first():
    hashes = [f"h{i}" for i in range(20)]
    hashes[7] = hashes[3] = "same"
    cands = make_candidates(unit(20, 8, 20), hashes=hashes)
    config = SelectionConfig(n_samples=100, strategies=["diversity"])
    result = selection.select(cands, dataset=np.zeros((0, 8)), config=config, device=CPU)
    assert 7 not in result.indices.tolist() and 3 in result.indices.tolist()
    assert result.n_removed_duplicates == 1 and result.n_candidates == 19
    kept = selection.select(
        cands,
        dataset=np.zeros((0, 8)),
        config=config.model_copy(update={"remove_exact_duplicates": False}),
        device=CPU,
    )
    assert len(kept.picks) == 20


@pytest.mark.parametrize("strategies", [["diversity"], ["random"], ["diversity", "typicality"]])
def test_near_duplicates_of_the_dataset_and_of_picks_are_never_picked(strategies):
    rng = np.random.default_rng(21)
    base = unit(20, 32, 22)
    copies = base[[1, 4, 9]] + rng.standard_normal((3, 32)) * 0.002
    near_data = unit(1, 32, 23)
    emb = np.vstack([base, copies, near_data + 0.002])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    config = SelectionConfig(n_samples=100, near_duplicate_distance=0.05, strategies=strategies)
    result = selection.select(make_candidates(emb), dataset=near_data, config=config, device=CPU)
    groups = [{1, 20}, {4, 21}, {9, 22}]
    picked = set(result.indices.tolist())
    assert len(picked) == 20 and 23 not in picked
    assert all(len(g & picked) == 1 for g in groups)
    assert result.n_removed_duplicates == 4 and result.n_candidates == 20
    assert result.stop_reason == "exhausted"


def test_thresholds_filter_before_anything_else():
    brightness = np.linspace(0, 1, 21).astype(np.float32)
    cands = make_candidates(unit(21, 8, 24), brightness=brightness)
    config = SelectionConfig(
        n_samples=100,
        strategies=[
            {"type": "threshold", "column": "brightness", "min": 0.3, "max": 0.7},
            "diversity",
        ],
    )
    result = selection.select(cands, dataset=np.zeros((0, 8)), config=config, device=CPU)
    kept = brightness[result.indices]
    assert len(kept) == 9 and kept.min() >= 0.3 and kept.max() <= 0.7
    assert result.n_removed_thresholds == 12 and result.n_candidates == 9


def test_weights_prefer_high_values_and_pull_diversity_towards_them():
    rng = np.random.default_rng(25)
    sharp = rng.uniform(1, 100, 200).astype(np.float32)
    cands = make_candidates(unit(200, 16, 26), sharpness=sharp)
    data = unit(10, 16, 27)
    only = SelectionConfig(n_samples=10, strategies=[{"type": "weights", "column": "sharpness"}])
    result = selection.select(cands, dataset=data, config=only, device=CPU)
    assert result.indices.tolist() == np.argsort(-sharp, kind="stable")[:10].tolist()
    div = selection.select(cands, dataset=data, config=SelectionConfig(n_samples=10), device=CPU)
    both = SelectionConfig(
        n_samples=10,
        strategies=["diversity", {"type": "weights", "column": "sharpness", "strength": 2}],
    )
    mixed = selection.select(cands, dataset=data, config=both, device=CPU)
    assert sharp[mixed.indices].mean() > sharp[div.indices].mean()
    assert "sharpness" in mixed.picks[0].reason and "diversity" in mixed.picks[0].reason


def test_balance_moves_picks_towards_the_target_shares():
    labels = np.array(["car"] * 90 + ["bike"] * 10, dtype=object)
    np.random.default_rng(28).shuffle(labels)
    cands = make_candidates(unit(100, 16, 29))
    target = {"type": "balance", "column": "label", "target": {"car": 1, "bike": 1}}
    config = SelectionConfig(n_samples=10, strategies=[target], predictions="p.csv")
    alone = selection.select(
        cands, dataset=unit(5, 16, 30), config=config, columns={"label": labels}, device=CPU
    )
    assert sorted(labels[alone.indices].tolist()) == ["bike"] * 5 + ["car"] * 5
    mixed_cfg = SelectionConfig(n_samples=10, strategies=["diversity", target], predictions="p.csv")
    mixed = selection.select(
        cands, dataset=unit(5, 16, 30), config=mixed_cfg, columns={"label": labels}, device=CPU
    )
    div = selection.select(
        cands, dataset=unit(5, 16, 30), config=SelectionConfig(n_samples=10), device=CPU
    )
    assert (labels[mixed.indices] == "bike").sum() > (labels[div.indices] == "bike").sum()
    assert (labels[mixed.indices] == "bike").sum() >= 4


def test_balance_counts_the_datasets_own_labels_as_picked():
    labels = np.array(["car", "bike"] * 20, dtype=object)
    cands = make_candidates(unit(40, 16, 33))
    target = {"type": "balance", "column": "label", "target": {"car": 1, "bike": 1}}
    config = SelectionConfig(n_samples=6, strategies=[target], predictions="p.csv")
    data = unit(5, 16, 34)

    def picks(dataset_columns):
        return selection.select(
            cands,
            dataset=data,
            config=config,
            columns={"label": labels},
            device=CPU,
            dataset_columns=dataset_columns,
        )

    alone = picks(None)
    assert sorted(labels[alone.indices]) == ["bike"] * 3 + ["car"] * 3
    # The dataset holds five bikes: cars until they catch up, then one each.
    held = picks({"label": np.array(["bike"] * 5, dtype=object)})
    assert sorted(labels[held.indices]) == ["bike"] + ["car"] * 5
    bike = next(p for p in held.picks if labels[p.index] == "bike")
    assert "label=bike (5 picked before" in bike.reason
    with pytest.raises(ConfigError, match="dataset column 'label' has 4 values for 5"):
        picks({"label": np.array(["bike"] * 4, dtype=object)})


def test_similarity_prefers_candidates_near_the_queries():
    emb, queries = unit(80, 16, 31), unit(2, 16, 32)
    config = SelectionConfig(
        n_samples=6, strategies=[{"type": "similarity", "query_keys": ["q1.jpg", "q2.jpg"]}]
    )
    result = selection.select(
        make_candidates(emb), dataset=np.zeros((0, 16)), config=config, queries=queries, device=CPU
    )
    emb16 = emb.astype(np.float16).astype(np.float64)
    nearest = np.sqrt(((emb16[:, None] - queries[None]) ** 2).sum(-1)).min(1)
    assert result.indices.tolist() == np.argsort(nearest, kind="stable")[:6].tolist()
    with pytest.raises(ConfigError, match="needs query embeddings"):
        selection.select(make_candidates(emb), dataset=np.zeros((0, 16)), config=config, device=CPU)


def test_typicality_prefers_dense_regions_where_diversity_prefers_outliers():
    rng = np.random.default_rng(33)
    center = unit(1, 16, 34)[0]
    dense = center + rng.standard_normal((60, 16)) * 0.02
    outliers = unit(8, 16, 35)
    emb = np.vstack([outliers, dense])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cands = make_candidates(emb)
    typical = SelectionConfig(n_samples=5, strategies=[{"type": "typicality", "k": 5}])
    result = selection.select(cands, dataset=center[None], config=typical, device=CPU)
    assert all(i >= 8 for i in result.indices)
    diverse = selection.select(
        cands, dataset=center[None], config=SelectionConfig(n_samples=5), device=CPU
    )
    assert all(i < 8 for i in diverse.indices)


def test_typicality_on_a_reference_sample_still_prefers_dense_regions(monkeypatch):
    monkeypatch.setattr(_strategies, "_TYPICALITY_REFERENCE", 30)
    rng = np.random.default_rng(43)
    center = unit(1, 16, 44)[0]
    dense = center + rng.standard_normal((60, 16)) * 0.02
    emb = np.vstack([unit(8, 16, 45), dense])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    config = SelectionConfig(n_samples=5, strategies=[{"type": "typicality", "k": 5}])
    result = selection.select(
        make_candidates(emb), dataset=np.zeros((0, 16)), config=config, device=CPU
    )
    assert all(i >= 8 for i in result.indices)


def test_sequence_selection_picks_whole_sequences_of_consecutive_frames():
    keys = ["a.mp4"] * 12 + ["b.mp4"] * 10 + ["c.jpg"]
    frames = list(range(0, 24, 2)) + list(range(10)) + [0]
    order = np.random.default_rng(36).permutation(len(keys))  # rows in any order
    keys, frames = [keys[i] for i in order], [frames[i] for i in order]
    cands = make_candidates(unit(len(keys), 8, 37), keys=keys, frames=frames)
    config = SelectionConfig(n_samples=12, selected_sequence_length=5)
    result = selection.select(cands, dataset=unit(3, 8, 38), config=config, device=CPU)
    assert len(result.picks) == 10 and result.n_candidates == 20  # 4 whole sequences eligible
    for s in range(0, 10, 5):
        group = result.indices[s : s + 5]
        assert len({keys[i] for i in group}) == 1 and keys[group[0]] != "c.jpg"
        fi = sorted(frames[i] for i in group)
        step = 2 if keys[group[0]] == "a.mp4" else 1
        assert fi == list(range(fi[0], fi[0] + 5 * step, step)) and fi[0] % (5 * step) == 0
        assert len({p.reason for p in result.picks[s : s + 5]}) == 1
    assert result.picks[0].reason.startswith("sequence ")
    assert result.coverage_after <= result.coverage_before


def test_same_seed_same_picks_other_seed_other_picks():
    cands = make_candidates(unit(200, 8, 39))

    def run(seed):
        config = SelectionConfig(n_samples=10, seed=seed, strategies=["random", "diversity"])
        return selection.select(cands, dataset=unit(4, 8, 40), config=config, device=CPU)

    first, again, other = run(1), run(1), run(2)
    assert first.indices.tolist() == again.indices.tolist()
    assert first.mean_random_distance == again.mean_random_distance
    assert first.indices.tolist() != other.indices.tolist()


def test_random_alone_is_a_seeded_uniform_sample_that_ignores_distances():
    cands = make_candidates(unit(100, 8, 41))
    config = SelectionConfig(n_samples=100, strategies=["random"])
    result = selection.select(cands, dataset=unit(2, 8, 42), config=config, device=CPU)
    assert sorted(result.indices.tolist()) == list(range(100))
    assert result.indices.tolist() != list(range(100))
    assert all(p.reason.startswith("random: ") and p.distance >= 0 for p in result.picks)


@pytest.mark.parametrize(
    ("strategy", "columns", "match"),
    [
        ({"type": "weights", "column": "score"}, {}, "neither the candidates nor the predictions"),
        (
            {"type": "weights", "column": "score"},
            {"score": np.array(["x"] * 10, object)},
            "needs numbers",
        ),
        ({"type": "weights", "column": "score"}, {"score": -np.ones(10)}, "must be >= 0"),
        ({"type": "weights", "column": "score"}, {"score": np.ones(3)}, "one value per candidate"),
    ],
)
def test_select_rejects_bad_columns(strategy, columns, match):
    config = SelectionConfig(strategies=[strategy], predictions="preds.csv")
    with pytest.raises(ConfigError, match=match):
        selection.select(
            make_candidates(unit(10, 4, 0)),
            dataset=np.zeros((0, 4)),
            config=config,
            columns=columns,
            device=CPU,
        )


def test_select_rejects_a_dataset_of_another_width():
    with pytest.raises(ConfigError, match="dataset has 5 dims but the candidates have 4"):
        selection.select(
            make_candidates(unit(10, 4, 0)),
            dataset=np.zeros((2, 5)),
            config=SelectionConfig(),
            device=CPU,
        )

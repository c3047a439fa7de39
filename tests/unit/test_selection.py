"""Selection: k-center greedy, the strategies, the filters and the run's measures."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from winnow import selection
from winnow.errors import ConfigError
from winnow.records import Candidates
from winnow.selection import SelectionConfig


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


# ---------------------------------------------------------------- k-center greedy


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("with_existing", [False, True])
@pytest.mark.parametrize("use_filter", [False, True])
def test_kcenter_picks_equal_a_plain_numpy_reference(seed, with_existing, use_filter):
    x = np.random.default_rng(seed).standard_normal((300, 24)).astype(np.float32)
    existing = (
        np.random.default_rng(seed + 100).standard_normal((40, 24)) if with_existing else None
    )
    want, want_d = reference_kcenter(x, existing, 60)
    got, got_d = selection._kcenter_greedy(
        x,
        existing,
        k=60,
        min_distance=None,
        device=selection._resolve_device(CPU),
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
    dev = selection._resolve_device(CPU)
    fast = selection._kcenter_greedy(
        x, existing, k=400, min_distance=None, device=dev, use_filter=True
    )
    slow = selection._kcenter_greedy(
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


def test_nearest_distances_and_coverage_radius_agree_with_brute_force(monkeypatch):
    monkeypatch.setattr(selection, "_BLOCK_COLS", 7)  # several tiles of centers, too
    x, c = unit(53, 12, 9), unit(31, 12, 10)
    brute = np.sqrt(((x[:, None] - c[None]) ** 2).sum(-1)).min(1)
    got = selection.nearest_distances(x, c, device=CPU, block_rows=8)
    np.testing.assert_allclose(got, brute, atol=1e-5)
    assert selection.coverage_radius(x, c, device=CPU, block_rows=5) == pytest.approx(
        brute.max(), abs=1e-5
    )
    assert math.isinf(selection.coverage_radius(x, np.zeros((0, 12)), device=CPU))
    assert selection.coverage_radius(np.zeros((0, 12)), c, device=CPU) == 0.0


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


# ---------------------------------------------------------------- select


def test_pure_diversity_select_equals_kcenter_and_explains_each_pick():
    emb, data = unit(120, 16, 11), unit(25, 16, 12)
    cands = make_candidates(emb)
    result = selection.select(cands, dataset=data, config=SelectionConfig(n_samples=10), device=CPU)
    picks, dists = selection.kcenter_greedy(emb.astype(np.float16), existing=data, k=10, device=CPU)
    assert result.indices.tolist() == picks.tolist()
    assert [p.distance for p in result.picks] == pytest.approx(dists.tolist(), abs=1e-6)
    assert all(p.reason.startswith("diversity: farthest") for p in result.picks)
    assert result.sample_ids == [f"id-{i}" for i in picks]
    assert result.stop_reason == "n_samples" and result.n_candidates == 120


def test_stopping_rules_n_samples_proportion_min_distance_and_exhaustion():
    cands, data = make_candidates(unit(40, 8, 13)), unit(5, 8, 14)

    def run(**kw):
        return selection.select(cands, dataset=data, config=SelectionConfig(**kw), device=CPU)

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
        make_candidates(emb), dataset=data, config=SelectionConfig(n_samples=10), device=CPU
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
    config = SelectionConfig(n_samples=100)
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
    monkeypatch.setattr(selection, "_TYPICALITY_REFERENCE", 30)
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


# ---------------------------------------------------------------- predictions


CSV = b"""filename,frame_index,score,label
cam/a.mp4,0,0.9,car
cam/a.mp4,1,0.1,bike
./img.jpg,,0.5,car
"""


def test_join_predictions_matches_file_and_frame_and_leaves_missing_rows_empty():
    cands = make_candidates(
        unit(4, 4, 0), keys=["cam/a.mp4", "cam/a.mp4", "img.jpg", "other.jpg"], frames=[0, 1, 0, 0]
    )
    cols = selection.join_predictions(cands, CSV, filename="preds.csv")
    assert cols["score"][:3].tolist() == [0.9, 0.1, 0.5] and math.isnan(cols["score"][3])
    assert cols["label"].tolist() == ["car", "bike", "car", None]
    table = pa.table({"filename": ["cam/a.mp4", "img.jpg"], "score": [0.3, None]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    cols = selection.join_predictions(cands, buf.getvalue(), filename="s3://b/p.parquet")
    assert cols["score"][:2].tolist() == [0.3, 0.3] and np.isnan(cols["score"][2:]).all()


@pytest.mark.parametrize(
    ("data", "filename", "match"),
    [
        (b"key,score\na.jpg,1\n", "p.csv", "no 'filename' column"),
        (b"filename,score\na.jpg,1\na.jpg,2\n", "p.csv", "two rows for a.jpg"),
        (b"filename\na.jpg\n", "p.json", "use a .csv or .parquet"),
        (b"not parquet", "p.parquet", "cannot be read as parquet"),
    ],
)
def test_join_predictions_rejects_bad_files(data, filename, match):
    with pytest.raises(ConfigError, match=match):
        selection.join_predictions(make_candidates(unit(1, 4, 0)), data, filename=filename)


# ---------------------------------------------------------------- parameters


def test_config_defaults_and_conveniences():
    assert SelectionConfig().n_samples == 50
    assert SelectionConfig().strategies[0].type == "diversity"
    assert SelectionConfig(proportion=0.1).n_samples is None  # the default yields to other rules
    assert SelectionConfig(proportion=0.1, n_samples=5).n_samples == 5
    config = SelectionConfig(strategies=["Diversity", {"type": "RANDOM", "strength": 0.5}])
    assert [s.type for s in config.strategies] == ["diversity", "random"]
    assert SelectionConfig().strategies is not SelectionConfig().strategies  # no shared default
    full = SelectionConfig(
        proportion=0.5,
        predictions="p.parquet",
        strategies=[
            {"type": "threshold", "column": "brightness", "min": 0.1},
            {"type": "balance", "column": "label", "target": {"a": 1}},
            {"type": "similarity", "query_keys": ["q.jpg"], "strength": -1},
        ],
    )
    assert SelectionConfig.model_validate(full.model_dump(mode="json")) == full
    schema = SelectionConfig.model_json_schema()
    assert schema["properties"]["strategies"]["default"] == [{"strength": 1.0, "type": "diversity"}]

    def described(props):
        return all("description" in p for p in props.values())

    assert described(schema["properties"])
    assert all(described(d["properties"]) for d in schema["$defs"].values())


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"strategies": [{"type": "clustering"}]}, "does not match any of the expected tags"),
        ({"n_samples": -1}, "greater than or equal to 1"),
        ({"n_samples": 0}, "greater than or equal to 1"),
        ({"proportion": 0}, "greater than 0"),
        ({"proportion": 1.5}, "less than or equal to 1"),
        ({"min_distance": 3}, "less than or equal to 2"),
        ({"n_samples": None}, "no stopping rule"),
        ({"strategies": []}, "at least 1 item"),
        (
            {"strategies": [{"type": "threshold", "column": "brightness", "min": 0.8, "max": 0.2}]},
            "min 0.8 is greater than max 0.2",
        ),
        (
            {"strategies": [{"type": "threshold", "column": "brightness"}, "diversity"]},
            "neither min nor max",
        ),
        (
            {"strategies": [{"type": "threshold", "column": "brightness", "min": 0.1}]},
            "only threshold strategies",
        ),
        (
            {
                "strategies": [{"type": "balance", "column": "label", "target": {"a": -1}}],
                "predictions": "p.csv",
            },
            "finite and >= 0",
        ),
        (
            {
                "strategies": [{"type": "balance", "column": "label", "target": {"a": 0}}],
                "predictions": "p.csv",
            },
            "sum to 0",
        ),
        ({"strategies": [{"type": "weights", "column": "uncertainty"}]}, "not a metadata column"),
        ({"strategies": [{"type": "diversity", "strength": 0}]}, "non-zero"),
        ({"strategies": [{"type": "similarity", "query_keys": []}]}, "at least 1 item"),
        ({"strategies": [{"type": "typicality", "k": 0}]}, "greater than or equal to 1"),
        ({"predictions": "preds.xlsx"}, "use a .csv or .parquet"),
        ({"n_samples": 4, "selected_sequence_length": 10}, "not even one sequence"),
        ({"near_duplicate_distance": -0.1}, "greater than 0"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"n_sample": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_fail_before_any_work(value, match):
    with pytest.raises(ValidationError, match=match):
        SelectionConfig.model_validate(value)

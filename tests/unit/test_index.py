"""The pool's similarity index: incremental, versioned with the manifest, rebuilt when damaged,
collected by gc; near duplicates against the pool and leak checks (local folder and S3)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow import gc, runs
from winnow import index as ix
from winnow.datapool import Datapool
from winnow.errors import PoolConflict
from winnow.selection import SelectionConfig


@pytest.fixture(autouse=True)
def _index_small_pools(monkeypatch):
    monkeypatch.setattr(ix, "INDEX_MIN_SAMPLES", 100)


@pytest.fixture
def pool(store_url, open_test_store):
    return Datapool(open_test_store(store_url).child("pool"))


def _commit(pool, run_id, keys, seed, tag=None):
    files, cands = make_run(keys, frames=3, seed=seed)
    base = pool.load()
    pool.commit(
        base,
        run_id=run_id,
        files=files,
        samples=cands,
        tag=tag and tag_for(tag, cands),
        model=MODEL,
    )
    return cands


def _keys(prefix, n):
    return [f"{prefix}/{i:03d}.mp4" for i in range(n)]


def test_incremental_update_across_two_commits_equals_a_rebuild(pool):
    c1 = _commit(pool, "r1", _keys("a", 60), seed=1)
    c2 = _commit(pool, "r2", _keys("b", 60), seed=2)
    v1, v2 = (
        ix.IndexInfo.from_manifest(pool.load(1).manifest),
        ix.IndexInfo.from_manifest(pool.load(2).manifest),
    )
    # Incremental: version 2 keeps version 1's template and segment and adds one segment.
    assert v2.keys[:3] == v1.keys and len(v2.segments) == 2 and v2.rows == 360
    incremental = ix.open_index(pool.load(2))
    # The rebuild: every row added at once to the same template.
    template = ix._from_bytes(pool.store.get(v2.template))
    rebuilt, ids = ix._segment(template, iter([c1.to_arrow(), c2.to_arrow()]), 0)
    queries = np.concatenate([c1.embedding, c2.embedding]).astype(np.float32)
    rows_a, dist_a = incremental.search(queries, 5, nprobe=1000)
    rebuilt.nprobe = rebuilt.nlist
    ip, rows_b = rebuilt.search(queries, 5)
    assert incremental.sample_id[rows_a].tolist() == np.asarray(ids["sample_id"])[rows_b].tolist()
    np.testing.assert_allclose(dist_a, ix._to_distance(ip), atol=1e-6)
    itself = incremental.sample_id[rows_a[:, 0]] == np.array([*c1.sample_id, *c2.sample_id])
    assert itself.mean() > 0.95  # 8-bit codes of 8-d rows: a few near pairs swap places


def test_each_version_reads_the_index_of_its_own_samples(pool):
    c1 = _commit(pool, "r1", _keys("a", 60), seed=1)
    _commit(pool, "r2", _keys("b", 60), seed=2)
    first, second = ix.open_index(pool.load(1)), ix.open_index(pool.load(2))
    assert sorted(first.sample_id) == sorted(c1.sample_id)
    assert len(second) == pool.load(2).manifest.counts["samples"] == 360


def test_a_pool_below_the_threshold_has_no_index_and_gets_one_at_its_next_commit(pool, monkeypatch):
    monkeypatch.setattr(ix, "INDEX_MIN_SAMPLES", 10_000)
    c1 = _commit(pool, "r1", _keys("a", 60), seed=1)
    old = pool.load()
    assert old.manifest.index is None and "index" not in old.manifest.parts
    near = ix.nearest_in_pool(old, c1.embedding[:3], query_ids=["x"] * 3)
    assert near.exact and near.sample_id.tolist() == c1.sample_id[:3].tolist()
    monkeypatch.setattr(ix, "INDEX_MIN_SAMPLES", 100)
    _commit(pool, "r2", _keys("b", 60), seed=2)
    assert len(ix.open_index(pool.load())) == 360


def test_a_losing_commit_leaves_no_index_part_behind(pool):
    _commit(pool, "r1", _keys("a", 60), seed=1)
    base = pool.load()
    files, cands = make_run(_keys("b", 60), seed=2)
    pool.commit(base, run_id="winner", files=files, samples=cands, tag=None, model=MODEL)
    with pytest.raises(PoolConflict):
        pool.commit(base, run_id="loser", files=files, samples=cands, tag=None, model=MODEL)
    left = [i.key for i in pool.store.list("parts") if "/loser-" in i.key]
    assert left == []
    assert len(ix.open_index(pool.load())) == pool.load().manifest.counts["samples"]


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_index_part_falls_back_to_exact_search_and_is_rebuilt(pool, damage, caplog):
    c1 = _commit(pool, "r1", _keys("a", 60), seed=1, tag="t1")
    _commit(pool, "r2", _keys("b", 60), seed=2, tag="t2")
    info = ix.IndexInfo.from_manifest(pool.load().manifest)
    segment = info.segments[-1][0]
    if damage == "corrupt":
        pool.store.put(segment, b"not an index")
    else:
        pool.store.delete([segment])
    snapshot = pool.load()
    with caplog.at_level(logging.WARNING, logger="winnow.index"):
        assert ix.open_index(snapshot) is None
    assert "searching exactly instead" in caplog.text
    near = ix.nearest_in_pool(snapshot, c1.embedding[:4], query_ids=["q"] * 4)
    assert near.exact and near.sample_id.tolist() == c1.sample_id[:4].tolist()
    assert len(snapshot.samples()) == 360  # the pool's data is untouched
    _commit(pool, "r3", _keys("c", 10), seed=3)
    rebuilt = ix.IndexInfo.from_manifest(pool.load().manifest)
    assert rebuilt.template != info.template and len(rebuilt.segments) == 1
    assert len(ix.open_index(pool.load())) == 390


def test_gc_removes_index_parts_no_manifest_names_and_keeps_the_named_ones(pool):
    _commit(pool, "r1", _keys("a", 60), seed=1)
    pool.store.put("parts/crashed-00000000/index.faiss", b"x")
    pool.store.put("parts/crashed-00000000/index-ids.parquet", b"x")
    report = gc.collect_garbage(pool, older_than_s=0, now=4e9)
    assert sorted(report.parts) == [
        "parts/crashed-00000000/index-ids.parquet",
        "parts/crashed-00000000/index.faiss",
    ]
    assert len(ix.open_index(pool.load())) == 180


def test_a_reembed_commit_rebuilds_the_index(pool):
    _commit(pool, "r1", _keys("a", 60), seed=1)
    before = ix.IndexInfo.from_manifest(pool.load().manifest)
    _, again = make_run(_keys("a", 60), seed=9)
    pool.commit(
        pool.load(),
        run_id="re",
        files=[],
        samples=again,
        tag=None,
        model=MODEL,
        replace_samples=True,
    )
    after = ix.IndexInfo.from_manifest(pool.load().manifest)
    assert after.template != before.template and after.rows == 180
    index = ix.open_index(pool.load())
    rows, _ = index.search(again.embedding[:5].astype(np.float32), 3, nprobe=1000)
    assert all(sid in index.sample_id[r] for sid, r in zip(again.sample_id[:5], rows, strict=True))


def test_near_duplicates_of_untagged_pool_samples_are_dropped_with_the_scope_pool(pool):
    c1 = _commit(pool, "r1", _keys("a", 60), seed=1, tag="t1")
    _, new = make_run(_keys("new", 4), seed=5)
    new.embedding[0] = c1.embedding[30]  # an untagged pool sample's copy, under another id
    snapshot = pool.load()
    config = {"near_duplicate_distance": 0.1, "n_samples": 12, "strategies": ["diversity"]}
    dataset_only = runs.select_against_pool(snapshot, new, config=SelectionConfig(**config))
    assert 0 in dataset_only.selection.indices and not dataset_only.pool_duplicates
    picked = runs.select_against_pool(
        snapshot, new, config=SelectionConfig(**config, near_duplicate_scope="pool")
    )
    assert 0 not in picked.selection.indices
    assert sorted(picked.selection.indices) == list(range(1, 12))
    (dup,) = picked.pool_duplicates
    assert (dup.key, dup.nearest_key, dup.nearest_frame_index) == (
        new.key[0],
        c1.key[30],
        int(c1.frame_index[30]),
    )
    assert picked.selection.n_removed_duplicates >= 1


def test_leaks_by_the_index_match_exact_search(pool):
    c1 = _commit(pool, "r1", _keys("a", 60), seed=1, tag="train")
    files, test = make_run(_keys("test", 60), seed=2)
    test.embedding[1] = c1.embedding[0]  # a test frame that is a training frame
    tag = tag_for("test", test)
    pool.commit(pool.load(), run_id="r2", files=files, samples=test, tag=tag, model=MODEL)
    snapshot = pool.load()
    by_index, exact = ix.find_leaks(snapshot, tag="test", against="train", distance=0.1)
    assert not exact
    assert [(x.key, x.other_key) for x in by_index] == [(test.key[1], c1.key[0])]
    import winnow.index as module

    real = module.open_index
    module.open_index = lambda snapshot: None
    try:
        by_scan, exact = ix.find_leaks(snapshot, tag="test", against="train", distance=0.1)
    finally:
        module.open_index = real
    assert exact and [(x.sample_id, x.other_sample_id) for x in by_scan] == [
        (x.sample_id, x.other_sample_id) for x in by_index
    ]


def test_search_pool_uses_the_index_when_present_and_finds_the_same_samples(pool, monkeypatch):
    from winnow import search

    c1 = _commit(pool, "r1", _keys("a", 60), seed=1)
    snapshot = pool.load()
    queries = c1.embedding[[5]].astype(np.float32)
    opened = []
    real = ix.open_index
    monkeypatch.setattr(ix, "open_index", lambda s: opened.append(s.version) or real(s))
    by_index = search.search_pool(snapshot, queries, k=3)
    assert opened == [1]
    monkeypatch.setattr(ix, "open_index", lambda s: None)
    exact = search.search_pool(snapshot, queries, k=3)
    assert by_index[0].sample_id == exact[0].sample_id == c1.sample_id[5]
    assert {h.sample_id for h in by_index} == {h.sample_id for h in exact}


def test_with_scope_pool_each_picks_nearest_pool_sample_reaches_the_report(pool):
    from winnow.outputs._report import _card_pool_nearest

    c1 = _commit(pool, "r1", _keys("a", 60), seed=1, tag="t1")
    _, few = make_run(_keys("new", 4), seed=5)
    near_copy = c1.embedding[45].astype("float32") + 0.002  # close to a pool sample, not a dup
    few.embedding[2] = near_copy / np.linalg.norm(near_copy)
    plain = SelectionConfig(n_samples=12, remove_exact_duplicates=False, strategies=["diversity"])
    assert runs.select_against_pool(pool.load(), few, config=plain).pool_nearest is None
    config = plain.model_copy(
        update={"near_duplicate_distance": 1e-4, "near_duplicate_scope": "pool"}
    )
    picked = runs.select_against_pool(pool.load(), few, config=config)
    near = picked.pool_nearest
    assert near is not None and not near.exact  # found with the index
    assert len(near.key) == len(picked.selection.picks)
    pos = list(picked.selection.indices).index(2)
    assert (near.key[pos], near.frame_index[pos]) == (c1.key[45], int(c1.frame_index[45]))
    assert 1e-4 < near.distance[pos] < 0.05
    card = _card_pool_nearest(
        {"pool_nearest": {"key": str(near.key[pos]), "frame_index": 1, "distance": 0.004}}
    )
    assert "nearest already in the pool" in card and str(c1.key[45]) in card

"""The datapool: atomic versioned commits, conflicts, staging, compaction, plain-Parquet parts."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow import datapool as dp
from winnow.datapool import Datapool
from winnow.errors import PoolConflict, PoolCorrupt
from winnow.storage import LocalStore


@pytest.fixture
def pool(store_url, open_test_store) -> Datapool:
    return Datapool(open_test_store(store_url).child("pool"))


def test_empty_pool_loads_as_version_zero(pool):
    snap = pool.load()
    assert snap.version == 0 and snap.model is None and snap.tags == [] and snap.fingerprints == {}
    assert len(snap.dataset()) == 0


def test_commit_then_load_round_trips_all_three_tables(pool):
    files, cands = make_run(["a.mp4", "b.mp4"])
    v = pool.commit(
        pool.load(),
        run_id="run1",
        files=files,
        samples=cands,
        tag=tag_for("run-0001", cands),
        model=MODEL,
    )
    assert v == 1
    snap = pool.load()
    assert snap.version == 1 and snap.model == MODEL
    assert snap.fingerprints == {"a.mp4": "fp-a.mp4", "b.mp4": "fp-b.mp4"}
    assert [t.name for t in snap.tags] == ["run-0001"]
    assert snap.next_tag_name() == "run-0002"
    back = snap.samples()
    assert list(back.sample_id) == list(cands.sample_id)
    np.testing.assert_array_equal(back.embedding, cands.embedding)
    assert set(back.run_id) == {"run1"}
    ds = snap.dataset()
    assert sorted(ds.sample_id) == sorted(cands.sample_id[:2])


def test_second_commit_appends_and_dataset_is_the_union_of_tags(pool):
    f1, c1 = make_run(["a.mp4"], seed=1)
    pool.commit(pool.load(), run_id="r1", files=f1, samples=c1, tag=tag_for("t1", c1), model=MODEL)
    f2, c2 = make_run(["b.mp4"], seed=2)
    pool.commit(
        pool.load(), run_id="r2", files=f2, samples=c2, tag=tag_for("t2", c2, "t1"), model=MODEL
    )
    snap = pool.load()
    assert snap.version == 2 and len(snap.samples()) == len(c1) + len(c2)
    assert snap.dataset_ids == set(c1.sample_id[:2]) | set(c2.sample_id[:2])
    assert snap.tag("t2").parent == "t1"


def test_racing_commits_from_one_version_have_one_winner(pool):
    base = pool.load()
    outcomes: dict[str, object] = {}
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        files, cands = make_run([f"k{i}.mp4"], seed=i)
        barrier.wait()
        try:
            outcomes[f"r{i}"] = pool.commit(
                base,
                run_id=f"r{i}",
                files=files,
                samples=cands,
                tag=tag_for(f"t{i}", cands),
                model=MODEL,
            )
        except PoolConflict as exc:
            outcomes[f"r{i}"] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r, o in outcomes.items() if o == 1]
    losers = [o for o in outcomes.values() if isinstance(o, PoolConflict)]
    assert len(winners) == 1 and len(losers) == 3
    assert "committed by another run" in str(losers[0]) and "staged" in str(losers[0])
    snap = pool.load()
    assert snap.version == 1 and snap.manifest.run_id == winners[0]
    assert list(snap.fingerprints) == [f"k{winners[0][1:]}.mp4"]


def test_the_same_run_committing_twice_is_not_a_conflict(pool):
    files, cands = make_run(["a.mp4"])
    base = pool.load()
    assert pool.commit(base, run_id="same", files=files, samples=cands, tag=None, model=MODEL) == 1
    assert pool.commit(base, run_id="same", files=files, samples=cands, tag=None, model=MODEL) == 1
    assert pool.load().version == 1


def test_parts_without_a_manifest_are_never_read(pool):
    files, cands = make_run(["a.mp4"])
    pool.commit(pool.load(), run_id="r1", files=files, samples=cands, tag=None, model=MODEL)
    # A crashed run wrote parts but never created its manifest.
    pool.store.put("parts/crashed/files.parquet", b"garbage")
    pool.store.put("parts/crashed/samples.parquet", b"garbage")
    snap = pool.load()
    assert snap.version == 1 and len(snap.samples()) == len(cands)


def test_stale_or_missing_latest_hint_still_finds_the_highest_version(pool):
    for i in range(3):
        files, cands = make_run([f"k{i}.mp4"], seed=i)
        pool.commit(pool.load(), run_id=f"r{i}", files=files, samples=cands, tag=None, model=MODEL)
    pool.store.put("latest", json.dumps({"version": 1}).encode())
    assert pool.latest_version() == 3
    pool.store.delete(["latest"])
    assert pool.latest_version() == 3


def test_a_missing_part_is_reported_as_corruption(pool):
    files, cands = make_run(["a.mp4"])
    pool.commit(pool.load(), run_id="r1", files=files, samples=cands, tag=None, model=MODEL)
    part = pool.load().manifest.parts["files"][0]
    pool.store.delete([part])
    with pytest.raises(PoolCorrupt, match="missing"):
        pool.load()


def test_staged_shards_round_trip_and_torn_ones_are_redone(pool):
    files, cands = make_run(["a.mp4", "b.mp4"])
    pool.stage_shard("plan1", "s1", cands, files)
    got = pool.load_staged("plan1", "s1")
    assert got is not None
    assert list(got[0].sample_id) == list(cands.sample_id) and got[1] == files
    assert pool.staged_shard_ids("plan1") == {"s1"}
    assert pool.load_staged("plan1", "s2") is None
    pool.store.put("staging/plan1/shard-s3.parquet", b"torn write")
    assert pool.load_staged("plan1", "s3") is None
    pool.clear_staged("plan1", ["s1"])
    assert pool.staged_shard_ids("plan1") == {"s3"}


def test_compaction_merges_parts_without_losing_rows(pool, monkeypatch):
    monkeypatch.setattr(dp, "COMPACT_AFTER_PARTS", 3)
    total = 0
    for i in range(5):
        files, cands = make_run([f"k{i}.mp4"], seed=i)
        total += len(cands)
        pool.commit(
            pool.load(),
            run_id=f"r{i}",
            files=files,
            samples=cands,
            tag=tag_for(f"t{i}", cands),
            model=MODEL,
        )
    snap = pool.load()
    assert all(len(p) <= 3 for p in snap.manifest.parts.values())
    assert len(snap.samples()) == total and len(snap.fingerprints) == 5
    assert [t.name for t in snap.tags] == [f"t{i}" for i in range(5)]


def test_parts_are_plain_parquet_with_float16_fixed_size_embeddings(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    files, cands = make_run(["a.mp4"])
    pool.commit(
        pool.load(), run_id="r1", files=files, samples=cands, tag=tag_for("t", cands), model=MODEL
    )
    manifest = json.loads((tmp_path / "pool/versions/00000000000000000001.json").read_text())
    samples = pq.read_table(tmp_path / "pool" / manifest["parts"]["samples"][0])
    field = samples.schema.field("embedding")
    assert pa.types.is_fixed_size_list(field.type) and field.type.list_size == 8
    assert field.type.value_type == pa.float16() and samples.num_rows == len(cands)
    assert manifest["model"]["name"] == "resnet18" and manifest["counts"]["samples"] == len(cands)


def test_next_tag_name_skips_names_already_taken(pool):
    f1, c1 = make_run(["a.mp4"], seed=1)
    pool.commit(
        pool.load(), run_id="r1", files=f1, samples=c1, tag=tag_for("run-0002", c1), model=MODEL
    )
    assert pool.load().next_tag_name() == "run-0003"  # run-0002 is taken, run-0001 is not next
    f2, c2 = make_run(["b.mp4"], seed=2)
    pool.commit(
        pool.load(), run_id="r2", files=f2, samples=c2, tag=tag_for("run-0003", c2), model=MODEL
    )
    assert pool.load().next_tag_name() == "run-0004"


def test_a_reprocessed_sample_keeps_its_latest_row(pool):
    files, first = make_run(["a.mp4"], seed=1)
    pool.commit(pool.load(), run_id="r1", files=files, samples=first, tag=None, model=MODEL)
    files, second = make_run(["a.mp4"], seed=2)  # same sample ids, new embeddings
    pool.commit(pool.load(), run_id="r2", files=files, samples=second, tag=None, model=MODEL)
    back = pool.load().samples()
    assert list(back.sample_id) == list(second.sample_id)
    np.testing.assert_array_equal(back.embedding, second.embedding)
    assert set(back.run_id) == {"r2"}


def _objects_on(cands, seed: int):
    """Two objects on every frame of `cands` (8-d embeddings, as MODEL)."""
    from winnow.records import ObjectRows

    rows = [
        {"object_id": f"{sid}-{n}", "sample_id": sid, "key": key, "fingerprint": "fp"}
        | {"label": "car", "frame_index": 0, "pts_seconds": 0.0, "x": n, "y": 0.0, "w": 5.0}
        | {"h": 5.0, "score": 0.5, "probabilities": [0.5, 0.5]}
        for sid, key in zip(cands.sample_id, cands.key, strict=True)
        for n in range(2)
    ]
    emb = np.random.default_rng(seed).normal(size=(len(rows), MODEL.dim)).astype(np.float16)
    return ObjectRows.from_rows(rows).with_embedding(emb)


def test_the_dataset_objects_are_read_from_their_own_table(pool, monkeypatch):
    f1, c1 = make_run(["a.mp4"], seed=1)
    o1 = _objects_on(c1, 1)
    pool.commit(
        pool.load(),
        run_id="r1",
        files=f1,
        samples=c1,
        tag=tag_for("t1", c1),
        model=MODEL,
        objects=o1,
    )
    # A pool made before the table: the next commit builds it from the objects table, once.
    snap = pool.load()
    legacy = dict(snap.manifest.parts)
    legacy.pop("dataset_objects")
    snap.manifest = dataclasses.replace(snap.manifest, parts=legacy)
    assert sorted(snap.dataset_objects().object_id) == sorted(
        snap.objects(c1.sample_id[:2]).object_id
    )
    f2, c2 = make_run(["b.mp4"], seed=2)
    o2 = _objects_on(c2, 2)
    tag = tag_for("t2", c2, "t1")
    pool.commit(snap, run_id="r2", files=f2, samples=c2, tag=tag, model=MODEL, objects=o2)
    snap = pool.load()
    want = {f"{s}-{n}" for s in [*c1.sample_id[:2], *c2.sample_id[:2]] for n in range(2)}
    read: list[str] = []
    real_get = dp._get
    monkeypatch.setattr(dp, "_get", lambda store, key: read.append(key) or real_get(store, key))
    assert set(snap.dataset_objects().object_id) == want
    assert read and all(k.endswith("dataset_objects.parquet") for k in read)  # O(dataset)
    assert len(snap.objects()) == len(o1) + len(o2)


def test_a_staged_shard_whose_objects_are_gone_is_torn(pool):
    files, cands = make_run(["a.mp4"])
    objects = _objects_on(cands, 3)
    pool.stage_shard("plan1", "s1", cands, files, objects)
    cands_back, _, objects_back = pool.load_staged("plan1", "s1")
    assert list(objects_back.object_id) == list(objects.object_id)
    assert pool.staged_shard_ids("plan1") == {"s1"}  # the objects part is not a shard
    pool.store.delete(["staging/plan1/shard-s1.objects.parquet"])
    assert pool.load_staged("plan1", "s1") is None  # decoded again on resume

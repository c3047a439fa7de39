"""A pool that scales: the dataset table, lazy files, Arrow fingerprints, streamed compaction."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow import datapool as dp
from winnow.datapool import Datapool, FingerprintIndex
from winnow.discover import list_new_files
from winnow.records import Candidates, TagRecord
from winnow.storage import LocalStore


@pytest.fixture
def pool(store_url, open_test_store) -> Datapool:
    return Datapool(open_test_store(store_url).child("pool"))


def _spy_gets(monkeypatch, store) -> list[str]:
    """Record the keys read whole with `store.get` (parts are read that way, or streamed)."""
    got: list[str] = []
    real = store.get

    def get(key):
        got.append(key)
        return real(key)

    monkeypatch.setattr(store, "get", get)
    return got


def _by_id(c: Candidates) -> tuple[list[str], np.ndarray]:
    order = np.argsort(c.sample_id)
    return list(c.sample_id[order]), c.embedding[order]


def _assert_same(a: Candidates, b: Candidates) -> None:
    ids_a, emb_a = _by_id(a)
    ids_b, emb_b = _by_id(b)
    assert ids_a == ids_b
    np.testing.assert_array_equal(emb_a, emb_b)


def _grow(pool: Datapool, n: int = 3) -> None:
    """n tagged runs, then a reprocessing of the first run's file (same ids, new embeddings)."""
    parent = None
    for i in range(n):
        files, cands = make_run([f"k{i}.mp4"], seed=i)
        tag = tag_for(f"t{i}", cands, parent)
        pool.commit(pool.load(), run_id=f"r{i}", files=files, samples=cands, tag=tag, model=MODEL)
        parent = tag.name
    files, again = make_run(["k0.mp4"], seed=99)
    pool.commit(pool.load(), run_id="again", files=files, samples=again, tag=None, model=MODEL)


def test_dataset_table_equals_the_samples_path_and_reads_only_dataset_parts(pool, monkeypatch):
    _grow(pool)
    snap = pool.load()
    assert len(snap.manifest.parts["dataset"]) == 4  # three tags + the reprocessed members
    got = _spy_gets(monkeypatch, pool.store)
    ds = snap.dataset()
    assert got and all(k.endswith("/dataset.parquet") for k in got)  # never a samples part
    old_path = snap.samples(snap.dataset_ids)
    _assert_same(ds, old_path)
    assert set(ds.sample_id) == snap.dataset_ids and len(ds) == 6
    # The reprocessed members carry the latest embeddings, as `samples` gives them.
    _, again = make_run(["k0.mp4"], seed=99)
    first = {s: e for s, e in zip(ds.sample_id, ds.embedding, strict=True)}
    np.testing.assert_array_equal(first[again.sample_id[0]], again.embedding[0])
    assert list(ds.run_id).count("again") == 2


def test_an_old_manifest_without_dataset_parts_loads_seeds_and_migrates(pool):
    _grow(pool)
    snap = pool.load()
    key = dp._version_key(snap.version)
    raw = json.loads(pool.store.get(key))
    del raw["parts"]["dataset"]  # as written before the dataset table existed
    pool.store.put(key, json.dumps(raw).encode())
    old = pool.load()
    assert "dataset" not in old.manifest.parts
    _assert_same(old.dataset(), snap.dataset())
    # The next commit builds the dataset table once from the samples table.
    files, cands = make_run(["k9.mp4"], seed=9)
    pool.commit(old, run_id="r9", files=files, samples=cands, tag=tag_for("t9", cands), model=MODEL)
    new = pool.load()
    assert len(new.manifest.parts["dataset"]) == 1
    _assert_same(new.dataset(), new.samples(new.dataset_ids))
    assert len(new.dataset()) == 8


def test_a_reembed_commit_starts_a_fresh_dataset_table(pool):
    _grow(pool)
    snap = pool.load()
    everything = snap.samples()
    rng = np.random.default_rng(7)
    reembedded = dataclasses.replace(
        everything, embedding=rng.standard_normal(everything.embedding.shape).astype(np.float16)
    )
    pool.commit(
        snap,
        run_id="reembed",
        files=[],
        samples=reembedded,
        tag=None,
        model=MODEL,
        replace_samples=True,
    )
    after = pool.load()
    assert len(after.manifest.parts["dataset"]) == 1
    assert after.manifest.parts["dataset"][0].endswith("/dataset.parquet")
    ds = after.dataset()
    _assert_same(ds, after.samples(after.dataset_ids))
    want = {s: e for s, e in zip(reembedded.sample_id, reembedded.embedding, strict=True)}
    for s, e in zip(ds.sample_id, ds.embedding, strict=True):
        np.testing.assert_array_equal(e, want[s])


def test_a_tag_of_samples_committed_earlier_is_in_the_dataset_table(pool):
    files, cands = make_run(["a.mp4", "b.mp4"], seed=1)
    pool.commit(pool.load(), run_id="r1", files=files, samples=cands, tag=None, model=MODEL)
    later = TagRecord(
        name="reselect",
        parent=None,
        run_id="r2",
        created="2026-01-01T00:00:00+00:00",
        parameters="{}",
        counts="{}",
        sample_ids=tuple(cands.sample_id[3:5]),
    )
    empty = Candidates.empty(MODEL.dim)
    pool.commit(pool.load(), run_id="r2", files=[], samples=empty, tag=later, model=MODEL)
    snap = pool.load()
    assert len(snap.manifest.parts["dataset"]) == 1
    _assert_same(snap.dataset(), snap.samples(set(cands.sample_id[3:5])))


def test_load_reads_no_files_part_and_fingerprints_read_two_columns(pool, monkeypatch):
    _grow(pool)
    got = _spy_gets(monkeypatch, pool.store)
    snap = pool.load()
    assert not any(k.endswith("/files.parquet") for k in got)
    assert dict(snap.fingerprints) == {f"k{i}.mp4": f"fp-k{i}.mp4" for i in range(3)}
    assert any(k.endswith("/files.parquet") for k in got)
    assert snap.files.num_rows == 4  # every processing of every file, read on first use


def test_fingerprints_latest_processing_wins_on_arrow(pool, monkeypatch):
    monkeypatch.setattr(dp, "COMPACT_AFTER_PARTS", 2)  # also across a compacted part
    for i, fp in enumerate(["old", "mid", "new"]):
        files, cands = make_run(["a.mp4", f"b{i}.mp4"], seed=i)
        files = [dataclasses.replace(files[0], fingerprint=fp), *files[1:]]
        pool.commit(pool.load(), run_id=f"r{i}", files=files, samples=cands, tag=None, model=MODEL)
    snap = pool.load()
    fps = snap.fingerprints
    assert isinstance(fps, FingerprintIndex) and len(fps) == 4
    assert fps["a.mp4"] == "new" and fps.get("nope") is None and "b1.mp4" in fps
    assert fps.lookup(["a.mp4", "nope", "b0.mp4", "a.mp4"]) == ["new", None, "fp-b0.mp4", "new"]
    assert fps == {"a.mp4": "new", **{f"b{i}.mp4": f"fp-b{i}.mp4" for i in range(3)}}


def test_discovery_uses_the_batch_lookup(tmp_path, monkeypatch):
    from winnow import discover

    monkeypatch.setattr(discover, "LOOKUP_BATCH", 2)
    src = LocalStore(tmp_path / "src")
    for name in ["a.mp4", "b.mp4", "c.mp4", "d.txt", "e.jpg"]:
        src.put(name, b"x" * 10)
    listed = {i.key: i.fingerprint for i in src.list()}
    index = FingerprintIndex.latest(
        pa.Table.from_pylist(
            [
                {"key": "a.mp4", "fingerprint": "stale"},
                {"key": "a.mp4", "fingerprint": listed["a.mp4"]},  # the latest processing
                {"key": "c.mp4", "fingerprint": "changed-since"},
            ]
        )
    )
    calls: list[int] = []
    real = index.lookup
    monkeypatch.setattr(index, "lookup", lambda keys: calls.append(len(keys)) or real(keys))
    found = list_new_files(src, known=index)
    assert [f.key for f in found.new] == ["b.mp4", "c.mp4", "e.jpg"]
    assert found.known == 1 and found.changed == 1 and found.listed == 4
    assert calls == [2, 2]


def _runs(pool: Datapool, n: int) -> None:
    for i in range(n):
        files, cands = make_run([f"k{i % 3}.mp4", f"u{i}.mp4"], seed=i)  # k* reprocessed
        pool.commit(
            pool.load(),
            run_id=f"r{i}",
            files=files,
            samples=cands,
            tag=tag_for(f"t{i}", cands) if i % 2 else None,
            model=MODEL,
        )


def test_streamed_compaction_keeps_every_row_and_holds_one_batch(tmp_path, monkeypatch):
    plain = Datapool(LocalStore(tmp_path / "plain"))
    _runs(plain, 7)
    monkeypatch.setattr(dp, "COMPACT_AFTER_PARTS", 3)
    monkeypatch.setattr(dp, "COMPACT_BATCH_ROWS", 4)
    written: list[int] = []
    real_writer = dp._parquet_writer

    class Spy:
        def __init__(self, where, schema):
            self.inner = real_writer(where, schema)

        def write_table(self, table, row_group_size=None):
            written.append(table.num_rows)
            assert row_group_size == 4
            self.inner.write_table(table, row_group_size=row_group_size)

        def close(self):
            self.inner.close()

    monkeypatch.setattr(dp, "_parquet_writer", Spy)
    compacted = Datapool(LocalStore(tmp_path / "compacted"))
    whole_reads: list[str] = []
    real_get = compacted.store.get
    monkeypatch.setattr(compacted.store, "get", lambda k: whole_reads.append(k) or real_get(k))
    _runs(compacted, 7)
    assert written and max(written) <= 4  # one batch at a time, never a whole table
    # Commits read no samples or files part whole (compaction streams them from local copies).
    assert not any(k.endswith(("/samples.parquet", "/files.parquet")) for k in whole_reads)
    a, b = plain.load(), compacted.load()
    assert all(len(p) <= 3 for p in b.manifest.parts.values())
    assert len(a.manifest.parts["samples"]) == 7
    assert a.files.to_pylist() == b.files.to_pylist()  # same rows, same order
    assert [t.name for t in a.tags] == [t.name for t in b.tags]
    for x, y in [(a.samples(), b.samples()), (a.dataset(), b.dataset())]:
        assert list(x.sample_id) == list(y.sample_id) and list(x.run_id) == list(y.run_id)
        np.testing.assert_array_equal(x.embedding, y.embedding)
    assert dict(a.fingerprints) == dict(b.fingerprints)
    merged = b.manifest.parts["samples"][0]
    meta = pq.ParquetFile(tmp_path / "compacted" / merged).metadata
    assert meta.num_row_groups > 1
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 4

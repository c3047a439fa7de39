"""Discovery: media filtering, fingerprints, relevant filenames, output exclusion, shards."""

from __future__ import annotations

import os

import pytest

from tests.conftest import MODEL
from winnow.datapool import Datapool
from winnow.discover import list_new_files, parse_relevant_filenames, plan_shards
from winnow.errors import ConfigError
from winnow.records import Candidates, FileRef, FileResult, kind_of
from winnow.storage import LocalStore


def _store(tmp_path, names):
    store = LocalStore(tmp_path / "src")
    for n in names:
        store.put(n, b"x" * 10)
    return store


def test_only_media_extensions_are_kept(tmp_path):
    store = _store(tmp_path, ["a.MP4", "b.jpg", "c.txt", "d/e.webm", "f.tiff", "noext", "g.json"])
    found = list_new_files(store, known={})
    assert [f.key for f in found.new] == ["a.MP4", "b.jpg", "d/e.webm", "f.tiff"]
    assert [f.kind for f in found.new] == ["video", "image", "video", "image"]
    assert found.ignored == 3 and found.listed == 4


def test_known_files_are_skipped_and_changed_files_are_new(tmp_path):
    store = _store(tmp_path, ["a.mp4", "b.mp4"])
    first = list_new_files(store, known={})
    known = {f.key: f.fingerprint for f in first.new}
    assert list_new_files(store, known=known).new == ()
    path = store.root / "b.mp4"
    path.write_bytes(b"changed content")
    os.utime(path, ns=(1, 1))
    again = list_new_files(store, known=known)
    assert [f.key for f in again.new] == ["b.mp4"] and again.changed == 1 and again.known == 1
    everything = list_new_files(store, known=known, process_all=True)
    assert [f.key for f in everything.new] == ["a.mp4", "b.mp4"]


def test_output_prefix_inside_the_source_is_excluded(tmp_path):
    store = _store(tmp_path, ["a.mp4", ".winnow/frames/a-01-mp4.png"])
    found = list_new_files(store, known={}, exclude_prefixes=[".winnow/"])
    assert [f.key for f in found.new] == ["a.mp4"]


def test_relevant_filenames_accepts_keys_folders_and_globs(tmp_path):
    store = _store(tmp_path, ["cam1/a.mp4", "cam1/b.mp4", "cam2/c.mp4", "cam3/d.jpg", "x.mp4"])
    relevant = parse_relevant_filenames("# wanted\ncam1/a.mp4\n./cam2/\n\ncam3/*.jpg\n")
    found = list_new_files(store, known={}, relevant=relevant)
    assert [f.key for f in found.new] == ["cam1/a.mp4", "cam2/c.mp4", "cam3/d.jpg"]


@pytest.mark.parametrize(
    ("text", "match"),
    [("../up.mp4", r"'\.\.'"), ("cam/../../x", r"'\.\.'"), ("# only a comment\n", "no file")],
)
def test_relevant_filenames_rejects_bad_entries(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_relevant_filenames(text)


def test_shards_respect_file_and_byte_limits_and_ids_are_stable():
    files = [FileRef(f"f{i:02d}.mp4", f"fp{i}", 100, "video") for i in range(10)]
    shards = plan_shards(files, max_files=4)
    assert [len(s.files) for s in shards] == [4, 4, 2]
    assert [s.index for s in shards] == [0, 1, 2]
    assert plan_shards(files, max_files=4)[1].shard_id == shards[1].shard_id
    by_bytes = plan_shards(files, max_files=100, max_bytes=250)
    assert [len(s.files) for s in by_bytes] == [2, 2, 2, 2, 2]
    changed = [*files[:5], FileRef("f05.mp4", "new", 100, "video"), *files[6:]]
    assert plan_shards(changed, max_files=4)[0].shard_id == shards[0].shard_id
    assert plan_shards(changed, max_files=4)[1].shard_id != shards[1].shard_id


def test_kind_of():
    assert kind_of("a/b.JPEG") == "image" and kind_of("x.m4v") == "video"
    assert kind_of("dir.mp4/file") is None and kind_of("README") is None


# -- changed files: processed once, then known (local folder and S3 over HTTP) -----------------


def _rewrite_same_size(store, key: str, data: bytes) -> None:
    """Replace an object's content keeping its size (local: with a new mtime_ns)."""
    before = next(i for i in store.list() if i.key == key)
    assert len(data) == before.size_bytes
    if isinstance(store, LocalStore):
        path = store.root / key
        mtime_ns = path.stat().st_mtime_ns
        path.write_bytes(data)
        os.utime(path, ns=(mtime_ns + 1_000_000_000, mtime_ns + 1_000_000_000))
    else:
        store.put(key, data)  # S3: new content, so a new ETag, same size
    after = next(i for i in store.list() if i.key == key)
    assert after.size_bytes == before.size_bytes and store.get(key) == data


def _discover_and_commit(source, pool: Datapool, run_id: str):
    """One run's bookkeeping: discover against the pool, commit what was found."""
    found = list_new_files(source, known=pool.load().fingerprints)
    if found.new:
        files = [
            FileResult(
                key=f.key,
                fingerprint=f.fingerprint,
                size_bytes=f.size_bytes,
                kind=f.kind,
                status="ok",
                frames_total=1,
                frames_sampled=1,
            )
            for f in found.new
        ]
        pool.commit(
            pool.load(),
            run_id=run_id,
            files=files,
            samples=Candidates.empty(MODEL.dim),
            tag=None,
            model=MODEL,
        )
    return found


def test_a_same_size_rewrite_is_processed_once_then_known(store_url, open_test_store):
    root = open_test_store(store_url)
    source, pool = root.child("raw"), Datapool(root.child("pool"))
    source.put("cam/a.mp4", b"A" * 64)
    source.put("cam/b.jpg", b"B" * 32)

    first = _discover_and_commit(source, pool, "r1")
    assert [f.key for f in first.new] == ["cam/a.mp4", "cam/b.jpg"]

    _rewrite_same_size(source, "cam/a.mp4", b"Z" * 64)
    second = _discover_and_commit(source, pool, "r2")
    assert [f.key for f in second.new] == ["cam/a.mp4"]
    assert second.changed == 1 and second.known == 1

    third = _discover_and_commit(source, pool, "r3")
    assert third.new == () and third.known == 2 and third.changed == 0
    snap = pool.load()
    assert snap.version == 2  # the third run committed nothing
    assert snap.fingerprints["cam/a.mp4"] == second.new[0].fingerprint


def test_changed_and_new_files_are_counted_apart(tmp_path):
    store = _store(tmp_path, ["a.mp4", "b.mp4", "c.mp4"])
    first = list_new_files(store, known={})
    assert first.changed == 0 and first.known == 0  # new files are not "changed"
    assert [f.size_bytes for f in first.new] == [10, 10, 10]
    known = {f.key: f.fingerprint for f in first.new}
    for name in ("a.mp4", "c.mp4"):
        os.utime(store.root / name, ns=(7, 7))
    store.put("d.mp4", b"new")
    again = list_new_files(store, known=known)
    assert [f.key for f in again.new] == ["a.mp4", "c.mp4", "d.mp4"]
    assert again.changed == 2 and again.known == 1 and again.listed == 4


def test_a_shard_fills_up_to_exactly_its_byte_limit():
    files = [FileRef(f"f{i}.mp4", f"fp{i}", 100, "video") for i in range(4)]
    shards = plan_shards(files, max_files=10, max_bytes=200)
    assert [len(s.files) for s in shards] == [2, 2]  # 100 + 100 is not over 200
    assert all(isinstance(s.shard_id, str) and s.shard_id for s in shards)
    assert shards[0].shard_id != shards[1].shard_id
    assert [len(s.files) for s in plan_shards(files * 10)] == [32, 8]  # default: 32 files


@pytest.mark.parametrize(
    ("n_files", "min_shards", "sizes"),
    [
        (8, 4, [2, 2, 2, 2]),  # 8 files, shard_files 32, 4 child runs: 4 shards, one each
        (9, 4, [3, 3, 3]),  # at most ceil(9 / 4) = 3 files a shard
        (3, 4, [1, 1, 1]),  # fewer files than runs: a file a shard
        (8, 1, [8]),  # in-process: shard_files alone decides
        (70, 2, [32, 32, 6]),  # shard_files still caps a shard
    ],
)
def test_a_fanned_out_run_plans_a_shard_for_every_child(n_files, min_shards, sizes):
    files = [FileRef(f"v{i:02d}.mp4", f"fp{i}", 1000, "video") for i in range(n_files)]
    shards = plan_shards(files, max_files=32, min_shards=min_shards)
    assert [len(s.files) for s in shards] == sizes
    assert [f for s in shards for f in s.files] == files  # every file once, in plan order


def test_min_shards_below_one_is_refused():
    with pytest.raises(ConfigError, match="min_shards must be at least 1"):
        plan_shards([], min_shards=0)

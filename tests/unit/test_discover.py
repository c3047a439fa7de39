"""Discovery: media filtering, fingerprints, relevant filenames, output exclusion, shards."""

from __future__ import annotations

import os

import pytest

from winnow.discover import list_new_files, parse_relevant_filenames, plan_shards
from winnow.errors import ConfigError
from winnow.records import FileRef, kind_of
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

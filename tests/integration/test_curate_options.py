"""Flow options: relevant_filenames, process_all, tag names, model changes, parameter errors."""

from __future__ import annotations

import pytest

from tests.integration.conftest import run
from winnow import demo
from winnow.datapool import Datapool
from winnow.errors import ConfigError, ModelMismatch
from winnow.storage import LocalStore

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def source(tmp_path):
    store = LocalStore(tmp_path / "raw")
    demo.write_demo_files(store, n_videos=3, n_images=2, frames_per_video=24, width=96, height=64)
    return store


def _pool(tmp_path):
    return Datapool(LocalStore(tmp_path / "out" / "pool")).load()


def test_relevant_filenames_limit_a_run_and_the_rest_comes_later(source, tmp_path):
    source.put("lists/relevant.txt", b"# only camera 0\ncam0/\n")
    first = run(source.url, str(tmp_path / "out"), relevant_filenames="lists/relevant.txt")
    assert first["files_new"] == 2  # cam0/drive-0000.mp4, cam0/drive-0002.mp4
    assert set(_pool(tmp_path).fingerprints) == {"cam0/drive-0000.mp4", "cam0/drive-0002.mp4"}
    rest = run(source.url, str(tmp_path / "out"))
    assert rest["files_new"] == 3 and rest["files_known"] == 2


def test_process_all_reprocesses_everything_into_a_fresh_tag(source, tmp_path):
    out = str(tmp_path / "out")
    first = run(source.url, out)
    again = run(source.url, out, process_all=True, tag_name="full-pass")
    assert again["files_new"] == first["files_new"] == 5 and again["tag"] == "full-pass"
    pool = _pool(tmp_path)
    assert [t.name for t in pool.tags] == ["run-0001", "full-pass"]
    assert not set(pool.tags[0].sample_ids) & set(pool.tags[1].sample_ids)
    assert len(pool.fingerprints) == 5 and pool.files.num_rows == 10  # one row per file per run
    assert len(pool.samples()) == first["candidates"]  # same sample ids: latest row kept


def test_a_taken_tag_name_is_refused_before_any_work(source, tmp_path):
    out = str(tmp_path / "out")
    run(source.url, out, tag_name="first")
    demo.write_demo_files(
        source, n_videos=1, n_images=0, first=9, frames_per_video=12, width=96, height=64
    )
    with pytest.raises(ConfigError, match="tag 'first' already exists"):
        run(source.url, out, tag_name="first")
    assert _pool(tmp_path).version == 1


def test_another_model_is_refused_and_the_pool_is_untouched(source, tmp_path):
    out = str(tmp_path / "out")
    run(source.url, out)
    demo.write_demo_files(
        source, n_videos=1, n_images=0, first=9, frames_per_video=12, width=96, height=64
    )
    with pytest.raises(ModelMismatch, match=r"built with resnet18 \(none:seed=0, 64px, 512-d\)"):
        run(source.url, out, embedding={"weights": "none", "input_size": 96})
    assert _pool(tmp_path).version == 1


def test_a_leak_check_after_the_tag_finds_a_re_encoded_copy_and_fails_when_asked(source, tmp_path):
    import csv
    import io

    from PIL import Image

    from winnow.errors import LeaksFound

    out = str(tmp_path / "out")
    run(source.url, out, tag_name="test-set", selection={"n_samples": 500})
    with source.local_copy("stills/still-0000.jpg") as path:  # the same picture, re-encoded
        Image.open(path).save(tmp_path / "copy.jpg", quality=80)
    source.put("later/still-copy.jpg", tmp_path / "copy.jpg")
    check = {"against": ["test-set"], "distance": 0.1, "fail": True}
    with pytest.raises(LeaksFound, match="1 samples of tag run-0002 are within 0.1 of test-set"):
        run(source.url, out, leak_check=check)
    assert [t.name for t in _pool(tmp_path).tags] == ["test-set", "run-0002"]  # the tag stays
    rows = list(
        csv.DictReader(
            io.StringIO((tmp_path / "out" / "leaks" / "run-0002-vs-test-set.csv").read_text())
        )
    )
    assert [(r["key"], r["other_key"]) for r in rows] == [
        ("later/still-copy.jpg", "stills/still-0000.jpg")
    ]
    assert float(rows[0]["distance"]) < 0.1

"""The reselect flow and `winnow select`: a new tag from the samples a pool already holds.

The selection reads embeddings from the pool only: the source store is wrapped (a wrapper of the
real store, counting every `get`, `local_copy` and `list`), and no read happens before the upload
step. Upload then reads the source, as a curate run's does (picked video frames re-decoded as
full-size PNGs, image thumbnails for the report): that is output writing, allowed and counted.
The pool mixes videos and stills, so both kinds are covered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CountingStore
from tests.integration.conftest import run
from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

DEMO = {"frames_per_video": 20, "width": 96, "height": 64}


@pytest.fixture
def curated(tmp_path) -> tuple[Path, Path]:
    """2 short videos and 4 stills curated into run-0001 (4 picks of all their frames)."""
    source, output = tmp_path / "raw", tmp_path / "out"
    demo.write_demo_files(LocalStore(source), n_videos=2, n_images=4, **DEMO)
    run(str(source), str(output), selection={"n_samples": 4})
    return source, output


@pytest.fixture
def counted_source(monkeypatch) -> dict:
    """Wrap every run's source store in a `CountingStore`; note the reads made before upload."""
    import dataclasses

    import tasks.connect
    import tasks.finish

    seen: dict = {"store": None, "before_upload": None}
    real_open, real_upload = tasks.connect.open_stores, tasks.finish.upload_outputs

    def open_stores(*args, **kwargs):
        stores = real_open(*args, **kwargs)
        seen["store"] = CountingStore(stores.source)
        return dataclasses.replace(stores, source=seen["store"])

    def upload_outputs(stores, *args, **kwargs):
        seen["before_upload"] = list(stores.source.reads)
        return real_upload(stores, *args, **kwargs)

    monkeypatch.setattr(tasks.connect, "open_stores", open_stores)
    monkeypatch.setattr(tasks.finish, "upload_outputs", upload_outputs)
    return seen


def test_select_makes_a_tag_from_the_pool_without_reading_the_source(curated, counted_source):
    from flows.reselect import reselect
    from winnow.selection import SelectionConfig

    source, output = curated
    pool = Datapool(LocalStore(output / "pool"))
    before = pool.load()
    summary = reselect(output=str(output), selection=SelectionConfig(n_samples=5))
    assert counted_source["before_upload"] == []  # selection never touched the source
    assert counted_source["store"].reads  # ...while the upload did (the counter counts)
    after = pool.load()
    assert after.version == before.version + 1 and summary["tag"] == "run-0002"
    tag = after.tag("run-0002")
    assert len(tag.sample_ids) == 5 and tag.parent == "run-0001"
    assert not set(tag.sample_ids) & before.dataset_ids  # the dataset counted as chosen
    assert set(tag.sample_ids) <= set(before.samples().sample_id)
    assert json.loads(tag.parameters)["source"] == str(source)  # recorded from the pool's tag
    # Only a tag was committed: files and samples are as they were.
    assert after.files.equals(before.files)
    assert after.manifest.parts["samples"] == before.manifest.parts["samples"]
    # The same outputs as a curate run.
    out = LocalStore(output)
    names = out.get("tags/run-0002/filenames.txt").decode().split()
    assert len(names) == 5
    for name in names:
        assert out.exists(name) if name.startswith("frames/") else LocalStore(source).exists(name)
    for key in ("report.html", "embedding.png", "samples.csv", "labelstudio.json"):
        assert out.exists(f"tags/run-0002/{key}"), key


def test_winnow_select_within_one_tag_afresh(curated, counted_source):
    from typer.testing import CliRunner

    from flows.cli import app

    _, output = curated
    pool = Datapool(LocalStore(output / "pool"))
    first = set(pool.load().tag("run-0001").sample_ids)
    args = ["select", "--output", str(output), "--n-samples", "2", "--from-tags", "run-0001"]
    result = CliRunner().invoke(app, [*args, "--afresh", "--tag", "best-two", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["tag"] == "best-two" and summary["selected"] == 2
    assert set(pool.load().tag("best-two").sample_ids) <= first
    assert counted_source["before_upload"] == []
    # A second tag of the same name is refused before anything is selected.
    again = CliRunner().invoke(app, [*args, "--afresh", "--tag", "best-two"])
    assert again.exit_code == 1 and "already exists" in again.output

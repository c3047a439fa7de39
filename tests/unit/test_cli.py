"""The `winnow tags`, `status` and `export` commands over a real datapool (local and S3)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import MODEL, make_run, tag_for
from winnow.datapool import Datapool
from winnow.records import FileResult


@pytest.fixture
def output(store_url, open_test_store, s3_endpoint) -> tuple[str, list[str]]:
    """An output location whose pool holds two runs with tags t1 and t2 (t2's parent is t1).

    Returns the output URL and the CLI options that reach it.
    """
    pool = Datapool(open_test_store(store_url).child("pool"))
    f1, c1 = make_run(["cam/a.mp4", "cam/b.mp4"], frames=12, seed=1)
    f1.append(
        FileResult(
            key="cam/broken.mp4",
            fingerprint="fp-x",
            size_bytes=3,
            kind="video",
            status="corrupt",
            error="no video stream",
        )
    )
    t1 = dataclasses.replace(
        tag_for("t1", c1),
        counts=json.dumps({"files_new": 3}),
        coverage_before=None,
        coverage_after=0.5,
    )
    pool.commit(pool.load(), run_id="r1", files=f1, samples=c1, tag=t1, model=MODEL)
    f2, c2 = make_run(["c.jpg"], frames=1, seed=2)
    f2 = [dataclasses.replace(f, kind="image", frames_total=1) for f in f2]
    f2.append(
        FileResult(
            key="d.mp4",
            fingerprint="fp-d",
            size_bytes=9,
            kind="video",
            status="skipped",
            error="no frame sampled",
        )
    )
    t2 = dataclasses.replace(
        tag_for("t2", c2, parent="t1"),
        sample_ids=tuple(c2.sample_id[:1]),
        counts=json.dumps({"files_new": 2}),
        coverage_before=0.5,
        coverage_after=0.25,
    )
    pool.commit(pool.load(), run_id="r2", files=f2, samples=c2, tag=t2, model=MODEL)
    options = ["--endpoint-url", s3_endpoint] if store_url.startswith("s3://") else []
    return store_url, options


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_tags_lists_every_tag_with_parent_counts_and_coverage(output):
    url, options = output
    code, text = _invoke("tags", "--output", url, *options)
    assert code == 0, text
    lines = text.splitlines()
    assert len(lines) == 2
    t1, t2 = (line.split("\t") for line in lines)
    assert t1[:3] == ["t1", "2 samples", "parent -"]
    assert t1[4:] == ["new files 3", "coverage n/a -> 0.500"]
    assert t2[:3] == ["t2", "1 samples", "parent t1"]
    assert t2[4:] == ["new files 2", "coverage 0.500 -> 0.250"]


def test_status_shows_version_model_and_counts(output):
    url, options = output
    code, text = _invoke("status", "--output", url, *options)
    assert code == 0, text
    assert text.splitlines()[1:5] == [
        "model: resnet18 (none:seed=0, 64px, 8-d)",
        "files: 5 (ok 3, corrupt 1, skipped 1)",
        "samples: 25, dataset: 3",
        "tags: t1, t2",
    ]
    assert text.splitlines()[0].endswith(": version 2")


def test_export_prints_the_tag_members_as_exported_names(output):
    url, options = output
    code, text = _invoke("export", "--output", url, "--tag", "t2", *options)
    assert code == 0, text
    assert text.splitlines() == ["c.jpg"]  # an image is exported under its key
    code, text = _invoke("export", "--output", url, "--tag", "t2", "--cumulative", *options)
    assert code == 0, text
    # t1's members first: frames 0 and 1 of a 12-frame video, zero-padded to two digits.
    assert text.splitlines() == ["frames/cam/a-00-mp4.png", "frames/cam/a-01-mp4.png", "c.jpg"]


def test_export_of_an_unknown_tag_fails_naming_the_tags_there_are(output):
    url, options = output
    code, text = _invoke("export", "--output", url, "--tag", "nope", *options)
    assert code == 1
    assert "no tag 'nope'" in text and "t1, t2" in text


def test_commands_on_an_empty_pool(tmp_path):
    empty = str(tmp_path / "out")
    assert _invoke("tags", "--output", empty) == (0, "no tags yet\n")
    code, text = _invoke("status", "--output", empty)
    assert code == 0 and "version 0" in text and "model: none yet" in text
    assert "tags: none" in text


def test_run_takes_the_scale_options(tmp_path):
    from flows.cli import build_params

    source = str(tmp_path / "raw")
    options = {"source": source, "scale.mode": "dask", "scale.address": "tcp://127.0.0.1:8786"}
    params = build_params({}, {**options, "scale.runs": 4})
    assert (params.scale.mode, params.scale.address, params.scale.runs) == (
        "dask",
        "tcp://127.0.0.1:8786",
        4,
    )
    # The options reach the parameters: a Dask run without a scheduler is refused before work.
    code, text = _invoke("run", "--source", source, "--scale-mode", "dask")
    assert code == 2 and "scale.mode 'dask' needs scale.address" in text

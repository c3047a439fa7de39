"""Tag exports: members CSV and Parquet, Label Studio image URLs, `winnow export --format`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import MODEL, make_run
from winnow import demo, media, outputs
from winnow.arrow_io import read_parquet
from winnow.datapool import Datapool
from winnow.errors import ConfigError, NotFound
from winnow.records import (
    Candidates,
    FileRef,
    FileResult,
    Pick,
    Selection,
    TagRecord,
    sample_id_for,
)
from winnow.storage import LocalStore
from winnow.summary import RunSummary

IMAGE_KEY = "stills/a b&c.jpg"  # a key URLs must quote


def _tag(name: str, ids, parent=None, source="/data/raw") -> TagRecord:
    return TagRecord(
        name=name,
        parent=parent,
        run_id=f"run-{name}",
        created="2026-01-01T00:00:00+00:00",
        parameters=json.dumps({"source": source}),
        counts="{}",
        sample_ids=tuple(ids),
    )


def _with_image(files: list[FileResult], cands: Candidates) -> tuple[list, Candidates]:
    """Add one image file (one sample) to a fake run of videos."""
    fp = "fp-image"
    image = FileResult(
        key=IMAGE_KEY,
        fingerprint=fp,
        size_bytes=10,
        kind="image",
        status="ok",
        frames_total=1,
        frames_sampled=1,
        width=96,
        height=64,
    )
    one = cands.take([0])
    one.sample_id[0] = sample_id_for(IMAGE_KEY, fp, 0)
    one.key[0], one.fingerprint[0] = IMAGE_KEY, fp
    one.frame_index[0], one.pts_seconds[0] = 0, 0.0
    one.width[0], one.height[0] = 96, 64
    return [*files, image], Candidates.concat([cands, one])


@pytest.fixture
def pool_run(tmp_path):
    """A local output with a two-tag pool: t1 (2 video frames), t2 (a frame, the image)."""
    output = LocalStore(tmp_path / "out")
    pool = Datapool(output.child("pool"))
    f1, c1 = make_run(["cam1/a.mp4", "cam1/b.mp4"], frames=12, seed=1)
    t1 = _tag("t1", [c1.sample_id[5], c1.sample_id[0]])
    pool.commit(pool.load(), run_id="r1", files=f1, samples=c1, tag=t1, model=MODEL)
    f2, c2 = make_run(["cam2/c.mp4"], frames=3, seed=2)
    f2, c2 = _with_image(f2, c2)
    t2 = _tag("t2", [c2.sample_id[1], c2.sample_id[3]], parent="t1")
    pool.commit(pool.load(), run_id="r2", files=f2, samples=c2, tag=t2, model=MODEL)
    samples = Candidates.concat([c1, c2])
    return output, pool.load(), {str(s): i for i, s in enumerate(samples.sample_id)}, samples


def _expected(samples: Candidates, index: dict[str, int], ids: list[str]) -> list[dict]:
    rows = []
    for sid in ids:
        i = index[sid]
        key = str(samples.key[i])
        kind = "image" if key == IMAGE_KEY else "video"
        total = 1 if kind == "image" else (3 if key.startswith("cam2") else 12)
        rows.append(
            {
                "sample_id": sid,
                "key": key,
                "frame_index": int(samples.frame_index[i]),
                "pts_seconds": float(samples.pts_seconds[i]),
                "filename": outputs.export_name(key, kind, int(samples.frame_index[i]), total),
                "width": int(samples.width[i]),
                "height": int(samples.height[i]),
                "brightness": float(samples.brightness[i]),
                "sharpness": float(samples.sharpness[i]),
                "embedding": samples.embedding[i].astype(np.float32),
            }
        )
    return rows


def test_members_csv_reads_back_with_pandas_and_matches_the_tag(pool_run):
    output, snapshot, index, samples = pool_run
    data = outputs.export_tag(snapshot, tag="t2", fmt="csv", cumulative=True)
    frame = pd.read_csv(io.BytesIO(data), keep_default_na=False)
    assert tuple(frame.columns) == outputs.MEMBERS_COLUMNS
    ids = [*snapshot.tag("t1").sample_ids, *snapshot.tag("t2").sample_ids]
    expected = _expected(samples, index, ids)
    assert list(frame["sample_id"]) == ids
    assert list(frame["tag"]) == ["t1", "t1", "t2", "t2"]
    for name in ("key", "frame_index", "filename", "width", "height"):
        assert list(frame[name]) == [e[name] for e in expected], name
    assert list(frame["pts_seconds"]) == [e["pts_seconds"] for e in expected]  # exact
    np.testing.assert_allclose(frame["brightness"], [e["brightness"] for e in expected], rtol=1e-6)
    assert frame["filename"].iloc[0] == "frames/cam1/a-05-mp4.png"
    assert frame["filename"].iloc[3] == IMAGE_KEY
    assert frame["frame_index"].dtype == np.int64


def test_members_parquet_holds_the_embedding_as_float32_lists(pool_run):
    output, snapshot, index, samples = pool_run
    data = outputs.export_tag(snapshot, tag="t1", fmt="parquet")
    table = read_parquet(data)
    assert table.column_names == [*outputs.MEMBERS_COLUMNS, "embedding"]
    kind = table.schema.field("embedding").type
    assert (kind.list_size, str(kind.value_type)) == (MODEL.dim, "float")
    frame = table.to_pandas()
    expected = _expected(samples, index, list(snapshot.tag("t1").sample_ids))
    assert list(frame["sample_id"]) == [e["sample_id"] for e in expected]
    assert list(frame["filename"]) == [e["filename"] for e in expected]
    for got, e in zip(frame["embedding"], expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got, np.float32), e["embedding"])


def test_filenames_format_is_the_tags_exported_names(pool_run):
    output, snapshot, index, samples = pool_run
    ids = list(snapshot.tag("t2").sample_ids)
    text = outputs.export_tag(snapshot, tag="t2").decode()
    assert text.splitlines() == [e["filename"] for e in _expected(samples, index, ids)]
    assert text.endswith("\n")


def test_labelstudio_tasks_link_frames_in_the_output_and_images_in_the_source(pool_run):
    output, snapshot, index, samples = pool_run
    source = LocalStore("/data/raw")
    data = outputs.export_tag(
        snapshot, tag="t2", fmt="labelstudio", output=output, open_source=LocalStore
    )
    tasks = json.loads(data)
    ids = list(snapshot.tag("t2").sample_ids)
    assert [t["meta"]["sample_id"] for t in tasks] == ids
    frame_task, image_task = tasks
    frame_path = output.root / frame_task["meta"]["filename"]
    assert frame_task["data"]["image"] == "/data/local-files/?d=" + str(frame_path).lstrip("/")
    # the image's key has a space and '&': quoted, so Label Studio's `d` gets the whole path
    assert image_task["data"]["image"] == "/data/local-files/?d=data/raw/stills/a%20b%26c.jpg"
    assert unquote(image_task["data"]["image"].split("?d=", 1)[1]) == str(
        source.root / IMAGE_KEY
    ).lstrip("/")
    assert image_task["meta"]["tag"] == "t2" and image_task["meta"]["filename"] == IMAGE_KEY


@pytest.mark.parametrize(
    ("url", "root", "expected"),
    [
        (
            "file:///srv/out/frames/a-1-mp4.png",
            "/",
            "/data/local-files/?d=srv/out/frames/a-1-mp4.png",
        ),
        (
            "file:///srv/out/frames/a-1-mp4.png",
            "/srv",
            "/data/local-files/?d=out/frames/a-1-mp4.png",
        ),
        ("file:///srv/out/x%20y%23z.png", "/srv/", "/data/local-files/?d=out/x%20y%23z.png"),
        ("s3://bucket/out/frames/a.png", "/srv", "s3://bucket/out/frames/a.png"),
        (
            "https://h.example/b/k.png?X-Amz-Signature=1",
            "/",
            "https://h.example/b/k.png?X-Amz-Signature=1",
        ),
    ],
)
def test_labelstudio_image_urls(url, root, expected):
    assert outputs.labelstudio_image(url, document_root=root) == expected


@pytest.mark.parametrize("root", ["/srv/other", "/srv/ou"])
def test_a_local_file_outside_the_document_root_is_refused(root):
    with pytest.raises(ValueError, match="outside the Label Studio document root"):
        outputs.labelstudio_image("file:///srv/out/a.png", document_root=root)


def test_export_rejects_an_unknown_format_and_tag(pool_run):
    output, snapshot, _, _ = pool_run
    with pytest.raises(ConfigError, match="unknown export format 'xml'"):
        outputs.export_tag(snapshot, tag="t1", fmt="xml")
    with pytest.raises(NotFound, match="no tag 'nope'"):
        outputs.export_tag(snapshot, tag="nope", fmt="csv")
    with pytest.raises(ConfigError, match="needs the output store"):
        outputs.export_tag(snapshot, tag="t1", fmt="labelstudio")


# -- the CLI ------------------------------------------------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(app, ["export", *args], catch_exceptions=False)


def test_cli_default_format_prints_the_filenames(pool_run):
    output, snapshot, index, samples = pool_run
    result = _cli("--output", str(output.root), "--tag", "t2", "--cumulative")
    assert result.exit_code == 0, result.output
    ids = [*snapshot.tag("t1").sample_ids, *snapshot.tag("t2").sample_ids]
    assert result.stdout == "".join(f"{e['filename']}\n" for e in _expected(samples, index, ids))


def test_cli_writes_each_format(pool_run, tmp_path):
    output, snapshot, _, _ = pool_run
    root = str(output.root)
    printed = _cli("--output", root, "--tag", "t1", "--format", "csv")
    assert printed.exit_code == 0
    assert printed.stdout.encode() == outputs.export_tag(snapshot, tag="t1", fmt="csv")
    target = tmp_path / "t1.parquet"
    written = _cli("--output", root, "--tag", "t1", "--format", "parquet", "--out", str(target))
    assert written.exit_code == 0 and written.stdout == ""
    assert pq.read_table(target).num_rows == 2
    ls = tmp_path / "t2.json"
    args = ["--format", "labelstudio", "--out", str(ls), "--document-root", str(tmp_path)]
    assert _cli("--output", root, "--tag", "t1", *args).exit_code == 0
    images = [t["data"]["image"] for t in json.loads(ls.read_text())]
    assert images and all(i.startswith("/data/local-files/?d=out/frames/cam1/") for i in images)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--format", "parquet"], "give --out FILE"),
        (["--format", "xml"], "--format must be one of filenames, csv, parquet, labelstudio"),
        (["--format", "labelstudio", "--document-root", "/elsewhere"], "outside the Label Studio"),
    ],
)
def test_cli_refuses_bad_export_options(pool_run, args, match):
    output, _, _, _ = pool_run
    result = CliRunner().invoke(app, ["export", "--output", str(output.root), "--tag", "t1", *args])
    assert result.exit_code in (1, 2)
    assert match in result.output


# -- written with the run's other exports ------------------------------------------------------


def test_upload_writes_members_csv_and_parquet_beside_the_other_exports(tmp_path):
    src = LocalStore(tmp_path / "src")
    (src.root / "stills").mkdir(parents=True)
    demo.make_video(src.root / "v.mp4", n_frames=8, width=64, height=48, fps=10, seed=1)
    demo.make_image(src.root / IMAGE_KEY, width=40, height=30, seed=2)
    parts, files = [], {}
    for key, kind in (("v.mp4", "video"), (IMAGE_KEY, "image")):
        info = next(src.list(key))
        ref = FileRef(key, info.fingerprint, info.size_bytes, kind)
        *batches, result = media.decode_file(
            src.root / key, ref, size=16, options=media.FrameOptions(every_n_frames=3)
        )
        files[key] = result
        for b in batches:
            emb = np.random.default_rng(0).normal(size=(len(b), 4))
            parts.append(Candidates.from_frames(b, emb / np.linalg.norm(emb, axis=1)[:, None]))
    cands = Candidates.concat(parts)
    picks = tuple(Pick(str(cands.sample_id[i]), i, 0.5, 0.5, "diversity") for i in (3, 1, 0))
    output = LocalStore(tmp_path / "out")
    exported = outputs.upload_selection(
        source=src,
        output=output,
        tag="run-0001",
        candidates=cands,
        selection=Selection(picks=picks, n_candidates=len(cands)),
        files=files,
        dataset=np.zeros((0, 4)),
        summary=RunSummary(run_id="r", source=src.url, output=output.url),
        workers=2,
    )
    assert exported.keys["members_csv"] == "tags/run-0001/members.csv"
    frame = pd.read_csv(output.root / exported.keys["members_csv"], keep_default_na=False)
    assert list(frame["sample_id"]) == [p.sample_id for p in picks]
    assert list(frame["filename"]) == exported.filenames
    assert list(frame["tag"]) == ["run-0001"] * 3
    assert list(frame["frame_index"]) == [int(cands.frame_index[p.index]) for p in picks]
    table = pq.read_table(output.root / exported.keys["members_parquet"])
    assert table.column("filename").to_pylist() == exported.filenames
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(emb, cands.embedding[[3, 1, 0]].astype(np.float32))
    tasks = json.loads((output.root / exported.keys["labelstudio"]).read_text())
    for task, url in zip(tasks, exported.urls, strict=True):
        path = Path("/" + unquote(task["data"]["image"].removeprefix("/data/local-files/?d=")))
        assert path.is_file() and path.as_uri() == url

"""upload_selection on a small run: two short videos and an image in a local source."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
import logging
import math
import re
import shutil
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import numpy as np
import pyarrow
import pyarrow.csv
import pytest
from PIL import Image

from tests.unit.outputs.conftest import DIM, _unit
from winnow import demo, outputs
from winnow.errors import ConfigError
from winnow.outputs import _frames
from winnow.records import Candidates, FileResult, Pick, Selection, sample_id_for
from winnow.storage import LocalStore, S3Store
from winnow.summary import RunSummary

TAG = "run-0001"
VIDEO_A = "cam1/drive.mp4"
VIDEO_B = "odd & <cam>/clip.v2.mp4"  # a key with characters HTML must escape
VIDEO_R = "cam2/turned.mp4"  # stored with a 90° display rotation
IMAGE = "stills/a<b&c>.jpg"
CORRUPT_KEY = "broken/<script>x.mp4"


@dataclass
class Run:
    source: LocalStore
    candidates: Candidates
    selection: Selection
    files: dict[str, FileResult]
    dataset: np.ndarray
    summary: RunSummary
    frames: dict[str, list[np.ndarray]]  # every decoded frame of each video, by key


def _decode_all(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame of a video in presentation order, upright, decoded without winnow.media."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [
            (f.pts, f.time, np.rot90(f.to_ndarray(format="rgb24"), round(f.rotation / 90) % 4))
            for f in container.decode(stream)
        ]
    frames.sort(key=lambda f: f[0])
    return [f[2] for f in frames], [float(f[1]) for f in frames]


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    (root / "cam1").mkdir()
    (root / "odd & <cam>").mkdir()
    (root / "cam2").mkdir()
    (root / "stills").mkdir()
    demo.make_video(root / VIDEO_A, n_frames=12, width=160, height=96, fps=10, seed=1, scene=0)
    demo.make_video(root / VIDEO_B, n_frames=10, width=128, height=80, fps=10, seed=2, scene=1)
    demo.make_video(root / VIDEO_R, n_frames=6, width=64, height=48, fps=10, seed=4, rotation=90)
    demo.make_image(root / IMAGE, width=96, height=64, seed=3, scene=2)
    return root


def _make_run(source_dir: Path) -> Run:
    source = LocalStore(source_dir)
    rng = np.random.default_rng(0)
    cols: dict[str, list] = {name: [] for name in Candidates.empty_meta()}
    files: dict[str, FileResult] = {}
    frames: dict[str, list[np.ndarray]] = {}
    for key in (VIDEO_A, VIDEO_B, VIDEO_R, IMAGE):
        info = next(source.list(key))
        path = source_dir / key
        if key.endswith(".mp4"):
            decoded, times = _decode_all(path)
            frames[key] = decoded
        else:
            decoded, times = [np.asarray(Image.open(path).convert("RGB"))], [0.0]
        h, w = decoded[0].shape[:2]
        kind = "video" if key.endswith(".mp4") else "image"
        files[key] = FileResult(
            key=key,
            fingerprint=info.fingerprint,
            size_bytes=info.size_bytes,
            kind=kind,
            status="ok",
            frames_total=len(decoded),
            frames_sampled=len(decoded),
            width=w,
            height=h,
        )
        for i, (pixels, t) in enumerate(zip(decoded, times, strict=True)):
            luma = pixels.mean(axis=2) / 255.0
            cols["sample_id"].append(sample_id_for(key, info.fingerprint, i))
            cols["key"].append(key)
            cols["fingerprint"].append(info.fingerprint)
            cols["content_hash"].append(
                hashlib.blake2b(pixels.tobytes(), digest_size=8).hexdigest()
            )
            cols["frame_index"].append(i)
            cols["pts_seconds"].append(t)
            cols["width"].append(w)
            cols["height"].append(h)
            cols["brightness"].append(luma.mean())
            cols["contrast"].append(luma.std())
            cols["sharpness"].append(float(i))
    meta = {
        name: np.array(values, dtype=Candidates.empty_meta()[name].dtype)
        for name, values in cols.items()
    }
    candidates = Candidates(
        **meta, embedding=_unit(rng, len(meta["key"])), run_id=np.full(len(meta["key"]), "", object)
    )
    row = {
        (k, int(f)): i
        for i, (k, f) in enumerate(zip(candidates.key, candidates.frame_index, strict=True))
    }
    # Pick order deliberately not file order: the exports must keep it.
    chosen = [
        (VIDEO_B, 7),
        (VIDEO_A, 11),
        (IMAGE, 0),
        (VIDEO_A, 0),
        (VIDEO_R, 4),
        (VIDEO_B, 3),
        (VIDEO_A, 5),
    ]
    picks = tuple(
        Pick(
            sample_id=str(candidates.sample_id[row[c]]),
            index=row[c],
            distance=1.0 - 0.1 * n if n else math.inf,
            score=1.0 - 0.1 * n,
            reason=f"diversity: farthest from dataset (#{n} <&>)",
        )
        for n, c in enumerate(chosen)
    )
    selection = Selection(
        picks=picks,
        n_candidates=len(candidates),
        n_removed_duplicates=2,
        coverage_before=1.25,
        coverage_after=0.5,
        mean_pick_distance=0.8,
        mean_random_distance=0.4,
        stop_reason="n_samples",
    )
    summary = RunSummary(
        run_id="run-id-42",
        source=source.url,
        output="(set by the test)",
        tag=TAG,
        files_listed=5,
        files_new=5,
        files_known=7,
        files_ok=4,
        files_corrupt=1,
        corrupt=[(CORRUPT_KEY, "moov atom not found")],
        candidates=len(candidates),
        selected=len(picks),
        removed_duplicates=2,
        coverage_before=1.25,
        coverage_after=0.5,
        mean_pick_distance=0.8,
        mean_random_distance=0.4,
        stop_reason="n_samples",
        model="resnet18 (none:seed=0, 224px, 16-d)",
        seconds={"discover": 0.1, "decode_embed": 2.5, "select": 0.2},
    )
    return Run(source, candidates, selection, files, _unit(rng, 30), summary, frames)


@pytest.fixture
def run(source_dir) -> Run:
    return _make_run(source_dir)


def _upload(run: Run, output, exports=None) -> outputs.Exported:
    run.summary.output = output.url
    return outputs.upload_selection(
        source=run.source,
        output=output,
        tag=TAG,
        candidates=run.candidates,
        selection=run.selection,
        files=run.files,
        dataset=run.dataset,
        summary=run.summary,
        workers=3,
        exports=exports,
    )


def _tree(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Everything under `root` (but `skip`): relative path → (size, mtime_ns, content hash)."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if not path.is_file():
            out[path.relative_to(root).as_posix()] = ("folder",)
            continue
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, digest)
    return out


def _contents(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _expected_names(run: Run) -> list[str]:
    names = []
    for pick in run.selection.picks:
        key = str(run.candidates.key[pick.index])
        f = run.files[key]
        names.append(
            outputs.export_name(
                key, f.kind, int(run.candidates.frame_index[pick.index]), f.frames_total
            )
        )
    return names


def test_upload_selection_writes_frames_and_exports(run, source_dir, tmp_path):
    out_root = tmp_path / "out"
    output = LocalStore(out_root)
    before = {"source": _tree(source_dir), "tmp": _tree(tmp_path, skip=out_root)}

    exported = _upload(run, output)

    # Nothing written outside the output root; the source is untouched.
    assert _tree(source_dir) == before["source"]
    assert _tree(tmp_path, skip=out_root) == before["tmp"]

    names = _expected_names(run)
    assert names[:3] == [
        "frames/odd & <cam>/clip.v2-07-mp4.png",
        "frames/cam1/drive-11-mp4.png",
        IMAGE,
    ]
    assert names[4] == "frames/cam2/turned-4-mp4.png"
    assert (run.files[VIDEO_R].width, run.files[VIDEO_R].height) == (48, 64)  # upright
    assert exported.filenames == names
    assert exported.missing == {}

    # Every picked frame is a full-size PNG of the right frame; images are not copied.
    written = sorted(p.relative_to(out_root).as_posix() for p in out_root.rglob("*") if p.is_file())
    frame_keys = sorted(n for n in names if n.startswith("frames/"))
    assert [w for w in written if w.startswith("frames/")] == frame_keys
    assert sorted(w for w in written if w.startswith("tags/")) == sorted(exported.keys.values())
    for name, pick, url in zip(names, run.selection.picks, exported.urls, strict=True):
        key = str(run.candidates.key[pick.index])
        if run.files[key].kind == "image":
            assert url == run.source.presign(key)
            continue
        assert url == output.presign(name)
        assert Path(unquote(urlparse(url).path)) == out_root / name
        with Image.open(out_root / name) as im:
            assert im.format == "PNG"
            png = np.asarray(im.convert("RGB"))
        assert png.shape == (run.files[key].height, run.files[key].width, 3)
        fi = int(run.candidates.frame_index[pick.index])
        source_frames = run.frames[key]
        err = {
            j: np.abs(png.astype(int) - source_frames[j]).mean() for j in range(len(source_frames))
        }
        assert err[fi] < 2.0, f"{name} differs from frame {fi} of {key} by {err[fi]:.2f}"
        assert min(err, key=err.get) == fi

    # filenames.txt
    lines = (out_root / exported.keys["filenames"]).read_text("utf-8").splitlines()
    assert lines == names

    # samples.csv
    with open(out_root / exported.keys["samples_csv"], newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == outputs.SAMPLES_CSV_COLUMNS
        rows = list(reader)
    assert [r["filename"] for r in rows] == names
    table = pyarrow.csv.read_csv(out_root / exported.keys["samples_csv"])  # as pandas would
    assert table.column_names == list(outputs.SAMPLES_CSV_COLUMNS)
    assert table.num_rows == len(names) and table.column("frame_index").type == pyarrow.int64()
    assert [r["sample_id"] for r in rows] == run.selection.sample_ids
    assert [r["url"] for r in rows] == exported.urls
    for r, pick in zip(rows, run.selection.picks, strict=True):
        emb = np.array([float(v) for v in r["embedding"].split(" ")])
        assert emb.shape == (DIM,)
        np.testing.assert_allclose(
            emb, run.candidates.embedding[pick.index].astype(float), atol=1e-3
        )
        assert r["key"] == run.candidates.key[pick.index]
        assert int(r["frame_index"]) == run.candidates.frame_index[pick.index]
        assert int(r["width"]) == run.candidates.width[pick.index]
        assert r["reason"] == pick.reason
        assert float(r["distance"]) == pytest.approx(pick.distance)
        assert float(r["pts_seconds"]) == run.candidates.pts_seconds[pick.index]

    # labelstudio.json
    tasks = json.loads((out_root / exported.keys["labelstudio"]).read_text("utf-8"))
    assert len(tasks) == len(run.selection.picks)
    for task, url, pick in zip(tasks, exported.urls, run.selection.picks, strict=True):
        assert task["data"]["image"] == outputs.labelstudio_image(url)
        assert Path(unquote(urlparse(url).path)).is_file()
        assert task["meta"]["sample_id"] == pick.sample_id
        assert task["meta"]["tag"] == TAG
        assert task["meta"]["key"] == run.candidates.key[pick.index]
        assert task["meta"]["frame_index"] == run.candidates.frame_index[pick.index]

    # embedding.png
    plot = (out_root / exported.keys["embedding_plot"]).read_bytes()
    assert plot.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(plot)) as im:
        assert im.size[0] > 300 and im.size[1] > 300

    # report.html: tag, counts, escaped keys, outputs; the summary got the links.
    report = (out_root / exported.keys["report"]).read_text("utf-8")
    assert run.summary.outputs == exported.links
    assert set(exported.links) == {
        "filenames",
        "samples_csv",
        "labelstudio",
        "members_csv",
        "members_parquet",
        "embedding_plot",
        "report",
    }
    assert TAG in report and "run-id-42" in report
    for label, value in [("selected", 7), ("corrupt", 1), ("already in the pool", 7)]:
        assert re.search(rf"<th>{label}</th><td[^>]*>{value}</td>", report), label
    assert "1.250 → 0.500" in report and "0.800" in report and "0.400" in report
    for key in (VIDEO_B, IMAGE, CORRUPT_KEY):
        assert html.escape(key) in report
        assert key not in report
    assert "<script>" not in report
    assert "moov atom not found" in report
    assert report.count('alt="pick ') == len(names)  # a thumbnail per pick
    assert report.count('alt="neighbour" src="data:image/jpeg;base64,') >= len(names)
    assert 'src="data:image/png;base64,' in report
    for url in exported.links.values():
        assert f'href="{html.escape(url)}"' in report


def test_each_video_is_opened_once_for_all_its_picks(run, tmp_path, monkeypatch):
    calls: list[tuple[str, list[int]]] = []
    real = _frames.media.extract_frames

    def spy(path, targets):
        calls.append((Path(path).relative_to(run.source.root).as_posix(), [t[0] for t in targets]))
        return real(path, targets)

    monkeypatch.setattr(_frames.media, "extract_frames", spy)
    _upload(run, LocalStore(tmp_path / "out"))
    assert sorted(key for key, _ in calls) == sorted([VIDEO_A, VIDEO_R, VIDEO_B])  # once each
    picked = {VIDEO_A: [0, 5, 11], VIDEO_R: [4], VIDEO_B: [3, 7]}
    for key, targets in calls:  # the picks, plus the report's neighbour frames, in one pass
        assert set(picked[key]) <= set(targets) and targets == sorted(set(targets))


def test_rerun_overwrites_the_same_files_with_the_same_content(run, tmp_path):
    output = LocalStore(tmp_path / "out")
    first = _upload(run, output)
    snapshot = _contents(tmp_path / "out")
    second = _upload(run, output)
    assert second == first
    assert _contents(tmp_path / "out") == snapshot
    assert not [p for p in (tmp_path / "out").rglob(".winnow-tmp-*")]


def test_an_undecodable_video_is_reported_and_the_rest_is_written(
    run, source_dir, tmp_path, caplog
):
    broken = tmp_path / "source"
    shutil.copytree(source_dir, broken)
    (broken / VIDEO_A).write_bytes(b"not a video any more")
    run.source = LocalStore(broken)
    output = LocalStore(tmp_path / "out")

    with caplog.at_level(logging.WARNING, logger="winnow.outputs"):
        exported = _upload(run, output)

    names = _expected_names(run)
    lost = [n for n in names if n.startswith("frames/cam1/")]
    assert len(lost) == 3
    assert sorted(exported.missing) == sorted(lost)
    assert all(VIDEO_A in reason for reason in exported.missing.values())
    assert any(
        VIDEO_A in r.getMessage() and "not exported" in r.getMessage() for r in caplog.records
    )
    kept = [n for n in names if n not in lost]
    root = tmp_path / "out"
    assert (root / exported.keys["filenames"]).read_text().splitlines() == kept
    for name in kept:
        assert name == IMAGE or (root / name).is_file()
    assert not (root / "frames/cam1").exists()
    assert len(json.loads((root / exported.keys["labelstudio"]).read_text())) == len(kept)
    report = (root / exported.keys["report"]).read_text()
    assert "Picked frames not exported (3)" in report
    assert [u for n, u in zip(names, exported.urls, strict=True) if n in lost] == ["", "", ""]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("href", "src") and v]


def test_report_links_only_presigned_urls_that_serve_the_objects(
    run, source_dir, s3_bucket, s3_options
):
    # Real S3 stores on the moto server with presigned links: every link in the report, the
    # exports and the returned URLs is a presigned GET that serves exactly the object's bytes.
    options = dataclasses.replace(s3_options, presign_links=True)
    stores = {"raw": S3Store(s3_bucket, "raw", options), "out": S3Store(s3_bucket, "out", options)}
    for path in sorted(p for p in source_dir.rglob("*") if p.is_file()):
        stores["raw"].put(path.relative_to(source_dir).as_posix(), path.read_bytes())
    run.source = stores["raw"]
    exported = _upload(run, stores["out"])
    report = stores["out"].get(exported.keys["report"]).decode()

    parser = _Links()
    parser.feed(report)
    links = {u for u in parser.urls if not u.startswith("data:")}
    in_text = re.findall(
        r"[a-z][a-z0-9+.-]*://[^\s\"'<>]+", html.unescape(re.sub(r"data:[^\"]+", "", report))
    )
    urls = links | set(exported.urls) | set(exported.links.values())
    web = {u for u in in_text if not u.startswith("s3://")}
    assert links and web <= urls
    # s3:// in the text only names the stores (the output pool); it carries no credentials
    assert {u for u in in_text if u.startswith("s3://")} <= {s.url for s in stores.values()}
    for url in sorted(urls):
        parts = urlparse(url)
        assert f"{parts.scheme}://{parts.netloc}" == s3_options.endpoint_url, url
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in parts.query, url  # SigV4, not SigV2
        assert "X-Amz-Signature=" in parts.query, url
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        store, _, rel = key.partition("/")
        assert bucket == s3_bucket and store in stores, url
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == stores[store].get(rel), url


def test_upload_rejects_an_invalid_tag_before_writing(run, tmp_path):
    output = LocalStore(tmp_path / "out")
    run.summary.output = output.url
    with pytest.raises(ConfigError, match="invalid tag name"):
        outputs.upload_selection(
            source=run.source,
            output=output,
            tag="../../elsewhere",
            candidates=run.candidates,
            selection=run.selection,
            files=run.files,
            dataset=run.dataset,
            summary=run.summary,
        )
    assert not (tmp_path / "out").exists()


def test_staged_exports_published_after_the_commit_equal_a_direct_upload(run, tmp_path):
    direct = LocalStore(tmp_path / "direct")
    _upload(run, direct)
    output, pool_store = LocalStore(tmp_path / "out"), LocalStore(tmp_path / "out" / "pool")
    staged = outputs.staged_exports(pool_store, "run-1")
    _upload(run, output, exports=staged)
    keys = outputs.tag_keys(TAG)
    assert not any(output.exists(k) for k in keys.values())  # nothing under tags/ yet
    assert all(staged.exists(k) for k in keys.values())
    assert outputs.staged_runs(pool_store) == {"run-1"}

    written = []
    real_put = output.put
    output.put = lambda key, data: (written.append(key), real_put(key, data))  # type: ignore[method-assign]
    assert outputs.publish_exports(pool_store, output, "run-1", TAG)
    assert written[-1] == keys["report"] and sorted(written) == sorted(keys.values())
    assert outputs.staged_runs(pool_store) == set()
    # The same bytes as written directly (links point at the output either way).
    assert {k: output.get(k) for k in keys.values()} == {
        k: direct.get(k).replace(  # absolute paths, with or without the leading "/"
            str(direct.root).lstrip("/").encode(), str(output.root).lstrip("/").encode()
        )
        for k in keys.values()
    }
    # A second publisher (a run recovering the same tag) finds nothing left to do.
    assert not outputs.publish_exports(pool_store, output, "run-1", TAG)

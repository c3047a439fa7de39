"""Video-native curation end to end: clips picked, cut, exported; old pools run on."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import av
import pytest

from tests.integration.conftest import run
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

OLD_POOL = Path(__file__).parents[1] / "data" / "pool-2026-12-07"
SIZE = "size=160x96:rate=10"
# Hard cuts at 6.0 s and 12.3 s between three sources; the middle shot is 6.3 s long.
CUTS = (
    f"testsrc2={SIZE}:duration=6[a];mandelbrot={SIZE},trim=duration=6.3[b];"
    f"smptehdbars={SIZE}:duration=5,hue=H=t[c];[a][b][c]concat=n=3"
)
CLIPS = {
    "frames": {"sample_fps": 2, "min_change": 0.02, "detect_shots": True},
    "embedding": {"weights": "none", "input_size": 32, "batch_size": 32},
    "selection": {"n_samples": 2, "unit": "clip", "clip_seconds": 5.0},
    "shard_files": 1,
}


def _video(path: Path, graph: str = CUTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-filter_complex", graph, "-r", "10"]
        + ["-c:v", "libx264", "-g", "20", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


def _decoded(path: Path) -> tuple[int, float]:
    """Frames and seconds (first frame to the end of the last) of a video, by decoding it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [f.pts * stream.time_base for f in container.decode(stream)]
    return len(pts), float(pts[-1] - pts[0]) + 0.1


def test_clips_are_picked_cut_to_playable_mp4_and_held_by_the_next_run(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    _video(raw / "cam" / "drive.mp4")
    summary = run(str(raw), str(out), **CLIPS)
    assert summary["selected_clips"] == 2 and summary["shots"] == 3
    assert "clips_csv" in summary["outputs"] and "objects_csv" not in summary["outputs"]
    decoded, kept, unchanged = summary["video_frames"]
    assert decoded == 173 and kept + unchanged == 35  # 2 fps over 17.3 s
    # Shots of 6.0, 6.3 and 5.0 s; clip_seconds 5 cuts the first two in two windows each.
    snap = Datapool(LocalStore(out).child("pool")).load()
    shots = snap.shots().to_pylist()
    assert [(r["first_frame"], r["frames"]) for r in shots] == [(0, 60), (60, 63), (123, 50)]

    rows = list(csv.DictReader(io.StringIO((out / "tags/run-0001/clips.csv").read_text())))
    assert len(rows) == 2
    starts = {0.0, 5.0, 6.0, 11.0, 12.3}
    for row in rows:
        start, end = float(row["start_s"]), float(row["end_s"])
        assert start in starts and end - start <= 5.0 + 1e-9
        frames, seconds = _decoded(out / row["clip"])  # the exported clip plays
        assert frames == int(row["frames"]) == round((end - start) * 10)
        assert seconds == pytest.approx(end - start, abs=0.11)
    tasks = json.loads((out / "tags/run-0001/labelstudio_clips.json").read_text())
    assert sorted(t["data"]["file"] for t in tasks) == ["cam/drive.mp4"] * 2
    assert all(t["data"]["video"].endswith(".mp4") for t in tasks)
    report = (out / "tags/run-0001/report.html").read_text()
    assert report.count('<div class="clip">') == 2
    # Every frame of a picked clip is a member of the tag.
    (tag,) = snap.tags
    picked = snap.samples(tag.sample_ids)
    for row in rows:
        start, end = float(row["start_s"]), float(row["end_s"])
        inside = [t for t in picked.pts_seconds if start <= t < end]
        assert inside, row

    # A copy of the video under a new key: the clips the dataset holds are duplicates now.
    shutil.copy(raw / "cam" / "drive.mp4", raw / "cam" / "copy.mp4")
    again = run(str(raw), str(out), **CLIPS)
    assert again["files_new"] == 1 and again["selected_clips"] == 2
    assert again["removed_duplicates"] == 2  # the two held clips, recognised by embedding
    rows2 = list(csv.DictReader(io.StringIO((out / "tags/run-0002/clips.csv").read_text())))
    held = {(r["start_s"], r["end_s"]) for r in rows}
    assert not held & {(r["start_s"], r["end_s"]) for r in rows2}


def test_a_pool_made_before_video_native_curation_loads_and_runs_on(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(OLD_POOL, out / "pool")
    before = Datapool(LocalStore(out).child("pool")).load()
    assert before.version == 1 and before.shots().num_rows == 0
    (old_tag,) = before.tags
    raw = tmp_path / "raw"
    _video(raw / "cam" / "later.mp4")
    summary = run(
        str(raw), str(out), **{**CLIPS, "embedding": {"weights": "none", "input_size": 32}}
    )
    assert summary["tag"] == "run-0002" and summary["pool_version_after"] == 2
    assert summary["dataset_samples"] == 3  # the old tag's frames seed the clips
    after = Datapool(LocalStore(out).child("pool")).load()
    assert [t.name for t in after.tags] == ["run-0001", "run-0002"]
    assert after.tags[0].sample_ids == old_tag.sample_ids
    assert sorted(after.files.column("key").to_pylist()) == [
        "cam/clip.mp4",
        "cam/later.mp4",
        "still.jpg",
    ]
    assert set(after.shots().column("key").to_pylist()) == {"cam/later.mp4"}
    assert len(after.samples(old_tag.sample_ids)) == 3  # nothing already stored is lost

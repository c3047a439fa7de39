"""Deciding what to embed while decoding: change-aware sampling, shots, quality, time ranges."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.unit.media.conftest import _decode, _indices, _pts, _ref
from winnow import media
from winnow.records import merge_file_results, shots_to_arrow

FPS = 10


def _ffmpeg(path: Path, graph: str, *, gop: int = 20) -> Path:
    """Encode a lavfi filter graph (one video output) as H.264 at FPS frames a second."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-filter_complex", graph, "-r", str(FPS)]
        + ["-c:v", "libx264", "-g", str(gop), "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("native")
    size = "size=160x96:rate=10"
    return {
        # 2 s of motion, then the last frame held for 20 s: a car waiting at a red light.
        "static": _ffmpeg(
            d / "static.mp4", f"testsrc2={size}:duration=2,tpad=stop_mode=clone:stop_duration=20"
        ),
        # Hard cuts at 6.0 s and 12.3 s (frames 60 and 123) between different sources.
        "cuts": _ffmpeg(
            d / "cuts.mp4",
            f"testsrc2={size}:duration=6[a];mandelbrot={size},trim=duration=6.3[b];"
            f"smptehdbars={size}:duration=5,hue=H=t[c];[a][b][c]concat=n=3",
        ),
        # Black, white, flat grey, letterboxed, then normal: 2 s each.
        "quality": _ffmpeg(
            d / "quality.mp4",
            f"color=black:{size}:duration=2[a];color=white:{size}:duration=2[b];"
            f"color=gray:{size}:duration=2[c];"
            f"testsrc2=size=160x32:rate=10:duration=2,pad=160:96:0:32:black[d];"
            f"testsrc2={size}:duration=2[e];[a][b][c][d][e]concat=n=5",
        ),
    }


def test_a_static_video_keeps_one_frame_per_max_gap_window(videos):
    batches, result = _decode(videos["static"], sample_fps=2, min_change=0.02, max_gap_seconds=5.0)
    pts = _pts(batches)
    held = [t for t in pts if t >= 2.5]  # the held frame, once the last motion is over
    # 22 s: windows [0, 5), [5, 10), [10, 15), [15, 20), [20, 22); the first has motion.
    assert [int(t // 5) for t in held] == [1, 2, 3, 4]
    assert all(t % 5 == 0 for t in held)  # the first sampled frame of each window
    assert result.frames_sampled == len(pts)
    assert result.frames_unchanged == 44 - len(pts)  # every other sampled frame was skipped
    assert result.frames_decoded == 220


def test_without_min_change_every_sampled_frame_is_kept(videos):
    batches, result = _decode(videos["static"], sample_fps=2)
    assert len(_pts(batches)) == 44 and result.frames_unchanged == 0


def test_hard_cuts_are_found_at_their_frame(videos):
    _, result = _decode(videos["cuts"], sample_fps=1, detect_shots=True)
    assert result.shots_detected
    assert result.cuts == ((60, 6.0), (123, 12.3))
    table = shots_to_arrow([result]).to_pylist()
    assert [(r["shot"], r["first_frame"], r["frames"]) for r in table] == [
        (0, 0, 60),
        (1, 60, 63),
        (2, 123, 50),
    ]
    assert table[-1]["end_s"] == pytest.approx(17.3)


def test_no_shot_detection_records_no_shot_table(videos):
    _, result = _decode(videos["cuts"], sample_fps=1)
    assert not result.shots_detected and result.cuts == ()
    assert shots_to_arrow([result]).num_rows == 0


def test_per_shot_keeps_a_frame_of_a_shot_the_sampling_rule_misses(videos):
    # One frame every 10 s misses the shot starting at 12.3 s; per_shot keeps its first frame.
    batches, result = _decode(videos["cuts"], sample_fps=0.1, per_shot=1, max_gap_seconds=30)
    assert _indices(batches) == [0, 60, 100, 123]
    assert result.cuts == ((60, 6.0), (123, 12.3))


@pytest.mark.parametrize("boundary", [6.0, 5.9, 6.1, 10.0, 12.3])
@pytest.mark.parametrize(
    "opts",
    [
        {"sample_fps": 2, "min_change": 0.03, "max_gap_seconds": 4.0, "per_shot": 2},
        {"every_n_frames": 3, "detect_shots": True, "quality": {}},
    ],
)
def test_time_ranges_give_the_whole_files_frames_and_cuts_once(videos, boundary, opts):
    path = videos["cuts"]
    whole_batches, whole = _decode(path, **opts)
    parts, ranges = [], []
    for start, end in ((None, boundary), (boundary, None)):
        ref = dataclasses.replace(_ref(path), start_s=start, end_s=end)
        items = list(media.decode_file(path, ref, size=32, options=media.FrameOptions(**opts)))
        parts.extend(items[:-1])
        ranges.append(items[-1])
    assert _indices(parts) == _indices(whole_batches)
    [merged] = merge_file_results(ranges)
    assert merged.cuts == whole.cuts  # a cut exactly at the boundary is found once
    assert merged.frames_unchanged == whole.frames_unchanged
    assert merged.frames_decoded == whole.frames_decoded == 173
    assert merged.frames_sampled == whole.frames_sampled


def test_quality_drops_bad_frames_before_the_model_with_reasons(videos):
    batches, result = _decode(videos["quality"], sample_fps=2, quality={})
    assert dict(result.frames_rejected) == {
        "dark": 4,
        "overexposed": 4,
        "low_information": 4,
        "letterbox": 4,
    }
    assert [t for t in _pts(batches)] == [8.0, 8.5, 9.0, 9.5]  # only the normal stretch
    off = media.QualityRule(dark=None, overexposed=None, low_information=None, letterbox=None)
    _, none = _decode(videos["quality"], sample_fps=2, quality=off.model_dump())
    assert none.frames_rejected == () and none.frames_sampled == 20


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"keyframes_only": True, "min_change": 0.1}, "keyframes_only"),
        ({"keyframes_only": True, "per_shot": 1}, "keyframes_only"),
        ({"min_change": 0}, "greater than 0"),
        ({"per_shot": 0}, "greater than or equal to 1"),
        ({"quality": {"dark": 2}}, "less than or equal to 1"),
        ({"quality": {"glare": 0.5}}, "Extra inputs"),
    ],
)
def test_bad_video_native_options_are_rejected(opts, match):
    with pytest.raises(ValidationError, match=match):
        media.FrameOptions(**opts)


def test_new_options_leave_the_plan_of_existing_settings_unchanged():
    plain = media.FrameOptions(sample_fps=1.0)
    assert "min_change" not in plain.plan_dict() and "quality" not in plain.plan_dict()
    assert media.FrameOptions(sample_fps=1.0, min_change=0.02).plan_dict()["min_change"] == 0.02

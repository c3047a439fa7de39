"""Clips as a unit: names, MP4 cuts (copy or re-encode), CSV, Label Studio tasks, strips."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from winnow import demo
from winnow.errors import ConfigError, DecodeError
from winnow.outputs import _clips
from winnow.outputs._exports import labelstudio_image
from winnow.outputs._names import frame_name

FPS = 10
GOP = 10  # keyframes at 0, 1, 2 and 3 s
N_FRAMES = 40
W, H = 160, 96


@pytest.fixture(params=["mp4", "mkv"])
def video(request, tmp_path) -> Path:
    """40 frames at 10 fps, a keyframe each second, two B-frames between references."""
    path = tmp_path / f"street.{request.param}"
    demo.make_video(path, n_frames=N_FRAMES, width=W, height=H, fps=FPS, gop=GOP)
    return path


def _frames(path: Path) -> list[tuple[float, float, np.ndarray]]:
    """(start s, duration s, RGB) of every frame, in presentation order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (
                float(f.pts * stream.time_base),
                float((f.duration or 0) * stream.time_base),
                f.to_ndarray(format="rgb24").astype(np.int16),
            )
            for f in container.decode(stream)
        ]


def _in(frames, start_s, end_s):
    return [f for f in frames if start_s <= f[0] < end_s]


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "start_s", "end_s", "expected"),
    [
        ("cam1/drive.mp4", 12.5, 20, "clips/cam1/drive-000012500-000020000-mp4.mp4"),
        ("drive.mp4", 0, 0.001, "clips/drive-000000000-000000001-mp4.mp4"),
        ("a/b/c/d.mov", 1.2344, 1.2346, "clips/a/b/c/d-000001234-000001235-mov.mp4"),
        ("v1.2/clip.final.MKV", 3, 4, "clips/v1.2/clip.final-000003000-000004000-MKV.mp4"),
        ("no_extension", 0, 1, "clips/no_extension-000000000-000001000.mp4"),
        (".mp4", 0, 1, "clips/.mp4-000000000-000001000.mp4"),
        ("a//b.mp4", 0, 1, "clips/a/b-000000000-000001000-mp4.mp4"),
        ("dir/naïve clip #1.mp4", 0, 1, "clips/dir/naïve clip #1-000000000-000001000-mp4.mp4"),
        ("long.mp4", 1e6, 1e6 + 1, "clips/long-1000000000-1000001000-mp4.mp4"),
    ],
)
def test_clip_name_is_the_key_with_the_time_range_in_milliseconds(key, start_s, end_s, expected):
    assert _clips.clip_name(key, start_s, end_s) == expected


@pytest.mark.parametrize(
    "key", ["cam1/drive.mp4", "a.b/c.v2.mp4", "x", ".hidden", "d/.mp4", "é/ü-1.webm", "a//b.mp4"]
)
def test_clip_name_splits_the_key_as_frame_name_does(key):
    frame = frame_name(key, 0, 10**9 - 1).removeprefix("frames/").removesuffix(".png")
    assert (
        _clips.clip_name(key, 1, 2)
        == "clips/" + frame.replace("-000000000", "-000001000-000002000", 1) + ".mp4"
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: _clips.clip_name("../a.mp4", 0, 1), ConfigError, "invalid object key"),
        (lambda: _clips.clip_name("/a.mp4", 0, 1), ConfigError, "invalid object key"),
        (lambda: _clips.clip_name("a.mp4", -1, 1), ValueError, ">= 0"),
        (lambda: _clips.clip_name("a.mp4", 2, 2), ValueError, "after the start"),
        (lambda: _clips.clip_name("a.mp4", 0, float("nan")), ValueError, "finite"),
        (lambda: _clips.clip_name("x" * 230 + ".mp4", 0, 1), ConfigError, "longer than 255"),
    ],
)
def test_clip_name_refuses_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- cutting -----------------------------------------------------------------------------------


def test_the_test_video_reorders_frames(video):
    with av.open(str(video)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert pts != sorted(pts)  # B-frames: decode order is not presentation order


@pytest.mark.parametrize(
    ("start_s", "end_s", "mode", "n"),
    [
        (1.0, 2.0, "copy", 10),  # one whole GOP
        (0.0, 3.0, "copy", 30),
        (1.0, 1.4, "copy", 4),  # ends before a B-frame pair: 1.3 is decoded before 1.1, 1.2
        (1.0, 1.5, "reencode", 5),  # 1.4 is a B-frame decoded after (and from) 1.6
        (1.0, 1.35, "copy", 4),  # ends between frames
        (0.95, 2.0, "copy", 10),  # starts between frames, on the keyframe at 1.0
        (1.25, 2.55, "reencode", 13),  # starts mid-GOP (1.3)
        (1.3, 2.0, "reencode", 7),
        (3.0, 99.0, "copy", 10),  # to the end of the video
        (3.5, 99.0, "reencode", 5),
    ],
)
def test_cut_clip_writes_exactly_the_frames_in_the_range(tmp_path, video, start_s, end_s, mode, n):
    dst = tmp_path / "clip.mp4"
    cut = _clips.cut_clip(video, dst, start_s=start_s, end_s=end_s)
    assert (cut.mode, cut.frames) == (mode, n)
    assert cut.why and cut.why.count(".") <= 3
    source, clip = _in(_frames(video), start_s, end_s), _frames(dst)
    assert len(clip) == len(source) == n
    # the same frame times, rebased to start at 0
    assert [round(t, 6) for t, _, _ in clip] == [round(t - source[0][0], 6) for t, _, _ in source]
    duration = clip[-1][0] + clip[-1][1] - clip[0][0]
    assert abs(duration - n / FPS) < 1 / FPS
    assert abs(cut.duration_s - duration) < 1e-6
    for (_, _, want), (_, _, got) in zip(source, clip, strict=True):
        if mode == "copy":
            assert np.array_equal(got, want)  # the same packets decode to the same pixels
        else:
            assert np.abs(got - want).mean() < 6  # H.264 at CRF 18
    with av.open(str(dst)) as container:
        assert container.format.name.startswith("mov,mp4")
        assert [s.type for s in container.streams] == ["video"]


@pytest.mark.parametrize(("start_s", "mode"), [(1.0, "copy"), (1.3, "reencode")])
def test_without_b_frames_only_a_keyframe_start_is_copied(tmp_path, start_s, mode):
    src = tmp_path / "plain.mp4"  # mpeg4: no B-frames, so only the keyframe rule decides
    demo.make_video(src, n_frames=30, width=W, height=H, fps=FPS, gop=GOP, codec="mpeg4")
    dst = tmp_path / "clip.mp4"
    cut = _clips.cut_clip(src, dst, start_s=start_s, end_s=2.0)
    source, clip = _in(_frames(src), start_s, 2.0), _frames(dst)
    assert (cut.mode, cut.frames, len(clip)) == (mode, len(source), len(source))
    for (_, _, want), (_, _, got) in zip(source, clip, strict=True):
        assert np.abs(got - want).mean() < 6


def test_a_copy_that_loses_frames_falls_back_to_reencoding(tmp_path, video, monkeypatch):
    copy = _clips._copy

    def lossy_copy(packets, stream, dst, *, start_s, end_s):
        copy(packets, stream, dst, start_s=start_s, end_s=end_s - 0.5)  # drops 5 frames

    monkeypatch.setattr(_clips, "_copy", lossy_copy)
    dst = tmp_path / "clip.mp4"
    cut = _clips.cut_clip(video, dst, start_s=1.0, end_s=2.0)
    assert (cut.mode, cut.frames) == ("reencode", 10)
    assert "instead of 10" in cut.why
    source, clip = _in(_frames(video), 1.0, 2.0), _frames(dst)
    assert [round(t, 6) for t, _, _ in clip] == [round(t - 1.0, 6) for t, _, _ in source]
    for (_, _, want), (_, _, got) in zip(source, clip, strict=True):
        assert np.abs(got - want).mean() < 6


def test_a_reencoded_clip_keeps_the_display_rotation(tmp_path):
    src = tmp_path / "turned.mp4"
    demo.make_video(src, n_frames=20, width=W, height=H, fps=FPS, gop=GOP, rotation=90)
    for start_s, mode in [(1.0, "copy"), (1.3, "reencode")]:
        dst = tmp_path / f"{mode}.mp4"
        assert _clips.cut_clip(src, dst, start_s=start_s, end_s=2.0).mode == mode
        with av.open(str(dst)) as container:
            assert next(container.decode(video=0)).rotation == 90


@pytest.mark.parametrize(("start_s", "end_s"), [(0.01, 0.05), (4.0, 5.0), (-2.0, 0.0)])
def test_a_range_without_frames_raises_decode_error_naming_the_file(tmp_path, start_s, end_s):
    src = tmp_path / "short.mp4"
    demo.make_video(src, n_frames=N_FRAMES, width=W, height=H, fps=FPS, gop=GOP)
    with pytest.raises(DecodeError, match=r"short\.mp4: no frame in"):
        _clips.cut_clip(src, tmp_path / "clip.mp4", start_s=start_s, end_s=end_s)


def test_an_unreadable_source_raises_decode_error_naming_the_file(tmp_path):
    src = tmp_path / "broken.mp4"
    src.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DecodeError, match=r"broken\.mp4"):
        _clips.cut_clip(src, tmp_path / "clip.mp4", start_s=0, end_s=1)


def test_cut_clip_refuses_an_inverted_range(video, tmp_path):
    with pytest.raises(ValueError, match="end after the start"):
        _clips.cut_clip(video, tmp_path / "clip.mp4", start_s=2, end_s=1)


def test_decode_times_keep_decode_before_presentation():
    # decode order of a GOP with two B-frames, as Matroska gives it (no dts)
    pts = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]
    dts = _clips._decode_times(pts)
    assert dts == [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8]  # one frame of delay is enough here
    assert all(d <= p for d, p in zip(dts, pts, strict=True))
    assert _clips._decode_times([0, 3, 2, 1, 4]) == [-2, -1, 0, 1, 2]  # two B-frames, pyramid
    assert _clips._decode_times([5, 6, 7]) == [5, 6, 7]


# -- exports -----------------------------------------------------------------------------------


def test_clips_csv_has_a_header_and_three_decimal_times():
    rows = [
        {
            "file": "cam1/a.mp4",
            "start_s": 1,
            "end_s": 2.34567,
            "clip": "clips/x.mp4",
            "frames": 13,
            "mode": "copy",
        },
        {
            "file": "b, c.mp4",
            "start_s": 0.1,
            "end_s": 0.2,
            "clip": "clips/y.mp4",
            "frames": 1,
            "mode": "reencode",
        },
    ]
    text = _clips.clips_csv(rows).decode("utf-8")
    assert text.splitlines()[0] == "file,start_s,end_s,clip,frames,mode"
    assert text.splitlines()[1] == "cam1/a.mp4,1.000,2.346,clips/x.mp4,13,copy"
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[1] == {
        "file": "b, c.mp4",
        "start_s": "0.100",
        "end_s": "0.200",
        "clip": "clips/y.mp4",
        "frames": "1",
        "mode": "reencode",
    }
    assert _clips.clips_csv([]).decode() == "file,start_s,end_s,clip,frames,mode\n"


def test_labelstudio_video_tasks_link_each_clip_like_the_image_export():
    rows = [
        {
            "url": "file:///data/out/clips/a-000001000-000002000-mp4.mp4",
            "file": "a.mp4",
            "start_s": 1.0,
            "end_s": 2.0,
        },
        {"url": "s3://bucket/out/clips/b%20c.mp4", "file": "b c.mp4", "start_s": 0, "end_s": 0.5},
    ]
    tasks = json.loads(_clips.labelstudio_video_tasks(rows, "day1", document_root="/data"))
    assert tasks == [
        {
            "data": {
                "video": "/data/local-files/?d=out/clips/a-000001000-000002000-mp4.mp4",
                "file": "a.mp4",
                "start_s": 1.0,
                "end_s": 2.0,
                "tag": "day1",
            }
        },
        {
            "data": {
                "video": "s3://bucket/out/clips/b%20c.mp4",
                "file": "b c.mp4",
                "start_s": 0.0,
                "end_s": 0.5,
                "tag": "day1",
            }
        },
    ]
    assert tasks[0]["data"]["video"] == labelstudio_image(rows[0]["url"], document_root="/data")
    with pytest.raises(ValueError, match="outside the Label Studio document root"):
        _clips.labelstudio_video_tasks(rows, "day1", document_root="/elsewhere")


# -- strips ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "height"), [(5, 72), (3, 48), (1, 30), (12, 24)])
def test_clip_strip_is_n_thumbnails_wide(video, n, height):
    data = _clips.clip_strip(video, start_s=1.25, end_s=2.55, n=n, height=height)
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.mode) == ("JPEG", "RGB")
        assert im.size == (n * round(height * W / H), height)


def test_clip_strip_spreads_its_frames_from_the_first_to_the_last(video):
    frames = [f for _, _, f in _in(_frames(video), 1.25, 3.55)]  # 23 frames
    data = _clips.clip_strip(video, start_s=1.25, end_s=3.55, n=4, height=H)
    with Image.open(io.BytesIO(data)) as im:
        strip = np.asarray(im, np.int16)
    shown = []
    for k in range(4):
        errors = [np.abs(strip[:, k * W : (k + 1) * W] - f).mean() for f in frames]
        shown.append(int(np.argmin(errors)))
        assert min(errors) < 12  # JPEG at quality 80 of a noisy scene
    assert shown == [0, 7, 15, 22]


def test_clip_strip_of_an_empty_range_raises_decode_error(video):
    with pytest.raises(DecodeError, match=video.name):
        _clips.clip_strip(video, start_s=0.01, end_s=0.05)

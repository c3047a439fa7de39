"""Video sampling modes, variable frame rate and display rotation (media._video)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from tests.unit.media.conftest import (
    GOP,
    N_FRAMES,
    SIZE,
    _decode,
    _indices,
    _pixels,
    _pts,
    _reference,
    _resize,
)
from winnow import demo, media


def test_every_frame_mode_yields_all_frames_in_presentation_order(gop_video):
    batches, result = _decode(gop_video)
    ref_pts, ref_frames, _ = _reference(gop_video)
    assert _indices(batches) == list(range(N_FRAMES))
    assert _pts(batches) == ref_pts  # same timestamps, exactly
    assert result.status == "ok" and result.error is None
    assert (result.frames_total, result.frames_sampled) == (N_FRAMES, N_FRAMES)
    assert (result.width, result.height) == (160, 96)
    pixels = _pixels(batches)
    assert pixels.shape == (N_FRAMES, SIZE, SIZE, 3) and pixels.dtype == np.uint8
    with av.open(str(gop_video)) as container:  # decode order != presentation order
        packet_pts = [p.pts for p in container.demux(video=0) if p.size]
    assert packet_pts != sorted(packet_pts)
    small = [_resize(f, SIZE) for f in ref_frames]
    for i in (0, 1, 2, 17, 58, 59):  # each index holds its own frame, not a neighbour
        near = range(max(0, i - 3), min(N_FRAMES, i + 4))
        errors = [np.abs(pixels[i].astype(np.int16) - small[j]).mean() for j in near]
        assert list(near)[int(np.argmin(errors))] == i and min(errors) < 3


def test_every_n_frames_keeps_indices_divisible_by_n(gop_video):
    batches, result = _decode(gop_video, every_n_frames=7)
    ref_pts, _, _ = _reference(gop_video)
    assert _indices(batches) == list(range(0, N_FRAMES, 7))
    assert _pts(batches) == [ref_pts[i] for i in range(0, N_FRAMES, 7)]
    assert (result.frames_total, result.frames_sampled) == (N_FRAMES, 9)


def _expected_fps_indices(pts: list[float], fps: float) -> list[int]:
    """First frame at or after each multiple of 1/fps seconds (from the first frame)."""
    out: list[int] = []
    k = 0
    while k / fps <= pts[-1] - pts[0] + 1e-9:
        i = next((i for i, t in enumerate(pts) if t - pts[0] >= k / fps - 1e-9), None)
        if i is not None and (not out or i != out[-1]):
            out.append(i)
        k += 1
    return out


@pytest.mark.parametrize("fps", [2.0, 7.5, 100.0])
@pytest.mark.parametrize("which", ["gop_video", "vfr_video"])
def test_sample_fps_keeps_first_frame_at_or_after_each_multiple(request, which, fps):
    path = request.getfixturevalue(which)
    ref_pts, _, _ = _reference(path)
    batches, result = _decode(path, sample_fps=fps)
    expected = _expected_fps_indices(ref_pts, fps)
    assert _indices(batches) == expected
    assert _pts(batches) == [ref_pts[i] for i in expected]
    assert result.frames_sampled == len(expected) and result.frames_total == len(ref_pts)


def test_keyframes_only_gives_exactly_the_keyframes(gop_video):
    batches, result = _decode(gop_video, keyframes_only=True)
    ref_pts, _, ref_keys = _reference(gop_video)
    assert ref_keys == list(range(0, N_FRAMES, GOP))  # the file is what we think it is
    assert _indices(batches) == ref_keys
    assert _pts(batches) == [ref_pts[i] for i in ref_keys]
    assert (result.frames_total, result.frames_sampled) == (N_FRAMES, len(ref_keys))
    # Same pixels as the same frames decoded in sequence.
    every, _ = _decode(gop_video)
    assert np.array_equal(_pixels(batches), _pixels(every)[ref_keys])


def test_keyframes_only_on_vp9(vp9_video):
    batches, result = _decode(vp9_video, keyframes_only=True)
    ref_pts, _, ref_keys = _reference(vp9_video)
    assert ref_keys == [0, 8, 16, 24]
    assert _indices(batches) == ref_keys
    assert _pts(batches) == [ref_pts[i] for i in ref_keys]
    assert result.frames_total == 32  # webm has no frame count in its header: counted by demux
    every, _ = _decode(vp9_video)
    assert np.array_equal(_pixels(batches), _pixels(every)[ref_keys])


def _spread(candidates: list[int], cap: int) -> list[int]:
    if len(candidates) <= cap:
        return candidates
    return [candidates[int(i)] for i in np.round(np.linspace(0, len(candidates) - 1, cap))]


@pytest.mark.parametrize(
    ("opts", "candidates"),
    [
        ({}, list(range(N_FRAMES))),
        ({"every_n_frames": 4}, list(range(0, N_FRAMES, 4))),
        ({"keyframes_only": True}, list(range(0, N_FRAMES, GOP))),
        ({"sample_fps": 10.0}, list(range(0, N_FRAMES, 3))),
    ],
)
@pytest.mark.parametrize("cap", [1, 4, 5, 100])
def test_max_frames_per_video_spreads_evenly(gop_video, opts, candidates, cap):
    batches, result = _decode(gop_video, max_frames_per_video=cap, **opts)
    got = _indices(batches)
    assert got == _spread(candidates, cap)
    assert len(got) == min(cap, len(candidates)) == result.frames_sampled
    assert got[0] == 0 and (cap == 1 or got[-1] == candidates[-1])  # covers the whole video
    assert result.frames_total == N_FRAMES


def test_vfr_indices_and_pts_follow_the_stream(vfr_video):
    ref_pts, _, ref_keys = _reference(vfr_video)
    assert len(set(np.round(np.diff(ref_pts), 6))) > 2  # really variable frame durations
    batches, result = _decode(vfr_video)
    assert _indices(batches) == list(range(40)) and _pts(batches) == ref_pts
    keys, _ = _decode(vfr_video, keyframes_only=True)
    assert _indices(keys) == ref_keys == list(range(0, 40, 8))
    assert _pts(keys) == [ref_pts[i] for i in ref_keys]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_is_upright_with_display_size(media_dir, rotation):
    plain, turned = media_dir / "upright.mp4", media_dir / f"rot{rotation}.mp4"
    demo.make_video(plain, n_frames=6, width=96, height=64, seed=4, scene=2)
    demo.make_video(turned, n_frames=6, width=96, height=64, seed=4, scene=2, rotation=rotation)
    base, _ = _decode(plain)
    batches, result = _decode(turned)
    swapped = rotation % 180 == 90
    assert (result.width, result.height) == ((64, 96) if swapped else (96, 64))
    assert set(batches[0].width) == {result.width} and set(batches[0].height) == {result.height}
    # display rotation is counter-clockwise, as np.rot90 and ffmpeg's autorotate apply it
    expected = np.rot90(_pixels(base), rotation // 90, axes=(1, 2))
    assert np.array_equal(_pixels(batches), expected)
    (index, full), *_ = media.extract_frames(turned, [(2, _pts(batches)[2])])
    assert index == 2 and full.shape == ((96, 64, 3) if swapped else (64, 96, 3))
    assert full.flags.c_contiguous

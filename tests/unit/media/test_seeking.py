"""extract_frames: full-size frames found again by seeking (media._seeking)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.media.conftest import _decode, _indices, _pixels, _pts, _reference, _resize
from winnow import demo, media
from winnow.errors import DecodeError


@pytest.mark.parametrize("which", ["gop_video", "vfr_video", "vp9_video"])
def test_extract_frames_matches_decode_file(request, which):
    path = request.getfixturevalue(which)
    batches, result = _decode(path, size=48)
    pts, pixels = _pts(batches), _pixels(batches)
    _, ref_frames, _ = _reference(path)
    n = result.frames_total
    # out of order, repeated, across keyframes (seeks) and inside one GOP (decode on)
    wanted = [n - 1, 3, 17, 18, 12, 3, n - 2, 0]
    got = list(media.extract_frames(path, [(i, pts[i]) for i in wanted]))
    assert [i for i, _ in got] == sorted(set(wanted))
    for index, frame in got:
        assert np.array_equal(frame, ref_frames[index]), index  # bit-exact full resolution
        small = _resize(frame, 48)
        assert np.abs(small - pixels[index].astype(np.int16)).mean() < 4, index


def test_extract_frames_from_keyframe_sampling(gop_video):
    batches, _ = _decode(gop_video, keyframes_only=True)
    targets = list(zip(_indices(batches), _pts(batches), strict=True))
    _, ref_frames, _ = _reference(gop_video)
    got = dict(media.extract_frames(gop_video, targets[::-1]))
    assert sorted(got) == _indices(batches)
    assert all(np.array_equal(got[i], ref_frames[i]) for i in got)


def test_extract_frames_holds_no_shared_buffers(gop_video):
    batches, _ = _decode(gop_video)
    pts = _pts(batches)
    frames = [f for _, f in media.extract_frames(gop_video, [(i, pts[i]) for i in range(12)])]
    _, ref_frames, _ = _reference(gop_video)
    assert all(np.array_equal(f, ref_frames[i]) for i, f in enumerate(frames))


def test_extract_frames_falls_back_to_counting_when_no_timestamp_matches(gop_video):
    # 0.25 s lies between two frames: the frame is found by its index instead
    _, ref_frames, _ = _reference(gop_video)
    ((index, frame),) = media.extract_frames(gop_video, [(7, 0.25)])
    assert index == 7 and np.array_equal(frame, ref_frames[7])


def test_extract_frames_from_an_avi_with_b_frames(media_dir):
    # AVI stores no presentation times: decoded pts are unreliable, indices still hold
    path = media_dir / "bframes.avi"
    demo.make_video(path, n_frames=30, width=96, height=64, gop=10, seed=6)
    batches, result = _decode(path)
    assert result.status == "ok" and _indices(batches) == list(range(30))
    _, ref_frames, _ = _reference(path)
    pts = _pts(batches)
    got = dict(media.extract_frames(path, [(i, pts[i]) for i in (2, 14, 29)]))
    assert sorted(got) == [2, 14, 29]
    assert all(np.array_equal(got[i], ref_frames[i]) for i in got)


def test_extract_frames_raises_for_a_missing_frame(gop_video, media_dir):
    with pytest.raises(DecodeError, match="frame 500 at 99.000s not found"):
        list(media.extract_frames(gop_video, [(3, 0.1), (500, 99.0)]))
    text = media_dir / "text.mp4"
    text.write_text("not a video")
    with pytest.raises(DecodeError, match="cannot open as a video"):
        list(media.extract_frames(text, [(0, 0.0)]))
    assert list(media.extract_frames(gop_video, [])) == []

"""Videos made once per test module with winnow.demo (PyAV)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.media._helpers import GOP, N_FRAMES
from winnow import demo


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def gop_video(media_dir) -> Path:
    """60 frames, 160x96, 30 fps, h264 with B-frames, a keyframe every 10 frames."""
    path = media_dir / "gop.mp4"
    demo.make_video(path, n_frames=N_FRAMES, width=160, height=96, gop=GOP, seed=1, scene=0)
    return path


@pytest.fixture(scope="module")
def vfr_video(media_dir) -> Path:
    path = media_dir / "vfr.mp4"
    demo.make_video(path, n_frames=40, width=128, height=72, vfr=True, gop=8, seed=2, scene=1)
    return path


@pytest.fixture(scope="module")
def vp9_video(media_dir) -> Path:
    path = media_dir / "clip.webm"
    demo.make_video(path, n_frames=32, width=128, height=72, codec="libvpx-vp9", gop=8, seed=3)
    return path

"""Shared helpers and fixtures of the media tests: decoding, plain-PyAV references, tiny videos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from winnow import demo, media
from winnow.records import FileRef, FileResult, FrameBatch

SIZE = 32
N_FRAMES = 60
GOP = 10


def _ref(path: Path, kind: str = "video", key: str | None = None, fp: str = "fp:1") -> FileRef:
    return FileRef(key=key or path.name, fingerprint=fp, size_bytes=path.stat().st_size, kind=kind)


def _decode(path: Path, kind: str = "video", *, size: int = SIZE, chunk_frames: int = 64, **opts):
    """(batches, result) of decode_file, checking the stream's shape on the way."""
    items = list(
        media.decode_file(
            path,
            _ref(path, kind),
            size=size,
            options=media.FrameOptions(**opts),
            chunk_frames=chunk_frames,
        )
    )
    assert isinstance(items[-1], FileResult)
    assert all(isinstance(b, FrameBatch) for b in items[:-1])
    return items[:-1], items[-1]


def _indices(batches: list[FrameBatch]) -> list[int]:
    return [int(i) for b in batches for i in b.frame_index]


def _pts(batches: list[FrameBatch]) -> list[float]:
    return [float(t) for b in batches for t in b.pts_seconds]


def _pixels(batches: list[FrameBatch]) -> np.ndarray:
    return np.concatenate([b.pixels for b in batches])


def _reference(path: Path) -> tuple[list[float], list[np.ndarray], list[int]]:
    """Plain PyAV: (pts seconds, full-size RGB frames, keyframe indices) in decoder output order.

    Decoders output frames in presentation order; keyframe indices are ranks of packet pts.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
        tb = stream.time_base
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    order = sorted(pts for pts, _ in packets)
    keys = sorted(order.index(pts) for pts, key in packets if key)
    return [float(p * tb) for p, _ in frames], [f for _, f in frames], keys


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img).astype(np.int16)


def _write_frames(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """A video of exactly these RGB frames (near-lossless h264)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "1", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


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

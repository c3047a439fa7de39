"""Bad input becomes a record with a reason (media._sniff and the per-file boundary)."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest

from tests.unit.media.conftest import GOP, N_FRAMES, _decode, _indices, _pixels
from winnow import demo


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        samples = np.zeros((1, 1024), np.float32)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def sources(media_dir) -> dict[str, bytes]:
    """Bytes of a moov-at-the-end MP4 and of a JPEG, to cut and mislabel."""
    path = media_dir / "plain.mp4"
    with av.open(str(path), "w") as container:  # no faststart: the index is at the end
        stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            frame = np.full((48, 64, 3), 128, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    demo.make_image(media_dir / "pic.jpg", width=64, height=48)
    return {"mp4": path.read_bytes(), "jpeg": (media_dir / "pic.jpg").read_bytes()}


def _header_only(kind: str, width: int, height: int) -> bytes:
    """An image file with a header claiming width x height and no pixels Pillow can read."""
    if kind == "png":
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + crc
    if kind == "gif":
        return b"GIF89a" + struct.pack("<HH", width, height)
    return b"BM" + bytes(16) + struct.pack("<ii", width, -height)  # a BMP stored top-down


BAD_INPUT = [
    ("empty.mp4", lambda s: b"", "corrupt", r"^zero-byte file$"),
    ("empty.jpg", lambda s: b"", "corrupt", r"^zero-byte file$"),
    ("notes.mp4", lambda s: b"hello\n" * 50, "corrupt", r"^not a video: .*looks like text"),
    ("notes.jpg", lambda s: b"hello\n" * 50, "corrupt", r"^not an image: .*looks like text"),
    ("noise.mkv", lambda s: bytes(range(256)) * 16, "corrupt", r"^not a video: Invalid data"),
    ("noise.png", lambda s: bytes(range(256)) * 16, "corrupt", r"^not an image: "),
    ("clip.jpg", lambda s: s["mp4"], "corrupt", r"^not an image: .*an MP4/MOV video"),
    ("photo.mp4", lambda s: s["jpeg"], "corrupt", r"^not a video: content is a JPEG image"),
    (
        "cut.mp4",
        lambda s: s["mp4"][: len(s["mp4"]) // 2],
        "corrupt",
        r"^truncated or damaged video",
    ),
    (
        "cut.jpg",
        lambda s: s["jpeg"][: len(s["jpeg"]) // 2],
        "corrupt",
        r"^damaged image: .*truncated",
    ),
    # A header that claims a huge picture, and nothing after it: the size limit is the reason,
    # not "Pillow cannot identify the format" (Pillow gives up before it checks the size).
    *(
        (
            f"huge-header.{kind}",
            lambda s, kind=kind: _header_only(kind, 65535, 65535),
            "skipped",
            r"^over the pixel budget: 65535x65535 = 4294\.8 MP per frame, frames\.max_pixels is 100",
        )
        for kind in ("png", "gif", "bmp")
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "status", "reason"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT]
)
def test_bad_input_becomes_a_record_with_a_reason(
    media_dir, sources, name, content, status, reason
):
    path = media_dir / "bad" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content(sources))
    kind = "image" if name.endswith((".jpg", ".png", ".gif", ".bmp")) else "video"
    batches, result = _decode(path, kind=kind)
    assert batches == []
    assert result.status == status and result.frames_sampled == 0
    assert result.error is not None
    assert re.search(reason, result.error), result.error


def test_audio_only_container_is_skipped(media_dir):
    path = media_dir / "voice.mp4"
    _audio_only(path)
    batches, result = _decode(path)
    assert batches == [] and (result.status, result.error) == ("skipped", "no video stream")


def test_video_cut_mid_stream_keeps_the_frames_before_the_cut(media_dir, gop_video):
    whole = media_dir / "whole.mp4"  # faststart: the index is in front, the frames get cut
    demo.make_video(whole, n_frames=N_FRAMES, width=160, height=96, seed=1, scene=0, gop=GOP)
    cut = media_dir / "cut-mid.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    batches, result = _decode(cut)
    full, _ = _decode(whole)
    n = result.frames_sampled
    assert result.status == "ok"
    assert re.match(rf"^partial: decoding stopped after {n} frames: \w", result.error)
    assert 0 < n < N_FRAMES and result.frames_total == N_FRAMES
    assert _indices(batches) == list(range(n))
    assert np.array_equal(_pixels(batches), _pixels(full)[:n])  # frames before the cut are valid
    # keyframe sampling never sends the cut packet to the decoder: the intact keyframes come out
    keys, keys_result = _decode(cut, keyframes_only=True)
    assert keys_result.status == "ok" and _indices(keys)[0] == 0
    assert set(_indices(keys)) <= set(range(0, N_FRAMES, GOP))

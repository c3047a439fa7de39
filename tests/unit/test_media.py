"""winnow.media: frame sampling, rotation, chunking, images, bad input, seeking, metadata.

Every video here is made in the test with PyAV (through winnow.demo or directly) and checked
against an independent plain-PyAV decode of the same file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin
from pydantic import ValidationError

from winnow import demo, media
from winnow.errors import ConfigError, DecodeError
from winnow.records import FileRef, FileResult, FrameBatch, sample_id_for

SIZE = 32
N_FRAMES = 60
GOP = 10


# --------------------------------------------------------------------------------------------
# helpers


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


# --------------------------------------------------------------------------------------------
# sampling modes


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


# --------------------------------------------------------------------------------------------
# rotation, chunking, ids, hashes


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


def test_chunks_are_bounded_and_the_file_result_comes_last(gop_video):
    items = list(
        media.decode_file(
            gop_video,
            _ref(gop_video),
            size=SIZE,
            options=media.FrameOptions(),
            chunk_frames=16,
        )
    )
    assert [type(i).__name__ for i in items] == ["FrameBatch"] * 4 + ["FileResult"]
    assert [len(b) for b in items[:-1]] == [16, 16, 16, 12]
    assert all(b.pixels.shape[0] == len(b) for b in items[:-1])
    assert _indices(items[:-1]) == list(range(N_FRAMES))


def test_consumer_can_stop_early(gop_video):
    stream = media.decode_file(
        gop_video, _ref(gop_video), size=SIZE, options=media.FrameOptions(), chunk_frames=8
    )
    first = next(stream)
    stream.close()  # closes the container; no error
    assert isinstance(first, FrameBatch) and len(first) == 8


def test_sample_ids_and_hashes_are_stable(gop_video):
    first, _ = _decode(gop_video, every_n_frames=5)
    again, _ = _decode(gop_video, every_n_frames=5)
    ids = [s for b in first for s in b.sample_id]
    assert ids == [s for b in again for s in b.sample_id]
    assert ids == [sample_id_for(gop_video.name, "fp:1", i) for i in range(0, N_FRAMES, 5)]
    assert len(set(ids)) == len(ids)
    batch = first[0]
    assert list(batch.key) == [gop_video.name] * len(batch)
    assert list(batch.fingerprint) == ["fp:1"] * len(batch)
    assert [h for b in first for h in b.content_hash] == [h for b in again for h in b.content_hash]
    assert (
        batch.content_hash[1]
        == hashlib.blake2b(batch.pixels[1].tobytes(), digest_size=8).hexdigest()
    )


def test_column_dtypes_match_the_records(gop_video):
    (batch, *_), _ = _decode(gop_video, max_frames_per_video=3)
    for name, dtype in FrameBatch.empty_meta().items():
        assert getattr(batch, name).dtype == dtype.dtype, name
        assert len(getattr(batch, name)) == 3


# --------------------------------------------------------------------------------------------
# metadata


@pytest.fixture(scope="module")
def flat_and_noisy(media_dir) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    black = [np.zeros((64, 64, 3), np.uint8)] * 4
    noise = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    _write_frames(media_dir / "black.mp4", black)
    _write_frames(media_dir / "noise.mp4", noise)
    return media_dir / "black.mp4", media_dir / "noise.mp4"


def test_black_frames_are_dark_flat_and_identical(flat_and_noisy):
    batches, _ = _decode(flat_and_noisy[0])
    b = batches[0]
    assert b.brightness.max() < 0.01 and b.contrast.max() < 0.01 and b.sharpness.max() < 1e-4
    assert len(set(b.content_hash)) == 1  # exact duplicates share a hash


def test_noisy_frames_are_sharp_with_contrast(flat_and_noisy, gop_video):
    noisy, _ = _decode(flat_and_noisy[1], size=64)  # at its own size: no smoothing
    street, _ = _decode(gop_video, size=64)
    n, s = noisy[0], street[0]
    assert n.sharpness.min() > 0.2 and s.sharpness.min() > 1e-4
    assert n.sharpness.min() > 10 * s.sharpness.max()
    assert n.contrast.min() > 0.15 and 0.35 < n.brightness.mean() < 0.65
    assert len(set(n.content_hash)) == len(n)


def test_video_metadata_agrees_with_the_pixels(gop_video):
    # Videos read luma from the decoder's Y plane; it must agree with BT.601 luma of the RGB.
    batches, _ = _decode(gop_video, size=64, every_n_frames=10)
    px = _pixels(batches).astype(np.float64) / 255
    luma = px @ np.array([0.299, 0.587, 0.114])
    brightness = np.concatenate([b.brightness for b in batches])
    contrast = np.concatenate([b.contrast for b in batches])
    assert np.abs(brightness - luma.mean(axis=(1, 2))).max() < 0.02
    assert np.abs(contrast - luma.std(axis=(1, 2))).max() < 0.02


def test_image_metadata_is_exact(media_dir):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(media_dir / "exact.png")
    (batch,), _ = _decode(media_dir / "exact.png", kind="image")
    assert np.array_equal(batch.pixels[0], pixels)  # already at size: no resampling
    rgb = pixels.astype(np.int64)
    y = ((77 * rgb[..., 0] + 150 * rgb[..., 1] + 29 * rgb[..., 2] + 128) >> 8) / 255
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]
    assert batch.brightness[0] == pytest.approx(y.mean(), abs=1e-6)
    assert batch.contrast[0] == pytest.approx(y.std(), abs=1e-6)
    assert batch.sharpness[0] == pytest.approx(lap.var(), rel=1e-5)


# --------------------------------------------------------------------------------------------
# images


def test_jpeg_is_decoded_at_size_with_draft(media_dir, monkeypatch):
    path = media_dir / "big.jpg"
    demo.make_image(path, width=640, height=360, seed=5, scene=3)
    drafts: list[tuple] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafts.append((mode, size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    (batch,), result = _decode(path, kind="image")
    # the JPEG decoder downscaled in the DCT domain (8x here), not after a full decode
    assert drafts == [("RGB", (SIZE, SIZE), (80, 45))]
    assert (result.status, result.width, result.height) == ("ok", 640, 360)
    assert (result.frames_total, result.frames_sampled) == (1, 1)
    assert batch.pixels.shape == (1, SIZE, SIZE, 3)
    assert (batch.frame_index[0], batch.pts_seconds[0]) == (0, 0.0)
    assert (batch.width[0], batch.height[0]) == (640, 360)
    full = np.asarray(Image.open(path).convert("RGB"))
    assert np.abs(batch.pixels[0].astype(np.int16) - _resize(full, SIZE)).mean() < 6


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(media_dir, fmt):
    # a 60x40 picture whose left half is red; EXIF orientation 6 = rotate 90 deg clockwise
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[:, :30] = (255, 0, 0)
    picture[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = media_dir / f"oriented.{fmt.lower()}"
    Image.fromarray(picture).save(path, format=fmt, exif=exif)
    (batch,), result = _decode(path, kind="image")
    assert (result.width, result.height) == (40, 60)  # displayed size
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert upright.shape == (60, 40, 3)
    top, bottom = batch.pixels[0, : SIZE // 3], batch.pixels[0, -SIZE // 3 :]
    assert top[..., 0].mean() > 200 and bottom[..., 2].mean() > 200  # red now on top
    assert np.array_equal(media.load_image(path), upright)


def test_palette_and_alpha_images_become_rgb(media_dir):
    path = media_dir / "rgba.png"
    Image.new("RGBA", (50, 30), (10, 200, 30, 128)).save(path)
    (batch,), result = _decode(path, kind="image")
    assert result.status == "ok" and batch.pixels.shape == (1, SIZE, SIZE, 3)
    Image.new("P", (20, 20), 3).save(media_dir / "pal.png")
    assert _decode(media_dir / "pal.png", kind="image")[1].status == "ok"


def test_load_image_rejects_non_images(media_dir):
    path = media_dir / "notes.png"
    path.write_text("hello")
    with pytest.raises(DecodeError, match="not an image.*text"):
        media.load_image(path)


# --------------------------------------------------------------------------------------------
# bad input


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
    kind = "image" if name.endswith((".jpg", ".png")) else "video"
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


# --------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"every_n_frames": 0}, "greater than or equal to 1"),
        ({"sample_fps": 0}, "greater than 0"),
        ({"sample_fps": -1.5}, "greater than 0"),
        ({"max_frames_per_video": 0}, "greater than or equal to 1"),
        (
            {"every_n_frames": 2, "sample_fps": 1.0},
            "at most one of .*every_n_frames and sample_fps",
        ),
        ({"keyframes_only": True, "every_n_frames": 3}, "at most one of"),
        ({"keyframes_only": True, "sample_fps": 3}, "at most one of"),
        ({"fps": 3}, "Extra inputs are not permitted"),
    ],
)
def test_frame_options_reject_bad_values(values, match):
    with pytest.raises(ValidationError, match=match):
        media.FrameOptions(**values)


def test_frame_options_default_to_every_frame():
    opts = media.FrameOptions()
    assert opts.every_n_frames is None and opts.sample_fps is None
    assert opts.keyframes_only is False and opts.max_frames_per_video is None
    # a cap combines with any one mode
    assert media.FrameOptions(keyframes_only=True, max_frames_per_video=3).keyframes_only
    for name, field in media.FrameOptions.model_fields.items():
        assert field.description, name


def test_bad_sizes_raise_config_error(gop_video):
    with pytest.raises(ConfigError, match="must be positive"):
        media.decode_file(gop_video, _ref(gop_video), size=0, options=media.FrameOptions())


# --------------------------------------------------------------------------------------------
# extract_frames


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

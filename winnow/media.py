"""Decode images (Pillow) and sample video frames (PyAV) at model size, with per-frame metadata.

`decode_file` turns one file into `FrameBatch` chunks followed by exactly one `FileResult`; it
never raises for bad media. Frames are resized to the model's square input inside PyAV or
Pillow (never as full-size float tensors), rotation metadata is applied, and each frame gets
its presentation index, timestamp, brightness, contrast, sharpness and a content hash.
`extract_frames` re-decodes chosen frames at full resolution by seeking (for exports).
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from winnow.errors import ConfigError, DecodeError, EmptyVideoError, UnsupportedMediaError
from winnow.records import FileRef, FileResult, FrameBatch, sample_id_for

__all__ = ["FrameOptions", "decode_file", "extract_frames", "load_image"]


class FrameOptions(BaseModel):
    """How frames are sampled from videos.

    With no sampling mode set, every frame is kept. At most one of `every_n_frames`,
    `sample_fps` and `keyframes_only` may be set; `max_frames_per_video` caps any of them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="Frames")

    every_n_frames: int | None = Field(
        None,
        ge=1,
        description="Keep every n-th frame (presentation index divisible by n). "
        "Empty: no frame-count sampling.",
    )
    sample_fps: float | None = Field(
        None,
        gt=0,
        description="Keep about this many frames per second of video: the first frame at or "
        "after each multiple of 1/fps seconds. Empty: no time-based sampling.",
    )
    keyframes_only: bool = Field(
        False,
        description="Keep only keyframes; the other packets are never decoded (fastest).",
    )
    max_frames_per_video: int | None = Field(
        None,
        ge=1,
        description="At most this many frames per video, spread evenly over the whole video. "
        "Empty: no cap.",
    )

    @model_validator(mode="after")
    def _one_sampling_mode(self) -> FrameOptions:
        chosen = [
            name
            for name, on in (
                ("every_n_frames", self.every_n_frames is not None),
                ("sample_fps", self.sample_fps is not None),
                ("keyframes_only", self.keyframes_only),
            )
            if on
        ]
        if len(chosen) > 1:
            raise ValueError(
                f"choose at most one of every_n_frames, sample_fps and keyframes_only "
                f"(got {' and '.join(chosen)})"
            )
        return self


# --------------------------------------------------------------------------------------------
# public API


def decode_file(
    path: Path,
    ref: FileRef,
    *,
    size: int,
    options: FrameOptions,
    chunk_frames: int = 64,
) -> Iterator[FrameBatch | FileResult]:
    """Decode one image or video file into model-size frames.

    `ref.kind` picks the decoder. Frames are squashed to `size` x `size` RGB (aspect ratio not
    kept), with EXIF orientation or display rotation applied. Bad media never raises: it ends
    in a `FileResult` with status `corrupt` (or `skipped` for a file without a video stream)
    and a reason in `error`. A video that breaks after some frames keeps those frames and
    reports `ok` with `error` starting with `partial:`.

    Args:
        path: Local file holding the content.
        ref: The file's identity (key, fingerprint, size, kind), copied into every record.
        size: Side of the square model input, in pixels.
        options: How video frames are sampled (ignored for images).
        chunk_frames: Most frames per yielded `FrameBatch`, so memory never depends on a
            video's length.

    Yields:
        `FrameBatch` chunks of at most `chunk_frames` frames in presentation order, then
        exactly one `FileResult` as the last item.

    Raises:
        ConfigError: If `size` or `chunk_frames` is not positive (before anything is yielded).
    """
    if size < 1 or chunk_frames < 1:
        raise ConfigError(
            f"decode_file: size and chunk_frames must be positive, got {size} and {chunk_frames}"
        )
    if ref.kind == "image":
        return _decode_image(path, ref, size=size)
    return _decode_video(path, ref, size=size, options=options, chunk_frames=chunk_frames)


def extract_frames(
    path: Path, targets: Sequence[tuple[int, float]]
) -> Iterator[tuple[int, np.ndarray]]:
    """Full-resolution frames of a video, re-decoded by seeking.

    For each target the decoder seeks to the keyframe before it and decodes forward to the
    frame with exactly that timestamp (nearby targets share one forward pass).

    Args:
        path: The video file.
        targets: `(frame_index, pts_seconds)` pairs as reported by `decode_file`.

    Yields:
        `(frame_index, frame)` in ascending `frame_index` order, one per distinct index;
        `frame` is RGB uint8 (H, W, 3) with display rotation applied.

    Raises:
        DecodeError: If the file cannot be opened as a video or a target frame is not found.
    """
    wanted: dict[int, float] = {}
    for index, pts in targets:
        wanted.setdefault(int(index), float(pts))
    if not wanted:
        return
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise UnsupportedMediaError(f"{path.name}: cannot open as a video: {_reason(exc)}") from exc
    with container:
        stream = _video_stream(container)
        if stream is None:
            raise EmptyVideoError(f"{path.name}: no video stream to extract frames from")
        try:
            yield from _Extractor(container, stream, path).run(sorted(wanted.items()))
        except av.FFmpegError as exc:
            raise DecodeError(f"{path.name}: decoding failed: {_reason(exc)}") from exc


def load_image(path: Path) -> np.ndarray:
    """Full-size RGB uint8 picture of an image file, EXIF orientation applied.

    Args:
        path: The image file.

    Returns:
        Array (H, W, 3).

    Raises:
        UnsupportedMediaError: If the content is not an image Pillow can identify.
        DecodeError: If the image is truncated or damaged.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(f"{path.name}: {_not_an_image(path)}") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{path.name}: damaged image: {exc}") from exc


# --------------------------------------------------------------------------------------------
# chunks of frames and their metadata


class _Chunks:
    """Collects model-size frames of one file and emits them as `FrameBatch` chunks."""

    def __init__(self, ref: FileRef, size: int, chunk_frames: int) -> None:
        self.ref, self.size, self.cap = ref, size, chunk_frames
        self.count = 0  # frames added over the whole file
        self.n = 0  # frames in the current chunk (its buffers are allocated on the first one)

    def _new(self) -> None:
        n, s = self.cap, self.size
        self.pixels = np.empty((n, s, s, 3), np.uint8)
        self.luma = np.empty((n, s, s), np.uint8)
        # Luma in [0, 1] = (luma - offset) * scale: 16/219 for limited-range video, 0/255 else.
        self.offset = np.empty(n, np.float32)
        self.scale = np.empty(n, np.float32)
        self.index = np.empty(n, np.int64)
        self.pts = np.empty(n, np.float64)
        self.width = np.empty(n, np.int32)
        self.height = np.empty(n, np.int32)

    def add(
        self,
        *,
        index: int,
        pts: float,
        rgb: np.ndarray,
        luma: np.ndarray | None,
        full_range: bool,
        width: int,
        height: int,
    ) -> FrameBatch | None:
        """Add one frame; return a full chunk when this frame fills it."""
        i = self.n
        if i == 0:
            self._new()  # fresh buffers: yielded chunks are never overwritten
        self.pixels[i] = rgb
        if luma is None:  # BT.601 luma of the RGB frame (images, non-YUV video)
            px = self.pixels[i].astype(np.uint16)
            self.luma[i] = (77 * px[..., 0] + 150 * px[..., 1] + 29 * px[..., 2] + 128) >> 8
            full_range = True
        else:
            self.luma[i] = luma
        self.offset[i], self.scale[i] = (0.0, 1 / 255) if full_range else (16.0, 1 / 219)
        self.index[i], self.pts[i], self.width[i], self.height[i] = index, pts, width, height
        self.n += 1
        self.count += 1
        return self.flush() if self.n == self.cap else None

    def flush(self) -> FrameBatch | None:
        """The frames collected since the last chunk, if any."""
        n = self.n
        if n == 0:
            return None
        pixels = self.pixels[:n]
        brightness, contrast, sharpness = _frame_stats(
            self.luma[:n], self.offset[:n], self.scale[:n]
        )
        key, fp = self.ref.key, self.ref.fingerprint
        index = self.index[:n].copy()
        batch = FrameBatch(
            sample_id=np.array([sample_id_for(key, fp, int(i)) for i in index], dtype=object),
            key=np.full(n, key, dtype=object),
            fingerprint=np.full(n, fp, dtype=object),
            content_hash=np.array(
                [hashlib.blake2b(pixels[i], digest_size=8).hexdigest() for i in range(n)],
                dtype=object,
            ),
            frame_index=index,
            pts_seconds=self.pts[:n].copy(),
            width=self.width[:n].copy(),
            height=self.height[:n].copy(),
            brightness=brightness,
            contrast=contrast,
            sharpness=sharpness,
            pixels=pixels,
        )
        self.n = 0
        return batch


def _moments(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and mean square of each row (float32 in, float64 out; BLAS dot per row)."""
    k = rows.shape[1]
    mean = rows.sum(axis=1, dtype=np.float64) / k
    square = np.array([float(np.dot(r, r)) for r in rows]) / k
    return mean, square


def _frame_stats(
    luma: np.ndarray, offset: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brightness, contrast and sharpness of N luma planes (uint8, N x S x S).

    With luma in [0, 1] taken as `(Y - offset) * scale`: brightness and contrast are its mean
    and standard deviation, sharpness the variance of its 4-neighbour Laplacian over the
    interior pixels.
    """
    # Algorithm: integer Laplacian on the 8-bit plane (int16 holds -1020..1020), moments from
    # sums; the affine map to [0, 1] is applied to the moments, not to every pixel.
    n = len(luma)
    out = np.zeros((3, n), np.float64)
    block = 8  # frames per step: keeps the temporaries in cache
    for start in range(0, n, block):
        stop = min(start + block, n)
        y = luma[start:stop].astype(np.int16)
        mean, square = _moments(y.reshape(stop - start, -1).astype(np.float32))
        out[0, start:stop] = mean
        out[1, start:stop] = np.sqrt(np.maximum(square - mean**2, 0.0))
        if y.shape[1] >= 3 and y.shape[2] >= 3:
            lap = y[:, :-2, 1:-1] + y[:, 2:, 1:-1]
            lap += y[:, 1:-1, :-2]
            lap += y[:, 1:-1, 2:]
            lap -= 4 * y[:, 1:-1, 1:-1]
            mean, square = _moments(lap.reshape(stop - start, -1).astype(np.float32))
            out[2, start:stop] = np.maximum(square - mean**2, 0.0)
    scale = scale.astype(np.float64)
    brightness = np.clip((out[0] - offset) * scale, 0.0, 1.0)
    return (
        brightness.astype(np.float32),
        (out[1] * scale).astype(np.float32),
        (out[2] * scale**2).astype(np.float32),
    )


# --------------------------------------------------------------------------------------------
# images


def _decode_image(path: Path, ref: FileRef, *, size: int) -> Iterator[FrameBatch | FileResult]:
    if _file_size(path) == 0:
        yield FileResult.for_ref(ref, status="corrupt", error="zero-byte file")
        return
    try:
        rgb, width, height = _image_at_size(path, size)
    except UnidentifiedImageError:
        yield FileResult.for_ref(ref, status="corrupt", error=_not_an_image(path))
        return
    except Exception as exc:  # per-file boundary: any decoder failure is a corrupt file
        yield FileResult.for_ref(ref, status="corrupt", error=f"damaged image: {_reason(exc)}")
        return
    chunks = _Chunks(ref, size, 1)
    batch = chunks.add(
        index=0, pts=0.0, rgb=rgb, luma=None, full_range=True, width=width, height=height
    )
    assert batch is not None
    yield batch
    yield FileResult.for_ref(
        ref, status="ok", frames_total=1, frames_sampled=1, width=width, height=height
    )


def _image_at_size(path: Path, size: int) -> tuple[np.ndarray, int, int]:
    """The picture squashed to size x size RGB, and its full size after orientation."""
    with Image.open(path) as im:
        width, height = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that swap axes
            width, height = height, width
        if im.format == "JPEG":
            im.draft("RGB", (size, size))  # DCT-domain downscale: decodes 2-8x fewer pixels
        im = ImageOps.exif_transpose(im)
        if im.mode != "RGB":
            im = im.convert("RGB")
        im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im), width, height


def _not_an_image(path: Path) -> str:
    what = _sniff(path)
    return "not an image: Pillow cannot identify the format" + (
        f" (content looks like {what})" if what else ""
    )


# --------------------------------------------------------------------------------------------
# videos

# Container formats that FFmpeg opens as one-frame "videos" but that are still images.
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "apng", "webp", "ico", "tiff", "bmp"})
# 8-bit formats whose first plane is luma (read directly instead of recomputing it from RGB).
_Y8_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)


def _decode_threads() -> int:
    """Decoder threads per file: one per available core (2 is fastest on 2 cores), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _decode_video(
    path: Path, ref: FileRef, *, size: int, options: FrameOptions, chunk_frames: int
) -> Iterator[FrameBatch | FileResult]:
    if _file_size(path) == 0:
        yield FileResult.for_ref(ref, status="corrupt", error="zero-byte file")
        return
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as exc:  # per-file boundary: unreadable containers are corrupt files
        what = _sniff(path)
        if what is not None and what.endswith(" video"):  # right kind of file, unreadable
            error = f"truncated or damaged video: {_reason(exc)} (content starts like {what})"
        else:
            error = f"not a video: {_reason(exc)}" + (
                f" (content looks like {what})" if what else ""
            )
        yield FileResult.for_ref(ref, status="corrupt", error=error)
        return
    with container:
        try:
            refusal = _refuse(container, path)
            if refusal is None:
                stream = _video_stream(container)
                decoder = _VideoDecoder(path, container, stream, size=size, options=options)
        except Exception as exc:  # per-file boundary: the codec cannot be set up
            refusal = ("corrupt", f"not decodable: {_reason(exc)}")
        if refusal is not None:
            yield FileResult.for_ref(ref, status=refusal[0], error=refusal[1])
            return
        chunks = _Chunks(ref, size, chunk_frames)
        frames = decoder.frames()
        error: str | None = None
        try:
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except Exception as exc:  # per-file boundary: the decoder broke mid-stream
                    error = _reason(exc)
                    break
                batch = chunks.add(**frame)
                if batch is not None:
                    yield batch
        finally:
            frames.close()
        batch = chunks.flush()
        if batch is not None:
            yield batch
    yield _video_result(ref, decoder, chunks.count, error)


def _refuse(container: Any, path: Path) -> tuple[str, str] | None:
    """(status, reason) when an opened container holds no video to decode, else None."""
    names = set(container.format.name.split(","))
    if any(n.endswith("_pipe") or n in _IMAGE_DEMUXERS for n in names):
        what = _sniff(path) or f"an image ({container.format.name})"
        return "corrupt", f"not a video: content is {what}"
    stream = _video_stream(container)
    if stream is None:
        if container.streams.audio:
            return "skipped", "no video stream"
        what = _sniff(path)
        if what is not None and what.endswith(" video"):
            return (
                "corrupt",
                f"truncated or damaged video: no stream found (content starts like {what})",
            )
        return "corrupt", "not a video: no video or audio stream"
    if stream.codec_context is None:
        return "corrupt", f"unsupported video codec {stream.codec.name if stream.codec else '?'}"
    return None


def _video_result(
    ref: FileRef, decoder: _VideoDecoder, sampled: int, error: str | None
) -> FileResult:
    total = decoder.frames_total()
    common = {"frames_total": total, "width": decoder.width, "height": decoder.height}
    if error is not None:
        if decoder.decoded == 0:
            return FileResult.for_ref(ref, status="corrupt", error=f"no decodable frame: {error}")
        where = f"decoding stopped after {decoder.decoded} frames: {error}"
        if sampled == 0:
            return FileResult.for_ref(
                ref, status="corrupt", error=f"{where} (before the first sampled frame)", **common
            )
        return FileResult.for_ref(
            ref, status="ok", error=f"partial: {where}", frames_sampled=sampled, **common
        )
    if decoder.decoded == 0:
        reason = "no keyframe packet" if decoder.options.keyframes_only else "no decodable frame"
        return FileResult.for_ref(
            ref, status="corrupt", error=f"{reason}: the decoder returned no frame", **common
        )
    if sampled == 0:
        return FileResult.for_ref(ref, status="skipped", error="no frame sampled", **common)
    return FileResult.for_ref(ref, status="ok", frames_sampled=sampled, **common)


def _video_stream(container: Any) -> Any:
    """The first video stream that is not an attached picture (cover art), or None."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


@dataclass
class _PacketIndex:
    """Timestamps of every packet of a stream, from a demux-only pass (no decoding)."""

    pts: np.ndarray  # int64, presentation order (sorted)
    key_pts: np.ndarray  # int64, keyframe packets' pts, sorted
    ordered: bool  # False when some packet had no timestamp (ranks by packet order instead)
    complete: bool  # False when demuxing stopped on an error


def _index_packets(path: Path, stream_index: int) -> _PacketIndex:
    pts: list[int] = []
    keys: list[int] = []  # positions in `pts` of keyframe packets
    ordered, complete = True, True
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams[stream_index]
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    ordered, ts = False, -1
                if packet.is_keyframe:
                    keys.append(len(pts))
                pts.append(ts)
        except av.FFmpegError:
            complete = False
    stamps = np.asarray(pts, np.int64) if ordered else np.arange(len(pts), dtype=np.int64)
    return _PacketIndex(
        pts=np.sort(stamps),
        key_pts=np.sort(stamps[np.asarray(keys, np.int64)]),
        ordered=ordered,
        complete=complete,
    )


class _BestEffortTimestamp:
    """FFmpeg's `guess_correct_pts`: use pts unless it goes backwards more often than dts.

    Frame pts are wrong in some files (AVI with B-frames stores decode times only).
    """

    def __init__(self) -> None:
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.pts_faults = self.dts_faults = 0

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.dts_faults += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.pts_faults += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (self.pts_faults <= self.dts_faults or dts is None):
            return pts
        return dts


class _FpsRule:
    """`sample_fps`: keep the first frame at or after each multiple of 1/fps seconds."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.next = 0  # the multiple of 1/fps still waiting for a frame

    def keep(self, seconds: float) -> bool:
        ticks = seconds * self.fps
        if ticks < self.next - 1e-6:
            return False
        self.next = int(np.floor(ticks + 1e-6)) + 1
        return True


def _spread(n_candidates: int, cap: int) -> set[int]:
    """Ordinals of `cap` candidates spread evenly over `n_candidates` (first and last kept)."""
    if n_candidates <= cap:
        return set(range(n_candidates))
    return {int(i) for i in np.round(np.linspace(0, n_candidates - 1, cap))}


class _VideoDecoder:
    """Sequential (or keyframe-only) decoding of one video stream to model-size frames."""

    def __init__(
        self, path: Path, container: Any, stream: Any, *, size: int, options: FrameOptions
    ) -> None:
        self.path, self.container, self.stream = path, container, stream
        self.size, self.options = size, options
        self.tb = stream.time_base or Fraction(1, 90000)
        self.rate = stream.average_rate or stream.guessed_rate
        self.container_frames = int(stream.frames or 0)
        self.decoded = 0  # frames out of the decoder
        self.complete = False  # decoded to the end (not stopped early, no error)
        self.index: _PacketIndex | None = None
        self.index_ordered = True  # packet timestamps usable (keyframe mode)
        self.width = self.height = 0
        self._scale = VideoReformatter()
        self._rgb = VideoReformatter()
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = _decode_threads()

    def frames_total(self) -> int:
        """Frames in the video: demuxed packets, frames decoded to the end, or the header's count."""
        if self.index is not None and self.index.complete:
            return len(self.index.pts)
        if self.complete:
            return self.decoded
        return max(self.container_frames, self.decoded)

    def frames(self) -> Iterator[dict[str, Any]]:
        """Kept frames as keyword arguments of `_Chunks.add`, in presentation order."""
        opts = self.options
        if opts.keyframes_only or opts.max_frames_per_video is not None:
            self.index = _index_packets(self.path, self.stream.index)
        if opts.keyframes_only:
            yield from self._keyframes()
        else:
            yield from self._sequential()

    def _seconds(self, pts: int | None, index: int) -> float:
        """Seconds of a timestamp in the stream's time base (frame rate when it has none)."""
        if pts is not None:
            return float(pts * self.tb)
        return index / float(self.rate) if self.rate else 0.0

    def _sequential(self) -> Iterator[dict[str, Any]]:
        opts = self.options
        every = opts.every_n_frames or 1
        fps_rule = _FpsRule(opts.sample_fps) if opts.sample_fps is not None else None
        cap = opts.max_frames_per_video
        chosen: set[int] | None = None
        if cap is not None and self.index is not None and len(self.index.pts):
            chosen = _spread(self._count_candidates(), cap)
        last = max(chosen) if chosen else -1
        candidate = -1
        origin: float | None = None
        timestamp = _BestEffortTimestamp()
        for index, frame in enumerate(self.container.decode(self.stream)):
            self.decoded = index + 1
            seconds = self._seconds(timestamp(frame.pts, frame.dts), index)
            if origin is None:
                origin = seconds
                self._note_size(frame)
            if index % every:
                continue
            if fps_rule is not None and not fps_rule.keep(seconds - origin):
                continue
            candidate += 1
            if cap is not None and chosen is None and candidate >= cap:
                return  # frame count unknown: the first `cap` candidates
            if chosen is not None:
                if candidate > last:
                    return  # every chosen frame is out: stop decoding
                if candidate not in chosen:
                    continue
            yield self._convert(frame, index, seconds)
        self.complete = True

    def _count_candidates(self) -> int:
        """How many frames the sampling rule keeps, from the packet index (no decoding)."""
        assert self.index is not None
        pts = self.index.pts
        opts = self.options
        if opts.every_n_frames is not None:
            return -(-len(pts) // opts.every_n_frames)
        if opts.sample_fps is not None and self.index.ordered and len(pts):
            rule = _FpsRule(opts.sample_fps)
            tb = float(self.tb)
            return sum(rule.keep(float(p - pts[0]) * tb) for p in pts)
        return len(pts)

    def _keyframes(self) -> Iterator[dict[str, Any]]:
        # Algorithm: only keyframe packets go to the decoder (VP9 ignores skip_frame, so
        # skipping must happen before decoding); a keyframe's presentation index is its rank
        # among the timestamps of all packets, known from the demux-only pass.
        assert self.index is not None
        index = self.index
        keys = [int(p) for p in index.key_pts]
        if self.options.max_frames_per_video is not None:
            chosen = _spread(len(keys), self.options.max_frames_per_video)
            keys = [k for i, k in enumerate(keys) if i in chosen]
        wanted = set(keys)
        self.index_ordered = index.ordered
        rank = dict(zip(keys, np.searchsorted(index.pts, keys).tolist(), strict=True))
        pending: collections.deque[int] = collections.deque()
        ordinal = -1
        sent = 0
        for packet in self.container.demux(self.stream):
            if not packet.size:
                continue
            ordinal += 1
            if not packet.is_keyframe:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if not index.ordered:
                ts = ordinal
            if ts not in wanted:
                continue
            pending.append(ts)
            sent += 1
            for frame in self.stream.decode(packet):
                yield from self._keyframe_out(frame, pending, rank)
            if sent == len(wanted):
                break
        for frame in self.stream.decode(None):
            yield from self._keyframe_out(frame, pending, rank)
        self.complete = True

    def _keyframe_out(
        self, frame: Any, pending: collections.deque[int], rank: dict[int, int]
    ) -> Iterator[dict[str, Any]]:
        # Frames leave the decoder in the order their packets went in (maybe a few packets
        # later); trust the frame's pts when it names a pending packet, else the packet order.
        if not pending:
            return
        ts = frame.pts if frame.pts in pending else pending[0]
        while pending and pending.popleft() != ts:
            pass
        self.decoded += 1
        if self.decoded == 1:
            self._note_size(frame)
        index = rank[ts]
        yield self._convert(frame, index, self._seconds(ts if self.index_ordered else None, index))

    def _note_size(self, frame: Any) -> None:
        w, h = frame.width, frame.height
        self.width, self.height = (h, w) if _quarter_turns(frame) % 2 else (w, h)

    def _convert(self, frame: Any, index: int, seconds: float) -> dict[str, Any]:
        s = self.size
        # Two steps: scaling in the source pixel format then converting at model size is ~2.5x
        # faster in swscale than one scale+convert call (NOTES: threads=1, reused contexts).
        small = self._scale.reformat(frame, width=s, height=s, interpolation="BILINEAR", threads=1)
        rgb = self._rgb.reformat(small, format="rgb24", threads=1).to_ndarray()
        fmt = small.format.name
        luma = None
        if fmt in _Y8_FORMATS:
            plane = small.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:s, :s]
        turns = _quarter_turns(frame)
        w, h = frame.width, frame.height
        if turns:
            # The frame is square, so rotating after the resize equals resizing after it.
            rgb = np.rot90(rgb, turns)
            if turns % 2:
                w, h = h, w
        return {
            "index": index,
            "pts": seconds,
            "rgb": rgb,
            "luma": luma,
            "full_range": fmt.startswith("yuvj") or fmt == "gray" or small.color_range == 2,
            "width": w,
            "height": h,
        }


def _quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns that display the frame upright (np.rot90's `k`)."""
    degrees = getattr(frame, "rotation", 0)  # PyAV >= 14 reads the display matrix
    return round((degrees or 0) / 90) % 4


# --------------------------------------------------------------------------------------------
# seeking to exact frames


class _Extractor:
    """Finds frames by timestamp: seek to the keyframe before a target, decode forward."""

    def __init__(self, container: Any, stream: Any, path: Path) -> None:
        self.container, self.stream, self.path, self.name = container, stream, path, path.name
        self.tb = stream.time_base or Fraction(1, 90000)
        if stream.codec_context is None:
            raise UnsupportedMediaError(f"{path.name}: unsupported video codec")
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = _decode_threads()
        self._rgb = VideoReformatter()
        self._frames: Iterator[Any] | None = None
        self._last: int | None = None  # pts of the last frame decoded
        # Keyframe timestamps from the container's index (empty when it has none).
        entries = getattr(stream, "index_entries", None) or ()
        self._keys = sorted(e.timestamp for e in entries if e.is_keyframe)

    def run(self, wanted: list[tuple[int, float]]) -> Iterator[tuple[int, np.ndarray]]:
        for pos, (index, seconds) in enumerate(wanted):
            try:
                frame = self._find(round(Fraction(seconds) / self.tb))
            except av.FFmpegError:  # e.g. the format cannot seek
                frame = None
            if frame is None:
                # No frame has that timestamp (unreliable timestamps, e.g. AVI with B-frames)
                # or seeking failed: find this and the remaining targets by counting frames.
                yield from self._by_count(wanted[pos:])
                return
            yield index, self._full(frame)

    def _full(self, frame: Any) -> np.ndarray:
        rgb = self._rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
        turns = _quarter_turns(frame)
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

    def _by_count(self, wanted: list[tuple[int, float]]) -> Iterator[tuple[int, np.ndarray]]:
        todo = dict(wanted)
        last = max(todo)
        decoded = 0
        with av.open(str(self.path), metadata_errors="ignore") as container:
            stream = container.streams[self.stream.index]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = _decode_threads()
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index in todo:
                    del todo[index]
                    yield index, self._full(frame)
                if index >= last:
                    return
        index = min(todo)
        raise DecodeError(
            f"{self.name}: frame {index} at {todo[index]:.3f}s not found "
            f"(the video has {decoded} frames and none at that time)"
        )

    def _decode_from(self, ts: int | None) -> None:
        if ts is not None:
            self.container.seek(ts, stream=self.stream, backward=True)
        else:
            self.container.seek(0)
        self._frames = iter(self.container.decode(self.stream))
        self._last = None

    def _next(self) -> Any:
        assert self._frames is not None
        frame = next(self._frames, None)
        if frame is not None:
            if frame.pts is None:
                raise DecodeError(f"{self.name}: frames carry no timestamps; cannot seek to one")
            self._last = frame.pts
        return frame

    def _continue_forward(self, target: int) -> bool:
        """Whether decoding on from the current position beats a seek."""
        if self._frames is None or self._last is None or self._last >= target:
            return False
        if self._keys:  # no keyframe between here and the target: seeking would land behind us
            i = bisect.bisect_right(self._keys, target) - 1
            return i < 0 or self._keys[i] <= self._last
        return (target - self._last) * self.tb <= 1

    def _find(self, target: int) -> Any:
        if self._continue_forward(target):
            frame = self._next()
        else:
            back = max(1, int(1 / self.tb))  # one second, doubled after each miss
            start: int | None = target
            while True:
                self._decode_from(start)
                frame = self._next()
                if start is None or (frame is not None and frame.pts <= target):
                    break
                # The seek landed after the target (e.g. a keyframe index in decode order) or
                # past the end: retry from further back, from the start as a last resort.
                floor = self.stream.start_time or 0
                start = start - back if start - back > floor else None
                back *= 2
        while frame is not None and frame.pts < target:
            frame = self._next()
        return frame if frame is not None and frame.pts == target else None


# --------------------------------------------------------------------------------------------
# small helpers


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # let the decoder report the real problem


def _reason(exc: BaseException) -> str:
    """A short reason for a decoding error, without the local file path."""
    if isinstance(exc, av.FFmpegError):
        return exc.strerror or type(exc).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sniff(path: Path) -> str | None:
    """What a file's first bytes say it is (for clearer error messages), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
            return "an HEIF/AVIF image"
        if brand == b"M4A ":
            return "an M4A audio file"
        return "an MP4/MOV video"
    signatures = (
        (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"BM", "a BMP image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"ID3", "an MP3 audio file"),
        (b"OggS", "an Ogg file"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive"),
    )
    for magic, what in signatures:
        if head.startswith(magic):
            return what
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"AVI ": "an AVI video", b"WAVE": "a WAV audio file", b"WEBP": "a WebP image"}.get(
            head[8:12]
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return None

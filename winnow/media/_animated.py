"""Animated GIFs: frames sampled like a video's (Pillow decodes), and picked frames at full size.

A GIF with more than one frame is treated as a video: `FrameOptions` picks its frames, each
gets its frame number and presentation time (the sum of the delays before it), and its
`FileResult` says `video`, so picked frames are exported as frame PNGs like a video's. The
frame delays come from a walk over the GIF's blocks that decodes no pixels, so the sampling
rules (and `max_frames_per_video`'s spread) are known before the first frame is decoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from winnow.errors import DecodeError
from winnow.media._options import FrameOptions
from winnow.media._sniff import _reason
from winnow.media._stats import _Chunks
from winnow.media._video import _FpsRule, _spread
from winnow.records import FileRef, FileResult, FrameBatch

# Delays below this are shown as `GIF_DEFAULT_DELAY_MS` by browsers and by FFmpeg's GIF demuxer
# (`min_delay` 2, `default_delay` 10 hundredths): the timestamps follow what people see.
GIF_MIN_DELAY_MS = 20
GIF_DEFAULT_DELAY_MS = 100


def _gif_delays(path: Path) -> list[int] | None:
    """Each frame's delay in milliseconds as stored (0 when a frame has none), or None.

    None when the file is not a GIF. Walks the blocks without decoding: header, screen
    descriptor, colour tables, extensions (the graphic control extension holds the delay) and
    image descriptors. A file cut short ends the list at the last complete frame header.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 << ((data[10] & 7) + 1)
    delays: list[int] = []
    delay = 0
    n = len(data)

    def skip_sub_blocks(p: int) -> int:
        while p < n and data[p]:
            p += data[p] + 1
        return p + 1

    while pos < n:
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension
            if pos + 1 >= n:
                break
            if data[pos + 1] == 0xF9 and pos + 7 < n:  # graphic control extension
                delay = int.from_bytes(data[pos + 4 : pos + 6], "little") * 10
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor
            if pos + 10 > n:
                break
            flags = data[pos + 9]
            pos += 10
            if flags & 0x80:  # local colour table
                pos += 3 << ((flags & 7) + 1)
            pos = skip_sub_blocks(pos + 1)  # LZW minimum code size, then the pixel data
            if pos > n:
                break
            delays.append(delay)
            delay = 0
        else:
            break  # garbage between blocks: Pillow stops there too
    return delays


def _is_animated_gif(path: Path) -> bool:
    """Whether the file is a GIF with more than one frame."""
    delays = _gif_delays(path)
    return delays is not None and len(delays) > 1


def _timestamps(delays: list[int]) -> np.ndarray:
    """Presentation time in seconds of each frame: the sum of the shown delays before it."""
    shown = np.array([d if d >= GIF_MIN_DELAY_MS else GIF_DEFAULT_DELAY_MS for d in delays])
    return np.concatenate([[0.0], np.cumsum(shown[:-1]) / 1000.0]) if len(shown) else shown


def _chosen_frames(pts: np.ndarray, options: FrameOptions) -> list[int]:
    """The frames `options` keeps, by the same rules as a video's."""
    if options.keyframes_only:
        # A GIF has no keyframes: every frame after the first may draw over the ones before.
        candidates = [0] if len(pts) else []
    else:
        every = options.every_n_frames or 1
        rule = _FpsRule(options.sample_fps) if options.sample_fps is not None else None
        candidates = [
            i for i in range(len(pts)) if i % every == 0 and (rule is None or rule.keep(pts[i]))
        ]
    if options.max_frames_per_video is not None:
        keep = _spread(len(candidates), options.max_frames_per_video)
        candidates = [c for j, c in enumerate(candidates) if j in keep]
    return candidates


def _frames(im: Any, wanted: list[int]) -> Iterator[tuple[int, Image.Image]]:
    """`(index, RGB frame)` for the wanted frame numbers (ascending), composited by Pillow."""
    for index in wanted:
        im.seek(index)  # forward: Pillow draws the frames in between onto the canvas
        yield index, im.convert("RGB")


def _decode_gif(
    path: Path, ref: FileRef, *, size: int, options: FrameOptions, chunk_frames: int
) -> Iterator[FrameBatch | FileResult]:
    ref = dataclasses.replace(ref, kind="video")
    delays = _gif_delays(path) or []
    pts = _timestamps(delays)
    wanted = _chosen_frames(pts, options)
    chunks = _Chunks(ref, size, chunk_frames)
    width = height = 0
    error: str | None = None
    try:
        with Image.open(path) as im:
            width, height = im.size
            for index, frame in _frames(im, wanted):
                small = frame.resize((size, size), Image.Resampling.BILINEAR)
                batch = chunks.add(
                    index=index,
                    pts=float(pts[index]),
                    rgb=np.asarray(small),
                    luma=None,
                    full_range=True,
                    width=width,
                    height=height,
                )
                if batch is not None:
                    yield batch
    except Exception as exc:  # per-file boundary: a damaged frame ends the file here
        error = _reason(exc)
    batch = chunks.flush()
    if batch is not None:
        yield batch
    common = {"frames_total": len(delays), "width": width, "height": height}
    if error is not None:
        if chunks.count == 0:
            yield FileResult.for_ref(
                ref, status="corrupt", error=f"damaged animated GIF: {error}", **common
            )
        else:
            where = f"decoding stopped after {chunks.count} sampled frames: {error}"
            yield FileResult.for_ref(
                ref, status="ok", error=f"partial: {where}", frames_sampled=chunks.count, **common
            )
        return
    if chunks.count == 0:
        yield FileResult.for_ref(ref, status="skipped", error="no frame sampled", **common)
        return
    yield FileResult.for_ref(ref, status="ok", frames_sampled=chunks.count, **common)


def _extract_gif_frames(path: Path, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Full-size RGB frames of an animated GIF by frame number (ascending, distinct).

    Raises:
        DecodeError: If a frame number is past the end or the GIF cannot be decoded.
    """
    total = len(_gif_delays(path) or [])
    try:
        with Image.open(path) as im:
            for index, frame in _frames(im, wanted):
                yield index, np.asarray(frame)
    except EOFError as exc:
        raise DecodeError(
            f"{path.name}: frame {max(wanted)} not found (the GIF has {total} frames)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DecodeError(f"{path.name}: damaged animated GIF: {_reason(exc)}") from exc

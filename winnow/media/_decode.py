"""`decode_file`: one image or video file to model-size `FrameBatch` chunks and a `FileResult`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
from PIL import Image

from winnow.errors import ConfigError
from winnow.media._animated import _decode_gif, _is_animated_gif
from winnow.media._images import _decode_image
from winnow.media._options import FrameOptions
from winnow.media._sniff import _header_size
from winnow.media._video import _decode_video
from winnow.objects._crops import ObjectBatch
from winnow.objects._options import CropSettings
from winnow.records import FileRef, FileResult, FrameBatch


def decode_file(
    path: Path,
    ref: FileRef,
    *,
    size: int,
    options: FrameOptions,
    chunk_frames: int = 64,
    threads: int | None = None,
    crops: CropSettings | None = None,
) -> Iterator[FrameBatch | ObjectBatch | FileResult]:
    """Decode one image or video file into model-size frames.

    `ref.kind` picks the decoder; an image whose content is an animated GIF has its frames
    sampled like a video's, and its `FileResult.kind` is `video`. Frames are squashed to `size` x `size` RGB (aspect ratio not
    kept), with EXIF orientation or display rotation applied. Bad media never raises: it ends
    in a `FileResult` with status `corrupt` (or `skipped` for a file without a video stream)
    and a reason in `error`. A video that breaks after some frames keeps those frames and
    reports `ok` with `error` starting with `partial:`.

    A `ref` with a time range (`start_s`/`end_s`) gives exactly the frames of a whole-file
    decode whose `pts_seconds` lie in `[start_s, end_s)`: same frame indices, sample ids,
    pixels and metadata, whatever the sampling options. Its `FileResult` covers the range
    (`frames_sampled` of the range; `skipped` with `records.EMPTY_RANGE` when the range holds
    no frame to take); `records.merge_file_results` makes the file's result from its ranges.

    Args:
        path: Local file holding the content.
        ref: The file's identity (key, fingerprint, size, kind), copied into every record.
        size: Side of the square model input, in pixels.
        options: How video (and animated GIF) frames are sampled (ignored for still images).
        chunk_frames: Most frames per yielded `FrameBatch`, so memory never depends on a
            video's length.
        threads: Codec threads for a video; None: `device.decode_threads(1)` (all the
            cores). Callers decoding several videos at once pass `decode_threads(n)`.
        crops: With boxes on the file (`ref.boxes`): each kept frame that has boxes is also
            converted at full size and its boxes cut into crops (`objects.Cropper`), yielded
            as an `ObjectBatch` as soon as the frame is decoded (maybe before the chunk that
            holds the frame); the result counts the objects and the boxes skipped. None:
            boxes are ignored. Animated GIFs ignore boxes.

    Yields:
        `FrameBatch` chunks (and `ObjectBatch`es) of at most `chunk_frames` frames in
        presentation order, then exactly one `FileResult` as the last item.

    Raises:
        ConfigError: If `size` or `chunk_frames` is not positive (before anything is yielded).
    """
    if size < 1 or chunk_frames < 1:
        raise ConfigError(
            f"decode_file: size and chunk_frames must be positive, got {size} and {chunk_frames}"
        )
    refusal = _pixel_budget_refusal(path, ref, options.max_pixels)
    if refusal is not None:
        return iter([refusal])
    if ref.kind == "image":
        if _is_animated_gif(path):  # frames sampled like a video's; its result says `video`
            return _decode_gif(path, ref, size=size, options=options, chunk_frames=chunk_frames)
        return _decode_image(path, ref, size=size, crops=crops)
    return _decode_video(
        path,
        ref,
        size=size,
        options=options,
        chunk_frames=chunk_frames,
        threads=threads,
        crops=crops,
    )


def _frame_size(path: Path, kind: str) -> tuple[int, int] | None:
    """Width and height from the file's header (nothing decoded), or None when unknown.

    Raises:
        Image.DecompressionBombError: If Pillow's own pixel limit refuses the image.
    """
    if kind == "image":
        try:
            with Image.open(path) as im:
                return im.size
        except Image.DecompressionBombError:
            raise
        except Exception:  # per-file boundary: the decoder reports the real problem
            return _header_size(path)  # what the header claims, if Pillow cannot open it
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream: Any = next(iter(container.streams.video), None)
            ctx = stream.codec_context if stream is not None else None
            if ctx is None or not ctx.width or not ctx.height:
                return None
            return int(ctx.width), int(ctx.height)
    except Exception:  # per-file boundary: the decoder reports the real problem
        return None


def _pixel_budget_refusal(path: Path, ref: FileRef, max_pixels: int | None) -> FileResult | None:
    """A `skipped` result when the file's frames are bigger than `max_pixels`, else None."""
    if max_pixels is None:
        return None
    try:
        size = _frame_size(path, ref.kind)
    except Image.DecompressionBombError as exc:
        return FileResult.for_ref(
            ref,
            status="skipped",
            error=f"over the pixel budget: Pillow refuses it as a possible decompression bomb "
            f"({exc})",
        )
    if size is None or size[0] * size[1] <= max_pixels:
        return None
    width, height = size
    return FileResult.for_ref(
        ref,
        status="skipped",
        error=f"over the pixel budget: {width}x{height} = {width * height / 1e6:.1f} MP per frame, "
        f"frames.max_pixels is {max_pixels / 1e6:g} MP",
        width=width,
        height=height,
    )

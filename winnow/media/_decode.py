"""`decode_file`: one image or video file to model-size `FrameBatch` chunks and a `FileResult`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from winnow.errors import ConfigError
from winnow.media._animated import _decode_gif, _is_animated_gif
from winnow.media._images import _decode_image
from winnow.media._options import FrameOptions
from winnow.media._video import _decode_video
from winnow.records import FileRef, FileResult, FrameBatch


def decode_file(
    path: Path,
    ref: FileRef,
    *,
    size: int,
    options: FrameOptions,
    chunk_frames: int = 64,
    threads: int | None = None,
) -> Iterator[FrameBatch | FileResult]:
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
        if _is_animated_gif(path):  # frames sampled like a video's; its result says `video`
            return _decode_gif(path, ref, size=size, options=options, chunk_frames=chunk_frames)
        return _decode_image(path, ref, size=size)
    return _decode_video(
        path, ref, size=size, options=options, chunk_frames=chunk_frames, threads=threads
    )

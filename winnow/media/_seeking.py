"""Full-size frames re-decoded by seeking to their timestamps (`extract_frames`, for exports)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from winnow.errors import DecodeError, EmptyVideoError, UnsupportedMediaError
from winnow.media._animated import _extract_gif_frames, _is_animated_gif
from winnow.media._sniff import _reason
from winnow.media._video import _decode_threads, _quarter_turns, _video_stream


def extract_frames(
    path: Path, targets: Sequence[tuple[int, float]]
) -> Iterator[tuple[int, np.ndarray]]:
    """Full-resolution frames of a video (or an animated GIF), re-decoded by seeking.

    For each target the decoder seeks to the keyframe before it and decodes forward to the
    frame with exactly that timestamp (nearby targets share one forward pass). An animated
    GIF's frames are found by frame number (Pillow draws every frame up to the last target).

    Args:
        path: The video file, or an animated GIF.
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
    if _is_animated_gif(path):
        yield from _extract_gif_frames(path, sorted(wanted))
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

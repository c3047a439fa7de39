"""Videos with PyAV: sampled frames at model size, frame counts, timestamps and rotation.

Sequential decoding keeps frames by `every_n_frames` or `sample_fps`; keyframe mode sends only
keyframe packets to the decoder. A demux-only pass (the packet index) counts frames and ranks
keyframes without decoding, so `max_frames_per_video` can spread its picks over the whole video.

A time range of a video (`FileRef.start_s`/`end_s`, planned by `discover.plan_shards`) gives
exactly the frames a whole-file decode gives whose timestamp falls in it: the packet index names
every frame's presentation index and the sampling state at the range's start, decoding starts
at the keyframe at or before the range's first frame, and each decoded frame's timestamp is
checked against the index. Files whose index cannot be trusted for that (packets without
timestamps, duplicate timestamps, a damaged container) are decoded from the start and filtered.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from winnow.device import decode_threads
from winnow.media._gate import _Gate
from winnow.media._options import FrameOptions
from winnow.media._sniff import _file_size, _reason, _sniff
from winnow.media._stats import _Chunks
from winnow.objects._crops import Cropper, ObjectBatch
from winnow.objects._options import CropSettings
from winnow.records import EMPTY_RANGE, FileRef, FileResult, FrameBatch, sample_id_for

# Container formats that FFmpeg opens as one-frame "videos" but that are still images.
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "apng", "webp", "ico", "tiff", "bmp"})
# 8-bit formats whose first plane is luma (read directly instead of recomputing it from RGB).
_Y8_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)


def _decode_threads() -> int:
    """Codec threads for one video decoded alone (`device.decode_threads`)."""
    return decode_threads(1)


def _decode_video(
    path: Path,
    ref: FileRef,
    *,
    size: int,
    options: FrameOptions,
    chunk_frames: int,
    threads: int | None = None,
    crops: CropSettings | None = None,
) -> Iterator[FrameBatch | ObjectBatch | FileResult]:
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
                decoder = _VideoDecoder(
                    path,
                    container,
                    stream,
                    size=size,
                    options=options,
                    threads=threads or _decode_threads(),
                    span=(ref.start_s, ref.end_s),
                    cropper=Cropper(ref, crops, size) if crops and ref.boxes else None,
                )
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
                objects = frame.pop("objects", None)
                batch = chunks.add(**frame)
                if batch is not None:
                    yield batch
                if objects is not None:
                    yield objects
        finally:
            frames.close()
        batch = chunks.flush()
        if batch is not None:
            yield batch
    result = _video_result(ref, decoder, chunks.count, error)
    if decoder.cropper is not None:
        whole = not decoder.ranged and decoder.complete
        result = dataclasses.replace(result, **decoder.cropper.result(whole_file=whole))
    yield result


def probe_duration(path: Path) -> float | None:
    """Seconds of a video from its container header (no packet is read), or None.

    Cheap enough for planning: `discover.plan_shards` splits videos longer than its
    `shard_seconds` into time ranges. None for unreadable files and headers without a duration.

    Args:
        path: Local video file.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = _video_stream(container)
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / 1_000_000  # AV_TIME_BASE
    except Exception:  # per-file boundary: decoding reports the reason later
        return None
    return None


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
    common: dict[str, Any] = {
        "frames_total": total,
        "width": decoder.width,
        "height": decoder.height,
    }
    gate = decoder.gate
    if gate is not None:
        period = 1 / float(decoder.rate) if decoder.rate else 0.0
        common.update(
            frames_decoded=gate.decoded,
            frames_unchanged=gate.unchanged,
            frames_rejected=tuple(sorted(gate.rejected.items())),
            shots_detected=decoder.options.shots,
            cuts=tuple(gate.cuts),
            duration_s=(decoder.end_seconds or 0.0) + period if gate.decoded else 0.0,
        )
    if decoder.range_empty and error is None:
        return FileResult.for_ref(ref, status="skipped", error=EMPTY_RANGE, **common)
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


class _IndexMismatch(Exception):
    """A decoded frame's timestamp is not the one the packet index promised."""


class _VideoDecoder:
    """Sequential (or keyframe-only) decoding of one video stream to model-size frames."""

    def __init__(
        self,
        path: Path,
        container: Any,
        stream: Any,
        *,
        size: int,
        options: FrameOptions,
        threads: int,
        span: tuple[float | None, float | None] = (None, None),
        cropper: Cropper | None = None,
    ) -> None:
        self.path, self.container, self.stream = path, container, stream
        self.cropper = cropper  # cuts the boxes of kept frames at full size
        self.size, self.options = size, options
        self.start_s, self.end_s = span
        self.ranged = self.start_s is not None or self.end_s is not None
        self.range_empty = False  # a time range with no frame to take (neutral when merged)
        self.tb = stream.time_base or Fraction(1, 90000)
        self._num, self._den = self.tb.numerator, self.tb.denominator
        self.rate = stream.average_rate or stream.guessed_rate
        self.container_frames = int(stream.frames or 0)
        self.decoded = 0  # frames out of the decoder
        self.complete = False  # decoded to the end (not stopped early, no error)
        self.index: _PacketIndex | None = None
        self.gate: _Gate | None = None  # shots, change and quality (made on the first frame)
        self.end_seconds: float | None = None  # timestamp of the last frame looked at
        self.index_ordered = True  # packet timestamps usable (keyframe mode)
        self.width = self.height = 0
        self._scale = VideoReformatter()
        self._rgb = VideoReformatter()
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads

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
        if opts.keyframes_only or opts.max_frames_per_video is not None or self.ranged:
            self.index = _index_packets(self.path, self.stream.index)
        if opts.keyframes_only:
            yield from self._keyframes()
        elif self.ranged and self._index_exact():
            yield from self._range()
        else:
            yield from self._sequential()

    def _seconds(self, pts: int | None, index: int) -> float:
        """Seconds of a timestamp in the stream's time base (frame rate when it has none)."""
        if pts is not None:
            # Integer true division is correctly rounded: equal to float(pts * self.tb), and
            # several times faster than building the Fraction.
            return pts * self._num / self._den
        return index / float(self.rate) if self.rate else 0.0

    def _in_span(self, seconds: float) -> bool:
        """Whether a frame at `seconds` belongs to this decode's time range."""
        return (self.start_s is None or seconds >= self.start_s) and (
            self.end_s is None or seconds < self.end_s
        )

    def _index_exact(self) -> bool:
        """Whether the packet index names every frame: complete, timestamped, no duplicates."""
        index = self.index
        return (
            index is not None
            and index.ordered
            and index.complete
            and len(index.pts) > 0
            and bool(np.all(np.diff(index.pts) > 0))
        )

    def _gate(self, origin: float) -> _Gate:
        """The video's shot, change and quality state, made once its first timestamp is known."""
        if self.gate is None:
            self.gate = _Gate(self.options, origin)
        return self.gate

    def _take(
        self, frame: Any, index: int, seconds: float, *, cut: bool, candidate: bool
    ) -> dict[str, Any] | None:
        """A decoded frame converted for the model if the gate's rules keep it, else None."""
        gate = self.gate
        assert gate is not None
        forced = gate.forced(seconds, cut=cut, candidate=candidate)
        if not (candidate or forced):
            return None
        if not forced and not gate.changed(frame, seconds):
            return None
        converted = self._convert(frame, index, seconds)
        if not forced and not gate.quality_ok(converted):
            return None
        gate.kept(frame, seconds)
        cropper = self.cropper
        if cropper is not None and gate.emit and cropper.wants(index, seconds):
            rgb = frame.to_ndarray(format="rgb24")  # full size: only for frames with boxes
            turns = _quarter_turns(frame)
            rgb = np.rot90(rgb, turns) if turns else rgb
            ref = cropper.ref
            sample_id = sample_id_for(ref.key, ref.fingerprint, index)
            converted["objects"] = cropper.cut(
                rgb, index=index, seconds=seconds, sample_id=sample_id
            )
        return converted

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
        gate: _Gate | None = None
        shots = opts.shots
        for index, frame in enumerate(self.container.decode(self.stream)):
            self.decoded = index + 1
            seconds = self._seconds(timestamp(frame.pts, frame.dts), index)
            if origin is None:
                origin = seconds
                self._note_size(frame)
                gate = self._gate(origin)
            assert gate is not None
            # The fallback for a range: decoded from the start, filtered (the gate's state
            # still follows every frame, as in a whole-file decode).
            gate.emit = not self.ranged or self._in_span(seconds)
            self.end_seconds = seconds
            cut = gate.see(frame, index, seconds)
            sampled = index % every == 0 and (fps_rule is None or fps_rule.keep(seconds - origin))
            if sampled:
                candidate += 1
                if cap is not None and chosen is None and candidate >= cap:
                    if not shots:
                        return  # frame count unknown: the first `cap` candidates
                    sampled = False  # decoding on for the shot table only
                elif chosen is not None and (candidate > last or candidate not in chosen):
                    if candidate > last and not shots:
                        return  # every chosen frame is out: stop decoding
                    sampled = False
            out = self._take(frame, index, seconds, cut=cut, candidate=sampled)
            if out is not None and gate.emit:
                yield out
        self.complete = True

    def _replay(self, upto: int, secs: list[float]) -> tuple[_FpsRule | None, int]:
        """A whole-file decode's sampling state (fps rule, candidates) on reaching frame `upto`.

        Computed from the packet index's timestamps only.
        """
        opts = self.options
        every = opts.every_n_frames or 1
        fps_rule = _FpsRule(opts.sample_fps) if opts.sample_fps is not None else None
        candidate = -1
        for i in range(upto):
            if i % every:
                continue
            if fps_rule is not None and not fps_rule.keep(secs[i] - secs[0]):
                continue
            candidate += 1
        return fps_rule, candidate

    def _range(self) -> Iterator[dict[str, Any]]:
        # Algorithm: the packet index gives every frame's timestamp in presentation order, so
        # frame r of the whole file is the r-th smallest pts, and the sampling state a
        # whole-file decode has on reaching a frame (fps rule, candidate count) is replayed
        # from the index without decoding. Decoding starts at the keyframe at or before the
        # gate's warm-up frame (shots, change and per_shot look back a bounded stretch, see
        # `_Gate.warmup_start`); warm-up frames update the gate's state and are not yielded,
        # and every decoded frame must carry the index's next timestamp (else the range stops
        # with an error, never with shifted ids).
        assert self.index is not None
        pts = self.index.pts.tolist()
        secs = [self._seconds(p, 0) for p in pts]
        r0 = 0 if self.start_s is None else bisect.bisect_left(secs, self.start_s)
        r1 = len(secs) if self.end_s is None else bisect.bisect_left(secs, self.end_s)
        opts = self.options
        every = opts.every_n_frames or 1
        origin = secs[0]
        cap = opts.max_frames_per_video
        chosen = _spread(self._count_candidates(), cap) if cap is not None else None
        last = max(chosen) if chosen else -1
        if r0 >= r1 or (chosen is not None and self._replay(r0, secs)[1] >= last):
            self.range_empty = self.complete = True  # no frame here, or every pick is earlier
            return
        gate = self._gate(origin)
        rw = gate.warmup_start(secs, r0)
        fps_rule, candidate = self._replay(rw, secs)
        r = rw
        for frame in self._frames_from(pts[rw]):
            self.decoded += 1
            if self.decoded == 1:
                self._note_size(frame)
            if frame.pts is not None and frame.pts < pts[rw]:
                continue  # between the keyframe and the first frame needed
            if frame.pts != pts[r]:
                raise _IndexMismatch(
                    f"frame {r} has timestamp {frame.pts}, the packet index says {pts[r]}"
                )
            index, seconds = r, secs[r]
            r += 1
            gate.emit = index >= r0
            self.end_seconds = seconds
            cut = gate.see(frame, index, seconds)
            sampled = index % every == 0 and (fps_rule is None or fps_rule.keep(seconds - origin))
            if sampled:
                candidate += 1
                if chosen is not None and candidate > last and not opts.shots:
                    self.complete = True
                    return  # every chosen frame is out: stop decoding
                sampled = chosen is None or candidate in chosen
            out = self._take(frame, index, seconds, cut=cut, candidate=sampled)
            if out is not None and gate.emit:
                yield out
            if r == r1:
                self.complete = True
                return

    def _frames_from(self, target: int) -> Iterator[Any]:
        """Decoded frames from the keyframe at or before timestamp `target` on."""
        assert self.index is not None
        keys = self.index.key_pts.tolist()
        i = bisect.bisect_right(keys, target) - 1
        tries = 0
        while True:
            if i > 0 or tries:  # the first keyframe, first time: read on from the file's start
                self.container.seek(keys[max(i, 0)], stream=self.stream, backward=True)
            frames = iter(self.container.decode(self.stream))
            first = next(frames, None)
            if first is None:
                return
            if first.pts is not None and first.pts <= target:
                yield first
                yield from frames
                return
            # The seek landed after the target (demuxers seek by decode time): go back further.
            if i <= 0 and tries:
                raise _IndexMismatch(f"no frame at or before timestamp {target} after seeking")
            tries += 1
            i -= 1

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
        self.index_ordered = index.ordered
        rank = dict(zip(keys, np.searchsorted(index.pts, keys).tolist(), strict=True))
        if self.ranged:  # the same keyframes and picks as the whole file, in this time range
            keys = [
                k
                for k in keys
                if self._in_span(self._seconds(k if index.ordered else None, rank[k]))
            ]
            if not keys:
                self.range_empty = self.complete = True
                return
        wanted = set(keys)
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
        seconds = self._seconds(ts if self.index_ordered else None, index)
        gate = self._gate(seconds)
        gate.see(frame, index, seconds)
        self.end_seconds = seconds
        out = self._take(frame, index, seconds, cut=False, candidate=True)
        if out is not None:
            yield out

    def _note_size(self, frame: Any) -> None:
        w, h = frame.width, frame.height
        self.width, self.height = (h, w) if _quarter_turns(frame) % 2 else (w, h)

    def _convert(self, frame: Any, index: int, seconds: float) -> dict[str, Any]:
        s = self.size
        # Two steps: scaling in the source pixel format, then converting only the model-size
        # frame to RGB, is faster in swscale than one scale+convert call.
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

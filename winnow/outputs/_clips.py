"""Selected video clips (time ranges of one video) written as MP4, and their exports.

A clip `[start_s, end_s)` of a video holds the frames whose presentation time `t` (seconds,
`pts * time_base` of the first video stream, not rebased: the convention of `winnow.media`)
satisfies `start_s <= t < end_s`. `cut_clip` writes exactly those frames, video only, in one of
two ways:

- **stream copy** when that is exact: the clip's first frame is a keyframe, the codec fits MP4
  (`MP4_COPY_CODECS`), and the packets whose time is in the range are, in decode order, the
  packets that follow that keyframe with none from outside the range among them. With B-frames
  a frame inside the range may be decoded after (and predicted from) a frame at or past its
  end, or a frame before the start may follow the keyframe; copying the in-range packets would
  then leave a frame without its reference, so such a cut is re-encoded. The copied packets are
  rebased so that the clip starts at 0.
- **re-encode** otherwise: decoded from the keyframe at or before the start and encoded with
  libx264 (yuv420p, CRF 18, preset veryfast), frame-exact, keeping the source's time base and
  timestamps so that every frame keeps its duration.

Copying is preferred because it is lossless and much faster: for a 10 s 640x360 30 fps H.264
clip on 2 CPU cores, about 0.1 s against 1.8 s (times in `COPY_WHY` and `REENCODE_WHY`, which
`ClipCut.why` reports). Either way the written file is decoded back: its frame count must be
the clip's (else a copy is redone as a re-encode), and `ClipCut` reports what it holds.
Packets without decode timestamps (B-frames in Matroska just after a seek) get ones rebuilt
from their presentation times. The last frame of a variable-frame-rate clip keeps its
duration only approximately (MP4 derives sample durations from decode times).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from winnow.errors import ConfigError, DecodeError, EmptyVideoError, UnsupportedMediaError
from winnow.media._sniff import _reason
from winnow.media._video import _decode_threads, _quarter_turns, _video_stream
from winnow.outputs._exports import labelstudio_image
from winnow.outputs._names import split_key
from winnow.storage import MAX_KEY_BYTES, MAX_NAME_BYTES

CLIPS_PREFIX = "clips"
# Milliseconds in clip names are zero-padded to this many digits (up to ~277 hours).
CLIP_MS_DIGITS = 9
CLIPS_CSV_COLUMNS = ("file", "start_s", "end_s", "clip", "frames", "mode")
# Codecs whose packets an MP4 file holds as they are (stream copy).
MP4_COPY_CODECS = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9"})
REENCODE_CODEC = "libx264"
REENCODE_OPTIONS = {"crf": "18", "preset": "veryfast"}
STRIP_JPEG_QUALITY = 80
# Measured with time.perf_counter on 2 CPU cores: a 10 s, 640x360, 30 fps H.264 clip (cut from
# a 20 s video with a keyframe each second, read-back decode included) took 0.09–0.23 s to copy
# and 1.1–2.4 s to re-encode; typical values below.
COPY_WHY = (
    "stream copy: exact here, and ~15x faster than re-encoding (0.1 s vs 1.8 s, 10 s of 360p)"
)
REENCODE_WHY = "re-encoded with libx264 because {reason} (1.8 s for 10 s of 360p, vs 0.1 s to copy)"


@dataclass(frozen=True)
class ClipCut:
    """What `cut_clip` wrote.

    Attributes:
        mode: `copy` (packets copied as they are) or `reencode` (decoded and encoded again).
        frames: Frames in the written file (counted by decoding it).
        duration_s: Seconds from its first frame's start to its last frame's end.
        why: One short sentence: why this mode.
    """

    mode: str
    frames: int
    duration_s: float
    why: str


def clip_name(key: str, start_s: float, end_s: float) -> str:
    """Output key of one clip, named like the frame PNGs (`frame_name`).

    Args:
        key: The video's key in the source, e.g. `cam1/drive.mp4`.
        start_s: The clip's start in seconds.
        end_s: The clip's end in seconds (after the start).

    Returns:
        `clips/<key without extension>-<start ms>-<end ms>-<extension>.mp4`, milliseconds
        rounded and zero-padded to 9 digits, e.g. `clips/cam1/drive-000012500-000020000-mp4.mp4`
        for 12.5–20 s of `cam1/drive.mp4`. The key is split as `frame_name` splits it: only the
        last extension of the file name, none for `no_extension` or a dot file.

    Raises:
        ValueError: If a time is negative or not finite, or the end is not after the start.
        ConfigError: If `key` is not a valid relative key, or the name would be too long.
    """
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0:
        raise ValueError(f"clip of {key!r}: times must be finite and >= 0, got {start_s}, {end_s}")
    start_ms, end_ms = round(start_s * 1000), round(end_s * 1000)
    if end_ms <= start_ms:
        raise ValueError(
            f"clip of {key!r}: the end ({end_s}s) must be at least 1 ms after the start ({start_s}s)"
        )
    folder, stem, ext = split_key(key)  # as frame_name splits it
    d = CLIP_MS_DIGITS
    base = f"{stem}-{start_ms:0{d}d}-{end_ms:0{d}d}" + (f"-{ext}" if ext else "") + ".mp4"
    out = f"{CLIPS_PREFIX}/{folder}/{base}" if folder else f"{CLIPS_PREFIX}/{base}"
    if len(base.encode("utf-8")) > MAX_NAME_BYTES or len(out.encode("utf-8")) > MAX_KEY_BYTES:
        raise ConfigError(
            f"clip of {key!r}: its output name would be longer than {MAX_NAME_BYTES} bytes "
            f"(file name) or {MAX_KEY_BYTES} bytes (key); rename the video with a shorter name"
        )
    return out


def cut_clip(src: Path, dst: Path, *, start_s: float, end_s: float) -> ClipCut:
    """Write the frames of `src` in `[start_s, end_s)` to `dst` as an MP4, video only.

    Stream copy when it is exact, else a frame-exact libx264 re-encode (the module docstring
    gives the rule). Audio, subtitles and other streams are dropped. The clip's timestamps
    start at 0; `dst` is replaced.

    Args:
        src: The source video (local file).
        dst: The MP4 file to write.
        start_s: First time of the clip, in the source's seconds (`pts * time_base`).
        end_s: End of the clip (excluded).

    Returns:
        The mode, and the frames and duration read back by decoding `dst`.

    Raises:
        ValueError: If a time is not finite or the end is not after the start.
        DecodeError: If `src` cannot be read as a video, or the range holds no frame
            (`EmptyVideoError`, `UnsupportedMediaError` are subclasses).
    """
    _check_range(src, start_s, end_s)
    with _open(src) as container:
        stream = _stream(container, src)
        packets = _range_packets(container, stream, src, start_s=start_s, end_s=end_s)
        refusal = _copy_refusal(packets, stream, start_s=start_s, end_s=end_s)
        if refusal is None:
            expected = sum(_in_range(p.pts, stream, start_s, end_s) for p in packets)
            try:
                _copy(packets, stream, dst, start_s=start_s, end_s=end_s)
                frames, duration = _read_back(dst)
            except av.FFmpegError as exc:
                refusal = f"stream copy failed: {_reason(exc)}"
            else:
                if frames == expected:
                    return ClipCut("copy", frames, duration, COPY_WHY)
                refusal = f"the copy decoded to {frames} frames instead of {expected}"
            # The copy has rebased (and handed over) the packets: read them again.
            packets = _range_packets(container, stream, src, start_s=start_s, end_s=end_s)
        try:
            _reencode(packets, stream, src, dst, start_s=start_s, end_s=end_s)
        except av.FFmpegError as exc:
            raise DecodeError(f"{src.name}: re-encoding the clip failed: {_reason(exc)}") from exc
    frames, duration = _read_back(dst)
    return ClipCut("reencode", frames, duration, REENCODE_WHY.format(reason=refusal))


def clips_csv(rows: list[dict[str, Any]]) -> bytes:
    """The clips as CSV: `CLIPS_CSV_COLUMNS`, times with 3 decimals.

    Args:
        rows: One dict per clip with the keys `file`, `start_s`, `end_s`, `clip`, `frames`,
            `mode`.

    Returns:
        UTF-8 text: a header line, then one line per clip.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CLIPS_CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r["file"],
                format(float(r["start_s"]), ".3f"),
                format(float(r["end_s"]), ".3f"),
                r["clip"],
                int(r["frames"]),
                r["mode"],
            ]
        )
    return buf.getvalue().encode("utf-8")


def labelstudio_video_tasks(
    rows: list[dict[str, Any]], tag: str, *, document_root: str = "/"
) -> bytes:
    """Label Studio import tasks for clips (a `<Video value="$video"/>` labelling config).

    Args:
        rows: One dict per clip: `url` (the clip's link, `ObjectStore.link`), `file` (the
            source video's key), `start_s`, `end_s`.
        tag: The tag the clips belong to.
        document_root: The Label Studio server's local-files document root; `file://` URLs
            become local-files URLs below it, as `labelstudio_image` makes them.

    Returns:
        UTF-8 JSON: `[{"data": {"video", "file", "start_s", "end_s", "tag"}}, ...]`.

    Raises:
        ValueError: If a local file lies outside `document_root`.
    """
    tasks = [
        {
            "data": {
                "video": labelstudio_image(r["url"], document_root=document_root),
                "file": r["file"],
                "start_s": float(r["start_s"]),
                "end_s": float(r["end_s"]),
                "tag": tag,
            }
        }
        for r in rows
    ]
    return json.dumps(tasks, indent=1, ensure_ascii=False).encode("utf-8")


def clip_strip(src: Path, *, start_s: float, end_s: float, n: int = 5, height: int = 72) -> bytes:
    """A JPEG of `n` thumbnails of a clip side by side, for the HTML report.

    The frames are spread evenly over the clip's frames: the first is the clip's first frame,
    the last its last frame. The video is decoded once, from the keyframe at or before the
    start; display rotation is applied.

    Args:
        src: The source video (local file).
        start_s: First time of the clip (`pts * time_base` seconds).
        end_s: End of the clip (excluded).
        n: Thumbnails (a clip with fewer frames repeats some).
        height: Height of each thumbnail in pixels; widths keep the display aspect.

    Returns:
        JPEG bytes, `n * w` pixels wide and `height` tall (`w` the width of one thumbnail).

    Raises:
        ValueError: If `n` or `height` is below 1, or the range is not valid.
        DecodeError: If `src` cannot be read as a video, or the range holds no frame.
    """
    if n < 1 or height < 1:
        raise ValueError(f"a clip strip needs n >= 1 and height >= 1, got n={n}, height={height}")
    _check_range(src, start_s, end_s)
    with _open(src) as container:
        stream = _stream(container, src)
        sar = stream.sample_aspect_ratio
        packets = _range_packets(container, stream, src, start_s=start_s, end_s=end_s)
        count = sum(_in_range(p.pts, stream, start_s, end_s) for p in packets)
        wanted = [int(i) for i in np.round(np.linspace(0, max(count, 1) - 1, n))]
        picked: dict[int, Any] = {}
        last: Any = None
        seen = 0
        try:
            for frame in _decoded(packets, stream):
                if frame.pts is None or not _in_range(frame.pts, stream, start_s, end_s):
                    continue
                if seen in wanted:
                    picked[seen] = frame
                last, seen = frame, seen + 1
        except av.FFmpegError as exc:
            raise DecodeError(f"{src.name}: decoding failed: {_reason(exc)}") from exc
    if last is None:
        raise DecodeError(f"{src.name}: no frame in [{start_s:.3f}s, {end_s:.3f}s)")
    # Algorithm: the packet count can exceed the frames decoded (a damaged tail): ordinals past
    # the last decoded frame show the last one.
    thumbs = [_thumbnail(picked.get(i, last), height, sar) for i in wanted]
    width = thumbs[0].width
    strip = Image.new("RGB", (width * n, height))
    for i, thumb in enumerate(thumbs):
        strip.paste(
            thumb if thumb.width == width else thumb.resize((width, height)), (i * width, 0)
        )
    buf = io.BytesIO()
    strip.save(buf, format="JPEG", quality=STRIP_JPEG_QUALITY)
    return buf.getvalue()


def _check_range(src: Path, start_s: float, end_s: float) -> None:
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s:
        raise ValueError(
            f"{src.name}: a clip needs finite times with the end after the start, "
            f"got [{start_s}, {end_s})"
        )


def _open(src: Path) -> Any:
    try:
        return av.open(str(src), metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise UnsupportedMediaError(f"{src.name}: cannot open as a video: {_reason(exc)}") from exc


def _stream(container: Any, src: Path) -> Any:
    stream = _video_stream(container)
    if stream is None or stream.codec_context is None:
        raise EmptyVideoError(f"{src.name}: no decodable video stream to cut a clip from")
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = _decode_threads()
    return stream


def _seconds(ts: int, stream: Any) -> float:
    """`ts * time_base` as a float, computed as `winnow.media` computes frame times."""
    tb = stream.time_base or Fraction(1, 90000)
    return ts * tb.numerator / tb.denominator


def _in_range(pts: int | None, stream: Any, start_s: float, end_s: float) -> bool:
    return pts is not None and start_s <= _seconds(pts, stream) < end_s


def _range_packets(
    container: Any, stream: Any, src: Path, *, start_s: float, end_s: float
) -> list[Any]:
    """The stream's packets, in decode order, from the keyframe at or before `start_s` on.

    Demuxing stops at the first packet decoded at or after `end_s` (its dts): every later
    packet is presented later still, so none of them belongs to the clip.
    """
    tb = stream.time_base or Fraction(1, 90000)
    target = math.floor(Fraction(start_s) / tb)
    for attempt in (target, None):
        try:
            if attempt is None:
                container.seek(0)
            else:
                container.seek(attempt, stream=stream, backward=True)
            packets = []
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.dts is not None and _seconds(packet.dts, stream) >= end_s:
                    break
                packets.append(packet)
        except av.FFmpegError as exc:
            if attempt is not None:
                continue  # e.g. a format that cannot seek: read from the start
            raise DecodeError(f"{src.name}: reading packets failed: {_reason(exc)}") from exc
        first = packets[0].pts if packets else None
        if attempt is None or (first is not None and _seconds(first, stream) <= start_s):
            break
        # The seek landed after the start (an index in decode order, or none): from the start.
    if not any(_in_range(p.pts, stream, start_s, end_s) for p in packets):
        raise DecodeError(f"{src.name}: no frame in [{start_s:.3f}s, {end_s:.3f}s)")
    return packets


def _copy_refusal(packets: list[Any], stream: Any, *, start_s: float, end_s: float) -> str | None:
    """Why copying these packets would not give exactly the clip's frames (None: it would)."""
    codec = stream.codec_context.name
    if codec not in MP4_COPY_CODECS:
        return f"the {codec} codec is not stream-copied into MP4"
    if any(p.pts is None for p in packets):
        return "some packets carry no presentation timestamp"
    inside = [i for i, p in enumerate(packets) if _in_range(p.pts, stream, start_s, end_s)]
    first = min(inside, key=lambda i: packets[i].pts)
    if not packets[first].is_keyframe:
        t = _seconds(packets[first].pts, stream)
        return f"the clip's first frame ({t:.3f}s) is not a keyframe"
    # Algorithm: the copy is exact and decodable when the in-range packets are exactly the
    # packets from the first frame's keyframe on, in decode order, up to where `_range_packets`
    # stopped. A packet from outside the range between them is either a frame at/after the end
    # that an in-range B-frame is predicted from, or a frame before the start (open GOP).
    if inside != list(range(first, first + len(inside))):
        return "B-frames reference frames outside the range, so a copy would not be exact"
    return None


def _copy(packets: list[Any], stream: Any, dst: Path, *, start_s: float, end_s: float) -> None:
    chosen = [p for p in packets if _in_range(p.pts, stream, start_s, end_s)]
    origin = min(p.pts for p in chosen)
    if any(p.dts is None for p in chosen):  # e.g. B-frames in Matroska, just after a seek
        dts = _decode_times([p.pts for p in chosen])
    else:
        dts = [p.dts for p in chosen]
    with av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        out_stream = out.add_stream_from_template(stream)
        for packet, decode_ts in zip(chosen, dts, strict=True):
            packet.pts -= origin
            packet.dts = decode_ts - origin  # below 0 with B-frames: the muxer adds an edit list
            packet.stream = out_stream
            out.mux(packet)


def _decode_times(pts: list[int]) -> list[int]:
    """Decode timestamps for packets in decode order that have presentation times only."""
    # Algorithm: as libavformat does for a codec with a reorder delay of `d` frames, packet i
    # is decoded at the i-th presentation time shifted by `d` frames (the first `d` ones
    # extrapolated back by one frame interval each). The smallest `d` that keeps every packet's
    # decode time at or before its presentation time is the largest `i - rank(pts[i])`.
    ordered = sorted(pts)
    rank = {ts: r for r, ts in enumerate(ordered)}
    delay = max(0, *(i - rank[ts] for i, ts in enumerate(pts)))
    step = ordered[1] - ordered[0] if len(ordered) > 1 else 1
    return [
        ordered[i - delay] if i >= delay else ordered[0] - (delay - i) * step
        for i in range(len(pts))
    ]


def _decoded(packets: Iterable[Any], stream: Any) -> Iterable[Any]:
    """Frames of the packets in presentation order, then the decoder's delayed frames."""
    codec = stream.codec_context
    codec.flush_buffers()
    for packet in packets:
        yield from codec.decode(packet)
    yield from codec.decode(None)


def _reencode(
    packets: list[Any], stream: Any, src: Path, dst: Path, *, start_s: float, end_s: float
) -> None:
    tb = stream.time_base or Fraction(1, 90000)
    rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    out = None
    origin = 0
    try:
        for frame in _decoded(packets, stream):
            if frame.pts is None:
                raise DecodeError(f"{src.name}: frames carry no timestamps; cannot cut a clip")
            if not _in_range(frame.pts, stream, start_s, end_s):
                continue
            if out is None:
                origin = frame.pts
                out = av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"})
                out_stream = out.add_stream(REENCODE_CODEC, rate=rate, options=REENCODE_OPTIONS)
                # 4:2:0 needs even sizes: an odd row or column is scaled away.
                out_stream.width = frame.width - frame.width % 2
                out_stream.height = frame.height - frame.height % 2
                out_stream.pix_fmt = "yuv420p"
                out_stream.codec_context.time_base = tb
                if stream.sample_aspect_ratio:
                    out_stream.codec_context.sample_aspect_ratio = stream.sample_aspect_ratio
                if _quarter_turns(frame):
                    out_stream.set_display_rotation(int(frame.rotation))
            image = frame.reformat(
                width=out_stream.width, height=out_stream.height, format="yuv420p"
            )
            image.pts, image.time_base, image.duration = frame.pts - origin, tb, frame.duration
            out.mux(out_stream.encode(image))
        if out is None:
            raise DecodeError(f"{src.name}: no frame decoded in [{start_s:.3f}s, {end_s:.3f}s)")
        out.mux(out_stream.encode(None))
    finally:
        if out is not None:
            out.close()


def _read_back(path: Path) -> tuple[int, float]:
    """Frames in a written clip and its duration: first frame's start to last frame's end."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        frames, first, end = 0, None, 0
        for frame in container.decode(stream):
            frames += 1
            first = frame.pts if first is None else min(first, frame.pts)
            end = max(end, frame.pts + (frame.duration or 0))
    return frames, float((end - (first or 0)) * tb)


def _thumbnail(frame: Any, height: int, sar: Fraction | None) -> Image.Image:
    """The frame upright, `height` tall, as wide as its display aspect makes it."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame)
    image = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb)
    pixel = float(sar) if sar else 1.0  # a pixel's width over its height, before rotation
    aspect = image.width / image.height * (1 / pixel if turns % 2 else pixel)
    return image.resize((max(1, round(height * aspect)), height), Image.Resampling.BILINEAR)

"""Picked video frames re-decoded at full size and written as PNG; thumbnails for the report."""

from __future__ import annotations

import io
import logging
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from winnow import media
from winnow.errors import DecodeError, NotFound, WinnowError
from winnow.storage import ObjectStore
from winnow.summary import visible

logger = logging.getLogger(__name__)

REPORT_THUMBNAILS = 48
THUMBNAIL_PX = 128
# zlib level 1: much faster to encode than zlib's default level 6, for files a little larger.
PNG_COMPRESS_LEVEL = 1


def _write_frames(
    *,
    source: ObjectStore,
    output: ObjectStore,
    rows: list[dict[str, Any]],
    workers: int,
    extras: Sequence[dict[str, Any]] = (),
) -> None:
    """Re-decode the picked video frames and upload them as PNG; errors go to `row["error"]`.

    Videos are decoded by a few threads, one pass per video; each frame is handed to a pool of
    `workers` threads that encode and upload it. A semaphore bounds the full-size frames held
    in memory. The first storage failure stops the decoders and is raised. `extras` are other
    video frames (the report's neighbours: `key`, `frame_index`, `pts_seconds`) that only get a
    thumbnail, decoded in the same pass.
    """
    by_video: dict[str, list[int]] = {}
    for row in rows:
        if row["kind"] == "video":
            by_video.setdefault(row["key"], []).append(row["rank"])
    extra_frames: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for item in extras:
        if item["kind"] == "video":
            extra_frames.setdefault((item["key"], item["frame_index"]), []).append(item)
            by_video.setdefault(item["key"], [])
    if not by_video:
        return
    slots = threading.BoundedSemaphore(2 * workers)
    stop = threading.Event()
    encodes: list[Future] = []
    encodes_lock = threading.Lock()

    def encode(ranks: list[int], frame: np.ndarray) -> None:
        try:
            if stop.is_set():
                return
            output.put(rows[ranks[0]]["filename"], _png_bytes(frame))
            if any(r < REPORT_THUMBNAILS for r in ranks):
                thumb = _thumbnail_jpeg(frame)
                for r in ranks:
                    rows[r]["thumbnail"] = thumb
        except BaseException:
            stop.set()
            raise
        finally:
            slots.release()

    def decode(key: str, ranks: list[int]) -> None:
        by_frame: dict[int, list[int]] = {}
        for r in ranks:
            by_frame.setdefault(rows[r]["frame_index"], []).append(r)
        targets = {(fi, rows[rs[0]]["pts_seconds"]) for fi, rs in by_frame.items()}
        thumbs_only = {fi: items for (k, fi), items in extra_frames.items() if k == key}
        targets |= {(fi, items[0]["pts_seconds"]) for fi, items in thumbs_only.items()}
        done: set[int] = set()
        local_name = ""
        reason = "the decoder did not return this frame"
        try:
            with source.local_copy(key) as path:
                local_name = path.name
                for fi, frame in media.extract_frames(path, sorted(targets)):
                    if stop.is_set():
                        return
                    if fi in thumbs_only:
                        thumb = _thumbnail_jpeg(frame)
                        for item in thumbs_only.pop(fi):
                            item["thumbnail"] = thumb
                    if fi not in by_frame or fi in done:
                        continue
                    done.add(fi)
                    slots.acquire()
                    try:
                        future = encode_pool.submit(encode, by_frame[fi], frame)
                    except BaseException:
                        slots.release()
                        raise
                    with encodes_lock:
                        encodes.append(future)
        except NotFound:
            reason = "the file is no longer in the source"
        except DecodeError as exc:
            reason = str(exc).removeprefix(f"{local_name}: ") if local_name else str(exc)
        except WinnowError:
            stop.set()
            raise
        except Exception as exc:  # per-file boundary: a decoder error media did not wrap
            reason = f"{type(exc).__name__}: {exc}"
        lost = [r for fi, rs in by_frame.items() if fi not in done for r in rs]
        for r in lost:
            rows[r]["error"] = reason
        if lost:
            logger.warning(
                "%d picked frames of %s are not exported (left out of the tag's exports): %s",
                len(lost),
                visible(key),
                visible(reason),
            )

    decode_threads = max(1, min(len(by_video), workers // 4))
    with ThreadPoolExecutor(workers, thread_name_prefix="winnow-png") as encode_pool:
        with ThreadPoolExecutor(decode_threads, thread_name_prefix="winnow-seek") as decode_pool:
            decodes = [decode_pool.submit(decode, k, r) for k, r in by_video.items()]
            _first_error(decodes)
    _first_error(encodes)


def _first_error(futures: Iterable[Future]) -> None:
    """Wait for every future, then raise the first exception any of them raised."""
    errors = [f.exception() for f in list(futures)]
    for exc in errors:
        if exc is not None:
            raise exc


def _image_thumbnails(
    *,
    source: ObjectStore,
    rows: list[dict[str, Any]],
    workers: int,
    extras: Sequence[dict[str, Any]] = (),
) -> None:
    """Thumbnails of the report's images: the first `REPORT_THUMBNAILS` picks, and `extras`."""
    wanted = [r for r in [*rows[:REPORT_THUMBNAILS], *extras] if r["kind"] == "image"]

    def load(row: dict[str, Any]) -> None:
        try:
            with source.local_copy(row["key"]) as path:
                row["thumbnail"] = _thumbnail_jpeg(media.load_image(path))
        except (DecodeError, NotFound) as exc:
            logger.warning("no thumbnail for %s: %s", visible(row["key"]), visible(str(exc)))

    if wanted:
        with ThreadPoolExecutor(
            min(workers, len(wanted)), thread_name_prefix="winnow-thumb"
        ) as pool:
            _first_error([pool.submit(load, r) for r in wanted])


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(tag)) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _png_bytes(frame: np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode an RGB uint8 frame (H, W, 3) as an 8-bit RGB PNG."""
    # Algorithm: PNG filter type 2 ("Up": each byte minus the byte above it, mod 256) for every
    # row, then one zlib stream in one IDAT chunk. Not Pillow: its PNG encoder holds the GIL
    # while compressing (it writes through an in-memory IDAT wrapper), so encoder threads
    # would run one at a time; numpy and zlib.compress release the GIL, so these scale with
    # cores. The output is as small as Pillow's at the same level.
    pixels = np.ascontiguousarray(frame, dtype=np.uint8)
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps mod 256
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.data, level)),
            _png_chunk(b"IEND", b""),
        )
    )


def _thumbnail_jpeg(frame: np.ndarray, size: int = THUMBNAIL_PX) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB")
    image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return buf.getvalue()

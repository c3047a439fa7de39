"""Write a run's selection to the output store: frames, exports, embedding plot and report.

Layout under the output root (nothing is written anywhere else; the source is only read):
```
frames/<key without extension>-<frame index>-<extension>.png   selected video frames, full size
tags/<tag>/filenames.txt      one exported name per sample (frame PNG name, or the image's key)
tags/<tag>/samples.csv        metadata, pick distance and reason, link and embedding per sample
tags/<tag>/labelstudio.json   Label Studio import tasks
tags/<tag>/embedding.png      2-D PCA projection: dataset grey, picks in colour, the rest faint
tags/<tag>/report.html        self-contained HTML report of the run
```
Frame names follow the reference product (Lightly Worker) so that downstream tools carry over:
the frame index is zero-padded to the number of digits of the video's frame count, e.g. frame 99
of a 1,200-frame `cam1/drive.mp4` is `frames/cam1/drive-0099-mp4.png`. Images are referenced in
place (no copy). Every write replaces the same names, so a re-run is idempotent.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
import math
import re
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from winnow import media
from winnow.errors import ConfigError, DecodeError, NotFound, WinnowError
from winnow.records import Candidates, FileResult, RunSummary, Selection
from winnow.storage import ObjectStore, check_key

logger = logging.getLogger(__name__)

FRAMES_PREFIX = "frames"
TAGS_PREFIX = "tags"
# Names of the per-tag exports, in the order they are written (the report last).
EXPORT_FILES = {
    "filenames": "filenames.txt",
    "samples_csv": "samples.csv",
    "labelstudio": "labelstudio.json",
    "embedding_plot": "embedding.png",
    "report": "report.html",
}
SAMPLES_CSV_COLUMNS = (
    "sample_id",
    "filename",
    "key",
    "frame_index",
    "pts_seconds",
    "width",
    "height",
    "brightness",
    "contrast",
    "sharpness",
    "distance",
    "reason",
    "url",
    "embedding",
)
MAX_PLOT_POINTS = 20_000
REPORT_THUMBNAILS = 48
THUMBNAIL_PX = 128
# zlib level 1: a 720p demo frame encodes in about a fifth of the time of level 6, for about 6 %
# more bytes (measured on this project's machine).
PNG_COMPRESS_LEVEL = 1

# The tag names the flow accepts (flows/params.py): one safe path component.
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SAFE_URL_RE = re.compile(r"^(https?|file|s3)://", re.IGNORECASE)


def frame_name(key: str, frame_index: int, frames_total: int) -> str:
    """Output key of one video frame, named as the reference product names it.

    Args:
        key: The video's key in the source, e.g. `cam1/drive.mp4`.
        frame_index: Frame number in presentation order, from 0.
        frames_total: Frames in the video; the index is zero-padded to its number of digits
            (a count below 1 counts as 1).

    Returns:
        `frames/<key without extension>-<padded index>-<extension>.png`, e.g.
        `frames/cam1/drive-0099-mp4.png` for frame 99 of 1,200. Only the last extension of the
        file name is split off (`a.b/c.v2.mp4` → `frames/a.b/c.v2-…-mp4.png`); a key without
        extension gives `frames/<key>-<padded index>.png`.

    Raises:
        ValueError: If `frame_index` is negative.
        ConfigError: If `key` is not a valid relative key.
    """
    if frame_index < 0:
        raise ValueError(f"frame index {frame_index} of {key!r} is negative")
    key = check_key(key)
    folder, _, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:  # no extension (or a dot file such as `.mp4`)
        stem, ext = name, ""
    digits = len(str(max(int(frames_total), 1)))
    base = f"{stem}-{int(frame_index):0{digits}d}" + (f"-{ext}" if ext else "")
    return f"{FRAMES_PREFIX}/{folder}/{base}.png" if folder else f"{FRAMES_PREFIX}/{base}.png"


def export_name(key: str, kind: str, frame_index: int, frames_total: int) -> str:
    """The name a sample is exported under: its frame name for a video, its key for an image.

    Args:
        key: The source key of the sample's file.
        kind: `video` or `image`.
        frame_index: Frame number (ignored for images).
        frames_total: Frames in the video (ignored for images).

    Returns:
        The line this sample has in `filenames.txt`.

    Raises:
        ValueError: If `kind` is neither `video` nor `image`, or the frame index is negative.
    """
    if kind == "video":
        return frame_name(key, frame_index, frames_total)
    if kind == "image":
        return key
    raise ValueError(f"unknown media kind {kind!r} for {key!r}: expected 'video' or 'image'")


@dataclass
class Exported:
    """What `upload_selection` wrote.

    Attributes:
        filenames: Per pick, in pick order: the exported name (frame PNG key in the output, or
            the image's source key), as in `filenames.txt`.
        urls: Per pick: a link to the frame PNG in the output (videos) or to the source image;
            an empty string for a frame in `missing`.
        keys: `filenames`, `samples_csv`, `labelstudio`, `embedding_plot`, `report` → key of
            that file in the output store.
        links: The same names → link (`ObjectStore.link`: `file://` locally; `s3://`, or
            presigned HTTPS when asked for, on S3).
        missing: Frame name → `<key>: <reason>`, for picked frames that could not be
            re-decoded (the video was removed or can no longer be decoded). They are left out of
            `filenames.txt`, `samples.csv` and `labelstudio.json`, logged as a warning and
            listed in the report.
    """

    filenames: list[str]
    urls: list[str]
    keys: dict[str, str]
    links: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)


def tag_keys(tag: str) -> dict[str, str]:
    """Output keys of a tag's exports (`filenames`, `samples_csv`, … → `tags/<tag>/…`).

    Raises:
        ConfigError: If the tag is not a valid tag name.
    """
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise ConfigError(
            f"invalid tag name {tag!r}: use letters, digits, '.', '_' or '-' (at most 100), "
            "starting with a letter or digit"
        )
    return {name: f"{TAGS_PREFIX}/{tag}/{file}" for name, file in EXPORT_FILES.items()}


def upload_selection(
    *,
    source: ObjectStore,
    output: ObjectStore,
    tag: str,
    candidates: Candidates,
    selection: Selection,
    files: dict[str, FileResult],
    dataset: np.ndarray,
    summary: RunSummary,
    workers: int = 8,
) -> Exported:
    """Write the selected samples and the tag's exports to the output store.

    Picked video frames are re-decoded at full size (one open and seek pass per video for all
    its picks) and written as PNG; images are referenced in place. Then `filenames.txt`,
    `samples.csv`, `labelstudio.json`, `embedding.png` and, last, `report.html` are written
    under `tags/<tag>/`. PNG encoding and uploads run in a thread pool. Every name is
    deterministic, so a re-run overwrites the same objects with the same content.

    A video that can no longer be read (changed, removed or undecodable) does not stop the
    upload: its picks are logged as a warning, listed in the report and in `Exported.missing`,
    and the rest is written.

    Args:
        source: The source store (only read).
        output: The output store; every object is written below its root.
        tag: The tag's name; exports go under `tags/<tag>/`.
        candidates: All of this run's candidates; `selection.picks` index into them.
        selection: The picks, in pick order.
        files: This run's file results by key (for `kind` and `frames_total`).
        dataset: (M, D) embeddings of the dataset before the run (M may be 0), for the plot.
        summary: The run summary; its `outputs` is set to `Exported.links` before the report
            is rendered.
        workers: Threads for PNG encoding and uploads.

    Returns:
        The names, URLs and output keys written.

    Raises:
        ConfigError: If the tag name is invalid.
        ValueError: If a pick is out of range, a picked file is missing from `files`, the
            embedding widths differ or `workers` is below 1.
        StorageError: If writing to the output fails (a retry rewrites the same objects).
        TransientStorageError: The same, for errors a retry may fix.
    """
    keys = tag_keys(tag)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    indices = selection.indices
    if len(indices) and (indices.min() < 0 or indices.max() >= len(candidates)):
        raise ValueError(
            f"selection picks rows up to {int(indices.max())} of {len(candidates)} candidates"
        )
    for key in {str(candidates.key[i]) for i in indices}:
        if key not in files:
            raise ValueError(f"picked file {key!r} has no FileResult in `files`")
    dim = candidates.embedding.shape[1] if candidates.embedding.ndim == 2 else 0
    dataset = np.asarray(dataset)
    if dataset.size and len(candidates) and (dataset.ndim != 2 or dataset.shape[1] != dim):
        raise ValueError(f"dataset embeddings of shape {dataset.shape}, candidates are {dim}-d")
    return _upload_selection(
        source=source,
        output=output,
        tag=tag,
        keys=keys,
        candidates=candidates,
        selection=selection,
        files=files,
        dataset=dataset,
        summary=summary,
        workers=workers,
    )


def _upload_selection(
    *,
    source: ObjectStore,
    output: ObjectStore,
    tag: str,
    keys: dict[str, str],
    candidates: Candidates,
    selection: Selection,
    files: dict[str, FileResult],
    dataset: np.ndarray,
    summary: RunSummary,
    workers: int,
) -> Exported:
    rows = _pick_rows(candidates, selection, files)
    _write_frames(source=source, output=output, rows=rows, workers=workers)
    _image_thumbnails(source=source, rows=rows, workers=workers)

    missing: dict[str, str] = {}
    for row in rows:
        if row["error"] is not None:
            missing[row["filename"]] = f"{row['key']}: {row['error']}"
        elif row["kind"] == "video":
            row["url"] = output.link(row["filename"])
        else:
            row["url"] = source.link(row["key"])
    exported_rows = [r for r in rows if r["error"] is None]

    output.put(keys["filenames"], _filenames_txt(exported_rows))
    output.put(keys["samples_csv"], _samples_csv(exported_rows))
    output.put(keys["labelstudio"], _labelstudio_json(exported_rows, tag))

    picked = np.zeros(len(candidates), dtype=bool)
    picked[selection.indices] = True
    embedding = candidates.embedding if len(candidates) else np.zeros((0, 0), np.float16)
    plot = render_embedding_plot(
        dataset=dataset,
        picks=embedding[selection.indices],
        rest=embedding[~picked],
        title=f"tag {tag}",
    )
    output.put(keys["embedding_plot"], plot)

    links = {name: output.link(key) for name, key in keys.items()}
    summary.outputs = dict(links)
    report = render_report(summary=summary, picks=rows, plot_png=plot)
    output.put(keys["report"], report.encode("utf-8"))
    return Exported(
        filenames=[r["filename"] for r in rows],
        urls=[r["url"] for r in rows],
        keys=dict(keys),
        links=links,
        missing=missing,
    )


def _pick_rows(
    candidates: Candidates, selection: Selection, files: dict[str, FileResult]
) -> list[dict[str, Any]]:
    """One dict per pick, in pick order, with everything the exports and the report show."""
    rows = []
    for rank, pick in enumerate(selection.picks):
        i = pick.index
        key = str(candidates.key[i])
        result = files[key]
        frame_index = int(candidates.frame_index[i])
        rows.append(
            {
                "rank": rank,
                "sample_id": str(candidates.sample_id[i]),
                "key": key,
                "kind": result.kind,
                "frame_index": frame_index,
                "pts_seconds": float(candidates.pts_seconds[i]),
                "width": int(candidates.width[i]),
                "height": int(candidates.height[i]),
                "brightness": float(candidates.brightness[i]),
                "contrast": float(candidates.contrast[i]),
                "sharpness": float(candidates.sharpness[i]),
                "distance": float(pick.distance),
                "score": float(pick.score),
                "reason": pick.reason,
                "filename": export_name(key, result.kind, frame_index, result.frames_total),
                "embedding": candidates.embedding[i] if len(candidates.embedding) else None,
                "url": "",
                "thumbnail": None,
                "error": None,
            }
        )
    return rows


def _write_frames(
    *, source: ObjectStore, output: ObjectStore, rows: list[dict[str, Any]], workers: int
) -> None:
    """Re-decode the picked video frames and upload them as PNG; errors go to `row["error"]`.

    Videos are decoded by a few threads, one pass per video; each frame is handed to a pool of
    `workers` threads that encode and upload it. A semaphore bounds the full-size frames held
    in memory. The first storage failure stops the decoders and is raised.
    """
    by_video: dict[str, list[int]] = {}
    for row in rows:
        if row["kind"] == "video":
            by_video.setdefault(row["key"], []).append(row["rank"])
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
        targets = sorted((fi, rows[rs[0]]["pts_seconds"]) for fi, rs in by_frame.items())
        done: set[int] = set()
        local_name = ""
        reason = "the decoder did not return this frame"
        try:
            with source.local_copy(key) as path:
                local_name = path.name
                for fi, frame in media.extract_frames(path, targets):
                    if stop.is_set():
                        return
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
                key,
                reason,
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


def _image_thumbnails(*, source: ObjectStore, rows: list[dict[str, Any]], workers: int) -> None:
    """Thumbnails of the picked images shown in the report (the first `REPORT_THUMBNAILS`)."""
    wanted = [r for r in rows[:REPORT_THUMBNAILS] if r["kind"] == "image"]

    def load(row: dict[str, Any]) -> None:
        try:
            with source.local_copy(row["key"]) as path:
                row["thumbnail"] = _thumbnail_jpeg(media.load_image(path))
        except (DecodeError, NotFound) as exc:
            logger.warning("no thumbnail for %s: %s", row["key"], exc)

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
    # cores. On the demo's 720p frames this is as small as Pillow's output at the same level
    # and about twice as fast on one core.
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


def _filenames_txt(rows: list[dict[str, Any]]) -> bytes:
    return "".join(f"{r['filename']}\n" for r in rows).encode("utf-8")


def _csv_float(value: float, fmt: str = ".6g") -> str:
    """A float for CSV; NaN as an empty cell (pandas reads it back as NaN)."""
    return "" if math.isnan(value) else format(value, fmt)


def _embedding_text(row: np.ndarray | None) -> str:
    if row is None:
        return ""
    # float16 needs 5 significant digits to round-trip; wider types get 8.
    fmt = ".5g" if row.dtype == np.float16 else ".8g"
    return " ".join(format(v, fmt) for v in row.astype(np.float64).tolist())


def _samples_csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SAMPLES_CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r["sample_id"],
                r["filename"],
                r["key"],
                r["frame_index"],
                repr(r["pts_seconds"]),
                r["width"],
                r["height"],
                _csv_float(r["brightness"]),
                _csv_float(r["contrast"]),
                _csv_float(r["sharpness"]),
                _csv_float(r["distance"]),
                r["reason"],
                r["url"],
                _embedding_text(r["embedding"]),
            ]
        )
    return buf.getvalue().encode("utf-8")


def _labelstudio_json(rows: list[dict[str, Any]], tag: str) -> bytes:
    tasks = [
        {
            "data": {"image": r["url"]},
            "meta": {
                "key": r["key"],
                "frame_index": r["frame_index"],
                "sample_id": r["sample_id"],
                "tag": tag,
                "filename": r["filename"],
            },
        }
        for r in rows
    ]
    return json.dumps(tasks, indent=1, ensure_ascii=False).encode("utf-8")


def _even_subsample(n: int, k: int) -> np.ndarray:
    """`k` evenly spaced row indices out of `n` (all of them when `k >= n`); deterministic."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(k, 0)).round().astype(np.int64))


def _as_points(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.zeros((0, dim))
    return np.nan_to_num(x.reshape(len(x), -1))


def _pca_2d(points: np.ndarray) -> np.ndarray:
    """Project rows on their first two principal axes (deterministic signs)."""
    # Algorithm: centre, then the SVD of the D×D scatter matrix gives the principal axes
    # (cheaper than the SVD of the N×D data for N in the thousands); each axis's sign is fixed
    # so that its largest coordinate is positive, making the picture reproducible.
    n, d = points.shape
    out = np.zeros((n, 2))
    if n == 0 or d == 0:
        return out
    centred = points - points.mean(axis=0)
    axes, _, _ = np.linalg.svd(centred.T @ centred)
    axes = axes[:, : min(2, d)]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    axes = axes * np.where(signs == 0, 1.0, signs)
    out[:, : axes.shape[1]] = centred @ axes
    return out


def render_embedding_plot(
    *,
    dataset: np.ndarray,
    picks: np.ndarray,
    rest: np.ndarray,
    title: str = "",
    max_points: int = MAX_PLOT_POINTS,
) -> bytes:
    """Draw a 2-D PCA projection of the embedding space as a PNG.

    The existing dataset is drawn in grey, the run's other candidates faint and the picks in
    colour on top. The projection is fitted on all points drawn. Above `max_points` points the
    picks are kept (up to the cap) and the dataset and the rest are subsampled, evenly and
    deterministically, in proportion to their sizes; the legend gives the full counts.

    Args:
        dataset: (M, D) embeddings of the dataset before the run; M may be 0.
        picks: (P, D) embeddings of this run's picks.
        rest: (R, D) embeddings of this run's candidates that were not picked.
        title: Title of the figure.
        max_points: Most points drawn.

    Returns:
        PNG bytes (matplotlib, Agg backend; pyplot's global state is not touched).

    Raises:
        ValueError: If the non-empty inputs differ in embedding width.
    """
    widths = {np.asarray(x).shape[1] for x in (dataset, picks, rest) if np.asarray(x).size}
    if len(widths) > 1:
        raise ValueError(f"embeddings of different widths: {sorted(widths)}")
    dim = widths.pop() if widths else 0
    sets = [_as_points(x, dim) for x in (dataset, picks, rest)]
    counts = [len(s) for s in sets]
    n_picks = min(counts[1], max_points)
    budget = max_points - n_picks
    others = counts[0] + counts[2]
    shown = [
        _even_subsample(counts[0], budget * counts[0] // others if others else 0),
        _even_subsample(counts[1], n_picks),
        _even_subsample(counts[2], budget * counts[2] // others if others else 0),
    ]
    drawn = [s[idx] for s, idx in zip(sets, shown, strict=True)]
    xy = _pca_2d(np.concatenate(drawn)) if dim else np.zeros((sum(map(len, drawn)), 2))
    bounds = np.cumsum([0] + [len(d) for d in drawn])
    parts = [xy[bounds[j] : bounds[j + 1]] for j in range(3)]
    return _draw_plot(parts, counts, title)


def _draw_plot(parts: list[np.ndarray], counts: list[int], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # (label, style) for dataset, picks, rest; drawn dataset, rest, then picks on top.
    styles = [
        ("dataset before this run", {"s": 5, "c": "#8a8a8a", "alpha": 0.45, "zorder": 1}),
        ("picked in this run", {"s": 22, "c": "#e4572e", "alpha": 0.95, "zorder": 3}),
        ("other candidates of this run", {"s": 5, "c": "#4c78a8", "alpha": 0.15, "zorder": 2}),
    ]
    for j in (0, 2, 1):
        (label, style), pts, n = styles[j], parts[j], counts[j]
        label += f" ({n:,}" + (f", {len(pts):,} drawn)" if len(pts) < n else ")")
        ax.scatter(pts[:, 0], pts[:, 1], label=label, linewidths=0, rasterized=True, **style)
    if not any(counts):
        ax.text(0.5, 0.5, "no embeddings", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title or "embedding space (PCA)")
    legend = ax.legend(loc="best", fontsize=8, framealpha=0.85, markerscale=1.5)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Report


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}.muted{color:#666}code{font:12px ui-monospace,Menlo,Consolas,monospace;
word-break:break-all}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.n{text-align:right;
font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:10px}.card{width:150px;border:1px solid #ddd;
border-radius:4px;padding:6px;font-size:12px;background:#fafafa}
.card img{display:block;max-width:138px;max-height:138px;margin:0 auto 4px}
.card .none{height:80px;display:flex;align-items:center;justify-content:center;color:#999;
background:#eee;margin-bottom:4px}
.plot img{max-width:100%;border:1px solid #ddd}.warn{color:#a33}
"""


def _e(value: Any) -> str:
    """HTML-escape any value from data (keys, reasons, URLs) for text or attributes."""
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


def _link(url: str, text: str) -> str:
    """A link to `url` if it is a web, file or bucket URL, else just the text (no `javascript:`)."""
    if url and _SAFE_URL_RE.match(url):
        return f'<a href="{_e(url)}">{_e(text)}</a>'
    return _e(text)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _table(rows: Sequence[tuple[str, str]], *, head: tuple[str, str] | None = None) -> str:
    """A two-column table; cells are already HTML."""
    out = ["<table>"]
    if head:
        out.append(f"<tr><th>{head[0]}</th><th>{head[1]}</th></tr>")
    out += [f'<tr><th>{k}</th><td class="n">{v}</td></tr>' for k, v in rows]
    out.append("</table>")
    return "\n".join(out)


def render_report(*, summary: RunSummary, picks: list[dict], plot_png: bytes | None) -> str:
    """Render the run's self-contained HTML report.

    Everything taken from data (keys, reasons, URLs, model and store names) is HTML-escaped;
    links are only made from `http(s)://`, `file://` and `s3://` URLs. Images are embedded as
    data URIs, so the file can be opened anywhere without the output store.

    Args:
        summary: The run summary (counts, coverage, timings, corrupt files, `outputs`).
        picks: One dict per pick in pick order, with keys `key`, `frame_index`, `distance`,
            `reason` and optionally `kind`, `filename`, `url`, `thumbnail` (JPEG bytes) and
            `error` (why the frame could not be exported).
        plot_png: The embedding plot to embed, or None.

    Returns:
        The HTML document.
    """
    title = f"Winnow — tag {summary.tag}" if summary.tag else "Winnow — run report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">run <code>{_e(summary.run_id)}</code> · source '
        f"<code>{_e(summary.source)}</code> → output <code>{_e(summary.output)}</code>"
        + (f" · parent tag <code>{_e(summary.parent_tag)}</code>" if summary.parent_tag else "")
        + f" · datapool version {_e(summary.pool_version_before)} → "
        + _e(summary.pool_version_after or summary.pool_version_before + 1)
        + (f" · model {_e(summary.model)}" if summary.model else "")
        + "</p>",
    ]
    parts += _report_counts(summary)
    parts += _report_plot(summary, plot_png)
    parts += _report_picks(picks, summary.selected or len(picks))
    parts += _report_problems(summary, picks)
    parts += _report_outputs(summary, picks)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _report_counts(summary: RunSummary) -> list[str]:
    files = [
        ("files listed", _e(summary.files_listed)),
        ("new or changed", _e(summary.files_new)),
        ("already in the pool", _e(summary.files_known)),
        ("decoded", _e(summary.files_ok)),
        ("corrupt", _e(summary.files_corrupt)),
        ("skipped", _e(summary.files_skipped)),
    ]
    chosen = [
        ("candidates (frames)", _e(summary.candidates)),
        ("duplicates removed", _e(summary.removed_duplicates)),
        ("removed by thresholds", _e(summary.removed_thresholds)),
        ("selected", _e(summary.selected)),
        ("stopped by", _e(summary.stop_reason or "n/a")),
        (
            "coverage radius before → after",
            f"{_num(summary.coverage_before)} → {_num(summary.coverage_after)}",
        ),
        ("mean distance of picks to the dataset", _num(summary.mean_pick_distance)),
        ("the same for a random pick (baseline)", _num(summary.mean_random_distance)),
    ]
    out = ['<h2>Counts</h2><div class="grid" style="gap:24px">', _table(files), _table(chosen)]
    if summary.seconds:
        timings = [(_e(k), f"{v:.2f}") for k, v in summary.seconds.items()]
        total = sum(summary.seconds.values())
        out.append(_table([*timings, ("total", f"{total:.2f}")], head=("stage", "seconds")))
    out.append("</div>")
    return out


def _report_plot(summary: RunSummary, plot_png: bytes | None) -> list[str]:
    if plot_png is None:
        return []
    img = f'<img alt="embedding plot" src="{_data_uri("image/png", plot_png)}">'
    url = summary.outputs.get("embedding_plot", "")
    body = f'<a href="{_e(url)}">{img}</a>' if url and _SAFE_URL_RE.match(url) else img
    return [
        "<h2>Embedding space</h2>",
        '<p class="muted">2-D PCA projection: the dataset before this run in grey, this '
        "run's picks in colour, its other candidates faint.</p>",
        f'<div class="plot">{body}</div>',
    ]


def _report_picks(picks: list[dict], n_selected: int) -> list[str]:
    shown = picks[:REPORT_THUMBNAILS]
    note = f"first {len(shown)} of {n_selected}" if len(shown) < n_selected else f"{n_selected}"
    out = [f'<h2>Picks</h2><p class="muted">{_e(note)} in pick order; all are in samples.csv.</p>']
    out.append('<div class="grid">')
    for rank, pick in enumerate(shown):
        thumb = pick.get("thumbnail")
        if thumb:
            img = f'<img alt="pick {rank + 1}" src="{_data_uri("image/jpeg", thumb)}">'
        else:
            img = '<div class="none">no preview</div>'
        url = pick.get("url") or ""
        if url and _SAFE_URL_RE.match(url):
            img = f'<a href="{_e(url)}">{img}</a>'
        frame = "image" if pick.get("kind") == "image" else f"frame {_e(pick['frame_index'])}"
        error = pick.get("error")
        out.append(
            f'<div class="card">{img}<div>#{rank + 1} <code>{_e(pick["key"])}</code></div>'
            f"<div>{frame} · distance {_num(float(pick['distance']))}</div>"
            f'<div class="muted">{_e(pick["reason"])}</div>'
            + (f'<div class="warn">not exported: {_e(error)}</div>' if error else "")
            + "</div>"
        )
    out.append("</div>")
    return out


def _report_problems(summary: RunSummary, picks: list[dict]) -> list[str]:
    out = []
    failed = [p for p in picks if p.get("error")]
    if failed:
        out.append(
            f'<h2 class="warn">Picked frames not exported ({len(failed)})</h2>'
            '<p class="muted">The video could not be re-decoded at upload time; these picks are '
            "left out of filenames.txt, samples.csv and labelstudio.json.</p>"
        )
        out.append("<table><tr><th>file</th><th>frame</th><th>reason</th></tr>")
        out += [
            f"<tr><td><code>{_e(p['key'])}</code></td><td>{_e(p['frame_index'])}</td>"
            f"<td>{_e(p['error'])}</td></tr>"
            for p in failed
        ]
        out.append("</table>")
    if summary.corrupt:
        total = summary.files_corrupt + summary.files_skipped
        more = f" (first {len(summary.corrupt)} of {total})" if total > len(summary.corrupt) else ""
        out.append(f"<h2>Corrupt or skipped files{_e(more)}</h2>")
        out.append("<table><tr><th>file</th><th>reason</th></tr>")
        out += [
            f"<tr><td><code>{_e(key)}</code></td><td>{_e(reason)}</td></tr>"
            for key, reason in summary.corrupt
        ]
        out.append("</table>")
    return out


def _report_outputs(summary: RunSummary, picks: list[dict]) -> list[str]:
    if not summary.outputs:
        return []
    described = {
        "filenames": ("filenames.txt", "one exported name per sample"),
        "samples_csv": ("samples.csv", "metadata, links and embeddings"),
        "labelstudio": ("labelstudio.json", "Label Studio import tasks"),
        "embedding_plot": ("embedding.png", "the embedding plot"),
        "report": ("report.html", "this report"),
    }
    out = ["<h2>Outputs</h2><ul>"]
    for name, url in summary.outputs.items():
        label, text = described.get(name, (name, ""))
        out.append(f"<li>{_link(url, label)}" + (f": {_e(text)}" if text else "") + "</li>")
    frames = sum(p.get("kind") == "video" and not p.get("error") for p in picks)
    images = sum(p.get("kind") == "image" for p in picks)
    out.append(
        f"<li>{frames} picked video frames as full-size PNG under <code>{FRAMES_PREFIX}/</code>; "
        f"{images} picked images referenced in place in the source</li>"
    )
    out.append("</ul>")
    return out

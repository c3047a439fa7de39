"""`upload_selection`: a run's picks and the tag's exports, written to the output store."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from winnow.errors import ConfigError, DecodeError, NotFound, UnsupportedMediaError
from winnow.media import load_image
from winnow.outputs._clips import (
    clip_name,
    clip_strip,
    clips_csv,
    cut_clip,
    labelstudio_video_tasks,
)
from winnow.outputs._exports import (
    _filenames_txt,
    _labelstudio_json,
    _members_csv,
    _members_parquet,
    _samples_csv,
)
from winnow.outputs._frames import REPORT_THUMBNAILS, _image_thumbnails, _write_frames
from winnow.outputs._names import export_name, tag_keys
from winnow.outputs._neighbours import exact_duplicates, nearest_unpicked
from winnow.outputs._objects import coco_json, object_card_png, objects_csv
from winnow.outputs._plot import render_embedding_plot
from winnow.outputs._report import render_report
from winnow.records import Candidates, ClipPick, FileResult, ObjectRows, Selection
from winnow.storage import ObjectStore
from winnow.summary import RunSummary, visible

logger = logging.getLogger(__name__)


@dataclass
class Exported:
    """What `upload_selection` wrote.

    Attributes:
        filenames: Per pick, in pick order: the exported name (frame PNG key in the output, or
            the image's source key), as in `filenames.txt`.
        urls: Per pick: a link to the frame PNG in the output (videos) or to the source image;
            an empty string for a frame in `missing`.
        keys: `filenames`, `samples_csv`, `labelstudio`, `members_csv`, `members_parquet`,
            `embedding_plot`, `report` → key of that file in the output store.
        links: The same names → link (`ObjectStore.link`: `file://` locally; `s3://`, or
            presigned HTTPS when asked for, on S3).
        missing: Frame name → `<key>: <reason>`, for picked frames that could not be
            re-decoded (the video was removed or can no longer be decoded). They are left out of
            `filenames.txt`, `samples.csv` and `labelstudio.json`, logged as a warning and
            listed in the report (and left out of the members CSV and Parquet).
    """

    filenames: list[str]
    urls: list[str]
    keys: dict[str, str]
    links: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)


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
    exports: ObjectStore | None = None,
    pool_nearest: Any = None,
    objects: ObjectRows | None = None,
) -> Exported:
    """Write the selected samples and the tag's exports to the output store.

    Picked video frames are re-decoded at full size (one open and seek pass per video for all
    its picks) and written as PNG; images are referenced in place. Then `filenames.txt`,
    `samples.csv`, `labelstudio.json`, `members.csv`, `members.parquet`, `embedding.png`
    and, last, `report.html` are written under `tags/<tag>/` of `exports` (the run's staging
    folder, published to the output after the commit: `publish_exports`), with links to where
    they will be in the output. PNG encoding and uploads run in a thread pool. Every name is
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
        exports: Where the `tags/<tag>/` files are written (default: `output` itself).
        pool_nearest: Each pick's nearest pool sample (`winnow.index.Nearest`, in pick order),
            shown in the report; None: not shown.
        objects: The objects on the picked frames: Label Studio pre-annotations
            (`rectanglelabels`), `objects.csv` and `coco.json` under `tags/<tag>/`, and the
            picked objects' crops on their frames in the report. None or empty: no objects.

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
        exports=output if exports is None else exports,
        pool_nearest=pool_nearest,
        objects=objects if objects is not None and len(objects) else None,
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
    exports: ObjectStore,
    pool_nearest: Any,
    objects: ObjectRows | None,
) -> Exported:
    rows = _pick_rows(candidates, selection, files)
    if objects is not None:
        _add_objects(rows, objects)
    _add_neighbours(rows, candidates, selection, files)
    if pool_nearest is not None:
        for pos, row in enumerate(rows):
            if pool_nearest.key[pos] is not None:
                row["pool_nearest"] = {
                    "key": str(pool_nearest.key[pos]),
                    "frame_index": int(pool_nearest.frame_index[pos]),
                    "distance": float(pool_nearest.distance[pos]),
                }
    shown = [n for row in rows[:REPORT_THUMBNAILS] for n in row["neighbours"]]
    _write_frames(source=source, output=output, rows=rows, workers=workers, extras=shown)
    _image_thumbnails(source=source, rows=rows, workers=workers, extras=shown)

    missing: dict[str, str] = {}
    for row in rows:
        if row["error"] is not None:
            missing[row["filename"]] = f"{row['key']}: {row['error']}"
        elif row["kind"] == "video":
            row["url"] = output.link(row["filename"])
        else:
            row["url"] = source.link(row["key"])
    exported_rows = [r for r in rows if r["error"] is None]
    for row in rows:
        row["tag"] = tag

    exports.put(keys["filenames"], _filenames_txt(exported_rows))
    exports.put(keys["samples_csv"], _samples_csv(exported_rows))
    exports.put(keys["labelstudio"], _labelstudio_json(exported_rows, tag))
    exports.put(keys["members_csv"], _members_csv(exported_rows))
    exports.put(keys["members_parquet"], _members_parquet(exported_rows))
    clips = _export_clips(source=source, output=output, selection=selection)
    if clips:
        ok = [c for c in clips if c["error"] is None]
        keys.update(_optional_keys(tag, "clips_csv", "labelstudio_clips"))
        exports.put(keys["clips_csv"], clips_csv(ok))
        exports.put(keys["labelstudio_clips"], labelstudio_video_tasks(ok, tag))
        missing.update({c["clip"]: f"{c['file']}: {c['error']}" for c in clips if c["error"]})
    cards: list[dict[str, Any]] = []
    if objects is not None:
        keys.update(_optional_keys(tag, "objects_csv", "coco"))
        reasons = {o.object_id: o.reason for o in selection.objects}
        exports.put(keys["objects_csv"], objects_csv(objects, picked=reasons))
        exports.put(keys["coco"], coco_json(exported_rows, objects))
        cards = _object_cards(selection, rows, source=source, output=output)

    picked = np.zeros(len(candidates), dtype=bool)
    picked[selection.indices] = True
    embedding = candidates.embedding if len(candidates) else np.zeros((0, 0), np.float16)
    plot = render_embedding_plot(
        dataset=dataset,
        picks=embedding[selection.indices],
        rest=embedding[~picked],
        title=f"tag {tag}",
    )
    exports.put(keys["embedding_plot"], plot)

    links = {name: output.link(key) for name, key in keys.items()}
    summary.outputs = dict(links)
    report = render_report(summary=summary, picks=rows, plot_png=plot, clips=clips, objects=cards)
    exports.put(keys["report"], report.encode("utf-8"))
    return Exported(
        filenames=[r["filename"] for r in rows],
        urls=[r["url"] for r in rows],
        keys=dict(keys),
        links=links,
        missing=missing,
    )


def _export_clips(
    *, source: ObjectStore, output: ObjectStore, selection: Selection
) -> list[dict[str, Any]]:
    """Cut the picked clips (`unit: clip`) to MP4 under `clips/`; one row per clip.

    A video that can no longer be read gives rows with `error` set (logged), not a failure.
    """
    rows = [_clip_row(c) for c in selection.clips]  # in pick order
    by_key: dict[str, list[tuple[ClipPick, dict[str, Any]]]] = {}
    for clip, row in zip(selection.clips, rows, strict=True):
        by_key.setdefault(clip.key, []).append((clip, row))
    for key, made in by_key.items():  # one local copy of each video
        try:
            with source.local_copy(key) as path, tempfile.TemporaryDirectory() as tmp:
                for clip, row in made:
                    row["clip"] = clip_name(clip.key, clip.start_s, clip.end_s)
                    dst = Path(tmp) / "clip.mp4"
                    cut = cut_clip(path, dst, start_s=clip.start_s, end_s=clip.end_s)
                    output.put(row["clip"], dst)
                    row.update(frames=cut.frames, mode=cut.mode, why=cut.why)
                    row["url"] = output.link(row["clip"])
                    row["strip"] = clip_strip(path, start_s=clip.start_s, end_s=clip.end_s)
        except (NotFound, DecodeError, ConfigError) as exc:
            reason = "the file is no longer in the source" if isinstance(exc, NotFound) else exc
            logger.warning("clips of %s not exported: %s", visible(key), reason)
            for _, row in made:
                if not row["url"]:
                    row["error"] = str(reason)
    return rows


def _optional_keys(tag: str, *names: str) -> dict[str, str]:
    """The keys of the optional tag files a run writes (only those: the summary links them)."""
    return {name: key for name, key in tag_keys(tag, optional=True).items() if name in names}


def _add_objects(rows: list[dict[str, Any]], objects: ObjectRows) -> None:
    """Give each pick row the objects on its frame (its Label Studio pre-annotations)."""
    by_frame: dict[str, list[int]] = {}
    for i, sid in enumerate(objects.sample_id):
        by_frame.setdefault(str(sid), []).append(i)
    for row in rows:
        found = by_frame.get(row["sample_id"])
        if found:
            row["objects"] = objects.take(found)


def _object_cards(
    selection: Selection,
    rows: list[dict[str, Any]],
    *,
    source: ObjectStore,
    output: ObjectStore,
) -> list[dict[str, Any]]:
    """The report's picked objects (at most `REPORT_THUMBNAILS`), each on its full-size frame.

    The frame is read back from the exported PNG (videos) or the source image; one that cannot
    be read gives a card without a picture.
    """
    by_id = {r["sample_id"]: r for r in rows}
    frames: dict[str, np.ndarray | None] = {}
    cards = []
    for pick in selection.objects[:REPORT_THUMBNAILS]:
        row = by_id.get(pick.sample_id)
        if row is not None and pick.sample_id not in frames:
            frames[pick.sample_id] = _full_frame(row, source=source, output=output)
        rgb = frames.get(pick.sample_id)
        cards.append(
            {
                "object_id": pick.object_id,
                "key": pick.key,
                "frame_index": pick.frame_index,
                "label": pick.label,
                "score": pick.score,
                "box": pick.box,
                "reason": pick.reason,
                "card_png": None
                if rgb is None
                else object_card_png(rgb, pick.box, label=pick.label, score=pick.score),
            }
        )
    return cards


def _full_frame(
    row: dict[str, Any], *, source: ObjectStore, output: ObjectStore
) -> np.ndarray | None:
    if row["error"] is not None:
        return None
    store, key = (output, row["filename"]) if row["kind"] == "video" else (source, row["key"])
    try:
        with store.local_copy(key) as path:
            return load_image(Path(path))
    except (NotFound, DecodeError, UnsupportedMediaError, ConfigError) as exc:
        logger.warning("object crops of %s not shown: %s", visible(key), exc)
        return None


def _clip_row(clip: ClipPick) -> dict[str, Any]:
    return {
        "file": clip.key,
        "start_s": clip.start_s,
        "end_s": clip.end_s,
        "clip": f"{clip.key} {clip.start_s:.3f}-{clip.end_s:.3f} s",  # the name, once cut
        "frames": 0,
        "mode": "",
        "why": "",
        "reason": clip.reason,
        "url": "",
        "strip": None,
        "error": None,
    }


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


def _add_neighbours(
    rows: list[dict[str, Any]],
    candidates: Candidates,
    selection: Selection,
    files: dict[str, FileResult],
) -> None:
    """Give each pick row its nearest unpicked candidates and its removed exact duplicates."""
    picks = selection.indices
    if len(candidates.embedding) == 0:
        for row in rows:
            row.update(neighbours=[], duplicates=[], represented=1)
        return
    found = nearest_unpicked(candidates.embedding, picks)
    duplicates = exact_duplicates(candidates.content_hash, picks)

    def describe(i: int, distance: float) -> dict[str, Any]:
        key = str(candidates.key[i])
        return {
            "key": key,
            "kind": files[key].kind if key in files else "video",
            "frame_index": int(candidates.frame_index[i]),
            "pts_seconds": float(candidates.pts_seconds[i]),
            "distance": distance,
            "thumbnail": None,
        }

    for pos, row in enumerate(rows):
        row["neighbours"] = [
            describe(int(i), float(d))
            for i, d in zip(found.index[pos], found.distance[pos], strict=True)
            if i >= 0
        ]
        row["duplicates"] = [describe(i, 0.0) for i in duplicates.get(pos, [])]
        row["represented"] = int(found.represented[pos])

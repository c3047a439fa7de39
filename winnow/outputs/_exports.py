"""The tag's export files: `filenames.txt`, `samples.csv`, members CSV/Parquet, Label Studio, COCO.

Label Studio tasks of frames with objects carry their predicted boxes as `predictions`
(pre-annotations, `_objects.py`); the `coco` format holds the members and those boxes.

Label Studio reads a task's `image` from an URL it can fetch. What the export's `image` holds:

- a frame or image in a **local** folder: `/data/local-files/?d=<path>`, Label Studio's
  local-files URL, with `<path>` the file's absolute path relative to the server's
  `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` (`/` when written by a run; `winnow export --format
  labelstudio --document-root DIR` writes paths relative to another root). The server needs
  `LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true` and a project Local Storage whose path holds
  the files (README, "Exports");
- on **S3**: the `s3://bucket/key` URL (Label Studio resolves it through the project's S3
  source storage), or a presigned HTTPS link when `presign_links` is on. Left as they are.
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.errors import ConfigError
from winnow.outputs._names import export_name
from winnow.outputs._objects import coco_json, labelstudio_predictions
from winnow.records import ObjectRows, TagRecord
from winnow.storage import ObjectStore

if TYPE_CHECKING:
    from winnow.datapool import PoolSnapshot

# `winnow export --format`: what each format writes (the first is the default).
EXPORT_FORMATS = {
    "filenames": "one exported name per member (as filenames.txt)",
    "csv": "members as CSV (as members.csv)",
    "parquet": "members and embeddings as Parquet (as members.parquet)",
    "labelstudio": "Label Studio import tasks (as labelstudio.json)",
    "coco": "COCO detection JSON: the members and their predicted boxes",
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


# The members table: one row per member of a tag, plain columns any tool reads.
MEMBERS_COLUMNS = (
    "sample_id",
    "tag",
    "key",
    "frame_index",
    "pts_seconds",
    "filename",
    "width",
    "height",
    "brightness",
    "contrast",
    "sharpness",
)
_MEMBERS_TYPES = {
    "sample_id": pa.string(),
    "tag": pa.string(),
    "key": pa.string(),
    "frame_index": pa.int64(),
    "pts_seconds": pa.float64(),
    "filename": pa.string(),
    "width": pa.int32(),
    "height": pa.int32(),
    "brightness": pa.float32(),
    "contrast": pa.float32(),
    "sharpness": pa.float32(),
}
LABELSTUDIO_LOCAL_FILES = "/data/local-files/?d="


def _members_table(rows: list[dict[str, Any]], *, embedding: bool) -> pa.Table:
    """The members as an Arrow table (`embedding`: float32 lists, for tools without float16)."""
    arrays = [pa.array([r[c] for r in rows], type=_MEMBERS_TYPES[c]) for c in MEMBERS_COLUMNS]
    names = list(MEMBERS_COLUMNS)
    if embedding:
        dims = {len(r["embedding"]) for r in rows if r["embedding"] is not None}
        dim = dims.pop() if len(dims) == 1 else 0
        if dim:
            flat = np.concatenate([np.asarray(r["embedding"], np.float32) for r in rows])
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), dim))
            names.append("embedding")
    return pa.Table.from_arrays(arrays, names=names)


def _members_csv(rows: list[dict[str, Any]]) -> bytes:
    """`MEMBERS_COLUMNS` as CSV: a header, one row per member, NaN as an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MEMBERS_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r["sample_id"],
                r["tag"],
                r["key"],
                r["frame_index"],
                repr(float(r["pts_seconds"])),
                r["filename"],
                r["width"],
                r["height"],
                _csv_float(float(r["brightness"]), ".8g"),
                _csv_float(float(r["contrast"]), ".8g"),
                _csv_float(float(r["sharpness"]), ".8g"),
            ]
        )
    return buf.getvalue().encode("utf-8")


def _members_parquet(rows: list[dict[str, Any]]) -> bytes:
    """`MEMBERS_COLUMNS` and the embedding (a fixed-size list of float32) as Parquet."""
    buf = io.BytesIO()
    pq.write_table(_members_table(rows, embedding=True), buf, compression="zstd")
    return buf.getvalue()


def labelstudio_image(url: str, *, document_root: str = "/") -> str:
    """The URL Label Studio reads an exported frame or image from.

    Args:
        url: The file's link (`ObjectStore.link`): `file://…`, `s3://…` or `https://…`.
        document_root: The Label Studio server's `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`.

    Returns:
        For a `file://` URL, `/data/local-files/?d=<path below document_root, URL-quoted>`;
        any other URL unchanged (`s3://` is resolved by the project's S3 storage).

    Raises:
        ValueError: If a local file lies outside `document_root`.
    """
    if not url.startswith("file://"):
        return url
    path = posixpath.normpath(unquote(urlsplit(url).path))
    root = posixpath.normpath(
        document_root if document_root.startswith("/") else "/" + document_root
    )
    if root != "/" and not path.startswith(root.rstrip("/") + "/"):
        raise ValueError(
            f"{path} is outside the Label Studio document root {root}: "
            "choose a document root that holds the output and the source"
        )
    relative = posixpath.relpath(path, root)
    return LABELSTUDIO_LOCAL_FILES + quote(relative, safe="/")


def _labelstudio_json(rows: list[dict[str, Any]], tag: str, *, document_root: str = "/") -> bytes:
    """Label Studio tasks; a row with `objects` (its frame's, non-empty) gets `predictions`."""
    tasks = []
    for r in rows:
        task: dict[str, Any] = {
            "data": {"image": labelstudio_image(r["url"], document_root=document_root)},
            "meta": {
                "key": r["key"],
                "frame_index": r["frame_index"],
                "sample_id": r["sample_id"],
                "tag": r.get("tag", tag),
                "filename": r["filename"],
            },
        }
        objects = r.get("objects")
        if objects is not None and len(objects):
            task["predictions"] = labelstudio_predictions(
                objects, width=int(r["width"]), height=int(r["height"])
            )
        tasks.append(task)
    return json.dumps(tasks, indent=1, ensure_ascii=False).encode("utf-8")


def _with_objects(rows: list[dict[str, Any]], objects: ObjectRows) -> list[dict[str, Any]]:
    """Set each row's `objects`: the objects on its frame (rows without any get none)."""
    by_sample: dict[str, list[int]] = {}
    for i, sid in enumerate(objects.sample_id):
        by_sample.setdefault(str(sid), []).append(i)
    for row in rows:
        if row["sample_id"] in by_sample:
            row["objects"] = objects.take(by_sample[row["sample_id"]])
    return rows


def export_tag(
    snapshot: PoolSnapshot,
    *,
    tag: str,
    fmt: str = "filenames",
    cumulative: bool = False,
    output: ObjectStore | None = None,
    open_source: Callable[[str], ObjectStore] | None = None,
    document_root: str = "/",
) -> bytes:
    """A tag's members in one export format, read from the datapool.

    Members come oldest tag first when `cumulative`, each in pick order; every format names a
    frame by its exported PNG name and an image by its source key, as the run's exports do.

    Args:
        snapshot: The datapool snapshot holding the tag.
        tag: The tag's name.
        fmt: One of `EXPORT_FORMATS`: `filenames`, `csv`, `parquet`, `labelstudio` (tasks
            carry the members' predicted boxes as pre-annotations) or `coco` (the members and
            their predicted boxes).
        cumulative: Include the tag's ancestors (the dataset up to the tag).
        output: The run's output store (where the frame PNGs are); needed for `labelstudio`.
        open_source: Opens a tag's source URL (from its parameters), for links to images;
            needed for `labelstudio` when a member is an image.
        document_root: The Label Studio server's local-files document root (`labelstudio`).

    Returns:
        The file's bytes (UTF-8 text for all formats but `parquet`).

    Raises:
        ConfigError: If the format is unknown, or `labelstudio` lacks `output`/`open_source`.
        NotFound: If the tag (or an ancestor) is not in the pool.
        ValueError: If a local file lies outside `document_root`, or a member with objects
            has no size (`labelstudio`).
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}"
        )
    chain = [snapshot.tag(tag)]
    while cumulative and chain[-1].parent:
        chain.append(snapshot.tag(chain[-1].parent))
    members = [(t, s) for t in reversed(chain) for s in t.sample_ids]
    rows = _member_rows(snapshot, members)
    if fmt == "filenames":
        return _filenames_txt(rows)
    if fmt == "csv":
        return _members_csv(rows)
    if fmt == "parquet":
        return _members_parquet(rows)
    if fmt == "coco":
        return coco_json(rows, snapshot.objects([r["sample_id"] for r in rows]))
    rows = _with_links(rows, output=output, open_source=open_source)
    rows = _with_objects(rows, snapshot.objects([r["sample_id"] for r in rows]))
    return _labelstudio_json(rows, tag, document_root=document_root)


def _member_rows(
    snapshot: PoolSnapshot, members: list[tuple[TagRecord, str]]
) -> list[dict[str, Any]]:
    """One row per (tag, sample id) member: its metadata, exported name and embedding."""
    samples = snapshot.samples([s for _, s in members])
    files = snapshot.files
    keys = files.column("key").to_pylist()
    totals = dict(zip(keys, files.column("frames_total").to_pylist(), strict=True))
    kinds = dict(zip(keys, files.column("kind").to_pylist(), strict=True))
    by_id = {sid: i for i, sid in enumerate(samples.sample_id)}
    rows = []
    for record, sid in members:
        i = by_id[sid]
        key = str(samples.key[i])
        kind = kinds.get(key, "video")
        rows.append(
            {
                "sample_id": sid,
                "tag": record.name,
                "key": key,
                "kind": kind,
                "frame_index": int(samples.frame_index[i]),
                "pts_seconds": float(samples.pts_seconds[i]),
                "filename": export_name(key, kind, int(samples.frame_index[i]), totals.get(key, 1)),
                "width": int(samples.width[i]),
                "height": int(samples.height[i]),
                "brightness": float(samples.brightness[i]),
                "contrast": float(samples.contrast[i]),
                "sharpness": float(samples.sharpness[i]),
                "embedding": samples.embedding[i] if len(samples.embedding) else None,
                "source": json.loads(record.parameters or "{}").get("source"),
            }
        )
    return rows


def _with_links(
    rows: list[dict[str, Any]],
    *,
    output: ObjectStore | None,
    open_source: Callable[[str], ObjectStore] | None,
) -> list[dict[str, Any]]:
    """Set each row's `url`: the frame PNG in the output, or the image in its tag's source."""
    if output is None:
        raise ConfigError("a Label Studio export needs the output store (where the frames are)")
    sources: dict[str, ObjectStore] = {}
    for row in rows:
        if row["kind"] != "image":
            row["url"] = output.link(row["filename"])
            continue
        url = row["source"]
        if open_source is None or not url:
            raise ConfigError(
                f"image {row['key']!r} of tag {row['tag']!r}: the tag's source is unknown, "
                "so no link to it can be made"
            )
        if url not in sources:
            sources[url] = open_source(url)
        row["url"] = sources[url].link(row["key"])
    return rows

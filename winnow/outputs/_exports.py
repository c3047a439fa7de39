"""The tag's export files: `filenames.txt`, `samples.csv` and Label Studio import tasks."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

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

"""Per-candidate columns: the metadata every run has, and a predictions file joined onto it.

Weights, threshold and balance strategies read their column from one table: metadata from
decoding (brightness, sharpness, …) and the columns of the predictions file, which shadow
metadata columns of the same name.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from winnow.arrow_io import owned_reader, read_parquet
from winnow.errors import ConfigError
from winnow.records import META_COLUMNS, STRING_COLUMNS, Candidates

KNOWN_COLUMNS = tuple(META_COLUMNS) + STRING_COLUMNS
"""Per-candidate columns every run has (metadata from decoding); predictions add more."""

OBJECT_COLUMNS = ("label", "score", "probabilities")
"""Per-candidate columns of a run with objects (`objects.predictions`): an object's predicted
label, score and class probabilities (a frame's `probabilities`: its objects' vectors)."""


def _predictions_format(name: str, *, error: type[Exception] = ConfigError) -> str:
    path = name.split("?", 1)[0].split("#", 1)[0].lower()
    if path.endswith(".csv"):
        return "csv"
    if path.endswith((".parquet", ".pq")):
        return "parquet"
    raise error(f"predictions {name!r}: use a .csv or .parquet file (by extension)")


def _normalise_key(name: Any) -> str | None:
    if name is None:
        return None
    key = str(name).replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key.lstrip("/")


def join_predictions(
    candidates: Candidates, data: bytes, *, filename: str
) -> dict[str, np.ndarray]:
    """Parse a predictions file and align its columns with the candidates.

    Rows are matched on `filename` (the file's key relative to the source; a leading `./` or
    `/` is ignored) and, when the file has a `frame_index` column, on the frame too; a row
    whose `frame_index` is empty applies to every frame of its file.

    Args:
        candidates: The run's candidates.
        data: The file's bytes, CSV or Parquet.
        filename: Its name or URL; the extension (`.csv`, `.parquet`, `.pq`) picks the parser.

    Returns:
        Column name → array of length `len(candidates)`: float64 for numeric columns (NaN
        where no row matched or the value is empty), object otherwise (None where missing).

    Raises:
        ConfigError: Unknown extension, unreadable content, no `filename` column, or two rows
            for the same file (and frame).
    """
    import pyarrow as pa

    fmt = _predictions_format(filename)
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(owned_reader(data))
        else:
            table = read_parquet(data)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ConfigError(f"predictions {filename!r} cannot be read as {fmt}: {exc}") from exc
    if "filename" not in table.column_names:
        raise ConfigError(
            f"predictions {filename!r} has no 'filename' column (columns: "
            f"{', '.join(table.column_names) or 'none'}); add one holding each file's key "
            "relative to the source"
        )
    names = [_normalise_key(v) for v in table.column("filename").to_pylist()]
    frames: list[Any] = [None] * len(names)
    if "frame_index" in table.column_names:
        try:
            frames = table.column("frame_index").cast(pa.int64()).to_pylist()
        except (pa.ArrowException, ValueError) as exc:
            raise ConfigError(
                f"predictions {filename!r}: frame_index must hold whole numbers ({exc})"
            ) from exc
    by_frame: dict[tuple[str, int], int] = {}
    by_file: dict[str, int] = {}
    for row, (name, frame) in enumerate(zip(names, frames, strict=True)):
        if name is None:
            continue
        index: dict[Any, int] = by_file if frame is None else by_frame
        key: Any = name if frame is None else (name, frame)
        if key in index:
            what = name if frame is None else f"{name} frame {frame}"
            raise ConfigError(
                f"predictions {filename!r} has two rows for {what} (rows {index[key] + 2} and "
                f"{row + 2}); keep one"
            )
        index[key] = row
    n = len(candidates)
    rows = np.full(n, -1, dtype=np.int64)
    for i, (key, frame) in enumerate(zip(candidates.key, candidates.frame_index, strict=True)):
        row = by_frame.get((_normalise_key(key), int(frame)), -1) if by_frame else -1
        rows[i] = row if row >= 0 else by_file.get(_normalise_key(key), -1)
    hit = rows >= 0
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name in ("filename", "frame_index"):
            continue
        column = table.column(name)
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            aligned = np.full(n, np.nan)
        else:
            values = np.array(column.to_pylist(), dtype=object)
            aligned = np.full(n, None, dtype=object)
        aligned[hit] = values[rows[hit]]
        out[name] = aligned
    return out


def _column_table(candidates: Candidates, columns: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Column name → one value per candidate: the metadata, shadowed by `columns`."""
    table: dict[str, Any] = {name: getattr(candidates, name) for name in KNOWN_COLUMNS}
    for name, values in (columns or {}).items():
        arr = np.asarray(values)
        if arr.ndim != 1 or len(arr) != len(candidates):
            raise ConfigError(
                f"column {name!r} has shape {arr.shape}; it needs one value per candidate "
                f"({len(candidates)})"
            )
        table[name] = arr
    return table


def _get_column(table: dict[str, Any], name: str, user: str) -> np.ndarray:
    if name not in table:
        raise ConfigError(
            f"{user} uses column {name!r}, which neither the candidates nor the predictions "
            f"have (available: {', '.join(sorted(table))})"
        )
    return np.asarray(table[name])


def _numeric(table: dict[str, Any], name: str, user: str) -> np.ndarray:
    """A column as float64 (NaN where missing); `user` names the strategy in errors."""
    values = _get_column(table, name, user)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or v == "":
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{user} needs numbers but column {name!r} holds {v!r}; use a numeric column"
            ) from None
    return out


def _labels(table: dict[str, Any], name: str, user: str) -> np.ndarray:
    """A column as text labels (None where missing; whole floats lose their `.0`)."""
    values = _get_column(table, name, user)
    out = np.full(len(values), None, dtype=object)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out[i] = str(v)
    return out

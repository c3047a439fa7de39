"""Predictions files, in the formats people have, parsed into a `PredictionSet`.

Three formats:

- **table**: CSV, Parquet or JSON lines, one box per row (`filename`, an optional frame
  reference, the box as `x, y, w, h` or `x1, y1, x2, y2`, and optional `label`, `score` and
  class probabilities as a `probabilities` list or one `prob_<class>` column per class);
- **coco**: a COCO JSON file, either the dataset form (`images`, `categories`,
  `annotations`) or the bare list of detection results;
- **yolo**: one `.txt` per image, lines `class cx cy w h [conf]` in fractions of the frame.

A file that cannot be read at all (wrong format, required columns missing) raises one
`ConfigError` naming it and the fix. A row that cannot be used never raises: it is counted per
reason (the `BAD_*` constants of `winnow.objects._boxes`) with the first such row described,
e.g. `line 13 (cam/a.jpg): w=-3`. Rows are named the way a person finds them: `line N` in a
CSV file (N counts the header, so the first data row is line 2), `row N` in Parquet and JSON
lines (the first data row is row 1), `annotation N` in COCO (1-based position in the list) and
`line N` of each YOLO file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from winnow.errors import ConfigError
from winnow.objects._boxes import (
    BAD_CLASS,
    BAD_FILENAME,
    BAD_FRAME,
    BAD_NUMBER,
    BAD_PROBABILITIES,
    BAD_SIZE,
    Box,
    PredictionSet,
)

FORMATS = ("table", "coco", "yolo")
"""What `predictions_format` returns (and what its `fmt` may name, besides `auto`)."""

BOX_UNITS = ("pixels", "normalised")
"""Units of a table's box columns: pixels of the full-size frame, or fractions of it."""

PROBABILITY_TOLERANCE = 0.02
"""How far a row's probabilities may sum from 1; within it they are rescaled to sum to 1."""

DEFAULT_LABEL = "object"
"""Label of every box of a table with neither labels, probabilities nor several classes."""

_TABLE_EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_COCO_EXTENSIONS = (".json",)
_YOLO_EXTENSIONS = (".txt",)
_BOX_COLUMNS = ("x", "y", "w", "h")
_CORNER_COLUMNS = ("x1", "y1", "x2", "y2")
_PROB_PREFIX = "prob_"
_PROB_LIST = "probabilities"


class _Bad(Exception):
    """A row that cannot be used: its reason (a `BAD_*` constant) and what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class _Spec:
    """How to read every record of one file.

    Attributes:
        classes: The closed set of class names (and the probabilities' order); None: any
            label is accepted and the classes are the labels seen.
        normalised: Whether box values are fractions of the frame.
        corners: Whether the box is `x1, y1, x2, y2` rather than `x, y, w, h`.
        probabilities_required: Whether every record must carry probabilities.
        default_label: Label of a record without a label or probabilities; None: such a record
            is a `BAD_CLASS`.
        label_offset: Integer labels are `classes[label - label_offset]`.
    """

    classes: tuple[str, ...] | None
    normalised: bool
    corners: bool = False
    probabilities_required: bool = False
    default_label: str | None = None
    label_offset: int = 0


def predictions_format(name: str, fmt: str = "auto") -> str:
    """Which parser reads a predictions source.

    Args:
        name: The file's name or URL; its extension picks the format when `fmt` is `auto`:
            `.csv`, `.parquet`, `.pq`, `.jsonl`, `.ndjson` → `table`; `.json` → `coco`;
            `.txt` → `yolo`.
        fmt: `auto`, or one of `table`, `coco`, `yolo` to override the extension.

    Returns:
        `table`, `coco` or `yolo`.

    Raises:
        ConfigError: `fmt` is not a known format, or it is `auto` and the extension is not one
            of the above.
    """
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ConfigError(
                f"predictions {name!r}: unknown format {fmt!r}; use 'auto' or one of "
                f"{', '.join(map(repr, FORMATS))}"
            )
        return fmt
    ext = _extension(name)
    if ext in _TABLE_EXTENSIONS:
        return "table"
    if ext in _COCO_EXTENSIONS:
        return "coco"
    if ext in _YOLO_EXTENSIONS:
        return "yolo"
    accepted = ", ".join((*_TABLE_EXTENSIONS, *_COCO_EXTENSIONS, *_YOLO_EXTENSIONS))
    raise ConfigError(
        f"predictions {name!r}: cannot tell the format from its extension; rename it to one of "
        f"{accepted} or name the format ('table', 'coco' or 'yolo')"
    )


def parse_predictions(
    data: bytes,
    *,
    name: str,
    fmt: str = "auto",
    box_units: str = "pixels",
    classes: Sequence[str] | None = None,
) -> PredictionSet:
    """Parse a table (CSV, Parquet or JSON lines) or a COCO JSON file.

    Args:
        data: The file's bytes.
        name: Its name or URL: named in errors and, with `fmt="auto"`, its extension picks the
            format (see `predictions_format`). A table whose extension is not a table's is
            recognised by its content (Parquet magic, JSON lines, else CSV).
        fmt: `auto`, `table` or `coco`.
        box_units: `pixels` or `normalised` (fractions of the frame): the units of a table's
            box columns. COCO boxes are always pixels.
        classes: Class names in id order: the accepted labels, the meaning of integer labels
            and the order of probabilities. None (or empty): taken from the file (the
            `prob_<class>` columns, COCO `categories`, else the labels seen).

    Returns:
        The boxes by media key, the classes, and the rows not used counted per reason; `rows`
        counts the table's data rows or the COCO annotations.

    Raises:
        ConfigError: Unknown format or `box_units`; the file cannot be read as its format; a
            table without `filename` or box columns; a COCO file without annotations or whose
            images cannot be named; probabilities whose class order is unknown; or a YOLO
            format (use `parse_yolo`).
    """
    kind = predictions_format(name, fmt)
    if box_units not in BOX_UNITS:
        raise ConfigError(
            f"predictions {name!r}: unknown box_units {box_units!r}; use 'pixels' (pixels of "
            "the full-size frame) or 'normalised' (fractions of its width and height)"
        )
    given = _given_classes(classes, f"predictions {name!r}")
    if kind == "yolo":
        raise ConfigError(
            f"predictions {name!r} is YOLO: those are one .txt per media file, read with "
            "parse_yolo; use a table (CSV, Parquet, JSON lines) or COCO JSON file here"
        )
    if kind == "coco":
        if box_units != "pixels":
            raise ConfigError(
                f"predictions {name!r} is COCO, whose boxes are pixels; set box_units to "
                "'pixels' (or convert the file to a table with normalised boxes)"
            )
        return _parse_coco(data, name=name, classes=given)
    return _parse_table(data, name=name, classes=given, normalised=box_units == "normalised")


def parse_yolo(files: Mapping[str, bytes], *, classes: Sequence[str]) -> PredictionSet:
    """Parse YOLO label files, one per image.

    Each line is `class cx cy w h [conf]`: a class id (0-based index into `classes`), the box
    centre and size in fractions of the image, and an optional confidence. Boxes come back with
    their top-left corner (`normalised=True`) on frame 0. Blank lines are skipped; an empty file
    means no boxes.

    Args:
        files: Media key (relative to the source) → the bytes of its `.txt` labels.
        classes: Class names in id order.

    Returns:
        The boxes by media key, the classes, and the lines not used counted per reason;
        `rows` counts the non-blank lines.

    Raises:
        ConfigError: `classes` is empty, or a labels file is not text.
    """
    if not classes:
        raise ConfigError("YOLO predictions need objects.classes: the class names in id order")
    names = _given_classes(classes, "YOLO predictions")
    assert names is not None
    out = PredictionSet(classes=names)
    boxes: dict[str, list[Box]] = {}
    for raw_key, data in files.items():
        key = _normalise_key(raw_key)
        text = _yolo_text(data, raw_key)
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            out.rows += 1
            try:
                if not key:
                    raise _Bad(BAD_FILENAME, f"media key {raw_key!r}")
                box = _yolo_box(line.split(), names)
            except _Bad as bad:
                out.reject(bad.reason, f"line {number} ({key or raw_key}): {bad.detail}")
                continue
            boxes.setdefault(key, []).append(box)
    out.boxes = {k: tuple(v) for k, v in boxes.items()}
    return out


# ---------------------------------------------------------------------------------------------
# Shared: records (one row or annotation, as a dict) → boxes


def _collect(
    records: Iterable[tuple[str, dict[str, Any]]], spec: _Spec, out: PredictionSet
) -> None:
    """Turn records into `out.boxes` (and `out.classes`), counting the unusable ones.

    A record has `filename` and `box` (four raw values) and may have `frame_index`,
    `pts_seconds` (absent keys: frame 0), `label`, `score`, `probabilities`, and `invalid` (a
    `_Bad` found while building it).
    """
    boxes: dict[str, list[Box]] = {}
    for where, record in records:
        key = _normalise_key(record.get("filename"))
        if key:
            where = f"{where} ({key})"
        try:
            if record.get("invalid") is not None:
                raise record["invalid"]
            if not key:
                raise _Bad(BAD_FILENAME, f"filename={_show(record.get('filename'))}")
            box = _record_box(record, spec)
        except _Bad as bad:
            out.reject(bad.reason, f"{where}: {bad.detail}")
            continue
        boxes.setdefault(key, []).append(box)
    out.boxes = {k: tuple(v) for k, v in boxes.items()}
    if spec.classes is not None:
        out.classes = spec.classes
    else:
        out.classes = tuple(sorted({b.label for v in boxes.values() for b in v}, key=_class_key))


def _record_box(record: Mapping[str, Any], spec: _Spec) -> Box:
    """One record as a box; raises `_Bad` for the first thing wrong with it."""
    frame_index, pts_seconds = _frame_ref(record)
    x, y, w, h = _coords(record["box"], corners=spec.corners)
    score = _score(record.get("score"))
    probabilities = _probabilities(record.get("probabilities"), spec)
    label = _label(record.get("label"), probabilities, spec)
    return Box(
        frame_index=frame_index,
        pts_seconds=pts_seconds,
        x=x,
        y=y,
        w=w,
        h=h,
        normalised=spec.normalised,
        label=label,
        score=score,
        probabilities=probabilities,
    )


def _frame_ref(record: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """`(frame_index, pts_seconds)`: frame 0 when the record has neither key."""
    if "frame_index" not in record and "pts_seconds" not in record:
        return 0, None
    raw_index, raw_pts = record.get("frame_index"), record.get("pts_seconds")
    frame_index = None
    if not _is_empty(raw_index):
        value = raw_index if isinstance(raw_index, int) else _as_float(raw_index)
        if (
            value is None
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value != int(value)
            or value < 0
        ):
            raise _Bad(BAD_FRAME, f"frame_index={_show(raw_index)}")
        frame_index = int(value)
    pts_seconds = None
    if not _is_empty(raw_pts):
        value = _as_float(raw_pts)
        if value is None or not math.isfinite(value) or value < 0:
            raise _Bad(BAD_FRAME, f"pts_seconds={_show(raw_pts)}")
        pts_seconds = value
    if frame_index is None and pts_seconds is None:
        raise _Bad(BAD_FRAME, "no frame_index or pts_seconds")
    return frame_index, pts_seconds


def _coords(
    raw: Sequence[Any], *, corners: bool, names: Sequence[str] | None = None
) -> tuple[float, float, float, float]:
    """`(x, y, w, h)` from four raw values (corners converted); raises `_Bad`.

    `names` name the four values in descriptions (default: the table's box columns).
    """
    names = names or (_CORNER_COLUMNS if corners else _BOX_COLUMNS)
    values = []
    for column, v in zip(names, raw, strict=True):
        number = _as_float(v)
        if number is None or not math.isfinite(number):
            raise _Bad(BAD_NUMBER, f"{column}={_show(v)}")
        values.append(number)
    x, y, w, h = values
    if corners:
        w, h = w - x, h - y
    if w <= 0:
        raise _Bad(BAD_SIZE, f"w={w:g}")
    if h <= 0:
        raise _Bad(BAD_SIZE, f"h={h:g}")
    return x, y, w, h


def _score(raw: Any) -> float:
    """A score in [0, 1], or NaN when there is none; raises `_Bad`."""
    value = _as_float(raw)
    if value is None or (not math.isnan(value) and not 0.0 <= value <= 1.0):
        raise _Bad(BAD_NUMBER, f"score={_show(raw)}")
    return value


def _probabilities(raw: Any, spec: _Spec) -> tuple[float, ...]:
    """Probabilities in the classes' order, rescaled to sum to 1; raises `_Bad`."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)  # a list in a CSV cell: "[0.1, 0.9]"
        except ValueError:
            raise _Bad(BAD_PROBABILITIES, f"probabilities={raw!r}") from None
    if raw is None or (isinstance(raw, tuple) and all(_is_empty(v) for v in raw)):
        if spec.probabilities_required:
            raise _Bad(BAD_PROBABILITIES, "no probabilities")
        return ()
    if not isinstance(raw, list | tuple) or spec.classes is None:
        raise _Bad(BAD_PROBABILITIES, f"probabilities={_show(raw)}")
    if len(raw) != len(spec.classes):
        raise _Bad(BAD_PROBABILITIES, f"{len(raw)} probabilities for {len(spec.classes)} classes")
    values = [_as_float(v) for v in raw]
    if any(v is None or not math.isfinite(v) or v < 0 for v in values):
        shown = ", ".join(_show(v) for v in raw)
        raise _Bad(BAD_PROBABILITIES, f"probabilities=[{shown}]")
    total = math.fsum(values)
    if abs(total - 1.0) > PROBABILITY_TOLERANCE + 1e-9:  # 0.51 + 0.51 is 1.0200000000000002
        raise _Bad(BAD_PROBABILITIES, f"probabilities sum to {total:g}")
    return tuple(v / total for v in values)


def _label(raw: Any, probabilities: tuple[float, ...], spec: _Spec) -> str:
    """The record's class name: its label, else the most probable class; raises `_Bad`."""
    if _is_empty(raw):
        if probabilities and spec.classes is not None:
            best = max(range(len(probabilities)), key=probabilities.__getitem__)
            return spec.classes[best]
        if spec.default_label is not None:
            return spec.default_label
        raise _Bad(BAD_CLASS, "no label")
    label = _resolve_label(raw, spec.classes, spec.label_offset)
    if label is None:
        raise _Bad(BAD_CLASS, f"label={_show(raw)}")
    return label


def _resolve_label(raw: Any, classes: tuple[str, ...] | None, offset: int = 0) -> str | None:
    """A label as a class name: integers index `classes` (when known); None if unknown."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, int):
        if classes is None:
            return str(raw)
        index = raw - offset
        return classes[index] if 0 <= index < len(classes) else None
    text = str(raw)
    if classes is None or text in classes:
        return text
    return None


# ---------------------------------------------------------------------------------------------
# Table: CSV, Parquet, JSON lines


def _parse_table(
    data: bytes, *, name: str, classes: tuple[str, ...] | None, normalised: bool
) -> PredictionSet:
    """Parse a CSV, Parquet or JSON lines table, one box per row."""
    table, row_word, row_offset = _read_table(data, name)
    spec, columns = _table_spec(table, name, classes, normalised=normalised)
    out = PredictionSet(rows=table.num_rows)
    _collect(_table_records(columns, table.num_rows, row_word, row_offset), spec, out)
    return out


def _read_table(data: bytes, name: str) -> tuple[Any, str, int]:
    """The file as a pyarrow table, with how its rows are named (`line`, first data row's N)."""
    import pyarrow as pa

    from winnow.arrow_io import owned_reader, read_parquet

    kind = _TABLE_EXTENSIONS.get(_extension(name)) or _sniff_table(data)
    try:
        if kind == "csv":
            import pyarrow.csv as pacsv

            # File names like `001` stay text.
            options = pacsv.ConvertOptions(column_types={"filename": pa.string()})
            return pacsv.read_csv(owned_reader(data), convert_options=options), "line", 2
        if kind == "parquet":
            return read_parquet(data), "row", 1
        import pyarrow.json as pajson

        return pajson.read_json(owned_reader(data)), "row", 1
    except (pa.ArrowException, OSError, ValueError) as exc:
        what = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON lines"}[kind]
        raise ConfigError(
            f"predictions {name!r} cannot be read as {what} ({exc}); write it as {what} with "
            "one box per row, or give it the extension of the format it is in"
        ) from exc


def _sniff_table(data: bytes) -> str:
    if data[:4] == b"PAR1":
        return "parquet"
    if data.lstrip()[:1] == b"{":
        return "jsonl"
    return "csv"


def _table_spec(
    table: Any, name: str, given: tuple[str, ...] | None, *, normalised: bool
) -> tuple[_Spec, dict[str, Any]]:
    """Check a table's columns; return how to read its rows and its columns as lists.

    The columns dict maps record keys to lists of values, except `box` (four lists) and
    `prob_columns` (one list per class, in the classes' order).
    """
    columns = list(table.column_names)
    if "filename" not in columns:
        raise ConfigError(
            f"predictions {name!r} has no 'filename' column (columns: "
            f"{', '.join(columns) or 'none'}); add one holding each file's key relative to "
            "the source"
        )
    corners = _box_columns(columns, name)
    prob_names = [c.removeprefix(_PROB_PREFIX) for c in columns if c.startswith(_PROB_PREFIX)]
    classes = _table_classes(columns, name, given, prob_names)
    has_probs = bool(prob_names) or _PROB_LIST in columns
    default_label = None
    if "label" not in columns and not has_probs:
        default_label = _default_label(name, given)
    spec = _Spec(
        classes=classes,
        normalised=normalised,
        corners=corners,
        probabilities_required=has_probs,
        default_label=default_label,
    )
    lists: dict[str, Any] = {
        key: table.column(key).to_pylist()
        for key in ("filename", "frame_index", "pts_seconds", "label", "score", _PROB_LIST)
        if key in columns
    }
    lists["box"] = [
        table.column(c).to_pylist() for c in (_CORNER_COLUMNS if corners else _BOX_COLUMNS)
    ]
    if prob_names:
        assert classes is not None
        lists["prob_columns"] = [table.column(_PROB_PREFIX + c).to_pylist() for c in classes]
    return spec, lists


def _box_columns(columns: list[str], name: str) -> bool:
    """Whether the box is given by corners (`x1, y1, x2, y2`) rather than `x, y, w, h`."""
    if all(c in columns for c in _BOX_COLUMNS):
        return False
    if all(c in columns for c in _CORNER_COLUMNS):
        return True
    missing = [c for c in _BOX_COLUMNS if c not in columns]
    missing_corners = [c for c in _CORNER_COLUMNS if c not in columns]
    if len(missing_corners) < len(missing):
        missing = missing_corners
    raise ConfigError(
        f"predictions {name!r} has no box columns (missing {', '.join(missing)}); give each "
        "box as x, y, w, h (top-left corner and size) or x1, y1, x2, y2 (corners)"
    )


def _table_classes(
    columns: list[str], name: str, given: tuple[str, ...] | None, prob_names: list[str]
) -> tuple[str, ...] | None:
    """The table's closed set of classes, or None when any label goes."""
    if prob_names and _PROB_LIST in columns:
        raise ConfigError(
            f"predictions {name!r} has both a '{_PROB_LIST}' column and '{_PROB_PREFIX}<class>' "
            "columns; keep one of them"
        )
    if _PROB_LIST in columns and given is None:
        raise ConfigError(
            f"predictions {name!r} has a '{_PROB_LIST}' list column but the class order is "
            f"unknown; set objects.classes (the class names in probability order) or use one "
            f"'{_PROB_PREFIX}<class>' column per class"
        )
    if not prob_names:
        return given
    if given is None:
        return tuple(prob_names)
    missing = [c for c in given if c not in prob_names]
    extra = [c for c in prob_names if c not in given]
    if missing or extra:
        raise ConfigError(
            f"predictions {name!r}: its '{_PROB_PREFIX}<class>' columns do not match "
            f"objects.classes (no column for: {', '.join(missing) or 'none'}; not a class: "
            f"{', '.join(extra) or 'none'}); give one column per class"
        )
    return given


def _default_label(name: str, given: tuple[str, ...] | None) -> str:
    """The label of every box of a table with neither `label` nor probabilities."""
    if given is None:
        return DEFAULT_LABEL
    if len(given) == 1:
        return given[0]
    raise ConfigError(
        f"predictions {name!r} has no 'label' column and no probabilities, but objects.classes "
        f"names {len(given)} classes; add a 'label' column (or probabilities)"
    )


def _table_records(
    lists: dict[str, Any], n_rows: int, row_word: str, row_offset: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    scalars = {k: v for k, v in lists.items() if k not in ("box", "prob_columns")}
    box_lists = lists["box"]
    prob_lists = lists.get("prob_columns")
    for i in range(n_rows):
        record = {key: values[i] for key, values in scalars.items()}
        record["box"] = tuple(values[i] for values in box_lists)
        if prob_lists is not None:
            record["probabilities"] = tuple(values[i] for values in prob_lists)
        yield f"{row_word} {i + row_offset}", record


# ---------------------------------------------------------------------------------------------
# COCO


def _parse_coco(data: bytes, *, name: str, classes: tuple[str, ...] | None) -> PredictionSet:
    """Parse COCO JSON: the dataset form (a dict) or a list of detection results."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"predictions {name!r} cannot be read as JSON ({exc}); give a COCO file (a dict "
            "with images, categories and annotations, or a list of detections)"
        ) from exc
    if isinstance(doc, dict):
        annotations, files, categories = _coco_dict(doc, name)
    elif isinstance(doc, list):
        annotations, files, categories = doc, None, None
        _check_coco_results(annotations, name)
    else:
        raise ConfigError(
            f"predictions {name!r} is JSON but not COCO: give a dict with images, categories "
            "and annotations, or a list of detections"
        )
    spec = _coco_spec(annotations, categories, classes, name)
    records = (
        (f"annotation {i}", _coco_record(a, files, categories))
        for i, a in enumerate(annotations, start=1)
    )
    out = PredictionSet(rows=len(annotations))
    _collect(records, spec, out)
    return out


def _coco_dict(doc: dict[str, Any], name: str) -> tuple[list[Any], dict[Any, Any], Any]:
    """A COCO dataset dict's annotations, image id → file name, and category id → name."""
    annotations = doc.get("annotations")
    if not isinstance(annotations, list):
        raise ConfigError(
            f"predictions {name!r} is a COCO dict without an 'annotations' list (keys: "
            f"{', '.join(map(str, doc)) or 'none'}); add the boxes as 'annotations'"
        )
    images = doc.get("images")
    if not isinstance(images, list):
        raise ConfigError(
            f"predictions {name!r} is a COCO dict without an 'images' list; add 'images' "
            "entries with 'id' and 'file_name' so annotations can name their files"
        )
    files = {
        _hashable(i.get("id")): i.get("file_name")
        for i in images
        if isinstance(i, dict) and "id" in i
    }
    categories = None
    if isinstance(doc.get("categories"), list):
        categories = {
            _hashable(c.get("id")): str(c.get("name"))
            for c in doc["categories"]
            if isinstance(c, dict) and "id" in c and not _is_empty(c.get("name"))
        }
    return annotations, files, categories


def _check_coco_results(annotations: list[Any], name: str) -> None:
    """A results list must name files by `image_id`; integer ids cannot be mapped."""
    for a in annotations:
        image_id = a.get("image_id") if isinstance(a, dict) else None
        if isinstance(image_id, int | float) and not isinstance(image_id, bool):
            raise ConfigError(
                f"predictions {name!r} is a COCO results list with numeric image_id "
                f"({image_id!r}), which names no file; use the COCO dict form with 'images' "
                "(id and file_name) or put each file name in image_id"
            )


def _coco_spec(
    annotations: list[Any],
    categories: dict[Any, str] | None,
    given: tuple[str, ...] | None,
    name: str,
) -> _Spec:
    """How to read COCO annotations: the classes and how category ids map to them."""
    # Algorithm
    # Dataset form: category ids map to `categories` names; the classes are `given`, else those
    # names in category-id order. Otherwise category ids index `given`: 1-based when every id
    # is in 1..len(given) and the largest is len(given) (COCO numbers categories from 1), else
    # 0-based; without `given` the label is the id as text.
    offset = 0
    if categories is not None:
        ordered = [categories[k] for k in sorted(categories, key=_class_key)]
        classes = given or tuple(dict.fromkeys(ordered))
    else:
        classes = given
        ids = [
            a.get("category_id")
            for a in annotations
            if isinstance(a, dict) and type(a.get("category_id")) is int
        ]
        if given and ids and min(ids) >= 1 and max(ids) == len(given):
            offset = 1
    has_probs = any(isinstance(a, dict) and a.get("probabilities") is not None for a in annotations)
    if has_probs and classes is None:
        raise ConfigError(
            f"predictions {name!r} has probabilities but the class order is unknown; set "
            "objects.classes (the class names in probability order) or add 'categories'"
        )
    return _Spec(classes=classes, normalised=False, label_offset=offset)


def _coco_record(
    annotation: Any, files: dict[Any, Any] | None, categories: dict[Any, str] | None
) -> dict[str, Any]:
    """A COCO annotation as a record for `_collect` (with `invalid` when it cannot be one)."""
    if not isinstance(annotation, dict):
        return {"box": (), "invalid": _Bad(BAD_NUMBER, "not a JSON object")}
    record = {k: annotation[k] for k in ("frame_index", "pts_seconds") if k in annotation}
    record["score"] = annotation.get("score")
    record["probabilities"] = annotation.get("probabilities")
    image_id = _hashable(annotation.get("image_id"))
    record["filename"] = image_id if files is None else files.get(image_id)
    if files is not None and image_id not in files:
        record["invalid"] = _Bad(BAD_FILENAME, f"image_id={image_id!r} is not in images")
    category = _hashable(annotation.get("category_id"))
    record["label"] = category
    if categories is not None and not _is_empty(category):
        record["label"] = categories.get(category)
        if category not in categories:
            invalid = _Bad(BAD_CLASS, f"category_id={category!r} is not in categories")
            record.setdefault("invalid", invalid)
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        record.setdefault("invalid", _Bad(BAD_NUMBER, f"bbox={_show(bbox)}"))
        bbox = (None,) * 4
    record["box"] = tuple(bbox)
    return record


# ---------------------------------------------------------------------------------------------
# YOLO


def _yolo_text(data: bytes, key: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"YOLO labels for {key!r} are not text ({exc}); each must be a .txt file of lines "
            "'class cx cy w h [conf]'"
        ) from exc


def _yolo_box(fields: list[str], classes: tuple[str, ...]) -> Box:
    """One YOLO line (`class cx cy w h [conf]`) as a top-left normalised box; raises `_Bad`."""
    if len(fields) not in (5, 6):
        raise _Bad(BAD_NUMBER, f"{len(fields)} fields, expected 'class cx cy w h [conf]'")
    class_id = _as_float(fields[0])
    if class_id is None or not class_id.is_integer() or not 0 <= class_id < len(classes):
        raise _Bad(BAD_CLASS, f"class {fields[0]}")
    cx, cy, w, h = _coords(fields[1:5], corners=False, names=("cx", "cy", "w", "h"))
    score = _score(fields[5]) if len(fields) == 6 else math.nan
    return Box(
        frame_index=0,
        pts_seconds=None,
        x=cx - w / 2,
        y=cy - h / 2,
        w=w,
        h=h,
        normalised=True,
        label=classes[int(class_id)],
        score=score,
    )


# ---------------------------------------------------------------------------------------------
# Small helpers


def _extension(name: str) -> str:
    """The lower-case extension of a file name or URL (query and fragment ignored)."""
    path = name.split("?", 1)[0].split("#", 1)[0].lower().rstrip("/")
    last = path.rsplit("/", 1)[-1]
    return "." + last.rsplit(".", 1)[-1] if "." in last else ""


def _given_classes(classes: Sequence[str] | None, name: str) -> tuple[str, ...] | None:
    """`classes` as a tuple of names; None when not given (or empty)."""
    if not classes:
        return None
    if isinstance(classes, str):
        raise ConfigError(
            f"{name}: objects.classes must be a list of class names, not the text {classes!r}"
        )
    names = tuple(str(c) for c in classes)
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise ConfigError(
            f"{name}: objects.classes names {', '.join(duplicates)} more than once; list each "
            "class once, in id order"
        )
    return names


def _normalise_key(name: Any) -> str | None:
    """A media key: `/` separators, no leading `./` or `/`; None when empty."""
    if name is None or isinstance(name, bool):
        return None
    if isinstance(name, float) and math.isnan(name):
        return None
    key = str(name).replace("\\", "/")
    while True:
        stripped = key.lstrip("/").removeprefix("./")
        if stripped == key:
            return key or None
        key = stripped


def _is_empty(value: Any) -> bool:
    """No value: null, blank text, or a NaN float (pandas' missing value)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def _as_float(value: Any) -> float | None:
    """A number as float: NaN for null or blank text, None for something not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not value.strip():
            return math.nan
        try:
            return float(value)
        except ValueError:
            return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _show(value: Any) -> str:
    """A raw value as a row description shows it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "empty"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and _as_float(value) is None:
        return repr(value)  # quoted: text where a number belongs
    return str(value)


def _hashable(value: Any) -> Any:
    """A JSON value usable as a dict key (lists and dicts become their text)."""
    return value if isinstance(value, str | int | float | bool | None) else json.dumps(value)


def _class_key(value: Any) -> tuple[int, float, str]:
    """Sort key putting numbers (and numeric text) first, in numeric order, then text."""
    text = str(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), text)
    if text.isdigit():
        return (0, float(text), text)
    return (1, 0.0, text)

"""A run's predictions: read, parsed, and attached to the planned files as boxes.

Discovery plans shards of files; `attach_boxes` gives each file the boxes the predictions hold
for its key (`FileRef.boxes`, which travel with the shard to child runs and Dask workers), and
re-ids the shards (new boxes are new work). Boxes for keys that are neither planned nor in the
pool are counted as `unknown file`; those of files the pool holds unchanged are left alone
(processed by an earlier run).
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable, Sequence

from winnow.errors import ConfigError, NotFound
from winnow.objects._boxes import UNKNOWN_FILE, PredictionSet
from winnow.objects._formats import parse_predictions, parse_yolo, predictions_format
from winnow.objects._options import ObjectOptions
from winnow.records import Shard
from winnow.storage import ObjectStore


def _yolo_key(folder: str | None, key: str) -> str:
    stem = posixpath.splitext(key)[0] + ".txt"
    return f"{folder.strip('/')}/{stem}" if folder else stem


def load_predictions(
    options: ObjectOptions,
    *,
    keys: Sequence[str],
    source: ObjectStore,
    read_named: Callable[[str], bytes],
) -> PredictionSet:
    """Read and parse the run's predictions.

    Args:
        options: The run's `objects` parameters (enabled).
        keys: The media keys the run decodes (YOLO files are looked up for these only).
        source: The source store (YOLO txt files lie there).
        read_named: Reads the predictions file a parameter names (`Stores.read_named`).

    Raises:
        ConfigError: If the file cannot be read or parsed at all (one error naming it).
    """
    fmt = options.format
    if fmt == "auto":
        assert options.predictions is not None
        fmt = predictions_format(options.predictions)
    if fmt == "yolo":
        files: dict[str, bytes] = {}
        for key in keys:
            try:
                files[key] = source.get(_yolo_key(options.predictions, key))
            except NotFound:
                continue
        return parse_yolo(files, classes=options.classes or [])
    assert options.predictions is not None
    try:
        data = read_named(options.predictions)
    except NotFound as exc:
        raise ConfigError(f"objects.predictions {options.predictions!r} not found: {exc}") from exc
    return parse_predictions(
        data,
        name=options.predictions,
        fmt=fmt,
        box_units=options.box_units,
        classes=options.classes,
    )


def attach_boxes(
    shards: Sequence[Shard], predictions: PredictionSet, *, known: Callable[[list[str]], list[bool]]
) -> tuple[Shard, ...]:
    """The shards with each file's boxes attached, re-identified.

    Args:
        shards: The planned shards.
        predictions: The parsed predictions; boxes for keys neither planned nor `known` are
            counted in `predictions.bad` as `unknown file`.
        known: Whether each of some keys is a file the pool holds.
    """
    out = []
    planned: set[str] = set()
    for shard in shards:
        files = tuple(
            dataclasses.replace(f, boxes=predictions.boxes.get(f.key, ())) for f in shard.files
        )
        planned.update(f.key for f in files)
        out.append(dataclasses.replace(shard, files=files, shard_id=Shard.id_for(files)))
    rest = sorted(k for k in predictions.boxes if k not in planned)
    for key, held in zip(rest, known(rest), strict=True):
        if not held:
            n = len(predictions.boxes[key])
            predictions.bad[UNKNOWN_FILE] = predictions.bad.get(UNKNOWN_FILE, 0) + n
            predictions.examples.setdefault(UNKNOWN_FILE, f"{key} ({n} boxes)")
    return tuple(out)

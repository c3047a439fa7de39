"""Tasks: load the datapool snapshot, discover new files and plan shards."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import discover, media
from winnow.datapool import PoolSnapshot
from winnow.errors import NotFound
from winnow.objects import ObjectOptions
from winnow.objects._attach import attach_boxes, load_predictions
from winnow.runs import Discovered
from winnow.stores import Stores
from winnow.summary import fmt_reasons


@task(name="load-pool", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def load_pool(stores: Stores) -> PoolSnapshot:
    """Load the latest datapool snapshot."""
    return load_snapshot(stores)


def load_snapshot(stores: Stores) -> PoolSnapshot:
    """Load the latest datapool snapshot and log its version (inside a task or flow run)."""
    snapshot = stores.pool.load()
    counts = snapshot.manifest.counts if snapshot.manifest else {}
    get_run_logger().info(  # counts from the manifest: the files table is not read for this
        "datapool %s: version %d, %d file records, %d tags",
        stores.pool.url,
        snapshot.version,
        counts.get("files", 0),
        len(snapshot.tags),
    )
    return snapshot


@task(name="discover", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def discover_files(
    stores: Stores,
    snapshot: PoolSnapshot,
    *,
    relevant_filenames: str | None,
    process_all: bool,
    shard_files: int,
    shard_seconds: float | None = None,
    min_shards: int = 1,
    objects: ObjectOptions | None = None,
) -> Discovered:
    """List the source, keep new and changed media files, plan shards (with their boxes)."""
    relevant = None
    if relevant_filenames:
        text = stores.read_named(relevant_filenames).decode("utf-8")
        relevant = discover.parse_relevant_filenames(text)
    found = discover.list_new_files(
        stores.source,
        known=snapshot.fingerprints,
        relevant=relevant,
        process_all=process_all,
        exclude_prefixes=[stores.output_inside_source or ""],
    )
    durations = None
    if shard_seconds is not None:
        durations = _video_durations(stores, [f.key for f in found.new if f.kind == "video"])
    shards = discover.plan_shards(
        found.new,
        max_files=shard_files,
        shard_seconds=shard_seconds,
        durations=durations,
        min_shards=min_shards,
    )
    biggest = max((len(s.files) for s in shards), default=0)
    if min_shards > 1 and 1 < len(found.new) and biggest < shard_files:
        get_run_logger().info(
            "shards of at most %d files (not shard_files=%d), so that the %d child runs of "
            "scale.runs each get work",
            biggest,
            shard_files,
            min_shards,
        )
    get_run_logger().info(
        "discover %s: %d media files listed, %d new (%d changed), %d already in the pool, "
        "%d shards",
        stores.source.url,
        found.listed,
        len(found.new),
        found.changed,
        found.known,
        len(shards),
    )
    if objects is not None and objects.enabled and found.new:
        return attach_predictions(stores, snapshot, Discovered(found, shards), objects)
    return Discovered(found, shards)


def _video_durations(stores: Stores, keys: list[str]) -> dict[str, float]:
    """Seconds of each video from its container header (unreadable ones stay unsplit)."""
    out = {}
    for key in keys:
        try:
            with stores.source.local_copy(key) as path:
                seconds = media.probe_duration(Path(path))
        except NotFound:  # gone since the listing: decoding records it as skipped
            continue
        if seconds is not None:
            out[key] = seconds
    return out


def attach_predictions(
    stores: Stores, snapshot: PoolSnapshot, found: Discovered, options: ObjectOptions
) -> Discovered:
    """Read the run's predictions and give each planned file its boxes (re-planned shards)."""
    keys = sorted({f.key for s in found.shards for f in s.files})
    predictions = load_predictions(
        options, keys=keys, source=stores.source, read_named=stores.read_named
    )
    fingerprints = snapshot.fingerprints
    shards = attach_boxes(
        found.shards,
        predictions,
        known=lambda ks: [fp is not None for fp in fingerprints.lookup(ks)],
    )
    bad = fmt_reasons(predictions.bad)
    get_run_logger().info(
        "predictions %s: %d rows, %d boxes on %d of the run's files%s",
        options.predictions or "(YOLO txt files)",
        predictions.rows,
        sum(len(f.boxes) for s in shards for f in s.files),
        sum(bool(f.boxes) for s in shards for f in s.files),
        f"; not used: {bad}" if bad else "",
    )
    return dataclasses.replace(found, shards=shards, predictions_bad=dict(predictions.bad))

"""Task: register the run's tag with one atomic datapool commit."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.params import CurateParams
from tasks.connect import STORAGE_RETRIES, Stores
from winnow.datapool import PoolSnapshot
from winnow.records import Candidates, FileResult, ModelRecord, RunSummary, Selection, TagRecord


@task(name="register-tag", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def register_tag(
    params: CurateParams,
    stores: Stores,
    snapshot: PoolSnapshot,
    *,
    tag: str,
    run_id: str,
    model: ModelRecord,
    files: list[FileResult],
    candidates: Candidates,
    selection: Selection,
    summary: RunSummary,
    plan_hash: str,
    shard_ids: list[str],
) -> int:
    """Commit files, samples and the tag together; only then do the files count as processed."""
    record = None
    if selection.picks:
        counts = {
            k: getattr(summary, k)
            for k in (
                "files_new",
                "files_ok",
                "files_corrupt",
                "files_skipped",
                "candidates",
                "selected",
            )
        }
        record = TagRecord(
            name=tag,
            parent=snapshot.latest_tag.name if snapshot.latest_tag else None,
            run_id=run_id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            parameters=json.dumps(params.public_dict(), sort_keys=True),
            counts=json.dumps(counts, sort_keys=True),
            sample_ids=tuple(selection.sample_ids),
            coverage_before=selection.coverage_before,
            coverage_after=selection.coverage_after,
        )
    version = stores.pool.commit(
        snapshot, run_id=run_id, files=files, samples=candidates, tag=record, model=model
    )
    stores.pool.clear_staged(plan_hash, shard_ids)
    get_run_logger().info(
        "datapool %s: committed version %d (%d files, %d samples%s)",
        stores.pool.url,
        version,
        len(files),
        len(candidates),
        f", tag {tag!r}" if record else ", no tag: nothing selected",
    )
    return version

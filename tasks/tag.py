"""Task: register the run's tag with one atomic datapool commit."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow.datapool import PoolSnapshot
from winnow.records import Candidates, FileResult, ModelRecord, TagRecord
from winnow.stores import Stores


@task(name="register-tag", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def register_tag(
    stores: Stores,
    snapshot: PoolSnapshot,
    *,
    tag: TagRecord | None,
    run_id: str,
    model: ModelRecord,
    files: list[FileResult],
    candidates: Candidates,
    plan_hash: str,
    shard_ids: list[str],
) -> int:
    """Commit files, samples and the tag together; only then do the files count as processed."""
    version = stores.pool.commit(
        snapshot, run_id=run_id, files=files, samples=candidates, tag=tag, model=model
    )
    stores.pool.clear_staged(plan_hash, shard_ids)
    get_run_logger().info(
        "datapool %s: committed version %d (%d files, %d samples%s)",
        stores.pool.url,
        version,
        len(files),
        len(candidates),
        f", tag {tag.name!r}" if tag else ", no tag: nothing selected",
    )
    return version

"""Task: register the run's tag with one atomic datapool commit (rebasing if it loses a race)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from tasks.discover import load_pool
from winnow import rebase
from winnow.datapool import PoolSnapshot
from winnow.errors import PoolConflict
from winnow.records import Candidates, FileResult, ModelRecord, TagRecord
from winnow.stores import Stores

# Commit attempts of one run: the first, then a rebase after each lost race.
COMMIT_ATTEMPTS = 3


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


@task(name="commit-attempt", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def try_register_tag(
    stores: Stores,
    pending: rebase.PendingCommit,
    *,
    run_id: str,
    model: ModelRecord,
    attempt: int,
) -> int | None:
    """One commit of files, samples and tag; None when another run committed first."""
    try:
        version = stores.pool.commit(
            pending.snapshot,
            run_id=run_id,
            files=pending.files,
            samples=pending.candidates,
            tag=pending.tag,
            model=model,
        )
    except PoolConflict as exc:
        get_run_logger().warning("commit attempt %d of %d lost: %s", attempt, COMMIT_ATTEMPTS, exc)
        return None
    get_run_logger().info(
        "datapool %s: commit attempt %d committed version %d (%d files, %d samples%s)",
        stores.pool.url,
        attempt,
        version,
        len(pending.files),
        len(pending.candidates),
        f", tag {pending.tag.name!r}" if pending.tag else ", no tag: nothing selected",
    )
    return version


@dataclass(frozen=True)
class Committed:
    """The outcome of `register_tag_rebasing`: the version, what it holds, the attempts made."""

    version: int
    pending: rebase.PendingCommit
    attempts: int


def register_tag_rebasing(
    stores: Stores,
    pending: rebase.PendingCommit,
    *,
    select_again: Callable[[rebase.Rebased], rebase.PendingCommit],
    run_id: str,
    model: ModelRecord,
    plan_hash: str,
    shard_ids: list[str],
) -> Committed:
    """Commit; after a lost race, rebase onto the winner and select again (bounded attempts).

    `select_again` gets the run rebased onto the newer snapshot (the winner's files dropped)
    and returns what to commit instead: a new selection from the run's candidates against the
    newer dataset, its uploads and its tag. Nothing is decoded again.

    Raises:
        PoolConflict: If every one of `COMMIT_ATTEMPTS` attempts lost a race.
    """
    logger = get_run_logger()
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        version = try_register_tag(stores, pending, run_id=run_id, model=model, attempt=attempt)
        if version is not None:
            stores.pool.clear_staged(plan_hash, shard_ids)
            return Committed(version=version, pending=pending, attempts=attempt)
        if attempt == COMMIT_ATTEMPTS:
            break
        rebased = rebase.rebase_run(
            pending.snapshot,
            load_pool(stores),
            files=pending.files,
            candidates=pending.candidates,
            model=model,
        )
        logger.warning(
            "rebasing onto version %d for commit attempt %d: %d files (%d candidates) the "
            "other run committed are dropped; selecting again from %d staged candidates",
            rebased.snapshot.version,
            attempt + 1,
            len(rebased.dropped_keys),
            rebased.dropped_candidates,
            len(rebased.candidates),
        )
        pending = select_again(rebased)
    raise PoolConflict(
        f"datapool {stores.pool.url}: other runs committed first {COMMIT_ATTEMPTS} times in a "
        "row; nothing of this run was committed. Re-run the job (its finished shards are "
        "staged and are reused), or give runs on one pool a concurrency limit of 1."
    )

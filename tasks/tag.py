"""Task: one commit of the run's files, samples and tag (the ending retries it after a rebase)."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import rebase, runs
from winnow.errors import PoolConflict
from winnow.stores import Stores


@task(name="commit-attempt", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def try_register_tag(
    stores: Stores,
    pending: rebase.PendingCommit,
    *,
    started: runs.Started,
    staged: Sequence[str],
    attempt: int,
    attempts: int,
) -> int | None:
    """One commit of files, samples and tag; None when another run committed first."""
    logger = get_run_logger()
    try:
        version = runs.commit_attempt(stores, pending, started=started, staged=staged)
    except PoolConflict as exc:
        logger.warning("commit attempt %d of %d lost: %s", attempt, attempts, exc)
        return None
    logger.info(
        "datapool %s: commit attempt %d committed version %d (%d files, %d samples%s)",
        stores.pool.url,
        attempt,
        version,
        len(pending.files),
        len(pending.candidates),
        f", tag {pending.tag.name!r}" if pending.tag else ", no tag: nothing selected",
    )
    return version

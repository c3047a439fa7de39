"""Task: the candidates of a re-selection, from the samples and embeddings the pool holds."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import runs, training
from winnow.datapool import PoolSnapshot


@task(name="pool-candidates", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def pool_candidates(
    snapshot: PoolSnapshot, *, from_tags: list[str] | None, from_runs: list[str] | None
) -> runs.Embedded:
    """The pool's samples (some tags' or runs' only) with their files; the source is not read."""
    candidates = training.reselect_candidates(snapshot, from_tags=from_tags, from_runs=from_runs)
    files = training.pool_file_results(snapshot, sorted(set(candidates.key.tolist())))
    get_run_logger().info(
        "re-selecting among %d pool samples of %d files (pool version %d)",
        len(candidates),
        len(files),
        snapshot.version,
    )
    return runs.Embedded(candidates=candidates, files=files)

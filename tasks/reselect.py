"""Task: select among the samples a pool already holds, from their stored embeddings only."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import selection, training
from winnow.datapool import PoolSnapshot
from winnow.records import Candidates, FileResult, Selection
from winnow.stores import Stores
from winnow.summary import fmt_number


@task(name="reselect", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def reselect_samples(
    stores: Stores,
    snapshot: PoolSnapshot,
    *,
    config: selection.SelectionConfig,
    from_tags: list[str] | None,
    from_runs: list[str] | None,
    against_dataset: bool,
) -> tuple[Candidates, Selection, np.ndarray, list[FileResult]]:
    """Pick among the pool's samples; return candidates, selection, dataset, file results."""
    candidates = training.reselect_candidates(snapshot, from_tags=from_tags, from_runs=from_runs)
    columns = None
    if name := config.predictions:  # a file the parameters name, not a media file
        columns = selection.join_predictions(candidates, stores.read_named(name), filename=name)
    result, dataset = training.reselect(
        snapshot, candidates, config=config, against_dataset=against_dataset, columns=columns
    )
    files = training.pool_file_results(snapshot, sorted(set(candidates.key.tolist())))
    get_run_logger().info(
        "re-selected %d of %d pool samples (dataset: %d; stop: %s); coverage radius %s -> %s",
        len(result.picks),
        len(candidates),
        len(dataset),
        result.stop_reason,
        fmt_number(result.coverage_before),
        fmt_number(result.coverage_after),
    )
    return candidates, result, dataset, files

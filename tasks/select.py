"""Task: select this run's picks with the existing dataset as already-chosen centers."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import selection
from winnow.datapool import PoolSnapshot
from winnow.embedding import Embedder
from winnow.engine import embed_keys
from winnow.media import FrameOptions
from winnow.records import Candidates, Selection
from winnow.stores import Stores
from winnow.summary import fmt_number


@task(name="select", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def select_samples(
    stores: Stores,
    snapshot: PoolSnapshot,
    candidates: Candidates,
    *,
    config: selection.SelectionConfig,
    frames: FrameOptions,
    embedder: Embedder,
    device: str,
) -> tuple[Selection, np.ndarray]:
    """Pick samples; return the selection and the dataset's embeddings before the run."""
    existing = snapshot.dataset()
    dataset = existing.embedding.astype(np.float32)
    columns = None
    if name := config.predictions:
        columns = selection.join_predictions(candidates, stores.read_named(name), filename=name)
    queries = None
    if query_keys := [k for s in config.strategies for k in getattr(s, "query_keys", None) or []]:
        queries = embed_keys(query_keys, source=stores.source, frames=frames, embedder=embedder)
    result = selection.select(
        candidates,
        dataset=dataset,
        config=config,
        columns=columns,
        queries=queries,
        device=device,
        dataset_ids=existing.sample_id,
    )
    get_run_logger().info(
        "selected %d of %d candidates (dataset: %d samples; stop: %s); mean distance to the "
        "dataset %s vs %s for random picks; coverage radius %s -> %s",
        len(result.picks),
        len(candidates),
        len(dataset),
        result.stop_reason,
        fmt_number(result.mean_pick_distance),
        fmt_number(result.mean_random_distance),
        fmt_number(result.coverage_before),
        fmt_number(result.coverage_after),
    )
    return result, dataset

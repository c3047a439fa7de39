"""Task: select a run's picks with the pool's dataset as already chosen."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import runs, selection
from winnow.datapool import PoolSnapshot
from winnow.embedding import Embedder
from winnow.engine import embed_keys
from winnow.media import FrameOptions
from winnow.records import Candidates, FileResult, ObjectRows
from winnow.stores import Stores
from winnow.summary import fmt_coverage, fmt_number


@task(name="select", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def select_samples(
    stores: Stores,
    snapshot: PoolSnapshot,
    candidates: Candidates,
    objects: ObjectRows | None = None,
    *,
    config: selection.SelectionConfig,
    against_dataset: bool = True,
    frames: FrameOptions | None = None,
    model: Callable[[], Embedder] | None = None,
    device: str = "auto",
    files: Sequence[FileResult] = (),
) -> runs.Picked:
    """Pick samples against the dataset (query files and texts embedded with `model`)."""
    embed_queries = embed_texts = None
    if model is not None:

        def embed_queries(keys: Sequence[str]) -> np.ndarray:
            return embed_keys(keys, source=stores.source, frames=frames, embedder=model())

        def embed_texts(texts: Sequence[str]) -> np.ndarray:
            return model().embed_texts(texts)

    picked = runs.select_against_pool(
        snapshot,
        candidates,
        config=config,
        against_dataset=against_dataset,
        read_named=stores.read_named,
        embed_queries=embed_queries,
        embed_texts=embed_texts,
        device=device,
        files=files,
        objects=objects,
    )
    result = picked.selection
    against = "the dataset" if len(picked.dataset) else "the nearest other pick"
    get_run_logger().info(
        "selected %d of %d candidates (dataset: %d samples; stop: %s); mean distance to %s "
        "%s vs %s for random picks; coverage radius %s -> %s",
        len(result.picks),
        len(candidates),
        len(picked.dataset),
        result.stop_reason,
        against,
        fmt_number(result.mean_pick_distance),
        fmt_number(result.mean_random_distance),
        fmt_coverage(result.coverage_before),
        fmt_coverage(result.coverage_after),
    )
    return picked

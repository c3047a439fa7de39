"""Task: select a run's picks with the pool's dataset as already chosen."""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import runs, selection
from winnow.datapool import PoolSnapshot
from winnow.embedding import Embedder
from winnow.engine import embed_keys
from winnow.media import FrameOptions
from winnow.records import Candidates
from winnow.stores import Stores
from winnow.summary import fmt_number


@task(name="select", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def select_samples(
    stores: Stores,
    snapshot: PoolSnapshot,
    candidates: Candidates,
    *,
    config: selection.SelectionConfig,
    against_dataset: bool = True,
    frames: FrameOptions | None = None,
    embedder: Embedder | None = None,
    device: str = "auto",
) -> runs.Picked:
    """Pick samples against the dataset (query files embedded with `embedder`, when given)."""
    embed_queries = None
    if embedder is not None:
        embed_queries = partial(
            embed_keys, source=stores.source, frames=frames or FrameOptions(), embedder=embedder
        )
    picked = runs.select_against_pool(
        snapshot,
        candidates,
        config=config,
        against_dataset=against_dataset,
        read_named=stores.read_named,
        embed_queries=embed_queries,
        device=device,
    )
    result = picked.selection
    get_run_logger().info(
        "selected %d of %d candidates (dataset: %d samples; stop: %s); mean distance to the "
        "dataset %s vs %s for random picks; coverage radius %s -> %s",
        len(result.picks),
        len(candidates),
        len(picked.dataset),
        result.stop_reason,
        fmt_number(result.mean_pick_distance),
        fmt_number(result.mean_random_distance),
        fmt_number(result.coverage_before),
        fmt_number(result.coverage_after),
    )
    return picked

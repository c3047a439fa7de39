"""Decode+embed scaled out: the `embed-shards` child flow (GPU pool) and the Dask flow.

`curate` calls `scale_out` before its own decode+embed step; whatever the children or the Dask
workers staged is then loaded like a resume, and what is still missing is decoded in-process.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.logging import get_run_logger
from pydantic import Field

from tasks.fanout import (
    clear_groups,
    embed_group,
    embed_on_pool,
    embed_shard,
    group_shards,
    write_group,
)
from tasks.progress import Progress
from winnow import scale
from winnow.params import CurateParams, Output, StorageParams
from winnow.records import Shard
from winnow.stores import Stores

GroupKey = Annotated[
    str,
    Field(
        min_length=1,
        description="Key of the group's description in the pool's staging area "
        "(staging/<plan-hash>/groups/<group-id>.json), written by the parent curate run.",
    ),
]


@flow(
    name="embed-shards",
    description="Decode and embed a group of shards planned by a curate run, staging each one.",
    log_prints=True,
)
def embed_shards(
    group: GroupKey,
    output: Output,
    storage: StorageParams = StorageParams(),  # noqa: B008 - pydantic models are immutable here
) -> dict:
    """Decode and embed a group of shards planned by a curate run, staging each one.

    Args:
        group: Key of the group's description in the pool's staging area, written by the parent.
        output: The parent's output (the datapool and its staging area live under it).
        storage: How to reach S3 (credentials are resolved on this worker).
    """
    return embed_group(group, output=output, storage=storage)


@flow(name="embed-shards-dask", description="Decode and embed shards on a Dask cluster.")
def embed_shards_dask(
    group: GroupKey, output: Output, storage: StorageParams, retries: int
) -> scale.ScaledOut:
    """Decode and embed shards on a Dask cluster, one task per shard."""
    shards = group_shards(group, output=output, storage=storage)
    task = embed_shard.with_options(retries=retries)
    futures = [task.submit(s, group=group, output=output, storage=storage) for s in shards]
    progress = Progress(len(futures), unit="shards", description="decode + embed on Dask")
    staged = []
    for future in futures:
        future.wait()
        if future.state.is_completed():
            staged.append(future.result())
            progress.advance(1)
        else:
            get_run_logger().warning("shard task failed: %s", future.state.message)
    text = f"{len(staged)} of {len(futures)} shard tasks completed on the Dask cluster"
    return scale.ScaledOut(frozenset(staged), text)


def scale_out(
    stores: Stores, shards: tuple[Shard, ...], *, params: CurateParams, plan_hash: str
) -> scale.ScaledOut | None:
    """Stage the shards on the GPU pool or Dask, as `params.scale` says (None when local)."""
    options = params.scale
    job = scale.EmbedJob(
        plan_hash=plan_hash,
        source=stores.source.url,
        frames=params.frames,
        embedding=params.embedding,
        crops=params.objects.crops(),
    )
    if options.mode == "pool":
        return embed_on_pool(stores, shards, job=job, storage=params.storage, options=options)
    if options.mode == "dask":
        from prefect_dask import DaskTaskRunner

        key = write_group(stores, shards, job=job)
        if not key:
            return scale.ScaledOut(frozenset(), "every shard was staged already")
        runner = DaskTaskRunner(address=options.address)
        try:
            return embed_shards_dask.with_options(task_runner=runner)(
                group=key, output=stores.output.url, storage=params.storage, retries=options.retries
            )
        finally:
            clear_groups(stores, plan_hash)
    return None

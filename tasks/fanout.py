"""Tasks of the scale-out: fan shards out to child runs on the GPU pool, and the children's work.

The parent (`embed_on_pool`) writes one group description per child to the pool's staging area
and starts each child with `run_deployment(..., as_subflow=True)` from a thread of its own; the
child (`embed_group`, in the `embed-shards` flow) decodes, embeds and stages its shards. The
parent never receives embeddings from a child: it reads what was staged, like a resume.
"""

from __future__ import annotations

import contextvars
import threading
import time

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES, connect, s3_options
from tasks.progress import Progress
from winnow import embedding, scale
from winnow.datapool import Datapool
from winnow.errors import ConfigError
from winnow.params import StorageParams
from winnow.records import Shard
from winnow.storage import open_store
from winnow.stores import Stores

_CREATE_LOCK = threading.Lock()  # run_deployment's subflow bookkeeping is not thread-safe


@task(name="fan-out", cache_policy=NO_CACHE)
def embed_on_pool(
    stores: Stores,
    shards: tuple[Shard, ...],
    *,
    job: scale.EmbedJob,
    storage: StorageParams,
    options: scale.ScaleOptions,
) -> scale.ScaledOut:
    """Stage the shards through child runs of the GPU deployment; return what they did."""
    logger = get_run_logger()
    _check_capacity(options.deployment, logger)
    progress = Progress(len(shards), unit="shards", description="decode + embed on the pool")
    base = contextvars.copy_context()  # each thread runs in a copy: the child links to this run
    parameters = {"output": stores.output.url, "storage": storage.model_dump()}

    def run_child(key: str, group: scale.Group) -> str | None:
        return base.copy().run(_run_child, options, group, {"group": key, **parameters})

    def start(todo: int) -> None:
        progress.advance(len(shards) - todo)
        logger.info(
            "fanning %d of %d shards out to at most %d runs of %s",
            todo,
            len(shards),
            options.runs,
            options.deployment,
        )

    done = scale.embed_on_children(
        stores.pool,
        shards,
        job,
        runs=options.runs,
        retries=options.retries,
        run_child=run_child,
        on_start=start,
        on_progress=progress.advance_to,
    )
    for level, message in done.report():
        logger.log(level, message)
    return done.scaled_out()


def _run_child(options: scale.ScaleOptions, group: scale.Group, parameters: dict) -> str | None:
    """Start one child run and wait for it; None when it completed, else why not."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    with _CREATE_LOCK:
        run = run_deployment(
            options.deployment,
            parameters=parameters,
            flow_run_name=f"embed-{group.group_id}",
            timeout=0,
            as_subflow=True,
        )
    deadline = None if options.timeout_s is None else time.monotonic() + options.timeout_s
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                if state.is_completed():
                    return None
                why = f"{state.type.value}: {state.message}"
                # Now, not when the round ends: the other children may run for a long time.
                get_run_logger().warning(
                    "child run %s (group %s) ended %s; its unstaged shards go to the next round",
                    run.name,
                    group.group_id,
                    why,
                )
                return why
            if deadline is not None and time.monotonic() > deadline:
                # Stop it, so it does not keep a GPU busy; its shards go to another child.
                client.set_flow_run_state(run.id, Cancelling(message="timed out"), force=True)
                return (
                    f"timed out after {options.timeout_s} s ({state.type.value if state else '?'})"
                )
            time.sleep(1)


def _check_capacity(deployment: str, logger) -> None:  # noqa: ANN001 - a Prefect logger
    """Refuse a fan-out that cannot start: the parent holding the pool's only slot."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    with get_client(sync_client=True) as client:
        child = client.read_deployment_by_name(deployment)
        pool = client.read_work_pool(child.work_pool_name)
        workers = client.read_workers_for_work_pool(pool.name)
    online = sum(w.status.value == "ONLINE" for w in workers if w.status)
    logger.info(
        "work pool %s: concurrency limit %s, %d workers online",
        pool.name,
        pool.concurrency_limit or "none",
        online,
    )
    ctx = FlowRunContext.get()
    parent_pool = getattr(ctx.flow_run, "work_pool_name", None) if ctx and ctx.flow_run else None
    if (
        parent_pool == pool.name
        and pool.concurrency_limit is not None
        and pool.concurrency_limit < 2
    ):
        raise ConfigError(
            f"this run holds the only slot of work pool {pool.name} (concurrency limit "
            f"{pool.concurrency_limit}), so its child runs could never start: raise the limit "
            f"(python deployments/setup.py --gpu-limit <GPU workers + 1>) or run curate on "
            f"another pool"
        )


@task(name="embed-group", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def embed_group(group: str, *, output: str, storage: StorageParams) -> dict:
    """Decode, embed and stage the shards of one group (a child run's whole job)."""
    spec = scale.read_group(_pool(output, storage), group)
    stores, embedder = _connect_group(spec, output, storage)
    progress = Progress(len(spec.shards), unit="shards", description=f"group {spec.group_id}")
    result = scale.stage_group(
        stores.pool,
        spec,
        spec.shards,
        source=stores.source,
        embedder=embedder,
        on_resume=lambda ids, frames: progress.advance(len(ids)),
        on_shard=lambda r: progress.advance(1, items=len(r.candidates)),
    )
    scale.write_result(stores.pool, group, result)
    get_run_logger().info(
        "group %s: %d shards staged, %d already staged, %d frames in %.1f s",
        spec.group_id,
        len(result.staged),
        len(result.reused),
        result.frames,
        result.seconds,
    )
    return {"staged": len(result.staged), "reused": len(result.reused), "frames": result.frames}


@task(name="embed-shard", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def embed_shard(shard: Shard, *, group: str, output: str, storage: StorageParams) -> str:
    """Decode, embed and stage one shard on a Dask worker (model kept loaded); return its id."""
    spec = scale.read_group_cached(_pool(output, storage), group)
    stores, embedder = _connect_group(spec, output, storage)
    scale.stage_group(stores.pool, spec, [shard], source=stores.source, embedder=embedder)
    return shard.shard_id


def group_shards(group: str, *, output: str, storage: StorageParams) -> tuple[Shard, ...]:
    """The shards of a group description (what a Dask flow maps over)."""
    return scale.read_group(_pool(output, storage), group).shards


def _pool(output: str, storage: StorageParams) -> Datapool:
    return Datapool(open_store(output, s3_options(storage)).child("pool"))


def _connect_group(
    spec: scale.GroupSpec, output: str, storage: StorageParams
) -> tuple[Stores, embedding.Embedder]:
    """The group's stores and its model (kept loaded in this process between tasks)."""
    stores = connect(spec.source, output, storage)
    return stores, embedding.cached_embedder(spec.embedding_options, s3=stores.options)


@task(name="write-group", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def write_group(stores: Stores, shards: tuple[Shard, ...], *, job: scale.EmbedJob) -> str:
    """Describe the shards not staged yet as one group (for Dask); return its key ('' if none)."""
    return scale.write_dask_group(stores.pool, shards, job)


@task(name="clear-groups", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def clear_groups(stores: Stores, plan_hash: str) -> None:
    """Delete the group descriptions (and results) of a plan once its shards are staged."""
    scale.clear_groups(stores.pool, plan_hash)

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
from winnow.media import FrameOptions
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
    plan_hash: str,
    frames: FrameOptions,
    embedding_options: embedding.EmbeddingOptions,
    storage: StorageParams,
    options: scale.ScaleOptions,
) -> dict:
    """Stage the shards through child runs of the GPU deployment; return what they did."""
    logger = get_run_logger()
    pool = stores.pool
    staged = pool.staged_shard_ids(plan_hash)
    todo = [s for s in shards if s.shard_id not in staged]
    _check_capacity(options.deployment, logger)
    progress = Progress(len(shards), unit="shards", description="decode + embed on the pool")
    progress.advance(len(shards) - len(todo))
    planned = {s.shard_id for s in shards}
    results: dict[str, scale.GroupResult] = {}  # read once each, across polls

    def on_poll(now: set[str]) -> None:
        done = len(now & planned)
        # Frames as the children report them: a child writes its result when its group ends.
        frames = sum(r.frames for r in scale.read_results(pool, plan_hash, results))
        if done > progress.done or frames > progress.items:
            progress.advance(max(done - progress.done, 0), items_so_far=frames)

    base = contextvars.copy_context()  # each thread runs in a copy: the child links to this run

    def submit(group: scale.Group) -> str | None:
        spec = scale.GroupSpec(
            plan_hash=plan_hash,
            group_id=group.group_id,
            source=stores.source.url,
            shards=group.shards,
            frames=frames.model_dump(mode="json"),
            embedding=embedding_options.model_dump(mode="json"),
        )
        key = scale.write_group(pool, spec)
        parameters = {"group": key, "output": stores.output.url, "storage": storage.model_dump()}
        return base.copy().run(_run_child, options, group, parameters)

    logger.info(
        "fanning %d of %d shards out to at most %d runs of %s",
        len(todo),
        len(shards),
        options.runs,
        options.deployment,
    )
    done = scale.fan_out(
        todo,
        runs=options.runs,
        retries=options.retries,
        submit=submit,
        staged_ids=lambda: pool.staged_shard_ids(plan_hash),
        on_poll=on_poll,
    )
    for child in scale.read_results(pool, plan_hash):
        logger.info(
            "child %s on %s (pid %d): %d shards staged, %d frames in %.1f s",
            child.group_id,
            child.host,
            child.pid,
            len(child.staged),
            child.frames,
            child.seconds,
        )
    scale.clear_groups(pool, plan_hash)
    for group_id, why in done.failed.items():
        logger.warning("child run of group %s did not finish: %s", group_id, why)
    if done.missing:
        logger.warning(
            "%d shards still missing after %d rounds: this run decodes them itself",
            len(done.missing),
            done.rounds,
        )
    return {
        "children": len(done.groups),
        "failed": len(done.failed),
        "rounds": done.rounds,
        "missing": len(done.missing),
    }


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
                return None if state.is_completed() else f"{state.type.value}: {state.message}"
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
    logger = get_run_logger()
    spec = scale.read_group(Datapool(open_store(output, s3_options(storage)).child("pool")), group)
    stores = connect(spec.source, output, storage)
    options = embedding.EmbeddingOptions.model_validate(spec.embedding)
    embedder = embedding.cached_embedder(options, s3=stores.options)
    progress = Progress(len(spec.shards), unit="shards", description=f"group {spec.group_id}")
    result = scale.embed_and_stage(
        stores.pool,
        spec.plan_hash,
        spec.shards,
        source=stores.source,
        frames=FrameOptions.model_validate(spec.frames),
        embedder=embedder,
        decode_workers=options.decode_workers,
        prefetch_batches=options.prefetch_batches,
        result=scale.GroupResult(group_id=spec.group_id),
        on_shard=lambda r: progress.advance(1, items=len(r.candidates)),
    )
    scale.write_result(stores.pool, group, result)
    logger.info(
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
    pool = Datapool(open_store(output, s3_options(storage)).child("pool"))
    spec = scale.read_group_cached(pool, group)
    stores = connect(spec.source, output, storage)
    options = embedding.EmbeddingOptions.model_validate(spec.embedding)
    scale.embed_and_stage(
        stores.pool,
        spec.plan_hash,
        [shard],
        source=stores.source,
        frames=FrameOptions.model_validate(spec.frames),
        embedder=embedding.cached_embedder(options, s3=stores.options),
        decode_workers=options.decode_workers,
        prefetch_batches=options.prefetch_batches,
        result=scale.GroupResult(group_id=spec.group_id),
    )
    return shard.shard_id


@task(name="write-group", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def write_group(
    stores: Stores,
    shards: tuple[Shard, ...],
    *,
    plan_hash: str,
    frames: FrameOptions,
    embedding_options: embedding.EmbeddingOptions,
) -> str:
    """Describe the shards not staged yet as one group (for Dask); return its key ('' if none)."""
    staged = stores.pool.staged_shard_ids(plan_hash)
    todo = tuple(s for s in shards if s.shard_id not in staged)
    if not todo:
        return ""
    group = scale.plan_groups(todo, runs=1)[0]
    spec = scale.GroupSpec(
        plan_hash=plan_hash,
        group_id=f"dask-{group.group_id}",
        source=stores.source.url,
        shards=group.shards,
        frames=frames.model_dump(mode="json"),
        embedding=embedding_options.model_dump(mode="json"),
    )
    return scale.write_group(stores.pool, spec)

"""Tasks: start a run — connect, load the pool, finish what a dead run left, check the run.

Curate starts from its source and checks its model against the pool's; the lifecycle flows
(train, reembed, reselect) start from a pool and read the source its latest tag records.
"""

from __future__ import annotations

import time
import uuid

from prefect import runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES, connect
from tasks.discover import load_snapshot
from tasks.upload import publish_pending
from winnow import embedding, runs
from winnow.datapool import PoolSnapshot, plan_hash
from winnow.media import FrameOptions
from winnow.objects import ObjectOptions
from winnow.params import CurateParams, StorageParams
from winnow.stores import Stores
from winnow.training import recorded_source


def current_run_id() -> str:
    """The flow run's id (a fresh uuid outside a flow run)."""
    return str(runtime.flow_run.id or uuid.uuid4())


@task(name="start-run", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def start_curate(params: CurateParams) -> runs.Started:
    """Connect, load the pool, publish a dead run's exports, check the tag name and model."""
    began = time.perf_counter()
    source, tag_name, embedding_options = params.source, params.tag_name, params.embedding
    stores = connect(source, params.output_url, params.storage)
    snapshot = load_snapshot(stores)
    publish_pending(stores, snapshot)  # of a run that died after its commit
    snapshot.check_new_tag(tag_name or snapshot.next_tag_name())
    # `s3` reaches `s3://` weights (a `pool:<model-id>` of an S3 pool is one) with the run's
    # own endpoint and credentials, not boto3's defaults.
    model = embedding.model_record(embedding_options, s3=stores.options)
    snapshot.check_model(model)
    if embedding_options.weights == "none":
        get_run_logger().warning(
            "weights='none': the model has random weights, so selections are only as good as "
            "a random embedding; use weights='default' (pretrained) or a checkpoint for real data"
        )
    return runs.Started(
        run_id=current_run_id(),
        stores=stores,
        snapshot=snapshot,
        model=model,
        parameters=params.public_dict(),
        source=source,
        plan_hash=plan_hash(model, _plan(params.frames, params.objects)),
        began_at=began,
    )


def _plan(frames: FrameOptions, objects: ObjectOptions | None) -> dict:
    """What the run's shards are staged under: frame sampling, and crops when it has objects."""
    crops = objects.plan_dict() if objects is not None else None
    return frames.plan_dict() if crops is None else {**frames.plan_dict(), "objects": crops}


def open_pool(
    output: str, source: str | None, storage: StorageParams
) -> tuple[Stores, PoolSnapshot, str]:
    """The stores, snapshot and source URL of a lifecycle run.

    Its source is the one given, else the one the pool's latest tag records.
    """
    stores = connect(source or output, output, storage)
    snapshot = load_snapshot(stores)
    source_url = recorded_source(snapshot.tags, source, pool_url=stores.pool.url)
    if source_url != stores.source.url:
        stores = connect(source_url, output, storage)
    return stores, snapshot, source_url


@task(name="start-run", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def start_from_pool(
    output: str,
    source: str | None,
    storage: StorageParams,
    *,
    tag_name: str | None = None,
    parameters: dict | None = None,
) -> runs.Started:
    """Open a pool and its source, publish a dead run's exports, check the tag name."""
    began = time.perf_counter()
    stores, snapshot, source_url = open_pool(output, source, storage)
    publish_pending(stores, snapshot)  # of a run that died after its commit
    snapshot.check_new_tag(tag_name or snapshot.next_tag_name())
    return runs.Started(
        run_id=current_run_id(),
        stores=stores,
        snapshot=snapshot,
        model=snapshot.model,
        parameters=parameters or {},
        source=source_url,
        began_at=began,
    )

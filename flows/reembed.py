"""The reembed flow: move a pool to a new embedding model, one atomic commit at the end."""

from __future__ import annotations

import uuid

from prefect import flow, runtime
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tasks.connect import connect
from tasks.discover import load_pool
from tasks.reembed import (
    commit_reembed,
    load_new_model,
    new_model_record,
    plan_reembed,
    reembed_shards,
)
from winnow.embedding import EmbeddingOptions
from winnow.params import ShardFiles, StorageParams, documented_by
from winnow.training import PoolOutput, PoolSource, ReembedParams, recorded_source


@flow(
    name="reembed",
    description="Re-embed every sample of a datapool with a new model and switch the pool to it.",
    log_prints=True,
)
@documented_by(ReembedParams)
def reembed(
    output: PoolOutput,
    source: PoolSource = None,
    embedding: EmbeddingOptions = EmbeddingOptions(),  # noqa: B008 - immutable value here
    storage: StorageParams = StorageParams(),  # noqa: B008
    shard_files: ShardFiles = 32,
) -> dict:
    """Re-embed every sample of a datapool with a new model and switch the pool to it."""
    params = ReembedParams(**locals())
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    logger = get_run_logger()
    stores = connect(params.source or params.output, params.output, params.storage)
    snapshot = load_pool(stores)
    source_url = recorded_source(snapshot.tags, params.source, pool_url=stores.pool.url)
    if source_url != stores.source.url:
        stores = connect(source_url, params.output, params.storage)
    model = new_model_record(stores, params.embedding, params.storage)
    out = {
        "run_id": run_id,
        "version_before": snapshot.version,
        "model_before": snapshot.model.describe() if snapshot.model else None,
        "model": model.describe(),
    }
    if snapshot.model == model:
        logger.info("the datapool %s already uses %s: nothing to do", stores.pool.url, model)
        return {**out, "version_after": snapshot.version, "samples": 0, "nothing_to_do": True}

    plan = plan_reembed(snapshot, model, shard_files=params.shard_files)
    embedder = load_new_model(stores, params.embedding, params.storage)
    samples, files, resumed = reembed_shards(
        stores, plan, embedder=embedder, decode_workers=params.embedding.decode_workers
    )
    version = commit_reembed(stores, plan, run_id=run_id, samples=samples)
    dropped = [(f.key, f.error or "") for f in files if f.status != "ok"]
    out.update(
        version_after=version,
        samples=len(samples),
        shards=len(plan.shards),
        shards_resumed=resumed,
        files_dropped=len(dropped),
        samples_superseded=plan.superseded,
        nothing_to_do=False,
    )
    lines = [
        f"## Re-embedded `{stores.pool.url}`",
        "",
        f"Version {snapshot.version} → {version}: {out['model_before']} → {model.describe()}",
        "",
        "| | |",
        "|---|---:|",
        f"| samples re-embedded | {len(samples)} |",
        f"| shards (resumed) | {len(plan.shards)} ({resumed}) |",
        f"| files dropped (vanished, changed or undecodable) | {len(dropped)} |",
        f"| superseded samples dropped | {plan.superseded} |",
    ]
    lines += [f"- `{key}`: {reason}" for key, reason in dropped[:20]]
    create_markdown_artifact("\n".join(lines), description="Winnow re-embed summary")
    return out

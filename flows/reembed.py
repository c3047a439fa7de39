"""The reembed flow: move a pool to a new embedding model, one atomic commit at the end."""

from __future__ import annotations

from prefect import flow

from tasks.reembed import (
    commit_reembed,
    load_new_model,
    new_model_record,
    nothing_to_reembed,
    plan_reembed,
    reembed_shards,
    report_reembed,
)
from tasks.start import current_run_id, open_pool
from winnow.embedding import EmbeddingOptions
from winnow.params import ShardFiles, StorageParams, documented_by
from winnow.training import PoolOutput, PoolSource, ReembedParams


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
    run_id = current_run_id()
    stores, snapshot, _ = open_pool(params.output, params.source, params.storage)
    model = new_model_record(stores, params.embedding, params.storage)
    if snapshot.model == model:
        return nothing_to_reembed(stores, snapshot, model, run_id=run_id)
    plan = plan_reembed(snapshot, model, shard_files=params.shard_files)
    embedder = load_new_model(stores, params.embedding, params.storage)
    samples, files, resumed, objects = reembed_shards(
        stores, plan, embedder=embedder, decode_workers=params.embedding.decode_workers
    )
    version = commit_reembed(stores, plan, run_id=run_id, samples=samples, objects=objects)
    return report_reembed(
        stores, plan, run_id=run_id, version=version, samples=samples, files=files, resumed=resumed
    )

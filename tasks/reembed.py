"""Tasks: plan a pool's re-embedding, embed and stage its shards, commit the model switch."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES, s3_options
from tasks.progress import Progress
from winnow import embedding, training
from winnow.datapool import PoolSnapshot
from winnow.params import StorageParams
from winnow.records import Candidates, FileResult, ModelRecord
from winnow.stores import Stores


@task(name="new-model", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def new_model_record(
    stores: Stores, options: embedding.EmbeddingOptions, storage: StorageParams
) -> ModelRecord:
    """The record of the model the pool moves to (finds pool:/URL checkpoints)."""
    return embedding.model_record(options, pool=stores.pool.store, s3=s3_options(storage))


@task(name="load-new-model", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def load_new_model(
    stores: Stores, options: embedding.EmbeddingOptions, storage: StorageParams
) -> embedding.Embedder:
    """Build the new model and load its weights."""
    embedder = embedding.load_embedder(options, pool=stores.pool.store, s3=s3_options(storage))
    get_run_logger().info("new model %s on %s", embedder.record.describe(), embedder.device)
    return embedder


@task(name="plan-reembed", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def plan_reembed(
    snapshot: PoolSnapshot, model: ModelRecord, *, shard_files: int
) -> training.ReembedPlan:
    """Group the pool's samples by file into shards to re-embed."""
    plan = training.plan_reembed(snapshot, model, shard_files=shard_files)
    get_run_logger().info(
        "re-embed plan: %d samples of %d files in %d shards (%d superseded samples dropped)",
        len(plan.samples),
        sum(len(s.files) for s in plan.shards),
        len(plan.shards),
        plan.superseded,
    )
    return plan


@task(name="reembed-shards", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def reembed_shards(
    stores: Stores,
    plan: training.ReembedPlan,
    *,
    embedder: embedding.Embedder,
    decode_workers: int | None,
) -> tuple[Candidates, list[FileResult], int]:
    """Embed the shards not staged yet, staging each; return samples, file results, reused."""
    pool = stores.pool
    resumed = pool.resume(plan.plan_hash, plan.shards)
    reused = len(plan.shards) - len(resumed.todo)
    if reused:
        get_run_logger().info(
            "resuming: %d of %d shards were staged by an earlier attempt", reused, len(plan.shards)
        )
    progress = Progress(len(plan.shards), unit="shards", description="re-embed")
    progress.advance(reused)
    parts, files = resumed.candidates, resumed.files
    workers = decode_workers or embedding.default_decode_workers(embedder.device)
    for shard, candidates, results in training.embed_reembed_shards(
        plan, resumed.todo, source=stores.source, embedder=embedder, workers=workers
    ):
        pool.stage_shard(plan.plan_hash, shard.shard_id, candidates, results)
        parts.append(candidates)
        files.extend(results)
        dropped = sum(f.status != "ok" for f in results)
        progress.advance(
            1, items=len(candidates), note=f"({dropped} files dropped)" if dropped else ""
        )
    dim = embedder.record.dim
    return (Candidates.concat(parts) if parts else Candidates.empty(dim)), files, reused


@task(name="commit-reembed", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def commit_reembed(
    stores: Stores, plan: training.ReembedPlan, *, run_id: str, samples: Candidates
) -> int:
    """One atomic commit: the new model and every sample's new embedding; files and tags kept."""
    version = training.commit_reembed(stores.pool, plan, run_id=run_id, samples=samples)
    get_run_logger().info(
        "datapool %s: committed version %d: model %s, %d samples re-embedded",
        stores.pool.url,
        version,
        plan.model.describe(),
        len(samples),
    )
    return version

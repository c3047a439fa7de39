"""Tasks: plan a pool's re-embedding, embed and stage its shards, commit the switch, report."""

from __future__ import annotations

import functools

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES, s3_options
from tasks.progress import Progress
from winnow import embedding, staging, training
from winnow.datapool import PoolSnapshot
from winnow.params import StorageParams
from winnow.records import Candidates, FileResult, ModelRecord, ObjectRows
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
) -> tuple[Candidates, list[FileResult], int, ObjectRows | None]:
    """Embed the shards not staged yet, staging each; return samples, files, reused, objects."""
    progress = Progress(len(plan.shards), unit="shards", description="re-embed")
    embed = functools.partial(
        training.embed_reembed_shards,
        plan,
        source=stores.source,
        embedder=embedder,
        workers=decode_workers,
    )
    done = staging.embed_and_stage(
        stores.pool,
        plan.plan_hash,
        plan.shards,
        embed=embed,
        dim=embedder.record.dim,
        on_resume=lambda ids, frames: progress.resumed(len(ids), frames=frames),
        on_shard=lambda r: progress.advance(1, items=len(r.candidates), note=_dropped(r.files)),
    )
    return done.candidates, done.files, len(done.reused), done.objects


def _dropped(files: list[FileResult]) -> str:
    dropped = sum(f.status != "ok" for f in files)
    return f"({dropped} files dropped)" if dropped else ""


@task(name="commit-reembed", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def commit_reembed(
    stores: Stores,
    plan: training.ReembedPlan,
    *,
    run_id: str,
    samples: Candidates,
    objects: ObjectRows | None = None,
) -> int:
    """One atomic commit: the new model and every sample's new embedding; files and tags kept."""
    version = training.commit_reembed(
        stores.pool, plan, run_id=run_id, samples=samples, objects=objects
    )
    get_run_logger().info(
        "datapool %s: committed version %d: model %s, %d samples re-embedded",
        stores.pool.url,
        version,
        plan.model.describe(),
        len(samples),
    )
    return version


@task(name="nothing-to-reembed", cache_policy=NO_CACHE)
def nothing_to_reembed(
    stores: Stores, snapshot: PoolSnapshot, model: ModelRecord, *, run_id: str
) -> dict:
    """Say that the pool already uses the model; return the run's (empty) record."""
    get_run_logger().info("the datapool %s already uses %s: nothing to do", stores.pool.url, model)
    return {
        **_before(run_id, snapshot, model),
        "version_after": snapshot.version,
        "samples": 0,
        "nothing_to_do": True,
    }


@task(name="report-reembed", cache_policy=NO_CACHE)
def report_reembed(
    stores: Stores,
    plan: training.ReembedPlan,
    *,
    run_id: str,
    version: int,
    samples: Candidates,
    files: list[FileResult],
    resumed: int,
) -> dict:
    """Publish the re-embed's summary artifact; return the run's record."""
    dropped = [(f.key, f.error or "") for f in files if f.status != "ok"]
    out = {
        **_before(run_id, plan.base, plan.model),
        "version_after": version,
        "samples": len(samples),
        "shards": len(plan.shards),
        "shards_resumed": resumed,
        "files_dropped": len(dropped),
        "samples_superseded": plan.superseded,
        "nothing_to_do": False,
    }
    lines = [
        f"## Re-embedded `{stores.pool.url}`",
        "",
        f"Version {plan.base.version} → {version}: {out['model_before']} → {out['model']}",
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


def _before(run_id: str, snapshot: PoolSnapshot, model: ModelRecord) -> dict:
    return {
        "run_id": run_id,
        "version_before": snapshot.version,
        "model_before": snapshot.model.describe() if snapshot.model else None,
        "model": model.describe(),
    }

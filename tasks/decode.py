"""Task: decode the planned shards and embed their frames, staging each finished shard.

Decoding and embedding run as one streaming pipeline (winnow.engine): frames flow from the
decoders to the model in batches formed across files, so memory is bounded by the batch and
prefetch depth. Splitting them into two tasks would force a shard's frames through memory.
The resume-and-stage loop around it is the one every decode+embed step shares
(winnow.staging): shards staged by an earlier attempt are loaded, not decoded again.
"""

from __future__ import annotations

import functools

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.connect import STORAGE_RETRIES
from tasks.progress import Progress
from winnow import engine, runs, staging
from winnow.embedding import Embedder
from winnow.media import FrameOptions
from winnow.records import EMPTY_RANGE, FileResult, Shard
from winnow.stores import Stores


@task(name="decode-embed", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def decode_embed_shards(
    stores: Stores,
    shards: tuple[Shard, ...],
    *,
    frames: FrameOptions,
    embedder: Embedder,
    plan_hash: str,
    decode_workers: int | None,
    prefetch_batches: int,
) -> runs.Embedded:
    """Decode and embed the shards not staged yet (the staged ones are loaded)."""
    progress = Progress(len(shards), unit="shards", description="decode + embed")
    stats = engine.EngineStats()
    embed = functools.partial(
        engine.embed_shards,
        source=stores.source,
        frames=frames,
        embedder=embedder,
        decode_workers=decode_workers,
        prefetch_batches=prefetch_batches,
        stats=stats,
        on_progress=lambda s: progress.report_items(s.frames),  # frames within long videos
    )
    done = staging.embed_and_stage(
        stores.pool,
        plan_hash,
        shards,
        embed=embed,
        dim=embedder.record.dim,
        on_resume=progress.resumed,
        on_shard=lambda r: progress.advance(1, items_so_far=stats.frames, note=_bad(r.files)),
    )
    return runs.Embedded(
        candidates=done.candidates, files=done.files, shards=len(shards), resumed=len(done.reused)
    )


def _bad(files: list[FileResult]) -> str:
    bad = sum(f.status != "ok" and f.error != EMPTY_RANGE for f in files)
    return f"({bad} corrupt/skipped)" if bad else ""

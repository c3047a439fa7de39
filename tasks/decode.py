"""Task: decode the planned shards and embed their frames, staging each finished shard.

Decoding and embedding run as one streaming pipeline (winnow.engine): frames flow from the
decoders to the model in batches formed across files, so memory is bounded by the batch and
prefetch depth. Splitting them into two tasks would force a shard's frames through memory.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from tasks.progress import Progress
from winnow import engine
from winnow.embedding import Embedder
from winnow.media import FrameOptions
from winnow.records import EMPTY_RANGE, Candidates, FileResult, Shard, merge_file_results
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
) -> tuple[Candidates, list[FileResult], int]:
    """Decode and embed the shards not staged yet; return candidates, file results, reused."""
    pool = stores.pool
    resumed = pool.resume(plan_hash, shards)
    reused = len(shards) - len(resumed.todo)
    if reused:
        get_run_logger().info(
            "resuming: %d of %d shards were staged by an earlier attempt", reused, len(shards)
        )
    progress = Progress(len(shards), unit="shards", description="decode + embed")
    progress.advance(reused)
    parts, files = resumed.candidates, resumed.files
    stats = engine.EngineStats()
    for result in engine.embed_shards(
        resumed.todo,
        source=stores.source,
        frames=frames,
        embedder=embedder,
        decode_workers=decode_workers,
        prefetch_batches=prefetch_batches,
        stats=stats,
        on_progress=lambda s: progress.report_items(s.frames),  # frames within long videos
    ):
        pool.stage_shard(plan_hash, result.shard.shard_id, result.candidates, result.files)
        parts.append(result.candidates)
        files.extend(result.files)
        bad = sum(f.status != "ok" and f.error != EMPTY_RANGE for f in result.files)
        progress.advance(
            1, items_so_far=stats.frames, note=f"({bad} corrupt/skipped)" if bad else ""
        )
    # A long video's time ranges (in one or several shards) give one result for the file.
    return Candidates.concat(parts), merge_file_results(files), reused

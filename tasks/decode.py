"""Task: decode the planned shards and embed their frames, staging each finished shard.

Decoding and embedding run as one streaming pipeline (winnow.engine): frames flow from the
decoders to the model in batches formed across files, so memory is bounded by the batch and
prefetch depth. Splitting them into two tasks would force a shard's frames through memory.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.params import CurateParams
from tasks.connect import STORAGE_RETRIES, Stores
from tasks.progress import Progress
from winnow import engine
from winnow.embedding import Embedder
from winnow.records import Candidates, FileResult, Shard


@task(name="decode-embed", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def decode_embed_shards(
    params: CurateParams,
    stores: Stores,
    shards: tuple[Shard, ...],
    embedder: Embedder,
    plan_hash: str,
) -> tuple[Candidates, list[FileResult], int]:
    """Decode and embed the shards not staged yet; return candidates, file results, reused."""
    logger = get_run_logger()
    pool = stores.pool
    staged = pool.staged_shard_ids(plan_hash)
    parts: list[Candidates] = []
    files: list[FileResult] = []
    todo: list[Shard] = []
    for shard in shards:
        loaded = pool.load_staged(plan_hash, shard.shard_id) if shard.shard_id in staged else None
        if loaded is None:
            todo.append(shard)
        else:
            parts.append(loaded[0])
            files.extend(loaded[1])
    if len(todo) < len(shards):
        logger.info(
            "resuming: %d of %d shards were staged by an earlier attempt",
            len(shards) - len(todo),
            len(shards),
        )
    progress = Progress(len(shards), unit="shards", description="decode + embed")
    progress.advance(len(shards) - len(todo))
    for result in engine.embed_shards(
        todo,
        source=stores.source,
        frames=params.frames,
        embedder=embedder,
        decode_workers=params.embedding.decode_workers,
        prefetch_batches=params.embedding.prefetch_batches,
    ):
        pool.stage_shard(plan_hash, result.shard.shard_id, result.candidates, result.files)
        parts.append(result.candidates)
        files.extend(result.files)
        bad = sum(f.status != "ok" for f in result.files)
        progress.advance(
            1, items=len(result.candidates), note=f"({bad} corrupt/skipped)" if bad else ""
        )
    return Candidates.concat(parts), files, len(shards) - len(todo)

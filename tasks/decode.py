"""Task: decode the planned shards and embed their frames, staging each finished shard.

Decoding and embedding run as one streaming pipeline (winnow.engine): frames flow from the
decoders to the model in batches formed across files, so memory is bounded by the batch and
prefetch depth. Splitting them into two tasks would force a shard's frames through memory.
The resume-and-stage loop around it is the one every decode+embed step shares
(winnow.staging): shards staged by an earlier attempt are loaded, not decoded again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.connect import STORAGE_RETRIES
from tasks.progress import Progress
from winnow import engine, runs, staging
from winnow.embedding import Embedder
from winnow.media import FrameOptions
from winnow.objects import CropSettings
from winnow.records import EMPTY_RANGE, FileResult, Shard
from winnow.scale import ScaledOut


@task(name="decode-embed", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def decode_embed_shards(
    run: runs.Started,
    shards: tuple[Shard, ...],
    *,
    frames: FrameOptions,
    model: Callable[[], Embedder],
    decode_workers: int | None,
    prefetch_batches: int,
    scaled: ScaledOut | None = None,
    crops: CropSettings | None = None,
) -> runs.Embedded:
    """Decode and embed the shards not staged yet; load the staged ones (e.g. `scaled`'s)."""
    progress = Progress(len(shards), unit="shards", description="decode + embed")
    by_others = scaled.staged if scaled is not None else frozenset()

    def resumed(ids: list[str], frames: int) -> None:
        mine = sum(i not in by_others for i in ids)
        progress.resumed(len(ids) - mine, frames=frames, by="this run's child runs or workers")
        progress.resumed(mine)

    stats = engine.EngineStats()

    def embed(todo: Sequence[Shard]) -> Iterable[engine.ShardResult]:
        if not todo:  # all staged (by an earlier attempt, child runs or Dask): no model needed
            return ()
        return engine.embed_shards(
            todo,
            source=run.stores.source,
            frames=frames,
            embedder=model(),
            decode_workers=decode_workers,
            prefetch_batches=prefetch_batches,
            stats=stats,
            on_progress=lambda s: progress.report_items(s.frames),  # frames within long videos
            crops=crops,
        )

    done = staging.embed_and_stage(
        run.stores.pool,
        run.plan_hash,
        shards,
        embed=embed,
        dim=run.model.dim,
        on_resume=resumed,
        on_shard=lambda r: progress.advance(1, items_so_far=stats.frames, note=_bad(r.files)),
    )
    return runs.Embedded(
        candidates=done.candidates,
        files=done.files,
        objects=done.objects,
        shards=len(shards),
        resumed=sum(i not in by_others for i in done.reused),
        scaled=scaled.text if scaled is not None else "",
    )


def _bad(files: list[FileResult]) -> str:
    bad = sum(f.status != "ok" and f.error != EMPTY_RANGE for f in files)
    return f"({bad} corrupt/skipped)" if bad else ""

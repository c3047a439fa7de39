"""The curate flow: start, discover, decode+embed the new files, select, upload, commit a tag."""

from __future__ import annotations

from prefect import flow

from flows.embed_shards import scale_out
from tasks.decode import decode_embed_shards
from tasks.discover import discover_files
from tasks.embed import lazy_model
from tasks.finish import end_curate, end_run, select_and_commit
from tasks.start import start_curate
from winnow.embedding import EmbeddingOptions
from winnow.media import FrameOptions
from winnow.objects import ObjectOptions
from winnow.params import (
    CurateParams,
    LeakChecks,
    Output,
    ProcessAll,
    RelevantFilenames,
    ShardFiles,
    ShardSeconds,
    Source,
    StorageParams,
    TagName,
    document_parameters,
)
from winnow.scale import ScaleOptions
from winnow.selection import SelectionConfig


@flow(
    name="curate",
    description="Keep only what is worth labelling from the new files of a bucket or folder.",
    log_prints=True,
)
@document_parameters
def curate(
    source: Source,
    output: Output = None,
    relevant_filenames: RelevantFilenames = None,
    process_all: ProcessAll = False,
    tag_name: TagName = None,
    frames: FrameOptions = FrameOptions(),  # noqa: B008 - pydantic models are immutable values here
    objects: ObjectOptions = ObjectOptions(),  # noqa: B008
    embedding: EmbeddingOptions = EmbeddingOptions(),  # noqa: B008
    selection: SelectionConfig = SelectionConfig(),  # noqa: B008
    storage: StorageParams = StorageParams(),  # noqa: B008
    shard_files: ShardFiles = 32,
    shard_seconds: ShardSeconds = None,
    scale: ScaleOptions = ScaleOptions(),  # noqa: B008
    leak_check: LeakChecks = None,
) -> dict:
    """Keep only what is worth labelling from the new files of a bucket or folder."""
    params = CurateParams(**locals())  # the arguments, validated together
    run = start_curate(params)
    found = discover_files(
        run.stores,
        run.snapshot,
        relevant_filenames=params.relevant_filenames,
        process_all=params.process_all,
        shard_files=params.shard_files,
        shard_seconds=params.shard_seconds,
        min_shards=params.scale.min_shards,
        objects=params.objects,
    )
    if not found.new:
        return end_run(run, found)
    model = lazy_model(params.embedding, s3=run.stores.options)
    scaled = scale_out(run.stores, found.shards, params=params, plan_hash=run.plan_hash)
    embedded = decode_embed_shards(  # what the pool's children or Dask staged is loaded
        run,
        found.shards,
        frames=params.frames,
        model=model,
        decode_workers=params.embedding.decode_workers,
        prefetch_batches=params.embedding.prefetch_batches,
        scaled=scaled,
        crops=params.objects.crops(),
    )
    finished = select_and_commit(
        run,
        found,
        embedded,
        config=params.selection,
        tag_name=params.tag_name,
        frames=params.frames,
        model=model,
        device=params.embedding.device,
    )
    return end_curate(run, found, finished, leak_check=params.leak_check)

"""The curate flow: load pool, discover, decode+embed shards, select, upload, register tag."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

from prefect import flow, runtime
from prefect.logging import get_run_logger

from flows.params import (
    CurateParams,
    Output,
    ProcessAll,
    RelevantFilenames,
    ShardFiles,
    Source,
    StorageParams,
    TagName,
    document_parameters,
)
from flows.summary import publish_summary
from tasks.connect import open_stores
from tasks.decode import decode_embed_shards
from tasks.discover import discover_files, load_pool
from tasks.embed import check_model, load_model
from tasks.select import select_samples
from tasks.tag import register_tag
from tasks.upload import upload_outputs
from winnow.datapool import plan_hash
from winnow.embedding import EmbeddingOptions
from winnow.errors import ConfigError
from winnow.media import FrameOptions
from winnow.records import RunSummary
from winnow.selection import SelectionConfig


@contextmanager
def _timed(summary: RunSummary, stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        summary.seconds[stage] = round(time.perf_counter() - start, 3)


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
    embedding: EmbeddingOptions = EmbeddingOptions(),  # noqa: B008
    selection: SelectionConfig = SelectionConfig(),  # noqa: B008
    storage: StorageParams = StorageParams(),  # noqa: B008
    shard_files: ShardFiles = 32,
) -> dict:
    """Keep only what is worth labelling from the new files of a bucket or folder."""
    params = CurateParams(
        source=source,
        output=output,
        relevant_filenames=relevant_filenames,
        process_all=process_all,
        tag_name=tag_name,
        frames=frames,
        embedding=embedding,
        selection=selection,
        storage=storage,
        shard_files=shard_files,
    )
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    summary = RunSummary(run_id=run_id, source=params.source, output=params.output_url)

    with _timed(summary, "load"):
        stores = open_stores(params)
        snapshot = load_pool(stores)
        summary.pool_version_before = snapshot.version
        tag = params.tag_name or snapshot.next_tag_name()
        if any(t.name == tag for t in snapshot.tags):
            raise ConfigError(f"tag {tag!r} already exists in {stores.pool.url}: pick a new name")
        model = check_model(params, snapshot)
        summary.model = model.describe()

    with _timed(summary, "discover"):
        found, shards = discover_files(params, stores, snapshot)
    summary.files_listed, summary.files_known = found.listed, found.known
    summary.files_new = len(found.new)
    if not found.new:
        summary.nothing_new = True
        logger.info("nothing new in %s: no file to decode, no tag registered", stores.source.url)
        publish_summary(summary)
        return summary.to_dict()

    with _timed(summary, "decode_embed"):
        embedder = load_model(params)
        plan = plan_hash(model, params.frames.model_dump(mode="json"))
        candidates, files, resumed = decode_embed_shards(params, stores, shards, embedder, plan)
    summary.shards, summary.shards_resumed = len(shards), resumed
    summary.files_ok = sum(f.status == "ok" for f in files)
    summary.files_corrupt = sum(f.status == "corrupt" for f in files)
    summary.files_skipped = sum(f.status == "skipped" for f in files)
    summary.corrupt = [(f.key, f.error or "") for f in files if f.status != "ok"][:100]
    summary.candidates = len(candidates)

    with _timed(summary, "select"):
        selection, dataset = select_samples(params, stores, snapshot, candidates, embedder)
    summary.selected = len(selection.picks)
    summary.tag = tag if selection.picks else None
    summary.parent_tag = snapshot.latest_tag.name if snapshot.latest_tag else None
    for name in (
        "coverage_before",
        "coverage_after",
        "mean_pick_distance",
        "mean_random_distance",
        "stop_reason",
    ):
        setattr(summary, name, getattr(selection, name))
    summary.removed_duplicates = selection.n_removed_duplicates
    summary.removed_thresholds = selection.n_removed_thresholds

    exported = None
    if selection.picks:
        with _timed(summary, "upload"):
            exported = upload_outputs(stores, tag, candidates, selection, files, dataset, summary)
        summary.outputs = dict(exported.links)

    with _timed(summary, "register_tag"):
        summary.pool_version_after = register_tag(
            params,
            stores,
            snapshot,
            tag=tag,
            run_id=run_id,
            model=model,
            files=files,
            candidates=candidates,
            selection=selection,
            summary=summary,
            plan_hash=plan,
            shard_ids=[s.shard_id for s in shards],
        )
    publish_summary(summary, candidates=candidates, selection=selection, exported=exported)
    return summary.to_dict()

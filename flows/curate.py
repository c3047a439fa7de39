"""The curate flow: load pool, discover, decode+embed shards, select, upload, register tag."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import flow, runtime
from prefect.logging import get_run_logger

from flows.artifacts import publish_summary
from flows.embed_shards import scale_out
from tasks.connect import connect
from tasks.decode import decode_embed_shards
from tasks.discover import discover_files, load_pool
from tasks.embed import check_model, load_model
from tasks.select import select_samples
from tasks.tag import register_tag_rebasing
from tasks.upload import publish_pending_exports, publish_tag_exports, upload_outputs
from winnow.datapool import PoolSnapshot, plan_hash
from winnow.embedding import EmbeddingOptions
from winnow.gc import collect_garbage_if_due
from winnow.media import FrameOptions
from winnow.params import (
    CurateParams,
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
from winnow.rebase import PendingCommit, Rebased
from winnow.scale import ScaleOptions
from winnow.selection import SelectionConfig
from winnow.summary import RunSummary


@contextmanager
def _timed(summary: RunSummary, stage: str) -> Iterator[None]:
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
    shard_seconds: ShardSeconds = None,
    scale: ScaleOptions = ScaleOptions(),  # noqa: B008
) -> dict:
    """Keep only what is worth labelling from the new files of a bucket or folder."""
    params = CurateParams(**locals())  # the arguments, validated together
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    summary = RunSummary(run_id=run_id, source=params.source, output=params.output_url)

    with _timed(summary, "load"):
        stores = connect(params.source, params.output_url, params.storage)
        snapshot = load_pool(stores)
        publish_pending_exports(stores, snapshot)  # of a run that died after its commit
        summary.pool_version_before = snapshot.version
        tag = params.tag_name or snapshot.next_tag_name()
        snapshot.check_new_tag(tag)
        model = check_model(params.embedding, snapshot, s3=stores.options)
        summary.model = model.describe()

    with _timed(summary, "discover"):
        found, shards = discover_files(
            stores,
            snapshot,
            relevant_filenames=params.relevant_filenames,
            process_all=params.process_all,
            shard_files=params.shard_files,
            shard_seconds=params.shard_seconds,
        )
    summary.files_listed, summary.files_known = found.listed, found.known
    summary.files_ignored, summary.ignored_examples = found.ignored, list(found.ignored_examples)
    summary.files_new = len(found.new)
    if not found.new:
        summary.nothing_new = True
        get_run_logger().info("nothing new in %s: no file decoded, no tag", stores.source.url)
        publish_summary(summary, pool_url=stores.output.url)
        return summary.to_dict()

    with _timed(summary, "decode_embed"):
        embedder = load_model(params.embedding, s3=stores.options)
        plan = plan_hash(model, params.frames.model_dump(mode="json"))
        # On the GPU pool or Dask the shards are staged elsewhere; the step below then reads
        # them like a resume and decodes in-process only what is still missing.
        scale_out(stores, shards, params=params, plan_hash=plan)
        candidates, files, resumed = decode_embed_shards(
            stores,
            shards,
            frames=params.frames,
            embedder=embedder,
            plan_hash=plan,
            decode_workers=params.embedding.decode_workers,
            prefetch_batches=params.embedding.prefetch_batches,
        )
    summary.record_files(files, shards=len(shards), resumed=resumed)
    summary.candidates = len(candidates)

    selection = dataset = exported = None

    def select_and_upload(base: PoolSnapshot) -> None:
        """Select against `base`'s dataset, record the picks, upload their outputs."""
        nonlocal selection, dataset, exported
        with _timed(summary, "select"):
            selection, dataset = select_samples(
                stores,
                base,
                candidates,
                config=params.selection,
                frames=params.frames,
                embedder=embedder,
                device=params.embedding.device,
            )
        summary.record_selection(selection, dataset_samples=len(dataset))
        summary.tag = tag if selection.picks else None
        summary.parent_tag = base.latest_tag.name if base.latest_tag else None
        summary.record_history(base.tags, tag=summary.tag)
        exported, summary.outputs = None, {}
        if selection.picks:
            with _timed(summary, "upload"):
                exported = upload_outputs(
                    stores, tag, candidates, selection, files, dataset, summary, run_id=run_id
                )
            summary.outputs = dict(exported.links)

    def pending(base: PoolSnapshot) -> PendingCommit:
        """What the commit writes on top of `base`: the run's files, candidates and tag."""
        new_tag = base.new_tag(
            name=tag,
            run_id=run_id,
            parameters=params.public_dict(),
            counts=summary.counts(),
            selection=selection,
        )
        return PendingCommit(snapshot=base, tag=new_tag, files=files, candidates=candidates)

    def select_again(rebased: Rebased) -> PendingCommit:
        """After a lost commit race: select against the newer dataset (no decoding), upload."""
        nonlocal tag, files, candidates
        newer, files, candidates = rebased.snapshot, rebased.files, rebased.candidates
        tag = params.tag_name or newer.next_tag_name()
        newer.check_new_tag(tag)
        summary.files_new -= len(rebased.dropped_keys)  # the other run committed them
        summary.files_known += len(rebased.dropped_keys)
        summary.record_files(files, shards=len(shards), resumed=resumed)
        summary.candidates = len(candidates)
        select_and_upload(newer)
        return pending(newer)

    select_and_upload(snapshot)
    with _timed(summary, "register_tag"):
        committed = register_tag_rebasing(
            stores,
            pending(snapshot),
            select_again=select_again,
            run_id=run_id,
            model=model,
            plan_hash=plan,
            shard_ids=[s.shard_id for s in shards],
        )
        if committed.pending.tag is not None:  # only now: a losing run never overwrites
            publish_tag_exports(stores, run_id, committed.pending.tag.name)
    collect_garbage_if_due(stores.pool)  # abandoned staging, lost commits' parts (winnow.gc)
    summary.pool_version_after, summary.commit_attempts = committed.version, committed.attempts
    publish_summary(
        summary,
        pool_url=stores.output.url,
        candidates=candidates,
        selection=selection,
        exported=exported,
    )
    return summary.to_dict()

"""The reselect flow: a new tag from samples already in the pool, without decoding anything."""

from __future__ import annotations

import time
import uuid

from prefect import flow, runtime

from flows.artifacts import publish_summary
from tasks.connect import connect
from tasks.discover import load_pool
from tasks.reselect import reselect_samples
from tasks.tag import register_tag
from tasks.upload import publish_pending_exports, publish_tag_exports, upload_outputs
from winnow.params import StorageParams, TagName, documented_by
from winnow.records import Candidates
from winnow.selection import SelectionConfig
from winnow.summary import RunSummary
from winnow.training import Names, PoolOutput, PoolSource, ReselectParams, recorded_source


@flow(
    name="reselect",
    description="Make a new tag from the samples a datapool already holds (no decoding).",
    log_prints=True,
)
@documented_by(ReselectParams)
def reselect(
    output: PoolOutput,
    source: PoolSource = None,
    tag_name: TagName = None,
    selection: SelectionConfig = SelectionConfig(),  # noqa: B008 - immutable value here
    from_tags: Names = None,
    from_runs: Names = None,
    against_dataset: bool = True,
    storage: StorageParams = StorageParams(),  # noqa: B008
) -> dict:
    """Make a new tag from the samples a datapool already holds (no decoding)."""
    params = ReselectParams(**locals())
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    started = time.perf_counter()
    stores = connect(params.source or params.output, params.output, params.storage)
    snapshot = load_pool(stores)
    publish_pending_exports(stores, snapshot)  # of a run that died after its commit
    source_url = recorded_source(snapshot.tags, params.source, pool_url=stores.pool.url)
    if source_url != stores.source.url:
        stores = connect(source_url, params.output, params.storage)
    tag = params.tag_name or snapshot.next_tag_name()
    snapshot.check_new_tag(tag)
    summary = RunSummary(run_id=run_id, source=source_url, output=params.output)
    summary.pool_version_before = snapshot.version
    summary.model = snapshot.model.describe() if snapshot.model else ""

    # Selection reads the pool only; the upload below is the first read of the source.
    candidates, selection_, dataset, files = reselect_samples(
        stores,
        snapshot,
        config=params.selection,
        from_tags=params.from_tags,
        from_runs=params.from_runs,
        against_dataset=params.against_dataset,
    )
    summary.candidates = len(candidates)
    summary.record_selection(selection_, dataset_samples=len(dataset))
    summary.tag = tag if selection_.picks else None
    summary.parent_tag = snapshot.latest_tag.name if snapshot.latest_tag else None
    summary.seconds["select"] = round(time.perf_counter() - started, 3)

    exported = None
    if selection_.picks:
        exported = upload_outputs(
            stores, tag, candidates, selection_, files, dataset, summary, run_id=run_id
        )
        summary.outputs = dict(exported.links)
    recorded = {**params.model_dump(mode="json"), "source": source_url, "reselect": True}
    summary.pool_version_after = register_tag(
        stores,
        snapshot,
        tag=snapshot.new_tag(
            name=tag,
            run_id=run_id,
            parameters=recorded,
            counts=summary.counts(),
            selection=selection_,
        ),
        run_id=run_id,
        model=snapshot.model,
        files=[],
        candidates=Candidates.empty(candidates.embedding.shape[1]),
        plan_hash="reselect",
        shard_ids=[],
    )
    if selection_.picks:  # only now: a run that lost the commit never overwrites the winner's
        publish_tag_exports(stores, run_id, tag)
    publish_summary(
        summary,
        pool_url=stores.pool.url,
        candidates=candidates,
        selection=selection_,
        exported=exported,
    )
    return summary.to_dict()

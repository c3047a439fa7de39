"""The reselect flow: a new tag from samples already in the pool, without decoding anything."""

from __future__ import annotations

from prefect import flow

from tasks.finish import end_run, select_and_commit
from tasks.reselect import pool_candidates
from tasks.start import start_from_pool
from winnow.params import StorageParams, TagName, documented_by
from winnow.selection import SelectionConfig
from winnow.training import Names, PoolOutput, PoolSource, ReselectParams


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
    run = start_from_pool(
        params.output,
        params.source,
        params.storage,
        tag_name=params.tag_name,
        parameters={**params.model_dump(mode="json"), "reselect": True},
    )
    # Selection reads the pool only; the upload is the first read of the source.
    pooled = pool_candidates(run.snapshot, from_tags=params.from_tags, from_runs=params.from_runs)
    finished = select_and_commit(
        run,
        None,
        pooled,
        config=params.selection,
        tag_name=params.tag_name,
        against_dataset=params.against_dataset,
    )
    return end_run(run, finished=finished)

"""The end of a tag-making run: select → upload → commit (rebasing) → publish, then the summary.

`select_and_commit` runs the core's ending (`winnow.runs.finish_run`) with each step as a
Prefect task (retries for storage, logs, the UI's task runs); `end_run` collects garbage,
publishes the summary and the artifacts, and returns the summary as the flow's result;
`end_curate` adds a curate run's leak check after it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.artifacts import publish_summary
from tasks.connect import STORAGE_RETRIES
from tasks.discover import load_pool
from tasks.leaks import check_leaks
from tasks.select import select_samples
from tasks.tag import try_register_tag
from tasks.upload import publish_tag_exports, upload_outputs
from winnow import runs
from winnow.embedding import Embedder
from winnow.gc import collect_garbage_if_due
from winnow.media import FrameOptions
from winnow.params import LeakCheck
from winnow.selection import SelectionConfig


def select_and_commit(
    started: runs.Started,
    discovered: runs.Discovered | None,
    embedded: runs.Embedded,
    *,
    config: SelectionConfig,
    tag_name: str | None,
    against_dataset: bool = True,
    frames: FrameOptions | None = None,
    model: Callable[[], Embedder] | None = None,
    device: str = "auto",
) -> runs.Finished:
    """Select among the embedded candidates, upload, commit (rebasing), publish.

    With `discovered` (curate) the candidates are the run's new rows, committed with the tag,
    and a lost race is rebased; without (reselect) they are the pool's, and only the tag is.
    """
    stores, new_rows = started.stores, discovered is not None
    ending = runs.Ending(
        tag_name=tag_name,
        candidates=embedded.candidates,
        files=embedded.files,
        new_rows=new_rows,
        may_rebase=new_rows,
        objects=embedded.objects if new_rows else None,
    )
    attempts = ending.attempts
    staged = [s.shard_id for s in discovered.shards] if discovered else []
    select = partial(
        select_samples,
        stores,
        config=config,
        against_dataset=against_dataset,
        frames=frames,
        model=model,
        device=device,
        files=embedded.files,
    )
    steps = runs.Steps(
        select=select,
        upload=partial(upload_outputs, stores, run_id=started.run_id),
        commit=lambda pending, attempt: try_register_tag(
            stores, pending, started=started, staged=staged, attempt=attempt, attempts=attempts
        ),
        reload=partial(load_pool, stores),
        publish=partial(publish_tag_exports, stores, started.run_id),
    )
    summary = runs.start_summary(started, discovered, embedded)
    return runs.finish_run(started, ending, summary, steps=steps, log=get_run_logger())


@task(name="end-run", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def end_run(
    started: runs.Started,
    discovered: runs.Discovered | None = None,
    finished: runs.Finished | None = None,
    *,
    collect_garbage: bool = False,
) -> dict:
    """Collect garbage (when asked), publish the summary and the artifacts; return the summary."""
    stores = started.stores
    if finished is None:  # discovery found nothing new: no decoding, no tag
        summary = runs.start_summary(started, discovered)
        get_run_logger().info("nothing new in %s: no file decoded, no tag", stores.source.url)
        publish_summary(summary, pool_url=stores.output.url)
        return summary.to_dict()
    if collect_garbage:
        collect_garbage_if_due(stores.pool)  # abandoned staging, lost commits' parts (winnow.gc)
    publish_summary(
        finished.summary,
        pool_url=stores.output.url,
        candidates=finished.candidates,
        selection=finished.picked.selection,
        exported=finished.exported,
    )
    return finished.summary.to_dict()


def end_curate(
    started: runs.Started,
    discovered: runs.Discovered,
    finished: runs.Finished,
    *,
    leak_check: LeakCheck | None,
) -> dict:
    """A curate run's end: `end_run` (garbage collected), then its leak check when asked.

    Raises:
        LeaksFound: From `check_leaks` (after the summary is published).
    """
    summary = end_run(started, discovered, finished, collect_garbage=True)
    if leak_check is not None:
        check_leaks(started, finished, leak_check)
    return summary

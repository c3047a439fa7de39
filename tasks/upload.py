"""Tasks: write the selected frames and the tag's files, and publish them once committed."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import outputs, runs
from winnow.datapool import PoolSnapshot
from winnow.records import Candidates, FileResult
from winnow.stores import Stores
from winnow.summary import RunSummary


@task(name="upload", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def upload_outputs(
    stores: Stores,
    tag: str,
    candidates: Candidates,
    picked: runs.Picked,
    files: list[FileResult],
    summary: RunSummary,
    *,
    run_id: str,
) -> outputs.Exported:
    """Frames as PNG, file lists, samples.csv, Label Studio tasks, report and embedding plot.

    The frames go to the output; the tag's files to the run's staging folder in the pool,
    published under `tags/<tag>/` by `publish_tag_exports` once the tag is committed.
    """
    exported = runs.upload_picks(stores, tag, candidates, picked, files, summary, run_id=run_id)
    get_run_logger().info(
        "uploaded %d samples to %s (report, once the tag is committed: %s)",
        len(exported.filenames),
        stores.output.url,
        stores.output.url_for(exported.keys["report"]),
    )
    return exported


@task(name="publish-exports", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def publish_tag_exports(stores: Stores, run_id: str, tag: str) -> None:
    """Copy the committed tag's staged files to `tags/<tag>/` in the output."""
    if outputs.publish_exports(stores.pool.store, stores.output, run_id, tag):
        get_run_logger().info(
            "published the exports of tag %r (report: %s)",
            tag,
            stores.output.url_for(outputs.tag_keys(tag)["report"]),
        )


def publish_pending(stores: Stores, snapshot: PoolSnapshot) -> list[str]:
    """Finish publishing the exports of committed tags whose run died before it could.

    Returns:
        The tags published.
    """
    done = []
    for tag in outputs.unpublished_exports(stores.pool.store, snapshot.tags):
        if outputs.publish_exports(stores.pool.store, stores.output, tag.run_id, tag.name):
            get_run_logger().warning(
                "tag %r of run %s was committed but its exports were not published (the run "
                "ended first): published them now (report: %s)",
                tag.name,
                tag.run_id,
                stores.output.url_for(outputs.tag_keys(tag.name)["report"]),
            )
            done.append(tag.name)
    return done

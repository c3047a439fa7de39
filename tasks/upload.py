"""Task: write the selected frames and the exports to the output prefix."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import outputs
from winnow.records import Candidates, FileResult, Selection
from winnow.stores import Stores
from winnow.summary import RunSummary


@task(name="upload", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def upload_outputs(
    stores: Stores,
    tag: str,
    candidates: Candidates,
    selection: Selection,
    files: list[FileResult],
    dataset: np.ndarray,
    summary: RunSummary,
) -> outputs.Exported:
    """Frames as PNG, file lists, samples.csv, Label Studio tasks, report and embedding plot."""
    exported = outputs.upload_selection(
        source=stores.source,
        output=stores.output,
        tag=tag,
        candidates=candidates,
        selection=selection,
        files={f.key: f for f in files},
        dataset=dataset,
        summary=summary,
    )
    get_run_logger().info(
        "uploaded %d samples to %s (report: %s)",
        len(exported.filenames),
        stores.output.url,
        stores.output.url_for(exported.keys["report"]),
    )
    return exported

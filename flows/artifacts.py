"""Run artifacts in the Prefect UI: the summary (markdown), a table of the picks, report links."""

from __future__ import annotations

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.logging import get_run_logger

from winnow.outputs import Exported
from winnow.records import Candidates, Selection
from winnow.summary import RunSummary, render_markdown, render_text


def publish_summary(
    summary: RunSummary,
    *,
    candidates: Candidates | None = None,
    selection: Selection | None = None,
    exported: Exported | None = None,
) -> None:
    """Log the summary and create the run's artifacts."""
    get_run_logger().info("run summary: %s", render_text(summary))
    create_markdown_artifact(render_markdown(summary), description="Winnow run summary")
    if selection is not None and candidates is not None and selection.picks:
        rows = [
            {
                "key": str(candidates.key[pick.index]),
                "frame": int(candidates.frame_index[pick.index]),
                "distance_to_dataset": round(pick.distance, 4),
                "reason": pick.reason,
                "thumbnail": exported.urls[i] if exported else "",
            }
            for i, pick in enumerate(selection.picks)
        ]
        create_table_artifact(rows, description=f"Samples selected into tag {summary.tag}")
    if exported is not None:
        for name in ("report", "embedding_plot"):
            if name in exported.links:
                create_link_artifact(
                    exported.links[name], link_text=f"{name} of tag {summary.tag}", description=name
                )

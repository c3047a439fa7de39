"""Run artifacts in the Prefect UI: the summary (markdown), a table of the picks, report links."""

from __future__ import annotations

import hashlib

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.logging import get_run_logger

from winnow.outputs import Exported
from winnow.records import Candidates, Selection
from winnow.summary import RunSummary, render_headline, render_markdown, visible


def artifact_keys(output_url: str) -> dict[str, str]:
    """Stable artifact keys of one output pool: `winnow-<kind>-<10 hex of its URL's sha256>`.

    Every run on a pool publishes new versions of the same keys, so the UI's Artifacts page
    shows each pool's latest summary, picks, report and plot, and their history.
    """
    digest = hashlib.sha256(output_url.rstrip("/").encode()).hexdigest()[:10]
    return {kind: f"winnow-{kind}-{digest}" for kind in ("summary", "picks", "report", "plot")}


def publish_summary(
    summary: RunSummary,
    *,
    pool_url: str,
    candidates: Candidates | None = None,
    selection: Selection | None = None,
    exported: Exported | None = None,
) -> None:
    """Log the summary and create the run's artifacts, keyed by the output pool's URL.

    A run that found nothing new publishes its summary without a key (on its run page only), so
    the pool's latest keyed summary stays the one of its latest tag.
    """
    # One line: the full summary is the markdown artifact below (and what `winnow run` prints).
    get_run_logger().info("run summary: %s", render_headline(summary))
    keys = artifact_keys(pool_url)
    create_markdown_artifact(
        render_markdown(summary),
        key=None if summary.nothing_new else keys["summary"],
        description="Winnow run summary",
    )
    if selection is not None and candidates is not None and selection.picks:
        rows = [
            {
                "key": visible(str(candidates.key[pick.index])),
                "frame": int(candidates.frame_index[pick.index]),
                "distance_to_dataset": round(pick.distance, 4),
                "reason": pick.reason,
                "thumbnail": exported.urls[i] if exported else "",
            }
            for i, pick in enumerate(selection.picks)
        ]
        create_table_artifact(
            rows, key=keys["picks"], description=f"Samples selected into tag {summary.tag}"
        )
    if exported is not None:
        for name, kind in (("report", "report"), ("embedding_plot", "plot")):
            if name in exported.links:
                create_link_artifact(
                    exported.links[name],
                    link_text=f"{name} of tag {summary.tag}",
                    key=keys[kind],
                    description=name,
                )

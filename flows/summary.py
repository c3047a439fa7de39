"""Run summary artifacts: a markdown summary, a table of the picks, links to the report."""

from __future__ import annotations

import math

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.logging import get_run_logger

from winnow.outputs import Exported
from winnow.records import Candidates, RunSummary, Selection


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _md(text: str) -> str:
    """Escape text for a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def summary_markdown(summary: RunSummary) -> str:
    """The run summary as markdown (shown in the Prefect UI)."""
    if summary.nothing_new:
        head = f"## Nothing new\n\nNo new or changed media file in `{summary.source}` "
        head += f"({summary.files_known} files already in the pool). No tag registered."
        return head
    lines = [
        f"## Tag `{summary.tag}`" if summary.tag else "## No tag (nothing selected)",
        "",
        f"Source `{summary.source}` → output `{summary.output}`; "
        f"datapool version {summary.pool_version_before} → {summary.pool_version_after}; "
        f"model {summary.model}.",
        "",
        "| | |",
        "|---|---|",
        f"| files listed | {summary.files_listed} |",
        f"| new or changed | {summary.files_new} |",
        f"| already in the pool | {summary.files_known} |",
        f"| decoded | {summary.files_ok} |",
        f"| corrupt | {summary.files_corrupt} |",
        f"| skipped | {summary.files_skipped} |",
        f"| shards (reused from an interrupted attempt) | {summary.shards} "
        f"({summary.shards_resumed}) |",
        f"| candidates (frames) | {summary.candidates} |",
        f"| duplicates removed | {summary.removed_duplicates} |",
        f"| selected | {summary.selected} (stopped by {summary.stop_reason or 'n/a'}) |",
        f"| coverage radius before → after | {_num(summary.coverage_before)} → "
        f"{_num(summary.coverage_after)} |",
        f"| mean distance of picks to the "
        f"{'dataset' if math.isfinite(summary.coverage_before) else 'nearest other pick (no dataset yet)'}"
        f" | {_num(summary.mean_pick_distance)} "
        f"(random picks: {_num(summary.mean_random_distance)}) |",
    ]
    if summary.outputs:
        lines += [
            "",
            "**Outputs:** " + " · ".join(f"[{k}]({v})" for k, v in summary.outputs.items()),
        ]
    if summary.corrupt:
        lines += ["", "### Corrupt or skipped files", "", "| file | reason |", "|---|---|"]
        lines += [f"| `{_md(k)}` | {_md(reason)} |" for k, reason in summary.corrupt]
    if summary.seconds:
        lines += [
            "",
            "Stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.seconds.items()),
        ]
    return "\n".join(lines)


def publish_summary(
    summary: RunSummary,
    *,
    candidates: Candidates | None = None,
    selection: Selection | None = None,
    exported: Exported | None = None,
) -> None:
    """Log the summary and create the run's artifacts."""
    logger = get_run_logger()
    if summary.nothing_new:
        logger.info("run summary: nothing new (%d files already in the pool)", summary.files_known)
    else:
        logger.info(
            "run summary: %d new files (%d ok, %d corrupt, %d skipped), %d candidates, "
            "%d selected -> tag %s; mean distance to dataset %s (random %s); outputs in %s",
            summary.files_new,
            summary.files_ok,
            summary.files_corrupt,
            summary.files_skipped,
            summary.candidates,
            summary.selected,
            summary.tag,
            _num(summary.mean_pick_distance),
            _num(summary.mean_random_distance),
            summary.output,
        )
    create_markdown_artifact(summary_markdown(summary), description="Winnow run summary")
    if selection is not None and candidates is not None and selection.picks:
        rows = []
        for i, pick in enumerate(selection.picks):
            rows.append(
                {
                    "key": str(candidates.key[pick.index]),
                    "frame": int(candidates.frame_index[pick.index]),
                    "distance_to_dataset": round(pick.distance, 4),
                    "reason": pick.reason,
                    "thumbnail": exported.urls[i] if exported else "",
                }
            )
        create_table_artifact(rows, description=f"Samples selected into tag {summary.tag}")
    if exported is not None:
        for name in ("report", "embedding_plot"):
            if name in exported.links:
                create_link_artifact(
                    exported.links[name], link_text=f"{name} of tag {summary.tag}", description=name
                )

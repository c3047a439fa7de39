"""winnow.summary: one set of rows, rendered the same as text, markdown and HTML."""

from __future__ import annotations

import math
import re

import pytest

from winnow.records import FileResult, Pick, Selection
from winnow.summary import (
    RunSummary,
    fmt_number,
    render_html,
    render_markdown,
    render_text,
    summary_rows,
)


def _summary(**overrides) -> RunSummary:
    summary = RunSummary(run_id="r1", source="s3://b/raw", output="s3://b/out", tag="t1")
    files = [
        FileResult(
            key="a.mp4", fingerprint="1", size_bytes=1, kind="video", status="ok", frames_total=3
        ),
        FileResult(
            key="b|<x>.mp4",
            fingerprint="2",
            size_bytes=1,
            kind="video",
            status="corrupt",
            error="bad | worse",
        ),
    ]
    summary.record_files(files, shards=2, resumed=1)
    picks = (Pick(sample_id="s", index=0, distance=0.5, score=1.0, reason="diversity"),)
    selection = Selection(
        picks=picks,
        n_candidates=3,
        coverage_before=0.9,
        coverage_after=0.4,
        mean_pick_distance=0.5,
        mean_random_distance=0.25,
        stop_reason="n_samples",
    )
    summary.record_selection(selection, dataset_samples=overrides.pop("dataset_samples", 7))
    for k, v in overrides.items():
        setattr(summary, k, v)
    return summary


@pytest.mark.parametrize(
    ("value", "text"), [(None, "n/a"), (math.nan, "n/a"), (math.inf, "∞"), (0.12345, "0.123")]
)
def test_one_number_format(value, text):
    assert fmt_number(value) == text


def test_every_rendering_shows_every_row():
    summary = _summary()
    rows = summary_rows(summary)
    assert {"files listed", "corrupt", "selected"} <= {r.label for r in rows}
    text, markdown, page = render_text(summary), render_markdown(summary), render_html(summary)
    for row in rows:
        assert row.label in text and row.value in text
        assert f"| {row.label} | " in markdown
        assert row.label.replace("→", "→") in page
    assert (
        "0.900 → 0.400" in text and "| coverage radius before → after | 0.900 → 0.400 |" in markdown
    )


def test_the_bookkeeping_counts_files_and_takes_the_selection():
    summary = _summary()
    assert (summary.files_ok, summary.files_corrupt, summary.shards_resumed) == (1, 1, 1)
    assert summary.corrupt == [("b|<x>.mp4", "bad | worse")]
    assert (summary.selected, summary.stop_reason, summary.mean_pick_distance) == (
        1,
        "n_samples",
        0.5,
    )
    assert summary.counts()["selected"] == 1


def test_a_first_run_names_the_nearest_other_pick_not_the_dataset():
    first, later = _summary(dataset_samples=0), _summary(dataset_samples=5)
    for render in (render_text, render_markdown, render_html):
        assert "nearest other pick (no dataset yet)" in render(first)
        assert "picks to the dataset" in render(later)
        assert "nearest other pick" not in render(later)


def test_data_is_escaped_in_markdown_and_html():
    summary = _summary()
    assert re.search(r"\| `b\\\|&lt;x>\.mp4` \| bad \\\| worse \|", render_markdown(summary))
    assert "<x>" not in render_html(summary)


def test_the_dict_round_trips():
    summary = _summary(coverage_before=math.inf)
    again = RunSummary.from_dict(summary.to_dict())
    assert again.corrupt == summary.corrupt and again.selected == summary.selected
    assert math.isnan(again.coverage_before)  # JSON has no infinity: missing comes back as n/a
    assert render_text(again) == render_text(summary).replace("∞", "n/a")

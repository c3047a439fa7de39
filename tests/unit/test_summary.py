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


HISTORY = [("run-0001", math.inf, 0.8), ("run-0002", 0.8, 0.5), ("t<3>", 0.6, 0.2)]


def test_the_history_is_the_pools_tags_then_this_runs():
    from winnow.records import TagRecord

    tags = [
        TagRecord(
            name=n,
            parent=None,
            run_id="r",
            created="",
            parameters="{}",
            counts="{}",
            sample_ids=(),
            coverage_before=b,
            coverage_after=a,
        )  # fmt: skip
        for n, b, a in HISTORY[:2]
    ]
    summary = _summary()
    summary.record_history(tags, tag="t1")
    assert summary.coverage_history == [*HISTORY[:2], ("t1", 0.9, 0.4)]
    summary.record_history(tags, tag=None)  # nothing selected: no point for this run
    assert summary.coverage_history == HISTORY[:2]


def test_the_history_renders_in_markdown_with_na_for_non_finite_values():
    markdown = render_markdown(_summary(coverage_history=HISTORY))
    assert "### Coverage radius over the pool's versions" in markdown
    assert "| `run-0001` | n/a | 0.800 |" in markdown
    assert "| `t&lt;3>` | 0.600 | 0.200 |" in markdown
    assert "`█▄▁` 0.800 → 0.200" in markdown  # after each tag, scaled min..max
    assert "nan" not in markdown.lower().replace("nothing", "") and "∞ |" not in markdown
    assert "Coverage radius over" not in render_markdown(_summary())  # no history, no section


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ([1.0, 0.5, 0.0], "█▅▁"),
        ([0.3, 0.3], "▅▅"),
        ([math.inf, 0.2, math.nan, 0.4], "·▁·█"),
        ([math.nan], "·"),
    ],
)
def test_sparkline(values, line):
    from winnow.summary import sparkline

    assert sparkline(values) == line


def test_the_coverage_chart_is_an_inline_svg_without_non_finite_points():
    from xml.etree import ElementTree

    from winnow.summary import render_coverage_svg

    svg = render_coverage_svg(HISTORY)
    root = ElementTree.fromstring(svg)  # well-formed, tag names escaped
    ns = "{http://www.w3.org/2000/svg}"
    before, after = root.findall(f"{ns}g")
    assert len(after.findall(f"{ns}circle")) == 3
    assert len(before.findall(f"{ns}circle")) == 2  # the first run had no dataset: no point
    assert "t<3>" in [t.text for t in root.iter(f"{ns}text")]
    assert "nan" not in svg and "inf" not in svg and "http" not in svg.replace(ns[1:-1], "")
    assert render_coverage_svg([("a", math.inf, math.nan)]) == ""
    assert ElementTree.fromstring(render_coverage_svg([("only", 0.5, 0.5)]))  # one point


def test_the_history_round_trips_through_json():
    import json

    summary = _summary(coverage_history=HISTORY)
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["coverage_history"][0] == ["run-0001", None, 0.8]
    again = RunSummary.from_dict(data)
    assert again.coverage_history[1:] == HISTORY[1:]
    assert math.isnan(again.coverage_history[0][1])
    assert render_markdown(again) == render_markdown(summary)


def test_the_coverage_radius_delta_is_shown_when_coverage_ran():
    summary = _summary()
    assert "δ" not in render_text(summary)
    summary.delta = 0.4651
    for render in (render_text, render_markdown, render_html):
        assert "coverage ball radius δ" in render(summary) and "0.465" in render(summary)
    assert RunSummary.from_dict(summary.to_dict()).delta == 0.4651


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("new\nline.jpg", "new\\nline.jpg"),
        ("bell\x07.jpg", "bell\\x07.jpg"),
        ("tab\tcr\r", "tab\\tcr\\r"),
        ("csi\x9b.jpg", "csi\\x9b.jpg"),
        ("\u202egpj.exe", "\\u202egpj.exe"),  # a right-to-left override hides the real name
        ("ünï/çödé space.png", "ünï/çödé space.png"),  # printable text stays as it is
    ],
)
def test_visible_escapes_what_a_person_could_not_see(text, shown):
    from winnow.summary import visible

    assert visible(text) == shown


def test_keys_with_control_characters_are_shown_escaped_in_every_rendering():
    summary = _summary()
    summary.corrupt = [("cam/new\nline.mp4", "bad\x07 reason"), ("\u202eevil.jpg", "x")]
    summary.files_ignored, summary.ignored_examples = 1, ["notes\x1b[31m.txt"]
    text = render_text(summary)
    assert "\n  ! cam/new\\nline.mp4: bad\\x07 reason\n" in text  # one line, escaped
    assert "  ! \\u202eevil.jpg: x" in text and "notes\\x1b[31m.txt" in text
    for rendered in (text, render_markdown(summary), render_html(summary)):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", rendered), rendered
        assert "line.mp4" not in rendered.replace("new\\nline.mp4", "")
    assert "notes\\x1b[31m.txt" in render_html(summary)


def test_coverage_before_a_first_tag_reads_the_same_in_the_log_and_the_terminal():
    # The log renders the run's own summary; `winnow run` renders it after a JSON round trip
    # (JSON has no infinity): both must say the same thing.
    summary = _summary(coverage_before=math.inf, coverage_after=0.237, dataset_samples=0)
    again = RunSummary.from_dict(summary.to_dict())
    assert render_text(again) == render_text(summary)
    row = next(r for r in summary_rows(summary) if r.label.startswith("coverage radius"))
    assert row.value == "n/a → 0.237 (no dataset before the run)"
    assert "∞" not in render_text(summary) + render_markdown(summary) + render_html(summary)


def test_a_run_that_decoded_nothing_shows_no_file_counts():
    reselect = _summary(decoded=False, candidates=12)
    labels = [r.label for r in summary_rows(reselect)]
    assert "decoded" not in labels and "files listed" not in labels
    assert "candidates (pool samples)" in labels
    assert "<th>decoded</th>" not in render_html(reselect)
    assert "decoded" in [r.label for r in summary_rows(_summary())]  # a curate run shows them

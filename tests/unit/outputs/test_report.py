"""The HTML report on its own (outputs._report)."""

from __future__ import annotations

from winnow import outputs
from winnow.summary import RunSummary


def test_report_escapes_data_and_refuses_script_links():
    summary = RunSummary(
        run_id="r<1>",
        source="s3://b/raw",
        output="s3://b/out",
        tag="t1",
        selected=1,
        corrupt=[("x</td><script>alert(1)</script>.mp4", "bad & worse")],
        outputs={"report": "javascript:alert(1)"},
    )
    picks = [
        {
            "key": "<img src=x onerror=alert(1)>.jpg",
            "kind": "image",
            "frame_index": 0,
            "distance": float("nan"),
            "reason": "<b>why</b>",
            "url": "javascript:alert(2)",
        }
    ]
    report = outputs.render_report(summary=summary, picks=picks, plot_png=None)
    assert "<script>" not in report and "<img src=x" not in report and "<b>why" not in report
    assert 'href="javascript' not in report
    assert "bad &amp; worse" in report and "r&lt;1&gt;" in report


def test_report_shows_control_characters_escaped():
    summary = RunSummary(
        run_id="r",
        source="s3://b/raw",
        output="s3://b/out",
        tag="t1",
        corrupt=[("new\nline\x07.mp4", "its key holds control characters")],
    )
    report = outputs.render_report(summary=summary, picks=[], plot_png=None)
    assert "<code>new\\nline\\x07.mp4</code>" in report and "\x07" not in report


def test_a_first_tag_reports_its_coverage_once_and_draws_no_lone_dot():
    one = RunSummary(run_id="r", source="s", output="o", tag="run-0001")
    one.coverage_history = [("run-0001", float("inf"), 0.187)]
    report = outputs.render_report(summary=one, picks=[], plot_png=None)
    section = report[report.index("<h2>Coverage over") :]
    section = section[: section.index("<h2>", 4) if "<h2>" in section[4:] else None]
    assert section.count("run-0001") == 1 and "0.187." in section and "<svg" not in section
    two = RunSummary(run_id="r", source="s", output="o", tag="run-0002")
    two.coverage_history = [("run-0001", float("inf"), 0.187), ("run-0002", 0.3, 0.15)]
    report = outputs.render_report(summary=two, picks=[], plot_png=None)
    assert "after <code>run-0002</code>: 0.150" in report and "<svg" in report


def test_the_report_says_how_to_open_its_links():
    s3 = RunSummary(run_id="r", source="s", output="o", tag="t", outputs={"report": "s3://b/o/r"})
    report = outputs.render_report(summary=s3, picks=[], plot_png=None)
    assert "a browser cannot open" in report and "aws s3 cp" in report
    assert "presign_links" in report
    signed = (
        "https://b.s3.amazonaws.com/o/r.html?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Date=20261207T060000Z&X-Amz-Expires=3600&X-Amz-Signature=abc"
    )
    presigned = RunSummary(run_id="r", source="s", output="o", tag="t", outputs={"report": signed})
    report = outputs.render_report(summary=presigned, picks=[], plot_png=None)
    assert "open in a browser until 2026-12-07 07:00 UTC" in report
    local = RunSummary(run_id="r", source="s", output="o", tag="t", outputs={"r": "file:///x"})
    assert outputs.links_note(list(local.outputs.values())) == ""

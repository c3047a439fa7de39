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

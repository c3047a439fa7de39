"""The HTML report with neighbours, rendered in headless Chromium: every image loads, quickly."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from tests.integration.prefect_server import Browser, find_chromium
from winnow import demo, media
from winnow.outputs._frames import _thumbnail_jpeg
from winnow.outputs._report import render_report
from winnow.summary import RunSummary

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    b = Browser(chromium, tmp_path / "chromium")
    try:
        yield b
    finally:
        b.close()


def _thumbs(tmp_path, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        path = tmp_path / f"still{i}.png"
        demo.make_image(path, width=160, height=96, seed=i, scene=i, fmt="PNG")
        out.append(_thumbnail_jpeg(media.load_image(path)))
    return out


def _report(tmp_path, n_picks: int) -> str:
    thumbs = _thumbs(tmp_path, 4)
    picks = []
    for i in range(n_picks):
        neighbours = [
            {
                "key": f"cam/n{i}-{j}.mp4",
                "kind": "video",
                "frame_index": j,
                "distance": 0.1 * j,
                "thumbnail": thumbs[(i + j + 1) % 4],
            }
            for j in range(3)
        ]
        picks.append(
            {
                "key": f"cam/v{i}.mp4",
                "kind": "video",
                "frame_index": i,
                "distance": 0.4,
                "reason": "coverage",
                "thumbnail": thumbs[i % 4],
                "neighbours": neighbours,
                "duplicates": [],
                "represented": 3 + i,
            }
        )
    summary = RunSummary(
        run_id="r1",
        source="s3://b/raw",
        output="s3://b/out",
        tag="t1",
        selected=n_picks,
        dataset_samples=0,
    )
    path = tmp_path / f"report-{n_picks}.html"
    path.write_text(render_report(summary=summary, picks=picks, plot_png=None))
    return path.as_uri()


def _loaded(browser: Browser) -> dict:
    deadline = time.monotonic() + 30
    while browser.evaluate("document.readyState") != "complete":
        assert time.monotonic() < deadline, "the report did not finish loading in 30 s"
        time.sleep(0.1)
    return browser.evaluate(
        "(() => { const imgs = [...document.querySelectorAll('.neighbours img')];"
        " return {neighbours: imgs.length,"
        " broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,"
        " rows: document.querySelectorAll('table tr').length,"
        " ms: performance.getEntriesByType('navigation')[0].duration}; })()"
    )


def test_neighbours_render_as_images_in_chromium(browser, tmp_path):
    browser.open(_report(tmp_path, 6))
    browser.wait_for_text("What each pick stands for", "stands for 3 candidates")
    state = _loaded(browser)
    assert state["neighbours"] == 6 * 3 and state["broken"] == 0
    shot = browser.screenshot(tmp_path / "report.png")
    with Image.open(io.BytesIO(shot.read_bytes())) as im:
        colours = im.convert("RGB").resize((64, 64)).getcolors(64 * 64)
    assert colours is None or len(colours) > 50  # a rendered page, not a blank one


def test_a_report_of_5000_picks_opens_quickly(browser, tmp_path):
    browser.open(_report(tmp_path, 5000))
    browser.wait_for_text("What each pick stands for")
    state = _loaded(browser)
    assert state["rows"] > 5000 and state["broken"] == 0
    assert 0 < state["ms"] < 10_000, state

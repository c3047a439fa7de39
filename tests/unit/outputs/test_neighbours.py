"""What each pick stands for: nearest unpicked candidates, represented counts, exact duplicates."""

from __future__ import annotations

import time

import numpy as np

from winnow.outputs._neighbours import exact_duplicates, nearest_unpicked
from winnow.outputs._report import render_report
from winnow.summary import RunSummary


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_neighbours_are_the_nearest_unpicked_by_brute_force():
    x, picks = _unit(300, 16, 0), np.array([5, 77, 123, 299])
    found = nearest_unpicked(x, picks, k=3)
    unpicked = np.setdiff1d(np.arange(300), picks)
    for pos, p in enumerate(picks):
        d = np.linalg.norm(x[unpicked] - x[p], axis=1)
        order = unpicked[np.argsort(d)[:3]]
        assert list(found.index[pos]) == list(order)
        np.testing.assert_allclose(found.distance[pos], np.sort(d)[:3], rtol=1e-4, atol=1e-5)
    assert not set(found.index.ravel()) & set(picks)  # never a pick


def test_every_candidate_is_represented_by_its_nearest_pick():
    x, picks = _unit(200, 8, 1), np.array([0, 10, 20])
    found = nearest_unpicked(x, picks)
    owner = np.argmin(((x[:, None, :] - x[picks][None]) ** 2).sum(-1), axis=1)
    assert list(found.represented) == list(np.bincount(owner, minlength=3))
    assert found.represented.sum() == 200 and (found.represented >= 1).all()


def test_fewer_unpicked_than_k_are_padded():
    found = nearest_unpicked(_unit(3, 4, 2), np.array([0, 1]), k=3)
    assert list(found.index[0]) == [2, -1, -1] and np.isnan(found.distance[0, 1:]).all()
    assert found.index.shape == (2, 3)


def test_removed_exact_duplicates_map_to_the_pick_they_duplicate():
    hashes = np.array(["a", "b", "a", "c", "a", "b"], dtype=object)
    assert exact_duplicates(hashes, np.array([0, 3])) == {0: [2, 4]}
    assert exact_duplicates(hashes, np.array([5, 2])) == {0: [1], 1: [0, 4]}


def _picks(n: int) -> list[dict]:
    near = [
        {
            "key": "cam/x.mp4",
            "kind": "video",
            "frame_index": 7,
            "pts_seconds": 0.2,
            "distance": 0.125,
            "thumbnail": None,
        }
    ]
    return [
        {
            "key": f"cam/v{i}.mp4",
            "kind": "video",
            "frame_index": i,
            "distance": 0.5,
            "reason": "coverage",
            "neighbours": near * 3,
            "duplicates": near[:1] if i == 0 else [],
            "represented": 4,
        }
        for i in range(n)
    ]


def test_the_report_shows_what_each_pick_stands_for():
    summary = RunSummary(run_id="r", source="s", output="o", tag="t", selected=2)
    html = render_report(summary=summary, picks=_picks(2), plot_png=None)
    assert html.count('class="nb neighbours"') == 2
    assert "stands for 4 candidates, 1 exact duplicates removed" in html
    assert "What each pick stands for" in html and "<code>cam/x.mp4</code> #7 (0.125)" in html


def test_the_report_at_5000_picks_stays_small_and_quick():
    summary = RunSummary(run_id="r", source="s", output="o", tag="t", selected=5000)
    start = time.perf_counter()
    html = render_report(summary=summary, picks=_picks(5000), plot_png=None)
    assert time.perf_counter() - start < 10
    assert html.count("<tr>") > 5000 and len(html.encode()) < 8_000_000

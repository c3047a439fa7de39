"""Clips as units: grouped from shots and windows, stable ids, mean embeddings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from winnow.clips import clip_id_for, clip_units, group_clips
from winnow.records import SHOTS_SCHEMA, Candidates, sample_id_for


def _samples(rows: list[tuple[str, float]], dim: int = 4, seed: int = 0) -> Candidates:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(len(rows), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(rows)
    return Candidates(
        sample_id=np.array([sample_id_for(k, "fp", int(t * 10)) for k, t in rows], dtype=object),
        key=np.array([k for k, _ in rows], dtype=object),
        fingerprint=np.full(n, "fp", dtype=object),
        content_hash=np.array([f"h{i}" for i in range(n)], dtype=object),
        frame_index=np.array([int(t * 10) for _, t in rows], np.int64),
        pts_seconds=np.array([t for _, t in rows], np.float64),
        width=np.full(n, 160, np.int32),
        height=np.full(n, 96, np.int32),
        brightness=np.linspace(0, 1, n, dtype=np.float32),
        contrast=np.zeros(n, np.float32),
        sharpness=np.zeros(n, np.float32),
        embedding=emb.astype(np.float16),
        run_id=np.full(n, "", dtype=object),
    )


def _shots(key: str, bounds: list[tuple[float, float]]) -> pa.Table:
    rows = [
        {
            "key": key,
            "fingerprint": "fp",
            "shot": i,
            "start_s": a,
            "end_s": b,
            "first_frame": int(a * 10),
            "frames": int((b - a) * 10),
        }
        for i, (a, b) in enumerate(bounds)
    ]
    return pa.Table.from_pylist(rows, schema=SHOTS_SCHEMA)


def test_clips_follow_shots_and_cut_long_shots_into_windows():
    times = [0.0, 2.0, 5.5, 6.0, 7.0, 13.0, 12.9]
    samples = _samples([("cam/a.mp4", t) for t in times] + [("still.jpg", 0.0)])
    shots = _shots("cam/a.mp4", [(0.0, 6.0), (6.0, 12.3), (12.3, 17.3)])
    clips = group_clips(samples, shots, clip_seconds=5.0)
    spans = [
        (c.shot, c.start_s, c.end_s, [float(samples.pts_seconds[r]) for r in c.rows]) for c in clips
    ]
    assert spans == [
        (0, 0.0, 5.0, [0.0, 2.0]),
        (0, 5.0, 6.0, [5.5]),
        (1, 6.0, 11.0, [6.0, 7.0]),
        (2, 12.3, 17.3, [12.9, 13.0]),
    ]


def test_a_video_without_shots_is_cut_into_windows_and_images_are_not_clips():
    samples = _samples([("b.mp4", 0.0), ("b.mp4", 9.9), ("b.mp4", 10.0), ("x.png", 0.0)])
    empty = SHOTS_SCHEMA.empty_table()
    clips = group_clips(samples, empty, clip_seconds=10.0)
    assert [(c.start_s, c.end_s, len(c.rows)) for c in clips] == [(0.0, 10.0, 2), (10.0, 20.0, 1)]
    assert all(c.key == "b.mp4" for c in clips)


def test_clip_ids_are_stable_and_units_average_their_frames():
    samples = _samples([("b.mp4", 0.0), ("b.mp4", 1.0), ("b.mp4", 12.0)])
    clips = group_clips(samples, SHOTS_SCHEMA.empty_table(), clip_seconds=10.0)
    again = group_clips(samples.take([2, 1, 0]), SHOTS_SCHEMA.empty_table(), clip_seconds=10.0)
    assert [c.clip_id for c in clips] == [c.clip_id for c in again]
    assert clips[0].clip_id == clip_id_for("b.mp4", "fp", 0.0) != clip_id_for("b.mp4", "fp2", 0.0)
    units = clip_units(samples, clips)
    mean = samples.embedding[[0, 1]].astype(np.float32).mean(0)
    np.testing.assert_allclose(
        units.embedding[0].astype(np.float32), mean / np.linalg.norm(mean), atol=2e-3
    )
    assert list(units.pts_seconds) == [0.0, 10.0]
    assert units.brightness[0] == pytest.approx(samples.brightness[[0, 1]].mean())
    assert units.content_hash[0] != units.content_hash[1]

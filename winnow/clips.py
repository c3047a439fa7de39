"""Clips as units: a shot of a video, or a window of `clip_seconds` inside a longer shot.

A clip's frames are the video's kept frames (candidates or dataset samples) whose timestamp
lies in its time range; its embedding is their mean, re-normalised. Shots come from the shot
table (`records.SHOTS_SCHEMA`: the run's videos and the pool's); a video without shots is one
shot from 0 s. A clip's id is stable: the same file (key and fingerprint) and the same start
give the same id, so the dataset's clips are recognised run after run.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from winnow.records import Candidates, kind_of


def clip_id_for(key: str, fingerprint: str, start_s: float) -> str:
    """Stable id of a clip: a hash of its file's key, fingerprint and start (milliseconds)."""
    text = f"{key}\0{fingerprint}\0clip\0{round(start_s * 1000)}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Clip:
    """One clip of a video and the rows of its frames.

    Attributes:
        clip_id: `clip_id_for` its file and start.
        key: The video's key.
        fingerprint: The video's fingerprint.
        shot: The shot it lies in (0 for a video without shots).
        start_s: Start of its time range, in the video's presentation seconds.
        end_s: End of its time range (exclusive); inf for the last window of a video whose
            length is unknown.
        rows: Rows of its frames in the samples it was grouped from, in time order.
    """

    clip_id: str
    key: str
    fingerprint: str
    shot: int
    start_s: float
    end_s: float
    rows: tuple[int, ...]


def _shot_bounds(shots: pa.Table) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """(key, fingerprint) → (start seconds, end seconds) of its shots, in order."""
    out: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    rows = sorted(
        shots.select(["key", "fingerprint", "start_s", "end_s"]).to_pylist(),
        key=lambda r: (r["key"], r["fingerprint"], r["start_s"]),
    )
    for r in rows:
        starts, ends = out.setdefault((r["key"], r["fingerprint"]), ([], []))
        if starts and starts[-1] == r["start_s"]:
            continue  # the same shot recorded by two processings of one file version
        starts.append(r["start_s"])
        ends.append(r["end_s"])
    return out


def group_clips(samples: Candidates, shots: pa.Table, clip_seconds: float) -> list[Clip]:
    """The clips the video frames of `samples` fall in (images are not clips).

    Args:
        samples: Frames (a run's candidates, or the dataset's samples).
        shots: Shot table rows of their videos (others are ignored); a video with no rows is
            one shot from 0 s.
        clip_seconds: Longest clip: a longer shot is cut into windows from its start.

    Returns:
        The clips holding at least one of the frames, ordered by key, fingerprint and start.
    """
    bounds = _shot_bounds(shots)
    groups: dict[tuple[str, str, int, int], list[int]] = {}
    for row, (key, fp, pts) in enumerate(
        zip(samples.key, samples.fingerprint, samples.pts_seconds, strict=True)
    ):
        if kind_of(str(key)) != "video":
            continue
        starts, _ = bounds.get((key, fp), ([0.0], [math.inf]))
        shot = max(bisect.bisect_right(starts, float(pts) + 1e-9) - 1, 0)
        window = int(math.floor((float(pts) - starts[shot]) / clip_seconds + 1e-9))
        groups.setdefault((key, fp, shot, max(window, 0)), []).append(row)
    clips = []
    for (key, fp, shot, window), rows in sorted(groups.items()):
        starts, ends = bounds.get((key, fp), ([0.0], [math.inf]))
        start = starts[shot] + window * clip_seconds
        end = min(start + clip_seconds, ends[shot])
        rows.sort(key=lambda r: float(samples.pts_seconds[r]))
        clips.append(
            Clip(
                clip_id=clip_id_for(key, fp, start),
                key=key,
                fingerprint=fp,
                shot=shot,
                start_s=start,
                end_s=end,
                rows=tuple(rows),
            )
        )
    return clips


def clip_units(samples: Candidates, clips: list[Clip]) -> Candidates:
    """One row per clip, as `selection.select` takes candidates.

    The embedding is the mean of the clip's frames' embeddings, re-normalised; the numeric
    metadata are their means; `frame_index` is the first frame's, `pts_seconds` the clip's
    start; the content hash combines the frames' (identical clips are exact duplicates).
    """
    if not clips:
        dim = samples.embedding.shape[1] if samples.embedding.ndim == 2 else 0
        return Candidates.empty(dim)
    emb = np.stack([samples.embedding[list(c.rows)].astype(np.float32).mean(0) for c in clips])
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def mean(column: np.ndarray) -> np.ndarray:
        return np.array([column[list(c.rows)].mean() for c in clips], dtype=column.dtype)

    def first(column: np.ndarray) -> np.ndarray:
        return np.array([column[c.rows[0]] for c in clips], dtype=column.dtype)

    hashes = [
        hashlib.blake2b("".join(samples.content_hash[list(c.rows)]).encode(), digest_size=8)
        for c in clips
    ]
    return Candidates(
        sample_id=np.array([c.clip_id for c in clips], dtype=object),
        key=np.array([c.key for c in clips], dtype=object),
        fingerprint=np.array([c.fingerprint for c in clips], dtype=object),
        content_hash=np.array([h.hexdigest() for h in hashes], dtype=object),
        frame_index=first(samples.frame_index),
        pts_seconds=np.array([c.start_s for c in clips], dtype=np.float64),
        width=first(samples.width),
        height=first(samples.height),
        brightness=mean(samples.brightness),
        contrast=mean(samples.contrast),
        sharpness=mean(samples.sharpness),
        embedding=emb.astype(np.float16),
        run_id=np.full(len(clips), "", dtype=object),
    )

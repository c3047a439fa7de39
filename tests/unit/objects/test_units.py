"""`selection.unit: object` in the core: frame herding (the default) and rounds (any strategy)."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.objects._units import frame_probabilities, herd_frames, select_objects
from winnow.records import Candidates, ObjectRows
from winnow.selection import SelectionConfig

DIM = 8


def _frames(n: int) -> Candidates:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Candidates(
        sample_id=np.array([f"f{i}" for i in range(n)], dtype=object),
        key=np.array([f"v{i}.png" for i in range(n)], dtype=object),
        fingerprint=np.full(n, "fp", dtype=object),
        content_hash=np.array([f"h{i}" for i in range(n)], dtype=object),
        frame_index=np.zeros(n, np.int64),
        pts_seconds=np.zeros(n),
        width=np.full(n, 100, np.int32),
        height=np.full(n, 100, np.int32),
        brightness=np.full(n, 0.5, np.float32),
        contrast=np.full(n, 0.2, np.float32),
        sharpness=np.full(n, 10, np.float32),
        embedding=emb.astype(np.float16),
        run_id=np.full(n, "", dtype=object),
    )


def _objects(layout: list[list[int]], centres: np.ndarray, spread: float = 0.02) -> ObjectRows:
    """Objects: frame i holds one object near centres[c] for each c in layout[i]."""
    rng = np.random.default_rng(1)
    rows, emb = [], []
    for f, clusters in enumerate(layout):
        for n, c in enumerate(clusters):
            rows.append(
                {"object_id": f"o{f}-{n}", "sample_id": f"f{f}", "key": f"v{f}.png"}
                | {"fingerprint": "fp", "label": f"c{c}", "frame_index": 0, "pts_seconds": 0.0}
                | {"x": 10.0 * n, "y": 0.0, "w": 10.0, "h": 10.0, "score": 0.9}
                | {"probabilities": [0.5, 0.5] if c == 3 else [0.95, 0.05]}
            )
            v = centres[c] + rng.normal(scale=spread, size=DIM)
            emb.append(v / np.linalg.norm(v))
    return ObjectRows.from_rows(rows).with_embedding(np.array(emb, np.float16))


CENTRES = np.eye(DIM, dtype=np.float32)[:6]
# Frames 0-3 repeat cluster 0 (a parked car); frames 4 and 5 hold clusters 1-2 and 3-4-5.
LAYOUT = [[0, 0], [0], [0, 0, 0], [0], [1, 2], [3, 4, 5]]


def test_frame_herding_labels_the_frames_whose_objects_cover_the_most():
    objects = _objects(LAYOUT, CENTRES)
    result = herd_frames(objects, _frames(6), held=ObjectRows.empty(DIM), budget=3, device="cpu")
    frames = [p.sample_id for p in result.picks]
    assert len(frames) == 3 == len(set(frames))
    # Herding weighs coverage by mass: one frame of the seven parked cars first, then the
    # frame of three new clusters, then the two others; never a second parked-car frame.
    assert frames[0] in {"f0", "f1", "f2", "f3"} and frames[1:] == ["f5", "f4"]
    # every object of a picked frame is listed as picked, with its frame
    assert sorted(o.sample_id for o in result.objects).count("f5") == 3
    assert {o.sample_id for o in result.objects} == set(frames)
    # measures over the objects, as `select` gives them: no dataset, so coverage starts at inf
    assert result.coverage_before == float("inf") and result.coverage_after < 0.1
    assert result.mean_pick_distance >= result.mean_random_distance > 0  # spread, vs random


def test_frame_herding_holds_the_dataset_objects():
    objects = _objects(LAYOUT, CENTRES)
    held = _objects([[0]], CENTRES)  # the dataset holds a parked car already
    result = herd_frames(objects, _frames(6), held=held, budget=1, device="cpu")
    assert result.picks[0].sample_id == "f5"  # not one of the seven parked cars


BALANCE = {"type": "balance", "column": "label", "target": {"c1": 1.0}}


@pytest.mark.parametrize(
    "strategies",
    [["diversity"], [{"type": "uncertainty"}, "diversity"], [BALANCE, "diversity"]],
)
def test_rounds_meet_the_frame_budget_with_any_strategy(strategies):
    objects = _objects(LAYOUT, CENTRES)
    config = SelectionConfig(n_samples=3, unit="object", strategies=strategies)
    result = select_objects(objects, _frames(6), held=ObjectRows.empty(DIM), config=config)
    frames = [p.sample_id for p in result.picks]
    assert len(frames) == 3 == len(set(frames))
    assert {o.sample_id for o in result.objects} <= set(frames)
    assert result.objects  # the objects that brought their frames
    first = strategies[0] if isinstance(strategies[0], dict) else {"type": strategies[0]}
    if first["type"] == "uncertainty":  # cluster 3's frame is the most unsure
        assert frames[0] == "f5"
    if first["type"] == "balance":  # the predicted label asked for
        assert frames[0] == "f4"


def test_default_strategies_at_unit_object_run_frame_herding():
    objects = _objects(LAYOUT, CENTRES)
    config = SelectionConfig(n_samples=2, unit="object")
    result = select_objects(objects, _frames(6), held=ObjectRows.empty(DIM), config=config)
    assert [p.sample_id for p in result.picks][1:] == ["f5"]
    assert result.picks[0].reason.startswith("herding over objects")
    # A parameter form sends the default strategies as values: still the default.
    sent = SelectionConfig.model_validate(config.model_dump(mode="json"))
    again = select_objects(objects, _frames(6), held=ObjectRows.empty(DIM), config=sent)
    assert again.picks[0].reason.startswith("herding over objects")


def test_a_frame_gets_its_objects_probability_vectors():
    objects = _objects(LAYOUT, CENTRES)
    probs = frame_probabilities(_frames(6), objects)
    assert [len(p) for p in probs] == [2, 1, 3, 1, 2, 3]
    assert probs[5][0] == [0.5, 0.5]


def test_rounds_hold_the_dataset_objects():
    objects = _objects(LAYOUT, CENTRES)
    config = SelectionConfig(n_samples=1, unit="object", strategies=["diversity"])
    free = select_objects(objects, _frames(6), held=ObjectRows.empty(DIM), config=config)
    assert free.coverage_before == float("inf")
    # The dataset holds clusters 0-4: the one frame worth labelling is the one with cluster 5.
    held = _objects([[0, 1, 2, 3, 4]], CENTRES)
    result = select_objects(objects, _frames(6), held=held, config=config)
    assert [p.sample_id for p in result.picks] == ["f5"]
    assert result.coverage_before > 0.9 > result.coverage_after


def test_rounds_balance_counts_every_object_of_the_taken_frames():
    # f0 holds a c1 and three parked cars: taking it for its c1 labels three c0 as well, so
    # the next frame is for c1 again (f2), not another parked car (f1, the lower row).
    objects = _objects([[1, 0, 0, 0], [0], [1]], CENTRES)
    balance = {"type": "balance", "column": "label", "target": {"c0": 1.0, "c1": 1.0}}
    config = SelectionConfig(n_samples=2, unit="object", strategies=[balance])
    result = select_objects(objects, _frames(3), held=ObjectRows.empty(DIM), config=config)
    assert [p.sample_id for p in result.picks] == ["f0", "f2"]


def test_rounds_balance_counts_the_dataset_objects_labels():
    objects = _objects(LAYOUT, CENTRES)
    balance = {"type": "balance", "column": "label", "target": {"c0": 1.0, "c1": 2.0}}
    config = SelectionConfig(n_samples=1, unit="object", strategies=[balance])
    free = select_objects(objects, _frames(6), held=ObjectRows.empty(DIM), config=config)
    assert [p.sample_id for p in free.picks] == ["f4"]  # c1 wanted twice as much
    # The dataset already holds three c1 objects: now a parked car is furthest below target.
    held = _objects([[1, 1, 1]], CENTRES)
    result = select_objects(objects, _frames(6), held=held, config=config)
    assert result.picks[0].sample_id in {"f0", "f1", "f2", "f3"}

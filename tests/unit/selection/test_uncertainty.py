"""The uncertainty strategy: active learning from class probabilities, alone or with diversity."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tests.unit.selection.conftest import CPU, make_candidates, unit
from winnow import selection
from winnow.errors import ConfigError
from winnow.selection import SelectionConfig, UncertaintyStrategy

FLOOR = 0.1  # objective = FLOOR + (1 - FLOOR) * uncertainty; no predictions: NONE
NONE = 0.05


def column(values: list) -> np.ndarray:
    """One object per candidate (np.array would make a 2-D array of equal-length lists)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def run(probs: list, *, emb: np.ndarray | None = None, dataset=None, n_samples=None, **strategy):
    emb = unit(len(probs), 8, 0) if emb is None else emb
    data = np.zeros((0, emb.shape[1])) if dataset is None else dataset
    config = SelectionConfig(
        n_samples=n_samples or len(probs),
        strategies=[{"type": "uncertainty", **strategy}],
        predictions="p.parquet",
    )
    return selection.select(
        make_candidates(emb),
        dataset=data,
        config=config,
        columns={"probabilities": column(probs)},
        device=CPU,
    )


def uncertainty_of(score: float) -> float:
    return (score - FLOOR) / (1 - FLOOR)


def entropy(p):
    p = np.asarray(p, float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


VECTORS = [[0.5, 0.5], [1.0, 0.0], [0.7, 0.2, 0.1], [1 / 3] * 3, [0.6], [0.9, 0.1]]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("margin", [1.0, 0.0, 0.5, 1.0, 0.0, 0.2]),
        ("least_confidence", [0.5, 0.0, 0.3, 2 / 3, 0.0, 0.1]),
        (
            "entropy",
            [
                1.0,
                0.0,
                entropy([0.7, 0.2, 0.1]) / math.log(3),
                1.0,
                0.0,
                entropy([0.9, 0.1]) / math.log(2),
            ],
        ),
    ],
)
def test_each_method_scores_known_vectors(method, expected):
    result = run([[v] for v in VECTORS], method=method)
    got = {p.index: uncertainty_of(p.score) for p in result.picks}
    assert got == pytest.approx(dict(enumerate(expected)), abs=1e-9)
    for p in result.picks:
        assert p.reason == f"uncertainty: {method} {expected[p.index]:.3f}"


def test_vectors_are_normalised_and_a_flat_list_is_one_vector():
    result = run([[[2.0, 2.0]], [0.5, 0.5], [[3.0, 1.0]]], method="margin")
    got = {p.index: uncertainty_of(p.score) for p in result.picks}
    assert got == pytest.approx({0: 1.0, 1: 1.0, 2: 0.5})


def test_uncertainty_alone_picks_the_most_uncertain_first():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.5), size=60)
    top2 = -np.sort(-probs, axis=1)[:, :2]
    margin = 1 - (top2[:, 0] - top2[:, 1])
    result = run([[p.tolist()] for p in probs], emb=unit(60, 16, 2), n_samples=10)
    assert result.indices.tolist() == np.argsort(-margin, kind="stable")[:10].tolist()
    assert [uncertainty_of(p.score) for p in result.picks] == pytest.approx(
        np.sort(margin)[::-1][:10]
    )


@pytest.mark.parametrize(
    ("aggregate", "order", "values"),
    [
        ("max", [0, 1, 2], [1.0, 0.8, 0.6]),
        ("mean", [1, 2, 0], [0.8, 0.6, 0.4]),
        ("sum", [2, 0, 1], [1.0, 1.2 / 1.8, 0.8 / 1.8]),  # divided by the largest sum
    ],
)
def test_aggregates_combine_a_frames_vectors(aggregate, order, values):
    probs = [
        [[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]],  # margins 1, 0, 0.2
        [[0.6, 0.4]],  # 0.8
        [[0.7, 0.3]] * 3,  # 0.6 each
    ]
    result = run(probs, method="margin", aggregate=aggregate)
    assert result.indices.tolist() == order
    assert [uncertainty_of(p.score) for p in result.picks] == pytest.approx(values)
    raw = {"max": 1.0, "mean": 0.4, "sum": 1.2}[aggregate]
    reason = next(p.reason for p in result.picks if p.index == 0)
    assert reason == f"uncertainty: margin {raw:.3f} ({aggregate} of 3 vectors)"


def test_candidates_without_usable_vectors_rank_last_but_stay_pickable():
    bad = [None, [], "", math.nan, [[math.nan, 1.0]], [[-0.1, 1.1]], [[0.0, 0.0]], [[math.inf]]]
    probs = [*bad, [[1.0, 0.0]], [[0.6, 0.4], [0.5, math.nan]]]
    result = run(probs, method="margin")
    assert result.indices.tolist()[:2] == [9, 8]
    assert sorted(result.indices.tolist()[2:]) == list(range(8))
    assert uncertainty_of(result.picks[0].score) == pytest.approx(0.8)  # the NaN vector dropped
    assert result.picks[1].score == pytest.approx(FLOOR)  # certain: the floor, above none
    assert all(p.score == pytest.approx(NONE) for p in result.picks[2:])
    assert all(p.reason == "uncertainty: no class probabilities" for p in result.picks[2:])


def test_a_column_without_any_predictions_ranks_every_candidate_alike():
    result = run([None] * 5)
    assert result.indices.tolist() == [0, 1, 2, 3, 4]
    assert all(p.score == pytest.approx(NONE) for p in result.picks)


def test_combined_with_diversity_pulls_the_picks_towards_uncertain_candidates():
    emb, data = unit(120, 16, 3), unit(10, 16, 4)
    uncertain = set(range(0, 120, 12))
    probs = [[[0.5, 0.5]] if i in uncertain else [[0.99, 0.01]] for i in range(120)]
    cands, columns = make_candidates(emb), {"probabilities": column(probs)}

    def pick(strategies):
        config = SelectionConfig(n_samples=10, strategies=strategies, predictions="p.parquet")
        return selection.select(cands, dataset=data, config=config, columns=columns, device=CPU)

    div = pick(["diversity"])
    mixed = pick([{"type": "diversity"}, {"type": "uncertainty", "method": "margin"}])
    assert len(uncertain & set(mixed.indices.tolist())) >= 8
    assert len(uncertain & set(div.indices.tolist())) <= 3
    assert all(
        "diversity: " in p.reason and "uncertainty: margin " in p.reason for p in mixed.picks
    )
    first = mixed.picks[0]
    assert first.score == pytest.approx(first.distance * 1.0, rel=1e-5)  # margin 1: objective 1


def test_sequences_pool_the_vectors_of_their_frames():
    keys, frames = ["a.mp4"] * 4 + ["b.mp4"] * 4, [0, 1, 2, 3] * 2
    probs = [[[0.95, 0.05]]] * 8
    probs[7] = [[0.5, 0.5]]  # b.mp4 frame 3
    config = SelectionConfig(
        n_samples=2,
        selected_sequence_length=2,
        strategies=["uncertainty"],
        predictions="p.parquet",
    )
    result = selection.select(
        make_candidates(unit(8, 8, 5), keys=keys, frames=frames),
        dataset=np.zeros((0, 8)),
        config=config,
        columns={"probabilities": column(probs)},
        device=CPU,
    )
    assert sorted(result.indices.tolist()) == [6, 7]
    assert result.picks[0].reason.endswith("uncertainty: margin 1.000 (max of 2 vectors)")


def test_probabilities_from_a_parquet_or_csv_predictions_file():
    cands = make_candidates(unit(3, 8, 6), keys=["a.jpg", "b.jpg", "c.jpg"])
    table = pa.table(
        {"filename": ["a.jpg", "b.jpg"], "probabilities": [[[0.9, 0.1]], [[0.5, 0.5], [1, 0]]]}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    csv = b'filename,probabilities\na.jpg,"[[0.9, 0.1]]"\nb.jpg,"[[0.5, 0.5], [1, 0]]"\n'
    config = SelectionConfig(n_samples=3, strategies=["uncertainty"], predictions="p.parquet")
    for data, name in ((buf.getvalue(), "p.parquet"), (csv, "p.csv")):
        columns = selection.join_predictions(cands, data, filename=name)
        result = selection.select(
            cands, dataset=np.zeros((0, 8)), config=config, columns=columns, device=CPU
        )
        assert result.indices.tolist() == [1, 0, 2]


def test_config_parses_from_a_dict_and_declares_its_column():
    config = SelectionConfig(
        strategies=[{"type": "Uncertainty", "method": "entropy"}], predictions="p.parquet"
    )
    (strategy,) = config.strategies
    assert isinstance(strategy, UncertaintyStrategy)
    assert (strategy.method, strategy.aggregate, strategy.column) == (
        "entropy",
        "max",
        "probabilities",
    )
    assert config.needs().columns == ("probabilities",)
    assert SelectionConfig(strategies=["uncertainty"], predictions="p.csv").strategies[0].method
    props = UncertaintyStrategy.model_json_schema()["properties"]
    assert all(p.get("description") for p in props.values())


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"method": "variance"}, "least_confidence"),
        ({"aggregate": "median"}, "'mean', 'max' or 'sum'"),
        ({"column": ""}, "at least 1 character"),
        ({"strength": 0}, "non-zero"),
    ],
)
def test_bad_settings_are_rejected(value, match):
    with pytest.raises(ValidationError, match=match):
        SelectionConfig(strategies=[{"type": "uncertainty", **value}], predictions="p.parquet")


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({}, "needs predictions with class probabilities: column 'probabilities' is missing"),
        ({"probabilities": np.full(4, 0.3)}, "holds one number per candidate"),
        ({"probabilities": column([[[math.nan]], "oops", None, 0.2])}, "no usable"),
    ],
)
def test_select_rejects_a_missing_or_unusable_probabilities_column(columns, match):
    config = SelectionConfig(strategies=["diversity", "uncertainty"], predictions="p.parquet")
    with pytest.raises(ConfigError, match=match):
        selection.select(
            make_candidates(unit(4, 8, 7)),
            dataset=np.zeros((0, 8)),
            config=config,
            columns=columns,
            device=CPU,
        )

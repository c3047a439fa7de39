"""The selection parameters: defaults, conveniences, and bad values rejected early."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from winnow.selection import DiversityStrategy, HerdingStrategy, SelectionConfig
from winnow.selection._config import DEFAULT_MAX_CANDIDATES


def test_config_defaults_and_conveniences():
    assert SelectionConfig().n_samples == 50
    assert [s.type for s in SelectionConfig().strategies] == ["herding", "diversity"]
    assert SelectionConfig(proportion=0.1).n_samples is None  # the default yields to other rules
    assert SelectionConfig(proportion=0.1, n_samples=5).n_samples == 5
    config = SelectionConfig(strategies=["Diversity", {"type": "RANDOM", "strength": 0.5}])
    assert [s.type for s in config.strategies] == ["diversity", "random"]
    assert SelectionConfig().strategies is not SelectionConfig().strategies  # no shared default
    full = SelectionConfig(
        proportion=0.5,
        predictions="p.parquet",
        strategies=[
            {"type": "threshold", "column": "brightness", "min": 0.1},
            {"type": "balance", "column": "label", "target": {"a": 1}},
            {"type": "similarity", "query_keys": ["q.jpg"], "strength": -1},
        ],
    )
    assert SelectionConfig.model_validate(full.model_dump(mode="json")) == full
    schema = SelectionConfig.model_json_schema()
    assert schema["properties"]["strategies"]["default"] == [
        HerdingStrategy(max_candidates=DEFAULT_MAX_CANDIDATES).model_dump(mode="json"),
        DiversityStrategy(strength=0.5).model_dump(mode="json"),
    ]

    def described(props):
        return all("description" in p for p in props.values())

    assert described(schema["properties"])
    assert all(described(d["properties"]) for d in schema["$defs"].values())


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"strategies": [{"type": "clustering"}]}, "does not match any of the expected tags"),
        ({"n_samples": -1}, "greater than or equal to 1"),
        ({"n_samples": 0}, "greater than or equal to 1"),
        ({"proportion": 0}, "greater than 0"),
        ({"proportion": 1.5}, "less than or equal to 1"),
        ({"min_distance": 3}, "less than or equal to 2"),
        ({"n_samples": None}, "no stopping rule"),
        ({"strategies": []}, "at least 1 item"),
        (
            {"strategies": [{"type": "threshold", "column": "brightness", "min": 0.8, "max": 0.2}]},
            "min 0.8 is greater than max 0.2",
        ),
        (
            {"strategies": [{"type": "threshold", "column": "brightness"}, "diversity"]},
            "neither min nor max",
        ),
        (
            {"strategies": [{"type": "threshold", "column": "brightness", "min": 0.1}]},
            "only threshold strategies",
        ),
        (
            {
                "strategies": [{"type": "balance", "column": "label", "target": {"a": -1}}],
                "predictions": "p.csv",
            },
            "finite and >= 0",
        ),
        (
            {
                "strategies": [{"type": "balance", "column": "label", "target": {"a": 0}}],
                "predictions": "p.csv",
            },
            "sum to 0",
        ),
        ({"strategies": [{"type": "weights", "column": "uncertainty"}]}, "not a metadata column"),
        ({"strategies": [{"type": "diversity", "strength": 0}]}, "non-zero"),
        ({"strategies": [{"type": "similarity", "query_keys": []}]}, "at least 1 item"),
        ({"strategies": [{"type": "typicality", "k": 0}]}, "greater than or equal to 1"),
        ({"predictions": "preds.xlsx"}, "use a .csv or .parquet"),
        ({"n_samples": 4, "selected_sequence_length": 10}, "not even one sequence"),
        ({"near_duplicate_distance": -0.1}, "greater than 0"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"n_sample": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_fail_before_any_work(value, match):
    with pytest.raises(ValidationError, match=match):
        SelectionConfig.model_validate(value)

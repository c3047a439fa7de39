"""The strategy registry: a new strategy is one model and one scorer, registered in one place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import pytest
from pydantic import Field, ValidationError

from tests.unit.selection.conftest import CPU, make_candidates, unit
from winnow import selection
from winnow.errors import ConfigError
from winnow.params import CurateParams
from winnow.selection import SelectionConfig
from winnow.training import ReselectParams


class LateRowsStrategy(selection.BaseStrategy):
    """Prefer candidates that come later in the run (a toy)."""

    type: Literal["late_rows"] = Field("late_rows", description="late_rows: objective = row + 1.")


class LateRowsScorer(selection.Scorer):
    def objective(self, strategy, units):
        values = units.rows[:, 0] + 1.0
        return selection.Objective(
            strength=strategy.strength,
            values=values,
            describe=lambda i, d: f"late_rows: row {int(values[i]) - 1}",
        )


@pytest.fixture
def late_rows() -> Iterator[None]:
    selection.register(LateRowsStrategy, LateRowsScorer())
    try:
        yield
    finally:
        selection.unregister("late_rows")


def test_a_strategy_registered_in_a_test_is_usable_through_select(late_rows):
    cands = make_candidates(unit(12, 8, 0))
    config = SelectionConfig(n_samples=3, strategies=[{"type": "Late_Rows"}])
    result = selection.select(cands, dataset=unit(2, 8, 1), config=config, device=CPU)
    assert result.indices.tolist() == [11, 10, 9]
    assert [p.reason for p in result.picks] == [f"late_rows: row {i}" for i in (11, 10, 9)]
    mixed = SelectionConfig(n_samples=3, strategies=["diversity", "late_rows"])
    reasons = selection.select(cands, dataset=unit(2, 8, 1), config=mixed, device=CPU).picks
    assert all("diversity: " in p.reason and "late_rows: " in p.reason for p in reasons)
    schema = SelectionConfig.model_json_schema()
    assert "late_rows" in str(schema["properties"]["strategies"]["items"]["discriminator"])


def test_unregistering_restores_the_parameters_and_their_schema():
    before = SelectionConfig.model_json_schema()
    selection.register(LateRowsStrategy, LateRowsScorer())
    selection.unregister("late_rows")
    assert SelectionConfig.model_json_schema() == before
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        SelectionConfig(strategies=["late_rows"])


def test_a_name_is_registered_once(late_rows):
    with pytest.raises(ConfigError, match="already registered"):
        selection.register(LateRowsStrategy, LateRowsScorer())


def test_an_objective_takes_exactly_one_form():
    with pytest.raises(ConfigError, match="exactly one of"):
        selection.Objective(strength=1.0, describe=str, values=np.ones(2), of_distance=True)


def test_a_strategy_registered_after_the_parameters_are_built_is_in_their_form(late_rows):
    # The flows' parameter models embed SelectionConfig; they are built once, at import (this
    # module imports them before any registration), and still accept (and show in their
    # schema, i.e. the UI form) a strategy registered later.
    params = CurateParams(source="raw", selection={"strategies": ["late_rows"]})
    assert params.selection.strategies[0].type == "late_rows"
    assert ReselectParams(output="out", selection={"strategies": ["late_rows"]})
    for model in (CurateParams, ReselectParams):
        defs = model.model_json_schema()["$defs"]
        assert "late_rows" in str(defs["SelectionConfig"]["properties"]["strategies"])
        assert "LateRowsStrategy" in defs


def test_each_strategy_declares_what_it_needs():
    config = SelectionConfig(
        predictions="p.csv",
        strategies=[
            {"type": "threshold", "column": "brightness", "min": 0.1},
            {"type": "weights", "column": "uncertainty"},
            {"type": "similarity", "query_keys": ["q1.jpg", "q2.jpg"]},
            {"type": "similarity", "query_keys": ["q2.jpg"], "strength": 0.5},
            "diversity",
        ],
    )
    assert config.needs() == selection.Needs(
        columns=("brightness", "uncertainty"),
        query_keys=("q1.jpg", "q2.jpg"),
        predictions="p.csv",
    )
    assert SelectionConfig().needs() == selection.Needs()

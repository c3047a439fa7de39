"""The uncertainty strategy: active learning from a model's class probabilities.

Each candidate's value in the probabilities column is empty (None, NaN, an empty list: no
predictions) or its class-probability vectors: one for an object, one per object for a frame,
as a list of lists (a Parquet list column) or the same as JSON text (a CSV cell). A single flat
list counts as one vector. A vector with a non-finite or negative value, or summing to 0, is
ignored; the others are divided by their sum.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from winnow.errors import ConfigError
from winnow.selection._objectives import Inputs, Objective, Units
from winnow.selection._registry import BaseStrategy, Needs, Scorer, register

_FLOOR = 0.1
"""Objective of a candidate whose predictions are all certain (uncertainty 0).

Objective = 0.1 + 0.9 × uncertainty, so it lies in [0.1, 1]: with score = product of
objective^strength, a certain candidate is 10× less preferred than a maximally uncertain one
but never vetoed (a candidate far from the dataset can still win).
"""

_NO_PREDICTIONS = 0.05
"""Objective of a candidate without a usable vector: below every candidate with one."""


class UncertaintyStrategy(BaseStrategy):
    """Prefer candidates whose predicted class probabilities are uncertain (active learning)."""

    type: Literal["uncertainty"] = Field(
        "uncertainty",
        description="uncertainty: objective = 0.1 + 0.9 × the candidate's uncertainty in "
        "[0, 1] (from its class-probability vectors; 0.05 without any), i.e. prefer what the "
        "model is unsure about.",
    )
    method: Literal["least_confidence", "margin", "entropy"] = Field(
        "margin",
        description="Uncertainty of one probability vector p (sorted, p1 >= p2 >= …): "
        "least_confidence 1 - p1; margin 1 - (p1 - p2); entropy -Σ p log p / log K (K "
        "classes), each in [0, 1].",
    )
    aggregate: Literal["mean", "max", "sum"] = Field(
        "max",
        description="How a frame's several vectors (one per object) combine: max (its most "
        "uncertain object), mean, or sum (prefers frames with many uncertain objects; divided "
        "by the largest sum among the candidates to stay in [0, 1]).",
    )
    column: str = Field(
        "probabilities",
        min_length=1,
        description="Column of the predictions holding each candidate's class-probability "
        "vectors: a list of lists (one vector per object), or the same as JSON text in a CSV; "
        "empty for a candidate without predictions.",
        examples=["probabilities"],
    )

    def needs(self) -> Needs:
        """The column it reads."""
        return Needs(columns=(self.column,))


@dataclass(frozen=True)
class _Stats:
    """Per-candidate summary of its vectors' uncertainties (count, sum and max)."""

    count: np.ndarray
    total: np.ndarray
    peak: np.ndarray


class UncertaintyScorer(Scorer):
    """Objective: 0.1 + 0.9 × the unit's aggregated uncertainty (0.05 without predictions)."""

    def check(self, strategy: UncertaintyStrategy, inputs: Inputs) -> None:
        column = strategy.column
        if column not in inputs.table:
            raise ConfigError(
                f"the uncertainty strategy needs predictions with class probabilities: column "
                f"{column!r} is missing; give each candidate its class-probability vectors in "
                f"that column (a predictions file, or select(columns=...)); available columns: "
                f"{', '.join(sorted(inputs.table))}"
            )
        values = np.asarray(inputs.table[column])
        if values.dtype.kind in "fiub":
            raise ConfigError(
                f"uncertainty column {column!r} holds one number per candidate; it needs class-"
                "probability vectors (a list of lists per candidate): use the weights strategy "
                "for a score"
            )
        stats = _row_stats(values, strategy.method)
        present = [i for i, v in enumerate(values.tolist()) if not _is_missing(v)]
        if present and not stats.count.any():
            raise ConfigError(
                f"uncertainty column {column!r} has no usable class-probability vector (e.g. "
                f"{repr(values[present[0]])[:60]} at row {present[0]}); each value must be a list of "
                "vectors of finite probabilities >= 0, e.g. [[0.7, 0.2, 0.1]]"
            )

    def objective(self, strategy: UncertaintyStrategy, units: Units) -> Objective:
        rows = units.rows
        needed, inverse = np.unique(rows, return_inverse=True)
        column = np.asarray(units.table[strategy.column])[needed]
        stats = _row_stats(column, strategy.method)
        inverse = inverse.reshape(rows.shape)
        count = stats.count[inverse].sum(1)
        raw = _aggregate(stats, inverse, count, strategy.aggregate)
        u = raw
        if strategy.aggregate == "sum":
            top = raw.max(initial=0.0)
            u = raw / top if top > 0 else np.zeros_like(raw)
        values = np.where(count > 0, _FLOOR + (1 - _FLOOR) * u, _NO_PREDICTIONS)
        method, how = strategy.method, strategy.aggregate

        def describe(i: int, d: float) -> str:
            if count[i] == 0:
                return "uncertainty: no class probabilities"
            text = f"uncertainty: {method} {raw[i]:.3f}"
            return text if count[i] == 1 else f"{text} ({how} of {count[i]} vectors)"

        return Objective(strength=strategy.strength, values=values, describe=describe)


def _aggregate(stats: _Stats, inverse: np.ndarray, count: np.ndarray, how: str) -> np.ndarray:
    """Each unit's uncertainty from its candidates' stats (units without vectors: 0)."""
    if how == "max":
        return np.maximum(stats.peak[inverse].max(1), 0.0)
    total = stats.total[inverse].sum(1)
    if how == "sum":
        return total
    return total / np.maximum(count, 1)


def _row_stats(values: np.ndarray, method: str) -> _Stats:
    """Count, sum and max of the uncertainties of each candidate's usable vectors."""
    n = len(values)
    count = np.zeros(n, dtype=np.int64)
    total = np.zeros(n)
    peak = np.full(n, -math.inf)
    for i, value in enumerate(values.tolist()):
        u = np.concatenate([_uncertainties(p, method) for p in _vectors(value)] or [[]])
        if len(u):
            count[i], total[i], peak[i] = len(u), u.sum(), u.max()
    return _Stats(count=count, total=total, peak=peak)


def _is_missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    if isinstance(value, str):
        return not value.strip()
    return np.size(value) == 0 if isinstance(value, list | tuple | np.ndarray) else False


def _vectors(value: Any) -> list[np.ndarray]:
    """One candidate's usable vectors, normalised: blocks (n, K) of vectors of one length."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError:
            return []
    if value is None or isinstance(value, int | float | bool):
        return []
    try:
        blocks = [np.asarray(value, dtype=np.float64)]
    except (TypeError, ValueError):  # ragged: vectors of different lengths
        try:
            blocks = [np.asarray(v, dtype=np.float64) for v in value]
        except (TypeError, ValueError):
            return []
    out = []
    for p in blocks:
        if p.ndim == 1:
            p = p.reshape(1, -1)
        if p.ndim != 2 or p.size == 0:
            continue
        sums = p.sum(1)
        ok = np.isfinite(p).all(1) & (p >= 0).all(1) & (sums > 0)
        if ok.any():
            out.append(p[ok] / sums[ok, None])
    return out


def _uncertainties(p: np.ndarray, method: str) -> np.ndarray:
    """Uncertainty in [0, 1] of each row of (n, K) probability vectors that sum to 1."""
    k = p.shape[1]
    if method == "entropy":
        if k == 1:
            return np.zeros(len(p))
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0)
        return np.clip(-plogp.sum(1) / math.log(k), 0.0, 1.0)
    top = -np.sort(-p, axis=1)
    if method == "least_confidence":
        return np.clip(1 - top[:, 0], 0.0, 1.0)
    second = top[:, 1] if k > 1 else np.zeros(len(p))
    return np.clip(1 - (top[:, 0] - second), 0.0, 1.0)


register(UncertaintyStrategy, UncertaintyScorer())

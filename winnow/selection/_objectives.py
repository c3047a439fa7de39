"""Ranking by several strategies: score = product of objective^strength, picked greedily.

Scorers build one `Objective` per ranking strategy; `_Objectives` combines them in log space
and `_greedy_combined` picks the best-scoring unit, one at a time, while `_Cover` keeps every
unit's distance to the dataset and the picks exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from winnow.errors import ConfigError
from winnow.records import Candidates
from winnow.selection._kcenter import _Cover, _loop_threads

if TYPE_CHECKING:
    import torch

_TINY = 1e-12  # floor of objectives before taking logs: a zero objective ranks last, not -inf


@dataclass(frozen=True)
class Inputs:
    """What a run offers its strategies, for `Scorer.check` before any work.

    Attributes:
        table: Column name → one value per candidate: metadata, and the predictions' columns.
        queries: Query embeddings as passed to `select()` (unchecked), or None.
        dim: Width of the candidates' embeddings.
    """

    table: dict[str, Any]
    queries: Any
    dim: int


@dataclass(frozen=True)
class Units:
    """The eligible units a ranking strategy scores: single frames, or whole sequences.

    Attributes:
        rows: (U, L) candidate rows of each unit (L = 1 unless sequences are selected).
        x: (U, D) float32 unit embeddings (a sequence's mean, re-normalised) on the device.
        candidates: The run's candidates (all rows, not only the eligible ones).
        table: Column name → one value per candidate (index it with `rows`).
        queries: Query embeddings as passed to `select()`, or None.
        seed: The run's seed.
        dataset_sqdist: (U,) squared distance of each unit to the nearest dataset sample (inf
            without a dataset), on the device; None where not known.
        n_dataset: Samples in the dataset.
        dataset: (M, D) the dataset's embeddings (host memory), or None.
        budget: Most units the run may pick (None: no count limit).
        dataset_table: Column name → one value per dataset row, where the caller gave the
            dataset's own values (`select(dataset_columns=...)`).
        distance2: Returns the (U,) squared distance of each unit to the nearest dataset
            sample or pick now (negative for picked units), on the device; None where not
            known.
    """

    rows: np.ndarray
    x: torch.Tensor
    candidates: Candidates
    table: dict[str, Any]
    queries: Any
    seed: int
    dataset_sqdist: torch.Tensor | None = None
    n_dataset: int = 0
    dataset: np.ndarray | None = None
    budget: int | None = None
    distance2: Callable[[], torch.Tensor] | None = None
    dataset_table: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Objective:
    """One ranking strategy's objective over the eligible units: higher is preferred.

    It takes exactly one of three forms: `values` fixed for the whole run; `of_distance`, the
    unit's current distance to the dataset and the picks (k-center); or `current`, values
    that change as picks happen (the scorer learns of each pick through `picked`).

    Attributes:
        strength: Exponent of the objective in the combined score.
        describe: (unit, its distance when picked) → this strategy's part of the pick's reason,
            called before `picked` for that unit.
        values: (U,) objective per unit, >= 0 (values below 1e-12 rank as 1e-12).
        of_distance: True if the objective is the unit's current distance.
        current: Returns the (U,) objective per unit now.
        picked: Told the unit just picked.
        done: Returns True when the strategy has nothing left to gain (e.g. coverage: every
            unit covered); selection then stops with that reason `done_reason`.
        done_reason: The stop reason reported when `done` is True.
        delta: The ball radius the strategy used (coverage), reported in the `Selection`.
    """

    strength: float
    describe: Callable[[int, float], str]
    values: np.ndarray | None = None
    of_distance: bool = False
    current: Callable[[], np.ndarray] | None = None
    picked: Callable[[int], None] | None = None
    done: Callable[[], bool] | None = None
    done_reason: str = "covered"
    delta: float | None = None

    def __post_init__(self) -> None:
        forms = (self.values is not None) + self.of_distance + (self.current is not None)
        if forms != 1:
            raise ConfigError(
                "an Objective takes exactly one of values, of_distance=True or current"
            )


class _Objectives:
    """The ranking strategies' objectives over the eligible units, combined in log space."""

    def __init__(self, objectives: list[Objective], n_units: int):
        self.static = np.zeros(n_units)  # sum of strength·log(objective) of fixed objectives
        self.diversity = 0.0  # summed strength of the distance objectives
        self.dynamic: list[Objective] = []
        self.objectives = objectives
        for o in objectives:
            if o.values is not None:
                self.static += o.strength * np.log(np.maximum(o.values, _TINY))
            elif o.of_distance:
                self.diversity += o.strength
            else:
                self.dynamic.append(o)

    def log_scores(self, distance: np.ndarray) -> np.ndarray:
        """log(product of objective^strength) for every unit, given its current distance."""
        out = self.static.copy()
        if self.diversity:
            out += self.diversity * np.log(np.maximum(distance, _TINY))
        for o in self.dynamic:
            out += o.strength * np.log(np.maximum(o.current(), _TINY))
        return out

    def reason(self, i: int, distance: float) -> str:
        return "; ".join(o.describe(i, distance) for o in self.objectives)

    def picked(self, i: int) -> None:
        for o in self.objectives:
            if o.picked is not None:
                o.picked(i)

    def done(self) -> str | None:
        """The stop reason of the first objective that has nothing left to gain, or None."""
        for o in self.objectives:
            if o.done is not None and o.done():
                return o.done_reason
        return None

    @property
    def delta(self) -> float | None:
        """The ball radius of a coverage objective, if any."""
        return next((o.delta for o in self.objectives if o.delta is not None), None)


def _choose(
    cover: _Cover,
    log_scores: Callable[[np.ndarray], np.ndarray],
    *,
    cap: float,
    exclude_below: float | None,
    min_distance: float | None,
) -> tuple[int | None, float, float, str]:
    """One greedy step: the best-scoring unit that may be picked (ties: the lowest).

    Args:
        cover: The distance state (picked units negative).
        log_scores: Current distance of every unit (inf as `cap`) → log score of every unit.
        cap: The distance a unit without any center counts as.
        exclude_below: Units closer than this to a center are never picked.
        min_distance: Units closer than this to a center are not picked.

    Returns:
        (unit, its log score, its squared distance, ""), or (None, -inf, inf, stop reason)
        when no unit may be picked.
    """
    d2 = cover.d2.double().cpu().numpy()
    taken = d2 < 0
    d = np.sqrt(np.maximum(d2, 0))
    d[np.isinf(d)] = cap
    log_score = log_scores(d)
    log_score[taken] = -math.inf
    if exclude_below is not None:
        log_score[d < exclude_below] = -math.inf
    if min_distance is not None:
        log_score[d < min_distance] = -math.inf
    i = int(np.argmax(log_score))  # the first maximum: ties go to the lowest unit
    if log_score[i] == -math.inf:
        blocked = ~taken & (d >= (exclude_below or 0.0))
        stop = "min_distance" if min_distance is not None and blocked.any() else "exhausted"
        return None, -math.inf, math.inf, stop
    return i, float(log_score[i]), float(d2[i]), ""


def _greedy_combined(
    cover: _Cover,
    x: torch.Tensor,
    objectives: _Objectives,
    *,
    budget: int | None,
    budget_reason: str,
    min_distance: float | None,
    exclude_below: float | None,
) -> tuple[list[int], list[float], list[float], list[str], str]:
    """Greedy on score = product of objective^strength; the distance state stays exact."""
    picked: list[int] = []
    dists: list[float] = []
    scores: list[float] = []
    reasons: list[str] = []
    cap = 2.0 * math.sqrt(float(cover.sq.max()))  # no center yet: every distance counts as max
    with _loop_threads(x.device):
        while True:
            if budget is not None and len(picked) >= budget:
                return picked, dists, scores, reasons, budget_reason
            finished = objectives.done()
            if finished is not None:
                return picked, dists, scores, reasons, finished
            i, log_score, d2i, stop = _choose(
                cover,
                objectives.log_scores,
                cap=cap,
                exclude_below=exclude_below,
                min_distance=min_distance,
            )
            if i is None:
                return picked, dists, scores, reasons, stop
            dist = math.sqrt(d2i) if math.isfinite(d2i) else math.inf
            picked.append(i)
            dists.append(dist)
            scores.append(math.exp(log_score))
            reasons.append(objectives.reason(i, dist))
            objectives.picked(i)
            cover.add(x[i])
            cover.take(i)

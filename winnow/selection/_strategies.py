"""The built-in strategies: each one's parameter model, then the scorer registered for it.

A new strategy follows the same pattern, here or in any module imported before the parameters
are parsed: a `BaseStrategy` subclass with a `type` literal, a `Scorer` subclass, and one
`register(Model, Scorer())` call. Models are registered in the order the parameter form lists
them.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from winnow.errors import ConfigError
from winnow.selection._coverage import (
    _auto_delta,
    _BallGraph,
    _delta_sample,
    _log_graph,
    coverage_reason,
    coverage_values,
)
from winnow.selection._distances import _as_matrix, _nearest_sqdist
from winnow.selection._kmeans import _kmeans
from winnow.selection._objectives import Inputs, Objective, Units
from winnow.selection._predictions import _get_column, _labels, _numeric
from winnow.selection._registry import BaseStrategy, Needs, Scorer, register

if TYPE_CHECKING:
    import torch

_TYPICALITY_REFERENCE = 20_000  # neighbours are searched in a seeded sample of this many units


class DiversityStrategy(BaseStrategy):
    """Prefer candidates far from the dataset and from earlier picks (k-center greedy)."""

    type: Literal["diversity"] = Field(
        "diversity",
        description="diversity: objective = distance to the nearest dataset or picked sample.",
    )
    local_search_rounds: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="After the greedy, lower the coverage radius by up to this many swaps of "
        "a pick for a unit near the farthest one (dataset samples stay centers; "
        "deterministic). Only with diversity as the only ranking strategy. Empty: off.",
    )


class DiversityScorer(Scorer):
    """Objective: the unit's current distance to the dataset and the picks."""

    def objective(self, strategy: DiversityStrategy, units: Units) -> Objective:
        return Objective(strength=strategy.strength, describe=_describe_diversity, of_distance=True)


def _describe_diversity(i: int, d: float) -> str:
    return "diversity: first pick" if math.isinf(d) else f"diversity: {d:.3f}"


def farthest_reason(d: float) -> str:
    """The reason of a pick when diversity alone ranks (plain k-center greedy)."""
    if math.isinf(d):
        return "diversity: first pick, nothing to compare with"
    return f"diversity: farthest from the dataset and earlier picks ({d:.3f})"


register(DiversityStrategy, DiversityScorer())


class RandomStrategy(BaseStrategy):
    """Prefer a seeded random order."""

    type: Literal["random"] = Field(
        "random",
        description="random: objective = a uniform number in (0, 1], a seeded hash of the "
        "sample id (stable when other candidates come and go).",
    )


class RandomScorer(Scorer):
    """Objective: a seeded uniform number per sample id."""

    def objective(self, strategy: RandomStrategy, units: Units) -> Objective:
        u = _seeded_uniform(units.candidates.sample_id[units.rows[:, 0]].tolist(), units.seed)
        return Objective(
            strength=strategy.strength, values=u, describe=lambda i, d: f"random: {u[i]:.3f}"
        )


def _seeded_uniform(ids: Sequence[str], seed: int) -> np.ndarray:
    """A uniform number in (0, 1] per id: a keyed hash, so it does not depend on the others."""
    out = np.empty(len(ids))
    for i, sid in enumerate(ids):
        digest = hashlib.blake2b(f"{seed}\0{sid}".encode(), digest_size=8).digest()
        out[i] = ((int.from_bytes(digest, "little") >> 11) + 1) / 2.0**53
    return out


register(RandomStrategy, RandomScorer())


class WeightsStrategy(BaseStrategy):
    """Prefer high values of a column (metadata or a score from the predictions file)."""

    type: Literal["weights"] = Field(
        "weights", description="weights: objective = the value of `column` (higher preferred)."
    )
    column: str = Field(
        ...,
        min_length=1,
        description="Numeric column whose high values are preferred: a metadata column "
        "(sharpness, brightness, contrast, …) or a column of the predictions file. Values "
        "must be >= 0; a missing value counts as 0.",
        examples=["sharpness", "uncertainty"],
    )

    def needs(self) -> Needs:
        """The column it reads."""
        return Needs(columns=(self.column,))


class WeightsScorer(Scorer):
    """Objective: the column's value (a sequence's mean over its frames; missing counts as 0)."""

    def check(self, strategy: WeightsStrategy, inputs: Inputs) -> None:
        column = strategy.column
        w = _numeric(inputs.table, column, f"weights strategy on {column!r}")
        if np.isinf(w).any() or (w < 0).any():
            raise ConfigError(
                f"weights column {column!r} has negative or infinite values (min "
                f"{np.nanmin(w):.4g}); weights must be >= 0: rescale the column or use a "
                "negative strength to prefer low values"
            )

    def objective(self, strategy: WeightsStrategy, units: Units) -> Objective:
        w = _numeric(units.table, strategy.column, "weights")[units.rows]
        counts = (~np.isnan(w)).sum(1)
        w = np.where(counts > 0, np.nansum(w, 1) / np.maximum(counts, 1), 0.0)
        c = strategy.column
        return Objective(
            strength=strategy.strength, values=w, describe=lambda i, d: f"weights: {c} {w[i]:.4g}"
        )


register(WeightsStrategy, WeightsScorer())


class ThresholdStrategy(BaseStrategy):
    """Keep only candidates whose column lies inside bounds (applied before everything else)."""

    type: Literal["threshold"] = Field(
        "threshold",
        description="threshold: drop candidates outside [min, max] on `column` before any "
        "other strategy (strength is ignored).",
    )
    column: str = Field(
        ...,
        min_length=1,
        description="Numeric column to bound: a metadata column (brightness, contrast, "
        "sharpness, width, height, pts_seconds) or a column of the predictions file. A "
        "candidate with a missing value is dropped.",
        examples=["brightness", "sharpness"],
    )
    min: float | None = Field(None, description="Lowest value kept (inclusive); empty: no bound.")
    max: float | None = Field(None, description="Highest value kept (inclusive); empty: no bound.")

    @model_validator(mode="after")
    def _check_bounds(self) -> ThresholdStrategy:
        if self.min is None and self.max is None:
            raise ValueError(f"threshold on {self.column!r} has neither min nor max; give one")
        for name in ("min", "max"):
            bound = getattr(self, name)
            if bound is not None and math.isnan(bound):
                raise ValueError(f"threshold on {self.column!r}: {name} is NaN")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"threshold on {self.column!r}: min {self.min} is greater than max {self.max}; "
                "swap them"
            )
        return self

    def needs(self) -> Needs:
        """The column it reads."""
        return Needs(columns=(self.column,))


class ThresholdScorer(Scorer):
    """A filter: keeps the candidates whose value lies in [min, max] (missing values fail)."""

    filters = True

    def keep(self, strategy: ThresholdStrategy, table: dict) -> np.ndarray:
        v = _numeric(table, strategy.column, f"threshold on {strategy.column!r}")
        with np.errstate(invalid="ignore"):
            inside = ~np.isnan(v)
            if strategy.min is not None:
                inside &= v >= strategy.min
            if strategy.max is not None:
                inside &= v <= strategy.max
        return inside


register(ThresholdStrategy, ThresholdScorer())


class BalanceStrategy(BaseStrategy):
    """Steer the picks' distribution over a categorical column towards target shares."""

    type: Literal["balance"] = Field(
        "balance",
        description="balance: objective = target share of the candidate's class ÷ (picks of "
        "that class + 1), i.e. prefer the class furthest below its target. Where the dataset's "
        "own values are known (unit object: the labels of its objects), they count as picks.",
    )
    column: str = Field(
        ...,
        min_length=1,
        description="Categorical column, e.g. a label from the predictions file (values are "
        "compared as text).",
        examples=["label", "weather"],
    )
    target: dict[str, float] = Field(
        ...,
        min_length=1,
        description='Target share per value of the column, e.g. {"car": 0.5, "bike": 0.5}; '
        "shares are normalised to sum to 1; values not listed (and missing values) get 0.",
    )

    @field_validator("target")
    @classmethod
    def _check_target(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not math.isfinite(v) or v < 0}
        if bad:
            raise ValueError(f"balance target shares must be finite and >= 0, got {bad}")
        if sum(value.values()) <= 0:
            raise ValueError("balance target shares sum to 0; give at least one positive share")
        return value

    def needs(self) -> Needs:
        """The column it reads."""
        return Needs(columns=(self.column,))


class BalanceScorer(Scorer):
    """Objective: target share of the unit's class ÷ (picks of that class so far + 1).

    Picks so far include the dataset's rows when their values of the column were given.
    """

    def check(self, strategy: BalanceStrategy, inputs: Inputs) -> None:
        _get_column(inputs.table, strategy.column, f"balance strategy on {strategy.column!r}")

    def objective(self, strategy: BalanceStrategy, units: Units) -> Objective:
        labels = _unit_labels(_labels(units.table, strategy.column, "balance")[units.rows])
        target = strategy.target
        classes = list(target)
        total = sum(target.values())
        share = np.array([target[c] / total for c in classes] + [0.0])
        other = len(classes)  # code of labels without a target (and of missing ones)
        code = np.array([classes.index(v) if v in target else other for v in labels])
        picked = np.zeros(len(share))
        if strategy.column in units.dataset_table:  # the dataset's own labels were picked before
            held = _labels(units.dataset_table, strategy.column, "balance")
            held_code = [classes.index(v) if v in target else other for v in held]
            np.add.at(picked, np.asarray(held_code, dtype=np.intp), 1)

        def current() -> np.ndarray:
            # D'Hondt-like: the class furthest below its target share wins
            return (share / (picked + 1))[code]

        def on_pick(i: int) -> None:
            picked[code[i]] += 1

        def describe(i: int, d: float) -> str:
            return (
                f"balance: {strategy.column}={labels[i]} ({int(picked[code[i]])} picked "
                f"before, target {share[code[i]]:.0%})"
            )

        return Objective(
            strength=strategy.strength, describe=describe, current=current, picked=on_pick
        )


def _unit_labels(labels: np.ndarray) -> list[str | None]:
    """The most common label of each unit's frames (ties: the smallest; None if all missing)."""
    if labels.shape[1] == 1:
        return labels[:, 0].tolist()
    out: list[str | None] = []
    for row in labels:
        present = [v for v in row if v is not None]
        if not present:
            out.append(None)
            continue
        values, counts = np.unique(np.asarray(present, dtype=str), return_counts=True)
        out.append(str(values[int(np.argmax(counts))]))
    return out


register(BalanceStrategy, BalanceScorer())


class SimilarityStrategy(BaseStrategy):
    """Prefer candidates close to query images or query texts."""

    type: Literal["similarity"] = Field(
        "similarity",
        description="similarity: objective = 1 - d²/4 with d the distance to the nearest "
        "query embedding (the cosine similarity mapped to [0, 1]).",
    )
    query_keys: list[Annotated[str, Field(min_length=1)]] = Field(
        [],
        description="Keys of the query images (relative to the source), embedded with the "
        "run's model.",
        examples=[["queries/night-pedestrian.jpg"]],
    )
    texts: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        [],
        description="Text queries, embedded with the model's text tower (CLIP-family models: "
        "embedding.model 'open_clip:<arch>/<tag>'); a model without one is refused.",
        examples=[["cyclists at night"]],
    )

    @model_validator(mode="after")
    def _check_queries(self) -> SimilarityStrategy:
        if not self.query_keys and not self.texts:
            raise ValueError("the similarity strategy needs at least 1 item in query_keys or texts")
        return self

    def needs(self) -> Needs:
        """The query files and texts (the caller embeds them with the run's model)."""
        return Needs(query_keys=tuple(self.query_keys), texts=tuple(self.texts))


class SimilarityScorer(Scorer):
    """Objective: 1 - d²/4, d the distance to the nearest query embedding."""

    def check(self, strategy: SimilarityStrategy, inputs: Inputs) -> None:
        if inputs.queries is None or np.asarray(inputs.queries).size == 0:
            raise ConfigError(
                "the similarity strategy needs query embeddings: pass queries=(Q, D) (a curate "
                "run embeds the strategy's query_keys)"
            )
        _as_matrix(inputs.queries, "queries", dim=inputs.dim)

    def objective(self, strategy: SimilarityStrategy, units: Units) -> Objective:
        x = units.x
        q = _as_matrix(units.queries, "queries", dim=x.shape[1])
        dq = _nearest_sqdist(x, (x * x).sum(1), q).sqrt().double().cpu().numpy()
        return Objective(
            strength=strategy.strength,
            values=1 - dq * dq / 4,
            describe=lambda i, d: f"similarity: {dq[i]:.3f} from the nearest query",
        )


register(SimilarityStrategy, SimilarityScorer())


class TypicalityStrategy(BaseStrategy):
    """Prefer candidates in dense regions of the run's data."""

    type: Literal["typicality"] = Field(
        "typicality",
        description="typicality: objective = 1 / mean distance to the k nearest other "
        "candidates (TypiClust).",
    )
    k: int = Field(
        20,
        ge=1,
        le=1000,
        description="Neighbours averaged. Above 20,000 candidates (per cluster with "
        "per_cluster) they are searched in a seeded sample of 20,000.",
    )
    per_cluster: bool = Field(
        False,
        description="TypiClust: cluster the candidates (k-means, dataset samples + budget "
        "clusters, at most max_clusters) and pick the most typical candidate (typicality "
        "within its cluster) of the largest cluster that holds no dataset sample or pick yet; "
        "once every cluster holds one, clusters by size ÷ (samples + picks). A cold-start "
        "strategy: with a large dataset most clusters are already held.",
    )
    max_clusters: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Most k-means clusters with per_cluster (TypiClust's reference code uses 500).",
    )


class TypicalityScorer(Scorer):
    """Objective: 1 / mean distance to the k nearest other units (TypiClust)."""

    def objective(self, strategy: TypicalityStrategy, units: Units) -> Objective:
        if strategy.per_cluster:
            return _typiclust_objective(strategy, units)
        m = _knn_mean_distance(units.x, strategy.k, units.seed)
        k = strategy.k
        return Objective(
            strength=strategy.strength,
            values=1 / np.maximum(m, 1e-6),
            describe=lambda i, d: f"typicality: mean {k}-NN distance {m[i]:.3f}",
        )


def _typiclust_objective(strategy: TypicalityStrategy, units: Units) -> Objective:
    """TypiClust: the most typical unit of the largest cluster without a sample or pick yet.

    # Algorithm: k-means on the units into min(dataset samples + budget, max_clusters)
    # clusters (the budget is the run's count limit; without one, 10 % of the units); dataset
    # samples are assigned to their nearest centroid. Objective = (cluster size + t) for a unit
    # of a cluster holding nothing yet, with t in [0, 1) its typicality relative to the most
    # typical unit of its cluster, so the largest free cluster wins and its most typical unit
    # within it; a unit of a held cluster gets (size + t) / ((U + 1)(held + 1)), below every
    # free one.
    """
    import torch

    x, n = units.x, len(units.x)
    budget = units.budget if units.budget is not None else max(1, n // 10)
    n_clusters = max(1, min(units.n_dataset + budget, strategy.max_clusters, n))
    labels, centroids = _kmeans(x, n_clusters, seed=units.seed)
    n_clusters = len(centroids)
    held = np.zeros(n_clusters, dtype=np.int64)
    data = units.dataset
    if data is not None and len(data):
        from winnow.selection._kmeans import _assign

        for s in range(0, len(data), 65536):
            block = torch.from_numpy(np.ascontiguousarray(data[s : s + 65536], np.float32))
            lab, _ = _assign(block.to(x.device), centroids)
            held += np.bincount(lab.cpu().numpy(), minlength=n_clusters)
    size = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    typ = np.zeros(n)
    mean_knn = np.ones(n)
    for c in np.flatnonzero(size):
        members = np.flatnonzero(labels == c)
        m = _knn_mean_distance(x[torch.from_numpy(members).to(x.device)], strategy.k, units.seed)
        mean_knn[members] = m
        t = 1 / np.maximum(m, 1e-6)
        typ[members] = t / t.max() * (1 - 1e-9)
    base = size[labels] + typ

    def current() -> np.ndarray:
        h = held[labels]
        return np.where(h == 0, base, base / ((n + 1.0) * (h + 1.0)))

    def on_pick(i: int) -> None:
        held[labels[i]] += 1

    def describe(i: int, d: float) -> str:
        c = labels[i]
        state = "no sample yet" if held[c] == 0 else f"{held[c]} samples or picks"
        return (
            f"typicality: cluster {c} of {int(size[c])} ({state}), mean {strategy.k}-NN "
            f"distance {mean_knn[i]:.3f}"
        )

    return Objective(strength=strategy.strength, describe=describe, current=current, picked=on_pick)


def _knn_mean_distance(x: torch.Tensor, k: int, seed: int) -> np.ndarray:
    """Mean distance of each row to its k nearest other rows (in a seeded reference sample)."""
    import torch

    n = len(x)
    ref_idx = np.arange(n)
    if n > _TYPICALITY_REFERENCE:
        rng = np.random.default_rng([seed, 2])
        ref_idx = np.sort(rng.choice(n, _TYPICALITY_REFERENCE, replace=False))
    kk = min(k, len(ref_idx) - 1)
    if kk < 1:
        return np.ones(n)
    ref = x[torch.from_numpy(ref_idx).to(x.device)]
    sqr = (ref * ref).sum(1)
    col = np.full(n, -1, dtype=np.int64)
    col[ref_idx] = np.arange(len(ref_idx))
    out = np.empty(n)
    step = 1024
    for s in range(0, n, step):
        xb = x[s : s + step]
        d2 = ((xb * xb).sum(1)[:, None] + sqr[None, :] - 2 * (xb @ ref.T)).clamp_min_(0)
        own = col[s : s + len(xb)]
        r = np.flatnonzero(own >= 0)
        if len(r):
            d2[torch.from_numpy(r).to(x.device), torch.from_numpy(own[r]).to(x.device)] = math.inf
        near = d2.topk(kk, dim=1, largest=False).values.sqrt_()
        out[s : s + len(xb)] = near.mean(1).double().cpu().numpy()
    return out


register(TypicalityStrategy, TypicalityScorer())


class CoverageStrategy(BaseStrategy):
    """Prefer the candidate whose δ-ball covers the most not-yet-covered candidates."""

    type: Literal["coverage"] = Field(
        "coverage",
        description="coverage (ProbCover): the dataset covers its δ-balls first; objective = "
        "number of uncovered candidates within δ of the candidate. Stops when everything is "
        "covered.",
    )
    delta: float | None = Field(
        None,
        gt=0,
        le=2,
        description="Ball radius δ (L2 between unit embeddings, 0..2). Empty: the largest δ "
        "whose balls are at least `purity` pure under k-means pseudo-labels (`delta_clusters` "
        "clusters), measured over the pairs inside the balls.",
    )
    delta_clusters: int = Field(
        10,
        ge=2,
        le=10_000,
        description="Clusters of the k-means pseudo-labels that choose δ; ProbCover uses the "
        "number of classes: set it to yours when known.",
    )
    purity: float = Field(
        0.95,
        gt=0,
        lt=1,
        description="Share of pairs within δ whose pseudo-labels must agree (automatic δ).",
    )
    when_covered: Literal["stop", "farthest"] = Field(
        "stop",
        description="Once every candidate is covered: 'stop' (ProbCover; fewer picks than "
        "asked for), or 'farthest': continue with the candidate farthest from the dataset and "
        "the picks (k-center) until another stopping rule.",
    )
    max_degree: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Most neighbours kept per candidate in the δ-ball graph (its nearest); "
        "bounds memory to about 8 bytes × candidates × max_degree.",
    )
    max_candidates: int | None = Field(
        None,
        ge=1,
        description="Size rule: with coverage as the only ranking strategy and more eligible "
        "candidates than this that the dataset leaves uncovered (at δ), the run ranks by "
        "k-center (diversity) instead: the δ-ball graph costs uncovered × candidates, "
        "k-center candidates × dataset (the default sets it; see README 'Which strategy "
        "when'). Empty: no limit.",
    )


class CoverageScorer(Scorer):
    """Objective: uncovered candidates in the unit's δ-ball (ProbCover)."""

    def graph(self, strategy: CoverageStrategy, units: Units) -> tuple[_BallGraph, float]:
        """The δ-ball graph of the units (the dataset covering first) and its δ."""
        import torch

        x = units.x
        d0 = units.dataset_sqdist
        if d0 is None:
            d0 = torch.full((len(x),), math.inf, device=x.device)
        start = time.perf_counter()
        delta = coverage_delta(strategy, x, units.dataset, units.seed)
        graph = _BallGraph(
            x, d0, delta=delta, max_degree=strategy.max_degree, dataset=units.dataset
        )
        _log_graph(graph, delta, strategy.max_degree, time.perf_counter() - start)
        return graph, delta

    def objective(
        self,
        strategy: CoverageStrategy,
        units: Units,
        graph: tuple[_BallGraph, float] | None = None,
    ) -> Objective:
        """The objective; `graph`: the units' graph and δ when the caller built them."""
        graph, delta = graph if graph is not None else self.graph(strategy, units)
        farthest = strategy.when_covered == "farthest"
        distance2 = units.distance2
        if distance2 is None and farthest:
            from winnow.selection._kcenter import _Cover

            own = _Cover(units.x, graph_d0(units), use_filter=False)

            def distance2():
                return own.d2

            def on_pick(i: int) -> None:
                graph.cover_from(i)
                own.add(units.x[i])
        else:

            def on_pick(i: int) -> None:
                graph.cover_from(i)

        def current() -> np.ndarray:
            return coverage_values(graph, None if distance2 is None else distance2(), farthest)

        def describe(i: int, d: float) -> str:
            return coverage_reason(graph, i, d, delta, farthest)

        return Objective(
            strength=strategy.strength,
            describe=describe,
            current=current,
            picked=on_pick,
            done=None if farthest else (lambda: graph.total == 0),
            done_reason="covered",
            delta=delta,
        )


def graph_d0(units: Units) -> torch.Tensor:
    """The units' squared distances to the dataset (inf without one)."""
    import torch

    if units.dataset_sqdist is not None:
        return units.dataset_sqdist
    return torch.full((len(units.x),), math.inf, device=units.x.device)


def coverage_delta(
    strategy: CoverageStrategy, x: torch.Tensor, dataset: np.ndarray | None, seed: int
) -> float:
    """The strategy's δ: given, or chosen from the units and the dataset (ball purity)."""
    if strategy.delta is not None:
        return strategy.delta
    return _auto_delta(
        _delta_sample(x, dataset, seed),
        clusters=strategy.delta_clusters,
        purity=strategy.purity,
        seed=seed,
    )


register(CoverageStrategy, CoverageScorer())


class HerdingStrategy(BaseStrategy):
    """Prefer the candidate that most raises how well the picks represent the candidates."""

    type: Literal["herding"] = Field(
        "herding",
        description="herding (MaxHerding, kernel coverage): objective = how much the candidate "
        "would raise the sum, over the candidates, of their best Gaussian-kernel similarity to "
        "the dataset and the picks. Prefers the centres of dense regions the dataset and the "
        "picks leave unrepresented; never stops early.",
    )
    bandwidth: float | None = Field(
        None,
        gt=0,
        le=4,
        description="Kernel bandwidth σ (L2 between unit embeddings). Empty: automatic, "
        "`bandwidth_scale` × the mean distance of the candidates to their nearest center after "
        "a k-center greedy of the run's budget (the dataset counts as centers).",
    )
    bandwidth_scale: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Multiplier of the automatic bandwidth (1 measured best over pixels, weak "
        "and trained embeddings in bench/selection_quality.py; 2 is better on weak ones only).",
    )
    max_candidates: int | None = Field(
        None,
        ge=1,
        description="Size rule: with more eligible candidates than this, the run ranks by "
        "k-center (diversity) instead (herding costs candidates × 5,000 per pick at worst; "
        "the default sets it; see README 'Which strategy when'). Empty: no limit.",
    )


class HerdingScorer(Scorer):
    """Objective: the unit's gain in kernel coverage of the candidates (MaxHerding)."""

    def objective(self, strategy: HerdingStrategy, units: Units) -> Objective:
        from winnow.selection._herding import HerdingState, auto_bandwidth

        x, n = units.x, len(units.x)
        d0 = graph_d0(units)
        sigma = strategy.bandwidth
        if sigma is None:
            budget = units.budget if units.budget is not None else max(1, n // 10)
            sigma = auto_bandwidth(x, d0, budget, scale=strategy.bandwidth_scale, seed=units.seed)
        state = HerdingState(x, d0, sigma=sigma, seed=units.seed)
        now: list[np.ndarray] = []

        def current() -> np.ndarray:
            now[:] = [state.values()]
            return now[0]

        def describe(i: int, d: float) -> str:
            gain = now[0][i] if now else state.values()[i]
            return f"herding: represents {gain:.1f} more candidates (σ={sigma:.3f})"

        return Objective(
            strength=strategy.strength,
            describe=describe,
            current=current,
            picked=state.picked,
            delta=None,
        )


register(HerdingStrategy, HerdingScorer())

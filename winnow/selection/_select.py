"""select(): filter the run's candidates, rank them greedily, measure the coverage gained.

The steps, each a function below: validate and prepare the run; filters and deduplication;
the eligible units and their distances to the dataset; the greedy picks (plain k-center for
diversity alone, else the combined objectives of the registered scorers); the run's measures;
the `Selection` record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from winnow.device import resolve_device
from winnow.errors import ConfigError
from winnow.records import Candidates, Pick, Selection
from winnow.selection._config import SelectionConfig
from winnow.selection._coverage import _greedy_coverage
from winnow.selection._distances import (
    _as_matrix,
    _compute,
    _nearest_other,
    _nearest_sqdist,
    _tensor,
)
from winnow.selection._filters import (
    _dataset_members,
    _exact_duplicates,
    _far_from_dataset,
    _passing,
    _sequences,
)
from winnow.selection._kcenter import (
    _TAKEN,
    _Cover,
    _greedy_farthest,
    _local_search,
    _log_phases,
    _pick_distances,
)
from winnow.selection._objectives import Inputs, Units, _greedy_combined, _Objectives
from winnow.selection._predictions import _column_table
from winnow.selection._registry import BaseStrategy, scorer_for
from winnow.selection._strategies import (
    CoverageScorer,
    CoverageStrategy,
    DiversityStrategy,
    HerdingStrategy,
    coverage_delta,
    farthest_reason,
)

if TYPE_CHECKING:
    import torch

_COVERAGE_FAST = True  # coverage alone uses its own greedy (False: the combined one, for tests)


def select(
    candidates: Candidates,
    *,
    dataset: np.ndarray,
    config: SelectionConfig,
    columns: dict[str, np.ndarray] | None = None,
    queries: np.ndarray | None = None,
    device: str = "auto",
    dataset_ids: Sequence[str] | np.ndarray | None = None,
    dataset_columns: dict[str, np.ndarray] | None = None,
) -> Selection:
    """Pick this run's candidates to label, with the dataset as already-chosen centers.

    Order of work: threshold strategies drop candidates outside their bounds; then candidates
    the dataset already holds (same sample id in `dataset_ids`, or a bit-identical embedding)
    and exact duplicates (same content hash; the first is kept) are dropped, and, with
    `near_duplicate_distance`, candidates closer than it to the dataset. The remaining
    (eligible) candidates are picked greedily, one at a time, by score = product over the
    ranking strategies of objective^strength (ties: lowest row); a candidate closer than
    `near_duplicate_distance` to an earlier pick is never picked (this costs nothing, where
    removing near duplicates among all candidates up front would cost O(N²) distances, and it
    leaves the choice within a burst of near-identical frames to the strategies). With
    diversity alone this is exactly `kcenter_greedy`. With `selected_sequence_length`, the
    units picked are whole sequences (mean embedding, re-normalised; columns averaged; balance
    by the most common label) and every frame of a picked sequence becomes a pick.

    Args:
        candidates: The run's embedded frames (float16 unit embeddings, metadata, hashes).
        dataset: (M, D) embeddings of the samples already selected by earlier runs (M may be 0).
        config: Strategies, stopping rules, deduplication.
        columns: Extra per-candidate columns (e.g. from `join_predictions`) for weights,
            threshold and balance strategies; they shadow metadata columns of the same name.
        queries: (Q, D) query embeddings, required by a similarity strategy.
        device: `auto` (CUDA when present), `cpu` or `cuda[:N]`.
        dataset_ids: Sample ids of the dataset's members (optional): candidates with one of
            these ids are never picked. Without it, membership is recognised by identical
            embeddings only.
        dataset_columns: The dataset's own values of strategy columns, one per row of
            `dataset` (e.g. its labels): balance counts them as picked before the run.

    Returns:
        The picks in pick order, each with its distance to the nearest dataset-or-picked sample
        when picked (for sequences: of the sequence's mean embedding) and its reason.
        `n_candidates` counts the eligible frames that were not near duplicates of a pick;
        `n_removed_duplicates` counts dataset members, exact duplicates and near duplicates (of
        the dataset or of a pick); frames of incomplete sequences count in neither. Coverage
        is measured over the eligible frames: `coverage_before` is the largest distance from
        one to the dataset (inf for an empty dataset), `coverage_after` the same with the picks
        added. `mean_pick_distance` is the picks' mean distance to the dataset as it was before
        the run; with an empty dataset it is the mean distance of each pick to the nearest
        other pick (NaN below two picks). `mean_random_distance` is the same measure for a
        seeded random pick of as many eligible units.

    Raises:
        ConfigError: Embeddings of different widths or with non-finite values, a strategy
            column that is missing or not numeric where numbers are needed, negative weights,
            a similarity strategy without queries, or an unusable device.
    """
    config = _as_config(config)
    emb, data = _check_embeddings(candidates, dataset)
    if len(candidates) == 0:
        return _empty(data)
    run = _prepare(candidates, emb, data, config, columns, queries, device, dataset_columns)
    eligible = _eligible(run, dataset_ids)
    with _compute(run.device):
        pool = _pool(run, eligible)
        if len(pool.units) == 0:
            return _empty(
                data,
                removed_duplicates=pool.removed_duplicates,
                removed_thresholds=eligible.removed_thresholds,
            )
        greedy = _pick(run, pool)
        measures = _measure(run, pool, greedy)
    return _selection(run, pool, greedy, measures, removed_thresholds=eligible.removed_thresholds)


@dataclass
class _Run:
    """A checked run: its inputs, the compute device, the strategies split by role."""

    candidates: Candidates
    emb: np.ndarray  # (N, D) candidate embeddings
    data: np.ndarray  # (M, D) dataset embeddings
    config: SelectionConfig
    table: dict[str, Any]  # column name -> one value per candidate
    dataset_table: dict[str, np.ndarray]  # column name -> one value per dataset row
    queries: Any
    device: torch.device
    length: int  # frames per unit (1 unless whole sequences are selected)
    filters: list[BaseStrategy]
    ranking: list[BaseStrategy]


@dataclass
class _Eligible:
    """The units left after filters, dataset members and exact duplicates."""

    members: np.ndarray  # (S, length) candidate rows of every unit
    alive: np.ndarray  # (S,) True for the eligible ones
    removed_thresholds: int  # frames
    removed_duplicates: int  # frames


@dataclass
class _Pool:
    """The units the greedy picks from, with their embeddings and distances to the dataset."""

    units: np.ndarray  # (U, length) candidate rows of every unit
    x: torch.Tensor  # (U, D) unit embeddings
    d0: torch.Tensor  # (U,) squared distance to the nearest dataset sample
    removed_duplicates: int  # frames, now including near duplicates of the dataset
    start: float  # perf_counter when the distances started
    initial_s: float  # seconds the initial distances took


@dataclass
class _Greedy:
    """The picks (unit indices) in pick order, with their distances, scores and reasons."""

    picked: list[int]
    dists: list[float]
    scores: list[float]
    reasons: list[str]
    stop: str
    cover: _Cover
    delta: float | None = None  # the coverage strategy's ball radius


@dataclass
class _Measures:
    """Coverage and spread of the picks, and the near duplicates of picks left unpicked."""

    before: float
    after: float
    mean_pick: float
    mean_random: float
    near_picks: int  # frames


def _as_config(config: SelectionConfig | Any) -> SelectionConfig:
    if isinstance(config, SelectionConfig):
        return config
    return SelectionConfig.model_validate(config)


def _check_embeddings(candidates: Candidates, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' and the dataset's embeddings, checked to be finite and of one width."""
    emb = _as_matrix(candidates.embedding, "candidates.embedding", allow_empty=True)
    dim = emb.shape[1] if len(candidates) else None
    data = _as_matrix(dataset, "dataset", dim=dim, allow_empty=True)
    return emb, data


def _empty(
    data: np.ndarray, *, removed_duplicates: int = 0, removed_thresholds: int = 0
) -> Selection:
    """No picks: nothing is covered without a dataset, everything is with one."""
    cov = math.inf if len(data) == 0 else 0.0
    return Selection(
        picks=(),
        n_candidates=0,
        n_removed_duplicates=removed_duplicates,
        n_removed_thresholds=removed_thresholds,
        coverage_before=cov,
        coverage_after=cov,
    )


def _prepare(
    candidates: Candidates,
    emb: np.ndarray,
    data: np.ndarray,
    config: SelectionConfig,
    columns: dict[str, np.ndarray] | None,
    queries: Any,
    device: str,
    dataset_columns: dict[str, np.ndarray] | None = None,
) -> _Run:
    """Check every strategy's inputs before any work, then resolve the device."""
    filters = [s for s in config.strategies if scorer_for(s).filters]
    ranking = [s for s in config.strategies if not scorer_for(s).filters]
    table = _column_table(candidates, columns)
    inputs = Inputs(table=table, queries=queries, dim=emb.shape[1])
    for strategy in ranking:
        scorer_for(strategy).check(strategy, inputs)
    return _Run(
        candidates=candidates,
        emb=emb,
        data=data,
        config=config,
        table=table,
        dataset_table=_dataset_table(dataset_columns, len(data)),
        queries=queries,
        device=resolve_device(device),
        length=config.selected_sequence_length or 1,
        filters=filters,
        ranking=ranking,
    )


def _dataset_table(columns: dict[str, np.ndarray] | None, rows: int) -> dict[str, np.ndarray]:
    table = {k: np.asarray(v) for k, v in (columns or {}).items()}
    for name, values in table.items():
        if len(values) != rows:
            raise ConfigError(
                f"dataset column {name!r} has {len(values)} values for {rows} dataset rows"
            )
    return table


def _eligible(run: _Run, dataset_ids: Sequence[str] | np.ndarray | None) -> _Eligible:
    """The units left after filters, dataset members and exact duplicates.

    Filters apply per frame: a sequence passes if all its frames do.
    """
    n, length, candidates = len(run.candidates), run.length, run.candidates
    frame_ok = _passing(run.filters, run.table, n)
    if length == 1:
        members = np.arange(n, dtype=np.int64)[:, None]
    else:
        members = _sequences(candidates, length)
    alive = frame_ok[members].all(1)
    removed_thresholds = int((~alive).sum()) * length

    member = _dataset_members(run.emb, run.data, candidates.sample_id, dataset_ids)
    dup = member[members].any(1) & alive
    if run.config.remove_exact_duplicates:
        dup |= _exact_duplicates(members, alive & ~dup, candidates.content_hash)
    alive &= ~dup
    return _Eligible(
        members=members,
        alive=alive,
        removed_thresholds=removed_thresholds,
        removed_duplicates=int(dup.sum()) * length,
    )


def _pool(run: _Run, eligible: _Eligible) -> _Pool:
    """Unit embeddings and their distances to the dataset; near duplicates of it dropped.

    Near duplicates of picks are excluded later, as the picks happen.
    """
    import torch

    members, alive, length = eligible.members, eligible.alive.copy(), run.length
    if length == 1:
        unit_x = run.emb[members[alive, 0]].astype(np.float32)
    else:
        unit_x = run.emb[members[alive]].astype(np.float32).mean(1)
        unit_x /= np.maximum(np.linalg.norm(unit_x, axis=1, keepdims=True), 1e-12)
    start = time.perf_counter()
    xt = _tensor(unit_x, run.device)
    d0 = _nearest_sqdist(xt, (xt * xt).sum(1), run.data)
    initial = time.perf_counter() - start

    removed_duplicates = eligible.removed_duplicates
    near = run.config.near_duplicate_distance
    if near is not None:
        keep = _far_from_dataset(d0, near)
        removed_duplicates += int((~keep).sum()) * length
        alive[np.flatnonzero(alive)[~keep]] = False
        index = torch.from_numpy(np.flatnonzero(keep)).to(run.device)
        xt, d0 = xt[index], d0[index]
    return _Pool(
        units=members[alive],
        x=xt,
        d0=d0,
        removed_duplicates=removed_duplicates,
        start=start,
        initial_s=initial,
    )


def _budget(config: SelectionConfig, n: int, length: int) -> tuple[int | None, str]:
    """Most units to pick, and the stopping rule that sets it."""
    limits = []
    if config.n_samples is not None:
        limits.append((config.n_samples // length, "n_samples"))
    if config.proportion is not None:
        limits.append((max(1, math.floor(config.proportion * n + 0.5)) // length, "proportion"))
    if not limits:
        return None, "exhausted"
    return min(limits, key=lambda item: item[0])


def _pick(run: _Run, pool: _Pool) -> _Greedy:
    """The greedy picks: plain k-center when diversity alone ranks, else combined objectives."""
    import torch

    config = run.config
    near = config.near_duplicate_distance
    budget, budget_reason = _budget(config, len(run.candidates), run.length)
    cover = _Cover(pool.x, pool.d0)
    ranking, too_large = _size_rule(run, pool)
    if too_large or all(isinstance(s, DiversityStrategy) and s.strength > 0 for s in ranking):
        picked, dists, why = _greedy_farthest(
            cover, pool.x, k=budget, min_distance=config.min_distance, exclude_below=near
        )
        stop = budget_reason if why == "n_samples" else why
        rounds = max((getattr(s, "local_search_rounds", None) or 0) for s in ranking)
        if rounds and picked:
            picked, final2, swaps = _local_search(
                pool.x, pool.d0, picked, rounds=rounds, exclude_below=near
            )
            dists = _pick_distances(pool.x, pool.d0, picked)
            cover.d2 = final2.clone()
            cover.d2[torch.tensor(picked, device=pool.x.device)] = _TAKEN
            reasons = [_refined_reason(d, swaps) for d in dists]
        else:
            reasons = [farthest_reason(d) for d in dists]
        if too_large:
            big = next(s for s in ranking if getattr(s, "max_candidates", None) is not None)
            what = "uncovered candidates" if isinstance(big, CoverageStrategy) else "candidates"
            reasons = [
                f"k-center ({big.type} is for <= {big.max_candidates:,} {what}): {r}"
                for r in reasons
            ]
        scores = list(dists)
        delta = None
    else:
        units = Units(
            rows=pool.units,
            x=pool.x,
            candidates=run.candidates,
            table=run.table,
            queries=run.queries,
            seed=config.seed,
            dataset_table=run.dataset_table,
            dataset_sqdist=pool.d0,
            n_dataset=len(run.data),
            dataset=run.data,
            budget=budget,
            distance2=lambda: cover.d2,
        )
        only = ranking[0] if len(ranking) == 1 else None
        scorer = scorer_for(only) if only is not None else None
        graph = None
        if isinstance(only, CoverageStrategy) and type(scorer) is CoverageScorer:
            graph, delta = scorer.graph(only, units)
        if _COVERAGE_FAST and graph is not None and only.strength > 0 and not graph.sparse:
            # coverage alone: its own greedy (counts kept incrementally), same picks
            picked, dists, scores, reasons, stop = _greedy_coverage(
                cover,
                pool.x,
                graph,
                strength=only.strength,
                delta=delta,
                farthest=only.when_covered == "farthest",
                budget=budget,
                budget_reason=budget_reason,
                min_distance=config.min_distance,
                exclude_below=near,
            )
        else:
            if graph is not None:  # coverage alone, its graph already built
                built = [scorer.objective(only, units, graph=(graph, delta))]
            else:
                built = [scorer_for(s).objective(s, units) for s in ranking]
            objectives = _Objectives(built, len(pool.units))
            picked, dists, scores, reasons, stop = _greedy_combined(
                cover,
                pool.x,
                objectives,
                budget=budget,
                budget_reason=budget_reason,
                min_distance=config.min_distance,
                exclude_below=near,
            )
            delta = objectives.delta
    greedy_s = time.perf_counter() - pool.start - pool.initial_s
    _log_phases(cover, len(run.data), pool.initial_s, greedy_s)
    return _Greedy(picked, dists, scores, reasons, stop, cover, delta)


def _size_rule(run: _Run, pool: _Pool) -> tuple[list[BaseStrategy], bool]:
    """The ranking to run, and whether it is over its size limit (then k-center runs instead).

    Herding (any ranking that holds it): its `max_candidates` is on the eligible units.
    Coverage alone: on the units the dataset leaves uncovered at δ, as the graph costs them ×
    all units; δ is resolved here only when the rule needs it (more units than the limit), and
    then passed on in the ranking, so it is chosen once.
    """
    ranking = run.ranking
    for s in ranking:
        if isinstance(s, HerdingStrategy) and (s.max_candidates or math.inf) < len(pool.units):
            return ranking, True
    only = ranking[0]
    if len(ranking) != 1 or not isinstance(only, CoverageStrategy) or only.strength <= 0:
        return ranking, False
    limit = only.max_candidates
    if limit is None or len(pool.units) <= limit:
        return ranking, False
    delta = coverage_delta(only, pool.x, run.data, run.config.seed)
    uncovered = int((pool.d0 > delta * delta).sum())
    return [only.model_copy(update={"delta": delta})], uncovered > limit


def _refined_reason(d: float, swaps: int) -> str:
    if math.isinf(d):
        return f"diversity: k-center + local search ({swaps} swaps), first pick"
    return (
        f"diversity: k-center + local search ({swaps} swaps), {d:.3f} from the dataset and "
        "earlier picks"
    )


def _measure(run: _Run, pool: _Pool, greedy: _Greedy) -> _Measures:
    """The run's measures over the eligible frames.

    Coverage radius before and after the picks, and the picks' spread next to a seeded random
    pick of as many units.
    """
    length, data, emb, dev = run.length, run.data, run.emb, run.device
    near = run.config.near_duplicate_distance
    units, picked = pool.units, greedy.picked
    frames = units.ravel()
    final2 = greedy.cover.d2.double().cpu().numpy()
    untaken = final2 >= 0
    final2 = np.maximum(final2, 0)
    near_picks = 0  # near duplicates of picks: excluded as the picks happened
    if near is not None:
        near_picks = int((untaken & (np.sqrt(final2) < near)).sum()) * length
    d0_units = pool.d0.sqrt().double().cpu().numpy()
    if length == 1:
        d0_frames = d0_units
        after = float(np.sqrt(final2.max())) if (len(data) or picked) else math.inf
    else:
        fx = _tensor(emb[frames], dev)
        fsq = (fx * fx).sum(1)
        d0_frames = _nearest_sqdist(fx, fsq, data).sqrt().double().cpu().numpy()
        after = math.inf
        if picked:
            pick_rows = units[picked].ravel()
            dp = _nearest_sqdist(fx, fsq, emb[pick_rows]).sqrt().double().cpu().numpy()
            after = float(np.minimum(d0_frames, dp).max())
        elif len(data):
            after = float(d0_frames.max())
    before = float(d0_frames.max()) if len(data) else math.inf

    def spread(chosen: list[int] | np.ndarray) -> float:
        positions = (
            np.asarray(chosen, dtype=np.int64)[:, None] * length + np.arange(length)
        ).ravel()
        if len(data):
            return float(d0_frames[positions].mean()) if len(positions) else math.nan
        if len(positions) < 2:
            return math.nan
        return float(_nearest_other(_tensor(emb[frames[positions]], dev)).mean())

    rng = np.random.default_rng([run.config.seed, 1])
    baseline = rng.choice(len(units), size=len(picked), replace=False) if picked else []
    return _Measures(
        before=before,
        after=after,
        mean_pick=spread(picked),
        mean_random=spread(baseline),
        near_picks=near_picks,
    )


def _selection(
    run: _Run, pool: _Pool, greedy: _Greedy, measures: _Measures, *, removed_thresholds: int
) -> Selection:
    """The record: one `Pick` per frame of every picked unit, and the run's counts."""
    candidates, length = run.candidates, run.length
    picks = []
    for u, d, score, reason in zip(
        greedy.picked, greedy.dists, greedy.scores, greedy.reasons, strict=True
    ):
        rows = pool.units[u]
        if length > 1:
            fi = candidates.frame_index[rows]
            reason = f"sequence {candidates.key[rows[0]]} frames {fi[0]}-{fi[-1]}: {reason}"
        for r in rows:
            picks.append(
                Pick(
                    sample_id=str(candidates.sample_id[r]),
                    index=int(r),
                    distance=float(d),
                    score=float(score),
                    reason=reason,
                )
            )
    return Selection(
        picks=tuple(picks),
        n_candidates=int(pool.units.size) - measures.near_picks,
        n_removed_duplicates=pool.removed_duplicates + measures.near_picks,
        n_removed_thresholds=removed_thresholds,
        coverage_before=measures.before,
        coverage_after=measures.after,
        mean_pick_distance=measures.mean_pick,
        mean_random_distance=measures.mean_random,
        stop_reason=greedy.stop,
        delta=greedy.delta,
    )

"""Selection: which of this run's candidates are worth labelling, and why.

The run's candidates are filtered (metadata thresholds, exact and near duplicates, samples the
dataset already holds), then picked one at a time by the product of the strategies' objectives,
each raised to its strength, as in Lightly Worker's selection. The distance of every candidate
to the nearest dataset-or-picked sample is kept current throughout, so every pick records how
far it was from what the dataset already covered, and the run reports its coverage radius
before and after.

Distances are Euclidean; embeddings are L2-normalised, so they lie in [0, 2]. The heavy work is
done in torch (CUDA when present): distances to the dataset as tiled matrix products (exact,
O(N) memory), and the greedy loop with a float16 filter whose error bound sends every row the
new center might move to an exact float32 recomputation, so picks equal a plain float32
greedy. `torch` is imported lazily: loading the parameter models must stay cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from winnow.errors import ConfigError
from winnow.records import META_COLUMNS, STRING_COLUMNS, Candidates, Pick, Selection

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_ROWS = 4096
"""Candidate rows per tile of the distance computations (tiles are 4,096 × 8,192 floats)."""

_BLOCK_COLS = 8192  # centers per tile
_TAKEN = -1.0  # squared distance marking a picked row (real squared distances are >= 0)
_TINY = 1e-12  # floor of objectives before taking logs: a zero objective ranks last, not -inf
_TYPICALITY_REFERENCE = 20_000  # neighbours are searched in a seeded sample of this many units
_FILTER_MIN_ROWS = 2048  # below this the float16 filter is not worth its bookkeeping

KNOWN_COLUMNS = tuple(META_COLUMNS) + STRING_COLUMNS
"""Per-candidate columns every run has (metadata from decoding); predictions add more."""


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strength: float = Field(
        1.0,
        description="Exponent of this strategy's objective in the combined score (score = "
        "product of objective^strength over the strategies): larger gives it more say; a "
        "negative strength inverts its preference.",
    )

    @field_validator("strength")
    @classmethod
    def _check_strength(cls, value: float) -> float:
        if not math.isfinite(value) or value == 0:
            raise ValueError(
                f"strength {value!r} must be a finite non-zero number (remove the strategy to "
                "turn it off)"
            )
        return value


class DiversityStrategy(_Strategy):
    """Prefer candidates far from the dataset and from earlier picks (k-center greedy)."""

    type: Literal["diversity"] = Field(
        "diversity",
        description="diversity: objective = distance to the nearest dataset or picked sample.",
    )


class RandomStrategy(_Strategy):
    """Prefer a seeded random order."""

    type: Literal["random"] = Field(
        "random",
        description="random: objective = a uniform number in (0, 1], a seeded hash of the "
        "sample id (stable when other candidates come and go).",
    )


class WeightsStrategy(_Strategy):
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


class ThresholdStrategy(_Strategy):
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


class BalanceStrategy(_Strategy):
    """Steer the picks' distribution over a categorical column towards target shares."""

    type: Literal["balance"] = Field(
        "balance",
        description="balance: objective = target share of the candidate's class ÷ (picks of "
        "that class + 1), i.e. prefer the class furthest below its target.",
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


class SimilarityStrategy(_Strategy):
    """Prefer candidates close to query images."""

    type: Literal["similarity"] = Field(
        "similarity",
        description="similarity: objective = 1 - d²/4 with d the distance to the nearest "
        "query embedding (the cosine similarity mapped to [0, 1]).",
    )
    query_keys: list[Annotated[str, Field(min_length=1)]] = Field(
        ...,
        min_length=1,
        description="Keys of the query images (relative to the source), embedded with the "
        "run's model.",
        examples=[["queries/night-pedestrian.jpg"]],
    )


class TypicalityStrategy(_Strategy):
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
        description="Neighbours averaged. Above 20,000 candidates they are searched in a "
        "seeded sample of 20,000.",
    )


Strategy = Annotated[
    DiversityStrategy
    | RandomStrategy
    | WeightsStrategy
    | ThresholdStrategy
    | BalanceStrategy
    | SimilarityStrategy
    | TypicalityStrategy,
    Field(discriminator="type"),
]

_COLUMN_STRATEGIES = (WeightsStrategy, ThresholdStrategy, BalanceStrategy)


class SelectionConfig(BaseModel):
    """What to pick from a run's candidates: strategies, stopping rules, deduplication."""

    model_config = ConfigDict(extra="forbid", title="Selection")

    n_samples: int | None = Field(
        50,
        ge=1,
        description="Stop after this many picks (frames). Defaults to 50 only when neither "
        "proportion nor min_distance is given; when several stopping rules are set, the first "
        "one reached stops.",
    )
    proportion: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Stop after this share (0, 1] of the run's candidates (rounded, at least 1).",
    )
    min_distance: float | None = Field(
        None,
        gt=0,
        le=2,
        description="Stop when no remaining candidate is at least this far (L2 between unit "
        "embeddings, 0..2) from the dataset and the picks so far.",
    )
    strategies: list[Strategy] = Field(
        [DiversityStrategy()],
        min_length=1,
        description="Ordered strategies, as in Lightly Worker: thresholds filter first; the "
        "others are combined greedily with score = product of objective^strength. A plain "
        'name ("diversity", "random", "typicality") is accepted for strategies without '
        "required settings.",
    )
    seed: int = Field(
        0, ge=0, description="Seed of every random choice (random strategy, baselines, samples)."
    )
    remove_exact_duplicates: bool = Field(
        True,
        description="Drop candidates whose decoded pixels are identical (same content hash) to "
        "an earlier candidate; the first one is kept.",
    )
    near_duplicate_distance: float | None = Field(
        None,
        gt=0,
        le=2,
        description="Never pick a candidate closer than this to a dataset sample or to an "
        "earlier pick (L2 between unit embeddings, 0..2); e.g. 0.05 for near-identical "
        "frames. Empty: off.",
    )
    selected_sequence_length: int | None = Field(
        None,
        ge=1,
        description="Select whole sequences of this many consecutive sampled frames of a video "
        "(embeddings averaged per sequence); n_samples and proportion then count frames, "
        "rounded down to whole sequences. Incomplete tails and single images are not eligible.",
    )
    predictions: str | None = Field(
        None,
        min_length=1,
        description="CSV or Parquet file (key relative to the source, or a URL) with a "
        "`filename` column (and optionally `frame_index`) whose other columns (scores, labels) "
        "can be used by weights, threshold and balance strategies.",
        examples=["predictions/labels.csv"],
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        others = data.get("proportion") is not None or data.get("min_distance") is not None
        if "n_samples" not in data and others:
            data["n_samples"] = None
        return data

    @field_validator("strategies", mode="before")
    @classmethod
    def _names_to_strategies(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                item = {"type": item.strip().lower()}
            elif isinstance(item, dict) and isinstance(item.get("type"), str):
                item = {**item, "type": item["type"].strip().lower()}
            out.append(item)
        return out

    @model_validator(mode="after")
    def _check(self) -> SelectionConfig:
        if self.n_samples is None and self.proportion is None and self.min_distance is None:
            raise ValueError(
                "no stopping rule: set n_samples, proportion or min_distance (or several)"
            )
        if not any(not isinstance(s, ThresholdStrategy) for s in self.strategies):
            raise ValueError(
                "only threshold strategies given: thresholds filter, they do not rank; add "
                "diversity, random, weights, balance, similarity or typicality"
            )
        if self.predictions is None:
            for s in self.strategies:
                if isinstance(s, _COLUMN_STRATEGIES) and s.column not in KNOWN_COLUMNS:
                    raise ValueError(
                        f"{s.type} strategy uses column {s.column!r}, which is not a metadata "
                        f"column ({', '.join(KNOWN_COLUMNS)}); set `predictions` to a CSV/"
                        "Parquet file that has it, or fix the name"
                    )
        else:
            _predictions_format(self.predictions, error=ValueError)
        length = self.selected_sequence_length
        if length and self.n_samples is not None and self.n_samples < length:
            raise ValueError(
                f"n_samples {self.n_samples} is smaller than selected_sequence_length {length}: "
                "n_samples counts frames, so not even one sequence would fit"
            )
        return self


def _predictions_format(name: str, *, error: type[Exception] = ConfigError) -> str:
    path = name.split("?", 1)[0].split("#", 1)[0].lower()
    if path.endswith(".csv"):
        return "csv"
    if path.endswith((".parquet", ".pq")):
        return "parquet"
    raise error(f"predictions {name!r}: use a .csv or .parquet file (by extension)")


# ----------------------------------------------------------------------------------------------
# Distances: tiled, exact, O(N) memory
# ----------------------------------------------------------------------------------------------


def _resolve_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available here; use 'auto' or 'cpu'")
    return dev


@contextlib.contextmanager
def _compute(device: torch.device) -> Iterator[None]:
    """Use every core the process may run on and exact float32 matmuls (no TF32)."""
    import torch

    threads = torch.get_num_threads()
    try:
        want = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        want = os.cpu_count() or threads
    precision = torch.get_float32_matmul_precision()
    if device.type == "cpu" and want != threads:
        torch.set_num_threads(want)
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_float32_matmul_precision(precision)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _as_matrix(
    a: Any, name: str, *, dim: int | None = None, allow_empty: bool = False
) -> np.ndarray:
    """Validate a 2-D finite real matrix; `allow_empty` accepts any array of size 0 as (0, dim)."""
    arr = np.asarray(a)
    if allow_empty and arr.size == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (rows × dims), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ConfigError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    if dim is not None and arr.shape[1] != dim:
        raise ConfigError(f"{name} has {arr.shape[1]} dims but the candidates have {dim}")
    if len(arr) and arr.shape[1] == 0:
        raise ConfigError(f"{name} has rows of width 0")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} holds NaN or infinite values; re-embed or drop those rows")
    return arr


def _check_block_rows(block_rows: int) -> None:
    if not isinstance(block_rows, int | np.integer) or block_rows < 1:
        raise ConfigError(f"block_rows must be an integer >= 1, got {block_rows!r}")


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=torch.float32)


def _nearest_sqdist(
    x: torch.Tensor,
    sqx: torch.Tensor,
    centers: np.ndarray | torch.Tensor,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> torch.Tensor:
    """Squared distance from each row of `x` to its nearest center (inf without centers)."""
    import torch

    n = len(x)
    if len(centers) == 0:
        return torch.full((n,), math.inf, device=x.device)
    # Algorithm: argmin_c |x - c|² = argmax_c (x·c - |c|²/2), one addmm per tile; a running max
    # per row keeps memory at O(N + tile) whatever the number of centers.
    best = torch.full((n,), -math.inf, device=x.device)
    buf = None
    for j in range(0, len(centers), _BLOCK_COLS):
        c = centers[j : j + _BLOCK_COLS]
        c = c.to(x.device, torch.float32) if isinstance(c, torch.Tensor) else _tensor(c, x.device)
        bias = (c * c).sum(1).mul_(-0.5)
        ct = c.T
        for i in range(0, n, block_rows):
            xb = x[i : i + block_rows]
            if buf is None or buf.shape != (len(xb), len(c)):
                buf = torch.empty((len(xb), len(c)), device=x.device)
            torch.addmm(bias, xb, ct, out=buf)
            part = best[i : i + block_rows]
            torch.maximum(part, buf.amax(1), out=part)
    return (sqx - 2 * best).clamp_min_(0)


def nearest_distances(
    x: np.ndarray,
    centers: np.ndarray,
    *,
    device: str = "auto",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> np.ndarray:
    """Distance from each row of `x` to its nearest row of `centers`, computed in tiles.

    Memory is O(N + tile): no N × M matrix is ever formed.

    Args:
        x: (N, D) points.
        centers: (M, D) centers; an empty array means no centers.
        device: `auto` (CUDA when present), `cpu` or `cuda[:N]`.
        block_rows: Rows of `x` per tile.

    Returns:
        float32 array (N,) of Euclidean distances (inf everywhere when there is no center).

    Raises:
        ConfigError: Shapes disagree, values are not finite, or the device is unusable.
    """
    xa = _as_matrix(x, "x")
    ca = _as_matrix(centers, "centers", dim=xa.shape[1], allow_empty=True)
    _check_block_rows(block_rows)
    dev = _resolve_device(device)
    with _compute(dev):
        xt = _tensor(xa, dev)
        d2 = _nearest_sqdist(xt, (xt * xt).sum(1), ca, block_rows=block_rows)
        return d2.sqrt_().cpu().numpy()


def coverage_radius(
    x: np.ndarray,
    centers: np.ndarray,
    *,
    device: str = "auto",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> float:
    """Coverage radius: the largest distance from a row of `x` to its nearest center.

    Args:
        x: (N, D) points to cover.
        centers: (M, D) centers; an empty array means no centers.
        device: `auto` (CUDA when present), `cpu` or `cuda[:N]`.
        block_rows: Rows of `x` per tile.

    Returns:
        The radius; 0.0 when `x` is empty, inf when there is no center.

    Raises:
        ConfigError: Shapes disagree, values are not finite, or the device is unusable.
    """
    distances = nearest_distances(x, centers, device=device, block_rows=block_rows)
    if np.asarray(centers).size == 0:
        return math.inf
    return float(distances.max()) if len(distances) else 0.0


class _Cover:
    """Squared distance of every row to its nearest center, kept current as centers are added.

    Rows that are picked are marked `_TAKEN` (never the argmax again).
    """

    def __init__(self, x: torch.Tensor, d2: torch.Tensor, *, use_filter: bool | None = None):
        import torch

        self.x = x
        self.sq = (x * x).sum(1)
        self.d2 = d2.clone()
        n, dim = x.shape
        if use_filter is None:
            use_filter = x.device.type == "cpu" and n >= _FILTER_MIN_ROWS
        self.x16: torch.Tensor | None = None
        if use_filter and n:
            # Algorithm: a float16 copy scaled into [-1, 1] gives approximate dot products at a
            # third of the float32 memory traffic; |error| <= rel·|x̂||p̂| + abs_err (inputs
            # rounded: 2 × 2^-11, output rounded: 2^-11, float32 accumulation: D·2^-24, plus
            # one more 2^-11 of slack; abs_err covers float16 subnormals). Rows whose distance
            # could drop by the bound are recomputed exactly in float32.
            self.scale = float(self.sq.max().sqrt().clamp_min(1e-30))
            self.x16 = torch.empty(x.shape, dtype=torch.float16, device=x.device)
            for s in range(0, n, 65536):  # no full-size float32 temporary
                self.x16[s : s + 65536] = (x[s : s + 65536] / self.scale).half()
            self.nrm = self.sq.sqrt() / self.scale
            self.rel = 2.0**-9 + dim * 2.0**-23
            self.abs_err = 2.0**-18
            if not self._filter_bound_holds():
                self.x16 = None
        # float32 rounding of the exact path, in squared-distance units (kept out of the filter)
        self.slack = 1e-5 * float(self.sq.max()) if n else 0.0
        self.rows_refined = 0
        self.steps = 0

    def _filter_bound_holds(self) -> bool:
        """Check the float16 path against float32 on one probe (guards against a kernel change)."""
        probe = self.x[int(self.sq.argmax())]
        exact = self.x @ probe / (self.scale * self.scale)
        approx = (self.x16 @ (probe / self.scale).half()).float()
        pn = float(probe.norm()) / self.scale
        err = (approx - exact).abs() - (self.rel * pn * self.nrm + self.abs_err) / 4
        return bool((err <= 0).all())

    def add(self, p: torch.Tensor) -> None:
        """Add center `p` (D,): lower every row's squared distance to it where it is closer."""
        self.steps += 1
        sqp = (p * p).sum()
        if self.x16 is None:
            dn = (self.sq + sqp - 2 * (self.x @ p)).clamp_min_(0)
            self.d2 = self.d2.minimum(dn)
            self.rows_refined += len(dn)
            return
        s2 = self.scale * self.scale
        pn = float(sqp.sqrt()) / self.scale
        dots = (self.x16 @ (p / self.scale).half()).float()
        # Row i needs an exact look only if its approximate new distance, lowered by the error
        # bound, is below its current one: dot_i > (sq_i + sqp - d2_i) / 2s² - bound_i.
        need = (self.sq - self.d2 + sqp).mul_(0.5 / s2)
        need.sub_(self.nrm * (self.rel * pn)).sub_(self.abs_err + self.slack / s2)
        rows = (dots > need).nonzero().flatten()
        if len(rows) == 0:
            return
        self.rows_refined += len(rows)
        dn = (self.sq[rows] + sqp - 2 * (self.x[rows] @ p)).clamp_min_(0)
        self.d2[rows] = self.d2[rows].minimum(dn)

    def take(self, i: int) -> None:
        """Mark row `i` as picked."""
        self.d2[i] = _TAKEN

    def farthest(self) -> tuple[int, float]:
        """Row with the largest squared distance (lowest index on ties) and that distance²."""
        value, index = self.d2.max(0)  # torch returns the first maximal index
        return int(index), float(value)


@contextlib.contextmanager
def _loop_threads(device: torch.device) -> Iterator[None]:
    """One CPU thread for the greedy loop: its steps are many small memory-bound ops.

    Measured on 2 shared cores (load ~4.7): 5 ms per step on 50k × 512 with one thread, 63 ms
    with two (OpenMP regions wait for a descheduled thread). Tiled matmuls keep every core.
    """
    import torch

    threads = torch.get_num_threads()
    if device.type == "cpu" and threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _greedy_farthest(
    cover: _Cover,
    x: torch.Tensor,
    *,
    k: int | None,
    min_distance: float | None,
    exclude_below: float | None = None,
) -> tuple[list[int], list[float], str]:
    """Pick the farthest row until `k` picks, `min_distance` or exhaustion; returns a reason.

    Rows closer than `exclude_below` to a center are never picked (near duplicates).
    """
    with _loop_threads(x.device):
        return _greedy_farthest_loop(cover, x, k, min_distance, exclude_below)


def _greedy_farthest_loop(
    cover: _Cover,
    x: torch.Tensor,
    k: int | None,
    min_distance: float | None,
    exclude_below: float | None,
) -> tuple[list[int], list[float], str]:
    picks: list[int] = []
    dists: list[float] = []
    while True:
        if k is not None and len(picks) >= k:
            return picks, dists, "n_samples"
        i, value = cover.farthest()
        if value < 0:
            return picks, dists, "exhausted"
        d = math.sqrt(value)
        if min_distance is not None and d < min_distance:
            return picks, dists, "min_distance"
        if exclude_below is not None and d < exclude_below:
            return picks, dists, "exhausted"  # every row left is a near duplicate
        picks.append(i)
        dists.append(d)
        cover.add(x[i])
        cover.take(i)


def kcenter_greedy(
    x: np.ndarray,
    *,
    existing: np.ndarray | None = None,
    k: int | None = None,
    min_distance: float | None = None,
    device: str = "auto",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center: repeatedly pick the row farthest from the existing and picked rows.

    The first pick is the row farthest from `existing` (row 0 when there is none: every
    distance is infinite and ties go to the lowest index). Picks equal those of a plain float32
    implementation that recomputes every distance at every step.

    Args:
        x: (N, D) candidate embeddings (float16 or float32).
        existing: (M, D) rows already chosen (the initial centers); None or empty for none.
        k: Stop after this many picks; None for no limit.
        min_distance: Stop before a pick whose distance would be below this; None for none.
        device: `auto` (CUDA when present), `cpu` or `cuda[:N]`.
        block_rows: Rows of `x` per tile of the distance computation.

    Returns:
        (indices, distances): int64 rows of `x` in pick order, and float64 distance of each
        pick to the nearest existing-or-earlier pick at the time it was picked (inf for a
        first pick without existing rows).

    Raises:
        ConfigError: Shapes disagree, values are not finite, k < 0, min_distance < 0, or the
            device is unusable.

    Notes:
        Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
        Approach", ICLR 2018 (greedy k-center, a 2-approximation of the minimax facility
        location). Cost: O(N·M·D) for the initial distances (tiled matrix products) plus
        O(N·D) per pick, read in float16 with exact float32 refinement.
    """
    xa = _as_matrix(x, "x")
    ea = (
        None
        if existing is None
        else _as_matrix(existing, "existing", dim=xa.shape[1], allow_empty=True)
    )
    if k is not None and (not isinstance(k, int | np.integer) or k < 0):
        raise ConfigError(f"k must be an integer >= 0 or None, got {k!r}")
    if min_distance is not None and not (math.isfinite(min_distance) and min_distance >= 0):
        raise ConfigError(
            f"min_distance must be a finite number >= 0 or None, got {min_distance!r}"
        )
    _check_block_rows(block_rows)
    dev = _resolve_device(device)
    return _kcenter_greedy(
        xa, ea, k=k, min_distance=min_distance, device=dev, block_rows=block_rows
    )


def _kcenter_greedy(
    x: np.ndarray,
    existing: np.ndarray | None,
    *,
    k: int | None,
    min_distance: float | None,
    device: torch.device,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    use_filter: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    with _compute(device):
        start = time.perf_counter()
        xt = _tensor(x, device)
        centers = existing if existing is not None else np.zeros((0, x.shape[1]), np.float32)
        d2 = _nearest_sqdist(xt, (xt * xt).sum(1), centers, block_rows=block_rows)
        initial = time.perf_counter() - start
        cover = _Cover(xt, d2, use_filter=use_filter)
        picks, dists, _ = _greedy_farthest(cover, xt, k=k, min_distance=min_distance)
    _log_phases(cover, len(centers), initial, time.perf_counter() - start - initial)
    return np.asarray(picks, dtype=np.int64), np.asarray(dists, dtype=np.float64)


def _log_phases(cover: _Cover, n_centers: int, initial_s: float, greedy_s: float) -> None:
    rows = len(cover.x) * max(cover.steps, 1)
    logger.debug(
        "k-center: %d candidates × %d dims, %d initial centers on %s: initial distances %.2f s, "
        "greedy %.2f s for %d picks (float16 filter %s, %.2f%% of rows recomputed exactly)",
        len(cover.x),
        cover.x.shape[1],
        n_centers,
        cover.x.device,
        initial_s,
        greedy_s,
        cover.steps,
        "on" if cover.x16 is not None else "off",
        100.0 * cover.rows_refined / rows,
        extra={"initial_s": initial_s, "greedy_s": greedy_s, "picks": cover.steps},
    )


# ----------------------------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------------------------


def _normalise_key(name: Any) -> str | None:
    if name is None:
        return None
    key = str(name).replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key.lstrip("/")


def join_predictions(
    candidates: Candidates, data: bytes, *, filename: str
) -> dict[str, np.ndarray]:
    """Parse a predictions file and align its columns with the candidates.

    Rows are matched on `filename` (the file's key relative to the source; a leading `./` or
    `/` is ignored) and, when the file has a `frame_index` column, on the frame too; a row
    whose `frame_index` is empty applies to every frame of its file.

    Args:
        candidates: The run's candidates.
        data: The file's bytes, CSV or Parquet.
        filename: Its name or URL; the extension (`.csv`, `.parquet`, `.pq`) picks the parser.

    Returns:
        Column name → array of length `len(candidates)`: float64 for numeric columns (NaN
        where no row matched or the value is empty), object otherwise (None where missing).

    Raises:
        ConfigError: Unknown extension, unreadable content, no `filename` column, or two rows
            for the same file (and frame).
    """
    import pyarrow as pa

    fmt = _predictions_format(filename)
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(io.BytesIO(data))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ConfigError(f"predictions {filename!r} cannot be read as {fmt}: {exc}") from exc
    if "filename" not in table.column_names:
        raise ConfigError(
            f"predictions {filename!r} has no 'filename' column (columns: "
            f"{', '.join(table.column_names) or 'none'}); add one holding each file's key "
            "relative to the source"
        )
    names = [_normalise_key(v) for v in table.column("filename").to_pylist()]
    frames: list[Any] = [None] * len(names)
    if "frame_index" in table.column_names:
        try:
            frames = table.column("frame_index").cast(pa.int64()).to_pylist()
        except (pa.ArrowException, ValueError) as exc:
            raise ConfigError(
                f"predictions {filename!r}: frame_index must hold whole numbers ({exc})"
            ) from exc
    by_frame: dict[tuple[str, int], int] = {}
    by_file: dict[str, int] = {}
    for row, (name, frame) in enumerate(zip(names, frames, strict=True)):
        if name is None:
            continue
        index: dict[Any, int] = by_file if frame is None else by_frame
        key: Any = name if frame is None else (name, frame)
        if key in index:
            what = name if frame is None else f"{name} frame {frame}"
            raise ConfigError(
                f"predictions {filename!r} has two rows for {what} (rows {index[key] + 2} and "
                f"{row + 2}); keep one"
            )
        index[key] = row
    n = len(candidates)
    rows = np.full(n, -1, dtype=np.int64)
    for i, (key, frame) in enumerate(zip(candidates.key, candidates.frame_index, strict=True)):
        row = by_frame.get((_normalise_key(key), int(frame)), -1) if by_frame else -1
        rows[i] = row if row >= 0 else by_file.get(_normalise_key(key), -1)
    hit = rows >= 0
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name in ("filename", "frame_index"):
            continue
        column = table.column(name)
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            aligned = np.full(n, np.nan)
        else:
            values = np.array(column.to_pylist(), dtype=object)
            aligned = np.full(n, None, dtype=object)
        aligned[hit] = values[rows[hit]]
        out[name] = aligned
    return out


# ----------------------------------------------------------------------------------------------
# select: filters, strategies, the greedy loop, the run's measures
# ----------------------------------------------------------------------------------------------


def _column_table(candidates: Candidates, columns: dict[str, np.ndarray] | None) -> dict[str, Any]:
    table: dict[str, Any] = {name: getattr(candidates, name) for name in KNOWN_COLUMNS}
    for name, values in (columns or {}).items():
        arr = np.asarray(values)
        if arr.ndim != 1 or len(arr) != len(candidates):
            raise ConfigError(
                f"column {name!r} has shape {arr.shape}; it needs one value per candidate "
                f"({len(candidates)})"
            )
        table[name] = arr
    return table


def _get_column(table: dict[str, Any], name: str, user: str) -> np.ndarray:
    if name not in table:
        raise ConfigError(
            f"{user} uses column {name!r}, which neither the candidates nor the predictions "
            f"have (available: {', '.join(sorted(table))})"
        )
    return np.asarray(table[name])


def _numeric(table: dict[str, Any], name: str, user: str) -> np.ndarray:
    values = _get_column(table, name, user)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or v == "":
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{user} needs numbers but column {name!r} holds {v!r}; use a numeric column"
            ) from None
    return out


def _labels(table: dict[str, Any], name: str, user: str) -> np.ndarray:
    values = _get_column(table, name, user)
    out = np.full(len(values), None, dtype=object)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out[i] = str(v)
    return out


_HASH_WEIGHTS: dict[int, np.ndarray] = {}


def _row_hashes(a: np.ndarray) -> np.ndarray:
    """64-bit hash of each row's float32 bits (exact rows give equal hashes)."""
    dim = a.shape[1]
    if dim not in _HASH_WEIGHTS:
        rng = np.random.default_rng(0x5E1EC7)
        _HASH_WEIGHTS[dim] = rng.integers(1, 2**63, size=dim, dtype=np.uint64) | np.uint64(1)
    weights = _HASH_WEIGHTS[dim]
    out = np.empty(len(a), dtype=np.uint64)
    for s in range(0, len(a), 8192):
        block = np.ascontiguousarray(a[s : s + 8192], dtype=np.float32) + np.float32(0)  # -0 → +0
        out[s : s + 8192] = (block.view(np.uint32).astype(np.uint64) * weights).sum(1)
    return out


def _dataset_members(
    embedding: np.ndarray,
    dataset: np.ndarray,
    sample_ids: np.ndarray,
    dataset_ids: Sequence[str] | np.ndarray | None,
) -> np.ndarray:
    """Candidates the dataset already holds: same sample id, or bit-identical embedding."""
    member = np.zeros(len(embedding), dtype=bool)
    if dataset_ids is not None and len(dataset_ids):
        member |= np.isin(sample_ids.astype(str), np.asarray(dataset_ids, dtype=str))
    if len(dataset) and len(embedding):
        hd = _row_hashes(dataset)
        hc = _row_hashes(embedding)
        order = np.argsort(hd, kind="stable")
        sorted_hd = hd[order]
        for i in np.flatnonzero(np.isin(hc, hd)):
            lo, hi = (
                np.searchsorted(sorted_hd, hc[i], "left"),
                np.searchsorted(sorted_hd, hc[i], "right"),
            )
            row = embedding[i].astype(np.float32)
            member[i] |= any(
                np.array_equal(row, dataset[j].astype(np.float32)) for j in order[lo:hi]
            )
    return member


def _sequences(candidates: Candidates, length: int) -> np.ndarray:
    """(S, length) candidate rows: consecutive sampled frames of one file, complete groups only."""
    n = len(candidates)
    if n == 0:
        return np.zeros((0, length), dtype=np.int64)
    _, key_code = np.unique(candidates.key.astype(str), return_inverse=True)
    order = np.lexsort((candidates.frame_index, key_code))
    codes = key_code[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, n])
    groups = [
        order[s : s + (size // length) * length].reshape(-1, length)
        for s, size in zip(starts, sizes, strict=True)
        if size >= length
    ]
    if not groups:
        return np.zeros((0, length), dtype=np.int64)
    members = np.concatenate(groups)
    return members[np.argsort(members.min(1), kind="stable")]


def _seeded_uniform(ids: Sequence[str], seed: int) -> np.ndarray:
    """A uniform number in (0, 1] per id: a keyed hash, so it does not depend on the others."""
    out = np.empty(len(ids))
    for i, sid in enumerate(ids):
        digest = hashlib.blake2b(f"{seed}\0{sid}".encode(), digest_size=8).digest()
        out[i] = ((int.from_bytes(digest, "little") >> 11) + 1) / 2.0**53
    return out


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


def _nearest_other(x: torch.Tensor) -> np.ndarray:
    """Distance of each row to the nearest other row (inf for a single row)."""
    import torch

    n = len(x)
    sq = (x * x).sum(1)
    out = np.empty(n)
    for s in range(0, n, 2048):
        xb = x[s : s + 2048]
        d2 = (sq[s : s + 2048, None] + sq[None, :] - 2 * (xb @ x.T)).clamp_min_(0)
        rows = torch.arange(len(xb), device=x.device)
        d2[rows, rows + s] = math.inf
        out[s : s + len(xb)] = d2.amin(1).sqrt_().double().cpu().numpy()
    return out


def _split(strategies: list[Any]) -> tuple[list[ThresholdStrategy], list[Any]]:
    thresholds = [s for s in strategies if isinstance(s, ThresholdStrategy)]
    return thresholds, [s for s in strategies if not isinstance(s, ThresholdStrategy)]


def _budget(config: SelectionConfig, n: int, length: int) -> tuple[int | None, str]:
    limits = []
    if config.n_samples is not None:
        limits.append((config.n_samples // length, "n_samples"))
    if config.proportion is not None:
        limits.append((max(1, math.floor(config.proportion * n + 0.5)) // length, "proportion"))
    if not limits:
        return None, "exhausted"
    return min(limits, key=lambda item: item[0])


def select(
    candidates: Candidates,
    *,
    dataset: np.ndarray,
    config: SelectionConfig,
    columns: dict[str, np.ndarray] | None = None,
    queries: np.ndarray | None = None,
    device: str = "auto",
    dataset_ids: Sequence[str] | np.ndarray | None = None,
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
    import torch

    if not isinstance(config, SelectionConfig):
        config = SelectionConfig.model_validate(config)
    n = len(candidates)
    emb = _as_matrix(candidates.embedding, "candidates.embedding", allow_empty=True)
    dim = emb.shape[1] if n else None
    data = _as_matrix(dataset, "dataset", dim=dim, allow_empty=True)
    if n == 0:
        empty_cov = math.inf if len(data) == 0 else 0.0
        return Selection(
            picks=(), n_candidates=0, coverage_before=empty_cov, coverage_after=empty_cov
        )
    thresholds, scorers = _split(config.strategies)
    table = _column_table(candidates, columns)
    for s in scorers:
        if isinstance(s, WeightsStrategy):
            w = _numeric(table, s.column, f"weights strategy on {s.column!r}")
            if np.isinf(w).any() or (w < 0).any():
                raise ConfigError(
                    f"weights column {s.column!r} has negative or infinite values (min "
                    f"{np.nanmin(w):.4g}); weights must be >= 0: rescale the column or use a "
                    "negative strength to prefer low values"
                )
        elif isinstance(s, BalanceStrategy):
            _get_column(table, s.column, f"balance strategy on {s.column!r}")
    q = None
    if any(isinstance(s, SimilarityStrategy) for s in scorers):
        if queries is None or np.asarray(queries).size == 0:
            raise ConfigError(
                "the similarity strategy needs query embeddings: pass queries=(Q, D) (the flow "
                "embeds the strategy's query_keys)"
            )
        q = _as_matrix(queries, "queries", dim=dim)
    dev = _resolve_device(device)
    length = config.selected_sequence_length or 1

    # 1. thresholds (per frame); a sequence is eligible only if all its frames pass
    frame_ok = np.ones(n, dtype=bool)
    for t in thresholds:
        v = _numeric(table, t.column, f"threshold on {t.column!r}")
        with np.errstate(invalid="ignore"):
            inside = ~np.isnan(v)
            if t.min is not None:
                inside &= v >= t.min
            if t.max is not None:
                inside &= v <= t.max
        frame_ok &= inside
    if length == 1:
        members = np.arange(n, dtype=np.int64)[:, None]
    else:
        members = _sequences(candidates, length)
    alive = frame_ok[members].all(1)
    removed_thresholds = int((~alive).sum()) * length

    # 2. dataset members and exact duplicates
    member = _dataset_members(emb, data, candidates.sample_id, dataset_ids)
    dup = member[members].any(1) & alive
    if config.remove_exact_duplicates:
        hashes = candidates.content_hash
        seen: set[str] = set()
        for u in np.flatnonzero(alive & ~dup):
            parts = [hashes[r] for r in members[u]]
            if any(not h for h in parts):
                continue
            signature = "\0".join(str(h) for h in parts)
            if signature in seen:
                dup[u] = True
            seen.add(signature)
    alive &= ~dup
    removed_duplicates = int(dup.sum()) * length

    with _compute(dev):
        if length == 1:
            unit_x = emb[members[alive, 0]].astype(np.float32)
        else:
            unit_x = emb[members[alive]].astype(np.float32).mean(1)
            unit_x /= np.maximum(np.linalg.norm(unit_x, axis=1, keepdims=True), 1e-12)
        start = time.perf_counter()
        xt = _tensor(unit_x, dev)
        d0 = _nearest_sqdist(xt, (xt * xt).sum(1), data)
        initial = time.perf_counter() - start

        # 3. near duplicates of the dataset now; those of picks are excluded as picks happen
        near = config.near_duplicate_distance
        if near is not None:
            keep = (d0 >= near * near).cpu().numpy()
            removed_duplicates += int((~keep).sum()) * length
            sel = np.flatnonzero(keep)
            alive[np.flatnonzero(alive)[~keep]] = False
            index = torch.from_numpy(sel).to(dev)
            xt, d0 = xt[index], d0[index]
        units = members[alive]
        n_units = len(units)
        frames = units.ravel()
        if n_units == 0:
            cov = math.inf if len(data) == 0 else 0.0
            return Selection(
                picks=(),
                n_candidates=0,
                n_removed_duplicates=removed_duplicates,
                n_removed_thresholds=removed_thresholds,
                coverage_before=cov,
                coverage_after=cov,
            )

        # 4. objectives, 5. the greedy loop
        budget, budget_reason = _budget(config, n, length)
        cover = _Cover(xt, d0)
        if all(isinstance(s, DiversityStrategy) and s.strength > 0 for s in scorers):
            picked, dists, why = _greedy_farthest(
                cover, xt, k=budget, min_distance=config.min_distance, exclude_below=near
            )
            stop = budget_reason if why == "n_samples" else why
            scores = list(dists)
            reasons = [
                "diversity: first pick, nothing to compare with"
                if math.isinf(d)
                else f"diversity: farthest from the dataset and earlier picks ({d:.3f})"
                for d in dists
            ]
        else:
            objectives = _Objectives(scorers, units, table, candidates, xt, q, seed=config.seed)
            picked, dists, scores, reasons, stop = _greedy_combined(
                cover,
                xt,
                objectives,
                budget=budget,
                budget_reason=budget_reason,
                min_distance=config.min_distance,
                exclude_below=near,
            )

        _log_phases(cover, len(data), initial, time.perf_counter() - start - initial)

        # 6. measures
        final2 = cover.d2.double().cpu().numpy()
        untaken = final2 >= 0
        final2 = np.maximum(final2, 0)
        near_picks = 0  # near duplicates of picks: excluded as the picks happened
        if near is not None:
            near_picks = int((untaken & (np.sqrt(final2) < near)).sum()) * length
        d0_units = d0.sqrt().double().cpu().numpy()
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

        rng = np.random.default_rng([config.seed, 1])
        baseline = rng.choice(n_units, size=len(picked), replace=False) if picked else []
        mean_pick, mean_random = spread(picked), spread(baseline)

    picks = []
    for u, d, score, reason in zip(picked, dists, scores, reasons, strict=True):
        rows = units[u]
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
        n_candidates=int(len(frames)) - near_picks,
        n_removed_duplicates=removed_duplicates + near_picks,
        n_removed_thresholds=removed_thresholds,
        coverage_before=before,
        coverage_after=after,
        mean_pick_distance=mean_pick,
        mean_random_distance=mean_random,
        stop_reason=stop,
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


class _Objectives:
    """The ranking strategies' objectives over the eligible units, combined in log space."""

    def __init__(
        self,
        scorers: list[Any],
        units: np.ndarray,
        table: dict[str, Any],
        candidates: Candidates,
        x: torch.Tensor,
        queries: np.ndarray | None,
        *,
        seed: int,
    ):
        self.static = np.zeros(len(units))  # sum of strength·log(objective) of static strategies
        self.diversity = 0.0  # summed strength of diversity strategies
        self.balances: list[tuple[BalanceStrategy, np.ndarray, np.ndarray, np.ndarray, list]] = []
        self.describe: list[Any] = []  # per strategy: (unit, distance) -> text
        for s in scorers:
            if isinstance(s, DiversityStrategy):
                self.diversity += s.strength
                self.describe.append(
                    lambda i, d: "diversity: first pick" if math.isinf(d) else f"diversity: {d:.3f}"
                )
            elif isinstance(s, RandomStrategy):
                u = _seeded_uniform(candidates.sample_id[units[:, 0]].tolist(), seed)
                self._add(s, u, lambda i, d, u=u: f"random: {u[i]:.3f}")
            elif isinstance(s, WeightsStrategy):
                w = _numeric(table, s.column, "weights")[units]
                counts = (~np.isnan(w)).sum(1)
                w = np.where(counts > 0, np.nansum(w, 1) / np.maximum(counts, 1), 0.0)
                self._add(s, w, lambda i, d, w=w, c=s.column: f"weights: {c} {w[i]:.4g}")
            elif isinstance(s, SimilarityStrategy):
                dq = _nearest_sqdist(x, (x * x).sum(1), queries).sqrt().double().cpu().numpy()
                text = "similarity: {:.3f} from the nearest query".format
                self._add(s, 1 - dq * dq / 4, lambda i, d, dq=dq, t=text: t(dq[i]))
            elif isinstance(s, TypicalityStrategy):
                m = _knn_mean_distance(x, s.k, seed)
                text = f"typicality: mean {s.k}-NN distance {{:.3f}}".format
                self._add(s, 1 / np.maximum(m, 1e-6), lambda i, d, m=m, t=text: t(m[i]))
            elif isinstance(s, BalanceStrategy):
                labels = _unit_labels(_labels(table, s.column, "balance")[units])
                classes = list(s.target)
                total = sum(s.target.values())
                share = np.array([s.target[c] / total for c in classes] + [0.0])
                other = len(classes)  # code of labels without a target (and of missing ones)
                code = np.array([classes.index(v) if v in s.target else other for v in labels])
                picked = np.zeros(len(share))
                self.balances.append((s, code, share, picked, labels))
                self.describe.append(
                    lambda i, d, s=s, code=code, share=share, picked=picked, labels=labels: (
                        f"balance: {s.column}={labels[i]} ({int(picked[code[i]])} picked "
                        f"before, target {share[code[i]]:.0%})"
                    )
                )

    def _add(self, strategy: Any, objective: np.ndarray, describe: Any) -> None:
        self.static += strategy.strength * np.log(np.maximum(objective, _TINY))
        self.describe.append(describe)

    def log_scores(self, distance: np.ndarray) -> np.ndarray:
        """log(product of objective^strength) for every unit, given its current distance."""
        out = self.static.copy()
        if self.diversity:
            out += self.diversity * np.log(np.maximum(distance, _TINY))
        for s, code, share, picked, _ in self.balances:
            # D'Hondt-like: the class furthest below its target share wins
            out += s.strength * np.log(np.maximum(share / (picked + 1), _TINY))[code]
        return out

    def reason(self, i: int, distance: float) -> str:
        return "; ".join(describe(i, distance) for describe in self.describe)

    def picked(self, i: int) -> None:
        for _, code, _, picked, _ in self.balances:
            picked[code[i]] += 1


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
            d2 = cover.d2.double().cpu().numpy()
            taken = d2 < 0
            d = np.sqrt(np.maximum(d2, 0))
            d[np.isinf(d)] = cap
            log_score = objectives.log_scores(d)
            log_score[taken] = -math.inf
            if exclude_below is not None:
                log_score[d < exclude_below] = -math.inf
            if min_distance is not None:
                log_score[d < min_distance] = -math.inf
            i = int(np.argmax(log_score))  # the first maximum: ties go to the lowest unit
            if log_score[i] == -math.inf:
                blocked = ~taken & (d >= (exclude_below or 0.0))
                return (
                    picked,
                    dists,
                    scores,
                    reasons,
                    ("min_distance" if min_distance is not None and blocked.any() else "exhausted"),
                )
            dist = math.sqrt(d2[i]) if math.isfinite(d2[i]) else math.inf
            picked.append(i)
            dists.append(dist)
            scores.append(math.exp(log_score[i]))
            reasons.append(objectives.reason(i, dist))
            objectives.picked(i)
            cover.add(x[i])
            cover.take(i)

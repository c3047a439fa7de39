"""Greedy k-center: pick the candidate farthest from the dataset and the picks, again and again.

The distance of every candidate to its nearest center is kept current as picks are added
(`_Cover`). On CPU a float16 copy of the candidates screens each update: its error bound sends
every row the new center might move to an exact float32 recomputation, so the picks equal those
of a plain float32 greedy at about a third of the memory traffic.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from winnow.device import resolve_device
from winnow.errors import ConfigError
from winnow.selection._distances import (
    DEFAULT_BLOCK_ROWS,
    _as_matrix,
    _check_block_rows,
    _compute,
    _nearest_sqdist,
    _tensor,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_TAKEN = -1.0  # squared distance marking a picked row (real squared distances are >= 0)
_FILTER_MIN_ROWS = 2048  # below this the float16 filter is not worth its bookkeeping


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

    With several threads every OpenMP region of a step waits for the slowest one, and on a
    shared machine a descheduled thread makes each step many times slower. The tiled matrix
    products (`_compute`) keep every core.
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
    dev = resolve_device(device)
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

"""Herding (MaxHerding): kernel coverage of the candidates, with the dataset as already held.

The objective of a set S is how well it represents the candidates: the sum over candidates i
of max over s in S (and the dataset) of k(i, s), a Gaussian kernel k = exp(-d²/(2σ²)) —
ProbCover's coverage with a soft ball instead of a hard δ-ball (MaxHerding, Bae et al. 2024,
arXiv 2407.12212; facility location). A candidate's gain is how much it would raise that sum.
A soft ball never degenerates the way a hard one does: where every δ-ball holds only itself,
coverage has nothing to choose by, while the kernel still prefers the centre of a dense region
to its edge, and the next pick in that region gains little. The gains only fall as picks
happen, so the greedy is the usual (1 - 1/e) one for a monotone submodular objective.

σ adapts to the run: σ = `bandwidth_scale` × the mean distance of the candidates to their
nearest center after a k-center greedy of the run's budget (the dataset counts as centers).
That is the scale at which the budget can represent the candidates, whatever the embedding:
it cannot collapse to singleton balls (video frames of one shot are 0.006 apart, the δ
ProbCover's purity rule chose there), nor grow past the data.

Cost: the candidates are scored against at most 5,000 evaluation rows (all of them below
that; a seeded sample above), so a gain is an estimate over that sample. Memory O(U + R); time
O(U·R·D) for the first pick, then O(U·D) per evaluation row whose best kernel value the pick
raised (about R / picks rows per pick once the set is spread).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

EVAL_ROWS = 5_000  # candidates the gains are measured on (a seeded sample above this)
_CHUNK_ELEMENTS = 1 << 24  # unit × evaluation-row kernel entries computed at once


def _eval_rows(n: int, seed: int) -> np.ndarray:
    """The evaluation rows: every unit below `EVAL_ROWS`, else a seeded sample (sorted)."""
    if n <= EVAL_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 29]).choice(n, EVAL_ROWS, replace=False))


def auto_bandwidth(
    x: torch.Tensor, d0: torch.Tensor, budget: int, *, scale: float, seed: int
) -> float:
    """σ: `scale` × mean distance to the nearest center after a k-center greedy of `budget`.

    # Algorithm: on the evaluation rows (all units up to 5,000), with the budget scaled to
    # their share of the units, k-center greedy from the dataset (squared distances `d0`; inf
    # without a dataset); the mean over the rows of the distance to their nearest center
    # (dataset or pick) is the radius at which the budget represents the candidates. At
    # least 1e-6 (identical candidates).
    """
    import torch

    rows = torch.from_numpy(_eval_rows(len(x), seed)).to(x.device)
    xe = x[rows].float()
    d2 = d0[rows].double().clone()
    k = max(1, min(len(rows), math.ceil(budget * len(rows) / len(x))))
    sq = (xe * xe).sum(1)
    for _ in range(k):
        c = int(torch.argmax(d2)) if torch.isfinite(d2).any() else 0
        new = (sq + sq[c] - 2 * (xe @ xe[c])).clamp_min_(0).double()
        torch.minimum(d2, new, out=d2)
    return max(scale * float(d2.clamp_min(0).sqrt().mean()), 1e-6)


class HerdingState:
    """The gain of every unit now, kept exact (over the evaluation rows) as picks happen.

    Attributes:
        sigma: The kernel's bandwidth.
        gains: (U,) float64 on the device: how much each unit would raise the sum over the
            evaluation rows of their best kernel value.
        best: (R,) each evaluation row's best kernel value (dataset and picks so far).
        scale: Units per evaluation row (U / R), to state a gain in units.
    """

    def __init__(self, x: torch.Tensor, d0: torch.Tensor, *, sigma: float, seed: int):
        import torch

        self.x = x.float()
        self.sigma = sigma
        self.sq = (self.x * self.x).sum(1)
        rows = torch.from_numpy(_eval_rows(len(x), seed)).to(x.device)
        self.xe = self.x[rows]
        self.sqe = self.sq[rows]
        self.scale = len(x) / len(rows)
        self.best = torch.exp(-d0[rows].double().clamp_min(0) / (2 * sigma * sigma))
        self.gains = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        self._update(torch.arange(len(rows), device=x.device), None, self.best)

    def _kernel(self, units: slice, cols: torch.Tensor) -> torch.Tensor:
        """k(unit, evaluation row) for a slice of units and some evaluation rows (float64)."""
        import torch

        x = self.x[units]
        d2 = self.sq[units, None] + self.sqe[None, cols] - 2 * (x @ self.xe[cols].T)
        return torch.exp(-d2.clamp_min(0).double() / (2 * self.sigma * self.sigma))

    def _update(self, cols: torch.Tensor, old: torch.Tensor | None, new: torch.Tensor) -> None:
        """Rows `cols` now have best values `new` (were `old`; None: not counted yet).

        A unit's gain over a row is max(0, k(unit, row) - best): it moves by the difference.
        """
        step = max(1, _CHUNK_ELEMENTS // max(len(cols), 1))
        for s in range(0, len(self.x), step):
            k = self._kernel(slice(s, s + step), cols)
            change = (k - new).clamp_min(0).sum(1)
            if old is not None:
                change -= (k - old).clamp_min(0).sum(1)
            self.gains[s : s + step] += change

    def picked(self, i: int) -> None:
        """Unit `i` is a center now: the rows it represents better than before move up."""
        import torch

        d2 = (self.sqe + self.sq[i] - 2 * (self.xe @ self.x[i])).clamp_min(0).double()
        k = torch.exp(-d2 / (2 * self.sigma * self.sigma))
        cols = (k > self.best).nonzero().flatten()
        if len(cols) == 0:
            return
        old, new = self.best[cols], k[cols]
        self._update(cols, old, new)
        self.best[cols] = new

    def values(self) -> np.ndarray:
        """The gains now, in units (>= 0)."""
        return self.gains.clamp_min(0).cpu().numpy() * self.scale

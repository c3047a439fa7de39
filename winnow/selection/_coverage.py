"""Coverage (ProbCover): pick the candidate whose δ-ball holds the most uncovered candidates.

The δ-ball graph of the eligible units is built once, blockwise (exact distances, a bounded
block of rows × all units at a time, on the selection's device), and kept as in-edge lists:
for each unit v, the units whose ball counts v. Each unit's count of uncovered units in its
ball then drops as picks cover them, so a pick costs one distance pass (what it covers, exact)
plus the in-edges of the units it newly covers.

Memory is bounded by the edges: each unit keeps at most `max_degree` of its nearest neighbours
inside δ (its count is over those); units with more are counted as "capped" in the log.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from winnow.selection._kmeans import _kmeans

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 1 << 25  # distances per block of the graph build (128 MB of float32)
_PURITY_QUERIES = 2000  # sampled rows whose pairs estimate the purity of δ-balls
_PURITY_BINS = 1024  # δ grid over [0, largest distance]


def _auto_delta(x: torch.Tensor, *, clusters: int, purity: float, seed: int) -> float:
    """The largest δ whose δ-ball pairs are at least `purity` pure under k-means pseudo-labels.

    # Algorithm: pseudo-labels from k-means with `clusters` clusters; for a seeded sample of
    # at most 2,000 query units, the distance to every other unit is binned on a fine grid,
    # separately for pairs with equal and with different pseudo-labels. Purity(δ) = share of
    # pairs within δ whose labels agree (ProbCover's ball purity, measured over the balls' pairs
    # rather than over whole balls, which is stricter than embeddings of unseen data bear).
    # The caller passes the candidates and (a sample of) the dataset: δ is a property of the
    # embedding space, not of this run's share of it.
    """
    import torch

    n = len(x)
    if n < 2:
        return 1.0
    labels = torch.from_numpy(_kmeans(x, clusters, seed=seed, n_init=3)[0]).to(x.device)
    rng = np.random.default_rng([seed, 11])
    q_idx = np.arange(n) if n <= _PURITY_QUERIES else rng.choice(n, _PURITY_QUERIES, replace=False)
    q_idx = np.sort(q_idx)
    sq = (x * x).sum(1)
    top = 2.0 * math.sqrt(float(sq.max())) + 1e-6
    same = torch.zeros(_PURITY_BINS, dtype=torch.float64, device=x.device)
    every = torch.zeros(_PURITY_BINS, dtype=torch.float64, device=x.device)
    step = max(1, _BLOCK_ELEMENTS // n)
    for s in range(0, len(q_idx), step):
        rows = torch.from_numpy(q_idx[s : s + step]).to(x.device)
        d = (sq[rows, None] + sq[None, :] - 2 * (x[rows] @ x.T)).clamp_min_(0).sqrt_()
        d[torch.arange(len(rows), device=x.device), rows] = math.inf  # not a pair with itself
        b = (d * (_PURITY_BINS / top)).floor_().clamp_(max=_PURITY_BINS).long()
        agree = labels[rows, None] == labels[None, :]
        keep = b < _PURITY_BINS
        every += torch.bincount(b[keep], minlength=_PURITY_BINS + 1)[:_PURITY_BINS].double()
        same += torch.bincount(b[keep & agree], minlength=_PURITY_BINS + 1)[:_PURITY_BINS].double()
    cum_all = every.cumsum(0).cpu().numpy()
    cum_same = same.cumsum(0).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        pure = np.where(cum_all > 0, cum_same / cum_all, 1.0)
    ok = np.flatnonzero(pure >= purity)
    if len(ok) == 0:
        return top / _PURITY_BINS
    return float((ok[-1] + 1) * top / _PURITY_BINS)


class _BallGraph:
    """Counts of uncovered units in every unit's δ-ball, kept current as units get covered.

    Attributes:
        covered: (U,) bool, True for units within δ of the dataset or of a pick.
        count: (U,) int64, uncovered units among each unit's (capped) ball.
        edges: Stored edges (each unit's ball, capped).
        capped: Units whose ball held more than `max_degree` units.
    """

    def __init__(
        self,
        x: torch.Tensor,
        dataset_sqdist: torch.Tensor,
        *,
        delta: float,
        max_degree: int,
        block_rows: int | None = None,
    ):
        self.x = x
        self.sq = (x * x).sum(1)
        self.delta2 = delta * delta
        self.covered = (dataset_sqdist <= self.delta2).cpu().numpy()
        self.near2 = dataset_sqdist.clone()  # squared distance to the nearest center
        src, dst, self.capped = self._build(max_degree, block_rows)
        self.edges = len(src)
        # in-edges: for unit v, the units u whose ball stores v
        order = np.argsort(dst, kind="stable")
        self.in_src = src[order]
        self.in_ptr = np.zeros(len(x) + 1, dtype=np.int64)
        np.cumsum(np.bincount(dst, minlength=len(x)), out=self.in_ptr[1:])
        self.count = np.bincount(src[~self.covered[dst]], minlength=len(x)).astype(np.int64)

    def _build(self, max_degree: int, block_rows: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        """Out-edges (u, v) with |u - v| <= δ, at most `max_degree` nearest per u."""
        import torch

        x, sq, n = self.x, self.sq, len(self.x)
        step = block_rows or max(1, min(4096, _BLOCK_ELEMENTS // max(n, 1)))
        srcs, dsts = [], []
        capped = 0
        for s in range(0, n, step):
            xb = x[s : s + step]
            d2 = (sq[s : s + step, None] + sq[None, :] - 2 * (xb @ x.T)).clamp_min_(0)
            d2[
                torch.arange(len(xb), device=x.device),
                torch.arange(s, s + len(xb), device=x.device),
            ] = 0.0
            inside = d2 <= self.delta2
            degree = inside.sum(1)
            big = degree > max_degree
            small = (~big).nonzero().flatten()
            r, c = inside[small].nonzero(as_tuple=True)
            srcs.append((small[r] + s).to(torch.int32).cpu().numpy())
            dsts.append(c.to(torch.int32).cpu().numpy())
            if bool(big.any()):
                rows = big.nonzero().flatten()
                capped += len(rows)
                near = torch.topk(d2[rows], max_degree, dim=1, largest=False).indices
                srcs.append(
                    (rows[:, None] + s)
                    .expand(-1, max_degree)
                    .reshape(-1)
                    .to(torch.int32)
                    .cpu()
                    .numpy()
                )
                dsts.append(near.reshape(-1).to(torch.int32).cpu().numpy())
        src = np.concatenate(srcs) if srcs else np.zeros(0, np.int32)
        dst = np.concatenate(dsts) if dsts else np.zeros(0, np.int32)
        order = np.lexsort((dst, src))  # (u, v) order whatever the block size
        return src[order].astype(np.int64), dst[order].astype(np.int64), capped

    def cover_from(self, i: int) -> int:
        """Cover the units within δ of unit `i` (exact distances); returns how many were new."""
        import torch

        x, p = self.x, self.x[i]
        d2 = (self.sq + (p * p).sum() - 2 * (x @ p)).clamp_min_(0)
        self.near2 = torch.minimum(self.near2, d2)
        within = (d2 <= self.delta2).cpu().numpy()
        within[i] = True
        new = np.flatnonzero(within & ~self.covered)
        if len(new) == 0:
            return 0
        self.covered[new] = True
        starts, ends = self.in_ptr[new], self.in_ptr[new + 1]
        lengths = ends - starts
        # Algorithm: gather every in-edge of the newly covered units at once (concatenated
        # ranges in_ptr[v]..in_ptr[v+1]) and take one off each source's count.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        idx = np.arange(int(lengths.sum())) + offsets
        np.subtract.at(self.count, self.in_src[idx], 1)
        return len(new)


def _log_graph(graph: _BallGraph, delta: float, max_degree: int, seconds: float) -> None:
    n = len(graph.count)
    logger.debug(
        "coverage: %d units, delta %.4f, %d edges (%.1f per unit), %d units capped at degree "
        "%d, %d covered by the dataset; graph built in %.2f s",
        n,
        delta,
        graph.edges,
        graph.edges / max(n, 1),
        graph.capped,
        max_degree,
        int(graph.covered.sum()),
        seconds,
        extra={"graph_s": seconds, "edges": graph.edges, "capped": graph.capped},
    )

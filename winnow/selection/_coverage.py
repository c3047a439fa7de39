"""Coverage (ProbCover): pick the candidate whose δ-ball holds the most uncovered candidates.

The δ-ball graph of the eligible units is built once, from the upper triangle of the
unit × unit distance matrix only (square tiles, each pair computed once and mirrored), on the
selection's device, and kept as out- and in-edge lists (CSR). Each unit's count of uncovered
units in its ball then drops as picks cover them: a pick of an uncapped unit costs only the
in-edges of the units it newly covers (its ball is its out-edge list); a capped unit's ball is
found by one screened distance pass.

"Within δ" is exact whatever the tiling: a pair is decided in float32 when its float32 squared
distance is further from δ² than a proven error bound, else in float64 (and likewise for a
unit's nearest dataset sample). The graph, the counts and the picks are therefore the same
for any block size.

Only edges into units the dataset leaves uncovered are built (an edge into a covered unit can
never change a count): the units are ordered uncovered first, and tiles of covered units only
are never computed, so a dataset that covers most candidates makes the graph cheap.

Memory is bounded by the edges: each unit keeps at most `max_degree` of its nearest uncovered
neighbours inside δ (ties: lowest index; itself first), its count is over those; units with more
are counted as "capped" in the log.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from winnow.selection._kmeans import _kmeans

if TYPE_CHECKING:
    import torch

    from winnow.selection._kcenter import _Cover

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 1 << 25  # a tile of the graph build is at most sqrt(this) rows (capped 4,096)
_PURITY_QUERIES = 2000  # sampled rows whose pairs estimate the purity of δ-balls
_PURITY_BINS = 1024  # δ grid over [0, largest distance]
_DELTA_ROWS = 5_000  # rows δ is estimated on (a seeded sample above this): k-means + purity
_DATASET_SAMPLE = 50_000  # dataset rows the δ sample draws from
_REMOVED = 1 << 40  # subtracted from a unit's greedy key once it can never be picked
SPARSE_BALL = 5.0
"""Below this mean count of uncovered units per δ-ball, the counts do not drive the picks.

Measured in bench/selection_quality.py: where the automatic δ left 2.0 (two short videos),
4.2 (digits through a random-weight resnet18) or 4.9 (the demo's second batch) candidates per
ball, coverage picked no better than k-center or random (frames next to each other, one
video); on digits' pixels (51.7 per ball) it beat both by 10-20 points. A sparse graph ranks
every unit whose ball still holds an uncovered unit alike, farthest first (k-center).
"""


def _margin(dim: int, sq_max: float) -> float:
    """Bound on |float32 squared distance - exact| for rows of squared norm <= sq_max.

    # Algorithm: a float32 dot product of length D errs by at most γ_D·|x||y| (γ_D ≈ D·2^-24),
    # each squared norm by γ_D·|x|², and the few roundings of sq_u + sq_v - 2·dot by 2^-24 of
    # at most 4·sq_max each: (4D + 12)·2^-24·sq_max in all. Four times that is used.
    """
    return 16.0 * (dim + 8) * 2.0**-24 * max(sq_max, 1e-30)


def _exact_sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 squared distance between the rows of `a` and `b`, pairwise (same shape)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    return np.einsum("ij,ij->i", diff, diff)


def _delta_sample(x: torch.Tensor, data: np.ndarray | None, seed: int) -> torch.Tensor:
    """The rows δ is estimated on: the units and a sample of the dataset, at most 5,000.

    Below that size: every unit, then a seeded sample of at most 50,000 dataset rows. Above:
    a seeded sample of that concatenation (gathered without forming it).
    """
    import torch

    drows = np.zeros(0, np.int64)
    if data is not None and len(data):
        drows = np.arange(len(data))
        if len(drows) > _DATASET_SAMPLE:
            rng = np.random.default_rng([seed, 13])
            drows = np.sort(rng.choice(len(drows), _DATASET_SAMPLE, replace=False))
    n, total = len(x), len(x) + len(drows)
    if total <= _DELTA_ROWS:
        pick_x, pick_d = np.arange(n), drows
    else:
        idx = np.sort(np.random.default_rng([seed, 17]).choice(total, _DELTA_ROWS, replace=False))
        pick_x, pick_d = idx[idx < n], drows[idx[idx >= n] - n]
    parts = [x[torch.from_numpy(pick_x).to(x.device)] if len(pick_x) < n else x]
    if len(pick_d):
        rows = np.ascontiguousarray(data[pick_d], np.float32)
        parts.append(torch.from_numpy(rows).to(x.device))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _auto_delta(x: torch.Tensor, *, clusters: int, purity: float, seed: int) -> float:
    """The largest δ whose δ-ball pairs are at least `purity` pure under k-means pseudo-labels.

    # Algorithm: on at most 5,000 rows (a seeded sample above that), pseudo-labels from
    # k-means with `clusters` clusters; for a seeded sample of at most 2,000 query rows, the
    # distance to every other row is binned on a fine grid, separately for pairs with equal
    # and with different pseudo-labels. Purity(δ) = share of pairs within δ whose labels agree
    # (ProbCover's ball purity, measured over the balls' pairs rather than over whole balls,
    # which is stricter than embeddings of unseen data bear). The caller passes the candidates
    # and (a sample of) the dataset: δ is a property of the embedding space, not of this run's
    # share of it. Cost: bounded (k-means on 5,000 rows, 2,000 × 5,000 pairs) whatever N.
    """
    import torch

    n = len(x)
    if n < 2:
        return 1.0
    if n > _DELTA_ROWS:
        keep = np.sort(np.random.default_rng([seed, 17]).choice(n, _DELTA_ROWS, replace=False))
        x = x[torch.from_numpy(keep).to(x.device)]
        n = len(x)
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


def _tile_cut(
    t: torch.Tensor,
    mask: torch.Tensor,
    r: torch.Tensor,
    val: torch.Tensor,
    k: int,
    floor: torch.Tensor,
    offset: int,
) -> torch.Tensor:
    """Which of a tile's pairs (rows `r`, values `val`) their rows may still need.

    All of them, but for rows with more than `k` pairs only those reaching the row's k-th best
    value (ties kept). Raises the floors of those rows (index `offset` + row) to that value.
    """
    import torch

    counts = torch.bincount(r, minlength=t.shape[0])
    heavy = (counts > k).nonzero().flatten()
    if len(heavy) == 0:
        return torch.ones(len(r), dtype=torch.bool, device=t.device)
    masked = torch.where(mask[heavy], t[heavy], -math.inf)
    kth = torch.topk(masked, k, dim=1).values[:, -1]
    bar = torch.full((t.shape[0],), -math.inf, device=t.device)
    bar[heavy] = kth
    rows = floor[offset : offset + t.shape[0]]
    torch.maximum(rows, bar, out=rows)
    return val >= bar[r]


def _cut(
    src: torch.Tensor, dst: torch.Tensor, val: torch.Tensor, k: int, floor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entries a unit may still need: those reaching its k-th best value (ties kept).

    Raises the floors of the units holding more than `k` entries to that value.
    """
    import torch

    if src.numel() == 0:  # no entry in this tile: nothing to cut, no floor to raise
        return src, dst, val
    # one sort by (src, value descending): value bits mapped to an order-preserving uint32
    bits = val.contiguous().view(torch.int32).to(torch.int64)
    ordered = torch.where(bits < 0, -bits - 1, bits + (1 << 31))  # ascending with val
    key = ((src - src.min()) << 32) | ((1 << 32) - 1 - ordered)
    order = torch.sort(key).indices
    s_sorted, v_sorted = src[order], val[order]
    start = torch.searchsorted(s_sorted, s_sorted, right=False)
    rank = torch.arange(len(s_sorted), device=src.device) - start
    at_k = rank == k - 1
    bar = torch.full_like(floor, -math.inf)
    bar[s_sorted[at_k]] = v_sorted[at_k]
    torch.maximum(floor, bar, out=floor)
    keep = val >= bar[src]
    return src[keep], dst[keep], val[keep]


class _BallGraph:
    """Counts of uncovered units in every unit's δ-ball, kept current as units get covered.

    Attributes:
        covered: (U,) bool, True for units within δ of the dataset or of a pick.
        count: (U,) int64, uncovered units among each unit's (capped) ball.
        edges: Stored edges (each unit, and the units of its ball the dataset leaves
            uncovered, capped).
        capped: Units whose ball held more than `max_degree` such units.
        is_capped: (U,) bool, True for those units.
        out_ptr, out_dst: CSR of each unit's stored ball (ascending unit index).
        in_ptr, in_src: CSR of the units whose stored ball holds each unit.
    """

    def __init__(
        self,
        x: torch.Tensor,
        dataset_sqdist: torch.Tensor,
        *,
        delta: float,
        max_degree: int,
        block_rows: int | None = None,
        dataset: np.ndarray | None = None,
    ):
        self.x = x
        self.sq = (x * x).sum(1)
        self.delta2 = delta * delta
        n = len(x)
        self._host: np.ndarray | None = None
        sq_max = float(self.sq.max()) if n else 0.0
        self.margin = _margin(x.shape[1], sq_max)
        self.covered = self._dataset_cover(dataset_sqdist, dataset, sq_max)
        src, dst, self.is_capped = self._build(max_degree, block_rows)
        self.capped = int(self.is_capped.sum())
        self.edges = len(src)
        self.out_dst = dst
        self.out_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=self.out_ptr[1:])
        # in-edges: for unit v, the units u whose ball stores v (ascending u)
        order = np.argsort(dst, kind="stable")
        self.in_src = src[order]
        self.in_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(dst, minlength=n), out=self.in_ptr[1:])
        self.count = np.bincount(src[~self.covered[dst]], minlength=n).astype(np.int64)
        self.total = int(self.count.sum())  # count.any() is total > 0
        # mean uncovered units per ball, over the balls that hold any: below SPARSE_BALL the
        # counts are too small to rank by (see coverage_values)
        self.mean_ball = self.total / max(int((self.count > 0).sum()), 1)
        self.sparse = self.mean_ball < SPARSE_BALL
        self.key: np.ndarray | None = None  # the greedy's copy of count (see _greedy_coverage)

    @property
    def host(self) -> np.ndarray:
        """The unit embeddings in host memory (for the float64 checks)."""
        if self._host is None:
            self._host = self.x.cpu().numpy()
        return self._host

    def _dataset_cover(
        self, d0: torch.Tensor, dataset: np.ndarray | None, sq_max: float
    ) -> np.ndarray:
        """Units within δ of a dataset sample: float32 nearest distance, float64 when close.

        Without `dataset`, the float32 distances decide alone.
        """
        import torch

        covered = (d0 <= self.delta2).cpu().numpy()
        if dataset is None or len(dataset) == 0 or len(d0) == 0:
            return covered
        data = np.asarray(dataset, dtype=np.float32)
        m = _margin(self.x.shape[1], max(sq_max, float(np.einsum("ij,ij->i", data, data).max())))
        d0n = d0.double().cpu().numpy()
        border = np.flatnonzero(np.abs(d0n - self.delta2) <= m)
        if len(border) == 0:
            return covered
        # Algorithm: a border unit is covered iff some dataset row is within δ in float64;
        # only rows within δ + margin in float32 can be (tiled, bounded memory).
        covered[border] = False
        xb = self.x[torch.from_numpy(border).to(self.x.device)]
        sqb = (xb * xb).sum(1)
        for j in range(0, len(data), 8192):
            c = torch.from_numpy(np.ascontiguousarray(data[j : j + 8192])).to(self.x.device)
            d2 = (sqb[:, None] + (c * c).sum(1)[None, :] - 2 * (xb @ c.T)).clamp_min_(0)
            r, col = (d2 <= self.delta2 + m).nonzero(as_tuple=True)
            if len(r) == 0:
                continue
            r, col = r.cpu().numpy(), col.cpu().numpy()
            inside = _exact_sqdist(self.host[border[r]], data[j + col]) <= self.delta2
            covered[border[r[inside]]] = True
        return covered

    def _build(
        self, max_degree: int, block_rows: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Out-edges (u, v) with |u - v| <= δ and v uncovered, at most `max_degree` nearest per u.

        # Algorithm: the units are ordered uncovered first (in index order, so ties still go
        # to the lowest index), and tiles of covered units only are skipped: a pair of covered
        # units is no edge either way. Square tiles (I, J) with J >= I only, each one matrix
        # product of rows
        # [x, -|x|²/2, 1] by [x, 1, -|x|²/2] (= -|u - v|²/2, into a reused buffer). A pair is
        # kept if that value reaches the floor of u or of v: -(δ² + margin)/2 at first, then
        # the unit's max_degree-th best value found so far (a unit never needs more than its
        # max_degree nearest, besides itself), so a dense ball stops costing entries once its
        # nearest are known. Pairs within the margin of δ² are decided in float64. A row of a
        # tile with more than max_degree pairs keeps only those reaching its max_degree-th
        # best (ties kept), and so does a column; waiting entries are cut the same way when
        # they pile up. A row block is final once its tile row is done: each unit keeps itself
        # and its max_degree - 1 nearest by (float32 distance, index).
        """
        import torch

        n = len(self.x)
        if n == 0:
            z = np.zeros(0, np.int64)
            return z, z, np.zeros(0, bool)
        perm = np.concatenate([np.flatnonzero(~self.covered), np.flatnonzero(self.covered)])
        self._open = n_open = int((~self.covered).sum())
        self._perm = None if n_open in (0, n) else perm
        x, sq = self.x, self.sq
        if self._perm is not None:
            rows = torch.from_numpy(perm).to(x.device)
            x, sq = x[rows], sq[rows]
        b = block_rows or max(1, min(4096, math.isqrt(_BLOCK_ELEMENTS)))
        k = max_degree
        dev = x.device
        lo = -(self.delta2 + self.margin) * 0.5  # value >= lo: maybe within δ
        hi = -(self.delta2 - self.margin) * 0.5  # value >= hi: surely within δ
        half = (sq * -0.5)[:, None]
        one = torch.ones((n, 1), device=dev)
        floor = torch.full((n,), lo, device=dev)
        starts = list(range(0, n, b))
        pend: dict[int, list[tuple[torch.Tensor, ...]]] = {s: [] for s in starts}
        pend_size = dict.fromkeys(starts, 0)
        bufs: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        is_capped = np.zeros(n, dtype=bool)

        def add(block: int, src: torch.Tensor, dst: torch.Tensor, val: torch.Tensor) -> None:
            pend[block].append((src, dst, val))
            pend_size[block] += len(src)
            if pend_size[block] > 4 * k * min(b, n - block) + (1 << 20):
                pend[block] = [
                    _cut(*(torch.cat(p) for p in zip(*pend[block], strict=True)), k, floor)
                ]
                pend_size[block] = len(pend[block][0][0])

        def finish(i0: int) -> None:
            i1 = min(i0 + b, n)
            count = i1 - i0
            parts = pend.pop(i0)
            if parts:
                cut = _cut(*(torch.cat(p) for p in zip(*parts, strict=True)), k, floor)
                src, dst, val = (p.cpu().numpy() for p in cut)
            else:
                src = dst = np.zeros(0, np.int64)
                val = np.zeros(0, np.float32)
            src = src - i0
            # itself first, then by (distance, index): value descending, index ascending
            order = np.lexsort((dst, -val.astype(np.float64), src))
            src, dst = src[order], dst[order]
            first = np.searchsorted(src, np.arange(count))
            rank = np.arange(len(src)) - first[src]
            held = np.bincount(src, minlength=count)
            is_capped[i0:i1] = held + 1 > k
            keep = rank < k - 1
            own = np.arange(i0, i1, dtype=np.int64)
            s_all = np.concatenate([own, src[keep] + i0])
            d_all = np.concatenate([own, dst[keep]])
            order = np.lexsort((d_all, s_all))
            out[i0] = (s_all[order], d_all[order])

        # the diagonal tiles first: each unit's floor then starts from its own block's pairs;
        # no tile of covered units only (J >= I: I starts at or after the last uncovered unit)
        tiles = [(i0, i0) for i0 in starts if i0 < n_open] + [
            (i0, j0) for bi, i0 in enumerate(starts) for j0 in starts[bi + 1 :] if i0 < n_open
        ]
        last = {}
        for tile in tiles:  # a row block is complete after the last tile that holds it
            last[tile[0]] = last[tile[1]] = tile
        for i0, j0 in tiles:
            self._tile(x, i0, j0, b, k, lo, hi, half, one, floor, bufs, add)
            for block in {i0, j0}:
                if last[block] == (i0, j0):
                    finish(block)
        for block in starts:  # in no tile (no unit uncovered): itself only
            if block not in out:
                finish(block)
        src = np.concatenate([out[s][0] for s in starts])
        dst = np.concatenate([out[s][1] for s in starts])
        if self._perm is None:
            return src, dst, is_capped
        src, dst = perm[src], perm[dst]
        order = np.lexsort((dst, src))
        capped = np.zeros(n, dtype=bool)
        capped[perm] = is_capped
        return src[order], dst[order], capped

    def _tile(self, x, i0, j0, b, k, lo, hi, half, one, floor, bufs, add) -> None:  # noqa: ANN001
        """One tile (rows i0.., columns j0..) of `_build`, `x` in its order: pairs to `add`.

        Both ways, each only into an uncovered unit (an ordered index below `_open`).
        """
        import torch

        n, dev = len(x), x.device
        i1, j1 = min(i0 + b, n), min(j0 + b, n)
        xi = torch.cat([x[i0:i1], half[i0:i1], one[i0:i1]], 1)
        xj = torch.cat([x[j0:j1], one[j0:j1], half[j0:j1]], 1)
        shape = (i1 - i0, j1 - j0)
        if shape not in bufs:
            bufs[shape] = (
                torch.empty(shape, device=dev),
                torch.empty(shape, device=dev),
                torch.empty(shape, dtype=torch.bool, device=dev),
                torch.ones(shape, dtype=torch.bool, device=dev).triu_(1),
            )
        t, need, mask, upper = bufs[shape]
        torch.mm(xi, xj.T, out=t)  # -|u - v|²/2
        torch.minimum(floor[i0:i1, None], floor[None, j0:j1], out=need)
        torch.ge(t, need, out=mask)
        if j0 == i0:  # the diagonal tile: pairs u < v only
            mask &= upper
        r, c = mask.nonzero(as_tuple=True)
        if len(r) == 0:
            return
        val = t[r, c]
        border = (val < hi).nonzero().flatten()
        if len(border):
            rb, cb = r[border].cpu().numpy() + i0, c[border].cpu().numpy() + j0
            if self._perm is not None:
                rb, cb = self._perm[rb], self._perm[cb]
            far = _exact_sqdist(self.host[rb], self.host[cb]) > self.delta2
            if far.any():
                drop = border[torch.from_numpy(far).to(dev)]
                mask[r[drop], c[drop]] = False
                keep = torch.ones(len(r), dtype=torch.bool, device=dev)
                keep[drop] = False
                r, c, val = r[keep], c[keep], val[keep]
        open_c = max(0, min(j1, self._open) - j0)  # local columns (rows) of uncovered units
        open_r = max(0, min(i1, self._open) - i0)
        for a, z, lim, tt, mm, a0, z0 in (
            (r, c, open_c, t, mask, i0, j0),  # edges row → column
            (c, r, open_r, t.T, mask.T, j0, i0),  # edges column → row
        ):
            if lim == 0:  # every target covered: no edge this way
                continue
            va = val
            if lim < tt.shape[1]:  # some targets are covered: no edge into them
                into = z < lim
                a, z, va = a[into], z[into], val[into]
                mm = mm.clone()
                mm[:, lim:] = False
            keep = _tile_cut(tt, mm, a, va, k, floor, a0)
            keep &= va >= floor[a + a0]  # a pair only the other unit may need is not this one's
            add(a0, a[keep] + a0, z[keep] + z0, va[keep])

    def ball(self, i: int, near: torch.Tensor | None = None) -> np.ndarray:
        """The uncovered units within δ of unit `i` (exact), and `i` itself.

        Args:
            i: A unit.
            near: Units that may lie within δ of `i` (a superset of the uncovered ones that do,
                e.g. from a screened distance pass); None: all units are looked at.
        """
        import torch

        if not self.is_capped[i]:
            ball = self.out_dst[self.out_ptr[i] : self.out_ptr[i + 1]]
            return ball[~self.covered[ball]]
        rows = np.flatnonzero(~self.covered) if near is None else near.cpu().numpy()
        rows = rows[~self.covered[rows]]
        x, p = self.x, self.x[i]
        rt = torch.from_numpy(rows).to(x.device)
        d2 = (self.sq[rt] + (p * p).sum() - 2 * (x[rt] @ p)).clamp_min_(0).double().cpu().numpy()
        inside = d2 <= self.delta2 - self.margin
        border = np.flatnonzero(~inside & (d2 <= self.delta2 + self.margin))
        if len(border):
            pts = self.host[rows[border]]
            exact = _exact_sqdist(pts, np.broadcast_to(self.host[i], pts.shape))
            inside[border] = exact <= self.delta2
        out = rows[inside]
        if not self.covered[i] and not (out == i).any():
            out = np.append(out, i)
        return out

    def cover_from(self, i: int, near: torch.Tensor | None = None) -> int:
        """Cover the units within δ of unit `i` (exact); returns how many were new."""
        new = self.ball(i, near)
        if len(new) == 0:
            return 0
        self.covered[new] = True
        starts, ends = self.in_ptr[new], self.in_ptr[new + 1]
        lengths = ends - starts
        # Algorithm: gather every in-edge of the newly covered units at once (concatenated
        # ranges in_ptr[v]..in_ptr[v+1]) and take one off each source's count.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        idx = np.arange(int(lengths.sum())) + offsets
        sources = self.in_src[idx]
        np.subtract.at(self.count, sources, 1)
        if self.key is not None:
            np.subtract.at(self.key, sources, 1)
        self.total -= len(sources)
        return len(new)


def coverage_values(
    graph: _BallGraph, distance2: torch.Tensor | None, farthest: bool
) -> np.ndarray:
    """The coverage objective now: uncovered units per ball, ties broken by distance.

    A unit's value is its count plus `_tie(distance)` (< 1, growing with its distance to the
    dataset and the picks), so among equal counts the unit farthest from what is held wins:
    where δ-balls hold (nearly) only themselves, coverage picks as k-center does instead of
    in input order. Without `distance2`, the counts alone. Once all is covered with
    'farthest': each unit's distance to the dataset and the picks.
    """
    if farthest and graph.total == 0:
        return distance2.clamp(0.0, 16.0).sqrt().double().cpu().numpy()
    count = np.minimum(graph.count, 1) if graph.sparse else graph.count
    if distance2 is None:
        return count.astype(np.float64)
    return count + _tie(distance2.double().cpu().numpy())


def _tie(d2: np.ndarray) -> np.ndarray:
    """0.25 × distance (inf: no center yet, as 2, the largest between unit vectors): < 1."""
    d = np.sqrt(np.clip(d2, 0.0, 4.0))
    return 0.25 * np.where(np.isinf(d2), 2.0, d)


def coverage_reason(graph: _BallGraph, i: int, d: float, delta: float, farthest: bool) -> str:
    """A pick's reason, told before the pick covers its ball."""
    if farthest and graph.total == 0:
        return f"coverage: all covered at δ={delta:.3f}; farthest ({d:.3f})"
    if graph.sparse:
        return (
            f"coverage: δ={delta:.3f} balls too sparse to rank ({graph.mean_ball:.1f} per "
            f"ball); farthest with uncovered in its ball ({d:.3f})"
        )
    return f"coverage: {int(graph.count[i])} uncovered within δ={delta:.3f}"


def _greedy_coverage(
    cover: _Cover,
    x: torch.Tensor,
    graph: _BallGraph,
    *,
    strength: float,
    delta: float,
    farthest: bool,
    budget: int | None,
    budget_reason: str,
    min_distance: float | None,
    exclude_below: float | None,
) -> tuple[list[int], list[float], list[float], list[str], str]:
    """The greedy for coverage alone (strength > 0): the same picks as `_greedy_combined`.

    # Algorithm: while some ball holds an uncovered unit, the pick is the unit of most
    # uncovered units in its ball (ties: the farthest from what is held, then the lowest
    # index) that may be picked. A copy of the
    # counts (`graph.key`) is lowered with them as picks cover units; a unit picked, or found
    # too close to a center (its distance only falls), is pushed below zero for good, so each
    # pick is one argmax over the copy, not a rescoring of every unit. A capped pick's ball
    # comes from the k-center update's screened pass (no second pass over the embeddings).
    # Once everything is covered ('farthest'), each step is the combined greedy's own step.
    """
    from winnow.selection._kcenter import _loop_threads
    from winnow.selection._objectives import _TINY, _choose

    picked: list[int] = []
    dists: list[float] = []
    scores: list[float] = []
    reasons: list[str] = []
    cap = 2.0 * math.sqrt(float(cover.sq.max()))
    graph.key = graph.count.copy()
    blocked: list[float] = [t for t in (exclude_below, min_distance) if t is not None]
    limit = max(blocked) if blocked else None
    ball2 = graph.delta2 + graph.margin

    def log_scores(_d: np.ndarray) -> np.ndarray:
        values = coverage_values(graph, cover.d2, farthest)
        return np.zeros(len(values)) + strength * np.log(np.maximum(values, _TINY))

    with _loop_threads(x.device):
        while True:
            if budget is not None and len(picked) >= budget:
                return picked, dists, scores, reasons, budget_reason
            if not farthest and graph.total == 0:
                return picked, dists, scores, reasons, "covered"
            if graph.total == 0:
                i, log_score, d2i, stop = _choose(
                    cover,
                    log_scores,
                    cap=cap,
                    exclude_below=exclude_below,
                    min_distance=min_distance,
                )
                if i is None:
                    return picked, dists, scores, reasons, stop
            else:
                while True:
                    i = _best(graph.key, cover)
                    if i is None:
                        break
                    d2i = float(cover.d2[i])
                    if limit is None:
                        break
                    d = cap if math.isinf(d2i) else math.sqrt(max(d2i, 0.0))
                    if d >= limit:
                        break
                    if math.isinf(d2i):  # no center yet: every unit is as far, none may go
                        i = None
                        break
                    graph.key[i] -= _REMOVED  # too close to a center, and it only gets closer
                if i is None:
                    _, _, _, stop = _choose(
                        cover,
                        lambda d: np.full(len(d), -math.inf),
                        cap=cap,
                        exclude_below=exclude_below,
                        min_distance=min_distance,
                    )
                    return picked, dists, scores, reasons, stop
                c = graph.count[i] + _tie(np.array([d2i]))
                log_score = (np.zeros(1) + strength * np.log(np.maximum(c, _TINY)))[0]
            dist = math.sqrt(d2i) if math.isfinite(d2i) else math.inf
            picked.append(i)
            dists.append(dist)
            scores.append(math.exp(log_score))
            reasons.append(coverage_reason(graph, i, dist, delta, farthest))
            if graph.total > 0:
                near = cover.add(x[i], within2=ball2 if graph.is_capped[i] else None)
                graph.cover_from(i, near)
            else:
                cover.add(x[i])
            cover.take(i)
            graph.key[i] -= _REMOVED


def _best(key: np.ndarray, cover: _Cover) -> int | None:
    """The unit of the highest key (None when all are below zero); ties: farthest, then lowest.

    Matches `coverage_values` + the combined greedy's argmax: among equal counts the unit
    farthest from the dataset and the picks, and among those the lowest.
    """
    top = key.max()
    if top < 0:
        return None
    ties = np.flatnonzero(key == top)
    if len(ties) == 1:
        return int(ties[0])
    d2 = cover.d2[ties].double().cpu().numpy()
    return int(ties[np.argmax(_tie(d2))])


def _log_graph(graph: _BallGraph, delta: float, max_degree: int, seconds: float) -> None:
    n = len(graph.count)
    if graph.sparse:
        logger.info(
            "coverage: δ=%.4f leaves %.1f uncovered candidates per ball (< %.0f): too sparse "
            "to rank by; picking farthest first (k-center) among units with uncovered in their "
            "ball",
            delta,
            graph.mean_ball,
            SPARSE_BALL,
        )
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
        extra={
            "graph_s": seconds,
            "edges": graph.edges,
            "capped": graph.capped,
            "uncovered": int((~graph.covered).sum()),
        },
    )

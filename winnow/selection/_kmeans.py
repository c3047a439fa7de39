"""A small seeded k-means in torch (k-means++ seeding, Lloyd iterations), CPU or CUDA.

Used for pseudo-labels (the coverage strategy's automatic δ) and for TypiClust's clusters. It is
ours rather than scikit-learn's so that the core keeps no scikit-learn dependency and runs on
the selection's device; it fits on a seeded sample of at most `_FIT_ROWS` rows and then assigns
every row, so its cost is O(fit rows · k · D · iterations + N · k · D).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_FIT_ROWS = 20_000  # rows the centroids are fitted on (a seeded sample above this)
_BLOCK = 4096


def _assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row (lowest index on ties) and the squared distance to it."""
    import torch

    bias = (centroids * centroids).sum(1).mul_(-0.5)
    label = torch.empty(len(x), dtype=torch.int64, device=x.device)
    best = torch.empty(len(x), device=x.device)
    for s in range(0, len(x), _BLOCK):
        xb = x[s : s + _BLOCK]
        score = torch.addmm(bias, xb, centroids.T)  # x·c - |c|²/2: argmax = nearest centroid
        value, index = score.max(1)
        label[s : s + _BLOCK] = index
        best[s : s + _BLOCK] = ((xb * xb).sum(1) - 2 * value).clamp_min_(0)
    return label, best


def _kmeans(
    x: torch.Tensor, k: int, *, seed: int, iterations: int = 30, n_init: int = 1
) -> tuple[np.ndarray, torch.Tensor]:
    """Cluster the rows of `x` into at most `k` clusters.

    Args:
        x: (N, D) float32 rows on the compute device.
        k: Clusters wanted (capped at the number of rows).
        seed: Seed of the fit sample and of the k-means++ draws.
        iterations: Most Lloyd iterations (stops earlier when no label changes).
        n_init: Seedings tried; the fit with the lowest inertia on the fit rows is kept.

    Returns:
        (labels, centroids): int64 (N,) cluster of every row, and the (k', D) centroids.

    Notes:
        Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
    """
    import torch

    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng([seed, 7])
    fit_idx = np.arange(n) if n <= _FIT_ROWS else np.sort(rng.choice(n, _FIT_ROWS, replace=False))
    fx = x[torch.from_numpy(fit_idx).to(x.device)]
    best = None
    for _ in range(n_init):
        centroids = _fit(fx, k, rng, iterations)
        inertia = float(_assign(fx, centroids)[1].double().sum())
        if best is None or inertia < best[0]:
            best = (inertia, centroids)
    labels, _ = _assign(x, best[1])
    return labels.cpu().numpy(), best[1]


def _fit(fx: torch.Tensor, k: int, rng: np.random.Generator, iterations: int) -> torch.Tensor:
    """Centroids of one seeded k-means++ + Lloyd fit of the rows `fx`."""
    import torch

    # Algorithm: k-means++ seeding, each next seed drawn with probability ∝ d² to the seeds so far
    # (numpy draws, so the result does not depend on the device's random generator).
    first = int(rng.integers(len(fx)))
    chosen = [first]
    d2 = ((fx - fx[first]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2.double().cpu().numpy()
        total = p.sum()
        if not math.isfinite(total) or total <= 0:
            break  # every fit row coincides with a seed: fewer distinct clusters
        nxt = int(rng.choice(len(p), p=p / total))
        chosen.append(nxt)
        d2 = torch.minimum(d2, ((fx - fx[nxt]) ** 2).sum(1))
    centroids = fx[torch.tensor(chosen, device=fx.device)].clone()
    label = None
    for _ in range(iterations):
        new, _ = _assign(fx, centroids)
        if label is not None and torch.equal(new, label):
            break
        label = new
        sums = torch.zeros_like(centroids).index_add_(0, label, fx)
        counts = torch.bincount(label, minlength=len(centroids)).to(fx.dtype)
        alive = counts > 0  # an emptied cluster keeps its centroid
        centroids[alive] = sums[alive] / counts[alive, None]
    return centroids

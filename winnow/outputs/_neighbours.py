"""What each pick stands for: its nearest unpicked candidates and its removed exact duplicates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEIGHBOURS_PER_PICK = 3


@dataclass(frozen=True)
class Neighbours:
    """Per pick (rows in pick order): the nearest candidates that were not picked.

    Attributes:
        index: (P, k) candidate rows, nearest first; -1 where there are fewer than k.
        distance: (P, k) Euclidean distances between the L2-normalised embeddings (NaN pads).
        represented: (P,) candidates (picked or not) whose nearest pick this is, itself included.
    """

    index: np.ndarray
    distance: np.ndarray
    represented: np.ndarray


def nearest_unpicked(
    embedding: np.ndarray, picks: np.ndarray, k: int = NEIGHBOURS_PER_PICK
) -> Neighbours:
    """The `k` nearest unpicked candidates of every pick, and how many candidates each stands for.

    Args:
        embedding: (N, D) candidate embeddings.
        picks: (P,) candidate rows of the picks, in pick order.
        k: Neighbours per pick.

    Returns:
        The neighbours (scikit-learn's exact nearest-neighbour search).
    """
    from sklearn.neighbors import NearestNeighbors

    n, p = len(embedding), len(picks)
    index = np.full((p, k), -1, dtype=np.int64)
    distance = np.full((p, k), np.nan)
    represented = np.zeros(p, dtype=np.int64)
    if p == 0 or n == 0:
        return Neighbours(index, distance, represented)
    x = np.asarray(embedding, dtype=np.float32)
    unpicked = np.setdiff1d(np.arange(n), picks)
    if len(unpicked) and k:
        kk = min(k, len(unpicked))
        found = NearestNeighbors(n_neighbors=kk).fit(x[unpicked])
        dist, rows = found.kneighbors(x[picks])
        index[:, :kk], distance[:, :kk] = unpicked[rows], dist
    owner = NearestNeighbors(n_neighbors=1).fit(x[picks]).kneighbors(x, return_distance=False)
    represented[:] = np.bincount(owner[:, 0], minlength=p)
    return Neighbours(index, distance, represented)


def exact_duplicates(content_hash: np.ndarray, picks: np.ndarray) -> dict[int, list[int]]:
    """Pick position → unpicked candidate rows with the same content hash (removed duplicates).

    Args:
        content_hash: (N,) content hash of every candidate.
        picks: (P,) candidate rows of the picks, in pick order.
    """
    hashes = np.asarray(content_hash, dtype=object)
    position = {hashes[row]: pos for pos, row in enumerate(picks)}
    picked = set(int(r) for r in picks)
    out: dict[int, list[int]] = {}
    for row, h in enumerate(hashes):
        pos = position.get(h)
        if pos is not None and row not in picked:
            out.setdefault(pos, []).append(row)
    return out

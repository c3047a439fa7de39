"""Which candidates may be picked at all: filters, dataset members, duplicates, sequences.

Filter strategies (thresholds) drop candidates first; then the candidates the dataset already
holds (same sample id, or a bit-identical embedding) and exact duplicates (same content hash;
the first is kept). Near duplicates of the dataset are dropped once distances are known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from winnow.records import Candidates
from winnow.selection._registry import BaseStrategy, scorer_for

if TYPE_CHECKING:
    import torch


def _passing(filters: list[BaseStrategy], table: dict[str, Any], n: int) -> np.ndarray:
    """Candidates (rows) that every filter strategy keeps."""
    frame_ok = np.ones(n, dtype=bool)
    for strategy in filters:
        frame_ok &= scorer_for(strategy).keep(strategy, table)
    return frame_ok


def _exact_duplicates(members: np.ndarray, eligible: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Eligible units whose frames' content hashes repeat an earlier eligible unit's.

    Units with a frame without a hash are never duplicates.
    """
    dup = np.zeros(len(members), dtype=bool)
    seen: set[str] = set()
    for u in np.flatnonzero(eligible):
        parts = [hashes[r] for r in members[u]]
        if any(not h for h in parts):
            continue
        signature = "\0".join(str(h) for h in parts)
        if signature in seen:
            dup[u] = True
        seen.add(signature)
    return dup


def _far_from_dataset(d0: torch.Tensor, near: float) -> np.ndarray:
    """Units at least `near` from the dataset, given their squared distances `d0` to it."""
    return (d0 >= near * near).cpu().numpy()


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

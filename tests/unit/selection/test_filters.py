"""Which candidates may be picked: dataset members, exact duplicates, near duplicates, sequences."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.selection.conftest import make_candidates, unit
from winnow.selection import _filters


def test_a_unit_exactly_at_the_near_duplicate_distance_stays_eligible():
    import torch

    near = 0.5
    below = float(np.nextafter(np.float32(near * near), np.float32(0)))
    d0 = torch.tensor([near * near, below, 0.3, 0.0, float("inf")], dtype=torch.float32)
    assert _filters._far_from_dataset(d0, near).tolist() == [True, False, True, False, True]


@pytest.mark.parametrize(
    ("members", "eligible", "hashes", "want"),
    [
        # the first of equal hashes is kept; a frame without a hash is never a duplicate
        ([[0], [1], [2], [3], [4]], [1, 1, 1, 1, 1], ["a", "a", "", "a", ""], [0, 1, 0, 1, 0]),
        # an ineligible unit does not make later ones duplicates
        ([[0], [1], [2]], [0, 1, 1], ["a", "a", "a"], [0, 0, 1]),
        # a unit of frames: the whole ordered signature counts, and one hashless frame clears it
        ([[0, 1], [2, 3], [4, 5], [6, 7]], [1, 1, 1, 1], list("ababbaa") + [""], [0, 1, 0, 0]),
    ],
)
def test_exact_duplicates_keep_the_first_eligible_unit(members, eligible, hashes, want):
    dup = _filters._exact_duplicates(
        np.asarray(members), np.asarray(eligible, bool), np.asarray(hashes, dtype=object)
    )
    assert dup.tolist() == [bool(w) for w in want]


def test_row_hashes_are_equal_exactly_for_equal_rows():
    x = unit(9000, 16, 0)  # more rows than one hashing block (8,192)
    x[8500] = x[3]
    x[8600] = x[4]
    x[8600, 7] = np.nextafter(x[4, 7], np.float32(2))  # one ulp apart
    h = _filters._row_hashes(x)
    assert h[8500] == h[3] and h[8600] != h[4]
    assert len(np.unique(h)) == len(x) - 1
    assert (h == _filters._row_hashes(x.astype(np.float64))).all()  # hashed as float32 bits
    zeros = np.array([[0.0, -0.0], [-0.0, 0.0], [0.0, 0.0]], np.float32)
    assert len(set(_filters._row_hashes(zeros).tolist())) == 1  # -0 and +0 are the same value
    np.testing.assert_array_equal(_filters._row_hashes(x[8400:]), h[8400:])  # block-independent


def test_dataset_members_are_same_ids_or_bit_identical_embeddings():
    emb = unit(6, 8, 1).astype(np.float16)
    dataset = unit(4, 8, 2)
    dataset[1] = emb[2].astype(np.float32)  # the same vector, stored as float32
    dataset[2] = emb[3].astype(np.float32)
    dataset[2, 0] = np.nextafter(dataset[2, 0], np.float32(2))  # not bit-identical
    dataset[3] = emb[5].astype(np.float32)
    ids = np.array([f"id-{i}" for i in range(6)], dtype=object)
    got = _filters._dataset_members(emb, dataset, ids, ["id-0", "other"])
    assert got.tolist() == [True, False, True, False, False, True]
    by_embedding = _filters._dataset_members(emb, dataset, ids, None)
    assert by_embedding.tolist() == [False, False, True, False, False, True]
    assert not _filters._dataset_members(emb, dataset[:0], ids, []).any()
    assert _filters._dataset_members(emb[:0], dataset, ids[:0], ["id-0"]).shape == (0,)


def test_sequences_are_complete_groups_of_consecutive_frames_of_one_file():
    keys = ["b.mp4", "a.mp4", "b.mp4", "a.mp4", "b.mp4", "a.mp4", "c.mp4", "b.mp4", "a.mp4"]
    frames = [4, 9, 0, 3, 2, 6, 0, 6, 0]
    c = make_candidates(unit(len(keys), 4, 3), keys=keys, frames=frames)
    got = _filters._sequences(c, 2)
    # a.mp4 frames 0, 3, 6, 9 -> rows (8, 3), (5, 1); b.mp4 frames 0, 2, 4, 6 -> (2, 4), (0, 7);
    # c.mp4 has one frame: no group. Groups are ordered by their lowest row.
    assert got.tolist() == [[0, 7], [5, 1], [2, 4], [8, 3]]
    assert _filters._sequences(c, 3).tolist() == [[2, 4, 0], [8, 3, 5]]
    assert _filters._sequences(c, 4).tolist() == [[2, 4, 0, 7], [8, 3, 5, 1]]  # exactly 4 frames
    none = [_filters._sequences(c, 5), _filters._sequences(make_candidates(np.zeros((0, 4))), 2)]
    assert [(a.shape, a.dtype) for a in none] == [((0, 5), np.int64), ((0, 2), np.int64)]

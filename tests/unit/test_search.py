"""Exact search over a pool's stored embeddings: the same rows as brute force, in order."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow import search
from winnow.datapool import Datapool
from winnow.errors import ConfigError
from winnow.storage import LocalStore


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("block_rows", [7, 1000])
def test_exact_search_matches_brute_force_whatever_the_block(block_rows):
    x, q = _unit(300, 16, 0).astype(np.float16), _unit(3, 16, 1)
    rows, dist = search.ExactSearch(x, block_rows=block_rows).search(q, 10)
    full = np.sqrt(np.maximum(2 - 2 * x.astype(np.float32) @ q.T, 0)).min(axis=1)
    assert rows.tolist() == np.argsort(full, kind="stable")[:10].tolist()
    np.testing.assert_allclose(dist, full[rows], atol=1e-5)
    assert np.all(np.diff(dist) >= 0)


def test_search_pool_finds_a_samples_own_frame_first_and_filters_by_tag(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    files, cands = make_run(["cam/a.mp4", "cam/b.mp4"], frames=4)
    pool.commit(
        base=pool.load(),
        run_id="r1",
        files=files,
        samples=cands,
        tag=tag_for("t1", cands),
        model=MODEL,
    )
    snapshot = pool.load()
    queries = search.sample_queries(snapshot, ["cam/b.mp4#2"])
    hits = search.search_pool(snapshot, queries, k=3)
    assert (hits[0].key, hits[0].frame_index) == ("cam/b.mp4", 2)
    assert hits[0].distance < 0.02  # itself, up to float16 rounding of the stored rows
    assert len(hits) == 3 and [h.rank for h in hits] == [1, 2, 3]
    in_tag = search.search_pool(snapshot, queries, k=10, tag="t1")
    assert {h.sample_id for h in in_tag} == set(cands.sample_id[:2])
    assert all(h.tag == "t1" for h in in_tag)
    with pytest.raises(ConfigError, match="no sample of 'cam/c.mp4'"):
        search.sample_queries(snapshot, ["cam/c.mp4"])
    with pytest.raises(ConfigError, match="3-d but the pool's are 8-d"):
        search.search_pool(snapshot, np.ones((1, 3), np.float32), k=3)

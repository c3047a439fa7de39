"""Rebasing a run that lost the commit race: only what newer commits hold is dropped."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow.datapool import Datapool
from winnow.errors import ConfigError, ModelMismatch
from winnow.rebase import rebase_run
from winnow.records import ModelRecord, sample_id_for
from winnow.storage import LocalStore


def _commit(pool: Datapool, run_id: str, keys: list[str], seed: int = 0) -> None:
    files, cands = make_run(keys, seed=seed)
    pool.commit(
        pool.load(),
        run_id=run_id,
        files=files,
        samples=cands,
        tag=tag_for(run_id, cands),
        model=MODEL,
    )


def test_rebase_drops_exactly_the_files_the_winner_committed(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    _commit(pool, "seed", ["old.mp4"])
    base = pool.load()
    _commit(pool, "winner", ["a.mp4", "b.mp4"], seed=1)
    newer = pool.load()

    # The loser found a.mp4 too (same fingerprint), and c.mp4; it also reprocessed old.mp4
    # (process_all): a file its own base held is not the winner's and stays.
    files, cands = make_run(["a.mp4", "c.mp4", "old.mp4"], seed=2)
    rebased = rebase_run(base, newer, files=files, candidates=cands, model=MODEL)
    assert rebased.snapshot is newer
    assert rebased.dropped_keys == ("a.mp4",)
    assert [f.key for f in rebased.files] == ["c.mp4", "old.mp4"]
    assert set(rebased.candidates.key) == {"c.mp4", "old.mp4"}
    assert rebased.dropped_candidates == len(cands) - len(rebased.candidates) == 3
    assert not set(rebased.candidates.sample_id) & set(newer.samples().sample_id) - set(
        base.samples().sample_id
    )


def _rewritten(files, cands, key: str, fingerprint: str):
    """The run's files and candidates with `key` rewritten before the run listed it: a new
    fingerprint on its file row and its frames, so new sample ids."""
    files = [dataclasses.replace(f, fingerprint=fingerprint) if f.key == key else f for f in files]
    fps = np.where(cands.key == key, fingerprint, cands.fingerprint).astype(object)
    ids = [
        sample_id_for(k, fp, int(i))
        for k, fp, i in zip(cands.key, fps, cands.frame_index, strict=True)
    ]
    return files, dataclasses.replace(cands, fingerprint=fps, sample_id=np.array(ids, object))


def test_a_file_changed_since_the_winner_committed_it_keeps_every_frame(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    base = pool.load()
    _commit(pool, "winner", ["a.mp4", "b.mp4"])
    # The loser listed a.mp4 after it was rewritten (another fingerprint), b.mp4 as the winner
    # did, and c.mp4 that the winner never saw.
    files, cands = _rewritten(*make_run(["a.mp4", "b.mp4", "c.mp4"], seed=2), "a.mp4", "fp-new")
    rebased = rebase_run(base, pool.load(), files=files, candidates=cands, model=MODEL)
    assert rebased.dropped_keys == ("b.mp4",)
    assert [(f.key, f.fingerprint) for f in rebased.files] == [
        ("a.mp4", "fp-new"),
        ("c.mp4", "fp-c.mp4"),
    ]
    keep = cands.key != "b.mp4"
    assert list(rebased.candidates.sample_id) == list(cands.sample_id[keep])  # a.mp4's 3 frames
    assert set(rebased.candidates.fingerprint) == {"fp-new", "fp-c.mp4"}
    assert rebased.dropped_candidates == len(cands) - len(rebased.candidates) == 3


def test_dropped_candidates_counts_exactly_the_candidates_removed(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    base = pool.load()
    _commit(pool, "winner", ["a.mp4"])
    # The file row says a.mp4 changed, but its candidates are the frames the winner committed
    # (same key, fingerprint and sample ids): those go, and the count says so.
    files, cands = make_run(["a.mp4"])
    files = [dataclasses.replace(f, fingerprint="fp-other") for f in files]
    rebased = rebase_run(base, pool.load(), files=files, candidates=cands, model=MODEL)
    assert rebased.dropped_keys == () and len(rebased.files) == 1
    assert len(rebased.candidates) == 0
    assert rebased.dropped_candidates == len(cands) - len(rebased.candidates) == 3


@pytest.mark.parametrize(
    ("newer_version", "model", "error", "match"),
    [
        (0, MODEL, ConfigError, "only onto a later version"),
        (
            1,
            ModelRecord(name="resnet50", weights="none", input_size=64, dim=8),
            ModelMismatch,
            "reembed",
        ),
    ],
)
def test_rebase_refuses_an_older_pool_or_another_model(
    tmp_path, newer_version, model, error, match
):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    base = pool.load()
    _commit(pool, "winner", ["a.mp4"])
    files, cands = make_run(["b.mp4"])
    with pytest.raises(error, match=match):
        rebase_run(base, pool.load(newer_version), files=files, candidates=cands, model=model)

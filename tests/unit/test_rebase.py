"""Rebasing a run that lost the commit race: only what newer commits hold is dropped."""

from __future__ import annotations

import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow.datapool import Datapool
from winnow.errors import ConfigError, ModelMismatch
from winnow.rebase import rebase_run
from winnow.records import ModelRecord
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


def test_a_changed_file_is_kept(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    base = pool.load()
    _commit(pool, "winner", ["a.mp4"])
    files, cands = make_run(["a.mp4"])
    files = [type(f)(**{**f.__dict__, "fingerprint": "fp-other"}) for f in files]
    rebased = rebase_run(base, pool.load(), files=files, candidates=cands, model=MODEL)
    assert rebased.dropped_keys == () and len(rebased.files) == 1


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

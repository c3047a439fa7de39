"""Staged shards: an unreadable one is logged with its reason and redone, never silently; the
resume-and-stage loop every decode+embed step shares (winnow.staging)."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import MODEL, make_run
from winnow import engine, staging
from winnow.datapool import Datapool
from winnow.errors import StorageError
from winnow.records import Shard
from winnow.storage import LocalStore


def test_a_torn_staged_shard_is_logged_with_its_reason_and_redone(
    store_url, open_test_store, caplog
):
    pool = Datapool(open_test_store(store_url).child("pool"))
    files, cands = make_run(["a.mp4", "b.mp4"])
    pool.stage_shard("plan", "good", cands, files)
    pool.stage_shard("plan", "torn", cands, files)
    key = "staging/plan/shard-torn.parquet"
    pool.store.put(key, pool.store.get(key)[:100])  # a partial upload
    shards = [Shard(index=i, shard_id=s, files=()) for i, s in enumerate(("good", "torn", "never"))]
    with caplog.at_level(logging.WARNING, logger="winnow.datapool"):
        resumed = pool.resume("plan", shards)
    assert [s.shard_id for s in resumed.todo] == ["torn", "never"]
    assert len(resumed.candidates) == 1 and len(resumed.files) == 2
    (record,) = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert pool.store.url_for(key) in record.getMessage()
    assert "decoded again" in record.getMessage() and "ArrowInvalid" in record.getMessage()


# -- the resume-and-stage loop every decode+embed step runs (winnow.staging) -------------------


def _shard_result(shard: Shard, keys: list[str]) -> engine.ShardResult:
    files, cands = make_run(keys)
    return engine.ShardResult(shard=shard, candidates=cands, files=files)


def _embed_as(keys: list[str]):  # noqa: ANN202 - a ShardEmbedder
    """An `embed` that gives every shard the fake frames of `keys`."""
    return lambda todo: (_shard_result(s, keys) for s in todo)


def test_the_staging_loop_embeds_only_what_is_not_staged_and_stages_each_shard(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    files, cands = make_run(["a.mp4"])
    pool.stage_shard("plan", "good", cands, files)
    pool.stage_shard("plan", "torn", cands, files)
    key = "staging/plan/shard-torn.parquet"
    pool.store.put(key, pool.store.get(key)[:100])  # a partial upload
    shards = [Shard(index=i, shard_id=s, files=()) for i, s in enumerate(("good", "torn", "new"))]
    asked: list[list[str]] = []
    events: list[tuple[str, object]] = []

    def embed(todo):
        asked.append([s.shard_id for s in todo])
        for shard in todo:
            yield _shard_result(shard, [f"{shard.shard_id}.mp4"])

    done = staging.embed_and_stage(
        pool,
        "plan",
        shards,
        embed=embed,
        dim=MODEL.dim,
        on_resume=lambda ids, frames: events.append(("resume", len(ids))),
        on_shard=lambda r: events.append(("shard", r.shard.shard_id)),
    )
    assert asked == [["torn", "new"]]  # the torn one is embedded again
    assert events == [("resume", 1), ("shard", "torn"), ("shard", "new")]
    assert (done.reused, done.staged, done.frames) == (["good"], ["torn", "new"], 6)
    assert pool.staged_shard_ids("plan") == {"good", "torn", "new"}
    assert pool.load_staged("plan", "torn") is not None  # staged whole this time
    assert [f.key for f in done.files] == ["a.mp4", "torn.mp4", "new.mp4"]
    assert len(done.candidates) == 9 and done.candidates.embedding.shape[1] == MODEL.dim


def test_the_staging_loop_without_collecting_skips_staged_ids_and_keeps_nothing(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    files, cands = make_run(["a.mp4"])
    pool.stage_shard("plan", "done", cands, files)
    shards = [Shard(index=i, shard_id=s, files=()) for i, s in enumerate(("done", "todo"))]
    done = staging.embed_and_stage(
        pool, "plan", shards, embed=_embed_as(["b.mp4"]), dim=MODEL.dim, collect=False
    )
    assert (done.reused, done.staged, done.candidates, done.files) == (["done"], ["todo"], None, [])
    assert pool.staged_shard_ids("plan") == {"done", "todo"}


def test_the_staging_loop_merges_a_long_videos_time_ranges_across_shards(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    shards = [Shard(index=i, shard_id=f"s{i}", files=()) for i in range(2)]
    done = staging.embed_and_stage(pool, "plan", shards, embed=_embed_as(["long.mp4"]), dim=8)
    (merged,) = done.files
    assert merged.key == "long.mp4" and merged.frames_sampled == 6


def test_the_staging_loop_raises_storage_errors_instead_of_redoing_shards(tmp_path):
    class Refusing(LocalStore):
        def get(self, key):
            raise StorageError(f"access denied: {key}")

    pool = Datapool(LocalStore(tmp_path / "pool"))
    files, cands = make_run(["a.mp4"])
    pool.stage_shard("plan", "s0", cands, files)
    refusing = Datapool(Refusing(tmp_path / "pool"))
    shards = [Shard(index=0, shard_id="s0", files=())]
    with pytest.raises(StorageError, match="access denied"):
        staging.embed_and_stage(refusing, "plan", shards, embed=lambda todo: iter(()), dim=4)


def test_the_staging_loop_with_nothing_gives_empty_candidates_of_the_model_width(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    done = staging.embed_and_stage(pool, "plan", [], embed=lambda todo: iter(()), dim=7)
    assert done.candidates.embedding.shape == (0, 7) and done.files == []

"""Staged shards: an unreadable one is logged with its reason and redone, never silently."""

from __future__ import annotations

import logging

from tests.conftest import make_run
from winnow.datapool import Datapool
from winnow.records import Shard


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

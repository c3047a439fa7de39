"""Garbage does not accumulate: abandoned staging and lost commits' parts are removed when old,
and nothing a manifest names (nor a live run's recent staging) is ever touched. Both backends."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from tests.conftest import MODEL, make_run, tag_for
from winnow import datapool, gc
from winnow.datapool import Datapool
from winnow.errors import ConfigError, PoolCorrupt

AGE_S = 1.5  # "old" in these tests: objects written before a sleep longer than this


def _commit(pool: Datapool, keys: list[str], seed: int, *, replace: bool = False) -> int:
    base = pool.load()
    files, cands = make_run(keys, seed=seed)
    tag = tag_for(f"t{seed}", cands, parent=base.latest_tag.name if base.latest_tag else None)
    return pool.commit(
        base,
        run_id=f"run{seed}",
        files=files,
        samples=cands,
        tag=tag,
        model=MODEL,
        replace_samples=replace,
    )


def _stage(pool: Datapool, plan: str, shard: str, seed: int) -> None:
    files, cands = make_run([f"{plan}/{shard}.mp4"], seed=seed)
    pool.stage_shard(plan, shard, cands, files)


@pytest.fixture
def pool(store_url, open_test_store) -> Datapool:
    """A pool with two committed versions; version 2 replaced the samples table, so version
    1's samples part is named only by the older manifest."""
    p = Datapool(open_test_store(store_url).child("pool"))
    _commit(p, ["a.mp4", "b.mp4"], seed=1)
    _commit(p, ["c.mp4"], seed=2, replace=True)
    return p


def _named(pool: Datapool) -> set[str]:
    return pool.named_parts()


@pytest.mark.slow
def test_old_garbage_goes_recent_garbage_and_named_parts_stay(pool):
    named = _named(pool)
    v1 = json.loads(pool.store.get("versions/00000000000000000001.json"))["parts"]["samples"]
    assert v1 and set(v1) <= named  # named by version 1 only, after version 2's replace
    # Old garbage: an abandoned plan (parameters changed after a crash) and a lost commit.
    _stage(pool, "oldplan", "s1", seed=3)
    _stage(pool, "oldplan", "s2", seed=4)
    pool.store.put("staging/oldplan/groups/g-0.json", b"{}")
    pool.store.put("parts/lostrun-0000/files.parquet", b"PAR1 lost")
    pool.store.put("parts/lostrun-0000/samples.parquet", b"PAR1 lost")
    time.sleep(AGE_S + 0.5)
    # Recent: a live run's staging and an in-flight commit's parts (manifest not yet written).
    _stage(pool, "liveplan", "s1", seed=6)
    pool.store.put("parts/inflight-1111/files.parquet", b"PAR1 inflight")
    before = {i.key for i in pool.store.list()}

    dry = gc.collect_garbage(pool, older_than_s=AGE_S, dry_run=True)
    assert {i.key for i in pool.store.list()} == before  # a dry run deletes nothing
    report = gc.collect_garbage(pool, older_than_s=AGE_S)
    assert (dry.staged, dry.parts) == (report.staged, report.parts) and dry.dry_run

    after = {i.key for i in pool.store.list()}
    assert sorted(report.staged) == [
        "staging/oldplan/groups/g-0.json",
        "staging/oldplan/shard-s1.parquet",
        "staging/oldplan/shard-s2.parquet",
    ]
    assert sorted(report.parts) == [
        "parts/lostrun-0000/files.parquet",
        "parts/lostrun-0000/samples.parquet",
    ]
    assert not {k for k in after if "oldplan" in k or "lostrun" in k}
    assert "staging/liveplan/shard-s1.parquet" in after  # a live run's staging is kept
    assert "parts/inflight-1111/files.parquet" in after  # so is an in-flight commit
    assert report.kept_recent == 2
    assert named <= after  # every part any manifest names is still there
    assert after == before - set(report.staged) - set(report.parts)
    # Every version still loads whole, the older one included.
    assert len(pool.load(1).samples()) == 6 and len(pool.load(2).samples()) == 3
    assert [t.name for t in pool.load().tags] == ["t1", "t2"]


@pytest.mark.slow
def test_a_named_part_is_never_removed_however_old(pool):
    named = _named(pool)
    time.sleep(AGE_S + 0.5)
    report = gc.collect_garbage(pool, older_than_s=0, now=time.time() + 365 * 86400)
    assert report.parts == [] and report.staged == []
    assert named <= {i.key for i in pool.store.list()}


@pytest.mark.slow
def test_a_part_only_an_older_version_names_survives_gc(store_url, open_test_store):
    # Compaction: the commit after COMPACT_AFTER_PARTS parts names one merged part per table,
    # so the folders of every earlier commit are named only by the older manifests. Each of
    # them still needs its parts to load, however old they are.
    pool = Datapool(open_test_store(store_url).child("pool"))
    commits = datapool.COMPACT_AFTER_PARTS + 1
    for seed in range(commits):
        _commit(pool, [f"v{seed}.mp4"], seed=seed)
    latest = pool.load()
    newest = {k for keys in latest.manifest.parts.values() for k in keys}
    assert latest.version == commits and len(latest.manifest.parts["samples"]) == 1
    older_only = pool.named_parts() - newest
    folders = {k.rsplit("/", 1)[0] for k in older_only}
    assert len(folders) == commits - 1  # every earlier commit's folder, none the newest names

    report = gc.collect_garbage(pool, older_than_s=0, now=time.time() + 365 * 86400)
    assert report.parts == [] and report.staged == []
    assert older_only <= {i.key for i in pool.store.list("parts")}
    for version in range(1, commits + 1):  # every version still loads whole
        snapshot = pool.load(version)
        assert len(snapshot.samples()) == 3 * version and len(snapshot.tags) == version


def test_staged_exports_go_only_when_their_run_never_committed(pool):
    # Run "r" committed tag t1 but died before publishing its exports: the next run publishes
    # them, so no age removes them. "lostrun" never committed: its exports are garbage.
    assert {t.run_id for t in pool.load().tags} == {"r"}
    kept = ["staging/exports/r/tags/t1/report.html", "staging/exports/r/tags/t1/a.csv"]
    lost = ["staging/exports/lostrun/tags/t9/report.html"]
    for key in kept + lost:
        pool.store.put(key, b"x")
    report = gc.collect_garbage(pool, older_than_s=0, now=time.time() + 365 * 86400)
    assert report.staged == lost
    assert {i.key for i in pool.store.list("staging")} == set(kept)


@pytest.mark.slow
def test_a_plan_that_is_still_staging_is_kept_whole(pool):
    _stage(pool, "longrun", "s1", seed=3)
    time.sleep(AGE_S + 0.5)
    _stage(pool, "longrun", "s2", seed=4)  # the run is still working: its plan is live
    report = gc.collect_garbage(pool, older_than_s=AGE_S)
    assert report.staged == [] and report.kept_recent == 2
    assert pool.staged_shard_ids("longrun") == {"s1", "s2"}


def test_an_unreadable_manifest_stops_gc_before_anything_is_removed(pool):
    pool.store.put("parts/lostrun-0000/files.parquet", b"PAR1 lost")
    pool.store.put("versions/00000000000000000009.json", b"{not json")
    with pytest.raises(PoolCorrupt, match="00000000000000000009.json is not readable"):
        gc.collect_garbage(pool, older_than_s=0, now=time.time() + 86400)
    assert pool.store.exists("parts/lostrun-0000/files.parquet")


def test_automatic_collection_is_throttled_and_configurable(pool, monkeypatch):
    pool.store.put("parts/lostrun-0000/files.parquet", b"PAR1 lost")
    now = time.time() + 8 * 86400  # the lost part is 8 days old then
    monkeypatch.delenv(gc.OLDER_THAN_ENV, raising=False)
    first = gc.collect_garbage_if_due(pool, now=now)
    assert first is not None and first.parts == ["parts/lostrun-0000/files.parquet"]
    assert json.loads(pool.store.get("gc.json"))["removed"] == 1
    pool.store.put("parts/lostrun-2222/files.parquet", b"PAR1 lost")
    assert gc.collect_garbage_if_due(pool, now=now + 3600) is None  # ran an hour ago
    monkeypatch.setenv(gc.OLDER_THAN_ENV, "off")
    assert gc.collect_garbage_if_due(pool, now=now + 30 * 86400) is None
    assert pool.store.exists("parts/lostrun-2222/files.parquet")
    monkeypatch.setenv(gc.OLDER_THAN_ENV, "10d")  # 9 days old at now + 1 day: kept
    later = gc.collect_garbage_if_due(pool, now=now + 86400)
    assert later is not None and later.parts == [] and later.kept_recent == 1
    monkeypatch.setenv(gc.OLDER_THAN_ENV, "bogus")  # logged, never raised
    assert gc.collect_garbage_if_due(pool, now=now + 90 * 86400) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604800), ("36h", 129600), ("90m", 5400), ("10", 10), ("1w", 604800)],
)
def test_durations(text, seconds):
    assert gc.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7 days", "-1d", "d"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ConfigError, match="invalid duration"):
        gc.parse_duration(text)


@pytest.mark.slow
def test_winnow_gc_command(store_url, s3_endpoint, open_test_store):
    from flows.cli import app

    pool = Datapool(open_test_store(store_url).child("pool"))
    _commit(pool, ["a.mp4"], seed=1)
    _stage(pool, "oldplan", "s1", seed=3)
    pool.store.put("parts/lostrun-0000/files.parquet", b"PAR1 lost")
    time.sleep(2.2)
    output = store_url
    args = ["gc", "--output", output, "--older-than", "2s"]
    if output.startswith("s3://"):
        args += ["--endpoint-url", s3_endpoint]
    runner = CliRunner()
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 1 staged objects of abandoned plans and 1 parts" in dry.output
    assert "staging/oldplan/shard-s1.parquet" in dry.output
    assert pool.store.exists("parts/lostrun-0000/files.parquet")
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "removed 1 staged objects" in done.output
    assert not pool.store.exists("parts/lostrun-0000/files.parquet")
    assert pool.load().version == 1 and len(pool.load().samples()) == 3
    bad = runner.invoke(app, ["gc", "--output", output, "--older-than", "soon"])
    assert bad.exit_code != 0

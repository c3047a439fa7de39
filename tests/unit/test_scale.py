"""Scale-out core: group planning, group descriptions, the fan-out rounds, the model cache key."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from tests.conftest import CountingStore, make_run
from winnow import scale
from winnow.datapool import Datapool
from winnow.embedding import EmbeddingOptions
from winnow.errors import ConfigError
from winnow.media import FrameOptions
from winnow.records import FileRef, Shard
from winnow.storage import LocalStore


def _shards(n: int, files: int = 2) -> list[Shard]:
    out = []
    for i in range(n):
        refs = tuple(
            FileRef(key=f"v{i}-{j}.mp4", fingerprint=f"fp{i}{j}", size_bytes=9, kind="video")
            for j in range(files)
        )
        out.append(Shard(index=i, shard_id=Shard.id_for(refs), files=refs))
    return out


@pytest.mark.parametrize(("n", "runs"), [(10, 4), (10, 1), (3, 8), (64, 16), (1, 1)])
def test_groups_cover_every_shard_once_in_order_and_are_balanced(n, runs):
    shards = _shards(n)
    groups = scale.plan_groups(shards, runs=runs)
    assert len(groups) == min(n, runs)
    flat = [s for g in groups for s in g.shards]
    assert flat == shards
    sizes = [len(g.shards) for g in groups]
    assert max(sizes) - min(sizes) <= 1
    assert len({g.group_id for g in groups}) == len(groups)
    assert scale.plan_groups(shards, runs=runs) == groups  # deterministic


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"mode": "dask"}, "needs scale.address"),
        ({"mode": "dask", "address": "127.0.0.1:8786"}, "use tcp://"),
        ({"runs": 0}, "greater than or equal to 1"),
        ({"deployment": "no-slash"}, "should match pattern"),
    ],
)
def test_bad_scale_options_are_rejected(value, match):
    with pytest.raises(ValueError, match=match):
        scale.ScaleOptions(**value)


def test_group_description_round_trips_without_secrets(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    (group,) = scale.plan_groups(_shards(3), runs=1)
    spec = scale.GroupSpec(
        plan_hash="p1",
        group_id=group.group_id,
        source="s3://b/raw",
        shards=group.shards,
        frames={"every_n_frames": 5},
        embedding={"model": "resnet18"},
    )
    key = scale.write_group(pool, spec)
    assert key == f"staging/p1/groups/{group.group_id}.json"
    assert scale.read_group(pool, key) == spec
    assert b"secret" not in pool.store.get(key).lower()
    with pytest.raises(ConfigError, match="does not exist"):
        scale.read_group(pool, "staging/p1/groups/nope.json")
    scale.clear_groups(pool, "p1")
    assert not list(pool.store.list("staging/p1/groups"))


def test_fan_out_resubmits_the_shards_a_failed_group_did_not_stage():
    shards = _shards(10)
    staged: set[str] = set()
    lock = threading.Lock()
    calls: list[scale.Group] = []

    def submit(group: scale.Group) -> str | None:
        with lock:
            calls.append(group)
        first_round_loser = group.group_id.startswith("r0-001")
        for i, shard in enumerate(group.shards):
            if first_round_loser and i == 1:
                return "Crashed: killed"  # staged one shard, lost the rest
            with lock:
                staged.add(shard.shard_id)
        return None

    done = scale.fan_out(
        shards, runs=3, retries=1, submit=submit, staged_ids=lambda: set(staged), poll_s=0.01
    )
    assert staged == {s.shard_id for s in shards}
    assert done.rounds == 2 and not done.missing
    assert list(done.failed) == [g.group_id for g in calls if g.group_id.startswith("r0-001")]
    lost = [s for g in calls if g.group_id.startswith("r0-001") for s in g.shards][1:]
    assert [s for g in calls if g.group_id.startswith("r1-") for s in g.shards] == lost


def test_fan_out_leaves_what_is_still_missing_to_the_caller():
    shards = _shards(4)
    done = scale.fan_out(
        shards,
        runs=2,
        retries=2,
        submit=lambda g: (_ for _ in ()).throw(RuntimeError("no workers")),
        staged_ids=set,
        poll_s=0.01,
    )
    assert done.rounds == 3 and done.missing == shards
    assert all("RuntimeError: no workers" in why for why in done.failed.values())


def _result(group_id: str, frames: int) -> scale.GroupResult:
    return scale.GroupResult(group_id=group_id, host="gpu-1", pid=7, ppid=1, frames=frames)


def test_read_results_returns_every_childs_result_and_reads_each_once(tmp_path):
    store = CountingStore(LocalStore(tmp_path / "pool"))
    pool = Datapool(store)
    assert scale.read_results(pool, "p1") == []  # no group yet
    groups = scale.plan_groups(_shards(6), runs=3)
    job = scale.EmbedJob("p1", "raw", FrameOptions(), EmbeddingOptions())
    keys = [scale.write_group(pool, job.describe(g)) for g in groups]
    other = dataclasses.replace(job, plan_hash="p2").describe(groups[0])
    scale.write_result(pool, scale.write_group(pool, other), _result("of-p2", 99))
    assert scale.read_results(pool, "p1") == []  # descriptions are no results; p2 is not p1
    written = [_result(g.group_id, 10 * (i + 1)) for i, g in enumerate(groups)]
    for key, result in zip(keys[:2], written[:2], strict=True):
        scale.write_result(pool, key, result)

    cache: dict[str, scale.GroupResult] = {}
    store.reads.clear()
    assert scale.read_results(pool, "p1", cache) == written[:2]
    assert sorted(cache) == sorted(scale.result_key(k) for k in keys[:2])
    scale.write_result(pool, keys[2], written[2])  # the last child ends
    store.reads.clear()
    assert scale.read_results(pool, "p1", cache) == written  # every result, in key order
    assert [r for r in store.reads if r[0] == "get"] == [("get", scale.result_key(keys[2]))]


def test_embed_on_children_reports_the_result_of_every_child(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    shards = _shards(6)
    job = scale.EmbedJob("p1", "raw", FrameOptions(), EmbeddingOptions())
    progress: list[tuple[int, int]] = []

    def run_child(key: str, group: scale.Group) -> None:  # a child: stage, then report
        for shard in group.shards:
            files, cands = make_run([f.key for f in shard.files])
            pool.stage_shard("p1", shard.shard_id, cands, files)
        scale.write_result(pool, key, _result(group.group_id, 3 * group.files))

    done = scale.embed_on_children(
        pool,
        shards,
        job,
        runs=3,
        retries=0,
        run_child=run_child,
        on_progress=lambda n, frames: progress.append((n, frames)),
        poll_s=0.01,
    )
    assert sorted(r.group_id for r in done.results) == sorted(g.group_id for g in done.groups)
    assert len(done.results) == 3 and sum(r.frames for r in done.results) == 3 * 12
    assert progress[-1] == (6, 36)  # the last poll saw every shard and every child's frames
    assert not list(pool.store.list("staging/p1/groups"))  # descriptions and results cleared

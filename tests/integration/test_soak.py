"""Soak: 20 consecutive runs of the real flow with new files arriving between them. After each:
no file twice, no sample lost, every tag's members exist, the dataset is the union of the tags;
the time a run takes does not grow with the pool."""

from __future__ import annotations

import os
import statistics
import time

import pytest

from tests.integration.conftest import run
from winnow import demo
from winnow.datapool import Datapool
from winnow.records import kind_of
from winnow.storage import LocalStore

RUNS = 20
SETTINGS = {
    "frames": {"every_n_frames": 3},
    "embedding": {"weights": "none", "input_size": 32, "batch_size": 16},
    "selection": {"n_samples": 3},
    "shard_files": 2,
}


def _arrive(raw: LocalStore, folder, n: int) -> None:
    """New files of run `n`: two tiny stills and one tiny 9-frame video."""
    for i in range(2):
        path = folder / f"batch{n:02d}" / f"still{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        demo.make_image(path, width=48, height=32, seed=100 * n + i, scene=n)
    demo.make_video(
        folder / f"batch{n:02d}" / "clip.mp4", n_frames=9, width=48, height=32, seed=n, scene=n
    )


def _check_pool(pool: Datapool, raw: LocalStore, run_n: int) -> None:
    snap = pool.load()
    files = snap.files.to_pylist()
    keys = [f["key"] for f in files]
    assert len(keys) == len(set(keys)), "a file was processed twice"
    listed = {i.key for i in raw.list() if kind_of(i.key)}
    assert set(keys) == listed, "a listed file is missing from the pool (or one too many)"
    assert all(f["status"] == "ok" for f in files)
    samples = snap.samples()
    ids = list(samples.sample_id)
    assert len(ids) == len(set(ids)), "a sample was stored twice"
    per_key = {}
    for k in samples.key:
        per_key[k] = per_key.get(k, 0) + 1
    for f in files:  # every sampled frame is a stored sample: none lost
        assert per_key.get(f["key"], 0) == f["frames_sampled"], f["key"]
    assert len(snap.tags) == run_n and [t.name for t in snap.tags][-1] == f"run-{run_n:04d}"
    stored = set(ids)
    union: set[str] = set()
    for t in snap.tags:
        assert set(t.sample_ids) <= stored, f"tag {t.name} names a sample that does not exist"
        assert len(t.sample_ids) == len(set(t.sample_ids))
        assert not union & set(t.sample_ids), f"tag {t.name} re-picked a dataset member"
        union |= set(t.sample_ids)
    assert snap.dataset_ids == union
    assert set(snap.dataset().sample_id) == union  # the dataset read back is the union


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_twenty_runs_lose_nothing_repeat_nothing_and_do_not_slow_down(tmp_path, record_property):
    folder = tmp_path / "raw"
    folder.mkdir()
    raw, out = LocalStore(folder), tmp_path / "out"
    pool = Datapool(LocalStore(out).child("pool"))
    # A crashed run's staging under parameters that were changed since, 8 days old: the
    # automatic collection after the first commit removes it.
    pool.stage_shard("abandoned0000000", "x", *_empty_shard())
    old = time.time() - 8 * 86400
    abandoned = out / "pool" / "staging" / "abandoned0000000" / "shard-x.parquet"
    os.utime(abandoned, (old, old))

    seconds: list[float] = []
    for n in range(1, RUNS + 1):
        _arrive(raw, folder, n)
        start = time.perf_counter()
        summary = run(str(folder), str(out), **SETTINGS)
        seconds.append(time.perf_counter() - start)
        assert summary["files_new"] == 3 and summary["files_known"] == 3 * (n - 1)
        assert summary["selected"] == 3 and summary["tag"] == f"run-{n:04d}"
        _check_pool(pool, raw, n)
        if n == 1:
            assert not abandoned.exists()
        print(f"run {n:2d}: {seconds[-1]:.2f} s")
    record_property("run_seconds", [round(s, 2) for s in seconds])
    first, last = statistics.mean(seconds[1:6]), statistics.mean(seconds[-5:])
    print(f"runs 2-6 mean {first:.2f} s, runs 16-20 mean {last:.2f} s, ratio {last / first:.2f}")
    record_property("first5_mean_s", round(first, 2))
    record_property("last5_mean_s", round(last, 2))
    assert last <= 1.5 * first, seconds
    # The 21st run finds nothing new and changes nothing.
    again = run(str(folder), str(out), **SETTINGS)
    assert again["nothing_new"] and pool.load().version == RUNS


def _empty_shard():
    from tests.conftest import make_run

    files, cands = make_run(["abandoned.mp4"])
    return cands, files

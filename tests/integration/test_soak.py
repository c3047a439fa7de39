"""Soak: 20 consecutive runs of the real flow with new files arriving between them. After each:
no file twice, no sample lost, every tag's members exist, the dataset is the union of the tags;
the steps of runs 16-20 (loading the pool to the commit) take at most 1.5 times as long as those
of runs 2-6. Those pools stay small (60 files at the end); what a big pool costs a run is
measured apart: the same runs against a pool of 100,000 files and against one of 60 files with
the same dataset."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest

from tests.integration.conftest import run
from winnow import demo
from winnow.datapool import Datapool
from winnow.embedding import EmbeddingOptions, model_record
from winnow.records import Candidates, FileResult, ModelRecord, TagRecord, kind_of
from winnow.storage import LocalStore

RUNS = 20
SETTINGS = {
    "frames": {"every_n_frames": 3},
    "embedding": {"weights": "none", "input_size": 32, "batch_size": 16},
    "selection": {"n_samples": 3},
    "shard_files": 2,
}


def _arrive(folder, n: int) -> None:
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

    seconds: list[float] = []  # a run's steps (see _steps_seconds)
    wall: list[float] = []
    for n in range(1, RUNS + 1):
        _arrive(folder, n)
        start = time.perf_counter()
        summary = run(str(folder), str(out), **SETTINGS)
        wall.append(time.perf_counter() - start)
        seconds.append(_steps_seconds(summary))
        assert summary["files_new"] == 3 and summary["files_known"] == 3 * (n - 1)
        assert summary["selected"] == 3 and summary["tag"] == f"run-{n:04d}"
        _check_pool(pool, raw, n)
        if n == 1:
            assert not abandoned.exists()
        print(f"run {n:2d}: steps {seconds[-1]:.2f} s, flow run {wall[-1]:.2f} s")
    record_property("run_steps_seconds", [round(s, 3) for s in seconds])
    record_property("run_wall_seconds", [round(s, 2) for s in wall])
    # Run 1 is left out: it pays the process's first flow run (imports, first use of the model).
    # The best of five, not the mean: on this shared 2-core machine one run in twenty can take
    # 2.5x its neighbours (1.43 s after 0.59 s), which alone moved the mean of five by half
    # (ratios 1.06 to 1.73 on one commit); a cost that grows with the pool raises the best too.
    first, last = min(seconds[1:6]), min(seconds[-5:])
    print(f"steps: runs 2-6 best {first:.2f} s, runs 16-20 {last:.2f} s, ratio {last / first:.2f}")
    record_property("runs_2_6_steps_best_s", round(first, 3))
    record_property("runs_16_20_steps_best_s", round(last, 3))
    assert last <= 1.5 * first, seconds
    # The 21st run finds nothing new and changes nothing.
    again = run(str(folder), str(out), **SETTINGS)
    assert again["nothing_new"] and pool.load().version == RUNS


def _steps_seconds(summary: dict) -> float:
    """A run's steps, from loading the pool to its commit: the summary's stage seconds.

    Not the flow run's wall time: Prefect ends a flow run on a whole second from its start
    (runs of 0.5 s and 0.9 s of work both take about 1.1 s, one of 1.01 s takes 2.1 s), a
    step of a second that hides any difference smaller than that.
    """
    return sum(summary["seconds"].values())


def _empty_shard():
    from tests.conftest import make_run

    files, cands = make_run(["abandoned.mp4"])
    return cands, files


BIG_POOL_FILES = 100_000
DATASET = 60  # tagged samples of both pools (a pool's dataset after 20 soak runs)
TIMED_PAIRS = 5
# A run's steps, from loading the pool to its commit, take at most this many times as long
# against the big pool as against a pool of only the DATASET files (medians, alternated).
BIG_POOL_RATIO = 1.5


def _pool_of(pool: Datapool, model: ModelRecord, n_files: int) -> None:
    """One commit of `n_files` stills of one sample each, the first DATASET of them tagged.

    The first rows are the same whatever `n_files` (one seeded stream), so pools of any size
    hold the same dataset.
    """
    keys = np.array([f"history/cam{i % 97:02d}/{i:08d}.jpg" for i in range(n_files)], object)
    fingerprints = np.array([f"mtime:{i}:1000" for i in range(n_files)], dtype=object)
    emb = np.random.default_rng(0).standard_normal((n_files, model.dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = np.array([f"h{i:08d}" for i in range(n_files)], dtype=object)
    samples = Candidates(
        sample_id=ids,
        key=keys,
        fingerprint=fingerprints,
        content_hash=ids,
        frame_index=np.zeros(n_files, np.int64),
        pts_seconds=np.zeros(n_files),
        width=np.full(n_files, 48, np.int32),
        height=np.full(n_files, 32, np.int32),
        brightness=np.full(n_files, 0.5, np.float32),
        contrast=np.full(n_files, 0.2, np.float32),
        sharpness=np.full(n_files, 10.0, np.float32),
        embedding=emb.astype(np.float16),
        run_id=np.full(n_files, "", dtype=object),
    )
    files = [
        FileResult(key=k, fingerprint=f, size_bytes=1000, kind="image", status="ok")
        for k, f in zip(keys, fingerprints, strict=True)
    ]
    tag = TagRecord(
        name="history",
        parent=None,
        run_id="history",
        created="2026-01-01T00:00:00+00:00",
        parameters="{}",
        counts="{}",
        sample_ids=tuple(ids[:DATASET]),
    )
    pool.commit(pool.load(), run_id="history", files=files, samples=samples, tag=tag, model=model)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_runs_steps_take_at_most_1_5_times_as_long_against_a_pool_of_100k_files(
    tmp_path, record_property
):
    model = model_record(EmbeddingOptions.model_validate(SETTINGS["embedding"]))
    outputs = {"small": tmp_path / "small", "big": tmp_path / "big"}
    started = time.perf_counter()
    for name, n_files in (("small", DATASET), ("big", BIG_POOL_FILES)):
        _pool_of(Datapool(LocalStore(outputs[name]).child("pool")), model, n_files)
    built = time.perf_counter() - started
    _arrive(tmp_path / "warm", 0)  # the process's first flow run is not timed
    run(str(tmp_path / "warm"), str(tmp_path / "warm-out"), **SETTINGS)

    seconds: dict[str, list[float]] = {"small": [], "big": []}
    for i in range(TIMED_PAIRS):
        folder = tmp_path / f"raw{i}"
        _arrive(folder, i + 1)  # the same new files for both pools
        for name in ("small", "big") if i % 2 == 0 else ("big", "small"):
            summary = run(str(folder), str(outputs[name]), **SETTINGS)
            assert summary["files_new"] == 3 and summary["selected"] == 3
            assert summary["dataset_samples"] == DATASET + 3 * i, summary  # the same in both
            seconds[name].append(_steps_seconds(summary))
    snap = Datapool(LocalStore(outputs["big"]).child("pool")).load()
    assert len(snap.fingerprints) == BIG_POOL_FILES + 3 * TIMED_PAIRS

    small, big = (statistics.median(seconds[k]) for k in ("small", "big"))
    print(
        f"pools built in {built:.1f} s; a run's steps against {BIG_POOL_FILES} files "
        f"{big:.2f} s, against {DATASET} files {small:.2f} s (medians), ratio {big / small:.2f}"
        f"; {seconds}"
    )
    record_property("big_pool_steps_s", round(big, 3))
    record_property("small_pool_steps_s", round(small, 3))
    assert big <= BIG_POOL_RATIO * small, seconds

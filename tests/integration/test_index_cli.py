"""`winnow leaks` through the CLI as a subprocess, with and without the pool's index; a racing
commit never leaves a manifest whose index does not match its samples (local folder and S3)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow import index as ix
from winnow.datapool import Datapool
from winnow.errors import PoolConflict
from winnow.storage import LocalStore


def _winnow(*args: str, min_samples: int) -> subprocess.CompletedProcess:
    code = "import sys; from flows.cli import main; sys.argv[0] = 'winnow'; main()"
    env = {**os.environ, "WINNOW_INDEX_MIN_SAMPLES": str(min_samples)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture
def leaky_output(tmp_path, monkeypatch):
    """An output whose tag `test` holds a copy of a `train` frame (the pool has an index)."""
    monkeypatch.setattr(ix, "INDEX_MIN_SAMPLES", 100)
    pool = Datapool(LocalStore(tmp_path / "out" / "pool"))
    files, train = make_run([f"train/{i}.mp4" for i in range(60)], seed=1)
    pool.commit(
        pool.load(),
        run_id="r1",
        files=files,
        samples=train,
        tag=tag_for("train", train),
        model=MODEL,
    )
    files, test = make_run([f"test/{i}.mp4" for i in range(60)], seed=2)
    test.embedding[0] = train.embedding[1]
    pool.commit(
        pool.load(), run_id="r2", files=files, samples=test, tag=tag_for("test", test), model=MODEL
    )
    return tmp_path / "out", test, train


@pytest.mark.parametrize(("min_samples", "how"), [(100, "similarity index"), (10**9, "exact")])
def test_leaks_lists_the_pair_as_a_table_and_a_csv_and_exits_1(leaky_output, min_samples, how):
    out, test, train = leaky_output
    if min_samples > 100:  # a pool without an index: the index parts are gone
        LocalStore(out / "pool").delete(
            i.key for i in LocalStore(out / "pool").list("parts") if "/index" in i.key
        )
    proc = _winnow(
        "leaks",
        "--output",
        str(out),
        "--tag",
        "test",
        "--against",
        "train",
        min_samples=min_samples,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("distance") and len(lines) == 2
    assert f"{test.key[0]}\t0\t{train.key[1]}\t1" in lines[1]
    assert how in proc.stderr and "1 pairs" in proc.stderr
    rows = list(csv.DictReader(io.StringIO((out / "leaks" / "test-vs-train.csv").read_text())))
    assert [(r["key"], r["other_key"]) for r in rows] == [(test.key[0], train.key[1])]
    missing = _winnow(
        "leaks",
        "--output",
        str(out),
        "--tag",
        "test",
        "--against",
        "nope",
        min_samples=min_samples,
    )
    assert missing.returncode == 2 and "no tag 'nope'" in missing.stderr


def test_a_racing_commit_never_leaves_a_mismatched_index(store_url, open_test_store, monkeypatch):
    monkeypatch.setattr(ix, "INDEX_MIN_SAMPLES", 100)
    pool = Datapool(open_test_store(store_url).child("pool"))
    files, first = make_run([f"a/{i}.mp4" for i in range(60)], seed=1)
    pool.commit(pool.load(), run_id="r0", files=files, samples=first, tag=None, model=MODEL)
    base = pool.load()
    barrier = threading.Barrier(2, timeout=60)
    real = type(pool.store).put_if_absent

    def held(self, key, data):  # both writers reach the manifest before either creates it
        if key.startswith("versions/"):
            barrier.wait()
        return real(self, key, data)

    monkeypatch.setattr(type(pool.store), "put_if_absent", held)
    outcome: dict[str, object] = {}

    def commit(name: str, seed: int) -> None:
        files, cands = make_run([f"{name}/{i}.mp4" for i in range(40)], seed=seed)
        try:
            outcome[name] = pool.commit(
                base, run_id=name, files=files, samples=cands, tag=None, model=MODEL
            )
        except PoolConflict as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=commit, args=(n, s)) for n, s in (("x", 2), ("y", 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(v).__name__ for v in outcome.values()) == ["PoolConflict", "int"]
    loser = next(n for n, v in outcome.items() if isinstance(v, PoolConflict))
    latest = pool.load()
    index = ix.open_index(latest)
    assert sorted(index.sample_id) == sorted(latest.samples().sample_id)
    assert not [i.key for i in pool.store.list("parts") if f"/{loser}-" in i.key]

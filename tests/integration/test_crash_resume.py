"""A run killed mid-way (SIGKILL, no cleanup) and re-run ends with the same pool as an
uninterrupted run: every file committed exactly once, finished shards reused, same tag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

PARAMS = {
    "frames": {"every_n_frames": 2},
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 16},
    "selection": {"n_samples": 10},
    "shard_files": 1,
}


def _winnow_run(source: Path, output: Path, params_file: Path) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "--source",
            str(source),
            "--output",
            str(output),
            "--params-file",
            str(params_file),
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> bool:
    """SIGKILL the run once `ready()` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the run neither finished nor reached the kill point in time")


def _pool_state(output: Path) -> dict:
    snap = Datapool(LocalStore(output / "pool")).load()
    keys = snap.files.column("key").to_pylist()
    return {
        "version": snap.version,
        "files": sorted(keys),
        "file_rows": len(keys),
        "samples": sorted(snap.samples().sample_id),
        "tags": [(t.name, t.sample_ids) for t in snap.tags],
    }


@pytest.fixture
def source(tmp_path) -> Path:
    store = LocalStore(tmp_path / "raw")
    demo.write_demo_files(store, n_videos=5, n_images=2, frames_per_video=90, width=160, height=96)
    demo.write_corrupt_files(store)
    return tmp_path / "raw"


@pytest.mark.parametrize("stage", ["decode", "upload"])
def test_a_killed_run_resumes_to_the_same_pool(source, tmp_path, stage):
    from flows.curate import curate
    from winnow.params import CurateParams

    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(PARAMS))

    def run_in_process(output: Path) -> dict:
        p = CurateParams.model_validate({**PARAMS, "source": str(source), "output": str(output)})
        return curate(**{n: getattr(p, n) for n in CurateParams.model_fields})

    clean = tmp_path / "clean"
    run_in_process(clean)
    expected = _pool_state(clean)

    crashed = tmp_path / "crashed"
    staging = crashed / "pool" / "staging"
    if stage == "decode":  # after the first shard was staged, before the last
        ready = lambda: len(list(staging.glob("*/shard-*.parquet"))) >= 2  # noqa: E731
    else:  # while the picks are being uploaded, before the commit
        ready = lambda: (crashed / "frames").exists()  # noqa: E731
    proc = _winnow_run(source, crashed, params_file)
    killed = _kill_when(proc, ready)
    if killed:
        interrupted = _pool_state(crashed) if (crashed / "pool" / "versions").exists() else None
        # Killed before the commit: the pool holds nothing of the run.
        assert interrupted is None or interrupted == expected
    staged_before = len(list(staging.glob("*/shard-*.parquet")))

    summary = run_in_process(crashed)
    state = _pool_state(crashed)
    assert state == expected
    assert state["file_rows"] == len(set(state["files"]))  # each file committed exactly once
    if stage == "decode":
        assert killed and staged_before >= 2
    if killed:
        assert summary["shards_resumed"] == staged_before
        assert summary["files_new"] == len(expected["files"])
    assert not list(staging.glob("*/shard-*.parquet"))  # consumed shards are cleaned up
    again = run_in_process(crashed)
    assert again["nothing_new"] and _pool_state(crashed) == expected

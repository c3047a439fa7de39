"""A run killed mid-way (SIGKILL, no cleanup) and re-run ends with the same pool as an
uninterrupted run: every file committed exactly once, finished shards reused, same tag.

The killed run is a real `winnow run` in a child process with a few probes wrapped around the
real code: each stage it reaches leaves a marker file, and at the chosen kill point the child
holds (sleeps) until the test kills it. So the kill always lands where the test says, and the
test checks that it did: the next stage's marker is absent and the pool is still at version 0.
"""

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

# Runs `winnow run ARGS...` with probes: argv is STAGE MARKERS_DIR ARGS...
_PROBED_RUN = r"""
import sys, threading, time
from pathlib import Path

stage, markers = sys.argv[1], Path(sys.argv[2])
markers.mkdir(parents=True, exist_ok=True)

from winnow import datapool, outputs, storage

def mark(name):
    (markers / name).write_text(str(time.time()))

def hold(name):  # the kill point: the test kills this process once the marker exists
    mark(name)
    time.sleep(600)

real_stage = datapool.Datapool.stage_shard
staged = []
def stage_shard(self, *args, **kwargs):
    real_stage(self, *args, **kwargs)
    staged.append(1)
    mark(f"staged-{len(staged)}")
    if stage == "decode" and len(staged) == 2:
        hold("kill-point")
datapool.Datapool.stage_shard = stage_shard

real_upload = outputs.upload_selection
uploading = threading.Event()
def upload_selection(*args, **kwargs):
    mark("upload")
    uploading.set()
    return real_upload(*args, **kwargs)
outputs.upload_selection = upload_selection

real_put = storage.LocalStore.put
def put(self, key, data):
    real_put(self, key, data)
    if stage == "upload" and uploading.is_set():
        hold("kill-point")  # each writer holds after its first output
storage.LocalStore.put = put

real_commit = datapool.Datapool.commit
def commit(self, *args, **kwargs):
    mark("commit")
    return real_commit(self, *args, **kwargs)
datapool.Datapool.commit = commit

sys.argv = ["winnow", *sys.argv[3:]]
from flows.cli import main
main()
"""


def _probed_run(
    stage: str, markers: Path, source: Path, output: Path, params_file: Path
) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    args = ["run", "--source", str(source), "--output", str(output)]
    args += ["--params-file", str(params_file), "--json"]
    return subprocess.Popen(
        [sys.executable, "-c", _PROBED_RUN, stage, str(markers), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill_at_marker(proc: subprocess.Popen, marker: Path, timeout: float = 300) -> None:
    """SIGKILL the run once it is holding at `marker`; fail if it ends or never gets there."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if marker.exists():
                return
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")[-3000:]
                raise AssertionError(f"the run ended before the kill point:\n{out}")
            time.sleep(0.02)
        raise AssertionError("the run did not reach the kill point in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


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


# stage -> the marker the kill must come before (the next stage)
NEXT_STAGE = {"decode": "upload", "upload": "commit"}


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
    first = run_in_process(clean)
    expected = _pool_state(clean)
    n_shards = first["shards"]

    crashed, markers = tmp_path / "crashed", tmp_path / "markers"
    staging = crashed / "pool" / "staging"
    proc = _probed_run(stage, markers, source, crashed, params_file)
    _kill_at_marker(proc, markers / "kill-point")

    # The kill landed in the intended stage: the next stage never started, nothing committed.
    assert not (markers / NEXT_STAGE[stage]).exists()
    assert not (markers / "commit").exists()
    assert Datapool(LocalStore(crashed / "pool")).load().version == 0
    staged_before = len(list(staging.glob("*/shard-*.parquet")))
    if stage == "decode":
        assert staged_before == 2  # killed after the second shard was staged...
        assert staged_before < n_shards  # ...with shards still to do
    else:
        assert (markers / "upload").exists()
        # Killed mid-upload: a frame is written (each writer holds after its first output),
        # the report, written last, is not.
        assert list((crashed / "frames").rglob("*.png"))
        assert not list(crashed.glob("tags/*/report.html"))

    summary = run_in_process(crashed)
    state = _pool_state(crashed)
    assert state == expected
    assert state["file_rows"] == len(set(state["files"]))  # each file committed exactly once
    assert summary["shards_resumed"] == staged_before
    assert summary["files_new"] == len(expected["files"])
    assert not list(staging.glob("*/shard-*.parquet"))  # consumed shards are cleaned up
    again = run_in_process(crashed)
    assert again["nothing_new"] and _pool_state(crashed) == expected

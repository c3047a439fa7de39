"""Cancelling a run mid decode (`prefect flow-run cancel`) ends it as Cancelled within 45 s of the
request (`CANCELLED_WITHIN_S`), leaves the pool unchanged, frees the deployment's concurrency
slot, and the next run resumes the shards the cancelled one staged.

A real `prefect server`, the `curate/on-demand` deployment of prefect.yaml and a process worker
(`prefect worker start --pool winnow-cpu`). The first run gets one extra job variable, an `env`
whose PYTHONPATH holds a small `sitecustomize` probe: after its second staged shard (of six) the
run holds inside the decode step, so the cancel always lands mid decode, and the probe's markers
and the pool's staging area show that it did.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.integration.prefect_server import REPO, UUID_RE, PrefectServer, prefect_server, tail
from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = pytest.mark.slow

PARAMS = {
    "frames": {"every_n_frames": 3},
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 16},
    "selection": {"n_samples": 4},
    "shard_files": 1,
}
N_VIDEOS = 6  # one shard each
# Cancel request (the CLI starting) -> state Cancelled, in seconds: README's "Cancel is clean"
# promise. Measured on this 2-core machine: 5.9, 6.5, 6.8 and 11.8 s (the CLI 1.5-2.6 s of
# it; 6.5 s with two busy loops beside the test, 11.8 s beside another test's runs); an earlier
# run took 34 s at load ~12, when the CLI alone took 12 s. The worker polls every 2 s.
CANCELLED_WITHIN_S = 45

# Imported at start-up by a flow-run process whose PYTHONPATH holds it (that run only).
_PROBE = r'''
"""Test probe (tests/integration/test_cancel.py): hold the run after its second staged shard."""
import os, time
from pathlib import Path

_markers = os.environ.get("WINNOW_TEST_MARKERS")
if _markers:
    from winnow import datapool

    _real_stage = datapool.Datapool.stage_shard
    _staged = []

    def _stage_shard(self, *args, **kwargs):
        _real_stage(self, *args, **kwargs)
        _staged.append(1)
        Path(_markers, f"staged-{len(_staged)}").write_text(str(os.getpid()))
        if len(_staged) == 2:
            Path(_markers, "holding").write_text(str(os.getpid()))
            time.sleep(600)

    datapool.Datapool.stage_shard = _stage_shard

    from winnow import outputs

    _real_upload = outputs.upload_selection

    def _upload_selection(*args, **kwargs):
        Path(_markers, "upload").write_text("")
        return _real_upload(*args, **kwargs)

    outputs.upload_selection = _upload_selection
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> PrefectServer:
    """A server with the pools of deployments/setup.py and curate/on-demand deployed."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home"), ui=False) as s:
        s.run("python", "deployments/setup.py")
        s.run("prefect", "--no-prompt", "deploy", "--name", "on-demand")
        yield s
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all()
        EventsWorker.drain_all()


def _deployment_run(server: PrefectServer, params: dict, *job_variables: str) -> str:
    args = [a for name, value in params.items() for a in ("-p", f"{name}={json.dumps(value)}")]
    for jv in job_variables:
        args += ["--job-variable", jv]
    out = server.run("prefect", "deployment", "run", "curate/on-demand", *args).stdout
    return UUID_RE.search(out.split("UUID:", 1)[1]).group(0)


def _wait(predicate, what: str, timeout: float, diagnose) -> float:
    """Poll until `predicate()` is true; return when (monotonic). Fail with `diagnose()`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s\n{diagnose()}")
        time.sleep(0.2)
    return time.monotonic()


def _logs(client, flow_run_id: str) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(f"{log.level} {log.message}" for log in logs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_mid_decode_ends_within_45_s_frees_the_slot_and_the_next_run_resumes(
    server, tmp_path
):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    source, output = tmp_path / "raw", tmp_path / "out"
    keys = demo.write_demo_files(
        LocalStore(source), n_videos=N_VIDEOS, n_images=0, frames_per_video=30, width=160, height=96
    )
    markers, probe = tmp_path / "markers", tmp_path / "probe"
    markers.mkdir()
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(_PROBE)
    env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": f"{probe}{os.pathsep}{REPO}"}
    env["WINNOW_TEST_MARKERS"] = str(markers)
    params = {"source": str(source), "output": str(output), **PARAMS}
    staging = output / "pool" / "staging"
    worker_log = tmp_path / "worker.log"
    server.start_worker("winnow-cpu", worker_log, PREFECT_WORKER_QUERY_SECONDS="2")

    with SyncPrefectClient(server.api_url) as client:

        def diagnose(run_id: str):
            return lambda: (
                f"--- run logs\n{_logs(client, run_id)[-3000:]}\n--- worker\n" + tail(worker_log)
            )

        first = _deployment_run(server, params, f"env={json.dumps(env)}")
        _wait(lambda: (markers / "holding").exists(), "run 1 decoding", 300, diagnose(first))
        # Mid decode: two of six shards staged, the run still Running, nothing uploaded.
        assert len(list(staging.glob("*/shard-*.parquet"))) == 2
        assert client.read_flow_run(first).state.is_running()
        pid = int((markers / "holding").read_text())

        # The next request waits for the deployment's one slot.
        second = _deployment_run(server, params)
        time.sleep(3)
        assert not client.read_flow_run(second).state.is_running()

        asked = time.monotonic()
        server.run("prefect", "flow-run", "cancel", first)
        cli_done = time.monotonic()
        cancelled = _wait(
            lambda: client.read_flow_run(first).state.is_cancelled(),
            "run 1 Cancelled",
            CANCELLED_WITHIN_S - (cli_done - asked),
            diagnose(first),
        )
        assert cancelled - asked <= CANCELLED_WITHIN_S
        states = {s.type.value: s.timestamp for s in client.read_flow_run_states(first)}
        server_side = (states["CANCELLED"] - states["CANCELLING"]).total_seconds()
        gone = _wait(lambda: not _alive(pid), "run 1's process exiting", 30, diagnose(first))

        # The pool is unchanged and the run stopped mid decode.
        assert Datapool(LocalStore(output / "pool")).load().version == 0
        assert not (output / "pool" / "versions").exists()
        assert sorted(p.name for p in markers.iterdir()) == ["holding", "staged-1", "staged-2"]
        assert len(list(staging.glob("*/shard-*.parquet"))) == 2
        assert not (output / "tags").exists() and not (output / "frames").exists()

        # The slot is free: the queued run starts, resumes the two staged shards, completes.
        started = _wait(
            lambda: client.read_flow_run(second).state.type.value not in {"SCHEDULED", "PENDING"},
            "run 2 starting",
            120,
            diagnose(second),
        )
        _wait(
            lambda: client.read_flow_run(second).state.is_final(),
            "run 2 ending",
            300,
            diagnose(second),
        )
        run2 = client.read_flow_run(second)
        assert run2.state.is_completed(), diagnose(second)()
        assert run2.start_time >= client.read_flow_run(first).end_time
        logs = _logs(client, second)
        assert f"resuming: 2 of {N_VIDEOS} shards were staged by an earlier attempt" in logs
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[second]))
        )
        summary = next(a.data for a in artifacts if a.description == "Winnow run summary")
        assert re.search(
            rf"\| shards \(reused from an interrupted attempt\) \| {N_VIDEOS} \(2\) \|", summary
        )

    snap = Datapool(LocalStore(output / "pool")).load()
    assert snap.version == 1 and [t.run_id for t in snap.tags] == [second]
    assert sorted(snap.files.column("key").to_pylist()) == sorted(keys)
    assert not list(staging.glob("*/shard-*.parquet"))
    print(
        f"\ncancel: CLI {cli_done - asked:.1f} s, request -> Cancelled {cancelled - asked:.1f} s "
        f"(Cancelling -> Cancelled on the server {server_side:.1f} s), "
        f"process gone {gone - asked:.1f} s, Cancelled -> next run Running "
        f"{started - cancelled:.1f} s"
    )

"""Fan-out to the GPU work pool on a real server: two process workers run the child runs.

A curate run with `scale.mode: pool` splits its shards into groups, starts one `embed-shards/gpu`
child run per group, and commits what they staged. The pool it ends with must equal an
in-process run's on the same data, both workers must have run children, and a child killed
with SIGKILL mid-group must not change the result: its lost shards are resubmitted.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.integration.prefect_server import prefect_server, tail
from tests.integration.scaleout import (
    alive,
    assert_same_pool,
    no_staging_left,
    run_curate,
    wait_for_file,
    wait_gone,
    write_probe,
    write_source,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server, the pools (GPU limit 2), the child deployment and two GPU-pool workers."""
    root = tmp_path_factory.mktemp("fanout")
    with prefect_server(root / "prefect-home", ui=False) as s:
        setup = s.run("python", "deployments/setup.py", "--gpu-limit", "2")
        assert "work pool winnow-gpu (process, concurrency limit 2): created" in setup.stdout
        s.run("prefect", "--no-prompt", "deploy", "--name", "embed-shards/gpu")
        probe = write_probe(root / "probe")
        s.probe = probe  # type: ignore[attr-defined]
        s.worker_logs = []  # type: ignore[attr-defined]
        for i in range(2):
            log = root / f"worker-{i}.log"
            s.start_worker(
                "winnow-gpu",
                log,
                "--limit",
                "1",
                "--name",
                f"gpu-{i}",
                PREFECT_WORKER_QUERY_SECONDS="2",
                WINNOW_PROBE_DIR=str(probe),
                PYTHONPATH=str(probe),
            )
            s.worker_logs.append(log)
        yield s
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all()
        EventsWorker.drain_all()


@pytest.fixture(scope="module")
def client(server):
    """A Prefect client of the module's server."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(server.api_url) as c:
        yield c


@pytest.fixture(scope="module")
def data(server, tmp_path_factory):
    """The source and the pool an in-process run makes of it (the reference)."""
    root = tmp_path_factory.mktemp("data")
    source = write_source(root / "raw")
    started = time.monotonic()
    summary = run_curate(server, source, root / "local")
    print(f"\nin-process curate: {time.monotonic() - started:.1f} s")
    assert summary["tag"] == "run-0001"
    return {"source": source, "local": root / "local", "root": root}


def _children(client, parent_id: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
        )
    )


def _messages(client, flow_run_id: str) -> list[str]:
    """The log messages of one flow run (its own and its tasks', not its children's)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
    )
    return [log.message for log in logs]


def _worker_of(server, run) -> list[int]:
    """Which workers (by index) ran this flow run: its process's own final line is in their log.

    "submitting flow run" is no proof: both workers can pick up one run in the same poll, and
    the one the server then refuses logs "Aborted submission" after it.
    """
    line = f"Flow run '{run.name}' - Finished in state"
    return [i for i, log in enumerate(server.worker_logs) if line in log.read_text()]


def _groups(output) -> list:
    """The group descriptions the parent wrote for its children (round 0 while they run)."""
    from winnow.scale import GroupSpec

    paths = (output / "pool" / "staging").glob("*/groups/*.json")
    return [
        GroupSpec.from_json(p.read_bytes(), str(p))
        for p in paths
        if not p.name.endswith(".result.json")
    ]


def test_pool_fanout_uses_both_workers_and_matches_in_process(server, client, data):
    output = data["root"] / "pool-run"
    started = time.monotonic()
    summary = run_curate(
        server, data["source"], output, mode="pool", deployment="embed-shards/gpu", runs=4
    )
    print(f"\nfanned-out curate (4 children, 2 workers): {time.monotonic() - started:.1f} s")
    assert summary["tag"] == "run-0001"
    children = [r for r in _children(client, summary["run_id"]) if r.name.startswith("embed-")]
    assert len(children) == 4, [r.name for r in children]
    assert all(r.state.is_completed() for r in children), [r.state for r in children]
    assert {r.deployment_id for r in children} == {
        client.read_deployment_by_name("embed-shards/gpu").id
    }
    # Each child was run by exactly one worker, and both workers ran some.
    ran = {r.name: _worker_of(server, r) for r in children}
    assert all(len(w) == 1 for w in ran.values()), (ran, tail(server.worker_logs[0]))
    assert {w[0] for w in ran.values()} == {0, 1}, ran
    # A child's parameters are a key, never the shard list.
    for r in children:
        assert set(r.parameters) == {"group", "output", "storage"}
        assert (
            r.parameters["group"].startswith("staging/") and "/groups/r0-" in r.parameters["group"]
        )
    assert_same_pool(output, data["local"])
    assert no_staging_left(output)
    # The parent's progress counted the shards of all children.
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    progress = [
        a
        for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[summary["run_id"]])
            )
        )
        if a.type == "progress" and "on the pool" in (a.description or "")
    ]
    (bar,) = progress
    assert bar.data == 100 and "on the pool: 10/10 shards, " in bar.description, bar.description
    # ...and the frames the children decoded (their results), not 0 while the children worked.
    frames = int(bar.description.split("shards, ")[1].split(" frames")[0].replace(",", ""))
    assert frames == summary["candidates"] > 0, (bar.description, summary)
    # The summary says who embedded (not "reused from an interrupted attempt"), and the parent,
    # which had nothing left to embed, never loaded the model.
    assert summary["scaled_out"] == (
        "4 child runs in 1 round on 2 workers (" + socket.gethostname() + "); "
        "0 did not finish; 0 shards left to this run"
    ), summary["scaled_out"]
    assert summary["shards"] == 10 and summary["shards_resumed"] == 0
    # The children skipped unchanged frames (change-aware sampling is on) and found the shots.
    assert summary["video_frames"][2] > 0 and summary["shots"] == 6, summary
    assert not [m for m in _messages(client, summary["run_id"]) if m.startswith("model ")]


def test_a_child_killed_mid_group_has_its_shards_redone(server, client, data):
    probe = server.probe
    (probe / "armed").write_text("1")
    output = data["root"] / "kill-run"
    import threading

    result: dict = {}

    def parent() -> None:
        try:
            result["summary"] = run_curate(
                server, data["source"], output, mode="pool", runs=2, retries=1
            )
        except BaseException as exc:  # shown by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=parent)
    thread.start()
    try:
        pid_text, shard_id = wait_for_file(probe / "held", timeout=240).split()
        pid = int(pid_text)
        assert alive(pid)
        staged = {p.name for p in (output / "pool" / "staging").rglob("shard-*.parquet")}
        assert f"shard-{shard_id}.parquet" in staged
        # The kill lands mid-group: the held child has staged one shard of its five.
        (held,) = [g for g in _groups(output) if shard_id in {s.shard_id for s in g.shards}]
        assert len(held.shards) == 5
        assert [s.shard_id for s in held.shards if f"shard-{s.shard_id}.parquet" in staged] == [
            shard_id
        ]
        os.kill(pid, signal.SIGKILL)
        assert wait_gone(pid), f"pid {pid} survived SIGKILL"
    finally:
        (probe / "armed").unlink()
        thread.join(timeout=600)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary["tag"] == "run-0001"
    children = [r for r in _children(client, summary["run_id"]) if r.name.startswith("embed-")]
    first = [r for r in children if r.name.startswith("embed-r0-")]
    again = [r for r in children if r.name.startswith("embed-r1-")]
    assert len(first) == 2
    assert sorted(r.state.type.value for r in first) == ["COMPLETED", "CRASHED"], [
        r.state for r in first
    ]
    # The lost shards went to new children (resubmitted), which completed.
    assert again and all(r.state.is_completed() for r in again), [r.state for r in again]
    assert_same_pool(output, data["local"])
    assert no_staging_left(output)
    # The crash was logged as the child's run ended, naming it; the summary counts the rounds.
    (crashed,) = [r for r in first if r.state.type.value == "CRASHED"]
    messages = _messages(client, summary["run_id"])
    assert any(
        m.startswith(f"child run {crashed.name} ") and "ended CRASHED" in m for m in messages
    )
    assert summary["scaled_out"].startswith(f"{len(children)} child runs in 2 rounds on ")
    assert "1 did not finish; 0 shards left to this run" in summary["scaled_out"]
    # The run's last progress counts every frame, the killed child's staged shard's too.
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[summary["run_id"]])
        )
    )
    decoded = [a.description or "" for a in artifacts if a.type == "progress"]
    total = f"decode + embed: 10/10 shards, {summary['candidates']:,} frames"
    assert any(d.startswith(total) for d in decoded), decoded

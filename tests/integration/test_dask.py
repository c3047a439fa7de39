"""Decode+embed on an existing Dask cluster (scale.mode 'dask'), started by the test on 127.0.0.1.

A `dask scheduler` and two `dask worker` processes (one thread each); curate submits one task per
shard through prefect-dask's `DaskTaskRunner(address=...)`. The pool must equal an in-process
run's, both workers must have embedded shards, and each must have loaded its model only once.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.integration.prefect_server import BIN, REPO, free_port, prefect_server, stop_process
from tests.integration.scaleout import assert_same_pool, no_staging_left, run_curate, write_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server (no UI) for the curate runs and the Dask workers' task runs."""
    with prefect_server(tmp_path_factory.mktemp("dask-prefect"), ui=False) as s:
        yield s
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all()
        EventsWorker.drain_all()


@pytest.fixture(scope="module")
def cluster(server, tmp_path_factory):
    """`dask scheduler` + two `dask worker`s on 127.0.0.1; yields the scheduler's address."""
    logs = tmp_path_factory.mktemp("dask-logs")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    local = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(logs / f"{name}.log", "ab") as out:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "dask"), *args],
                    cwd=REPO,
                    env=server.env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    start("scheduler", "scheduler", "--port", str(port), *local)
    for i in range(2):
        start(f"worker-{i}", "worker", address, *local, "--nthreads", "1", "--no-nanny")
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            stop_process(proc, grace=10)


def test_dask_mode_matches_in_process_and_uses_both_workers(server, cluster, tmp_path):
    from distributed import Client

    from winnow.embedding import embedder_cache_stats

    source = write_source(tmp_path / "raw")
    run_curate(server, source, tmp_path / "local")
    started = time.monotonic()
    summary = run_curate(server, source, tmp_path / "dask", mode="dask", address=cluster)
    print(f"\ncurate on 2 Dask workers: {time.monotonic() - started:.1f} s")
    assert summary["tag"] == "run-0001"
    assert_same_pool(tmp_path / "dask", tmp_path / "local")
    assert no_staging_left(tmp_path / "dask")
    with Client(cluster, timeout=30) as client:
        stats = client.run(embedder_cache_stats)
    assert len(stats) == 2
    # Every shard was one task: 10 model look-ups across both workers, each worker ran some,
    # and each loaded the model once (kept between shards).
    calls = {worker: s["loads"] + s["hits"] for worker, s in stats.items()}
    assert sum(calls.values()) == 10, stats
    assert all(n >= 1 for n in calls.values()), stats
    assert all(s["loads"] == 1 for s in stats.values()), stats
    # The run says the workers did the embedding (not "reused from an interrupted attempt"),
    # and the Dask step showed progress: its flow's progress artifact reached 10/10 shards.
    assert summary["scaled_out"] == "10 of 10 shard tasks completed on the Dask cluster"
    assert summary["shards"] == 10 and summary["shards_resumed"] == 0
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

    with SyncPrefectClient(server.api_url) as client:
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"]))
        )
    described = [a.description or "" for a in progress]
    assert any(d.startswith("decode + embed on Dask: 10/10 shards") for d in described), described

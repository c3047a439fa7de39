"""Integration fixtures: one Prefect API for the session, a local and an S3 backend, a runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server (SQLite) for flow runs in this process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
        # Flush the log and event workers before the server goes, or exit hangs ~70 s.
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.instance().drain()
        EventsWorker.drain_all()


FAST = {
    "frames": {"every_n_frames": 4},
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 32},
    "selection": {"n_samples": 12},
    "shard_files": 3,
}


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path, s3_endpoint) -> tuple[str, str, dict, Any]:
    """(source URL, output URL, storage params, S3Options) on a local folder and on S3."""
    from winnow.storage import S3Options

    if request.param == "local":
        source, output, storage = str(tmp_path / "raw"), str(tmp_path / "out"), {}
    else:
        name = request.getfixturevalue("s3_bucket")
        source, output = f"s3://{name}/raw", f"s3://{name}/curated"
        storage = {"endpoint_url": s3_endpoint, "region": "us-east-1"}
    return source, output, storage, S3Options(endpoint_url=s3_endpoint, region="us-east-1")


def run(source: str, output: str, storage: dict | None = None, **overrides) -> dict:
    """Run the curate flow in this process with small, fast settings (overridable)."""
    from flows.curate import curate
    from winnow.params import CurateParams

    data = {**FAST, "source": source, "output": output, "storage": storage or {}, **overrides}
    params = CurateParams.model_validate(data)
    return curate(**{name: getattr(params, name) for name in CurateParams.model_fields})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the Prefect API is slow: the server alone takes seconds to start."""
    for item in items:
        if "prefect_api" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def kill_at_marker(script: str, markers: Path, args: list[str], *, what: str) -> int:
    """Run `python -c script markers *args` until it writes `markers/kill-point`, then SIGKILL.

    The script (a probe around the `winnow` command) writes the marker where the test wants
    the kill to land. Fails if the process ends first or takes over 300 s. Returns its exit
    status (-SIGKILL once killed).
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(markers), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while not (markers / "kill-point").exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")[-3000:]
                raise AssertionError(f"the {what} ended before the kill point:\n{out}")
            assert time.monotonic() < deadline, f"the {what} did not reach the kill point in time"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return proc.returncode


def media_sizes(root: Path) -> dict[str, tuple[int, int]]:
    """Key → (width, height) of every image and video below a local folder."""
    import av
    from PIL import Image

    from winnow.records import kind_of

    out = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if kind_of(key) == "image":
            with Image.open(path) as im:
                out[key] = im.size
        elif kind_of(key) == "video":
            with av.open(str(path)) as container:
                ctx = container.streams.video[0].codec_context
                out[key] = (ctx.width, ctx.height)
    return out


def write_predictions(store: Any, files: dict[str, tuple[int, int]], key: str = "preds.csv") -> str:
    """Write a predictions CSV for `files` (key → (width, height)): two boxes on frame 0 each.

    A `car` box in the top-left and a `person` box lower right, in pixels, with scores and
    class probabilities (`prob_car`, `prob_person`) that differ from file to file. Returns its
    key in `store` (a CSV, so discovery ignores it as not media).
    """
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["filename", "frame_index", "x", "y", "w", "h", "label", "score"]
        + ["prob_car", "prob_person"]
    )
    for n, (name, (w, h)) in enumerate(sorted(files.items())):
        p = 0.55 + 0.4 * ((n * 7) % 10) / 10
        writer.writerow([name, 0, w * 0.1, h * 0.1, w * 0.3, h * 0.4, "car", p, p, 1 - p])
        q = 0.5 + 0.45 * ((n * 3) % 10) / 10
        writer.writerow([name, 0, w * 0.5, h * 0.4, w * 0.3, h * 0.5, "person", q, 1 - q, q])
    store.put(key, out.getvalue().encode())
    return key

"""Integration fixtures: one Prefect API (test harness) for the whole session; a curate runner."""

from __future__ import annotations

from collections.abc import Iterator

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

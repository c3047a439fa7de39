"""Progress for long stages: a Prefect progress artifact, rate logging, and listeners.

The artifact is the UI's bar; listeners in the same process (the CLI's terminal bar) get every
update too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger


@dataclass(frozen=True)
class ProgressUpdate:
    """Where a stage stands: `done` of `total` units, `items` (frames) so far."""

    description: str
    unit: str
    done: int
    total: int
    items: int
    elapsed_s: float


_LISTENERS: list[Callable[[ProgressUpdate], None]] = []


@contextlib.contextmanager
def listening(listener: Callable[[ProgressUpdate], None]) -> Iterator[None]:
    """Call `listener` with every progress update made in this process while inside."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


class Progress:
    """Track `total` units of work; log rate and ETA, keep a progress artifact up to date."""

    def __init__(self, total: int, *, unit: str, description: str) -> None:
        """Start tracking (creates the artifact when running inside a Prefect task)."""
        self.total = max(total, 1)
        self.unit = unit
        self.description = description
        self.done = 0
        self.items = 0
        self.started = time.perf_counter()
        in_task = TaskRunContext.get() is not None
        self._logger: logging.Logger | logging.LoggerAdapter = (
            get_run_logger() if in_task else logging.getLogger("winnow")
        )
        self._artifact = None
        if in_task:
            self._artifact = create_progress_artifact(
                progress=0.0, description=f"{description}: 0/{total} {unit}"
            )

    def advance(self, units: int, *, items: int = 0, note: str = "") -> None:
        """Mark `units` more done (`items` counts e.g. frames, for the rate)."""
        self.done += units
        self.items += items
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.items / elapsed
        pct = 100.0 * self.done / self.total
        text = f"{self.description}: {self.done}/{self.total} {self.unit}"
        eta = "ETA unknown"
        if self.done:
            eta = f"ETA {elapsed / self.done * (self.total - self.done):.0f} s"
        self._logger.info(
            "%s (%.0f%%), %d frames at %.1f frames/s, %s %s", text, pct, self.items, rate, eta, note
        )
        if self._artifact is not None:
            update_progress_artifact(self._artifact, progress=pct, description=text)
        update = ProgressUpdate(
            self.description, self.unit, self.done, self.total, self.items, elapsed
        )
        for listener in list(_LISTENERS):
            listener(update)

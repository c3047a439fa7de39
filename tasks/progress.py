"""Progress for long stages: a Prefect progress artifact, rate logging, and listeners.

The artifact is the UI's bar; listeners in the same process (the CLI's terminal bar) get every
update too. Between units, `report_items` moves the count of frames, so one long video does not
sit at "0/1" while it decodes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext
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


_LOG_EVERY_S = 15.0  # between log lines of frame-only updates (each unit is always logged)


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
        self._logged = self.started
        # In a task or a flow (the Dask flow tracks its shard tasks): the run's logger and a
        # progress artifact; elsewhere (a plain call) the `winnow` logger only.
        in_run = TaskRunContext.get() is not None or FlowRunContext.get() is not None
        self._logger: logging.Logger | logging.LoggerAdapter = (
            get_run_logger() if in_run else logging.getLogger("winnow")
        )
        self._artifact = None
        if in_run:
            self._artifact = create_progress_artifact(
                progress=0.0, description=f"{description}: 0/{total} {unit}"
            )

    def advance(
        self, units: int, *, items: int = 0, items_so_far: int | None = None, note: str = ""
    ) -> None:
        """Mark `units` more done (`items` more frames, or `items_so_far` frames in all)."""
        self.done += units
        self.items += items
        if items_so_far is not None:
            self.items = max(self.items, items_so_far)
        self._publish(note, log=True)

    def resumed(self, units: int, *, frames: int = 0, by: str = "an earlier attempt") -> None:
        """Mark `units` done (with their `frames`) that `by` finished (logged when any)."""
        if units:
            self._logger.info(
                "resuming: %d of %d %s were staged by %s", units, self.total, self.unit, by
            )
        self.advance(units, items=frames)

    def advance_to(self, done: int, items: int) -> None:
        """Move to `done` units and `items` frames in all (polled counts), if either grew."""
        if done > self.done or items > self.items:
            self.advance(max(done - self.done, 0), items_so_far=items)

    def report_items(self, items_so_far: int) -> None:
        """Frames done so far (never less than before), while the current unit goes on."""
        if items_so_far > self.items:
            self.items = items_so_far
            self._publish("", log=time.perf_counter() - self._logged >= _LOG_EVERY_S)

    def _publish(self, note: str, *, log: bool) -> None:
        now = time.perf_counter()
        elapsed = max(now - self.started, 1e-9)
        rate = self.items / elapsed
        pct = 100.0 * self.done / self.total
        text = f"{self.description}: {self.done}/{self.total} {self.unit}"
        eta = "ETA unknown"
        if self.done:
            eta = f"ETA {elapsed / self.done * (self.total - self.done):.0f} s"
        if log:
            self._logged = now
            self._logger.info(
                "%s (%.0f%%), %d frames at %.1f frames/s, %s %s",
                text,
                pct,
                self.items,
                rate,
                eta,
                note,
            )
        text = f"{text}, {self.items:,} frames ({rate:.0f} frames/s)"
        if self._artifact is not None:
            update_progress_artifact(self._artifact, progress=pct, description=text)
        update = ProgressUpdate(
            self.description, self.unit, self.done, self.total, self.items, elapsed
        )
        for listener in list(_LISTENERS):
            listener(update)

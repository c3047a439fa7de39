"""Garbage collection of a datapool: abandoned staging and parts of lost commits.

Two kinds of objects pile up in a pool that no reader ever opens:

- staged shards (and scale-out group descriptions) under `staging/<plan-hash>/` of a plan no
  run will finish: a crashed run whose parameters were changed before the re-run;
- parts under `parts/<commit-id>/` that no manifest names: a crash between writing parts and
  creating the version, or a loser whose clean-up was cut short;
- a run's staged tag files under `staging/exports/<run-id>/` (`winnow.outputs`) when the run
  never committed; those of a run whose tag the pool holds are never removed (the next run
  publishes them).

Both are removed only when they are old: a live run's staging and an in-flight commit's parts
are recent, so the age is what keeps them safe. A plan's staging goes as a whole once its newest
object is older than the limit (a long run that keeps staging keeps its plan); a commit's parts
go once no manifest of any version names them and the newest is older than the limit. Nothing
a manifest names is ever removed, nor anything outside `staging/` and `parts/`.

`collect_garbage_if_due` runs after a successful commit (the curate flow calls it), at most
once per `GC_EVERY_S`; `winnow gc` runs it by hand, with `--dry-run` to see what would go.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from winnow.datapool import Datapool
from winnow.errors import ConfigError, NotFound, WinnowError
from winnow.outputs import EXPORT_STAGING
from winnow.storage import ObjectInfo

_log = logging.getLogger(__name__)

DEFAULT_OLDER_THAN_S = 7 * 86400  # garbage younger than this is kept
GC_EVERY_S = 86400  # automatic collection at most this often
OLDER_THAN_ENV = "WINNOW_GC_OLDER_THAN"  # e.g. "7d", "36h"; "off" disables the automatic run
_STATE_KEY = "gc.json"  # <pool>/gc.json: when the last automatic collection ran
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds of a duration such as `7d`, `36h`, `90m`, `3600` (seconds) or `1.5d`.

    Raises:
        ConfigError: If the text is not a duration.
    """
    match = _DURATION_RE.match(text)
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 7d, 36h)"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass
class GcReport:
    """What a collection removed (or, with `dry_run`, would remove).

    Attributes:
        staged: Keys of staged objects of abandoned plans.
        parts: Keys of parts no manifest names.
        bytes: Their total size.
        kept_recent: Unnamed or staged objects kept because they are younger than the limit.
        dry_run: Nothing was deleted.
    """

    staged: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    bytes: int = 0
    kept_recent: int = 0
    dry_run: bool = False

    @property
    def removed(self) -> int:
        """Objects removed (or that would be)."""
        return len(self.staged) + len(self.parts)

    def describe(self) -> str:
        """One line for people."""
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {len(self.staged)} staged objects of abandoned plans and {len(self.parts)} "
            f"parts of lost commits ({self.bytes / 1e6:.1f} MB); kept {self.kept_recent} recent "
            "objects (a run may still be using them)"
        )


def collect_garbage(
    pool: Datapool,
    *,
    older_than_s: float = DEFAULT_OLDER_THAN_S,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Remove abandoned staging and parts of lost commits older than `older_than_s`.

    Args:
        pool: The datapool.
        older_than_s: Only objects (for staging: whole plans) last written longer ago than
            this go. A live run's staging and an in-flight commit are younger.
        dry_run: Only report what would go.
        now: The time to measure ages from (seconds since the epoch; default: now).

    Returns:
        What was removed.

    Raises:
        ConfigError: If `older_than_s` is negative.
        PoolCorrupt: If a manifest cannot be read (then nothing is removed).
    """
    if older_than_s < 0:
        raise ConfigError(f"older_than must not be negative, got {older_than_s} s")
    cutoff = (time.time() if now is None else now) - older_than_s
    report = GcReport(dry_run=dry_run)
    named = pool.named_parts()  # first: a manifest that cannot be read stops everything
    committed_runs = {t.run_id for t in pool.load().tags}

    def unpublished(key: str) -> bool:  # staged exports of a committed tag: kept for publishing
        return key.startswith(f"{EXPORT_STAGING}/") and key.split("/")[2] in committed_runs

    groups = [
        (_groups(_list(pool, "staging"), depth=2), report.staged, unpublished),
        (_groups(_list(pool, "parts"), depth=2), report.parts, lambda key: key in named),
    ]
    for by_group, removed, is_named in groups:
        for infos in by_group.values():
            if any(is_named(i.key) for i in infos):
                continue  # a committed part's folder, a committed tag's exports: never touched
            newest = max((i.modified_s or float("inf")) for i in infos)  # unknown age: keep
            if newest > cutoff:
                report.kept_recent += len(infos)
                continue
            removed.extend(i.key for i in infos)
            report.bytes += sum(i.size_bytes for i in infos)
    doomed = report.staged + report.parts
    if doomed and not dry_run:
        pool.store.delete(doomed)
    if doomed:
        _log.info("datapool %s: %s", pool.url, report.describe())
    return report


def collect_garbage_if_due(pool: Datapool, *, now: float | None = None) -> GcReport | None:
    """The automatic collection after a successful commit: at most once per `GC_EVERY_S`.

    The age limit comes from the `WINNOW_GC_OLDER_THAN` environment variable (default 7 days;
    `off` disables it). A failure is logged, never raised: garbage can wait, a run cannot.

    Returns:
        The report, or None when it was not due, disabled, or failed.
    """
    setting = os.environ.get(OLDER_THAN_ENV, "").strip()
    if setting.lower() in ("off", "none", "never", "false", "0"):
        return None
    now = time.time() if now is None else now
    try:
        older_than_s = parse_duration(setting) if setting else DEFAULT_OLDER_THAN_S
        try:
            last = float(json.loads(pool.store.get(_STATE_KEY))["last_run_s"])
        except (NotFound, ValueError, KeyError, TypeError):
            last = 0.0
        if now - last < min(GC_EVERY_S, older_than_s):
            return None
        report = collect_garbage(pool, older_than_s=older_than_s, now=now)
        state = {
            "last_run_s": now,
            "last_run": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "older_than_s": older_than_s,
            "removed": report.removed,
        }
        pool.store.put(_STATE_KEY, json.dumps(state).encode())
        return report
    except WinnowError as exc:
        _log.warning("datapool %s: garbage collection skipped: %s", pool.url, exc)
        return None


def _list(pool: Datapool, prefix: str) -> list[ObjectInfo]:
    try:
        return list(pool.store.list(prefix))
    except NotFound:
        return []


def _groups(infos: Iterable[ObjectInfo], *, depth: int) -> dict[str, list[ObjectInfo]]:
    """Objects grouped by their first `depth` key components (`staging/<plan>`).

    Staged exports group one level deeper, by run (`staging/exports/<run-id>`).
    """
    out: dict[str, list[ObjectInfo]] = {}
    for info in infos:
        parts = info.key.split("/")
        deeper = info.key.startswith(f"{EXPORT_STAGING}/")
        out.setdefault("/".join(parts[: depth + deeper]), []).append(info)
    return out

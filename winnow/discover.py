"""Discover: list the source, keep media files the pool has not processed, plan shards."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from winnow.errors import ConfigError
from winnow.records import FileRef, Shard, kind_of
from winnow.storage import ObjectInfo, ObjectStore, check_key, safe_listed_key

_GLOB_CHARS = set("*?[")
IGNORED_EXAMPLES = 5  # keys of ignored (non-media) objects kept to show the user
# Listed media files are looked up in the pool's fingerprints this many at a time: one Arrow
# pass over the pool's index per batch (`FingerprintIndex.lookup`), bounded listing memory.
LOOKUP_BATCH = 200_000


@dataclass(frozen=True)
class RelevantFilter:
    """Which keys a run may consider: exact keys, folder prefixes and glob patterns."""

    keys: frozenset[str]
    prefixes: tuple[str, ...]
    globs: tuple[str, ...]

    def __call__(self, key: str) -> bool:
        """Whether `key` is relevant."""
        if key in self.keys or key.startswith(self.prefixes):
            return True
        return any(fnmatch.fnmatchcase(key, g) for g in self.globs)


def parse_relevant_filenames(text: str) -> RelevantFilter:
    """Parse a relevant-filenames list: one entry per line.

    An entry is a key (`cam1/a.mp4`), a folder prefix ending in `/` (`cam2/`) or a glob
    (`cam3/*.mp4`, `**` is not special: `*` matches across `/`). Blank lines and lines
    starting with `#` are ignored; a leading `/` or `./` is dropped.

    Raises:
        ConfigError: If an entry contains `..` or the list has no entry.
    """
    keys: set[str] = set()
    prefixes: list[str] = []
    globs: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        while line.startswith(("./", "/")):
            line = line[2:] if line.startswith("./") else line[1:]
        if ".." in line.split("/"):
            raise ConfigError(f"relevant_filenames line {n}: {raw.strip()!r} contains '..'")
        if _GLOB_CHARS & set(line):
            globs.append(line)
        elif line.endswith("/"):
            prefixes.append(line)
        else:
            keys.add(check_key(line))
    if not (keys or prefixes or globs):
        raise ConfigError("relevant_filenames lists no file, folder or pattern")
    return RelevantFilter(frozenset(keys), tuple(prefixes), tuple(globs))


@dataclass(frozen=True)
class Discovery:
    """What discovery found.

    Attributes:
        new: Media files to process in this run (new, changed, or all with `process_all`).
        listed: Media files listed (after the relevant filter and output exclusion).
        known: Listed files the pool already holds with the same fingerprint.
        changed: New files whose key the pool holds with another fingerprint.
        ignored: Listed objects that are not media by their extension (`records.kind_of`),
            among the relevant ones: what a user who expected them to be read looks for.
        ignored_examples: The first few of them (at most `IGNORED_EXAMPLES` keys).
        not_relevant: Listed objects left out by the relevant-filenames filter.
    """

    new: tuple[FileRef, ...]
    listed: int
    known: int
    changed: int
    ignored: int
    ignored_examples: tuple[str, ...] = ()
    not_relevant: int = 0


def list_new_files(
    source: ObjectStore,
    *,
    known: Mapping[str, str],
    relevant: RelevantFilter | None = None,
    process_all: bool = False,
    exclude_prefixes: Iterable[str] = (),
) -> Discovery:
    r"""List the source and keep the media files the pool has not processed yet.

    Args:
        source: The raw data.
        known: Key → fingerprint of the files the pool holds: a mapping, or one with a
            batch `lookup(keys) -> list[fingerprint | None]` (`datapool.FingerprintIndex`,
            Arrow-backed at millions of files), then used instead of `get`, `LOOKUP_BATCH`
            keys at a time.
        relevant: Only keys it accepts are considered.
        process_all: Treat every listed media file as new.
        exclude_prefixes: Key prefixes never considered (the output prefix when it lies
            inside the source).

    Returns:
        The new files in key order, with counts. Keys that cannot be read exactly or named
        safely in the outputs (`outputs._names.output_name_problem`) are new files like any
        other: decoding records them as `skipped` with the reason, without reading them, so
        they are reported once and never stop a run. A name that is not valid UTF-8 is kept
        with `\udcXX` escapes (`storage.safe_listed_key`).

    Raises:
        NotFound: If the source does not exist.
        StorageError: If it cannot be listed.
    """
    excluded = tuple(p for p in exclude_prefixes if p)
    new: list[FileRef] = []
    listed = known_n = changed = ignored = not_relevant = 0
    examples: list[str] = []
    lookup = getattr(known, "lookup", None)
    pending: list[tuple[ObjectInfo, str]] = []

    def resolve() -> None:
        nonlocal known_n, changed
        if not pending:
            return
        keys = [info.key for info, _ in pending]
        previous_fps = lookup(keys) if lookup is not None else [known.get(k) for k in keys]
        for (info, kind), previous in zip(pending, previous_fps, strict=True):
            if previous == info.fingerprint and not process_all:
                known_n += 1
                continue
            if previous is not None and previous != info.fingerprint:
                changed += 1
            new.append(FileRef(info.key, info.fingerprint, info.size_bytes, kind))
        pending.clear()

    for info in source.list():
        if safe_listed_key(info.key) != info.key:  # a name that is not UTF-8 (local files)
            info = dataclasses.replace(info, key=safe_listed_key(info.key))
        if excluded and info.key.startswith(excluded):
            continue
        if relevant is not None and not relevant(info.key):
            not_relevant += 1
            continue
        kind = kind_of(info.key)
        if kind is None:
            ignored += 1
            if len(examples) < IGNORED_EXAMPLES:
                examples.append(info.key)
            continue
        listed += 1
        pending.append((info, kind))
        if len(pending) >= LOOKUP_BATCH:
            resolve()
    resolve()
    return Discovery(tuple(new), listed, known_n, changed, ignored, tuple(examples), not_relevant)


def plan_shards(
    files: Iterable[FileRef],
    *,
    max_files: int = 32,
    max_bytes: int = 256 << 20,
    shard_seconds: float | None = None,
    durations: Mapping[str, float] | None = None,
    min_shards: int = 1,
) -> tuple[Shard, ...]:
    """Group files into shards of at most `max_files` files and about `max_bytes` bytes.

    A shard's id hashes its files, so the same files plan to the same shard ids on a re-run
    and staged shards of a crashed run are found again. With `shard_seconds`, a video whose
    duration (from `durations`, e.g. `media.probe_duration`) is longer is planned as
    `ceil(duration / shard_seconds)` shards of one time range each (`FileRef.start_s`/`end_s`,
    the first open at the start and the last at the end), so several workers decode it at
    once; decoding a range gives exactly the whole-file frames in it, for every sampling rule,
    and `records.merge_file_results` makes its one `FileResult`.

    Args:
        files: The files, in plan order.
        max_files: Most files per shard.
        max_bytes: About the most bytes per shard (a bigger file is a shard of its own).
        shard_seconds: Length of a video's time ranges; None: videos are never split.
        durations: Key → seconds of the videos that may be split; others stay whole.
        min_shards: Make at least this many shards when there are that many files: shards
            then hold at most ceil(files / min_shards) files (so `scale.runs` child runs each
            get work when `max_files` would make fewer shards than runs).

    Raises:
        ConfigError: If `shard_seconds` is not positive, or `min_shards` is below 1.
    """
    if shard_seconds is not None and not shard_seconds > 0:
        raise ConfigError(f"shard_seconds must be positive or None, got {shard_seconds}")
    if min_shards < 1:
        raise ConfigError(f"min_shards must be at least 1, got {min_shards}")
    files = list(files)
    max_files = max(1, min(max_files, -(-len(files) // min_shards)))
    shards: list[Shard] = []
    group: list[FileRef] = []
    size = 0
    for f in files:
        ranges = _time_ranges(f, shard_seconds, durations)
        if ranges:
            if group:
                shards.append(Shard(len(shards), Shard.id_for(tuple(group)), tuple(group)))
                group, size = [], 0
            for r in ranges:
                shards.append(Shard(len(shards), Shard.id_for((r,)), (r,)))
            continue
        if group and (len(group) >= max_files or size + f.size_bytes > max_bytes):
            shards.append(Shard(len(shards), Shard.id_for(tuple(group)), tuple(group)))
            group, size = [], 0
        group.append(f)
        size += f.size_bytes
    if group:
        shards.append(Shard(len(shards), Shard.id_for(tuple(group)), tuple(group)))
    return tuple(shards)


def _time_ranges(
    f: FileRef, shard_seconds: float | None, durations: Mapping[str, float] | None
) -> list[FileRef]:
    """The time ranges a long video is split into (empty: keep it whole)."""
    if shard_seconds is None or not durations or f.kind != "video" or f.is_range:
        return []
    seconds = durations.get(f.key)
    if seconds is None or not seconds > shard_seconds:
        return []
    n = math.ceil(seconds / shard_seconds)
    bounds: list[float | None] = [None, *(k * shard_seconds for k in range(1, n)), None]
    return [dataclasses.replace(f, start_s=bounds[k], end_s=bounds[k + 1]) for k in range(n)]

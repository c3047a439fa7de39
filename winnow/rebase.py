"""Rebase a run that lost the commit race onto the newer pool version it lost to.

Two runs that start from one pool version can both finish their work; only one can create the
next version (`Datapool.commit` writes the manifest with put-if-absent). The loser must not land
as it is: its selection did not see the winner's picks. Its work is not wasted either: every
candidate is embedded (and staged). Rebasing drops from the loser what the winner already
committed — files with the same key and fingerprint, and their candidates — so the loser can
select again against the newer dataset, without decoding, and commit on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from winnow.datapool import PoolSnapshot
from winnow.errors import ConfigError
from winnow.records import Candidates, FileResult, ModelRecord, ObjectRows, TagRecord


@dataclass(frozen=True)
class PendingCommit:
    """What one commit attempt of a run writes, and the snapshot it writes on top of.

    Attributes:
        snapshot: The pool version the commit builds on (it creates version + 1).
        tag: The run's tag (None when nothing was selected).
        files: Every file of the run (ok, corrupt or skipped).
        candidates: Every candidate of the run, with embeddings.
        objects: The run's objects (boxes on its frames), with embeddings; None: none.
    """

    snapshot: PoolSnapshot
    tag: TagRecord | None
    files: list[FileResult]
    candidates: Candidates
    objects: ObjectRows | None = None


@dataclass(frozen=True)
class Rebased:
    """A run's files and candidates minus what newer commits already hold.

    Attributes:
        snapshot: The newer snapshot the run now builds on.
        files: The run's files that no newer commit holds (same key and fingerprint).
        candidates: The run's candidates that no newer commit holds (same key and
            fingerprint): those of the kept files.
        dropped_keys: Keys of the run's files that a newer commit already holds.
        dropped_candidates: How many candidates were dropped: the run's candidates minus
            `candidates`.
    """

    snapshot: PoolSnapshot
    files: list[FileResult]
    candidates: Candidates
    dropped_keys: tuple[str, ...]
    dropped_candidates: int


def rebase_run(
    base: PoolSnapshot,
    newer: PoolSnapshot,
    *,
    files: list[FileResult],
    candidates: Candidates,
    model: ModelRecord,
) -> Rebased:
    """Drop from a run the files (and their candidates) committed since its base version.

    Only rows committed after `base` count: a `process_all` run that reprocesses files its base
    already held keeps them. A file the newer commits hold with another fingerprint (it changed
    between the two listings) is kept; the next run sees whichever fingerprint is current.

    Args:
        base: The snapshot the run planned and selected against.
        newer: A later snapshot of the same pool (the version that won the race, or later).
        files: The run's file results.
        candidates: The run's candidates.
        model: The run's embedding model.

    Returns:
        The run's remaining files and candidates, and what was dropped.

    Raises:
        ConfigError: If `newer` is not later than `base`.
        ModelMismatch: If the newer pool holds another model's embeddings (it was re-embedded
            meanwhile): this run's candidates cannot join it.
    """
    if newer.version <= base.version:
        raise ConfigError(
            f"cannot rebase a run from version {base.version} of {newer.store.url} onto version "
            f"{newer.version}: rebase only onto a later version"
        )
    newer.check_model(model)
    return _rebase_run(base, newer, files=files, candidates=candidates)


def _rebase_run(
    base: PoolSnapshot,
    newer: PoolSnapshot,
    *,
    files: list[FileResult],
    candidates: Candidates,
) -> Rebased:
    # Algorithm: rows of `newer.files` whose run id the base never saw are the commits made
    # since the base (order-free, so compaction cannot confuse it); a run's file is dropped
    # when one of them holds the same (key, fingerprint).
    seen_runs = pc.unique(base.files.column("run_id"))
    since = newer.files.filter(pc.invert(pc.is_in(newer.files.column("run_id"), seen_runs)))
    committed = set(
        zip(
            since.column("key").to_pylist(),
            since.column("fingerprint").to_pylist(),
            strict=True,
        )
    )
    # A candidate goes by the same rule as a file, on its own (key, fingerprint): the winner
    # holds exactly that frame (same sample id), whatever the run's file rows say.
    kept = [f for f in files if (f.key, f.fingerprint) not in committed]
    dropped = tuple(f.key for f in files if (f.key, f.fingerprint) in committed)
    keep_rows = np.fromiter(
        (
            (k, fp) not in committed
            for k, fp in zip(candidates.key, candidates.fingerprint, strict=True)
        ),
        dtype=bool,
        count=len(candidates),
    )
    kept_candidates = candidates if keep_rows.all() else candidates.take(np.flatnonzero(keep_rows))
    return Rebased(
        snapshot=newer,
        files=kept,
        candidates=kept_candidates,
        dropped_keys=dropped,
        dropped_candidates=len(candidates) - len(kept_candidates),
    )

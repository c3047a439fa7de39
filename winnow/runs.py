"""A tag-making run from end to end: the records its steps return, and its ending.

Curate and reselect end the same way: select against the pool's dataset, upload the picks'
frames and the tag's files (staged in the pool), commit files, samples and tag together, then
publish the staged files under `tags/<tag>/`. What differs is what they bring (`Ending`): curate
selects among the candidates it decoded and commits them with its files; reselect selects among
samples the pool already holds and commits only the tag. A run that loses the commit race to
another one rebases (curate: the winner's files dropped, `winnow.rebase`) and selects again
against the newer dataset, without decoding; one that may not rebase fails with `PoolConflict`.

`finish_run` drives the ending through `Steps`, one callable per step: the core's own
(`local_steps`), or the orchestrator's (the Prefect tasks in `tasks/`, which add retries, logs
and the UI's task runs). The run's `RunSummary` fills itself from the records the steps return
(`Started`, `Discovered`, `Embedded`, `Picked`, a commit's version), so no caller writes it
field by field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from winnow import index, outputs, rebase
from winnow.clips import clip_units, group_clips
from winnow.datapool import PoolSnapshot
from winnow.discover import Discovery
from winnow.errors import ConfigError, PoolConflict
from winnow.objects._units import frame_probabilities, select_objects
from winnow.records import (
    SHOTS_SCHEMA,
    Candidates,
    ClipPick,
    FileResult,
    ModelRecord,
    ObjectRows,
    Selection,
    Shard,
    shots_to_arrow,
)
from winnow.selection import SelectionConfig, join_predictions, select
from winnow.stores import Stores
from winnow.summary import RunSummary

_log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 3
"""Commit attempts of a run that may rebase: the first, then one after each lost race."""


# -- what the steps before the ending return --------------------------------------------------


@dataclass(frozen=True)
class Started:
    """A run that is connected and has loaded its pool.

    Attributes:
        run_id: The run's id.
        stores: Its stores (source, output, pool).
        snapshot: The pool as loaded at the start.
        model: The run's embedding model (curate: checked against the pool's; reselect: the
            pool's, None for an empty pool).
        plan_hash: What the run's shards are staged under (model + frame options); empty when
            it decodes nothing.
        source: The source as the tag records it.
        parameters: The run's parameters as the tag records them (JSON-ready, no secrets).
        began_at: `time.perf_counter()` when the run began.
        done_at: `time.perf_counter()` when it was ready (the summary's `load` seconds).
    """

    run_id: str
    stores: Stores
    snapshot: PoolSnapshot
    model: ModelRecord | None
    parameters: dict
    source: str
    plan_hash: str = ""
    began_at: float = 0.0
    done_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Discovered:
    """What discovery found and the shards planned from it.

    Attributes:
        discovery: New, known and ignored files.
        shards: The decode+embed work, in plan order.
        done_at: `time.perf_counter()` when discovery ended.
        predictions_bad: Rows of `objects.predictions` not used, by reason (their boxes are
            attached to the shards' files).
    """

    discovery: Discovery
    shards: tuple[Shard, ...]
    done_at: float = field(default_factory=time.perf_counter)
    predictions_bad: dict[str, int] = field(default_factory=dict)

    @property
    def new(self) -> bool:
        """Whether anything is new (a run with nothing new decodes nothing and tags nothing)."""
        return bool(self.discovery.new)


@dataclass(frozen=True)
class Embedded:
    """The candidates a run selects among, and the files they come from.

    Attributes:
        candidates: Embedded frames.
        files: One result per file (ok, corrupt or skipped).
        shards: Shards planned (0 when the candidates come from the pool).
        resumed: Shards reused from an earlier attempt (staged).
        scaled: What the GPU pool's child runs or Dask did, in one line ("" when nothing).
        done_at: `time.perf_counter()` when the candidates were ready.
        objects: The run's objects (boxes on the candidates' frames), embedded.
    """

    candidates: Candidates
    files: list[FileResult]
    shards: int = 0
    resumed: int = 0
    scaled: str = ""
    done_at: float = field(default_factory=time.perf_counter)
    objects: ObjectRows = field(default_factory=ObjectRows.empty)


def start_summary(
    started: Started, discovered: Discovered | None = None, embedded: Embedded | None = None
) -> RunSummary:
    """The summary of a run so far, from what its first steps returned."""
    stores = started.stores
    summary = RunSummary(
        run_id=started.run_id,
        source=started.source,
        output=stores.output.url,
        decoded=discovered is not None,  # reselect's candidates come from the pool
    )
    summary.record_start(
        version=started.snapshot.version,
        model=started.model,
        seconds=started.done_at - started.began_at,
    )
    last = started.done_at
    if discovered is not None:
        summary.record_discovery(discovered.discovery, seconds=discovered.done_at - last)
        if discovered.predictions_bad:
            summary.record_predictions(discovered.predictions_bad)
        last = discovered.done_at
    if embedded is not None and discovered is not None:  # the run decoded these files
        summary.record_files(embedded.files, shards=embedded.shards, resumed=embedded.resumed)
        summary.scaled_out = embedded.scaled
        summary.seconds["decode_embed"] = round(embedded.done_at - last, 3)
    if embedded is not None:
        summary.candidates = len(embedded.candidates)
    return summary


# -- select -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Picked:
    """A selection against a pool's dataset.

    Attributes:
        selection: The picks, their reasons and the run's measures.
        dataset: float32 (M, D) embeddings of the dataset the selection was made against.
        pool_duplicates: Candidates dropped as near duplicates of pool samples (`scope: pool`).
        pool_nearest: Each pick's nearest pool sample, in pick order, from the near-duplicate
            search against the pool (`scope: pool`: the pool's index, or an exact scan without
            one); None otherwise (searching the whole pool only for the report would cost a
            read of the whole index every run).
        objects: Every object on the picked frames (their pre-annotations, crops in the
            report); empty without objects.
    """

    selection: Selection
    dataset: np.ndarray
    pool_duplicates: tuple[PoolDuplicate, ...] = ()
    pool_nearest: index.Nearest | None = None
    objects: ObjectRows = field(default_factory=ObjectRows.empty)


def _select_clips(
    snapshot: PoolSnapshot,
    candidates: Candidates,
    existing: Candidates,
    *,
    config: SelectionConfig,
    queries: np.ndarray | None,
    device: str,
    shots: pa.Table,
) -> Selection:
    """`unit: clip`: select clips (the dataset's clips held), every frame of a pick a pick."""
    keys = sorted({*map(str, candidates.key), *map(str, existing.key)})
    table = pa.concat_tables([snapshot.shots(keys).cast(SHOTS_SCHEMA), shots])
    clips = group_clips(candidates, table, config.clip_seconds)
    held = group_clips(existing, table, config.clip_seconds)
    units, seeds = clip_units(candidates, clips), clip_units(existing, held)
    result = select(
        units,
        dataset=seeds.embedding.astype(np.float32).reshape(len(seeds), units.embedding.shape[1]),
        config=config,
        queries=queries,
        device=device,
        dataset_ids=seeds.sample_id,
    )
    picks, picked = [], []
    for p in result.picks:
        clip = clips[p.index]
        span = f"clip {clip.start_s:.1f}-{clip.end_s:.1f} s"
        picked.append(
            ClipPick(
                clip_id=clip.clip_id,
                key=clip.key,
                fingerprint=clip.fingerprint,
                start_s=clip.start_s,
                end_s=clip.end_s,
                sample_ids=tuple(str(candidates.sample_id[r]) for r in clip.rows),
                reason=p.reason,
            )
        )
        picks += [
            replace(
                p, sample_id=str(candidates.sample_id[r]), index=r, reason=f"{span}: {p.reason}"
            )
            for r in clip.rows
        ]
    return replace(result, picks=tuple(picks), clips=tuple(picked))


@dataclass(frozen=True)
class PoolDuplicate:
    """A candidate dropped as a near duplicate of a sample the pool holds (`scope: pool`).

    Attributes:
        key: The candidate's file.
        frame_index: Its frame.
        nearest_key: The file of the nearest pool sample.
        nearest_frame_index: That sample's frame.
        distance: Their distance (approximate when found through the index).
    """

    key: str
    frame_index: int
    nearest_key: str
    nearest_frame_index: int
    distance: float


def _drop_pool_duplicates(
    snapshot: PoolSnapshot, candidates: Candidates, near: float
) -> tuple[np.ndarray, tuple[PoolDuplicate, ...], index.Nearest]:
    """The candidates' nearest pool samples, and which are near duplicates of them.

    Returns:
        Rows of the candidates farther than `near` from every other sample of the pool, the
        others as `PoolDuplicate`s, and every candidate's nearest pool sample.
    """
    found = index.nearest_in_pool(snapshot, candidates.embedding, query_ids=candidates.sample_id)
    close = found.distance < near * (1.0 if found.exact else index.APPROX_SLACK)
    dropped = tuple(
        PoolDuplicate(
            key=str(candidates.key[i]),
            frame_index=int(candidates.frame_index[i]),
            nearest_key=str(found.key[i]),
            nearest_frame_index=int(found.frame_index[i]),
            distance=round(float(found.distance[i]), 4),
        )
        for i in np.flatnonzero(close)
    )
    return np.flatnonzero(~close), dropped, found


def select_against_pool(
    snapshot: PoolSnapshot,
    candidates: Candidates,
    *,
    config: SelectionConfig,
    against_dataset: bool = True,
    read_named: Callable[[str], bytes] | None = None,
    embed_queries: Callable[[Sequence[str]], np.ndarray] | None = None,
    embed_texts: Callable[[Sequence[str]], np.ndarray] | None = None,
    device: str = "auto",
    files: Sequence[FileResult] = (),
    objects: ObjectRows | None = None,
) -> Picked:
    """Select among candidates with the pool's dataset as already chosen (the one entry point).

    What the config needs besides embeddings (`SelectionConfig.needs`) is fetched here: the
    predictions file's columns through `read_named`, the query files' embeddings through
    `embed_queries`.

    Args:
        snapshot: The pool whose dataset (every tag's members) counts as already chosen.
        candidates: What to pick among.
        config: Strategies, stopping rules, deduplication.
        against_dataset: Off: pick afresh (an empty dataset).
        read_named: Reads a file a parameter names (`Stores.read_named`).
        embed_queries: Decodes and embeds query files with the run's model; None where the run
            never decodes (re-selection).
        embed_texts: Embeds text queries with the run's model's text tower (a similarity
            strategy's `texts`); None where the run has no model loaded (re-selection).
        device: Where distances are computed.
        files: The run's own files, whose shots (`unit: clip`) the pool does not hold yet; the
            pool's shots of the other videos are read from `snapshot`.
        objects: The run's objects (boxes on the candidates' frames), which the pool does not
            hold yet; None: the pool's objects of the candidates' frames (re-selection). They
            are the units of `unit: object`, give a frame's `probabilities` column (its
            objects' vectors, for `uncertainty`), and the picked frames' objects are returned.

    Returns:
        The selection and the dataset's embeddings.

    Raises:
        ConfigError: If the config needs query files and there is no `embed_queries`, needs a
            predictions file and there is no `read_named`, or as `selection.select`.
    """
    needs = config.needs()
    texts = needs.texts
    if (needs.query_keys and embed_queries is None) or (texts and embed_texts is None):
        raise ConfigError(
            "a similarity strategy's query_keys and texts must be embedded with the run's model, "
            "which re-selection never loads: use a curate run (`winnow run`) for query-based "
            "selection, or `winnow similar` to search the pool"
        )
    if needs.predictions and read_named is None:
        raise ConfigError(f"predictions {needs.predictions!r}: no store to read it from")
    dim = candidates.embedding.shape[1]
    existing = snapshot.dataset() if against_dataset else Candidates.empty(dim)
    dataset = existing.embedding.astype(np.float32)
    columns = queries = None
    if needs.predictions:
        data = read_named(needs.predictions)
        columns = join_predictions(candidates, data, filename=needs.predictions)
    if needs.query_keys or texts:
        queries = np.concatenate(
            [
                np.asarray(q, np.float32)
                for q in (
                    embed_queries(needs.query_keys) if needs.query_keys else None,
                    embed_texts(texts) if texts else None,
                )
                if q is not None
            ]
        )
    if objects is None:
        objects = snapshot.objects(candidates.sample_id)
    if "probabilities" in needs.columns and len(objects):
        columns = dict(columns or {})
        columns.setdefault("probabilities", frame_probabilities(candidates, objects))
    if config.unit == "object":
        held = snapshot.dataset_objects() if len(existing) else ObjectRows.empty(dim)
        result = _select_objects(candidates, objects, existing, held, config, queries, device)
        return Picked(
            selection=result, dataset=dataset, objects=objects.on_frames(result.sample_ids)
        )
    if config.unit == "clip":
        result = _select_clips(
            snapshot,
            candidates,
            existing,
            config=config,
            queries=queries,
            device=device,
            shots=shots_to_arrow(list(files)),
        )
        return Picked(
            selection=result, dataset=dataset, objects=objects.on_frames(result.sample_ids)
        )
    keep, dropped, found = np.arange(len(candidates)), (), None
    if config.near_duplicate_scope == "pool" and config.near_duplicate_distance is not None:
        keep, dropped, found = _drop_pool_duplicates(
            snapshot, candidates, config.near_duplicate_distance
        )
    chosen = candidates if not dropped else candidates.take(keep)
    result = select(
        chosen,
        dataset=dataset,
        config=config,
        columns=None if columns is None else {k: np.asarray(v)[keep] for k, v in columns.items()},
        queries=queries,
        device=device,
        dataset_ids=existing.sample_id,
    )
    if dropped:  # picks name rows of the run's candidates, not of the kept subset
        result = replace(
            result,
            picks=tuple(replace(p, index=int(keep[p.index])) for p in result.picks),
            n_removed_duplicates=result.n_removed_duplicates + len(dropped),
        )
    return Picked(
        selection=result,
        dataset=dataset,
        pool_duplicates=dropped,
        pool_nearest=None if found is None else found.take(result.indices),
        objects=objects.on_frames(result.sample_ids),
    )


def _select_objects(
    candidates: Candidates,
    objects: ObjectRows,
    existing: Candidates,
    held: ObjectRows,
    config: SelectionConfig,
    queries: np.ndarray | None,
    device: str,
) -> Selection:
    """`unit: object`: the candidates' objects (not on the dataset's frames) against `held`."""
    mine = objects.on_frames(existing.sample_id, inside=False)
    if not len(mine):
        raise ConfigError(
            "selection.unit object: none of the candidates' frames has an object; set "
            "objects.predictions to the detector's boxes for these files (or use unit frame)"
        )
    return select_objects(
        mine, candidates, held=held, config=config, queries=queries, device=device
    )


# -- the ending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ending:
    """What a run brings to its ending.

    Attributes:
        tag_name: The tag's name as asked (None: the pool's next `run-NNNN` when committing).
        candidates: What the selection picks among.
        files: The files of the candidates (exports and report read them).
        new_rows: True when `files` and `candidates` are the run's new rows, committed with
            the tag (curate); False when the pool holds them already and only the tag is
            committed (reselect).
        may_rebase: After a lost commit race: rebase and select again (up to
            `COMMIT_ATTEMPTS` commits), or fail.
        objects: The run's objects, committed with its rows (curate); None where the pool
            holds them (reselect: read from the pool when needed).
    """

    tag_name: str | None
    candidates: Candidates
    files: list[FileResult]
    new_rows: bool = True
    may_rebase: bool = True
    objects: ObjectRows | None = None

    @property
    def attempts(self) -> int:
        """Commits the run may try: `COMMIT_ATTEMPTS` when it may rebase, else one."""
        return COMMIT_ATTEMPTS if self.may_rebase else 1


@dataclass(frozen=True)
class Steps:
    """The steps of an ending, as the orchestrator runs them.

    Attributes:
        select: (base snapshot, candidates, objects) -> the picks against its dataset (objects:
            the run's, or None for the pool's).
        upload: (tag, candidates, picked, files, summary) -> what was written (frames to the
            output, the tag's files staged in the pool).
        commit: (pending commit, attempt) -> the new version, or None when another run
            committed first (a commit that lands also deletes the run's staged shards).
        reload: () -> the pool's latest snapshot (after a lost race).
        publish: (tag) -> copy the committed tag's staged files to `tags/<tag>/`.
    """

    select: Callable[[PoolSnapshot, Candidates, ObjectRows | None], Picked]
    upload: Callable[[str, Candidates, Picked, list[FileResult], RunSummary], outputs.Exported]
    commit: Callable[[rebase.PendingCommit, int], int | None]
    reload: Callable[[], PoolSnapshot]
    publish: Callable[[str], None]


@dataclass(frozen=True)
class Finished:
    """How a run ended.

    Attributes:
        summary: Everything the run did.
        candidates: What the last selection picked among (after any rebase).
        picked: The committed selection.
        exported: What its upload wrote (None when nothing was picked).
        version: The committed pool version.
    """

    summary: RunSummary
    candidates: Candidates
    picked: Picked
    exported: outputs.Exported | None
    version: int


def finish_run(
    started: Started,
    ending: Ending,
    summary: RunSummary,
    *,
    steps: Steps,
    log: logging.Logger | logging.LoggerAdapter = _log,
) -> Finished:
    """Select, upload, commit (rebasing after a lost race), publish.

    Args:
        started: The run (its pool snapshot is the base of the first attempt).
        ending: What it selects among and commits.
        summary: The run's summary so far (`start_summary`); filled in here.
        steps: How each step runs.
        log: Where the rebase is told.

    Returns:
        The committed outcome.

    Raises:
        PoolConflict: If every commit lost a race (or the only one, where rebasing is off).
        ConfigError: If the tag's name exists in the pool it commits to.
    """
    base, attempts = started.snapshot, ending.attempts
    for attempt in range(1, attempts + 1):
        tag = ending.tag_name or base.next_tag_name()
        base.check_new_tag(tag)
        clock = time.perf_counter()
        picked = steps.select(base, ending.candidates, ending.objects)
        summary.record_picks(
            picked.selection,
            dataset_samples=len(picked.dataset),
            base=base,
            tag=tag,
            seconds=_since(clock),
        )
        summary.record_pool_duplicates(picked.pool_duplicates)
        exported = None
        if picked.selection.picks:
            clock = time.perf_counter()
            exported = steps.upload(tag, ending.candidates, picked, ending.files, summary)
            summary.record_exports(exported, seconds=_since(clock))
        pending = _pending(started, ending, base, tag, picked.selection, summary)
        clock = time.perf_counter()
        version = steps.commit(pending, attempt)
        if version is not None:
            if pending.tag is not None:  # only now: a losing run never overwrites the winner's
                steps.publish(pending.tag.name)
            summary.record_commit(version, attempts=attempt, seconds=_since(clock))
            return Finished(summary, ending.candidates, picked, exported, version)
        if attempt < attempts:
            ending, base = _rebase(started, ending, base, steps.reload(), summary, attempt, log)
    url = started.stores.pool.url
    if attempts == 1:
        raise PoolConflict(
            f"datapool {url}: another run committed first; nothing of this run was committed. "
            "Run it again, or give runs on one pool a concurrency limit of 1."
        )
    raise PoolConflict(
        f"datapool {url}: other runs committed first {attempts} times in a row; nothing of this "
        "run was committed. Re-run the job (its finished shards are staged and are reused), or "
        "give runs on one pool a concurrency limit of 1."
    )


def _since(clock: float) -> float:
    return time.perf_counter() - clock


def _pending(
    started: Started,
    ending: Ending,
    base: PoolSnapshot,
    tag: str,
    selection: Selection,
    summary: RunSummary,
) -> rebase.PendingCommit:
    """What one commit attempt writes on top of `base`."""
    new_tag = base.new_tag(
        name=tag,
        run_id=started.run_id,
        parameters={**started.parameters, "source": started.source},
        counts=summary.counts(),
        selection=selection,
    )
    if ending.new_rows:
        return rebase.PendingCommit(
            base, new_tag, ending.files, ending.candidates, objects=ending.objects
        )
    dim = ending.candidates.embedding.shape[1]
    return rebase.PendingCommit(base, new_tag, [], Candidates.empty(dim))


def _rebase(
    started: Started,
    ending: Ending,
    base: PoolSnapshot,
    newer: PoolSnapshot,
    summary: RunSummary,
    attempt: int,
    log: logging.Logger | logging.LoggerAdapter,
) -> tuple[Ending, PoolSnapshot]:
    """The ending on top of `newer`: the winner's files and their candidates dropped."""
    rebased = rebase.rebase_run(
        base, newer, files=ending.files, candidates=ending.candidates, model=started.model
    )
    log.warning(
        "rebasing onto version %d for commit attempt %d: %d files (%d candidates) the other run "
        "committed are dropped; selecting again from %d staged candidates",
        newer.version,
        attempt + 1,
        len(rebased.dropped_keys),
        rebased.dropped_candidates,
        len(rebased.candidates),
    )
    summary.record_rebase(rebased)
    objects = ending.objects  # the dropped frames' objects go with them
    if objects is not None:
        objects = objects.on_frames(rebased.candidates.sample_id)
    ending = replace(ending, files=rebased.files, candidates=rebased.candidates, objects=objects)
    return ending, newer


def local_steps(
    started: Started,
    *,
    config: SelectionConfig,
    against_dataset: bool = True,
    embed_queries: Callable[[Sequence[str]], np.ndarray] | None = None,
    device: str = "auto",
    staged: Sequence[str] = (),
) -> Steps:
    """The ending's steps as plain calls into the core (no orchestrator).

    Args:
        started: The run.
        config: Its selection parameters.
        against_dataset: As `select_against_pool`.
        embed_queries: As `select_against_pool`.
        device: As `select_against_pool`.
        staged: Ids of the shards staged under the run's plan (deleted once committed).
    """
    stores = started.stores

    def try_commit(pending: rebase.PendingCommit, attempt: int) -> int | None:
        try:
            return commit_attempt(stores, pending, started=started, staged=staged)
        except PoolConflict:
            return None

    return Steps(
        select=lambda base, candidates, objects: select_against_pool(
            base,
            candidates,
            objects=objects,
            config=config,
            against_dataset=against_dataset,
            read_named=stores.read_named,
            embed_queries=embed_queries,
            device=device,
        ),
        upload=lambda tag, candidates, picked, files, summary: upload_picks(
            stores, tag, candidates, picked, files, summary, run_id=started.run_id
        ),
        commit=try_commit,
        reload=stores.pool.load,
        publish=lambda tag: outputs.publish_exports(
            stores.pool.store, stores.output, started.run_id, tag
        ),
    )


def upload_picks(
    stores: Stores,
    tag: str,
    candidates: Candidates,
    picked: Picked,
    files: list[FileResult],
    summary: RunSummary,
    *,
    run_id: str,
) -> outputs.Exported:
    """Frames to the output; the tag's files to the run's staging folder in the pool.

    They are published under `tags/<tag>/` once the tag is committed (`outputs.publish_exports`).
    """
    return outputs.upload_selection(
        source=stores.source,
        output=stores.output,
        tag=tag,
        candidates=candidates,
        selection=picked.selection,
        files={f.key: f for f in files},
        dataset=picked.dataset,
        summary=summary,
        exports=outputs.staged_exports(stores.pool.store, run_id),
        pool_nearest=picked.pool_nearest,
        objects=picked.objects,
    )


def commit_attempt(
    stores: Stores, pending: rebase.PendingCommit, *, started: Started, staged: Sequence[str]
) -> int | None:
    """One commit of files, samples and tag on top of `pending.snapshot`.

    Once it lands, the run's staged shards (`staged`, under `started.plan_hash`) are deleted.

    Returns:
        The new version.

    Raises:
        PoolConflict: If another run committed first (nothing of this run was committed).
    """
    version = stores.pool.commit(
        pending.snapshot,
        run_id=started.run_id,
        files=pending.files,
        samples=pending.candidates,
        tag=pending.tag,
        model=started.model,
        objects=pending.objects,
    )
    if staged:
        stores.pool.clear_staged(started.plan_hash, staged)
    return version

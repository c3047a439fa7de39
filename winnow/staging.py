"""Resume and stage: the one loop every decode+embed step runs over its planned shards.

Curate's own decode+embed, a re-embed, a GPU-pool child and a Dask task all do the same thing
with a different `embed`: skip the shards already staged under the plan (by anyone), embed the
rest, stage each finished shard at once (`Datapool.stage_shard`, so a crash loses only the
shards in flight), and report as they go:

    planned shards ──> staged already? ── yes ──> reused (loaded when the caller needs them)
                                      └── no ───> embed(todo) ──> stage_shard, one per shard

The staged-shard rules are the datapool's: a shard staged by anyone is skipped; a torn or
unreadable one is embedded again (`Datapool.load_staged` gives None); storage errors are raised,
never taken for a missing shard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from winnow.datapool import Datapool
from winnow.records import Candidates, FileResult, ObjectRows, Shard, merge_file_results

if TYPE_CHECKING:
    from winnow.engine import ShardResult

ShardEmbedder = Callable[[Sequence[Shard]], Iterable["ShardResult"]]
"""Embeds shards, yielding one `engine.ShardResult` per shard in order (`engine.embed_shards`,
`training.embed_reembed_shards`, with their options bound)."""


@dataclass
class Staged:
    """What `embed_and_stage` did.

    Attributes:
        candidates: Every planned shard's samples: the reused shards' first, then the new
            ones', each in plan order; None when the caller did not collect them.
        files: Their file results, one per file (a long video's time ranges merged by
            `records.merge_file_results`); empty when not collected.
        objects: Their objects (boxes cut from their frames), in the same order; None when
            not collected.
        staged: Ids of the shards embedded and staged by this call, in order.
        reused: Ids of the planned shards found staged already.
        frames: Samples embedded by this call.
        seconds: Wall time of the call.
    """

    candidates: Candidates | None = None
    files: list[FileResult] = field(default_factory=list)
    objects: ObjectRows | None = None
    staged: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0


def _ignore(*_: object) -> None:
    return None


def embed_and_stage(
    pool: Datapool,
    plan_hash: str,
    shards: Sequence[Shard],
    *,
    embed: ShardEmbedder,
    dim: int,
    collect: bool = True,
    on_resume: Callable[[list[str], int], None] = _ignore,
    on_shard: Callable[[ShardResult], None] = _ignore,
) -> Staged:
    """Embed the planned shards not staged yet, staging each one as soon as it is finished.

    Idempotent: a shard staged before, by this run or any other process, is not embedded again,
    and staging the same shard twice writes the same object.

    Args:
        pool: The datapool whose staging area holds the shards.
        plan_hash: The plan they are staged under.
        shards: The planned shards, in order.
        embed: Embeds the shards still to do (see `ShardEmbedder`).
        dim: Embedding width (of the empty result when there is nothing at all).
        collect: Load the staged shards (`Datapool.resume`: a torn one is embedded again) and
            keep every shard's samples and file results for the caller. False (a child run or
            a Dask task, whose parent reads the staging area) only skips the staged shards by
            id and keeps nothing in memory.
        on_resume: Called once, before any embedding, with the ids of the shards reused and
            their frames (0 when they are not collected).
        on_shard: Called after each shard is staged, with its result.

    Returns:
        What was reused, staged and collected.

    Raises:
        StorageError: If the staging area cannot be listed or read or a shard cannot be staged
            (never taken for a missing shard).
        Whatever `embed` raises (e.g. `engine.embed_shards`'s `DecodeError`); the shards
            staged before it stay staged.
    """
    started = time.perf_counter()
    parts: list[Candidates] = []
    files: list[FileResult] = []
    objects: list[ObjectRows] = []
    if collect:
        resumed = pool.resume(plan_hash, shards)
        todo, parts, files = resumed.todo, resumed.candidates, resumed.files
        objects = resumed.objects
    else:
        todo = unstaged(pool, plan_hash, shards)
    todo_ids = {s.shard_id for s in todo}
    out = Staged(reused=[s.shard_id for s in shards if s.shard_id not in todo_ids])
    on_resume(out.reused, sum(len(c) for c in parts))
    for result in embed(todo):
        pool.stage_shard(
            plan_hash, result.shard.shard_id, result.candidates, result.files, result.objects
        )
        out.staged.append(result.shard.shard_id)
        out.frames += len(result.candidates)
        if collect:
            parts.append(result.candidates)
            files.extend(result.files)
            objects.append(result.objects)
        on_shard(result)
    if collect:
        out.candidates = Candidates.concat(parts) if parts else Candidates.empty(dim)
        out.files = merge_file_results(files)
        out.objects = ObjectRows.concat(objects) if objects else ObjectRows.empty(dim)
    out.seconds = round(time.perf_counter() - started, 3)
    return out


def unstaged(pool: Datapool, plan_hash: str, shards: Sequence[Shard]) -> list[Shard]:
    """The shards not staged under the plan yet (by anyone), in order.

    Raises:
        StorageError: If the staging area cannot be listed.
    """
    staged = pool.staged_shard_ids(plan_hash)
    return [s for s in shards if s.shard_id not in staged]

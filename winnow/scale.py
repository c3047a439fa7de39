"""Scale-out of decode+embed: groups of shards for child runs (GPU pool) or a Dask cluster.

The shard stays the unit of work and of result: whoever decodes a shard stages it in the pool's
staging area (`Datapool.stage_shard`), so results never travel through the orchestrator. For a
work pool the parent groups its planned shards into at most `runs` groups and writes each
group's description to the same area, so a child run's parameters are a key, not a file list:

    <pool>/staging/<plan-hash>/groups/<group-id>.json          what a child decodes (no secrets)
    <pool>/staging/<plan-hash>/groups/<group-id>.result.json   what it did: host, pids, shards

`embed_on_children` is the parent's side: it writes the groups and runs `fan_out`, which does
the rounds: submit every group, wait, re-plan the shards still not staged (a child that
crashed, failed or timed out) into new groups, up to `retries` more rounds. What is still
missing after that is left to the caller, which decodes it itself (`staging.embed_and_stage`).
`stage_group` is a child's side (a GPU-pool child's group, a Dask task's one shard): the same
resume-and-stage loop as the parent's own decode step, keeping nothing in memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from winnow import engine, staging
from winnow.datapool import Datapool
from winnow.embedding import Embedder, EmbeddingOptions
from winnow.errors import ConfigError, NotFound
from winnow.media import FrameOptions
from winnow.objects import CropSettings
from winnow.records import FileRef, Shard
from winnow.storage import ObjectStore

GROUP_FORMAT = "winnow-group/1"


class ScaleOptions(BaseModel):
    """Where decode+embed runs: in this run's process, on the GPU work pool, or on Dask."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Scale")

    mode: Literal["local", "pool", "dask"] = Field(
        "local",
        description="'local': decode and embed in this run's process (default); 'pool': child "
        "runs of `deployment` on its work pool's workers (GPU hosts), each taking a group of "
        "shards; 'dask': one task per shard on the Dask cluster at `address`.",
    )
    deployment: str = Field(
        "embed-shards/gpu",
        min_length=3,
        pattern=r"^[^/]+/[^/]+$",
        description="Child deployment of mode 'pool', as <flow>/<deployment>.",
    )
    runs: int = Field(
        16,
        ge=1,
        le=1000,
        description="Mode 'pool': at most this many child runs; the shards are split among "
        "them. Each child pays a run's start-up (a process, imports, the worker's poll): "
        "give each one minutes of work.",
    )
    timeout_s: int | None = Field(
        3600,
        ge=10,
        description="Mode 'pool': seconds to wait for a child run; its unstaged shards are "
        "then given to another child. Empty: wait as long as it takes.",
    )
    retries: int = Field(
        1,
        ge=0,
        le=10,
        description="Rounds of resubmission for the shards of children that crashed, failed "
        "or timed out (mode 'dask': retries of a shard's task). What is still missing after "
        "them is decoded by this run itself.",
    )
    address: str | None = Field(
        None,
        description="Mode 'dask': the scheduler of an existing cluster, e.g. tcp://10.0.0.5:8786.",
        examples=["tcp://127.0.0.1:8786"],
    )

    @property
    def min_shards(self) -> int:
        """Shards to plan at least: one per child run on the pool (each then gets work)."""
        return self.runs if self.mode == "pool" else 1

    @model_validator(mode="after")
    def _check_mode(self) -> ScaleOptions:
        if self.mode == "dask" and not self.address:
            raise ValueError("scale.mode 'dask' needs scale.address (tcp://host:port)")
        if self.address and not self.address.startswith(("tcp://", "tls://", "inproc://")):
            raise ValueError(f"scale.address {self.address!r}: use tcp://host:port")
        return self


@dataclass(frozen=True)
class Group:
    """Shards one child run decodes and embeds.

    Attributes:
        group_id: Content id: the round and a hash of the shard ids.
        shards: The shards, in plan order.
    """

    group_id: str
    shards: tuple[Shard, ...]

    @property
    def files(self) -> int:
        """Files in the group."""
        return sum(len(s.files) for s in self.shards)


def plan_groups(shards: Sequence[Shard], *, runs: int, round_: int = 0) -> list[Group]:
    """Split shards into at most `runs` groups of consecutive shards with balanced file counts.

    Args:
        shards: The shards, in plan order.
        runs: Most groups wanted (at least 1).
        round_: Resubmission round (0 first), part of the group ids.

    Returns:
        Non-empty groups, in plan order; every shard is in exactly one.

    Raises:
        ConfigError: If `runs` is below 1.
    """
    if runs < 1:
        raise ConfigError(f"runs must be at least 1, got {runs}")
    n = min(runs, len(shards))
    if n == 0:
        return []
    # Algorithm: cut the running file count at the multiples of total/n, so groups are
    # consecutive (plan order, cache-friendly listings) and within a shard of balanced.
    total = sum(max(len(s.files), 1) for s in shards)
    cuts: list[list[Shard]] = [[] for _ in range(n)]
    seen = 0
    for shard in shards:
        weight = max(len(shard.files), 1)
        slot = min(n - 1, int((seen + weight / 2) * n / total))
        cuts[slot].append(shard)
        seen += weight
    groups = []
    for members in cuts:
        if not members:
            continue
        digest = hashlib.blake2b(
            "\n".join(s.shard_id for s in members).encode(), digest_size=6
        ).hexdigest()
        groups.append(Group(f"r{round_}-{len(groups):03d}-{digest}", tuple(members)))
    return groups


def group_key(plan_hash: str, group_id: str) -> str:
    """Key (in the pool's store) of a group's description."""
    return f"staging/{plan_hash}/groups/{group_id}.json"


def result_key(key: str) -> str:
    """Key of the result a child writes beside its group's description."""
    return key.removesuffix(".json") + ".result.json"


@dataclass(frozen=True)
class EmbedJob:
    """What every group of one run's decode+embed shares: the plan, the source, the settings.

    Attributes:
        plan_hash: Plan the shards are staged under.
        source: URL of the raw data (children connect to it with their own credentials).
        frames: How video frames are sampled.
        embedding: The model and its decode settings.
        crops: How boxes on the files (`FileRef.boxes`) are cut; None: no objects.
    """

    plan_hash: str
    source: str
    frames: FrameOptions
    embedding: EmbeddingOptions
    crops: CropSettings | None = None

    def describe(self, group: Group, *, group_id: str | None = None) -> GroupSpec:
        """The description of `group` a child reads (named `group_id`, default the group's)."""
        return GroupSpec(
            plan_hash=self.plan_hash,
            group_id=group_id or group.group_id,
            source=self.source,
            shards=group.shards,
            frames=self.frames.model_dump(mode="json"),
            embedding=self.embedding.model_dump(mode="json"),
            crops=asdict(self.crops) if self.crops is not None else None,
        )


@dataclass(frozen=True)
class GroupSpec:
    """A group's description as a child reads it: everything but credentials.

    Attributes:
        plan_hash: Plan the shards are staged under.
        group_id: The group.
        source: URL of the raw data.
        shards: The shards.
        frames: `FrameOptions` as JSON data.
        embedding: `EmbeddingOptions` as JSON data.
        crops: `CropSettings` as JSON data; None: no objects.
    """

    plan_hash: str
    group_id: str
    source: str
    shards: tuple[Shard, ...]
    frames: dict
    embedding: dict
    crops: dict | None = None

    @property
    def crop_settings(self) -> CropSettings | None:
        """How the group's boxes are cut (None: no objects)."""
        return CropSettings(**self.crops) if self.crops is not None else None

    @property
    def frame_options(self) -> FrameOptions:
        """How the group's video frames are sampled."""
        return FrameOptions.model_validate(self.frames)

    @property
    def embedding_options(self) -> EmbeddingOptions:
        """The group's model and its decode settings."""
        return EmbeddingOptions.model_validate(self.embedding)

    def to_json(self) -> bytes:
        """The stored form."""
        data = {"format": GROUP_FORMAT, **asdict(self)}
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> GroupSpec:
        """Parse a stored group.

        Raises:
            ConfigError: If it is not a group description of this format.
        """
        try:
            raw = json.loads(data)
            if raw.pop("format") != GROUP_FORMAT:
                raise ValueError("unknown format")
            shards = tuple(
                Shard(
                    index=s["index"],
                    shard_id=s["shard_id"],
                    files=tuple(FileRef(**f) for f in s["files"]),
                )
                for s in raw.pop("shards")
            )
            return cls(shards=shards, **raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{where} is not a {GROUP_FORMAT} group description: {exc}") from exc


def write_group(pool: Datapool, spec: GroupSpec) -> str:
    """Store a group's description in the pool's staging area; return its key."""
    key = group_key(spec.plan_hash, spec.group_id)
    pool.store.put(key, spec.to_json())
    return key


def read_group(pool: Datapool, key: str) -> GroupSpec:
    """Read a group's description.

    Raises:
        ConfigError: If the key is not a group of this pool's staging area, or is missing.
    """
    if not (key.startswith("staging/") and "/groups/" in key and key.endswith(".json")):
        raise ConfigError(f"group {key!r}: expected staging/<plan-hash>/groups/<group-id>.json")
    try:
        return GroupSpec.from_json(pool.store.get(key), pool.store.url_for(key))
    except NotFound as exc:
        raise ConfigError(f"group {pool.store.url_for(key)} does not exist: {exc}") from exc


_GROUP_CACHE: dict[tuple[str, str], GroupSpec] = {}
_GROUP_CACHE_LOCK = threading.Lock()


def read_group_cached(pool: Datapool, key: str) -> GroupSpec:
    """`read_group`, once per process and group (a Dask worker reads it for every shard)."""
    with _GROUP_CACHE_LOCK:
        if (spec := _GROUP_CACHE.get((pool.url, key))) is None:
            if len(_GROUP_CACHE) >= 8:
                _GROUP_CACHE.clear()
            spec = _GROUP_CACHE[(pool.url, key)] = read_group(pool, key)
        return spec


@dataclass
class GroupResult:
    """What a child did with its group (written beside the group, read by tests and logs).

    Attributes:
        group_id: The group.
        host: Host name of the process that ran it.
        pid: Its process id.
        ppid: Its parent's process id (the worker, for a process work pool).
        staged: Ids of the shards it staged.
        reused: Ids of the shards it found staged already.
        seconds: Wall time of decode+embed.
        frames: Frames embedded.
    """

    group_id: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    ppid: int = field(default_factory=os.getppid)
    staged: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0


def write_result(pool: Datapool, key: str, result: GroupResult) -> None:
    """Store a child's result beside its group."""
    pool.store.put(result_key(key), json.dumps(asdict(result), sort_keys=True).encode())


def read_results(
    pool: Datapool, plan_hash: str, cache: dict[str, GroupResult] | None = None
) -> list[GroupResult]:
    """Every child result stored under a plan (empty once the run has committed).

    A child writes its result when its group ends (a resubmitted group gets a new id), so
    progress polls pass a `cache` of results already read (by key, filled here) and pay one
    listing per poll, not a read of every result.
    """
    cache = {} if cache is None else cache
    try:
        infos = list(pool.store.list(f"staging/{plan_hash}/groups"))
    except NotFound:
        return []
    out = []
    for info in infos:
        if info.key.endswith(".result.json"):
            if info.key not in cache:
                cache[info.key] = GroupResult(**json.loads(pool.store.get(info.key)))
            out.append(cache[info.key])
    return out


def clear_groups(pool: Datapool, plan_hash: str) -> None:
    """Delete the group descriptions and results of a plan (once their shards are staged)."""
    try:
        keys = [info.key for info in pool.store.list(f"staging/{plan_hash}/groups")]
    except NotFound:
        return
    pool.store.delete(keys)


@dataclass(frozen=True)
class ScaledOut:
    """What scaling out did for a run: for its summary, and for its own decode step.

    Attributes:
        staged: Ids of the shards the child runs (or Dask workers) staged.
        text: One line for people: how many children ran, on how many workers, in how many
            rounds, what failed and what was left to the run itself.
    """

    staged: frozenset[str]
    text: str


@dataclass
class FanOut:
    """What `fan_out` did.

    Attributes:
        groups: Groups submitted, every round.
        failed: Groups whose run did not complete (crashed, failed, timed out), with why.
        rounds: Rounds run (1 = no resubmission).
        missing: Shards still not staged after the last round (the caller decodes them).
    """

    groups: list[Group] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rounds: int = 0
    missing: list[Shard] = field(default_factory=list)
    results: list[GroupResult] = field(default_factory=list)

    def scaled_out(self) -> ScaledOut:
        """What the children did, for the run's summary."""
        workers = {(r.host, r.ppid) for r in self.results}
        hosts = sorted({r.host for r in self.results})
        text = (
            f"{len(self.groups)} child runs in {self.rounds} round"
            f"{'s' if self.rounds != 1 else ''} on {len(workers)} worker"
            f"{'s' if len(workers) != 1 else ''} ({', '.join(hosts) or 'none reported'}); "
            f"{len(self.failed)} did not finish; {len(self.missing)} shards left to this run"
        )
        # Every shard a group held and that is staged now: a child killed after staging some
        # of its shards writes no result, but its shards count.
        planned = {s.shard_id for g in self.groups for s in g.shards}
        return ScaledOut(frozenset(planned - {s.shard_id for s in self.missing}), text)

    def report(self) -> list[tuple[int, str]]:
        """Log lines (level, text): each child's result, each failed group, what is missing."""
        lines = [
            (
                logging.INFO,
                f"child {r.group_id} on {r.host} (pid {r.pid}): {len(r.staged)} shards staged, "
                f"{r.frames} frames in {r.seconds:.1f} s",
            )
            for r in self.results
        ]
        lines += [
            (logging.WARNING, f"child run of group {group_id} did not finish: {why}")
            for group_id, why in self.failed.items()
        ]
        if self.missing:
            lines.append(
                (
                    logging.WARNING,
                    f"{len(self.missing)} shards still missing after {self.rounds} rounds: "
                    "this run decodes them itself",
                )
            )
        return lines


def fan_out(
    shards: Sequence[Shard],
    *,
    runs: int,
    retries: int,
    submit: Callable[[Group], str | None],
    staged_ids: Callable[[], set[str]],
    on_poll: Callable[[set[str]], None] = lambda staged: None,
    poll_s: float = 2.0,
) -> FanOut:
    """Run groups of shards through `submit` in parallel, resubmitting what was not staged.

    Args:
        shards: The shards still to do, in plan order.
        runs: Most groups (parallel submissions) per round.
        retries: Extra rounds for the shards of groups that did not stage them all.
        submit: Runs one group to the end (e.g. a child flow run) and returns None when it
            completed, else why not. Called from worker threads; it must not raise (an
            exception counts as a failure).
        staged_ids: Ids of the shards staged so far (the truth: a completed group that staged
            nothing still leaves its shards to the next round).
        on_poll: Called with the staged ids every `poll_s` while groups run (progress).
        poll_s: Seconds between polls.

    Returns:
        The groups, the failures and the shards still missing.
    """
    out = FanOut()
    todo = list(shards)
    for round_ in range(retries + 1):
        if not todo:
            break
        groups = plan_groups(todo, runs=runs, round_=round_)
        out.groups.extend(groups)
        out.rounds = round_ + 1
        with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="winnow-fanout") as ex:
            futures = {ex.submit(_submit_safely, submit, g): g for g in groups}
            while wait(futures, timeout=poll_s).not_done:
                on_poll(staged_ids())
            for future, group in futures.items():
                if (why := future.result()) is not None:
                    out.failed[group.group_id] = why
        staged = staged_ids()
        on_poll(staged)
        todo = [s for s in todo if s.shard_id not in staged]
    out.missing = todo
    return out


def _submit_safely(submit: Callable[[Group], str | None], group: Group) -> str | None:
    try:
        return submit(group)
    except Exception as exc:  # a failed submission is a failed group: its shards go again
        return f"{type(exc).__name__}: {exc}"


def embed_on_children(
    pool: Datapool,
    shards: Sequence[Shard],
    job: EmbedJob,
    *,
    runs: int,
    retries: int,
    run_child: Callable[[str, Group], str | None],
    on_start: Callable[[int], None] = lambda todo: None,
    on_progress: Callable[[int, int], None] = lambda shards, frames: None,
    poll_s: float = 2.0,
) -> FanOut:
    """Stage the shards not staged yet through child runs, one group description each.

    Writes each group's description to the staging area and hands its key to `run_child`,
    resubmits the shards of children that did not stage them all (`fan_out`), reads back what
    the children did, then deletes the descriptions.

    Args:
        pool: The datapool whose staging area receives the shards and the groups.
        shards: The planned shards, in order.
        job: What every group shares (the plan they are staged under, source, settings).
        runs: Most children per round.
        retries: Extra rounds for the shards of children that did not stage them all.
        run_child: Runs one child on a group's key to the end; None when it completed, else
            why not (as `fan_out`'s `submit`).
        on_start: Called once with the number of shards to fan out (the others are staged).
        on_progress: Called while children run with the planned shards staged so far and the
            frames the finished children reported.
        poll_s: Seconds between progress polls.

    Returns:
        What the fan-out did, with the children's results.
    """
    plan_hash = job.plan_hash
    todo = staging.unstaged(pool, plan_hash, shards)
    on_start(len(todo))
    planned = {s.shard_id for s in shards}
    read: dict[str, GroupResult] = {}  # each result read once, across polls

    def poll(staged: set[str]) -> None:
        # Frames as the children report them: a child writes its result when its group ends.
        on_progress(
            len(staged & planned), sum(r.frames for r in read_results(pool, plan_hash, read))
        )

    def submit(group: Group) -> str | None:
        return run_child(write_group(pool, job.describe(group)), group)

    out = fan_out(
        todo,
        runs=runs,
        retries=retries,
        submit=submit,
        staged_ids=lambda: pool.staged_shard_ids(plan_hash),
        on_poll=poll,
        poll_s=poll_s,
    )
    out.results = read_results(pool, plan_hash, read)
    clear_groups(pool, plan_hash)
    return out


def write_dask_group(pool: Datapool, shards: Sequence[Shard], job: EmbedJob) -> str:
    """Describe the shards not staged yet as one group (for Dask); its key, '' if none."""
    todo = staging.unstaged(pool, job.plan_hash, shards)
    if not todo:
        return ""
    (group,) = plan_groups(todo, runs=1)
    return write_group(pool, job.describe(group, group_id=f"dask-{group.group_id}"))


def stage_group(
    pool: Datapool,
    spec: GroupSpec,
    shards: Sequence[Shard],
    *,
    source: ObjectStore,
    embedder: Embedder,
    on_resume: Callable[[list[str], int], None] = lambda reused, frames: None,
    on_shard: Callable[[engine.ShardResult], None] = lambda result: None,
) -> GroupResult:
    """Decode, embed and stage those of a group's shards not staged yet (a child's whole work).

    What a GPU-pool child does with its group and a Dask task with its one shard:
    `staging.embed_and_stage` with `engine.embed_shards`, keeping nothing in memory (the
    parent reads the staging area).

    Args:
        pool: The datapool whose staging area receives the shards.
        spec: The group's description (plan, frame sampling, decode settings).
        shards: The shards to do: the group's, or one of them.
        source: Where their files live.
        embedder: The loaded model.
        on_resume: As for `staging.embed_and_stage`.
        on_shard: As for `staging.embed_and_stage`.

    Returns:
        What was staged and reused, frames and seconds, for `write_result`.

    Raises:
        As `engine.embed_shards` and `staging.embed_and_stage`.
    """
    options = spec.embedding_options
    embed = functools.partial(
        engine.embed_shards,
        source=source,
        frames=spec.frame_options,
        embedder=embedder,
        decode_workers=options.decode_workers,
        prefetch_batches=options.prefetch_batches,
        crops=spec.crop_settings,
    )
    done = staging.embed_and_stage(
        pool,
        spec.plan_hash,
        shards,
        embed=embed,
        dim=embedder.record.dim,
        collect=False,
        on_resume=on_resume,
        on_shard=on_shard,
    )
    return GroupResult(
        group_id=spec.group_id,
        staged=done.staged,
        reused=done.reused,
        seconds=done.seconds,
        frames=done.frames,
    )

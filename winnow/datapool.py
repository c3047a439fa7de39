"""The datapool: every file a pool has processed, every candidate it embedded, every tag.

The rest of the code sees `Datapool`, `PoolSnapshot` and records, never the format, which is
documented in docs/datapool.md:

    <pool>/parts/<commit-id>/{files,samples,tags}.parquet   immutable, written before the commit
    <pool>/versions/<20-digit version>.json                 manifest, created with put-if-absent
    <pool>/latest                                           hint: the highest version (advisory)
    <pool>/staging/<plan-hash>/shard-<shard-id>.parquet     finished shards of unfinished runs

A commit writes the run's parts, then creates `versions/<v+1>.json` only if it is absent. Two
runs that start from the same version cannot both create it: the loser gets `PoolConflict` and
its parts are never read (no manifest names them). A reader only ever reads parts named by the
highest manifest, so a crash at any point leaves the pool at a consistent version.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winnow.errors import ConfigError, ModelMismatch, NotFound, PoolConflict, PoolCorrupt
from winnow.records import (
    FILES_SCHEMA,
    Candidates,
    FileResult,
    ModelRecord,
    Selection,
    Shard,
    TagRecord,
    files_to_arrow,
    tags_from_arrow,
    tags_to_arrow,
)
from winnow.storage import ObjectStore

_log = logging.getLogger(__name__)

FORMAT = "winnow-datapool/1"
TABLES = ("files", "samples", "tags")
_VERSION_DIGITS = 20
# Above this many parts a table is rewritten as one merged part at the next commit, so load
# time stays flat as runs accumulate.
COMPACT_AFTER_PARTS = 16
# The `files` table as stored: a file result plus the run that processed it.
_POOL_FILES_SCHEMA = FILES_SCHEMA.append(pa.field("run_id", pa.string()))


def _version_key(version: int) -> str:
    return f"versions/{version:0{_VERSION_DIGITS}d}.json"


def _write_parquet(table: pa.Table) -> bytes:
    """Parquet bytes: zstd, dictionaries for strings only, byte-stream-split float16 embeddings.

    Byte-stream splitting groups the embeddings' exponent bytes together, which zstd then
    compresses well; dictionaries only pay off on the repetitive string columns.
    """
    buf = io.BytesIO()
    string_cols = [f.name for f in table.schema if pa.types.is_string(f.type)]
    bss = [f.name for f in table.schema if f.name == "embedding"]
    pq.write_table(
        table,
        buf,
        compression="zstd",
        use_dictionary=string_cols or False,
        use_byte_stream_split=bss or False,
    )
    return buf.getvalue()


def _read_parquet(data: bytes, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(data), columns=columns)


@dataclass(frozen=True)
class Manifest:
    """One committed version of the pool (the JSON of `versions/<v>.json`)."""

    version: int
    parent: int
    run_id: str
    created: str
    model: ModelRecord | None
    parts: dict[str, list[str]]
    counts: dict[str, int]
    format: str = FORMAT

    def to_json(self) -> bytes:
        """Serialise to UTF-8 JSON."""
        data = asdict(self)
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """Parse a manifest, with a clear error when it is not one."""
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise ValueError(f"unknown format {raw.get('format')!r}")
            model = ModelRecord(**raw["model"]) if raw.get("model") else None
            return cls(
                version=int(raw["version"]),
                parent=int(raw["parent"]),
                run_id=str(raw["run_id"]),
                created=str(raw["created"]),
                model=model,
                parts={t: list(raw["parts"].get(t, [])) for t in TABLES},
                counts={k: int(v) for k, v in raw.get("counts", {}).items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PoolCorrupt(f"datapool manifest {where} is not readable: {exc}") from exc


@dataclass
class PoolSnapshot:
    """The pool as of one version: cheap to load, samples read only when asked for.

    Attributes:
        version: The version (0 for an empty pool).
        manifest: Its manifest (None for an empty pool).
        files: The `files` table (one row per processed file and run, with `run_id`).
        tags: Every tag, oldest first.
    """

    store: ObjectStore
    version: int
    manifest: Manifest | None
    files: pa.Table
    tags: list[TagRecord] = field(default_factory=list)

    @property
    def model(self) -> ModelRecord | None:
        """The embedding model the pool was built with (None before the first commit)."""
        return self.manifest.model if self.manifest else None

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """Key → fingerprint of the latest processing of every file the pool holds."""
        keys = self.files.column("key").to_pylist()
        fps = self.files.column("fingerprint").to_pylist()
        return dict(zip(keys, fps, strict=True))  # later rows (later runs) win

    @property
    def latest_tag(self) -> TagRecord | None:
        """The most recent tag, or None."""
        return self.tags[-1] if self.tags else None

    def tag(self, name: str) -> TagRecord:
        """The tag called `name`.

        Raises:
            NotFound: If there is no such tag.
        """
        for t in self.tags:
            if t.name == name:
                return t
        names = ", ".join(t.name for t in self.tags) or "none"
        raise NotFound(f"no tag {name!r} in the datapool at {self.store.url} (tags: {names})")

    def check_model(self, record: ModelRecord) -> None:
        """Refuse a run whose model differs from the one the pool was built with.

        Raises:
            ModelMismatch: If the pool holds embeddings of another model.
        """
        if self.model is not None and self.model != record:
            raise ModelMismatch(
                f"the datapool at {self.store.url} was built with {self.model.describe()}, this "
                f"run asks for {record.describe()}: embeddings from different models cannot be "
                "compared. Use the pool's model settings, or move the pool to the new model "
                "first with `winnow reembed --output <output> --model ... --weights ...` (the "
                "reembed flow), or use a new output location for a new model."
            )

    def check_new_tag(self, name: str) -> None:
        """Refuse a tag name the pool already has.

        Raises:
            ConfigError: If a tag of that name exists.
        """
        if any(t.name == name for t in self.tags):
            raise ConfigError(f"tag {name!r} already exists in {self.store.url}: pick a new name")

    def new_tag(
        self,
        *,
        name: str,
        run_id: str,
        parameters: dict,
        counts: dict[str, int],
        selection: Selection,
    ) -> TagRecord | None:
        """The tag a run's selection becomes (None when nothing was selected).

        Args:
            name: The tag's name.
            run_id: The run that made it.
            parameters: The run's parameters, JSON-ready (never credentials).
            counts: The run's counts (files new/ok/corrupt/skipped, candidates, selected).
            selection: The selection whose picks are the tag's members.
        """
        if not selection.picks:
            return None
        return TagRecord(
            name=name,
            parent=self.latest_tag.name if self.latest_tag else None,
            run_id=run_id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            parameters=json.dumps(parameters, sort_keys=True),
            counts=json.dumps(counts, sort_keys=True),
            sample_ids=tuple(selection.sample_ids),
            coverage_before=selection.coverage_before,
            coverage_after=selection.coverage_after,
        )

    def next_tag_name(self) -> str:
        """The default name of the next tag (run-0001, run-0002, …)."""
        names = {t.name for t in self.tags}
        n = len(self.tags) + 1
        while f"run-{n:04d}" in names:
            n += 1
        return f"run-{n:04d}"

    @property
    def dataset_ids(self) -> set[str]:
        """Sample ids of the dataset: the union of every tag's members."""
        out: set[str] = set()
        for t in self.tags:
            out.update(t.sample_ids)
        return out

    def samples(self, sample_ids: Iterable[str] | None = None) -> Candidates:
        """Read samples (all, or only the given ids) with their embeddings.

        Rows with the same sample id (a file reprocessed by `process_all`) keep the latest.
        """
        if self.manifest is None:
            return Candidates.empty(self.model.dim if self.model else 0)
        wanted = None if sample_ids is None else pa.array(sorted(set(sample_ids)), pa.string())
        tables = []
        for key in self.manifest.parts["samples"]:
            table = _read_parquet(_get(self.store, key))
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("sample_id"), value_set=wanted))
            tables.append(table)
        if not tables:
            return Candidates.empty(self.model.dim if self.model else 0)
        merged = pa.concat_tables(tables)
        return Candidates.from_arrow(_keep_last(merged, "sample_id"))

    def dataset(self) -> Candidates:
        """The samples of the dataset (union of all tags), with embeddings."""
        ids = self.dataset_ids
        if not ids:
            return Candidates.empty(self.model.dim if self.model else 0)
        return self.samples(ids)


@dataclass
class Resumed:
    """Planned shards split by `Datapool.resume`.

    Attributes:
        candidates: Samples of the shards already staged, one part per shard.
        files: File results of the shards already staged.
        todo: Shards still to decode and embed.
    """

    candidates: list[Candidates] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    todo: list[Shard] = field(default_factory=list)


def plan_hash(model: ModelRecord, frames: dict) -> str:
    """Id of the decode+embed settings.

    Shards staged under one plan are reusable by another run only when the model and the frame
    sampling are the same.
    """
    text = json.dumps({"model": asdict(model), "frames": frames}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _keep_last(table: pa.Table, column: str) -> pa.Table:
    """Drop earlier duplicates of `column` values, keeping each value's last row."""
    values = table.column(column).to_pylist()
    last: dict[str, int] = {v: i for i, v in enumerate(values)}
    if len(last) == len(values):
        return table
    keep = np.zeros(len(values), dtype=bool)
    keep[list(last.values())] = True
    return table.filter(pa.array(keep))


def _get(store: ObjectStore, key: str) -> bytes:
    try:
        return store.get(key)
    except NotFound as exc:
        raise PoolCorrupt(
            f"datapool part {store.url_for(key)} named by a manifest is missing; "
            "restore it from a backup or start a new pool"
        ) from exc


class Datapool:
    """A datapool rooted at an object-store prefix (usually `<output>/pool`)."""

    def __init__(self, store: ObjectStore) -> None:
        """Open the pool at `store` (nothing is read until `load`)."""
        self.store = store

    @property
    def url(self) -> str:
        """Where the pool lives."""
        return self.store.url

    # -- reading ---------------------------------------------------------------------------

    def latest_version(self) -> int:
        """The highest committed version (0 when the pool is empty).

        Reads the `latest` hint, then probes forward for versions committed after it was
        written; falls back to listing `versions/` when the hint is missing or wrong.
        """
        try:
            version = int(json.loads(self.store.get("latest"))["version"])
        except (NotFound, ValueError, KeyError, TypeError):
            version = 0
        if version and not self.store.exists(_version_key(version)):
            version = 0
        if version == 0:
            keys = [info.key for info in self.store.list("versions") if info.key.endswith(".json")]
            if not keys:
                return 0
            version = max(int(k.rsplit("/", 1)[-1].split(".")[0]) for k in keys)
        while self.store.exists(_version_key(version + 1)):
            version += 1
        return version

    def load(self, version: int | None = None) -> PoolSnapshot:
        """Load a snapshot (the latest version by default).

        Raises:
            PoolCorrupt: If a manifest or a part it names cannot be read.
        """
        if version is None:
            try:
                version = self.latest_version()
            except NotFound:
                version = 0
        if version == 0:
            return PoolSnapshot(self.store, 0, None, _POOL_FILES_SCHEMA.empty_table())
        key = _version_key(version)
        manifest = Manifest.from_json(_get(self.store, key), self.store.url_for(key))
        files = [_read_parquet(_get(self.store, k)) for k in manifest.parts["files"]]
        files_table = pa.concat_tables(files) if files else _POOL_FILES_SCHEMA.empty_table()
        tags: list[TagRecord] = []
        for k in manifest.parts["tags"]:
            tags.extend(tags_from_arrow(_read_parquet(_get(self.store, k))))
        return PoolSnapshot(self.store, version, manifest, files_table, tags)

    # -- staging (resume) --------------------------------------------------------------------

    @staticmethod
    def _staged_key(plan_hash: str, shard_id: str) -> str:
        return f"staging/{plan_hash}/shard-{shard_id}.parquet"

    def stage_shard(
        self, plan_hash: str, shard_id: str, candidates: Candidates, files: list[FileResult]
    ) -> None:
        """Store a finished shard so a crashed or losing run need not redo it.

        One object holds the shard's samples (rows) and file results (metadata), so a shard is
        either staged whole or not at all.
        """
        table = candidates.to_arrow()
        meta = {b"winnow.files": json.dumps([asdict(f) for f in files]).encode()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        self.store.put(self._staged_key(plan_hash, shard_id), _write_parquet(table))

    def load_staged(
        self, plan_hash: str, shard_id: str
    ) -> tuple[Candidates, list[FileResult]] | None:
        """A staged shard, or None if it was never staged or cannot be parsed (logged).

        Storage errors (throttling, access denied) are raised, not taken for a missing shard:
        a resume must not silently turn into a full redo.
        """
        key = self._staged_key(plan_hash, shard_id)
        try:
            data = self.store.get(key)
        except NotFound:
            return None
        try:
            table = _read_parquet(data)
            files = [FileResult(**f) for f in json.loads(table.schema.metadata[b"winnow.files"])]
            return Candidates.from_arrow(table), files
        except (pa.ArrowException, ValueError, KeyError, TypeError) as exc:
            # A torn or foreign object: the shard is decoded again rather than failing the run.
            _log.warning(
                "staged shard %s cannot be read (%s: %s); it will be decoded again",
                self.store.url_for(key),
                type(exc).__name__,
                exc,
            )
            return None

    def resume(self, plan_hash: str, shards: Iterable[Shard]) -> Resumed:
        """Split planned shards into those staged by an earlier attempt and those still to do."""
        staged = self.staged_shard_ids(plan_hash)
        out = Resumed()
        for shard in shards:
            loaded = (
                self.load_staged(plan_hash, shard.shard_id) if shard.shard_id in staged else None
            )
            if loaded is None:
                out.todo.append(shard)
            else:
                out.candidates.append(loaded[0])
                out.files.extend(loaded[1])
        return out

    def staged_shard_ids(self, plan_hash: str) -> set[str]:
        """Ids of the shards staged under a plan."""
        out = set()
        try:
            for info in self.store.list(f"staging/{plan_hash}"):
                name = info.key.rsplit("/", 1)[-1]
                if name.startswith("shard-") and name.endswith(".parquet"):
                    out.add(name[len("shard-") : -len(".parquet")])
        except NotFound:  # the pool's folder does not exist before its first write
            return set()
        return out

    def clear_staged(self, plan_hash: str, shard_ids: Iterable[str]) -> None:
        """Delete staged shards (after they were committed)."""
        self.store.delete(self._staged_key(plan_hash, s) for s in shard_ids)

    # -- committing --------------------------------------------------------------------------

    def commit(
        self,
        base: PoolSnapshot,
        *,
        run_id: str,
        files: list[FileResult],
        samples: Candidates,
        tag: TagRecord | None,
        model: ModelRecord,
        replace_samples: bool = False,
    ) -> int:
        """Atomically add one run's files, samples and tag on top of `base`.

        Args:
            base: The snapshot the run started from; the commit creates version base+1.
            run_id: The run's id (stored on every row).
            files: Every file of the run (ok, corrupt or skipped).
            samples: Every candidate of the run, with embeddings.
            tag: The run's tag, or None when it selected nothing.
            model: The embedding model of the samples.
            replace_samples: Start the samples table afresh with this run's samples (used
                when the pool is re-embedded with a new model); files and tags are kept, and
                the samples keep their run ids (the runs that found them). Older versions still
                name the old samples parts, so they stay readable.

        Returns:
            The new version.

        Raises:
            PoolConflict: If another run committed version base+1 first. Nothing of this run
                is visible; its parts are garbage that no manifest names.
        """
        commit_id = f"{run_id}-{uuid.uuid4().hex[:8]}"
        new_parts: dict[str, str] = {}

        files_table = files_to_arrow(files).append_column(
            "run_id", pa.array([run_id] * len(files), pa.string())
        )
        tables: dict[str, pa.Table] = {
            "files": files_table,
            "samples": (samples if replace_samples else samples.with_run_id(run_id)).to_arrow(),
            "tags": tags_to_arrow([tag] if tag else []),
        }
        old_parts = base.manifest.parts if base.manifest else {t: [] for t in TABLES}
        parts: dict[str, list[str]] = {}
        for name in TABLES:
            previous = [] if (name == "samples" and replace_samples) else list(old_parts[name])
            table = tables[name]
            if len(previous) + 1 > COMPACT_AFTER_PARTS:
                merged = [_read_parquet(_get(self.store, k)) for k in previous]
                table = pa.concat_tables([*merged, table.cast(merged[0].schema)])
                previous = []
            if table.num_rows == 0:
                parts[name] = previous
                continue
            key = f"parts/{commit_id}/{name}.parquet"
            self.store.put(key, _write_parquet(table))
            new_parts[name] = key
            parts[name] = [*previous, key]

        counts = dict(base.manifest.counts) if base.manifest else {}
        counts["files"] = counts.get("files", 0) + len(files)
        counts["samples"] = (0 if replace_samples else counts.get("samples", 0)) + len(samples)
        counts["tags"] = counts.get("tags", 0) + (1 if tag else 0)
        manifest = Manifest(
            version=base.version + 1,
            parent=base.version,
            run_id=run_id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            model=model,
            parts=parts,
            counts=counts,
        )
        if not self.store.put_if_absent(_version_key(manifest.version), manifest.to_json()):
            self.store.delete(new_parts.values())
            winner = self._read_manifest(manifest.version)
            if winner is not None and winner.run_id == run_id:
                # An earlier attempt of this same run committed (its reply was lost): done.
                return winner.version
            who = f"run {winner.run_id} at {winner.created}" if winner else "unknown run"
            raise PoolConflict(
                f"datapool {self.url}: version {manifest.version} was committed by another run "
                f"({who}) while this run worked from version {base.version}; nothing of this "
                "run was committed. Re-run the job: its finished shards are staged and are reused."
            )
        self.store.put("latest", json.dumps({"version": manifest.version}).encode())
        return manifest.version

    def _read_manifest(self, version: int) -> Manifest | None:
        key = _version_key(version)
        try:
            return Manifest.from_json(self.store.get(key), self.store.url_for(key))
        except (NotFound, PoolCorrupt):
            return None

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

import bisect
import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winnow import index as _pool_index
from winnow.arrow_io import read_parquet
from winnow.errors import ConfigError, ModelMismatch, NotFound, PoolConflict, PoolCorrupt
from winnow.records import (
    FILES_SCHEMA,
    SHOTS_SCHEMA,
    Candidates,
    FileResult,
    ModelRecord,
    ObjectRows,
    Selection,
    Shard,
    TagRecord,
    files_to_arrow,
    shots_to_arrow,
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
# Compaction streams: it reads one part at a time in batches of this many rows and writes row
# groups of this many rows, so its memory does not grow with the table (docs/datapool.md).
COMPACT_BATCH_ROWS = 65_536
# The `dataset` table (optional in manifests written before it existed): the samples rows of the
# dataset's members, same schema as `samples`, so seeding a run reads O(dataset), not the pool.
DATASET = "dataset"
# The similarity index's parts (`winnow.index`), optional like `dataset`.
INDEX = "index"
# The shot table (`records.SHOTS_SCHEMA`): one row per shot of each video whose cuts were looked
# for; optional like `dataset` (absent in manifests written before it, and until a run has shots).
SHOTS = "shots"
# The objects table (`records.objects_schema`): boxes on frames with their crops' embeddings
# (`objects.predictions`); optional like `shots`. Pools written before it load unchanged and
# gain it at the first commit that has objects.
OBJECTS = "objects"
# The objects of the dataset's frames (same schema as `objects`), kept apart like `dataset` so
# that a run seeding `unit: object` reads O(dataset) objects, not the pool's.
DATASET_OBJECTS = "dataset_objects"
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


def _parquet_writer(where: str, schema: pa.Schema) -> pq.ParquetWriter:
    """A streaming writer with the settings of `_write_parquet`."""
    string_cols = [f.name for f in schema if pa.types.is_string(f.type)]
    bss = [f.name for f in schema if f.name == "embedding"]
    return pq.ParquetWriter(
        where,
        schema,
        compression="zstd",
        use_dictionary=string_cols or False,
        use_byte_stream_split=bss or False,
    )


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
    # The similarity index's sizes and checksums (`winnow.index.IndexInfo`; its keys are in
    # `parts["index"]`); None in manifests written before the index existed or below its size.
    index: dict | None = None

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
            parts = {t: list(raw["parts"].get(t, [])) for t in TABLES}
            for optional in (
                DATASET,
                INDEX,
                SHOTS,
                OBJECTS,
                DATASET_OBJECTS,
            ):  # absent in manifests written before them
                if optional in raw["parts"]:
                    parts[optional] = list(raw["parts"][optional])
            return cls(
                version=int(raw["version"]),
                parent=int(raw["parent"]),
                run_id=str(raw["run_id"]),
                created=str(raw["created"]),
                model=model,
                parts=parts,
                counts={k: int(v) for k, v in raw.get("counts", {}).items()},
                index=dict(raw["index"]) if raw.get("index") else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PoolCorrupt(f"datapool manifest {where} is not readable: {exc}") from exc


class _ArrowStrings(Sequence):
    """An Arrow string array as a Python sequence (for `bisect` on a sorted array)."""

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i):  # type: ignore[override]
        return self.array[i].as_py()


class FingerprintIndex(Mapping[str, str]):
    """Key → fingerprint of the latest processing of every file, held as Arrow columns.

    A read-only mapping over two Arrow string columns (one row per key, in the order of each
    key's latest row), not a Python dict of every file: at 10M files it costs the bytes of the
    strings. `lookup` resolves a batch of keys at once (what discovery uses); a single `get`
    is a binary search over a sorted copy of the keys made on first use.
    """

    def __init__(self, table: pa.Table) -> None:
        """`table`: columns `key` and `fingerprint`, one row per key."""
        self.table = table.combine_chunks() if table.num_rows else table
        self._sorted: tuple[pa.Array, _ArrowStrings] | None = None  # for single lookups

    @classmethod
    def latest(cls, files: pa.Table) -> FingerprintIndex:
        """The index of a `files` table: each key's last row (later runs) wins."""
        table = files.select(["key", "fingerprint"])
        return cls(_keep_last(table, "key"))

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[str]:
        for chunk in self.table.column("key").chunks:
            yield from chunk.to_pylist()

    def __getitem__(self, key: str) -> str:
        if not isinstance(key, str) or not self.table.num_rows:
            raise KeyError(key)
        if self._sorted is None:
            keys = self.table.column("key").chunk(0)
            order = pc.sort_indices(keys)
            self._sorted = (order, _ArrowStrings(keys.take(order)))
        order, sorted_keys = self._sorted
        i = bisect.bisect_left(sorted_keys, key)
        if i == len(sorted_keys) or sorted_keys[i] != key:
            raise KeyError(key)
        row = order[i].as_py()
        return self.table.column("fingerprint")[row].as_py()

    def lookup(self, keys: Sequence[str]) -> list[str | None]:
        """The fingerprint of each of `keys` (None for keys the pool does not hold).

        One pass over the index in Arrow: the batch's keys are hashed (`pc.index_in` with the
        batch as the value set) and the index's keys probe them, so the cost is the index's
        length plus the batch's, with no Python object per indexed file.
        """
        out: list[str | None] = [None] * len(keys)
        if not keys or not self.table.num_rows:
            return out
        batch = pa.array(keys, pa.string())
        where = pc.index_in(self.table.column("key"), value_set=batch)
        hit = pc.is_valid(where)
        positions = pc.filter(where, hit).to_pylist()
        fps = pc.filter(self.table.column("fingerprint"), hit).to_pylist()
        for pos, fp in zip(positions, fps, strict=True):
            out[pos] = fp
        if len(set(keys)) != len(keys):  # index_in points at the first of repeated keys
            first: dict[str, int] = {}
            for i, k in enumerate(keys):
                first.setdefault(k, i)
            out = [out[first[k]] for k in keys]
        return out


@dataclass
class PoolSnapshot:
    """The pool as of one version: cheap to load, files and samples read only when asked for.

    Loading reads the manifest and the tags; the `files` table, the fingerprints and samples
    are read on first use, so a run's load and seed steps do not grow with the pool.

    Attributes:
        version: The version (0 for an empty pool).
        manifest: Its manifest (None for an empty pool).
        files: The `files` table (one row per processed file and run, with `run_id`), read
            from the parts on first access.
        tags: Every tag, oldest first.
    """

    store: ObjectStore
    version: int
    manifest: Manifest | None
    _files: pa.Table | None = field(default=None, repr=False)
    tags: list[TagRecord] = field(default_factory=list)

    @property
    def files(self) -> pa.Table:
        """The `files` table (read from its parts on first access)."""
        if self._files is None:
            keys = self.manifest.parts["files"] if self.manifest else []
            parts = [read_parquet(_get(self.store, k)) for k in keys]
            self._files = pa.concat_tables(parts) if parts else _POOL_FILES_SCHEMA.empty_table()
        return self._files

    @property
    def model(self) -> ModelRecord | None:
        """The embedding model the pool was built with (None before the first commit)."""
        return self.manifest.model if self.manifest else None

    @cached_property
    def fingerprints(self) -> FingerprintIndex:
        """Key → fingerprint of the latest processing of every file the pool holds.

        An Arrow-backed mapping (`FingerprintIndex`); only the `key` and `fingerprint` columns
        are read when the `files` table was not read already. Later rows (later runs) win.
        """
        if self._files is not None or self.manifest is None:
            return FingerprintIndex.latest(self.files)
        cols = ["key", "fingerprint"]
        parts = [read_parquet(_get(self.store, k), cols) for k in self.manifest.parts["files"]]
        if not parts:
            return FingerprintIndex.latest(_POOL_FILES_SCHEMA.empty_table())
        return FingerprintIndex.latest(pa.concat_tables(parts))

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

    def _rows(self, table: str, sample_ids: Iterable[str] | None, unique: str) -> pa.Table | None:
        """The rows of one table's parts, each `unique` value's last row kept.

        Only rows whose `sample_id` is among `sample_ids`, when given. None: no part.
        """
        parts = self.manifest.parts.get(table, []) if self.manifest else []
        wanted = None if sample_ids is None else pa.array(sorted(set(sample_ids)), pa.string())
        tables = []
        for key in parts:
            rows = read_parquet(_get(self.store, key))
            if wanted is not None:
                rows = rows.filter(pc.is_in(rows.column("sample_id"), value_set=wanted))
            tables.append(rows)
        return _keep_last(pa.concat_tables(tables), unique) if tables else None

    def samples(self, sample_ids: Iterable[str] | None = None) -> Candidates:
        """Read samples (all, or only the given ids) with their embeddings.

        Rows with the same sample id (a file reprocessed by `process_all`) keep the latest.
        """
        rows = self._rows("samples", sample_ids, "sample_id")
        if rows is None:
            return Candidates.empty(self.model.dim if self.model else 0)
        return Candidates.from_arrow(rows)

    def dataset(self) -> Candidates:
        """The samples of the dataset (union of all tags), with embeddings.

        Reads only the `dataset` table's parts (O(dataset)); a manifest written before that
        table existed falls back to filtering every samples part.
        """
        ids = self.dataset_ids
        if not ids:
            return Candidates.empty(self.model.dim if self.model else 0)
        if self.manifest is None or DATASET not in self.manifest.parts:
            return self.samples(ids)
        rows = self._rows(DATASET, ids, "sample_id")
        if rows is None:
            return Candidates.empty(self.model.dim if self.model else 0)
        return Candidates.from_arrow(rows)

    def objects(self, sample_ids: Iterable[str] | None = None) -> ObjectRows:
        """The objects (all, or those whose parent frame is among `sample_ids`), embedded.

        Rows with the same object id (a file reprocessed) keep the latest. Empty for pools
        without objects (written before them, or never given predictions).
        """
        rows = self._rows(OBJECTS, sample_ids, "object_id")
        if rows is None:
            return ObjectRows.empty(self.model.dim if self.model else 0)
        return ObjectRows.from_arrow(rows)

    def dataset_objects(self) -> ObjectRows:
        """The objects on the dataset's frames (what labelling the dataset labelled).

        Reads only the `dataset_objects` table's parts (O(dataset)); a manifest written before
        that table existed falls back to filtering every objects part.
        """
        ids = self.dataset_ids
        if ids and self.manifest is not None and DATASET_OBJECTS not in self.manifest.parts:
            return self.objects(ids)
        rows = self._rows(DATASET_OBJECTS, ids, "object_id") if ids else None
        if rows is None:
            return ObjectRows.empty(self.model.dim if self.model else 0)
        return ObjectRows.from_arrow(rows)

    def shots(self, keys: Iterable[str] | None = None) -> pa.Table:
        """The shot table (`records.SHOTS_SCHEMA`), of the given keys only when given.

        A video processed more than once keeps the shots of its latest fingerprint. Empty for
        pools without shots (written before them, or with shot detection never on).
        """
        parts = self.manifest.parts.get(SHOTS, []) if self.manifest else []
        tables = [read_parquet(_get(self.store, k)) for k in parts]
        if not tables:
            return SHOTS_SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        if keys is not None:
            wanted = pa.array(sorted(set(keys)), pa.string())
            table = table.filter(pc.is_in(table.column("key"), value_set=wanted))
        latest = self.fingerprints
        fps = latest.lookup(table.column("key").to_pylist())
        current = pa.array(
            [f == fp for f, fp in zip(fps, table.column("fingerprint").to_pylist(), strict=True)]
        )
        return table.filter(current)


@dataclass
class Resumed:
    """Planned shards split by `Datapool.resume`.

    Attributes:
        candidates: Samples of the shards already staged, one part per shard.
        files: File results of the shards already staged.
        todo: Shards still to decode and embed.
        objects: Objects of the shards already staged, one part per shard.
    """

    candidates: list[Candidates] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    todo: list[Shard] = field(default_factory=list)
    objects: list[ObjectRows] = field(default_factory=list)


def plan_hash(model: ModelRecord, frames: dict) -> str:
    """Id of the decode+embed settings.

    Shards staged under one plan are reusable by another run only when the model and the frame
    sampling are the same.
    """
    text = json.dumps({"model": asdict(model), "frames": frames}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _run_objects(
    objects: ObjectRows | None, dim: int, run_id: str, replace_samples: bool
) -> ObjectRows:
    """A run's objects as committed: stamped with the run (a re-embed keeps their runs)."""
    if objects is None or not len(objects):
        return ObjectRows.empty(max(dim, 1))
    return objects if replace_samples else objects.with_run_id(run_id)


def _keep_last(table: pa.Table, column: str) -> pa.Table:
    """Drop earlier duplicates of `column` values, keeping each value's last row (in order).

    Computed on integer codes, never as a Python dict of the values: Arrow's dictionary encoding
    (one hash pass; every chunk's codes index one shared dictionary), then each code's last row
    from a sort of the codes: faster, and with less peak memory, than a hash group-by of the
    strings with a max of row numbers (`bench/pool_growth.py` measures it).
    """
    n = table.num_rows
    if n == 0:
        return table
    encoded = pc.dictionary_encode(table.column(column))
    if max(len(c.dictionary) for c in encoded.chunks) == n:  # every value once: none to drop
        return table
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks])
    _, first_from_end = np.unique(codes[::-1], return_index=True)
    keep = np.zeros(n, dtype=bool)
    keep[n - 1 - first_from_end] = True
    return table.filter(pa.array(keep))


@contextlib.contextmanager
def _local_part(store: ObjectStore, key: str) -> Iterator[Path]:
    """A local file holding a part named by a manifest (streamed, never read into memory)."""
    try:
        with store.local_copy(key) as path:
            yield path
    except NotFound as exc:
        raise PoolCorrupt(
            f"datapool part {store.url_for(key)} named by a manifest is missing; "
            "restore it from a backup or start a new pool"
        ) from exc


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
        # The files table is read on first use (`PoolSnapshot.files`, `fingerprints`), so the
        # load does not grow with the pool; its parts are checked here so a missing one is
        # still reported at load.
        for k in manifest.parts["files"]:
            if not self.store.exists(k):
                _get(self.store, k)  # raises PoolCorrupt naming the part
        tags: list[TagRecord] = []
        for k in manifest.parts["tags"]:
            tags.extend(tags_from_arrow(read_parquet(_get(self.store, k))))
        return PoolSnapshot(self.store, version, manifest, None, tags)

    # -- staging (resume) --------------------------------------------------------------------

    @staticmethod
    def _staged_key(plan_hash: str, shard_id: str) -> str:
        return f"staging/{plan_hash}/shard-{shard_id}.parquet"

    @staticmethod
    def _objects_key(plan_hash: str, shard_id: str) -> str:
        return f"staging/{plan_hash}/shard-{shard_id}.objects.parquet"

    def stage_shard(
        self,
        plan_hash: str,
        shard_id: str,
        candidates: Candidates,
        files: list[FileResult],
        objects: ObjectRows | None = None,
    ) -> None:
        """Store a finished shard so a crashed or losing run need not redo it.

        One object holds the shard's samples (rows) and file results (metadata), so a shard is
        either staged whole or not at all. Its objects, if any, are put first beside it
        (`shard-<id>.objects.parquet`) and counted in its metadata: a shard whose objects are
        missing is torn and decoded again.
        """
        table = candidates.to_arrow()
        n_objects = 0 if objects is None else len(objects)
        if n_objects:
            assert objects is not None
            self.store.put(
                self._objects_key(plan_hash, shard_id), _write_parquet(objects.to_arrow())
            )
        meta = {
            b"winnow.files": json.dumps([asdict(f) for f in files]).encode(),
            b"winnow.objects": str(n_objects).encode(),
        }
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        self.store.put(self._staged_key(plan_hash, shard_id), _write_parquet(table))

    def load_staged(
        self, plan_hash: str, shard_id: str
    ) -> tuple[Candidates, list[FileResult], ObjectRows] | None:
        """A staged shard (samples, file results, objects), or None when it cannot be used.

        None: never staged, not parseable (logged), or its objects are missing (they are put
        before the shard, so the shard is torn).

        Storage errors (throttling, access denied) are raised, not taken for a missing shard:
        a resume must not silently turn into a full redo.
        """
        key = self._staged_key(plan_hash, shard_id)
        try:
            data = self.store.get(key)
            table = read_parquet(data)
            meta = table.schema.metadata
            files = [FileResult(**f) for f in json.loads(meta[b"winnow.files"])]
            objects = ObjectRows.empty()
            if int(meta.get(b"winnow.objects", b"0")):
                key = self._objects_key(plan_hash, shard_id)
                objects = ObjectRows.from_arrow(read_parquet(self.store.get(key)))
            return Candidates.from_arrow(table), files, objects
        except NotFound:
            return None
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
                out.objects.append(loaded[2])
        return out

    def staged_shard_ids(self, plan_hash: str) -> set[str]:
        """Ids of the shards staged under a plan."""
        out = set()
        try:
            for info in self.store.list(f"staging/{plan_hash}"):
                name = info.key.rsplit("/", 1)[-1]
                if (
                    name.startswith("shard-")
                    and name.endswith(".parquet")
                    and not name.endswith(".objects.parquet")
                ):
                    out.add(name[len("shard-") : -len(".parquet")])
        except NotFound:  # the pool's folder does not exist before its first write
            return set()
        return out

    def clear_staged(self, plan_hash: str, shard_ids: Iterable[str]) -> None:
        """Delete staged shards (after they were committed)."""
        ids = list(shard_ids)
        self.store.delete(self._staged_key(plan_hash, s) for s in ids)
        self.store.delete(self._objects_key(plan_hash, s) for s in ids)

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
        objects: ObjectRows | None = None,
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
                name the old samples parts, so they stay readable. The objects table is
                started afresh with it.
            objects: The run's objects (boxes on its frames), with embeddings.

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
            SHOTS: shots_to_arrow(files),
            OBJECTS: _run_objects(objects, model.dim, run_id, replace_samples).to_arrow(),
        }
        old_parts = base.manifest.parts if base.manifest else {t: [] for t in TABLES}
        dataset_previous, tables[DATASET] = self._dataset_rows(
            base, tables["samples"], tag, replace_samples
        )
        objects_previous, tables[DATASET_OBJECTS] = self._dataset_object_rows(
            base, tables[OBJECTS], tag, replace_samples
        )
        parts: dict[str, list[str]] = {}
        for name in (*TABLES, DATASET, SHOTS, OBJECTS, DATASET_OBJECTS):
            if name == DATASET:
                previous = dataset_previous
            elif name == DATASET_OBJECTS:
                previous = objects_previous
            elif name in ("samples", OBJECTS) and replace_samples:
                previous = []
            else:
                previous = list(old_parts.get(name, []))
            table = tables[name]
            key = f"parts/{commit_id}/{name}.parquet"
            if len(previous) + 1 > COMPACT_AFTER_PARTS:
                self._compact(previous, table, key)
                new_parts[name] = key
                parts[name] = [key]
                continue
            if table.num_rows == 0:
                parts[name] = previous
                continue
            self.store.put(key, _write_parquet(table))
            new_parts[name] = key
            parts[name] = [*previous, key]

        counts = dict(base.manifest.counts) if base.manifest else {}
        counts["files"] = counts.get("files", 0) + len(files)
        counts["samples"] = (0 if replace_samples else counts.get("samples", 0)) + len(samples)
        counts["tags"] = counts.get("tags", 0) + (1 if tag else 0)
        if objects is not None and len(objects) or OBJECTS in counts:
            n_objects = 0 if objects is None else len(objects)
            counts[OBJECTS] = (0 if replace_samples else counts.get(OBJECTS, 0)) + n_objects
        index_info, index_keys = _pool_index.update_for_commit(
            self.store,
            base.manifest,
            commit_id=commit_id,
            samples_keys=parts["samples"],
            new=tables["samples"],
            replace=replace_samples,
            rows_after=counts["samples"],
        )
        new_parts.update({f"{INDEX}-{i}": k for i, k in enumerate(index_keys)})
        if index_info is not None:
            parts[INDEX] = list(index_info.keys)
        manifest = Manifest(
            version=base.version + 1,
            parent=base.version,
            run_id=run_id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            model=model,
            parts=parts,
            counts=counts,
            index=index_info.to_dict() if index_info is not None else None,
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

    @staticmethod
    def _dataset_rows(
        base: PoolSnapshot, samples: pa.Table, tag: TagRecord | None, replace_samples: bool
    ) -> tuple[list[str], pa.Table]:
        """The `dataset` parts a commit keeps and the rows it adds to that table.

        The rows are this run's samples whose ids are dataset members after the commit (the new
        tag's picks, and members reprocessed by this run, whose latest row must win as it does
        in `samples`), plus the new tag's members found only in older samples (read from the
        samples table: only a commit tagging samples it did not bring, e.g. a re-selection).
        A re-embed (`replace_samples`) starts the table afresh from its re-embedded rows. On
        top of a manifest written before the dataset table existed, the table is built once
        from the samples table.
        """
        tag_ids = set(tag.sample_ids) if tag else set()
        members = base.dataset_ids | tag_ids
        if not members:
            return [], samples.schema.empty_table()
        wanted = pa.array(sorted(members), pa.string())
        rows = samples.filter(pc.is_in(samples.column("sample_id"), value_set=wanted))
        if replace_samples or base.manifest is None:
            return [], rows
        have = set(rows.column("sample_id").to_pylist())
        if DATASET in base.manifest.parts:
            previous = list(base.manifest.parts[DATASET])
            fetch = tag_ids - base.dataset_ids - have
        else:  # an older manifest: build the dataset table from the samples table, once
            previous = []
            fetch = members - have
        if fetch:
            older = base.samples(fetch).to_arrow()
            if rows.num_rows == 0:
                rows = older
            elif older.num_rows:
                rows = pa.concat_tables([older.cast(rows.schema), rows])
        return previous, rows

    @staticmethod
    def _dataset_object_rows(
        base: PoolSnapshot, objects: pa.Table, tag: TagRecord | None, replace_samples: bool
    ) -> tuple[list[str], pa.Table]:
        """The `dataset_objects` parts a commit keeps and the rows it adds, as `_dataset_rows`.

        The rows are this run's objects on frames that are dataset members after the commit,
        plus the objects of the new tag's frames that this run did not bring (read from the
        objects table: a re-selection). A re-embed starts the table afresh; on top of a
        manifest written before the table existed (and with objects), it is built once.
        """
        tag_ids = set(tag.sample_ids) if tag else set()
        members = base.dataset_ids | tag_ids
        if not members:
            return [], objects.schema.empty_table()
        wanted = pa.array(sorted(members), pa.string())
        rows = objects.filter(pc.is_in(objects.column("sample_id"), value_set=wanted))
        if replace_samples or base.manifest is None:
            return [], rows
        here = set(rows.column("sample_id").to_pylist())  # frames whose objects this run holds
        if DATASET_OBJECTS in base.manifest.parts:
            previous = list(base.manifest.parts[DATASET_OBJECTS])
            fetch = tag_ids - base.dataset_ids - here
        else:  # an older manifest: build the table from the objects table, once
            previous, fetch = [], members - here
        if fetch and base.manifest.parts.get(OBJECTS):
            older = base.objects(fetch).to_arrow()
            if older.num_rows:
                rows = pa.concat_tables([older.cast(rows.schema), rows]) if rows.num_rows else older
        return previous, rows

    def _compact(self, previous: list[str], table: pa.Table, key: str) -> None:
        """Write the rows of `previous` parts, then `table`, as one part at `key`, streaming.

        Each part is read from a local copy (a file: S3 streams it to disk) in batches of
        `COMPACT_BATCH_ROWS` rows, and written as row groups of that size to a temporary file
        that is uploaded whole, so memory holds one batch, not the table. Every row is kept, in
        order: readers' keep-last (`samples`, `dataset`, `fingerprints`) sees what it saw
        before, and `files` keeps each processing of a file.
        """
        fd, name = tempfile.mkstemp(prefix="winnow-compact-", suffix=".parquet")
        os.close(fd)
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        try:
            for k in previous:
                with _local_part(self.store, k) as local:
                    for batch in pq.ParquetFile(local).iter_batches(batch_size=COMPACT_BATCH_ROWS):
                        if writer is None:
                            schema = batch.schema
                            writer = _parquet_writer(name, schema)
                        writer.write_table(
                            pa.Table.from_batches([batch]).cast(schema),
                            row_group_size=COMPACT_BATCH_ROWS,
                        )
            if writer is None:
                schema = table.schema
                writer = _parquet_writer(name, schema)
            if table.num_rows:
                for batch in table.to_batches(max_chunksize=COMPACT_BATCH_ROWS):
                    writer.write_table(
                        pa.Table.from_batches([batch]).cast(schema),
                        row_group_size=COMPACT_BATCH_ROWS,
                    )
            writer.close()
            writer = None
            self.store.put(key, Path(name))
        finally:
            if writer is not None:
                writer.close()
            Path(name).unlink(missing_ok=True)

    # -- garbage collection helpers (the policy lives in winnow/gc.py) ------------------------

    def named_parts(self) -> set[str]:
        """Every part key named by any committed version (older versions stay readable).

        Reads every manifest under `versions/` (`Manifest.from_json`: every table of the format).

        Raises:
            PoolCorrupt: If a manifest cannot be read (nothing may then be called garbage).
        """
        named: set[str] = set()
        try:
            infos = [i for i in self.store.list("versions") if i.key.endswith(".json")]
        except NotFound:
            return named
        for info in infos:
            manifest = Manifest.from_json(_get(self.store, info.key), self.store.url_for(info.key))
            for keys in manifest.parts.values():
                named.update(keys)
        return named

    def _read_manifest(self, version: int) -> Manifest | None:
        key = _version_key(version)
        try:
            return Manifest.from_json(self.store.get(key), self.store.url_for(key))
        except (NotFound, PoolCorrupt):
            return None

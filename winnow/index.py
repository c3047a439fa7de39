"""A pool-wide approximate-nearest-neighbour index of the samples' embeddings (FAISS IVF-SQ8).

    commit v+1 ──► new samples ──► segment (IVF lists of this commit's rows) ──► manifest v+1
                                     └ clone of the pool's trained template: no retraining

Layout, beside the Parquet parts and named by the manifest like them (`parts["index"]`):

    <pool>/parts/<commit-id>/index-template.faiss   trained, empty IVF-SQ8 (coarse centroids,
                                                    8-bit ranges); written when (re)trained
    <pool>/parts/<commit-id>/index.faiss            a segment: the IVF lists of some rows
    <pool>/parts/<commit-id>/index-ids.parquet      its rows: sample_id, key, frame_index

A commit adds one segment holding only its new samples (a clone of the template, so segments
merge by concatenating their inverted lists, never by re-encoding); it writes the segment
before the manifest that names it and never rewrites one, so a reader of version v opens
exactly the index of v's samples, a racing loser's segment is garbage no manifest names (gc
collects it), and older versions keep theirs. Above `COMPACT_AFTER_SEGMENTS` segments a commit
writes one merged segment instead. The index is rebuilt (template retrained, every sample
re-added, streaming part by part) when the pool first reaches `INDEX_MIN_SAMPLES` (below it
exact search is faster and no index exists), when it has grown `RETRAIN_GROWTH` times past the
rows the template was trained on, on a re-embed (`replace_samples`), and when a part of the
previous index is missing or has the wrong size. A reader that finds a part missing or corrupt
(checksums are in the manifest) logs a warning and gets None: callers then search exactly.

Memory: 8-bit codes, 512 bytes a 512-d sample plus 8 bytes of id (10M × 512 ≈ 5.2 GB), and
the ids table. Distances are Euclidean between unit embeddings, as selection uses.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.arrow_io import read_parquet
from winnow.errors import ConfigError, NotFound, StorageError
from winnow.storage import ObjectStore

if TYPE_CHECKING:
    from winnow.datapool import PoolSnapshot

_log = logging.getLogger(__name__)

INDEX = "index"  # the manifest's parts entry
INDEX_MIN_SAMPLES = int(os.environ.get("WINNOW_INDEX_MIN_SAMPLES", "20000"))
"""Below this many samples a pool has no index: exact search is as fast and exact."""
RETRAIN_GROWTH = 16
"""Retrain (rebuild) once the pool holds this many times the rows the template was trained on."""
COMPACT_AFTER_SEGMENTS = 16
MAX_LISTS = 4096
TRAIN_PER_LIST = 39  # FAISS's minimum of training points per centroid
NPROBE = 8
"""Lists scanned per query by `PoolIndex.search` (recall@10 ≥ 0.95 in bench/index.py)."""
CHECK_NPROBE = 2
"""Lists scanned when only the nearest within a near-duplicate distance is wanted."""
APPROX_SLACK = 1.2
"""An index distance d counts as within a near-duplicate distance D when d < D × this.

The index stores 8-bit codes, so its distances are approximate: at D = 0.05, 3.7 % of true
near duplicates (0 to 0.9 D away) came out above D, whatever the lists scanned (nprobe 2, 4 and
8 alike, 1M rows in bench/index.py). With 20 % slack 99.6 % are found, and 1 in 10,000 new
frames a walk step (0.08) from the pool is flagged (0 at 10 %: 98.8 %, at 30 %: 99.8 % and
0.4 %).
"""
DEFAULT_NEAR_DISTANCE = 0.05
"""Near-duplicate / leak distance when none is given (L2 between unit embeddings)."""
BATCH_ROWS = 65_536
_TEMPLATE, _SEGMENT, _IDS = "index-template.faiss", "index.faiss", "index-ids.parquet"
_IDS_SCHEMA = pa.schema(
    [("sample_id", pa.string()), ("key", pa.string()), ("frame_index", pa.int64())]
)


def _faiss() -> Any:
    import faiss  # imported on use: a pool without an index never pays for it

    return faiss


def _to_bytes(index: Any) -> bytes:
    return _faiss().serialize_index(index).tobytes()


def _from_bytes(data: bytes) -> Any:
    return _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _unit32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _to_distance(ip: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(2.0 - 2.0 * np.clip(ip, -1.0, 1.0), 0.0)).astype(np.float32)


def _ip_threshold(distance: float) -> float:
    return 1.0 - distance * distance / 2.0


# -- what a manifest records ------------------------------------------------------------------


@dataclass(frozen=True)
class IndexInfo:
    """The index of one pool version, as its manifest records it (`Manifest.index`).

    Attributes:
        keys: Template, then (segment, ids) pairs; the same list is `parts["index"]`.
        rows: Rows indexed (samples rows of the version, repeats of a sample included).
        trained_on: Rows the pool held when the template was trained.
        lists: Coarse lists (IVF centroids).
        sizes: Key → bytes (a commit checks them before building on the index).
        checksums: Key → blake2b of the bytes (a reader checks them).
    """

    keys: tuple[str, ...]
    rows: int
    trained_on: int
    lists: int
    sizes: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (the manifest's `index` entry; its keys are in `parts["index"]`)."""
        return {
            "rows": self.rows,
            "trained_on": self.trained_on,
            "lists": self.lists,
            "sizes": dict(self.sizes),
            "checksums": dict(self.checksums),
        }

    @classmethod
    def from_manifest(cls, manifest: Any) -> IndexInfo | None:
        """The index of a manifest (None: it has none, e.g. written before indexes existed)."""
        raw = getattr(manifest, "index", None)
        keys = manifest.parts.get(INDEX) if manifest is not None else None
        if not raw or not keys:
            return None
        return cls(
            keys=tuple(keys),
            rows=int(raw["rows"]),
            trained_on=int(raw["trained_on"]),
            lists=int(raw["lists"]),
            sizes={k: int(v) for k, v in raw.get("sizes", {}).items()},
            checksums=dict(raw.get("checksums", {})),
        )

    @property
    def template(self) -> str:
        """Key of the trained, empty template."""
        return self.keys[0]

    @property
    def segments(self) -> list[tuple[str, str]]:
        """(segment key, ids key) of each segment, oldest first."""
        rest = self.keys[1:]
        return list(zip(rest[0::2], rest[1::2], strict=True))


# -- reading embeddings from parts (streaming) ------------------------------------------------


def _batches(store: ObjectStore, key: str) -> Iterator[pa.Table]:
    """The id columns and embeddings of a samples part, in batches (never the whole part)."""
    cols = ["sample_id", "key", "frame_index", "embedding"]
    with store.local_copy(key) as path:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=cols):
            yield pa.Table.from_batches([batch])


def _embeddings(table: pa.Table) -> np.ndarray:
    emb = table.column("embedding").combine_chunks()
    dim = emb.type.list_size
    values = emb.values.to_numpy(zero_copy_only=False)
    return values.reshape(-1, dim)


def _id_rows(table: pa.Table) -> pa.Table:
    return pa.table(
        {
            "sample_id": table.column("sample_id").cast(pa.string()),
            "key": table.column("key").cast(pa.string()),
            "frame_index": table.column("frame_index").cast(pa.int64()),
        },
        schema=_IDS_SCHEMA,
    )


def _sources(store: ObjectStore, keys: Sequence[str], new: pa.Table) -> Iterator[pa.Table]:
    """Batches of every samples part named by `keys`, then of the commit's new rows."""
    for key in keys:
        yield from _batches(store, key)
    if new.num_rows:
        cols = new.select(["sample_id", "key", "frame_index", "embedding"])
        for batch in cols.to_batches(BATCH_ROWS):
            yield pa.Table.from_batches([batch])


# -- building (inside a commit) ---------------------------------------------------------------


def _lists_for(rows: int) -> int:
    return int(max(1, min(MAX_LISTS, rows // TRAIN_PER_LIST, round(4 * np.sqrt(rows)))))


def _train(store: ObjectStore, keys: Sequence[str], new: pa.Table, rows: int, seed: int = 0) -> Any:
    """A trained, empty IVF-SQ8 (inner product) on a seeded sample of every row."""
    lists = _lists_for(rows)
    want = min(rows, max(lists * TRAIN_PER_LIST, 10_000), lists * 64)
    rng = np.random.default_rng(seed)
    keep = rng.random(rows) < (want / rows)
    picked, offset, dim = [], 0, 0
    for table in _sources(store, keys, new):
        emb = _embeddings(table)
        dim = emb.shape[1]
        mask = keep[offset : offset + len(emb)]
        offset += len(emb)
        if mask.any():
            picked.append(emb[mask].astype(np.float32))
    sample = np.concatenate(picked) if picked else np.zeros((0, dim), np.float32)
    return train_template(sample, lists=lists, seed=seed)


def train_template(sample: np.ndarray, *, lists: int, seed: int = 0) -> Any:
    """A trained, empty IVF-SQ8 index (inner product) on `sample` (float32 unit rows).

    Args:
        sample: Training rows (at least `TRAIN_PER_LIST` per list for good centroids).
        lists: Coarse lists wanted (fewer when the sample is small).
        seed: Seed of the k-means.
    """
    faiss = _faiss()
    dim = sample.shape[1]
    lists = max(1, min(lists, len(sample) // TRAIN_PER_LIST))
    # An HNSW graph over the centroids assigns rows to lists: adding 5M rows costs about 300
    # centroid distances each, not all 4,096 (bench/index.py).
    index = faiss.index_factory(dim, f"IVF{lists}_HNSW32,SQ8", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = 10
    index.cp.max_points_per_centroid = 64
    index.train(_unit32(sample))
    return index


def lists_for(rows: int) -> int:
    """Coarse lists of an index trained when the pool holds `rows` rows."""
    return _lists_for(rows)


def _segment(template: Any, batches: Iterator[pa.Table], first_id: int) -> tuple[Any, pa.Table]:
    """A clone of `template` holding `batches`' rows, with ids from `first_id`; its ids table."""
    faiss = _faiss()
    seg = faiss.clone_index(template)
    ids, n = [], first_id
    for table in batches:
        emb = _unit32(_embeddings(table))
        seg.add_with_ids(emb, np.arange(n, n + len(emb), dtype=np.int64))
        n += len(emb)
        ids.append(_id_rows(table))
    return seg, (pa.concat_tables(ids) if ids else _IDS_SCHEMA.empty_table())


@dataclass
class _Writer:
    store: ObjectStore
    commit_id: str
    written: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, data: bytes) -> str:
        key = f"parts/{self.commit_id}/{name}"
        self.store.put(key, data)
        self.written.append(key)
        self.sizes[key], self.checksums[key] = len(data), _checksum(data)
        return key


def _ids_bytes(ids: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(ids, buf, compression="zstd")
    return buf.getvalue()


def _intact(store: ObjectStore, info: IndexInfo) -> bool:
    """Every part of `info` is there with its recorded size (one listing per commit folder)."""
    folders = {k.rsplit("/", 1)[0] for k in info.keys}
    seen: dict[str, int] = {}
    try:
        for folder in folders:
            seen.update({i.key: i.size_bytes for i in store.list(folder)})
    except NotFound:
        return False
    return all(seen.get(k) == info.sizes.get(k) for k in info.keys)


def update_for_commit(
    store: ObjectStore,
    base: Any,
    *,
    commit_id: str,
    samples_keys: Sequence[str],
    new: pa.Table,
    replace: bool,
    rows_after: int,
) -> tuple[IndexInfo | None, list[str]]:
    """The index of the version a commit creates, written before its manifest.

    Args:
        store: The pool's store.
        base: The manifest the commit builds on (None for the first commit).
        commit_id: The commit's id (its folder under `parts/`).
        samples_keys: The samples parts of the new version, already written (every row:
            what a rebuild reads).
        new: The commit's new samples rows (Arrow, `samples` schema; what an update adds).
        replace: The commit starts a fresh samples table (re-embed): rebuild.
        rows_after: Samples rows of the new version.

    Returns:
        The new version's index (None: none, the pool is below `INDEX_MIN_SAMPLES`), and the
        keys this call wrote (a losing commit deletes them).
    """
    if rows_after < INDEX_MIN_SAMPLES or rows_after == 0:
        return None, []
    previous = None if replace or base is None else IndexInfo.from_manifest(base)
    writer = _Writer(store, commit_id)
    why = _rebuild_reason(store, previous, rows_after)
    if why:
        _log.info("datapool %s: building the similarity index (%s)", store.url, why)
        nothing = new.schema.empty_table()  # the new rows are in `samples_keys` already
        template = _train(store, samples_keys, nothing, rows_after)
        seg, ids = _segment(template, _sources(store, samples_keys, nothing), 0)
        keys = [writer.put(_TEMPLATE, _to_bytes(template))]
        keys += [writer.put(_SEGMENT, _to_bytes(seg)), writer.put(_IDS, _ids_bytes(ids))]
        info = IndexInfo(
            tuple(keys), int(seg.ntotal), rows_after, int(template.nlist), writer.sizes, {}
        )
        return _with_checks(info, writer, None), writer.written
    assert previous is not None
    keys = list(previous.keys)
    rows = previous.rows
    if new.num_rows:
        template = _from_bytes(_get_checked(store, previous, previous.template))
        seg, ids = _segment(template, iter([new]), previous.rows)
        rows += int(seg.ntotal)
        if len(previous.segments) + 1 > COMPACT_AFTER_SEGMENTS:
            seg, ids = _merged(store, previous, seg, ids)
            keys = [previous.template]
        keys += [writer.put(_SEGMENT, _to_bytes(seg)), writer.put(_IDS, _ids_bytes(ids))]
    info = IndexInfo(tuple(keys), rows, previous.trained_on, previous.lists)
    return _with_checks(info, writer, previous), writer.written


def _rebuild_reason(store: ObjectStore, previous: IndexInfo | None, rows_after: int) -> str:
    if previous is None:
        return f"{rows_after} samples, no index yet"
    if rows_after > RETRAIN_GROWTH * previous.trained_on:
        return f"{rows_after} samples, trained on {previous.trained_on}: retraining"
    if not _intact(store, previous):
        _log.warning(
            "datapool %s: a part of the similarity index is missing or damaged; rebuilding it",
            store.url,
        )
        return "the previous index is damaged"
    return ""


def _with_checks(info: IndexInfo, writer: _Writer, previous: IndexInfo | None) -> IndexInfo:
    sizes = {k: v for k, v in (previous.sizes if previous else {}).items() if k in info.keys}
    checks = {k: v for k, v in (previous.checksums if previous else {}).items() if k in info.keys}
    sizes.update({k: v for k, v in writer.sizes.items() if k in info.keys})
    checks.update({k: v for k, v in writer.checksums.items() if k in info.keys})
    return IndexInfo(info.keys, info.rows, info.trained_on, info.lists, sizes, checks)


def _segments(store: ObjectStore, info: IndexInfo) -> tuple[Any, pa.Table]:
    """Every segment of `info` as one (inverted lists concatenated), and their id rows.

    Raises:
        IndexDamaged: If a part is missing or fails its checksum.
    """
    merged, tables = None, []
    for seg_key, ids_key in info.segments:
        part = _from_bytes(_get_checked(store, info, seg_key))
        tables.append(read_parquet(_get_checked(store, info, ids_key)))
        if merged is None:
            merged = part
        else:
            merged.merge_from(part, 0)
    return merged, pa.concat_tables(tables)


def _merged(store: ObjectStore, previous: IndexInfo, seg: Any, ids: pa.Table) -> tuple[Any, Any]:
    """Every segment of `previous`, then `seg`, as one segment (inverted lists concatenated)."""
    merged, tables = _segments(store, previous)
    merged.merge_from(seg, 0)
    return merged, pa.concat_tables([tables, ids])


class IndexDamaged(StorageError):
    """A part of the similarity index is missing or does not match its checksum."""


def _get_checked(store: ObjectStore, info: IndexInfo, key: str) -> bytes:
    try:
        data = store.get(key)
    except NotFound as exc:
        raise IndexDamaged(f"similarity index part {store.url_for(key)} is missing") from exc
    want = info.checksums.get(key)
    if want is not None and _checksum(data) != want:
        raise IndexDamaged(f"similarity index part {store.url_for(key)} is corrupt (checksum)")
    return data


# -- reading and searching --------------------------------------------------------------------


@dataclass
class PoolIndex:
    """The similarity index of one pool version, loaded (see `open_index`).

    Attributes:
        index: The FAISS IVF-SQ8 index (ids are rows of the id columns).
        sample_id: Sample id of each indexed row.
        key: File key of each row.
        frame_index: Frame index of each row.
        version: The pool version it belongs to.
    """

    index: Any
    sample_id: np.ndarray
    key: np.ndarray
    frame_index: np.ndarray
    version: int

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(
        self, queries: np.ndarray, k: int, *, nprobe: int = NPROBE
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest indexed rows of each query (approximate).

        Args:
            queries: (Q, D) L2-normalised embeddings.
            k: Rows per query.
            nprobe: Coarse lists scanned per query (more: slower, higher recall).

        Returns:
            (rows, distances): int64 (Q, k) rows of the id columns (-1 where fewer were
            found) and float32 (Q, k) Euclidean distances (approximate: 8-bit codes), nearest
            first.
        """
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        self.index.nprobe = min(nprobe, self.index.nlist)
        ip, rows = self.index.search(_unit32(np.atleast_2d(queries)), k)
        dist = _to_distance(ip)
        dist[rows < 0] = np.inf
        return rows, dist

    def within(
        self, queries: np.ndarray, distance: float, *, nprobe: int = NPROBE
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every indexed row within `distance` of each query (a range search).

        Returns:
            (query, rows, distances): one entry per pair found, int64, int64, float32.
        """
        self.index.nprobe = min(nprobe, self.index.nlist)
        lims, ip, rows = self.index.range_search(
            _unit32(np.atleast_2d(queries)), _ip_threshold(distance)
        )
        query = np.repeat(np.arange(len(lims) - 1, dtype=np.int64), np.diff(lims).astype(np.int64))
        return query, rows.astype(np.int64), _to_distance(ip)


def open_index(snapshot: PoolSnapshot) -> PoolIndex | None:
    """The similarity index of a pool version, or None when it has none or it is damaged.

    A missing or corrupt part is logged as a warning (the caller searches exactly; the next
    commit rebuilds the index); the pool's data is never touched.
    """
    manifest = snapshot.manifest
    info = IndexInfo.from_manifest(manifest) if manifest is not None else None
    if info is None:
        return None
    store = snapshot.store
    try:
        merged, ids = _segments(store, info)
        if merged is None or merged.ntotal != ids.num_rows or ids.num_rows != info.rows:
            raise IndexDamaged(f"similarity index of {store.url} has the wrong number of rows")
    except (IndexDamaged, RuntimeError, pa.ArrowException, OSError) as exc:
        _log.warning(
            "datapool %s version %d: similarity index unusable (%s); searching exactly instead "
            "(the next commit rebuilds the index)",
            store.url,
            snapshot.version,
            exc,
        )
        return None
    return PoolIndex(
        index=merged,
        sample_id=np.asarray(ids.column("sample_id").to_pylist(), dtype=object),
        key=np.asarray(ids.column("key").to_pylist(), dtype=object),
        frame_index=ids.column("frame_index").to_numpy(),
        version=snapshot.version,
    )


# -- what callers ask: nearest pool sample, pairs within a distance ---------------------------


@dataclass(frozen=True)
class Nearest:
    """The nearest pool sample of each query (another sample than the query itself).

    Attributes:
        sample_id: (Q,) object; None where the pool holds no other sample.
        key: (Q,) object file keys (None likewise).
        frame_index: (Q,) int64 (-1 likewise).
        distance: (Q,) float32 (inf likewise); approximate when `exact` is False.
        exact: Found by exact search (no index, or it was unusable).
    """

    sample_id: np.ndarray
    key: np.ndarray
    frame_index: np.ndarray
    distance: np.ndarray
    exact: bool

    def take(self, rows: np.ndarray) -> Nearest:
        """The nearest of some queries only (rows of the queries, in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return Nearest(
            self.sample_id[rows],
            self.key[rows],
            self.frame_index[rows],
            self.distance[rows],
            self.exact,
        )


def nearest_in_pool(
    snapshot: PoolSnapshot,
    queries: np.ndarray,
    *,
    query_ids: Sequence[str] | np.ndarray | None = None,
    index: PoolIndex | None = None,
    nprobe: int = CHECK_NPROBE,
) -> Nearest:
    """The nearest sample the pool holds to each query, skipping the query's own sample id.

    Uses the pool's index when it has one (`open_index`, or `index`); else, and when the index
    is unusable, an exact scan of the samples parts, one batch at a time.

    Args:
        snapshot: The pool version to search.
        queries: (Q, D) L2-normalised embeddings.
        query_ids: Sample id of each query (a pool sample is not its own neighbour).
        index: The version's index, already opened (None: opened here).
        nprobe: Coarse lists scanned per query.

    Returns:
        The nearest of each query.
    """
    q = _unit32(np.atleast_2d(queries)) if len(queries) else np.zeros((0, 1), np.float32)
    own = np.asarray(query_ids if query_ids is not None else [None] * len(q), dtype=object)
    index = index if index is not None else open_index(snapshot)
    if index is not None and len(q):
        rows, dist = index.search(q, 4, nprobe=nprobe)  # 4: the query itself, repeats of it
        ids = np.where(rows >= 0, index.sample_id[np.maximum(rows, 0)], None)
        dist = np.where(ids == own[:, None], np.inf, dist)
        best = np.argmin(dist, axis=1)
        pick = rows[np.arange(len(q)), best]
        found = np.isfinite(dist[np.arange(len(q)), best])
        return Nearest(
            sample_id=np.where(found, index.sample_id[np.maximum(pick, 0)], None),
            key=np.where(found, index.key[np.maximum(pick, 0)], None),
            frame_index=np.where(found, index.frame_index[np.maximum(pick, 0)], -1),
            distance=np.where(found, dist[np.arange(len(q)), best], np.inf).astype(np.float32),
            exact=False,
        )
    return _exact_nearest(snapshot, q, own)


def _exact_nearest(snapshot: PoolSnapshot, q: np.ndarray, own: np.ndarray) -> Nearest:
    n = len(q)
    best = np.full(n, -np.inf, np.float32)
    sid = np.full(n, None, dtype=object)
    key = np.full(n, None, dtype=object)
    frame = np.full(n, -1, np.int64)
    keys = snapshot.manifest.parts["samples"] if snapshot.manifest and n else []
    for part in keys:
        for table in _batches(snapshot.store, part):
            emb = _unit32(_embeddings(table))
            ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
            for s in range(0, n, 4096):
                sim = q[s : s + 4096] @ emb.T
                sim[own[s : s + 4096, None] == ids[None, :]] = -np.inf
                arg = sim.argmax(axis=1)
                top = sim[np.arange(len(arg)), arg]
                better = top > best[s : s + 4096]
                where = np.flatnonzero(better) + s
                best[where] = top[better]
                sid[where] = ids[arg[better]]
                key[where] = np.asarray(table.column("key").to_pylist(), dtype=object)[arg[better]]
                frame[where] = table.column("frame_index").to_numpy()[arg[better]]
    dist = np.where(np.isfinite(best), _to_distance(best), np.inf).astype(np.float32)
    return Nearest(sample_id=sid, key=key, frame_index=frame, distance=dist, exact=True)


@dataclass(frozen=True)
class Leak:
    """A sample of one tag closer than the leak distance to a sample of another tag.

    Attributes:
        sample_id: The sample of the checked tag (e.g. the test set).
        key: Its file.
        frame_index: Its frame.
        other_sample_id: The sample of the other tag (e.g. training).
        other_key: Its file.
        other_frame_index: Its frame.
        distance: Euclidean distance between their unit embeddings.
    """

    sample_id: str
    key: str
    frame_index: int
    other_sample_id: str
    other_key: str
    other_frame_index: int
    distance: float


def find_leaks(
    snapshot: PoolSnapshot,
    *,
    tag: str,
    against: str,
    distance: float = DEFAULT_NEAR_DISTANCE,
    index: PoolIndex | None = None,
) -> tuple[list[Leak], bool]:
    """Pairs of samples of `tag` and of `against` closer than `distance` (leaks across splits).

    With the pool's index, a range search of `tag`'s samples over the whole pool keeps the
    hits that are members of `against` (approximate: 8-bit codes, `NPROBE` lists); without
    one (or when it is unusable), an exact comparison of the two tags' embeddings.

    Args:
        snapshot: The pool.
        tag: The tag checked (e.g. a test set).
        against: The tag it must not leak into (e.g. training).
        distance: Pairs closer than this leak (L2 between unit embeddings, 0..2).
        index: The version's index, already opened (None: opened here).

    Returns:
        The leaks, nearest first, and whether they were found by exact search.

    Raises:
        ConfigError: If `distance` is not in (0, 2] or the tags are the same.
        NotFound: If a tag does not exist.
    """
    if not 0 < distance <= 2:
        raise ConfigError(f"leak distance must be in (0, 2], got {distance}")
    if tag == against:
        raise ConfigError(f"tag {tag!r} is checked against itself: name two different tags")
    ours = snapshot.samples(snapshot.tag(tag).sample_ids)
    theirs_ids = set(snapshot.tag(against).sample_ids)
    index = index if index is not None else open_index(snapshot)
    pairs: list[tuple[int, str, str, int, float]] = []
    if index is not None:
        qi, rows, dist = index.within(ours.embedding, distance)
        for i, r, d in zip(qi.tolist(), rows.tolist(), dist.tolist(), strict=True):
            other = str(index.sample_id[r])
            if other in theirs_ids and other != ours.sample_id[i] and d < distance:
                pairs.append((i, other, str(index.key[r]), int(index.frame_index[r]), d))
    else:
        theirs = snapshot.samples(theirs_ids)
        a, b = _unit32(ours.embedding), _unit32(theirs.embedding)
        for s in range(0, len(a), 4096):
            sim = a[s : s + 4096] @ b.T
            qi, rows = np.nonzero(sim > _ip_threshold(distance))
            for i, r in zip((qi + s).tolist(), rows.tolist(), strict=True):
                d = float(_to_distance(sim[i - s, r]))
                if theirs.sample_id[r] != ours.sample_id[i] and d < distance:
                    pairs.append(
                        (
                            i,
                            str(theirs.sample_id[r]),
                            str(theirs.key[r]),
                            int(theirs.frame_index[r]),
                            d,
                        )
                    )
    seen: set[tuple[int, str]] = set()
    leaks = []
    for i, other, okey, oframe, d in sorted(pairs, key=lambda p: (p[4], p[0], p[1])):
        if (i, other) in seen:  # a sample stored twice (reprocessed) is one pair
            continue
        seen.add((i, other))
        leaks.append(
            Leak(
                str(ours.sample_id[i]),
                str(ours.key[i]),
                int(ours.frame_index[i]),
                other,
                okey,
                oframe,
                round(d, 4),
            )
        )
    return leaks, index is None


def leaks_csv(leaks: Sequence[Leak]) -> bytes:
    """The leaks as CSV (a header, then one row per pair, nearest first)."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = list(Leak.__dataclass_fields__)
    writer.writerow(names)
    for leak in leaks:
        writer.writerow([getattr(leak, n) for n in names])
    return buf.getvalue().encode()


def write_leaks(output: ObjectStore, leaks: Sequence[Leak], *, tag: str, against: str) -> str:
    """Write the leaks CSV to `<output>/leaks/<tag>-vs-<against>.csv`; its URL.

    Raises:
        ConfigError: If a tag's name cannot be part of a key.
    """
    key = f"leaks/{tag}-vs-{against}.csv"
    output.put(key, leaks_csv(leaks))
    return output.url_for(key)


@dataclass(frozen=True)
class IndexSearcher:
    """`search.Searcher` over the index: the k rows of `sample_ids` nearest to any query.

    Attributes:
        index: The pool version's index.
        sample_ids: The rows the caller names hits by (e.g. `snapshot.samples().sample_id`).
    """

    index: PoolIndex
    sample_ids: np.ndarray

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `sample_ids` and distances, nearest first (approximate; repeats merged)."""
        where = {str(s): i for i, s in enumerate(self.sample_ids)}
        rows, dist = self.index.search(queries, k + 4)
        best: dict[int, float] = {}
        for r, d in zip(rows.ravel().tolist(), dist.ravel().tolist(), strict=True):
            row = where.get(str(self.index.sample_id[r])) if r >= 0 else None
            if row is not None and d < best.get(row, np.inf):
                best[row] = d
        order = sorted(best, key=lambda row: (best[row], row))[:k]
        return np.array(order, np.int64), np.array([best[r] for r in order], np.float32)


@dataclass(frozen=True)
class LeakReport:
    """One leak check of a tag against another.

    Attributes:
        against: The other tag.
        leaks: The pairs, nearest first.
        url: Where their CSV was written.
        exact: Whether exact search found them (no usable index).
    """

    against: str
    leaks: list[Leak]
    url: str
    exact: bool


def check_tag_leaks(
    snapshot: PoolSnapshot,
    output: ObjectStore,
    *,
    tag: str,
    against: Sequence[str],
    distance: float = DEFAULT_NEAR_DISTANCE,
) -> list[LeakReport]:
    """Check `tag` against each tag of `against` (the index opened once); write each CSV.

    Raises:
        ConfigError, NotFound: As `find_leaks`.
    """
    index = open_index(snapshot)
    reports = []
    for other in against:
        leaks, exact = find_leaks(snapshot, tag=tag, against=other, distance=distance, index=index)
        url = write_leaks(output, leaks, tag=tag, against=other)
        reports.append(LeakReport(other, leaks, url, exact))
    return reports

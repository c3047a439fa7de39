"""Samples of a pool, and their frames read back from the source by key and frame index.

Images are read whole (`media.load_image`); video (and animated GIF) frames are found again by
seeking to their timestamps (`media.extract_frames`), so exactly the frames the pool embedded
come back, whatever frame sampling the runs used. Frames are squashed to a square size with
Pillow's bilinear filter, as the decoders do for the model.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from winnow import media
from winnow.datapool import PoolSnapshot
from winnow.errors import ConfigError, DecodeError, NotFound, WinnowError
from winnow.objects import CropSettings
from winnow.objects._crops import Cropper, ObjectBatch
from winnow.records import Candidates, FileRef, ObjectRows
from winnow.storage import ObjectStore

T = TypeVar("T")
R = TypeVar("R")


def choose_samples(
    snapshot: PoolSnapshot,
    *,
    tags: Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> Candidates:
    """The pool's samples, optionally only a few tags' members or runs' samples, subsampled.

    Args:
        snapshot: The pool.
        tags: Keep only members of these tags (None: every sample).
        runs: Keep only samples embedded by these runs (None: every run).
        max_samples: Keep at most this many, drawn at random without replacement.
        seed: Seed of that draw.

    Returns:
        The samples (with their embeddings), in pool order.

    Raises:
        NotFound: If a tag does not exist.
        ConfigError: If nothing is left to choose from.
    """
    ids: set[str] | None = None
    if tags:
        ids = set()
        for name in tags:
            ids.update(snapshot.tag(name).sample_ids)
    samples = snapshot.samples(ids)
    if runs:
        keep = np.isin(samples.run_id.astype(str), np.array(list(runs), dtype=str))
        samples = samples.take(np.flatnonzero(keep))
    if len(samples) == 0:
        raise ConfigError(
            f"no samples to choose from in the datapool at {snapshot.store.url} (version "
            f"{snapshot.version}; tags {list(tags or [])}, runs {list(runs or [])}): run "
            "`winnow run` first, or name tags/runs the pool has"
        )
    if max_samples is not None and len(samples) > max_samples:
        rng = np.random.default_rng(seed)
        samples = samples.take(np.sort(rng.choice(len(samples), max_samples, replace=False)))
    return samples


def file_refs(snapshot: PoolSnapshot, keys: Iterable[str]) -> dict[str, FileRef]:
    """The latest `FileRef` (fingerprint, size, kind) the pool holds for each key."""
    wanted = set(keys)
    table = snapshot.files
    out: dict[str, FileRef] = {}
    for key, fp, size, kind in zip(
        *(table.column(c).to_pylist() for c in ("key", "fingerprint", "size_bytes", "kind")),
        strict=True,
    ):
        if key in wanted:  # later rows (later runs) win
            out[key] = FileRef(key=key, fingerprint=fp, size_bytes=int(size), kind=kind)
    return out


@dataclass
class FileFrames:
    """The frames of one file's samples, read again.

    Attributes:
        key: The file.
        rows: Rows of the caller's samples these frames belong to, in the same order.
        pixels: uint8 (len(rows), size, size, 3), or None when the file could not be read.
        error: Why it could not be read (vanished, changed, undecodable), else None.
        objects: Crops of the file's boxes (`FileRef.boxes`) on these frames, cut from the
            full-size frames (`read_frames(crops=...)`), else None.
    """

    key: str
    rows: np.ndarray
    pixels: np.ndarray | None
    error: str | None = None
    objects: ObjectBatch | None = None


def read_frames(
    source: ObjectStore,
    samples: Candidates,
    *,
    files: dict[str, FileRef],
    size: int,
    workers: int = 1,
    check_fingerprints: bool = False,
    crops: CropSettings | None = None,
) -> Iterator[FileFrames]:
    """Read every sample's frame again from the source, file by file.

    Args:
        source: The store the keys are relative to (only read).
        samples: The samples (key, fingerprint, frame index, pts).
        files: Key → `FileRef` (its `kind` picks image or video reading).
        size: Square output size in pixels.
        workers: Files read in parallel (threads; PyAV and Pillow release the GIL).
        check_fingerprints: Refuse a file whose current fingerprint differs from the sample's
            (it changed since it was embedded; the next curate run reprocesses it).
        crops: Cut the boxes of each file (`FileRef.boxes`) on its samples' frames.

    Yields:
        One `FileFrames` per file, in order of each file's first sample. Bad or missing files
        are reported in `error`, never raised.

    Raises:
        StorageError: If the source cannot be read at all (permissions, credentials).
    """
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, key in enumerate(samples.key):
        groups[str(key)].append(i)

    def one(item: tuple[str, list[int]]) -> FileFrames:
        key, rows = item
        return _read_file(
            source,
            key,
            np.array(rows, dtype=np.int64),
            samples=samples,
            ref=files.get(key),
            size=size,
            check=check_fingerprints,
            crops=crops,
        )

    yield from ordered_map(one, list(groups.items()), workers=workers)


def _read_file(
    source: ObjectStore,
    key: str,
    rows: np.ndarray,
    *,
    samples: Candidates,
    ref: FileRef | None,
    size: int,
    check: bool,
    crops: CropSettings | None = None,
) -> FileFrames:
    kind = ref.kind if ref is not None else "image"
    expected = str(samples.fingerprint[rows[0]])
    try:
        if check:
            now = current_fingerprint(source, key)
            if now is None:
                return FileFrames(key, rows, None, "vanished from the source")
            if now != expected:
                return FileFrames(key, rows, None, f"changed since it was embedded ({now})")
        targets = [(int(samples.frame_index[r]), float(samples.pts_seconds[r])) for r in rows]
        with source.local_copy(key) as path:
            if kind == "image":
                full = media.load_image(Path(path))
                found = {t[0]: full for t in targets}
            else:
                found = dict(media.extract_frames(Path(path), targets))
    except NotFound:
        return FileFrames(key, rows, None, "vanished from the source")
    except DecodeError as exc:
        return FileFrames(key, rows, None, f"cannot be decoded again: {exc}")
    except WinnowError:  # storage failures stop the run (transient ones are retried)
        raise
    except Exception as exc:  # per-file boundary: a decoder failure drops this file's frames
        return FileFrames(key, rows, None, f"cannot be decoded again: {type(exc).__name__}: {exc}")
    missing = [t[0] for t in targets if t[0] not in found]
    if missing:
        return FileFrames(key, rows, None, f"frames {missing[:5]} not found again")
    pixels = np.stack([_squash(found[t[0]], size) for t in targets])
    objects = None
    if crops is not None and ref is not None and ref.boxes:
        objects = _cut(Cropper(ref, crops, size), found, targets, samples.sample_id[rows])
    return FileFrames(key, rows, pixels, objects=objects)


def _cut(
    cropper: Cropper,
    found: dict[int, np.ndarray],
    targets: list[tuple[int, float]],
    sample_ids: np.ndarray,
) -> ObjectBatch | None:
    """The crops of the boxes on the given full-size frames, in one batch."""
    batches = [
        cropper.cut(found[index], index=index, seconds=seconds, sample_id=str(sid))
        for (index, seconds), sid in zip(targets, sample_ids, strict=True)
        if cropper.wants(index, seconds)
    ]
    batches = [b for b in batches if b is not None]
    if not batches:
        return None
    rows = ObjectRows.concat([b.rows for b in batches])
    return ObjectBatch(rows, np.concatenate([b.pixels for b in batches]))


def current_fingerprint(source: ObjectStore, key: str) -> str | None:
    """The fingerprint the source shows now for `key` (None when it is gone)."""
    try:
        return next((i.fingerprint for i in source.list(key) if i.key == key), None)
    except NotFound:
        return None


def _squash(rgb: np.ndarray, size: int) -> np.ndarray:
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return np.ascontiguousarray(rgb)
    image = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def ordered_map(fn: Callable[[T], R], items: Sequence[T], *, workers: int) -> Iterator[R]:
    """`map(fn, items)` on `workers` threads, in order, with at most 2 x workers in flight."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    window = 2 * workers
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="winnow-read") as pool:
        pending: collections.deque = collections.deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))

"""The decode+embed engine: decoders run ahead of the model, which never waits when it can work.

    files ──> decoder threads ──(chunks of frames, FileResults)──> model thread ──> caller
              media.decode_file     bounded by a frame budget     Embedder.submit    ShardResults

Decoder threads take files in plan order and stream them through `media.decode_file`; the model
thread forms batches across files and shards, embeds them (on CUDA it queues batch i+1 before it
collects batch i), and hands each shard's result to the caller as soon as its last frame is
embedded, in shard order, so the caller can stage it (`staging.embed_and_stage`: a crash loses
only unstaged shards). While the caller stages a shard, the model and the decoders keep going.

Memory is bounded by a *frame budget* of `batch_size * prefetch_batches` frames: a decoder
reserves room for a chunk before handing it over and the room is given back when the chunk's
last frame is embedded. Each decoder also holds the chunk it is filling, so peak memory is about
`batch_size * prefetch_batches + 2 * workers * chunk` frames, whatever the length of a video or
the size of a shard. Only embeddings (about 1 KB a frame) wait for an earlier, slower shard.

Threads, not processes: PyAV releases the GIL while it decodes and scales, numpy and hashlib
release it for the per-frame statistics and hashes, and torch releases it inside every operator,
so decoders and model overlap in one process (`bench/throughput.py` compares the engine with
min(decode-only, model-only)). Threads also avoid copying every frame through a pipe, a fresh
interpreter per worker and the start-method hazards of processes (a spawned worker re-imports
the caller's `__main__`). An S3 source shares one boto3 client across threads.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from winnow import media
from winnow.device import decode_threads
from winnow.embedding import Embedder, default_decode_workers
from winnow.errors import ConfigError, DecodeError, NotFound, StorageError, WinnowError
from winnow.media import FrameOptions
from winnow.objects._crops import ObjectBatch
from winnow.objects._options import CropSettings
from winnow.outputs._names import output_name_problem
from winnow.records import (
    Candidates,
    FileRef,
    FileResult,
    FrameBatch,
    ObjectRows,
    SampleColumns,
    Shard,
    kind_of,
)
from winnow.storage import ObjectStore

_MAX_CHUNK = 64  # frames per decoder chunk: big enough to amortise hand-over, small in memory
_LINGER_S = 0.005  # how long the model waits for more frames before running a partial batch


@dataclass
class ShardResult:
    """One shard, decoded and embedded.

    Attributes:
        shard: The shard.
        candidates: Embedded frames of its `ok` files, in file order then frame order.
        files: One result per file of the shard, in the shard's file order (for a time range
            of a video, the range's result: `records.merge_file_results` makes the file's).
        objects: Embedded object crops of its files' boxes (`FileRef.boxes`), file by file.
    """

    shard: Shard
    candidates: Candidates
    files: list[FileResult]
    objects: ObjectRows = field(default_factory=ObjectRows.empty)


@dataclass
class EngineStats:
    """Counters of one `embed_shards` run (for benchmarks, tests and logs).

    Attributes:
        frames: Frames embedded.
        objects: Object crops embedded (in the same batches as the frames).
        files: Files finished (any status).
        batches: Model calls.
        partial_batches: Model calls with fewer than `batch_size` frames.
        peak_frames: Most frames held at once between the decoders and the model (the frame
            budget in use; never above `batch_size * prefetch_batches`).
        wait_s: Seconds the model side spent waiting for decoded frames.
        model_s: Seconds spent in model calls.
        wall_s: Seconds from start to the last shard.
        workers: Decoder threads used.
        codec_threads: Codec threads of each decoder (`device.decode_threads(workers)`).
        batch_sizes: How many model calls had each batch size.
    """

    frames: int = 0
    objects: int = 0
    files: int = 0
    batches: int = 0
    partial_batches: int = 0
    peak_frames: int = 0
    wait_s: float = 0.0
    model_s: float = 0.0
    wall_s: float = 0.0
    workers: int = 0
    codec_threads: int = 0
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)


def embed_shards(
    shards: Sequence[Shard],
    *,
    source: ObjectStore,
    frames: FrameOptions,
    embedder: Embedder,
    decode_workers: int | None = None,
    prefetch_batches: int = 4,
    stats: EngineStats | None = None,
    on_progress: Callable[[EngineStats], None] | None = None,
    progress_every_s: float = 2.0,
    crops: CropSettings | None = None,
) -> Iterator[ShardResult]:
    """Decode and embed every file of every shard, streaming.

    Decoding runs in worker threads ahead of the model, which runs in a thread of its own;
    batches are formed across files and shards; a shard is yielded as soon as all its frames
    are embedded, in shard order, and the work goes on while the caller handles it. Files are
    read through `source.local_copy` (S3 objects stream to a temporary file). Safe to call
    from any thread; closing the generator early stops the workers.

    Args:
        shards: The shards, in plan order.
        source: Where the files live.
        frames: How video frames are sampled.
        embedder: The loaded model (its batch size and input size are used).
        decode_workers: Decoder workers; None picks one per 8 cores on a CPU host (the model
            needs the cores) and up to 8 when the model runs on a GPU.
        prefetch_batches: Batches of decoded frames that may wait for the model; with
            `embedder.batch_size` it bounds memory.
        stats: Filled in with counters as the run goes, if given.
        on_progress: Called in the caller's thread with the counters (`frames` embedded so
            far, `files` finished) at most every `progress_every_s` while frames keep coming,
            also in the middle of one long video.
        progress_every_s: Seconds between `on_progress` calls.
        crops: How the boxes of files that have them (`FileRef.boxes`) are cut; their crops
            are embedded in the same batches as the frames. None: boxes are ignored.

    Yields:
        One `ShardResult` per shard, in order. Bad media never stops the run: such files get
        a `corrupt` (or `skipped`) `FileResult` and no candidates.

    Raises:
        ConfigError: If `prefetch_batches`, `decode_workers` or `progress_every_s` is not
            positive.
        StorageError: If reads are refused `DENIED_BEFORE_FIRST_READ` times before any
            succeeds (the credentials cannot read objects). One file that vanished, is refused
            (access denied), has a key that cannot be read exactly or named safely
            (`outputs._names.output_name_problem`), or goes over `frames.max_pixels` or
            `frames.max_seconds_per_file` is a `skipped` result instead. A file replaced since
            it was listed is decoded as read, under the fingerprint of what was read.
        TransientStorageError: If a read fails in a way a retry may fix (the run's retry
            decodes only the shards not staged yet).
        DecodeError: If a decoder fails in an unexpected way; the message names the file.
    """
    if prefetch_batches < 1:
        raise ConfigError(f"prefetch_batches must be at least 1, got {prefetch_batches}")
    if decode_workers is not None and decode_workers < 1:
        raise ConfigError(f"decode_workers must be at least 1 or None, got {decode_workers}")
    if not progress_every_s > 0:
        raise ConfigError(f"progress_every_s must be positive, got {progress_every_s}")
    n_files = sum(len(s.files) for s in shards)
    workers = decode_workers or default_decode_workers(embedder.device)
    workers = max(1, min(workers, n_files))
    return _embed_shards(
        list(shards),
        source=source,
        frames=frames,
        embedder=embedder,
        workers=workers,
        prefetch_batches=prefetch_batches,
        stats=stats if stats is not None else EngineStats(),
        on_progress=on_progress,
        progress_every_s=progress_every_s,
        crops=crops,
    )


def embed_keys(
    keys: Sequence[str], *, source: ObjectStore, frames: FrameOptions, embedder: Embedder
) -> np.ndarray:
    """Embed a few named files (e.g. query images) in the caller's thread.

    Args:
        keys: Keys of images or videos in `source`.
        source: Where they live.
        frames: How video frames are sampled.
        embedder: The loaded model.

    Returns:
        float16 (N, D) embeddings of every sampled frame of the files, in key order.

    Raises:
        ConfigError: If a key is not a media file, does not exist, or cannot be decoded.
    """
    parts: list[np.ndarray] = []
    for key in keys:
        kind = kind_of(key)
        if kind is None:
            raise ConfigError(f"{source.url_for(key)} is not an image or video file")
        try:
            with source.local_copy(key) as path:
                size = path.stat().st_size
                ref = FileRef(key=key, fingerprint=f"query:{size}", size_bytes=size, kind=kind)
                for item in media.decode_file(path, ref, size=embedder.input_size, options=frames):
                    if isinstance(item, FileResult):
                        if item.status != "ok":
                            raise ConfigError(
                                f"{source.url_for(key)} cannot be used: {item.status}: {item.error}"
                            )
                    else:
                        parts.append(embedder.embed(item.pixels))
        except NotFound as exc:
            raise ConfigError(f"{exc}: check the query keys") from exc
    if not parts:
        return np.zeros((0, embedder.record.dim), np.float16)
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# the frame budget


class _FrameBudget:
    """Counts frames between the decoders and the model; a decoder waits for room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self.waiting = 0
        self.closed = False
        self._cond = threading.Condition()

    def acquire(self, n: int) -> bool:
        """Reserve room for `n` frames; False if the run was closed meanwhile."""
        with self._cond:
            self.waiting += 1
            # An oversized chunk may go alone, so a budget smaller than a chunk cannot deadlock.
            while not self.closed and self.used and self.used + n > self.capacity:
                self._cond.wait()
            self.waiting -= 1
            if self.closed:
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


# --------------------------------------------------------------------------------------------
# decoder workers

# Messages from a decoder to the model side, all tuples starting with a tag:
#   ("frames", task, FrameBatch)   a chunk; its frames hold room in the budget
#   ("file", task, FileResult)     the file is finished (after all its chunks)
#   ("error", task, exc)           an unexpected failure; the run stops with a clear error
#   ("exit", None)                 the worker has no more files


@dataclass(frozen=True)
class _Task:
    """One file to decode: its shard's position in the run and its position in the shard."""

    shard_pos: int
    file_pos: int
    ref: FileRef


def _decode_one(
    task: _Task,
    *,
    source: ObjectStore,
    size: int,
    options: FrameOptions,
    chunk_frames: int,
    threads: int,
    put: Any,
    acquire: Any,
    denied: _ReadRefusals | None = None,
    crops: CropSettings | None = None,
) -> bool:
    """Decode one file into messages; False if the run was stopped meanwhile."""
    ref = task.ref
    # One bad object never stops a run: a key that cannot be read exactly or named safely in
    # the outputs, an object gone or unreadable, a file over a budget: each is a `skipped`
    # result with its reason. Only storage trouble a retry may fix stops the run.
    problem = output_name_problem(ref.key, ref.kind)
    if problem is not None:
        put(("file", task, FileResult.for_ref(ref, status="skipped", error=f"not read: {problem}")))
        return True
    budget = options.max_seconds_per_file
    start = time.monotonic()
    try:
        with source.fetch(ref.key) as (path, info):
            if info is not None and info.fingerprint != ref.fingerprint:
                # Replaced since it was listed: the pool records what was actually read.
                ref = dataclasses.replace(
                    ref, fingerprint=info.fingerprint, size_bytes=info.size_bytes
                )
            items = media.decode_file(
                Path(path),
                ref,
                size=size,
                options=options,
                chunk_frames=chunk_frames,
                threads=threads,
                crops=crops,
            )
            try:
                for item in items:
                    if isinstance(item, (FrameBatch, ObjectBatch)):
                        if not acquire(len(item)):
                            return False
                        put(("frames" if isinstance(item, FrameBatch) else "objects", task, item))
                        if budget is not None and time.monotonic() - start > budget:
                            put(("file", task, _over_time(ref, budget)))
                            break
                    else:
                        put(("file", task, item))
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
    except NotFound as exc:
        result = FileResult.for_ref(
            ref, status="skipped", error=f"vanished from the source before decoding ({exc})"
        )
        put(("file", task, result))
    except (StorageError, ConfigError) as exc:  # access denied, a key the store refuses, …
        if denied is not None and denied.refused(isinstance(exc, StorageError)):
            put(("error", task, _reads_refused(source, exc)))
            return True
        error = f"cannot be read: {exc}"
        put(("file", task, FileResult.for_ref(ref, status="skipped", error=error)))
    except Exception as exc:  # re-raised by the model loop, in the caller's thread
        put(("error", task, exc))
    else:
        if denied is not None:
            denied.read()
    return True


def _over_time(ref: FileRef, budget: float) -> FileResult:
    return FileResult.for_ref(
        ref,
        status="skipped",
        error=f"over the time budget: decoding took longer than frames.max_seconds_per_file "
        f"({budget:g} s); its frames are dropped",
    )


# Reads refused (access denied) this many times before any read succeeds stop the run: the
# credentials lack s3:GetObject, and recording every file as skipped would lose them all.
DENIED_BEFORE_FIRST_READ = 3


class _ReadRefusals:
    """Counts refused reads until the first read succeeds (shared by the decoder threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ok = 0
        self.denied = 0

    def read(self) -> None:
        with self._lock:
            self.ok += 1

    def refused(self, storage: bool) -> bool:
        """Count one refused read; True when the run should stop instead of skipping."""
        with self._lock:
            self.denied += storage
            return self.ok == 0 and self.denied >= DENIED_BEFORE_FIRST_READ


def _reads_refused(source: ObjectStore, exc: Exception) -> StorageError:
    return StorageError(
        f"reading from {source.url} was refused {DENIED_BEFORE_FIRST_READ} times before any "
        f"file could be read (last: {exc}); check that the credentials may read objects "
        "(s3:GetObject) — nothing was recorded as processed"
    )


class _ThreadDecoders:
    """Decoder threads sharing one task queue; messages go to `out`."""

    def __init__(
        self,
        tasks: list[_Task],
        *,
        workers: int,
        source: ObjectStore,
        size: int,
        options: FrameOptions,
        chunk_frames: int,
        budget: _FrameBudget,
        crops: CropSettings | None = None,
    ) -> None:
        self.out: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self.workers = workers
        self.budget = budget
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        for t in tasks:
            self._tasks.put(t)
        self._stop = threading.Event()
        kwargs = {
            "source": source,
            "size": size,
            "options": options,
            "chunk_frames": chunk_frames,
            "threads": decode_threads(workers),  # decoders share the cores, never oversubscribe
            "put": self.out.put,
            "acquire": budget.acquire,
            "denied": _ReadRefusals(),
            "crops": crops,
        }
        self._threads = [
            threading.Thread(
                target=self._loop, kwargs=kwargs, name=f"winnow-decode-{i}", daemon=True
            )
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def _loop(self, **kwargs: Any) -> None:
        try:
            while not self._stop.is_set():
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if not _decode_one(task, **kwargs):
                    break
        finally:
            self.out.put(("exit", None))

    def get(self, timeout: float | None) -> tuple | None:
        try:
            return self.out.get(timeout=timeout) if timeout != 0 else self.out.get_nowait()
        except queue.Empty:
            return None

    def release(self, n: int) -> None:
        self.budget.release(n)

    @property
    def peak(self) -> int:
        return self.budget.peak

    def close(self) -> None:
        self._stop.set()
        self.budget.close()
        for t in self._threads:
            t.join(timeout=30)


# --------------------------------------------------------------------------------------------
# the model side


@dataclass
class _Chunk:
    """A decoded chunk waiting for (or in) the model."""

    task: _Task
    batch: FrameBatch | ObjectBatch | None  # dropped once its last frame has gone into a batch
    meta: dict[str, np.ndarray]
    n: int
    taken: int = 0  # frames already put into a batch
    left: int = 0  # frames not yet embedded (room is released when it reaches 0)
    objects: ObjectRows | None = None  # an object batch's rows (its crops are the pixels)


@dataclass
class _Shard:
    shard: Shard
    files: list[FileResult | None]
    parts: list[list[Candidates]]
    outstanding: list[int]  # frames of each file received but not yet embedded
    objects: list[list[ObjectRows]]

    @classmethod
    def of(cls, shard: Shard) -> _Shard:
        n = len(shard.files)
        return cls(shard, [None] * n, [[] for _ in range(n)], [0] * n, [[] for _ in range(n)])

    def done(self) -> bool:
        return all(f is not None for f in self.files) and not any(self.outstanding)

    def result(self, dim: int) -> ShardResult:
        files = [f for f in self.files if f is not None]

        def of_ok_files(per_file: list[list[Any]]) -> list[Any]:
            # media reports broken files with no frames (or objects); be safe
            return [
                p
                for result, file_parts in zip(files, per_file, strict=True)
                if result.status == "ok"
                for p in file_parts
            ]

        parts, objects = of_ok_files(self.parts), of_ok_files(self.objects)
        candidates = Candidates.concat(parts) if parts else Candidates.empty(dim)
        return ShardResult(
            shard=self.shard,
            candidates=candidates,
            files=files,
            objects=ObjectRows.concat(objects) if objects else ObjectRows.empty(dim),
        )


def _embed_shards(
    shards: list[Shard],
    *,
    source: ObjectStore,
    frames: FrameOptions,
    embedder: Embedder,
    workers: int,
    prefetch_batches: int,
    stats: EngineStats,
    on_progress: Callable[[EngineStats], None] | None,
    progress_every_s: float,
    crops: CropSettings | None,
) -> Iterator[ShardResult]:
    start = time.perf_counter()
    batch_size = embedder.batch_size
    tasks = [
        _Task(i, j, ref) for i, shard in enumerate(shards) for j, ref in enumerate(shard.files)
    ]
    stats.workers = workers if tasks else 0
    stats.codec_threads = decode_threads(workers) if tasks else 0
    if not tasks:
        for shard in shards:
            yield _Shard.of(shard).result(embedder.record.dim)
        return
    common = {
        "workers": workers,
        "source": source,
        "size": embedder.input_size,
        "options": frames,
        "chunk_frames": max(1, min(_MAX_CHUNK, batch_size)),
        "crops": crops,
    }
    decoders = _ThreadDecoders(tasks, budget=_FrameBudget(batch_size * prefetch_batches), **common)
    # The model runs in its own thread too, so the caller's work between shards (staging each
    # result to storage) never stalls the model: finished shards wait in a short queue.
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=_READY_SHARDS)
    stop = threading.Event()
    loop = _ModelLoop(
        shards, decoders=decoders, embedder=embedder, source=source, stats=stats, stop=stop
    )

    def run() -> None:
        try:
            loop.run(lambda result: _put(ready, ("shard", result), stop))
            _put(ready, ("end", None), stop)
        except BaseException as exc:  # handed to the caller's thread, raised there
            _put(ready, ("error", exc), stop)

    thread = threading.Thread(target=run, name="winnow-model", daemon=True)
    thread.start()
    reported = 0  # frames at the last progress call
    due = time.perf_counter() + progress_every_s
    try:
        while True:
            if on_progress is None:
                tag, value = ready.get()
            else:
                try:
                    tag, value = ready.get(timeout=max(0.0, due - time.perf_counter()))
                except queue.Empty:
                    tag, value = "tick", None
                if time.perf_counter() >= due:
                    due = time.perf_counter() + progress_every_s
                    if stats.frames != reported:  # frames embedded by the model thread
                        reported = stats.frames
                        on_progress(stats)
            if tag == "tick":
                continue
            if tag == "end":
                return
            if tag == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
        decoders.close()
        stats.peak_frames = decoders.peak
        stats.wall_s = time.perf_counter() - start


_READY_SHARDS = 2  # finished shards that may wait for the caller


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the run is stopped first (the caller closed the generator)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _ModelLoop:
    """Forms batches across files and shards, runs the model, files the embeddings.

    Runs in one thread; its only links to the decoders are their message queue and the frame
    budget it gives back as chunks are embedded.
    """

    def __init__(
        self,
        shards: list[Shard],
        *,
        decoders: Any,
        embedder: Embedder,
        source: ObjectStore,
        stats: EngineStats,
        stop: threading.Event,
    ) -> None:
        self.shards = shards
        self.states = [_Shard.of(s) for s in shards]
        self.decoders = decoders
        self.embedder = embedder
        self.batch_size = embedder.batch_size
        self.source = source
        self.stats = stats
        self.stop = stop
        self.pending: collections.deque[_Chunk] = collections.deque()
        self.pending_frames = 0
        # The batch on the device: its handle and the (chunk, lo, hi) pieces it holds.
        self.inflight: tuple[Any, list[tuple[_Chunk, int, int]]] | None = None
        self.live = decoders.workers

    def run(self, emit: Any) -> None:
        """Embed everything, calling `emit` with each finished shard in order."""
        states, stats, decoders = self.states, self.stats, self.decoders
        next_shard = 0
        while next_shard < len(states) and not self.stop.is_set():
            if states[next_shard].done():
                result = states[next_shard].result(self.embedder.record.dim)
                states[next_shard] = _Shard.of(self.shards[next_shard])  # drop its candidates
                next_shard += 1
                stats.peak_frames = decoders.peak
                if not emit(result):
                    return
                continue
            # Take whatever the decoders have ready, then feed the model.
            while (message := decoders.get(0)) is not None:
                self.receive(message)
            if self.pending_frames >= self.batch_size:
                self.submit(self.batch_size)
            elif self.pending_frames and (self.live == 0 or self.inflight is None):
                message = self.wait(_LINGER_S)
                if message is not None:
                    self.receive(message)
                else:
                    self.submit(self.pending_frames)  # the model would idle: run what there is
            elif self.inflight is not None:
                self.collect()
            elif self.live == 0:
                if states[next_shard].done():  # its last result came with the decoders' exit
                    continue
                missing = [
                    f"{s.shard.files[j].key} (shard {s.shard.index})"
                    for s in states[next_shard:]
                    for j, f in enumerate(s.files)
                    if f is None
                ]
                raise RuntimeError(f"decoders exited with files unfinished: {missing[:5]}")
            elif (message := self.wait(0.5)) is not None:
                self.receive(message)

    def wait(self, timeout: float) -> tuple | None:
        t0 = time.perf_counter()
        message = self.decoders.get(timeout)
        self.stats.wait_s += time.perf_counter() - t0
        return message

    def receive(self, message: tuple) -> None:
        tag = message[0]
        if tag in ("frames", "objects"):
            task, batch = message[1], message[2]
            if tag == "frames":
                chunk = _Chunk(task, batch, batch.meta_dict(), len(batch), left=len(batch))
            else:
                chunk = _Chunk(task, batch, {}, len(batch), left=len(batch), objects=batch.rows)
            self.pending.append(chunk)
            self.pending_frames += chunk.n
            self.states[task.shard_pos].outstanding[task.file_pos] += chunk.n
        elif tag == "file":
            task, result = message[1], message[2]
            self.states[task.shard_pos].files[task.file_pos] = result
            self.stats.files += 1
        elif tag == "exit":
            self.live -= 1
        else:
            _, task, exc = message
            if isinstance(exc, WinnowError):  # storage errors: clear, maybe transient
                raise exc
            url = self.source.url_for(task.ref.key)
            raise DecodeError(
                f"unexpected error while decoding {url}: {type(exc).__name__}: {exc} (a bug, "
                "not bad media; please report it, with the file if you can)"
            ) from exc

    def submit(self, n: int) -> None:
        """Put the first `n` waiting frames on the device as one batch."""
        pieces: list[tuple[_Chunk, int, int]] = []
        arrays: list[np.ndarray] = []
        want = n
        while want:
            chunk = self.pending[0]
            assert chunk.batch is not None
            lo = chunk.taken
            hi = min(chunk.n, lo + want)
            arrays.append(chunk.batch.pixels[lo:hi])
            pieces.append((chunk, lo, hi))
            chunk.taken = hi
            want -= hi - lo
            if hi == chunk.n:
                chunk.batch = None  # from here the pixels live on only in this batch
                self.pending.popleft()
        pixels = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        self.pending_frames -= n
        t0 = time.perf_counter()
        handle = self.embedder.submit(pixels)
        stats = self.stats
        stats.model_s += time.perf_counter() - t0
        stats.batches += 1
        stats.batch_sizes[n] += 1
        stats.partial_batches += n < self.batch_size
        # On CUDA the device now works on this batch while the host files the previous one.
        previous, self.inflight = self.inflight, (handle, pieces)
        if previous is not None:
            self._file(*previous)

    def collect(self) -> None:
        """Wait for the batch on the device and file its embeddings."""
        if self.inflight is not None:
            inflight, self.inflight = self.inflight, None
            self._file(*inflight)

    def _file(self, handle: Any, pieces: list[tuple[_Chunk, int, int]]) -> None:
        t0 = time.perf_counter()
        emb = handle.result()
        self.stats.model_s += time.perf_counter() - t0
        offset = 0
        objects = 0
        for chunk, lo, hi in pieces:
            n = hi - lo
            state = self.states[chunk.task.shard_pos]
            if chunk.objects is not None:
                rows = chunk.objects.take(slice(lo, hi)).with_embedding(emb[offset : offset + n])
                state.objects[chunk.task.file_pos].append(rows)
                objects += n
            else:
                meta = SampleColumns(**{k: v[lo:hi] for k, v in chunk.meta.items()})
                state.parts[chunk.task.file_pos].append(
                    Candidates.from_frames(meta, emb[offset : offset + n])
                )
            state.outstanding[chunk.task.file_pos] -= n
            offset += n
            chunk.left -= n
            if chunk.left == 0:
                self.decoders.release(chunk.n)
        self.stats.frames += offset - objects
        self.stats.objects += objects

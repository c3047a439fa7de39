"""Typed records passed between the stages of a run.

Stages talk through these small records, never through loose dicts. Column-oriented records
(`FrameBatch`, `Candidates`) keep one numpy array per column so that thousands of frames cost a
handful of objects, and convert to and from Arrow for the datapool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from winnow.objects._boxes import Box

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""What a name users give must match: tag names and trained models' ids (1–100 characters)."""

FileKind = Literal["image", "video"]
FileStatus = Literal["ok", "corrupt", "skipped"]

# Still pictures. GIF is here too: a still GIF decodes as an image, an animated one has its
# frames sampled like a video's (and its result says `video`). HEIC/HEIF need pillow-heif.
IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "avif", "heic", "heif"}
)
VIDEO_EXTENSIONS = frozenset({"mp4", "mov", "avi", "mkv", "webm", "m4v"})


def kind_of(key: str) -> FileKind | None:
    """Return the media kind a key's extension names, or None for anything else."""
    ext = key.rsplit(".", 1)[-1].lower() if "." in key.rsplit("/", 1)[-1] else ""
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def sample_id_for(key: str, fingerprint: str, frame_index: int) -> str:
    """Stable id of one sample: a hash of the file's key, its fingerprint and the frame index."""
    digest = hashlib.blake2b(f"{key}\0{fingerprint}\0{frame_index}".encode(), digest_size=12)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileRef:
    """One media file found in the source.

    Attributes:
        key: Path of the file relative to the source root, with `/` separators.
        fingerprint: Identity of the content: `etag:<etag>:<size>` on S3,
            `mtime:<mtime_ns>:<size>` on a local folder. A new fingerprint means a changed file.
        size_bytes: Size of the file.
        kind: `image` or `video`, from the extension.
        start_s: A video's time range starts here, in the stream's presentation seconds (the
            `pts_seconds` of its frames); None: at the start. Set by `plan_shards` when it
            splits a long video into ranges that workers decode at once.
        end_s: The range ends before this time; None: at the end of the file.
        boxes: Predicted boxes on the file's frames (`objects.predictions`): each sampled frame
            that has boxes is also cut into object crops at full resolution. Empty: no objects.
    """

    key: str
    fingerprint: str
    size_bytes: int
    kind: FileKind
    start_s: float | None = None
    end_s: float | None = None
    boxes: tuple[Box, ...] = ()

    def __post_init__(self) -> None:
        # Shard plans travel as JSON (child runs, Dask): boxes come back as dicts in lists.
        if self.boxes and not isinstance(self.boxes[0], Box):
            object.__setattr__(self, "boxes", tuple(Box(**b) for b in self.boxes))
        elif not isinstance(self.boxes, tuple):
            object.__setattr__(self, "boxes", tuple(self.boxes))

    @property
    def is_range(self) -> bool:
        """Whether this entry is one time range of a video rather than the whole file."""
        return self.start_s is not None or self.end_s is not None


@dataclass(frozen=True)
class Shard:
    """A unit of decode+embed work: tens of files, checkpointed (staged) as one piece.

    Attributes:
        index: Position of the shard in the run's plan (for progress and logs).
        shard_id: Stable hash of the files (keys + fingerprints) it holds; names its staged part.
        files: The files, in a deterministic order.
    """

    index: int
    shard_id: str
    files: tuple[FileRef, ...]

    @staticmethod
    def id_for(files: tuple[FileRef, ...]) -> str:
        """Stable id of a set of files (independent of shard position)."""
        h = hashlib.blake2b(digest_size=10)
        for f in files:
            # A time range adds its bounds (whole files hash as they always have).
            span = f"\0{f.start_s!r}\0{f.end_s!r}" if f.is_range else ""
            # Boxes add their digest: new predictions for a file are a new shard to stage.
            boxes = f"\0{_boxes_digest(f.boxes)}" if f.boxes else ""
            h.update(f"{f.key}\0{f.fingerprint}{span}{boxes}\n".encode())
        return h.hexdigest()


def _boxes_digest(boxes: tuple[Box, ...]) -> str:
    text = repr([dataclasses.astuple(b) for b in boxes])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class FileResult:
    """What happened to one file in a run: one row of the datapool's `files` table.

    Attributes:
        key: Key relative to the source root.
        fingerprint: As in `FileRef`.
        size_bytes: Size of the file.
        kind: `image` or `video`.
        status: `ok`, `corrupt` (could not be decoded; see `error`) or `skipped`
            (decoded but gave no frame, or excluded by a rule; see `error`).
        error: The reason for a corrupt or skipped file, else None.
        frames_total: Frames in the file (1 for an image; container count or demuxed packets
            for a video), used to zero-pad exported frame names.
        frames_sampled: Frames taken from the file as candidates.
        width: Width of the stored picture (after rotation), 0 when unknown.
        height: Height of the stored picture (after rotation), 0 when unknown.
        frames_decoded: Frames decoded (a video's, in its own time range), 0 for images.
        frames_unchanged: Sampled frames skipped as unchanged (`frames.min_change`).
        frames_rejected: Sampled frames dropped by `frames.quality`, as (reason, count) pairs.
        shots_detected: True when cuts were looked for (`frames.detect_shots`/`per_shot`).
        cuts: (frame index, seconds) of the first frame of every shot after the first.
        duration_s: Seconds from the first frame to the end of the last one looked at.
        objects: Object crops cut from the file's frames (`FileRef.boxes`).
        objects_skipped: Boxes not used, as (reason, count) pairs (`objects._boxes` reasons:
            outside the frame, too small, on a frame not sampled).

    The fields after `height` are not columns of the `files` table: they travel with staged
    shards and feed the run summary and the pool's `shots` table (`shots_to_arrow`).
    """

    key: str
    fingerprint: str
    size_bytes: int
    kind: FileKind
    status: FileStatus
    error: str | None = None
    frames_total: int = 0
    frames_sampled: int = 0
    width: int = 0
    height: int = 0
    frames_decoded: int = 0
    frames_unchanged: int = 0
    frames_rejected: tuple[tuple[str, int], ...] = ()
    shots_detected: bool = False
    cuts: tuple[tuple[int, float], ...] = ()
    duration_s: float = 0.0
    objects: int = 0
    objects_skipped: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        # Staged shards store results as JSON: lists come back where tuples went in.
        object.__setattr__(
            self, "frames_rejected", tuple((str(r), int(n)) for r, n in self.frames_rejected)
        )
        object.__setattr__(
            self, "objects_skipped", tuple((str(r), int(n)) for r, n in self.objects_skipped)
        )
        object.__setattr__(self, "cuts", tuple((int(i), float(t)) for i, t in self.cuts))

    @classmethod
    def for_ref(cls, ref: FileRef, **values: Any) -> FileResult:
        """Build a result for `ref`, copying its identity fields."""
        return cls(
            key=ref.key,
            fingerprint=ref.fingerprint,
            size_bytes=ref.size_bytes,
            kind=ref.kind,
            **values,
        )


# The result of a video's time range that holds no frame: neutral when ranges are merged.
EMPTY_RANGE = "no frame in this time range"


def merge_file_results(results: list[FileResult]) -> list[FileResult]:
    """One result per file: the results of a video's time ranges merged into one.

    Results with the same key and fingerprint are the ranges of one file (discovery lists a key
    once). Merged: `frames_sampled` summed; `frames_total`, `width`, `height` from the ranges
    that know them; status `ok` if any range sampled frames (with the first `partial:` error, a
    range that failed outright counting as one), else `corrupt` if any range was, else
    `skipped`, with the first reason that is not `EMPTY_RANGE`. A single result passes through
    unchanged; order is first appearance.

    Args:
        results: File results, e.g. of every staged shard of a run.

    Returns:
        The merged results, one per (key, fingerprint).
    """
    groups: dict[tuple[str, str], list[FileResult]] = {}
    for r in results:
        groups.setdefault((r.key, r.fingerprint), []).append(r)
    return [parts[0] if len(parts) == 1 else _merge_ranges(parts) for parts in groups.values()]


def total_rejected(results: list[FileResult], field: str = "frames_rejected") -> dict[str, int]:
    """Frames dropped by `frames.quality` (or boxes not used: `objects_skipped`), by reason."""
    total: dict[str, int] = {}
    for r in results:
        for reason, n in getattr(r, field):
            total[reason] = total.get(reason, 0) + n
    return total


def _merge_ranges(parts: list[FileResult]) -> FileResult:
    sampled = sum(p.frames_sampled for p in parts)
    telling = [p for p in parts if p.error != EMPTY_RANGE] or parts[:1]
    if any(p.status == "ok" for p in parts):
        status: FileStatus = "ok"
        # A range that failed outright makes the file partial, as a mid-stream error does.
        errors = [
            p.error if p.status == "ok" else f"partial: a time range failed: {p.error}"
            for p in parts
            if p.error and p.status != "skipped"
        ]
    else:
        status = "corrupt" if any(p.status == "corrupt" for p in parts) else "skipped"
        errors = [p.error for p in telling if p.status == status and p.error]
    sized = [p for p in parts if p.width and p.height]
    return dataclasses.replace(
        parts[0],
        status=status,
        error=errors[0] if errors else None,
        frames_total=max(p.frames_total for p in parts),
        frames_sampled=sampled,
        width=sized[0].width if sized else 0,
        height=sized[0].height if sized else 0,
        frames_decoded=sum(p.frames_decoded for p in parts),
        frames_unchanged=sum(p.frames_unchanged for p in parts),
        frames_rejected=tuple(sorted(total_rejected(parts).items())),
        shots_detected=any(p.shots_detected for p in parts),
        cuts=tuple(sorted(c for p in parts for c in p.cuts)),
        duration_s=max(p.duration_s for p in parts),
        objects=sum(p.objects for p in parts),
        objects_skipped=tuple(sorted(total_rejected(parts, "objects_skipped").items())),
    )


FILES_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("fingerprint", pa.string()),
        ("size_bytes", pa.int64()),
        ("kind", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("frames_total", pa.int64()),
        ("frames_sampled", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)


def files_to_arrow(results: list[FileResult]) -> pa.Table:
    """Convert file results to a table with `FILES_SCHEMA`."""
    cols = {name: [getattr(r, name) for r in results] for name in FILES_SCHEMA.names}
    return pa.table(cols, schema=FILES_SCHEMA)


def files_from_arrow(table: pa.Table) -> list[FileResult]:
    """Convert a `FILES_SCHEMA` table back to file results."""
    names = [n for n in FILES_SCHEMA.names if n in table.column_names]
    rows = table.select(names).to_pylist()
    return [FileResult(**row) for row in rows]


SHOTS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("fingerprint", pa.string()),
        ("shot", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("first_frame", pa.int64()),
        ("frames", pa.int64()),
    ]
)


def shots_to_arrow(results: list[FileResult]) -> pa.Table:
    """The shot table of the videos whose cuts were looked for: one row per shot.

    A shot runs from its first frame to the next shot's (the last one to the end of the video,
    `duration_s`); `frames` counts the frames between (the last from `frames_total`).
    """
    cols: dict[str, list[Any]] = {name: [] for name in SHOTS_SCHEMA.names}
    for r in results:
        if not r.shots_detected or r.status != "ok":
            continue
        starts = [(0, 0.0), *r.cuts]
        ends = [*r.cuts, (max(r.frames_total, starts[-1][0] + 1), max(r.duration_s, starts[-1][1]))]
        for shot, ((first, start), (stop, end)) in enumerate(zip(starts, ends, strict=True)):
            for name, value in (
                ("key", r.key),
                ("fingerprint", r.fingerprint),
                ("shot", shot),
                ("start_s", start),
                ("end_s", end),
                ("first_frame", first),
                ("frames", stop - first),
            ):
                cols[name].append(value)
    return pa.table(cols, schema=SHOTS_SCHEMA)


# Per-frame metadata columns shared by decoded frames and embedded candidates.
META_COLUMNS: dict[str, np.dtype] = {
    "frame_index": np.dtype(np.int64),
    "pts_seconds": np.dtype(np.float64),
    "width": np.dtype(np.int32),
    "height": np.dtype(np.int32),
    "brightness": np.dtype(np.float32),
    "contrast": np.dtype(np.float32),
    "sharpness": np.dtype(np.float32),
}
STRING_COLUMNS = ("sample_id", "key", "fingerprint", "content_hash")


@dataclass
class SampleColumns:
    """Column-oriented per-frame metadata; base of `FrameBatch` and `Candidates`.

    Attributes:
        sample_id: Stable ids (`sample_id_for`).
        key: Source key of the frame's file.
        fingerprint: Fingerprint of the frame's file.
        content_hash: Hash of the decoded pixels at model size, for exact duplicates.
        frame_index: Frame number in presentation order (0 for an image).
        pts_seconds: Presentation time in seconds (0.0 for an image).
        width: Width of the full-size frame, after rotation.
        height: Height of the full-size frame, after rotation.
        brightness: Mean luma in [0, 1].
        contrast: Standard deviation of luma in [0, 1].
        sharpness: Variance of the Laplacian of luma (on the model-size frame).
    """

    sample_id: np.ndarray
    key: np.ndarray
    fingerprint: np.ndarray
    content_hash: np.ndarray
    frame_index: np.ndarray
    pts_seconds: np.ndarray
    width: np.ndarray
    height: np.ndarray
    brightness: np.ndarray
    contrast: np.ndarray
    sharpness: np.ndarray

    def __len__(self) -> int:
        return len(self.sample_id)

    def meta_dict(self) -> dict[str, np.ndarray]:
        """The metadata columns by name (no pixels, no embeddings)."""
        return {name: getattr(self, name) for name in (*STRING_COLUMNS, *META_COLUMNS)}

    @classmethod
    def empty_meta(cls) -> dict[str, np.ndarray]:
        """Empty metadata columns with the right dtypes."""
        cols: dict[str, np.ndarray] = {name: np.array([], dtype=object) for name in STRING_COLUMNS}
        cols.update({name: np.array([], dtype=dt) for name, dt in META_COLUMNS.items()})
        return cols


@dataclass
class FrameBatch(SampleColumns):
    """Decoded frames at model input size, with their metadata.

    Attributes:
        pixels: uint8 array (N, H, W, 3), RGB, at the model's input size.
    """

    pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0, 3), np.uint8))


@dataclass
class Candidates(SampleColumns):
    """Embedded frames: the rows of the datapool's `samples` table.

    Attributes:
        embedding: float16 array (N, D), L2-normalised.
        run_id: The run that produced each row (empty string before commit).
    """

    embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    run_id: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    @classmethod
    def empty(cls, dim: int = 0) -> Candidates:
        """No candidates, with embeddings of width `dim`."""
        return cls(
            **cls.empty_meta(),
            embedding=np.zeros((0, dim), np.float16),
            run_id=np.array([], dtype=object),
        )

    @classmethod
    def from_frames(
        cls, frames: SampleColumns, embedding: np.ndarray, run_id: str = ""
    ) -> Candidates:
        """Attach embeddings (N, D) to the metadata of decoded frames."""
        if len(embedding) != len(frames):
            raise ValueError(f"{len(embedding)} embeddings for {len(frames)} frames")
        return cls(
            **frames.meta_dict(),
            embedding=np.asarray(embedding, dtype=np.float16),
            run_id=np.full(len(frames), run_id, dtype=object),
        )

    @classmethod
    def concat(cls, parts: list[Candidates]) -> Candidates:
        """Concatenate candidates row-wise (all parts must share the embedding width)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})

    def take(self, indices: np.ndarray | list[int]) -> Candidates:
        """Rows at `indices`, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return Candidates(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def with_run_id(self, run_id: str) -> Candidates:
        """A copy whose rows all carry `run_id`."""
        return dataclasses.replace(self, run_id=np.full(len(self), run_id, dtype=object))

    def to_arrow(self) -> pa.Table:
        """Arrow table with `samples_schema(dim)`; embeddings as fixed-size lists of float16."""
        dim = self.embedding.shape[1] if self.embedding.ndim == 2 else 0
        arrays = []
        schema = samples_schema(dim)
        for f in schema:
            if f.name == "embedding":
                flat = pa.array(np.ascontiguousarray(self.embedding, np.float16).reshape(-1))
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, dim))
            else:
                arrays.append(pa.array(getattr(self, f.name), type=f.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Candidates:
        """Inverse of `to_arrow`."""
        if table.num_rows == 0:
            dim = (
                table.schema.field("embedding").type.list_size
                if "embedding" in table.schema.names
                else 0
            )
            return cls.empty(max(dim, 0))
        cols: dict[str, np.ndarray] = {}
        for name in STRING_COLUMNS + ("run_id",):
            cols[name] = np.array(table.column(name).to_pylist(), dtype=object)
        for name, dt in META_COLUMNS.items():
            cols[name] = table.column(name).to_numpy().astype(dt, copy=False)
        emb = table.column("embedding").combine_chunks()
        dim = emb.type.list_size
        values = emb.values.to_numpy(zero_copy_only=False).astype(np.float16, copy=False)
        cols["embedding"] = values.reshape(-1, dim)
        return cls(**cols)


def samples_schema(dim: int) -> pa.Schema:
    """Schema of the datapool's `samples` table for embeddings of width `dim`."""
    fields = [(name, pa.string()) for name in STRING_COLUMNS]
    fields += [(name, pa.from_numpy_dtype(dt)) for name, dt in META_COLUMNS.items()]
    fields += [("embedding", pa.list_(pa.float16(), dim)), ("run_id", pa.string())]
    return pa.schema(fields)


@dataclass(frozen=True)
class ModelRecord:
    """The embedding model a pool was built with.

    Attributes:
        name: Registry name, e.g. `resnet18`.
        weights: Weights fingerprint: `torchvision:<enum member>`, `none:seed=<seed>`,
            `checkpoint:<sha256 prefix>` or `pretrained:<sha256 prefix>` (a timm or open_clip
            model's cached weights file).
        input_size: Square input size in pixels.
        dim: Width of the embedding.
        preprocess: How frames become the model's input (resize, mean, std, the model's own
            interpolation), for `timm:` and `open_clip:` models; None for torchvision models,
            whose preprocessing is implied by the name (ImageNet mean/std): pools written before
            this field existed load with None and compare equal to a run of the same model.
    """

    name: str
    weights: str
    input_size: int
    dim: int
    preprocess: str | None = None

    def describe(self) -> str:
        """Human-readable one-liner."""
        pre = f", {self.preprocess}" if self.preprocess else ""
        return f"{self.name} ({self.weights}, {self.input_size}px, {self.dim}-d{pre})"


@dataclass(frozen=True)
class Pick:
    """One selected sample and why it was picked.

    Attributes:
        sample_id: The candidate's sample id.
        index: Row of the candidate in the run's `Candidates`.
        distance: Distance to the nearest dataset or already-picked sample when it was picked
            (NaN when the strategy has no distance, e.g. random without embeddings).
        score: The combined strategy score at pick time.
        reason: Short text, e.g. `diversity: farthest from dataset (0.41)`.
    """

    sample_id: str
    index: int
    distance: float
    score: float
    reason: str


@dataclass(frozen=True)
class ClipPick:
    """A picked clip (`selection.unit: clip`): a time range of one video and its frames.

    Attributes:
        clip_id: The clip's stable id (`clips.clip_id_for`).
        key: The video's key.
        fingerprint: The video's fingerprint.
        start_s: Start of the range, in the video's presentation seconds.
        end_s: End of the range (exclusive; inf when the video's length is unknown).
        sample_ids: Its frames (each also a `Pick`), in time order.
        reason: Why it was picked.
    """

    clip_id: str
    key: str
    fingerprint: str
    start_s: float
    end_s: float
    sample_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Selection:
    """The outcome of the select stage.

    Attributes:
        picks: Picked samples in pick order.
        n_candidates: Candidates considered (after deduplication and thresholds).
        n_removed_duplicates: Candidates removed as exact or near duplicates.
        n_removed_thresholds: Candidates removed by metadata thresholds.
        coverage_before: Max over candidates of the distance to the nearest dataset sample
            before this run (inf when the dataset is empty).
        coverage_after: The same, after adding the picks.
        mean_pick_distance: Mean distance of the picks to the dataset as it was before the run.
        mean_random_distance: Mean distance to the dataset of a same-size random pick from the
            same candidates (seeded): the baseline the picks should beat.
        stop_reason: Why selection stopped (`n_samples`, `proportion`, `min_distance`,
            `exhausted`).
        delta: Ball radius δ of a coverage strategy (chosen or given); None without one.
        clips: The picked clips with `unit: clip` (their frames are the picks; the counts and
            measures above are of clips), else empty.
        objects: The picked objects with `unit: object` (their frames, each once, are the
            picks; the counts and measures above are of objects), else empty.
    """

    picks: tuple[Pick, ...]
    n_candidates: int
    n_removed_duplicates: int = 0
    n_removed_thresholds: int = 0
    coverage_before: float = float("inf")
    coverage_after: float = float("inf")
    mean_pick_distance: float = float("nan")
    mean_random_distance: float = float("nan")
    stop_reason: str = "exhausted"
    delta: float | None = None
    clips: tuple[ClipPick, ...] = ()
    objects: tuple[ObjectPick, ...] = ()

    @property
    def sample_ids(self) -> list[str]:
        """Ids of the picks, in pick order."""
        return [p.sample_id for p in self.picks]

    @property
    def indices(self) -> np.ndarray:
        """Candidate rows of the picks, in pick order."""
        return np.array([p.index for p in self.picks], dtype=np.int64)


@dataclass(frozen=True)
class TagRecord:
    """A named, versioned selection: one row of the datapool's `tags` table.

    Attributes:
        name: Tag name, unique in the pool.
        parent: Name of the previous tag (None for the first).
        run_id: The run that created it.
        created: ISO-8601 UTC time of the commit.
        parameters: The run's parameters as JSON text (credentials never included).
        counts: Counts of the run as JSON text (files new/corrupt/skipped, candidates, selected).
        sample_ids: Members of the tag.
        coverage_before: Coverage radius before the run.
        coverage_after: Coverage radius after the run.
    """

    name: str
    parent: str | None
    run_id: str
    created: str
    parameters: str
    counts: str
    sample_ids: tuple[str, ...]
    coverage_before: float = float("nan")
    coverage_after: float = float("nan")


TAGS_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("parent", pa.string()),
        ("run_id", pa.string()),
        ("created", pa.string()),
        ("parameters", pa.string()),
        ("counts", pa.string()),
        ("sample_ids", pa.list_(pa.string())),
        ("coverage_before", pa.float64()),
        ("coverage_after", pa.float64()),
    ]
)


def tags_to_arrow(tags: list[TagRecord]) -> pa.Table:
    """Convert tags to a table with `TAGS_SCHEMA`."""
    cols = {name: [getattr(t, name) for t in tags] for name in TAGS_SCHEMA.names}
    cols["sample_ids"] = [list(t.sample_ids) for t in tags]
    return pa.table(cols, schema=TAGS_SCHEMA)


def tags_from_arrow(table: pa.Table) -> list[TagRecord]:
    """Convert a `TAGS_SCHEMA` table back to tags."""
    rows = table.select(TAGS_SCHEMA.names).to_pylist()
    return [TagRecord(**{**row, "sample_ids": tuple(row["sample_ids"] or ())}) for row in rows]


# -- objects ------------------------------------------------------------------------------------

OBJECT_STRING_COLUMNS = ("object_id", "sample_id", "key", "fingerprint", "label")
OBJECT_NUMERIC_COLUMNS: dict[str, np.dtype] = {
    "frame_index": np.dtype(np.int64),
    "pts_seconds": np.dtype(np.float64),
    "x": np.dtype(np.float32),
    "y": np.dtype(np.float32),
    "w": np.dtype(np.float32),
    "h": np.dtype(np.float32),
    "score": np.dtype(np.float32),
}


@dataclass
class ObjectRows:
    """Objects (boxes on frames) with their crops' embeddings: rows of the pool's `objects` table.

    Attributes:
        object_id: Stable ids (`objects.object_id_for`: file, fingerprint, frame, pixel box).
        sample_id: The parent frame's sample id (a row of `samples`).
        key: Source key of the file.
        fingerprint: Fingerprint of the file.
        label: Predicted class name.
        frame_index: The parent frame's index.
        pts_seconds: The parent frame's presentation time.
        x: Left edge in pixels of the full-size frame (after rotation), clipped to the frame.
        y: Top edge, likewise.
        w: Width in pixels (after clipping).
        h: Height in pixels (after clipping).
        score: Detector confidence (NaN when the predictions have none).
        probabilities: Object array: each row's class probabilities (float32 array, possibly
            empty), in the order of the predictions' classes.
        embedding: float16 (N, D) L2-normalised embeddings of the crops; (N, 0) before the model.
        run_id: The run that produced each row (empty string before commit).
    """

    object_id: np.ndarray
    sample_id: np.ndarray
    key: np.ndarray
    fingerprint: np.ndarray
    label: np.ndarray
    frame_index: np.ndarray
    pts_seconds: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    h: np.ndarray
    score: np.ndarray
    probabilities: np.ndarray
    embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    run_id: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    def __len__(self) -> int:
        return len(self.object_id)

    @classmethod
    def empty(cls, dim: int = 0) -> ObjectRows:
        """No objects, with embeddings of width `dim`."""
        cols: dict[str, Any] = {n: np.array([], dtype=object) for n in OBJECT_STRING_COLUMNS}
        cols.update({n: np.array([], dtype=dt) for n, dt in OBJECT_NUMERIC_COLUMNS.items()})
        return cls(
            **cols,
            probabilities=np.array([], dtype=object),
            embedding=np.zeros((0, dim), np.float16),
            run_id=np.array([], dtype=object),
        )

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> ObjectRows:
        """Objects from dicts holding every column but `embedding` and `run_id`."""
        if not rows:
            return cls.empty()
        cols: dict[str, Any] = {
            n: np.array([r[n] for r in rows], dtype=object) for n in OBJECT_STRING_COLUMNS
        }
        cols.update(
            {
                n: np.array([r[n] for r in rows], dtype=dt)
                for n, dt in OBJECT_NUMERIC_COLUMNS.items()
            }
        )
        probs = np.empty(len(rows), dtype=object)
        probs[:] = [np.asarray(r["probabilities"], np.float32) for r in rows]
        return cls(
            **cols,
            probabilities=probs,
            embedding=np.zeros((len(rows), 0), np.float16),
            run_id=np.full(len(rows), "", dtype=object),
        )

    def with_embedding(self, embedding: np.ndarray) -> ObjectRows:
        """A copy carrying these embeddings (N, D)."""
        if len(embedding) != len(self):
            raise ValueError(f"{len(embedding)} embeddings for {len(self)} objects")
        return dataclasses.replace(self, embedding=np.asarray(embedding, np.float16))

    def with_run_id(self, run_id: str) -> ObjectRows:
        """A copy whose rows all carry `run_id`."""
        return dataclasses.replace(self, run_id=np.full(len(self), run_id, dtype=object))

    def take(self, indices: np.ndarray | list[int] | slice) -> ObjectRows:
        """Rows at `indices` (or a slice), in that order."""
        idx = indices if isinstance(indices, slice) else np.asarray(indices, dtype=np.int64)
        return ObjectRows(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def on_frames(self, sample_ids: Iterable[str], *, inside: bool = True) -> ObjectRows:
        """The objects whose frame is among `sample_ids` (`inside=False`: is not), in order."""
        ids = set(sample_ids)
        return self.take(np.flatnonzero([(s in ids) == inside for s in self.sample_id]))

    @classmethod
    def concat(cls, parts: list[ObjectRows]) -> ObjectRows:
        """Concatenate row-wise (all parts must share the embedding width)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        out: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(cls):
            if f.name == "probabilities":
                probs = np.empty(sum(len(p) for p in parts), dtype=object)
                probs[:] = [v for p in parts for v in p.probabilities]
                out[f.name] = probs
            else:
                out[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
        return cls(**out)

    def boxes(self) -> np.ndarray:
        """float32 (N, 4): x, y, w, h in pixels."""
        return np.stack([self.x, self.y, self.w, self.h], axis=1).astype(np.float32)

    def to_arrow(self) -> pa.Table:
        """Arrow table with `objects_schema(dim)`."""
        dim = self.embedding.shape[1] if self.embedding.ndim == 2 else 0
        schema = objects_schema(dim)
        arrays = []
        for f in schema:
            if f.name == "embedding":
                flat = pa.array(np.ascontiguousarray(self.embedding, np.float16).reshape(-1))
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, dim))
            elif f.name == "probabilities":
                arrays.append(
                    pa.array([np.asarray(p).tolist() for p in self.probabilities], f.type)
                )
            else:
                arrays.append(pa.array(getattr(self, f.name), type=f.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> ObjectRows:
        """Inverse of `to_arrow`."""
        dim = table.schema.field("embedding").type.list_size if table.num_columns else 0
        if table.num_rows == 0:
            return cls.empty(max(dim, 0))
        cols: dict[str, Any] = {
            n: np.array(table.column(n).to_pylist(), dtype=object)
            for n in (*OBJECT_STRING_COLUMNS, "run_id")
        }
        for name, dt in OBJECT_NUMERIC_COLUMNS.items():
            cols[name] = table.column(name).to_numpy().astype(dt, copy=False)
        probs = np.empty(table.num_rows, dtype=object)
        probs[:] = [
            np.asarray(v or [], np.float32) for v in table.column("probabilities").to_pylist()
        ]
        emb = table.column("embedding").combine_chunks()
        values = emb.values.to_numpy(zero_copy_only=False).astype(np.float16, copy=False)
        return cls(**cols, probabilities=probs, embedding=values.reshape(-1, dim))


def objects_schema(dim: int) -> pa.Schema:
    """Schema of the datapool's `objects` table for embeddings of width `dim`."""
    fields = [(name, pa.string()) for name in OBJECT_STRING_COLUMNS]
    fields += [(name, pa.from_numpy_dtype(dt)) for name, dt in OBJECT_NUMERIC_COLUMNS.items()]
    fields += [
        ("probabilities", pa.list_(pa.float32())),
        ("embedding", pa.list_(pa.float16(), dim)),
        ("run_id", pa.string()),
    ]
    return pa.schema(fields)


@dataclass(frozen=True)
class ObjectPick:
    """A picked object (`selection.unit: object`): a box on a frame, and why.

    Attributes:
        object_id: The object's id.
        sample_id: Its frame's sample id (the frame is the pick that gets labelled).
        key: The file.
        frame_index: The frame.
        box: (x, y, w, h) in pixels of the full-size frame.
        label: Predicted class.
        score: Detector confidence (NaN when unknown).
        reason: Why it was picked.
    """

    object_id: str
    sample_id: str
    key: str
    frame_index: int
    box: tuple[float, float, float, float]
    label: str
    score: float
    reason: str

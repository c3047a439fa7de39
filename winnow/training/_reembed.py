"""Re-embed a pool with another model: plan over its samples, embed shards, one switching commit.

Re-embedding is a run like any other. The plan groups the pool's samples by file into shards
(following the runs that processed the files, so later runs never reshuffle earlier shards)
whose id is a hash of each file's key, fingerprint and frame indices; the plan hash names the
new model. Every finished shard is staged (`staging.embed_and_stage`, the loop curate's decode
step runs too), so a killed re-embed resumes with the shards it finished, and a re-embed that
lost a race to a curate run re-plans from the newer version and reuses every shard whose files
did not change. The commit starts a fresh samples table (`replace_samples`) holding every
re-embedded sample and records the new model, keeping files and tags; older versions stay
readable. A curate run still on the old model then stops with `ModelMismatch`, or, if it loaded
the pool before the switch, loses the commit race with `PoolConflict`.

Samples whose file vanished or changed since it was embedded, or whose frame cannot be found
again, get no new embedding and leave the samples table (they are counted as dropped); a changed
file is reprocessed as such by the next curate run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from winnow.datapool import Datapool, PoolSnapshot, plan_hash
from winnow.embedding import Embedder, default_decode_workers
from winnow.engine import ShardResult
from winnow.objects import Box, CropSettings, ObjectOptions
from winnow.records import (
    Candidates,
    FileRef,
    FileResult,
    ModelRecord,
    ObjectRows,
    Shard,
    kind_of,
)
from winnow.storage import ObjectStore
from winnow.training._frames import file_refs, read_frames

_PLAN_KIND = {"reembed": "frames-by-key-and-index"}


@dataclass
class ReembedPlan:
    """The work of moving a pool to a new model.

    Attributes:
        base: The snapshot the re-embed starts from (its commit creates base + 1).
        model: The new model.
        plan_hash: Names the staged shards of this model (`staging/<plan-hash>/`).
        shards: Groups of files whose samples are embedded and staged together.
        samples: Every sample to re-embed (old embeddings; metadata is kept as is).
        superseded: Samples of an earlier processing of a file that was reprocessed since
            (their content is gone from the source); they are dropped.
        rows: Shard id -> rows of `samples` in that shard.
        crops: How the files' boxes (the pool's objects, attached to the shards' files) are
            cut again; None when the pool has no objects.
    """

    base: PoolSnapshot
    model: ModelRecord
    plan_hash: str
    shards: tuple[Shard, ...]
    samples: Candidates
    superseded: int = 0
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    crops: CropSettings | None = None


def plan_reembed(snapshot: PoolSnapshot, model: ModelRecord, *, shard_files: int) -> ReembedPlan:
    """Plan the re-embedding of every sample of a pool with `model`.

    Args:
        snapshot: The pool as it is now.
        model: The new model's record.
        shard_files: Files per shard.

    Returns:
        The plan (no shards when the pool is empty).
    """
    samples = snapshot.samples()
    refs = file_refs(snapshot, samples.key.tolist())
    current = np.array(
        [
            str(k) in refs and refs[str(k)].fingerprint == str(f)
            for k, f in zip(samples.key, samples.fingerprint, strict=True)
        ],
        dtype=bool,
    )
    superseded = int((~current).sum())
    samples = samples.take(np.flatnonzero(current))
    boxes = _pool_boxes(snapshot.objects(samples.sample_id))
    crops = _crop_settings(snapshot) if boxes else None
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(samples.key):
        by_key.setdefault(str(key), []).append(i)
    shards, rows = [], {}
    for chunk in _chunks_by_run(snapshot, by_key, shard_files):
        files = tuple(
            replace(
                refs.get(k)
                or FileRef(key=k, fingerprint="", size_bytes=0, kind=kind_of(k) or "image"),
                boxes=boxes.get(k, ()),
            )
            for k in chunk
        )
        h = hashlib.blake2b(digest_size=10)
        for ref in files:
            indices = sorted(int(samples.frame_index[i]) for i in by_key[ref.key])
            objects = f"\0{len(ref.boxes)}" if ref.boxes else ""  # the same boxes: same objects
            h.update(f"{ref.key}\0{ref.fingerprint}\0{indices}{objects}\n".encode())
        shard = Shard(index=len(shards), shard_id=h.hexdigest(), files=files)
        shards.append(shard)
        rows[shard.shard_id] = np.array([i for k in chunk for i in by_key[k]], dtype=np.int64)
    return ReembedPlan(
        base=snapshot,
        model=model,
        plan_hash=plan_hash(model, _plan_kind(crops)),
        shards=tuple(shards),
        samples=samples,
        superseded=superseded,
        rows=rows,
        crops=crops,
    )


def _plan_kind(crops: CropSettings | None) -> dict:
    return _PLAN_KIND if crops is None else {**_PLAN_KIND, "objects": asdict(crops)}


def _pool_boxes(objects: ObjectRows) -> dict[str, tuple[Box, ...]]:
    """The pool's objects as boxes (pixels, by frame index) per file, to be cut again."""
    out: dict[str, list[Box]] = {}
    for i in range(len(objects)):
        out.setdefault(str(objects.key[i]), []).append(
            Box(
                frame_index=int(objects.frame_index[i]),
                pts_seconds=None,
                x=float(objects.x[i]),
                y=float(objects.y[i]),
                w=float(objects.w[i]),
                h=float(objects.h[i]),
                normalised=False,
                label=str(objects.label[i]),
                score=float(objects.score[i]),
                probabilities=tuple(objects.probabilities[i].tolist()),
            )
        )
    return {k: tuple(v) for k, v in out.items()}


def _crop_settings(snapshot: PoolSnapshot) -> CropSettings:
    """The crop settings of the pool's latest tag made with objects (defaults without one)."""
    for tag in reversed(snapshot.tags):
        objects = json.loads(tag.parameters or "{}").get("objects") or {}
        if objects.get("predictions") or objects.get("format") == "yolo":
            return ObjectOptions.model_validate(objects).crops() or CropSettings()
    return CropSettings()


def _chunks_by_run(
    snapshot: PoolSnapshot, by_key: dict[str, list[int]], shard_files: int
) -> list[list[str]]:
    """Keys in shards that follow the runs that processed them (in commit order, then by key).

    Files a later run adds never reshuffle the shards of earlier runs, so a re-embed that lost
    a race to a curate run reuses every shard it staged.
    """
    run_of: dict[str, tuple[int, str]] = {}
    keys = snapshot.files.column("key").to_pylist()
    runs = snapshot.files.column("run_id").to_pylist()
    order: dict[str, int] = {}
    for key, run in zip(keys, runs, strict=True):
        order.setdefault(run, len(order))
        run_of[key] = (order[run], run)  # the latest processing of the file wins
    groups: dict[int, list[str]] = {}
    for key in by_key:
        groups.setdefault(run_of.get(key, (len(order), ""))[0], []).append(key)
    chunks = []
    for _, group in sorted(groups.items()):
        group.sort()
        chunks += [group[i : i + shard_files] for i in range(0, len(group), shard_files)]
    return chunks


def embed_reembed_shards(
    plan: ReembedPlan,
    shards: Sequence[Shard],
    *,
    source: ObjectStore,
    embedder: Embedder,
    workers: int | None = 1,
) -> Iterator[ShardResult]:
    """Read every sample's frame of each shard again and embed it with the new model.

    Args:
        plan: The plan.
        shards: The shards to do (those not staged yet), in order.
        source: Where the files live (only read).
        embedder: The new model.
        workers: Files read in parallel; None picks `embedding.default_decode_workers`.

    Yields:
        One `engine.ShardResult` per shard: its samples with new embeddings (their metadata
        and run ids kept), and one `FileResult` per file (`ok`, or `skipped` with the reason
        its samples were dropped).
    """
    dim = embedder.record.dim
    workers = workers or default_decode_workers(embedder.device)
    for shard in shards:
        sub = plan.samples.take(plan.rows[shard.shard_id])
        refs = {f.key: f for f in shard.files}
        parts: list[Candidates] = []
        results: list[FileResult] = []
        objects: list[ObjectRows] = []
        # Frames wait here until a full batch is ready: one model call serves many files.
        waiting: list[tuple[Candidates, np.ndarray]] = []
        waiting_frames = 0

        for got in read_frames(
            source,
            sub,
            files=refs,
            size=embedder.input_size,
            workers=workers,
            check_fingerprints=True,
            crops=plan.crops,
        ):
            ref = refs[got.key]
            if got.pixels is None:
                results.append(FileResult.for_ref(ref, status="skipped", error=got.error))
                continue
            if got.objects is not None:
                objects.append(got.objects.rows.with_embedding(embedder.embed(got.objects.pixels)))
            waiting.append((sub.take(got.rows), got.pixels))
            waiting_frames += len(got.pixels)
            results.append(FileResult.for_ref(ref, status="ok", frames_sampled=len(got.rows)))
            if waiting_frames >= embedder.batch_size:
                parts.extend(_embed_waiting(embedder, waiting))
                waiting, waiting_frames = [], 0
        parts.extend(_embed_waiting(embedder, waiting))
        candidates = Candidates.concat(parts) if parts else Candidates.empty(dim)
        found = ObjectRows.concat(objects) if objects else ObjectRows.empty(dim)
        yield ShardResult(shard=shard, candidates=candidates, files=results, objects=found)


def _embed_waiting(embedder: Embedder, waiting: list[tuple[Candidates, np.ndarray]]) -> list:
    """Embed the waiting files' frames in one go; their samples with the new embeddings."""
    if not waiting:
        return []
    emb = embedder.embed(np.concatenate([pixels for _, pixels in waiting]))
    out, offset = [], 0
    for rows, pixels in waiting:
        out.append(replace(rows, embedding=emb[offset : offset + len(pixels)]))
        offset += len(pixels)
    return out


def commit_reembed(
    pool: Datapool,
    plan: ReembedPlan,
    *,
    run_id: str,
    samples: Candidates,
    objects: ObjectRows | None = None,
) -> int:
    """Switch the pool to the new model in one atomic commit, then drop the staged shards.

    Args:
        pool: The datapool.
        plan: The plan the samples were embedded under (its base is the commit's parent).
        run_id: The re-embed run's id.
        samples: Every re-embedded sample (the new samples table).
        objects: Every re-embedded object (the new objects table; the pool's objects whose
            frames were dropped are dropped with them).

    Returns:
        The new version.

    Raises:
        PoolConflict: If another run committed since the plan's base was loaded; nothing was
            committed and the staged shards remain for the retry.
    """
    version = pool.commit(
        plan.base,
        run_id=run_id,
        files=[],
        samples=samples,
        tag=None,
        model=plan.model,
        replace_samples=True,
        objects=objects,
    )
    pool.clear_staged(plan.plan_hash, [s.shard_id for s in plan.shards])
    return version

"""Search a pool's samples by query embeddings (text, image, or a sample of the pool).

    queries (Q, D) ──► Searcher.search(queries, k) ──► rows, distances ──► Hit rows
                        └ ExactSearch: blockwise matmul over the pool's stored embeddings

The distance is the one selection uses: Euclidean between L2-normalised embeddings (0 = same
direction, 2 = opposite), to the nearest of the queries. `ExactSearch` scans every embedding in
blocks of rows (O(block) extra memory); an approximate index (issue #24) replaces it by
implementing `Searcher` over the same rows, and `search_pool` takes it through `searcher`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from winnow.datapool import PoolSnapshot
from winnow.errors import ConfigError
from winnow.outputs import export_name
from winnow.records import Candidates
from winnow.storage import S3Options, open_store

DEFAULT_BLOCK_ROWS = 65_536


class Searcher(Protocol):
    """Finds the rows nearest to query embeddings (exact scan today, an index later)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the k nearest embeddings and their distances, nearest first."""
        ...


@dataclass(frozen=True)
class ExactSearch:
    """Exact nearest rows by a blockwise scan of the embeddings.

    Attributes:
        embeddings: (N, D) L2-normalised rows (float16 as stored, or float32).
        block_rows: Rows scored per matmul (bounds the extra memory).
    """

    embeddings: np.ndarray
    block_rows: int = DEFAULT_BLOCK_ROWS

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k rows nearest to any of the queries.

        Args:
            queries: (Q, D) L2-normalised query embeddings.
            k: Rows wanted (fewer when the pool holds fewer).

        Returns:
            (rows, distances): int64 (k,) and float32 (k,), nearest first; ties by row.
        """
        q = np.asarray(queries, np.float32)
        n = len(self.embeddings)
        k = min(k, n)
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        best_rows = np.zeros(0, np.int64)
        best_sim = np.zeros(0, np.float32)
        # Algorithm: for unit vectors d² = 2 - 2·cos, so the nearest rows are those of the
        # largest cosine to any query; keep the running top k across blocks.
        for start in range(0, n, self.block_rows):
            block = np.asarray(self.embeddings[start : start + self.block_rows], np.float32)
            sim = (block @ q.T).max(axis=1)
            rows = np.arange(start, start + len(block), dtype=np.int64)
            sim = np.concatenate([best_sim, sim])
            rows = np.concatenate([best_rows, rows])
            keep = np.argpartition(-sim, k - 1)[:k] if len(sim) > k else np.arange(len(sim))
            best_sim, best_rows = sim[keep], rows[keep]
        order = np.lexsort((best_rows, -best_sim))
        sim = np.clip(best_sim[order], -1.0, 1.0)
        return best_rows[order], np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0)).astype(np.float32)


@dataclass(frozen=True)
class Hit:
    """One sample found by a search.

    Attributes:
        rank: 1 for the nearest.
        sample_id: The sample.
        key: Its file.
        frame_index: Its frame (0 for an image).
        distance: Euclidean distance between unit embeddings to the nearest query (0..2).
        tag: The first tag holding the sample, or None when no tag does.
        link: The exported frame PNG (tagged video frames), the image in its source, or the
            video in its source with a `#t=<seconds>` fragment; None when the source is unknown.
    """

    rank: int
    sample_id: str
    key: str
    frame_index: int
    distance: float
    tag: str | None
    link: str | None


def search_pool(
    snapshot: PoolSnapshot,
    queries: np.ndarray,
    *,
    k: int = 20,
    tag: str | None = None,
    output_url: str | None = None,
    searcher: Callable[[np.ndarray], Searcher] = ExactSearch,
) -> list[Hit]:
    """The pool's samples nearest to the queries (all samples, or one tag's members).

    Args:
        snapshot: The pool as of one version.
        queries: (Q, D) L2-normalised embeddings made with the pool's model.
        k: Samples wanted.
        tag: Search only this tag's members; None for every sample the pool embedded.
        output_url: The output's URL (where frame PNGs are), for links; None for no PNG links.
        searcher: Makes the searcher over the samples' embeddings (an index can stand in).

    Returns:
        The hits, nearest first.

    Raises:
        ConfigError: If k < 1, the queries' width differs from the pool's embeddings, or the
            pool is empty.
        NotFound: If there is no such tag.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    ids = list(snapshot.tag(tag).sample_ids) if tag is not None else None
    samples = snapshot.samples(ids)
    queries = np.atleast_2d(np.asarray(queries, np.float32))
    if len(samples) == 0:
        raise ConfigError(f"the datapool at {snapshot.store.url} holds no samples to search")
    if queries.shape[1] != samples.embedding.shape[1]:
        raise ConfigError(
            f"query embeddings are {queries.shape[1]}-d but the pool's are "
            f"{samples.embedding.shape[1]}-d: embed queries with the pool's model "
            f"({snapshot.model.describe() if snapshot.model else 'unknown'})"
        )
    if searcher is ExactSearch and tag is None:  # the pool's index, when it has a usable one
        from winnow import index as pool_index

        found = pool_index.open_index(snapshot)
        if found is not None:
            searcher = lambda _: pool_index.IndexSearcher(found, samples.sample_id)  # noqa: E731
    return _hits(snapshot, samples, *searcher(samples.embedding).search(queries, k), output_url)


def _hits(
    snapshot: PoolSnapshot,
    samples: Candidates,
    rows: np.ndarray,
    distances: np.ndarray,
    output_url: str | None,
) -> list[Hit]:
    tag_of: dict[str, str] = {}
    source_of_run: dict[str, str] = {}
    for t in snapshot.tags:
        for sid in t.sample_ids:
            tag_of.setdefault(sid, t.name)
        if source := json.loads(t.parameters or "{}").get("source"):
            source_of_run.setdefault(t.run_id, source)
    fallback = next(reversed(source_of_run.values()), None) if source_of_run else None
    files = snapshot.files
    keys = files.column("key").to_pylist()
    kinds = dict(zip(keys, files.column("kind").to_pylist(), strict=True))
    totals = dict(zip(keys, files.column("frames_total").to_pylist(), strict=True))
    hits = []
    for rank, (row, dist) in enumerate(zip(rows.tolist(), distances.tolist(), strict=True), 1):
        key = str(samples.key[row])
        sid = str(samples.sample_id[row])
        index = int(samples.frame_index[row])
        kind = kinds.get(key, "video")
        source = source_of_run.get(str(samples.run_id[row]), fallback)
        link = None
        if kind != "image" and sid in tag_of and output_url:
            link = f"{output_url.rstrip('/')}/{export_name(key, kind, index, totals.get(key, 1))}"
        elif source:
            link = f"{source.rstrip('/')}/{key}"
            if kind != "image":
                link += f"#t={float(samples.pts_seconds[row]):.3f}"
        hits.append(Hit(rank, sid, key, index, round(float(dist), 4), tag_of.get(sid), link))
    return hits


def sample_queries(snapshot: PoolSnapshot, keys: Sequence[str]) -> np.ndarray:
    """The stored embeddings of a pool's samples named by key (`key` or `key#frame`).

    A key alone stands for every sample of that file (its frames average out as queries of
    their own: each is one query).

    Raises:
        ConfigError: If a key names no sample of the pool.
    """
    samples = snapshot.samples()
    rows = []
    for wanted in keys:
        key, _, frame = wanted.partition("#")
        match = samples.key == key
        if frame:
            if not frame.isdigit():
                raise ConfigError(f"{wanted!r}: the frame after '#' must be a frame index")
            match &= samples.frame_index == int(frame)
        found = np.flatnonzero(match)
        if len(found) == 0:
            raise ConfigError(
                f"no sample of {wanted!r} in the datapool at {snapshot.store.url}: give a key "
                "the pool holds (`winnow export` lists them), optionally with '#<frame index>'"
            )
        rows.extend(found.tolist())
    return samples.embedding[np.array(rows)].astype(np.float32)


def query_embeddings(
    snapshot: PoolSnapshot,
    *,
    texts: Sequence[str] = (),
    images: Sequence[str] = (),
    keys: Sequence[str] = (),
    weights: str | None = None,
    s3: S3Options | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Query embeddings in the pool's space, from texts, image files and the pool's samples.

    Texts and images are embedded with the pool's model; samples give their stored embeddings.
    The model is rebuilt from the pool's record (`embedding.options_for_record`) and checked
    against it, so a query is never embedded by another model than the pool's.

    Args:
        snapshot: The pool.
        texts: Text queries (the model needs a text tower: `open_clip:` models).
        images: Paths or URLs of image files, decoded as a run decodes frames.
        keys: Keys of the pool's samples (`key` or `key#frame`), read, not embedded.
        weights: The pool's checkpoint (a path, URL or `pool:<model-id>`) when it was built
            from one; else its weights are found from its record.
        s3: Connection options for S3 images and weights.
        device: Where the model runs.

    Returns:
        (Q, D) float32 L2-normalised rows: texts, then images, then keys.

    Raises:
        ConfigError: If nothing is asked, the pool has no model yet, its model cannot be
            rebuilt here, it has no text tower for texts, or a key is unknown.
        WeightsUnavailable: If the model's pretrained weights are not cached here.
    """
    if not (texts or images or keys):
        raise ConfigError("give a query: a text, an image or a key of the pool")
    parts = []
    if texts or images:
        from winnow import embedding

        if snapshot.model is None:
            raise ConfigError(f"the datapool at {snapshot.store.url} has no model yet")
        options = embedding.options_for_record(
            snapshot.model, weights=weights, device=device, pool=snapshot.store, s3=s3
        )
        embedder = embedding.cached_embedder(options, pool=snapshot.store, s3=s3)
        if texts:
            parts.append(embedder.embed_texts(texts))
        if images:
            parts.append(_embed_images(images, embedder=embedder, s3=s3))
    if keys:
        parts.append(sample_queries(snapshot, keys))
    return np.concatenate([np.asarray(p, np.float32) for p in parts])


def _embed_images(images: Sequence[str], *, embedder, s3: S3Options | None) -> np.ndarray:  # noqa: ANN001
    from winnow.engine import embed_keys
    from winnow.media import FrameOptions

    rows = []
    for image in images:
        parent, _, name = image.rstrip("/").rpartition("/")
        store = open_store(parent or ".", s3)
        found = embed_keys([name], source=store, frames=FrameOptions(), embedder=embedder)
        if len(found) == 0:
            raise ConfigError(f"query image {image!r} could not be decoded")
        rows.append(found)
    return np.concatenate(rows)

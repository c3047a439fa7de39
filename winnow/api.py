"""Open a datapool in a notebook: tags, files, samples and embeddings as pandas and numpy.

    >>> import winnow
    >>> pool = winnow.open_pool("s3://bucket/.winnow", endpoint_url="http://127.0.0.1:9000")
    >>> pool.tags()                      # one row per tag
    >>> pool.members("run-0002")         # the tag's samples, with metadata
    >>> pool.dataset_embeddings()        # (n, dim) float32, the union of all tags
    >>> pool.at(3).files()               # the pool as of version 3
    >>> pool.similar(text="cyclists at night", k=10)   # search (CLIP-family pools for text)

Everything is read-only: nothing here writes to the pool. Credentials come from the boto3
default chain (environment, profile, instance role), or from `options`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from winnow.datapool import Datapool, PoolSnapshot
from winnow.errors import NotFound
from winnow.storage import S3Options, open_store

if TYPE_CHECKING:
    import pandas as pd


def open_pool(
    output: str,
    *,
    version: int | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    options: S3Options | None = None,
) -> Pool:
    """Open the datapool of a curate output (the pool lives at `<output>/pool`).

    Args:
        output: The runs' `output` (local folder or `s3://bucket/prefix`), or the pool itself
            (a URL ending in `/pool`).
        version: A committed version to read; None for the latest.
        endpoint_url: S3-compatible endpoint (MinIO, …); None for AWS.
        region: AWS region; None for the boto3 default chain.
        profile: Named AWS profile; None for the default chain.
        options: Full S3 options instead of the three above.

    Returns:
        The pool at that version.

    Raises:
        NotFound: If `version` was never committed.
        PoolCorrupt: If the version's manifest or a part it names cannot be read.
    """
    options = options or S3Options(endpoint_url=endpoint_url, region=region, profile=profile)
    store = open_store(output.rstrip("/"), options)
    if not output.rstrip("/").endswith("/pool"):
        store = store.child("pool")
    return _load(Datapool(store), version)


def _versions(datapool: Datapool) -> list[int]:
    try:
        keys = [info.key for info in datapool.store.list("versions")]
    except NotFound:
        return []
    names = (k.rsplit("/", 1)[-1] for k in keys)
    return sorted(int(n[: -len(".json")]) for n in names if n.endswith(".json"))


def _load(datapool: Datapool, version: int | None) -> Pool:
    if version is not None and version not in (known := _versions(datapool)):
        raise NotFound(
            f"no version {version} in the datapool at {datapool.url} (versions: {known or 'none'})"
        )
    return Pool(datapool, datapool.load(version))


@dataclass(frozen=True)
class Pool:
    """A datapool opened for reading, as of one version (see `open_pool`)."""

    datapool: Datapool
    snapshot: PoolSnapshot

    def at(self, version: int | None) -> Pool:
        """The same pool as of `version` (None: the latest).

        Raises:
            NotFound: If `version` was never committed.
        """
        return _load(self.datapool, version)

    @property
    def version(self) -> int:
        """The version this object reads (0: nothing committed yet)."""
        return self.snapshot.version

    def versions(self) -> list[int]:
        """Every committed version, oldest first."""
        return _versions(self.datapool)

    def tags(self) -> pd.DataFrame:
        """One row per tag, oldest first: name, parent, run, creation time, size, coverage."""
        import pandas as pd

        rows = [
            {
                "name": t.name,
                "parent": t.parent,
                "run_id": t.run_id,
                "created": pd.Timestamp(t.created),
                "samples": len(t.sample_ids),
                "coverage_before": t.coverage_before,
                "coverage_after": t.coverage_after,
                **json.loads(t.counts or "{}"),
            }
            for t in self.snapshot.tags
        ]
        columns = ["name", "parent", "run_id", "created", "samples"]
        return pd.DataFrame(rows, columns=None if rows else columns)

    def files(self) -> pd.DataFrame:
        """Every processing of every file: key, fingerprint, status, error, frames, run id."""
        return self.snapshot.files.to_pandas()

    def samples(self, *, embeddings: bool = False) -> pd.DataFrame:
        """Every sample (candidate) the pool embedded, with metadata.

        Args:
            embeddings: Include the `embedding` column (one float16 array per row).
        """
        return _frame(self.snapshot.samples(), embeddings=embeddings)

    def members(self, tag: str, *, embeddings: bool = False) -> pd.DataFrame:
        """The samples of one tag, in pick order.

        Raises:
            NotFound: If there is no such tag.
        """
        ids = list(self.snapshot.tag(tag).sample_ids)
        frame = _frame(self.snapshot.samples(ids), embeddings=embeddings)
        order = {sid: i for i, sid in enumerate(ids)}
        frame = frame.sort_values("sample_id", key=lambda s: s.map(order))
        return frame.reset_index(drop=True)

    def objects(self, tag: str | None = None, *, embeddings: bool = False) -> pd.DataFrame:
        """Objects (boxes on frames, `objects.predictions`) with their parent frame.

        One row per object: its id, box (x, y, w, h in full-size pixels), label, score and
        class probabilities, and its frame: `sample_id`, `key`, `frame_index`, `pts_seconds`,
        plus the frame's `width` and `height` (`frame_width`, `frame_height`). Empty for pools
        without objects.

        Args:
            tag: Only the objects on this tag's frames (what labelling the tag labels).
            embeddings: Include the crops' `embedding` column.

        Raises:
            NotFound: If there is no such tag.
        """
        ids = list(self.snapshot.tag(tag).sample_ids) if tag is not None else None
        objects = self.snapshot.objects(ids).to_arrow()
        if not embeddings:
            objects = objects.drop_columns(["embedding"])
        import pandas as pd

        frame = objects.to_pandas()
        parents = self.snapshot.samples(frame["sample_id"].unique().tolist())
        sizes = pd.DataFrame(
            {
                "sample_id": parents.sample_id,
                "frame_width": parents.width,
                "frame_height": parents.height,
            }
        )
        return frame.merge(sizes, on="sample_id", how="left")

    def dataset(self, *, embeddings: bool = False) -> pd.DataFrame:
        """The samples of the dataset: the union of every tag's members."""
        return _frame(self.snapshot.dataset(), embeddings=embeddings)

    def dataset_embeddings(self) -> np.ndarray:
        """The dataset's embeddings as a float32 array of shape (n, dim), rows as `dataset()`."""
        return self.snapshot.dataset().embedding.astype(np.float32)

    def similar(
        self,
        *,
        text: str | Sequence[str] = (),
        image: str | Sequence[str] = (),
        key: str | Sequence[str] = (),
        k: int = 20,
        tag: str | None = None,
        weights: str | None = None,
        device: str = "auto",
    ) -> pd.DataFrame:
        """The samples nearest to text, image or sample queries (exact search).

        Texts and images are embedded with the pool's model (texts need a CLIP-family model,
        `open_clip:...`); keys (`key` or `key#frame`) use the embeddings the pool stores.
        Several queries: the distance of a sample is that to its nearest query.

        Args:
            text: Words to search for, e.g. "cyclists at night".
            image: Paths or URLs of query images.
            key: Keys of the pool's samples.
            k: Samples wanted.
            tag: Search only this tag's members.
            weights: The pool's checkpoint, when it was built from one.
            device: Where the model runs.

        Returns:
            One row per hit, nearest first: rank, sample_id, key, frame_index, distance (0..2,
            Euclidean between unit embeddings), tag, link.

        Raises:
            ConfigError: As `search.query_embeddings` and `search.search_pool`.
        """
        import pandas as pd

        from winnow import search

        def many(value: str | Sequence[str]) -> list[str]:
            return [value] if isinstance(value, str) else list(value)

        queries = search.query_embeddings(
            self.snapshot,
            texts=many(text),
            images=many(image),
            keys=many(key),
            weights=weights,
            s3=getattr(self.datapool.store, "options", None),
            device=device,
        )
        output = self.datapool.store.url.rstrip("/").removesuffix("/pool")
        hits = search.search_pool(self.snapshot, queries, k=k, tag=tag, output_url=output)
        columns = ["rank", "sample_id", "key", "frame_index", "distance", "tag", "link"]
        return pd.DataFrame([asdict(h) for h in hits], columns=columns)

    def parts(self) -> dict[str, list[str]]:
        """Table name → URLs of the Parquet parts this version consists of (for DuckDB etc.)."""
        manifest = self.snapshot.manifest
        if manifest is None:
            return {"files": [], "samples": [], "tags": []}
        store = self.datapool.store
        return {name: [store.url_for(k) for k in keys] for name, keys in manifest.parts.items()}


def _frame(samples, *, embeddings: bool) -> pd.DataFrame:  # noqa: ANN001 - Candidates
    table = samples.to_arrow()
    if not embeddings:
        table = table.drop_columns(["embedding"])
    return table.to_pandas()

"""The run's embedding model, loaded when first needed."""

from __future__ import annotations

import functools
from collections.abc import Callable

from prefect.logging import get_run_logger

from winnow import embedding
from winnow.storage import S3Options


def lazy_model(
    options: embedding.EmbeddingOptions, *, s3: S3Options | None
) -> Callable[[], embedding.Embedder]:
    """The run's model, built and its weights loaded on first use, then kept for the run.

    A run whose shards the GPU pool's children or Dask's workers embedded, and that has no
    query files to embed, never loads it. `s3` reaches `s3://` weights with the run's own
    endpoint and credentials.
    """

    @functools.cache
    def load() -> embedding.Embedder:
        embedder = embedding.load_embedder(options, s3=s3)
        get_run_logger().info("model %s on %s", embedder.record.describe(), embedder.device)
        return embedder

    return load

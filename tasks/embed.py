"""Tasks: check the run's embedding model against the pool, and load it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from winnow import embedding
from winnow.datapool import PoolSnapshot
from winnow.records import ModelRecord


@task(name="check-model", cache_policy=NO_CACHE)
def check_model(options: embedding.EmbeddingOptions, snapshot: PoolSnapshot) -> ModelRecord:
    """Refuse a model that differs from the one the pool was built with."""
    record = embedding.model_record(options)
    snapshot.check_model(record)
    return record


@task(name="load-model", cache_policy=NO_CACHE)
def load_model(options: embedding.EmbeddingOptions) -> embedding.Embedder:
    """Build the embedding model and load its weights (fails fast when they cannot be had)."""
    logger = get_run_logger()
    embedder = embedding.load_embedder(options)
    logger.info("model %s on %s", embedder.record.describe(), embedder.device)
    if options.weights == "none":
        logger.warning(
            "weights='none': the model has random weights, so selections are only as good as "
            "a random embedding; use weights='default' (pretrained) or a checkpoint for real data"
        )
    return embedder

"""Tasks: check the run's embedding model against the pool, and load it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from winnow import embedding
from winnow.datapool import PoolSnapshot
from winnow.records import ModelRecord
from winnow.storage import S3Options


@task(name="check-model", cache_policy=NO_CACHE)
def check_model(
    options: embedding.EmbeddingOptions, snapshot: PoolSnapshot, *, s3: S3Options | None
) -> ModelRecord:
    """Refuse a model that differs from the one the pool was built with.

    `s3` reaches `s3://` weights (a `pool:<model-id>` of an S3 pool is one): the run's own
    endpoint and credentials, not boto3's defaults.
    """
    record = embedding.model_record(options, s3=s3)
    snapshot.check_model(record)
    return record


@task(name="load-model", cache_policy=NO_CACHE)
def load_model(options: embedding.EmbeddingOptions, *, s3: S3Options | None) -> embedding.Embedder:
    """Build the embedding model and load its weights (fails fast when they cannot be had)."""
    logger = get_run_logger()
    embedder = embedding.load_embedder(options, s3=s3)
    logger.info("model %s on %s", embedder.record.describe(), embedder.device)
    if options.weights == "none":
        logger.warning(
            "weights='none': the model has random weights, so selections are only as good as "
            "a random embedding; use weights='default' (pretrained) or a checkpoint for real data"
        )
    return embedder

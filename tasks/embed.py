"""Tasks: check the run's embedding model against the pool, and load it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.params import CurateParams
from winnow import embedding
from winnow.datapool import PoolSnapshot
from winnow.errors import ModelMismatch
from winnow.records import ModelRecord


@task(name="check-model", cache_policy=NO_CACHE)
def check_model(params: CurateParams, snapshot: PoolSnapshot) -> ModelRecord:
    """Refuse a model that differs from the one the pool was built with."""
    record = embedding.model_record(params.embedding)
    if snapshot.model is not None and snapshot.model != record:
        raise ModelMismatch(
            f"the datapool at {snapshot.store.url} was built with {snapshot.model.describe()}, "
            f"this run asks for {record.describe()}: embeddings from different models cannot be "
            "compared. Use the pool's model settings, or a new output location for a new model."
        )
    return record


@task(name="load-model", cache_policy=NO_CACHE)
def load_model(params: CurateParams) -> embedding.Embedder:
    """Build the embedding model and load its weights (fails fast when they cannot be had)."""
    logger = get_run_logger()
    embedder = embedding.load_embedder(params.embedding)
    logger.info("model %s on %s", embedder.record.describe(), embedder.device)
    if params.embedding.weights == "none":
        logger.warning(
            "weights='none': the model has random weights, so selections are only as good as "
            "a random embedding; use weights='default' (pretrained) or a checkpoint for real data"
        )
    return embedder

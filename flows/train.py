"""The train-embedding flow: self-supervised (SimCLR) training on the frames of a pool's samples."""

from __future__ import annotations

from prefect import flow

from tasks.start import open_pool
from tasks.train import report_model, train_embedding
from winnow.params import StorageParams, documented_by
from winnow.training import PoolOutput, PoolSource, TrainOptions, TrainParams


@flow(
    name="train-embedding",
    description="Train a self-supervised embedding model on the frames of a datapool's samples.",
    log_prints=True,
)
@documented_by(TrainParams)
def train(
    output: PoolOutput,
    source: PoolSource = None,
    training: TrainOptions = TrainOptions(),  # noqa: B008 - pydantic models are immutable values here
    storage: StorageParams = StorageParams(),  # noqa: B008
) -> dict:
    """Train a self-supervised embedding model on the frames of a datapool's samples."""
    params = TrainParams(**locals())
    stores, _, _ = open_pool(params.output, params.source, params.storage)
    result = train_embedding(stores, params.training, params.storage)
    return report_model(result, output=params.output)

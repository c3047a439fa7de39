"""The train-embedding flow: self-supervised (SimCLR) training on the frames of a pool's samples."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tasks.connect import connect
from tasks.discover import load_pool
from tasks.train import train_embedding
from winnow.params import StorageParams, documented_by
from winnow.training import (
    PoolOutput,
    PoolSource,
    TrainOptions,
    TrainParams,
    TrainResult,
    recorded_source,
)


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
    stores = connect(params.source or params.output, params.output, params.storage)
    snapshot = load_pool(stores)
    source_url = recorded_source(snapshot.tags, params.source, pool_url=stores.pool.url)
    if source_url != stores.source.url:
        stores = connect(source_url, params.output, params.storage)
    result = train_embedding(stores, params.training, params.storage)
    _publish(result)
    card = result.card
    get_run_logger().info(
        "model %s: %d epochs, final loss %.4f; use it with embedding.weights='%s' "
        "(input_size %d), e.g. `winnow reembed --output %s --weights %s --input-size %d`",
        card.model_id,
        card.epochs,
        card.final_loss,
        card.weights,
        card.input_size,
        params.output,
        card.weights,
        card.input_size,
    )
    return {
        "model_id": card.model_id,
        "weights": card.weights,
        "url": card.url,
        "epochs": card.epochs,
        "final_loss": card.final_loss,
        "losses": card.losses,
        "resumed_from": result.resumed_from,
        "already_trained": result.already_trained,
        "samples": card.samples,
        "data_version": card.data_version,
        "input_size": card.input_size,
    }


def _publish(result: TrainResult) -> None:
    card = result.card
    lines = [
        f"## Model `{card.model_id}`",
        "",
        f"{card.method} on {card.backbone}, {card.input_size} px, {card.dim}-d; "
        f"{card.samples} samples of pool version {card.data_version}",
        "",
        f'Use it: `embedding.weights = "{card.weights}"` (checkpoint: {card.url})',
        "",
        "| epoch | loss |",
        "|---:|---:|",
        *(f"| {i} | {loss:.4f} |" for i, loss in enumerate(card.losses, start=1)),
    ]
    if result.resumed_from and not result.already_trained:
        lines += ["", f"Resumed after epoch {result.resumed_from} from the pool's checkpoint."]
    create_markdown_artifact("\n".join(lines), description="Winnow training summary")

"""Task: train a self-supervised embedding on the pool's frames, with per-epoch progress.

A retried attempt (a transient storage error, or a crashed worker's rerun) resumes from the last
epoch checkpoint in the pool's storage.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES, s3_options
from tasks.progress import Progress
from winnow import training
from winnow.params import StorageParams
from winnow.stores import Stores


@task(name="train-embedding", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def train_embedding(
    stores: Stores, options: training.TrainOptions, storage: StorageParams
) -> training.TrainResult:
    """Train (or resume, or find finished) a SimCLR model; log and show the loss per epoch."""
    logger = get_run_logger()
    progress = Progress(options.epochs, unit="epochs", description="train simclr")

    def on_epoch(report: training.EpochReport) -> None:
        if progress.done == 0 and report.resumed_from:
            progress.advance(report.resumed_from)
        progress.advance(1, items=report.samples, note=f"loss {report.loss:.4f}")
        logger.info(
            "epoch %d/%d: loss %.4f (%.1f s, %d samples)",
            report.epoch,
            report.epochs,
            report.loss,
            report.seconds,
            report.samples,
        )

    return training.train_model(
        options,
        pool=stores.pool,
        source=stores.source,
        s3=s3_options(storage),
        on_epoch=on_epoch,
        log=logger.info,
    )


@task(name="report-model", cache_policy=NO_CACHE)
def report_model(result: training.TrainResult, *, output: str) -> dict:
    """Log how to use the trained model, show its loss curve in the UI; return its card."""
    card = result.card
    get_run_logger().info(
        "model %s: %d epochs, final loss %.4f; use it with embedding.weights='%s' "
        "(input_size %d), e.g. `winnow reembed --output %s --weights %s --input-size %d`",
        card.model_id,
        card.epochs,
        card.final_loss,
        card.weights,
        card.input_size,
        output,
        card.weights,
        card.input_size,
    )
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

"""Task: train a self-supervised embedding on the pool's frames, with per-epoch progress.

A retried attempt (a transient storage error, or a crashed worker's rerun) resumes from the last
epoch checkpoint in the pool's storage.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES, s3_options
from tasks.progress import Progress
from winnow import training
from winnow.params import StorageParams
from winnow.storage import ObjectStore
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


@task(name="list-models", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def list_models(pool_store: ObjectStore) -> list[training.ModelCard]:
    """The trained models of a pool."""
    return training.list_models(pool_store)

"""SimCLR on a pool's own frames: two augmented views of each frame, NT-Xent loss, checkpoints.

The frames of the chosen samples are read again from the source (by key and frame index) into
memory once, at the training size; each epoch draws new views of them. The loss and the
projection head come from lightly (`NTXentLoss`, `SimCLRProjectionHead`); the views are SimCLR's
(crop, flip, colour jitter, grey, blur) composed here with the knobs lightly's `SimCLRTransform`
lacks (affine shift and shear, pixel noise: what small or odd images need); the backbone is a torchvision trunk built and initialised by `winnow.embedding`, so the weights
saved at the end load straight back as `embedding.weights`.

Resume: after every epoch the whole training state (trunk, head, optimizer, AMP scaler, losses,
the pool version the samples came from) is written to `<pool>/models/<model-id>/checkpoint.pt`
in one atomic put. A new attempt with the same parameters has the same model id, finds it and
starts at the next epoch, on the same samples. Each epoch's views are drawn from a seed derived
from (`seed`, epoch), and the learning rate is a function of the step, so a resumed training
follows the same course as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from winnow import embedding
from winnow.datapool import Datapool
from winnow.device import available_cores, resolve_device
from winnow.errors import ConfigError
from winnow.storage import ObjectStore, S3Options
from winnow.training._frames import choose_samples, file_refs, read_frames
from winnow.training._models import (
    ModelCard,
    checkpoint_key,
    load_checkpoint,
    model_id_for,
    read_card,
    save_model,
    save_state,
)
from winnow.training._params import TrainOptions

METHOD = "simclr"
_PROJECTION_DIM = 128
_BLUR_FROM_PX = 96  # SimCLR's small-image setting: no Gaussian blur on tiny inputs


@dataclass(frozen=True)
class EpochReport:
    """One finished (and checkpointed) epoch.

    Attributes:
        model_id: The model being trained.
        epoch: Epochs finished so far (1-based).
        epochs: Epochs planned.
        loss: Mean NT-Xent loss of this epoch.
        seconds: Wall-clock seconds of this epoch.
        samples: Samples trained on.
        resumed_from: Epochs already done when this attempt started (0: a fresh start).
    """

    model_id: str
    epoch: int
    epochs: int
    loss: float
    seconds: float
    samples: int
    resumed_from: int


@dataclass(frozen=True)
class TrainResult:
    """The outcome of `train_model`.

    Attributes:
        card: The trained model's card.
        resumed_from: Epochs already done when this attempt started (0: a fresh start).
        already_trained: True when the model was complete before this call (nothing trained).
        unreadable: Samples whose frames could not be read again (skipped).
    """

    card: ModelCard
    resumed_from: int
    already_trained: bool = False
    unreadable: int = 0


def model_id(params: TrainOptions) -> str:
    """The id a training with these parameters gets (given, or derived from them)."""
    return params.model_id or model_id_for(METHOD, params.model, params.identity())


def train_model(
    params: TrainOptions,
    *,
    pool: Datapool,
    source: ObjectStore,
    s3: S3Options | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume, or find finished) a SimCLR model on the frames of a pool's samples.

    Args:
        params: What to train and how.
        pool: The datapool whose samples are trained on and where the model is stored.
        source: Where the samples' files live (only read).
        s3: Connection options for `s3://` init weights.
        on_epoch: Called after every epoch, once its checkpoint is stored.
        log: Called with progress messages (reading frames, resuming).

    Returns:
        The trained model's card and how this attempt started.

    Raises:
        ConfigError: If there are too few readable samples, the model id is taken by a training
            with other parameters, or the init weights cannot be loaded.
    """
    mid = model_id(params)
    say = log or (lambda message: None)
    card = read_card(pool.store, mid)
    if card is not None:
        say(f"model {mid} is already trained ({card.epochs} epochs): nothing to do")
        return TrainResult(card=card, resumed_from=card.epochs, already_trained=True)
    identity = json.dumps(params.identity(), sort_keys=True)
    checkpoint = load_checkpoint(pool.store, mid)
    if checkpoint is not None and checkpoint.get("identity") != identity:
        raise ConfigError(
            f"model id {mid!r} in {pool.url} belongs to a training with other parameters; "
            "pick another model_id"
        )
    version = int(checkpoint["data_version"]) if checkpoint else pool.latest_version()
    snapshot = pool.load(version)
    samples = choose_samples(
        snapshot, tags=params.tags, max_samples=params.max_samples, seed=params.seed
    )
    say(f"reading {len(samples)} frames of pool version {version} from {source.url}")
    frames, unreadable = _read_all(snapshot, source, samples, size=params.input_size)
    if len(frames) < 2:
        raise ConfigError(
            f"only {len(frames)} of {len(samples)} samples could be read again from "
            f"{source.url}: SimCLR needs at least 2 (check `source`)"
        )
    return _train(
        params,
        mid=mid,
        store=pool.store,
        frames=frames,
        version=version,
        identity=identity,
        checkpoint=checkpoint,
        unreadable=unreadable,
        s3=s3,
        on_epoch=on_epoch,
        say=say,
    )


def _read_all(snapshot, source, samples, *, size: int) -> tuple[np.ndarray, int]:  # noqa: ANN001
    files = file_refs(snapshot, samples.key.tolist())
    parts, bad = [], 0
    workers = max(1, min(8, available_cores()))
    for got in read_frames(source, samples, files=files, size=size, workers=workers):
        if got.pixels is None:
            bad += len(got.rows)
        else:
            parts.append(got.pixels)
    frames = np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)
    return frames, bad


class _Views:
    """Map-style dataset: two SimCLR views of each in-memory frame (picklable for workers)."""

    def __init__(self, frames: np.ndarray, transform: Any) -> None:
        self.frames = frames
        self.transform = transform

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        return self.transform(Image.fromarray(self.frames[i]))


class _AddNoise:
    """Gaussian pixel noise on a 0..1 tensor, clipped back to 0..1 (picklable for workers)."""

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, x: Any) -> Any:
        import torch

        return (x + torch.randn_like(x) * self.std).clamp_(0.0, 1.0)


class _TwoViews:
    """Two independent views of one image through the same random transform."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def __call__(self, image: Any) -> tuple[Any, Any]:
        return self.view(image), self.view(image)


def _transform(params: TrainOptions) -> Any:
    """The SimCLR views (Chen et al. 2020) with the knobs of `params`: PIL image -> 2 tensors.

    Crop, flip, affine (rotation, shift, shear), colour jitter, grey, blur (inputs of 96 px or
    more), `ToTensor`, pixel noise, then the ImageNet normalisation the embedder applies.
    """
    import torchvision.transforms as T
    from lightly.transforms import GaussianBlur

    from winnow.embedding import IMAGENET_MEAN, IMAGENET_STD

    steps: list[Any] = [
        T.RandomResizedCrop(size=params.input_size, scale=(params.crop_min_scale, 1.0))
    ]
    if params.horizontal_flip:
        steps.append(T.RandomHorizontalFlip(p=0.5))
    if params.rotation_degrees or params.translate or params.shear_degrees:
        steps.append(
            T.RandomAffine(
                degrees=params.rotation_degrees,
                translate=(params.translate, params.translate) if params.translate else None,
                shear=params.shear_degrees or None,
                interpolation=T.InterpolationMode.BILINEAR,
            )
        )
    if params.color_jitter and params.color_jitter_prob:
        s = params.color_jitter
        jitter = T.ColorJitter(
            brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s
        )
        steps.append(T.RandomApply([jitter], p=params.color_jitter_prob))
    if params.grayscale_prob:
        steps.append(T.RandomGrayscale(p=params.grayscale_prob))
    if params.input_size >= _BLUR_FROM_PX:
        steps.append(GaussianBlur(prob=0.5))
    steps.append(T.ToTensor())
    if params.noise_std:
        steps.append(_AddNoise(params.noise_std))
    steps.append(T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    return _TwoViews(T.Compose(steps))


def _lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of steps (at least one), then cosine decay to 0."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _seed_epoch(seed: int, epoch: int) -> int:
    value = (seed * 1_000_003 + epoch) % (2**31)
    import torch

    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value)
    return value


def _train(
    params: TrainOptions,
    *,
    mid: str,
    store: ObjectStore,
    frames: np.ndarray,
    version: int,
    identity: str,
    checkpoint: dict | None,
    unreadable: int,
    s3: S3Options | None,
    on_epoch: Callable[[EpochReport], None] | None,
    say: Callable[[str], None],
) -> TrainResult:
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules.heads import SimCLRProjectionHead

    device = resolve_device(params.device)
    dtype = embedding.resolve_precision(params.precision, device)
    spec = embedding.model_spec(params.model)
    init = embedding.EmbeddingOptions(
        model=params.model,
        weights=params.init_weights,
        seed=params.seed,
        input_size=params.input_size,
        device="cpu",
        precision="fp32",
    )
    trunk = embedding.load_embedder(init, pool=store, s3=s3).module
    trunk = trunk.to(device).train().requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        head = SimCLRProjectionHead(spec.dim, spec.dim, _PROJECTION_DIM).to(device)
    criterion = NTXentLoss(temperature=params.temperature)
    optimizer = torch.optim.AdamW(
        [*trunk.parameters(), *head.parameters()],
        lr=params.learning_rate,
        weight_decay=params.weight_decay,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    start, losses, seconds = 0, [], 0.0
    if checkpoint is not None:
        trunk.load_state_dict(checkpoint["trunk"])
        head.load_state_dict(checkpoint["head"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        start, losses = int(checkpoint["epoch"]), list(checkpoint["losses"])
        seconds = float(checkpoint.get("seconds", 0.0))
        say(f"resuming {mid} after epoch {start} of {params.epochs} (loss {losses[-1]:.4f})")

    batch = min(params.batch_size, len(frames))
    steps_per_epoch = len(frames) // batch
    total = steps_per_epoch * params.epochs
    workers = _loader_workers(params.loader_workers, device)
    views = _Views(frames, _transform(params))
    cuda = device.type == "cuda"
    for epoch in range(start, params.epochs):
        t0 = time.perf_counter()
        loader = torch.utils.data.DataLoader(
            views,
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=cuda,
            generator=torch.Generator().manual_seed(_seed_epoch(params.seed, epoch)),
        )
        total_loss, steps = 0.0, 0
        for step, (x0, x1) in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(epoch * steps_per_epoch + step, total, params.learning_rate)
            x = torch.cat([x0, x1]).to(device, non_blocking=cuda)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                z = head(trunk(x).flatten(1))
                z0, z1 = z.float().chunk(2)
                loss = criterion(z0, z1)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total_loss += float(loss.detach())
            steps += 1
        losses.append(total_loss / max(steps, 1))
        took = time.perf_counter() - t0
        seconds += took
        save_state(
            store,
            checkpoint_key(mid),
            {
                "epoch": epoch + 1,
                "trunk": trunk.state_dict(),
                "head": head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "losses": losses,
                "data_version": version,
                "identity": identity,
                "seconds": seconds,
            },
        )
        if on_epoch is not None:
            on_epoch(
                EpochReport(
                    model_id=mid,
                    epoch=epoch + 1,
                    epochs=params.epochs,
                    loss=losses[-1],
                    seconds=took,
                    samples=len(frames),
                    resumed_from=start,
                )
            )

    trunk_state = {k: v.detach().to("cpu").contiguous() for k, v in trunk.state_dict().items()}
    card = save_model(
        store,
        mid,
        trunk_state,
        {
            "method": METHOD,
            "backbone": params.model,
            "input_size": params.input_size,
            "dim": spec.dim,
            "epochs": params.epochs,
            "final_loss": losses[-1],
            "losses": losses,
            "data_version": version,
            "samples": len(frames),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "parameters": json.loads(params.model_dump_json(exclude={"storage"})),
        },
    )
    store.delete([checkpoint_key(mid)])  # the model is complete; its training state is not needed
    return TrainResult(card=card, resumed_from=start, unreadable=unreadable)


def _loader_workers(option: int | None, device: Any) -> int:
    if option is not None:
        return option
    cores = available_cores()
    if device.type == "cuda":
        return max(1, min(8, cores - 1))
    return 0 if cores <= 4 else min(4, cores // 4)

"""Parameters of the model-lifecycle flows: train, reembed, reselect (UI forms, CLI options).

Plain pydantic, like `winnow.params`: each flow's signature reuses these models, so the Prefect
UI form, server-side validation and the `winnow` command agree. A lifecycle run is anchored on a
pool (`output`); the source defaults to the one recorded by the pool's latest tag.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from winnow.embedding import EmbeddingOptions, ModelName
from winnow.errors import ConfigError
from winnow.params import ShardFiles, StorageParams, TagName
from winnow.records import NAME_RE
from winnow.selection import SelectionConfig

PoolOutput = Annotated[
    str,
    Field(
        min_length=1,
        description="The output folder or s3:// prefix whose datapool (<output>/pool) is used.",
        examples=["s3://my-bucket/.winnow", "./data/.winnow"],
    ),
]
PoolSource = Annotated[
    str | None,
    Field(
        description="The raw data the pool's keys are relative to (local folder or s3://…); "
        "empty: the source recorded by the pool's latest tag.",
    ),
]
Names = Annotated[
    list[str] | None,
    Field(description="Restrict to these names; empty: no restriction."),
]


class TrainOptions(BaseModel):
    """How a self-supervised (SimCLR) model is trained on the frames of a pool's samples."""

    model_config = ConfigDict(extra="forbid", title="Training")

    model: ModelName = Field(
        "resnet18", description="torchvision backbone to train (its trunk becomes the embedding)."
    )
    init_weights: str = Field(
        "none",
        description="Weights to start from: 'none' (random), 'default' (torchvision pretrained, "
        "needs them in TORCH_HOME), 'pool:<model-id>', or a checkpoint path or URL.",
    )
    tags: list[str] | None = Field(
        None, description="Train on the members of these tags; empty: on every sample."
    )
    max_samples: int | None = Field(
        None,
        ge=2,
        description="Train on at most this many samples, drawn at random (by `seed`); empty: all.",
    )
    epochs: int = Field(20, ge=1, le=10_000, description="Passes over the training samples.")
    batch_size: int = Field(
        256,
        ge=2,
        le=4096,
        description="Samples per step (two views each); SimCLR wants 64 or more (the measured "
        "setup: 256).",
    )
    input_size: int = Field(
        64,
        ge=32,
        le=1024,
        description="Square training size in pixels; embed with the same `input_size` later "
        "(32 suits tiny images such as 8×8 digits).",
    )
    learning_rate: float = Field(
        2e-3, gt=0, le=10, description="Peak learning rate (AdamW; cosine decay over the epochs)."
    )
    weight_decay: float = Field(1e-4, ge=0, le=1, description="AdamW weight decay.")
    temperature: float = Field(
        0.5,
        gt=0,
        le=10,
        description="NT-Xent temperature (measured best on digits: 0.5; 0.2 did better on "
        "frames dominated by shifts and contrast changes).",
    )
    # Views: what two views of one frame may differ by is what the embedding learns to ignore.
    crop_min_scale: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Smallest area fraction of a random resized crop; 1: no crop (SimCLR on "
        "ImageNet: 0.08; small or centred objects lose too much below 0.5).",
    )
    horizontal_flip: bool = Field(
        True, description="Flip views horizontally at random (off for text, digits, signs)."
    )
    rotation_degrees: float = Field(
        0.0, ge=0, le=180, description="Rotate views at random by up to this many degrees."
    )
    translate: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="Shift views at random by up to this fraction of their width and height.",
    )
    shear_degrees: float = Field(
        0.0, ge=0, le=45, description="Shear views at random by up to this many degrees."
    )
    color_jitter: float = Field(
        1.0,
        ge=0,
        le=2,
        description="Strength of the colour jitter (brightness and contrast 0.8×, saturation "
        "0.8×, hue 0.2× this); 0: none. Grey images get brightness and contrast only.",
    )
    color_jitter_prob: float = Field(
        0.8, ge=0, le=1, description="Probability that a view is colour-jittered."
    )
    grayscale_prob: float = Field(
        0.2, ge=0, le=1, description="Probability that a view is turned grey."
    )
    noise_std: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Standard deviation of Gaussian pixel noise added to views (pixels in "
        "0..1, clipped); 0: none. For noisy sources; on clean digits 0.1 cost accuracy.",
    )
    seed: int = Field(0, ge=0, description="Seed of the sample draw, the init and the views.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where training runs: 'auto' picks CUDA when available."
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="'auto' = fp16 autocast (AMP) on CUDA, fp32 on CPU."
    )
    loader_workers: int | None = Field(
        None,
        ge=0,
        le=64,
        description="DataLoader processes making the views; empty: automatic (0 on a small CPU "
        "host, up to 8 beside a GPU).",
    )
    model_id: str | None = Field(
        None,
        description="Name of the trained model in the pool; empty: derived from these "
        "parameters (the same parameters resume the same training).",
    )

    @field_validator("init_weights")
    @classmethod
    def _check_init(cls, value: str) -> str:
        return EmbeddingOptions(weights=value).weights

    @field_validator("model_id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError(
                f"model_id {value!r}: use letters, digits, '.', '_' and '-' (at most 100)"
            )
        return value

    def identity(self) -> dict:
        """The parameters that define the trained model (not where or how fast it runs)."""
        skip = {"device", "loader_workers", "model_id"}
        return json.loads(self.model_dump_json(exclude=skip))


class TrainParams(BaseModel):
    """A training run: the pool, its source, the training options and storage access."""

    model_config = ConfigDict(extra="forbid")

    output: PoolOutput
    source: PoolSource = None
    training: TrainOptions = Field(default_factory=TrainOptions)
    storage: StorageParams = Field(default_factory=StorageParams)


class ReembedParams(BaseModel):
    """Move a pool to a new embedding model: every sample's frame decoded again and embedded."""

    model_config = ConfigDict(extra="forbid")

    output: PoolOutput
    source: PoolSource = None
    embedding: EmbeddingOptions = Field(
        default_factory=EmbeddingOptions,
        description="The new model (its weights may be 'pool:<model-id>' of a trained model).",
    )
    storage: StorageParams = Field(default_factory=StorageParams)
    shard_files: ShardFiles = 32


class ReselectParams(BaseModel):
    """A new tag from samples already in the pool, read from the pool only (no decoding)."""

    model_config = ConfigDict(extra="forbid")

    output: PoolOutput
    source: PoolSource = None
    tag_name: TagName = None
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    from_tags: Names = Field(
        None, description="Pick only among the members of these tags; empty: every sample."
    )
    from_runs: Names = Field(
        None, description="Pick only among the samples of these runs (run ids); empty: all."
    )
    against_dataset: bool = Field(
        True,
        description="Treat the dataset (every tag's members) as already chosen, as a curate run "
        "does; off: pick afresh among the candidates (e.g. a subset of one tag).",
    )
    storage: StorageParams = Field(default_factory=StorageParams)


def recorded_source(snapshot_tags: list, given: str | None, *, pool_url: str) -> str:
    """The source a lifecycle run reads: the one given, else the latest tag's recorded source.

    Raises:
        ConfigError: If none was given and no tag records one.
    """
    if given:
        return given
    for tag in reversed(snapshot_tags):
        try:
            source = json.loads(tag.parameters).get("source")
        except (ValueError, AttributeError):
            source = None
        if source:
            return str(source)
    raise ConfigError(
        f"the datapool at {pool_url} records no source (no tag yet): pass --source / `source`"
    )

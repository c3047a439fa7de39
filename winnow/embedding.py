"""Embedding models: registry, weights loading and batched inference (CUDA and AMP when present).

An embedding is the L2-normalised image embedding of a backbone, stored as float16: for a
torchvision classifier the pooled features that feed its classification head (the penultimate
layer); for a `timm:` model its pooled features (a ViT's CLS token); for an `open_clip:` model
its projected image embedding, which its text tower shares (`Embedder.embed_texts`). Frames
arrive already decoded at the model's square input size (`winnow.media` resizes inside
PyAV/Pillow), so the only preprocessing here is the model's mean/std normalisation, done on the
device. `winnow.backbones` knows the timm and open_clip families.

The fast paths: channels_last memory layout (1.5x on this CPU for ResNets, and what tensor cores
want), pinned host memory with non-blocking copies and autocast fp16/bf16 on CUDA, optional
`torch.compile`. `Embedder.submit` lets a caller queue batch i+1 on the GPU before it collects
batch i, so the GPU does not wait for the host between batches (`winnow.engine` does this).

Importing this module is cheap: torch and torchvision are imported when a model is built, so
`model_record` (called by the flow before any work) costs no model build, no download and no
torch import.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from winnow import backbones
from winnow.device import available_cores, resolve_device
from winnow.errors import ConfigError, NotFound, WeightsUnavailable
from winnow.records import NAME_RE, ModelRecord
from winnow.storage import LocalStore, ObjectStore, S3Options, open_store

if TYPE_CHECKING:
    import torch

ModelName = Literal[
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "convnext_tiny",
    "convnext_small",
    "regnet_y_400mf",
    "regnet_y_800mf",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model registry.

    Attributes:
        name: torchvision builder name (`torchvision.models.get_model`).
        weights: The torchvision weights enum member used for `weights="default"`, as
            `<Enum>.<MEMBER>` (the enum's `DEFAULT` when the registry was written; a unit test
            checks they still agree).
        dim: Width of the embedding (the features that feed the classification head).
        head: Dotted attribute path of the classification head, replaced by identity; state-dict
            keys under it are ignored when loading weights.
    """

    name: str
    weights: str
    dim: int
    head: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512, "fc"),
        ModelSpec("resnet34", "ResNet34_Weights.IMAGENET1K_V1", 512, "fc"),
        ModelSpec("resnet50", "ResNet50_Weights.IMAGENET1K_V2", 2048, "fc"),
        ModelSpec("resnet101", "ResNet101_Weights.IMAGENET1K_V2", 2048, "fc"),
        ModelSpec(
            "mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", 576, "classifier"
        ),
        ModelSpec(
            "mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2", 960, "classifier"
        ),
        ModelSpec("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 1280, "classifier"),
        ModelSpec("efficientnet_b1", "EfficientNet_B1_Weights.IMAGENET1K_V2", 1280, "classifier"),
        ModelSpec("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 768, "classifier.2"),
        ModelSpec("convnext_small", "ConvNeXt_Small_Weights.IMAGENET1K_V1", 768, "classifier.2"),
        ModelSpec("regnet_y_400mf", "RegNet_Y_400MF_Weights.IMAGENET1K_V2", 440, "fc"),
        ModelSpec("regnet_y_800mf", "RegNet_Y_800MF_Weights.IMAGENET1K_V2", 784, "fc"),
    )
}


class EmbeddingOptions(BaseModel):
    """Which model embeds the frames, and how it runs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        "resnet18",
        # The pattern is for the JSON schema (the Prefect server and UI check it before a run);
        # in Python the validator below says what is wrong in words.
        json_schema_extra={"pattern": backbones.NAME_PATTERN},
        description="The backbone; the embedding is its L2-normalised image embedding. "
        "torchvision: resnet18 (512-d), resnet50 (2048-d), convnext_tiny (768-d), ...; "
        "'timm:<name>' (e.g. 'timm:vit_small_patch14_dinov2.lvd142m', DINOv2 ViT-S/14, 384-d); "
        "'open_clip:<arch>/<tag>' (e.g. 'open_clip:ViT-B-32/laion2b_s34b_b79k', 512-d, with a "
        "text tower for text queries). Input size, mean and std come from the model's config. "
        "A datapool keeps one model: move it with `winnow reembed`.",
        examples=["resnet18", "timm:vit_small_patch14_dinov2.lvd142m"],
    )
    weights: str = Field(
        "default",
        description="'default': the model's pretrained weights (torchvision's from TORCH_HOME, "
        "downloaded once; timm's and open_clip's from the Hugging Face cache, HF_HOME, or "
        "TORCH_HOME, never downloaded during a run); 'none': random weights seeded by `seed` "
        "(tests and demos only); 'pool:<model-id>': a model trained in this run's datapool "
        "(`winnow train`); the URL (s3://…, file://…) or the path of a checkpoint file (a "
        "state_dict, .pt or .safetensors, or a dict holding one under 'state_dict' or 'model'; "
        "classification-head keys are ignored).",
        min_length=1,
    )
    input_size: int | None = Field(
        None,
        ge=32,
        le=1024,
        description="Square size in pixels that frames are decoded and resized to before the "
        "model; empty = the model's own (224 for torchvision, 518 for DINOv2, 224 for CLIP "
        "ViT-B/32). ViTs run at another size with resampled position embeddings (DINOv2 at "
        "224 is 5x faster than at 518).",
    )
    batch_size: int = Field(
        64, ge=1, le=4096, description="Frames per model call (larger uses more memory)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs: 'auto' picks CUDA when available, else CPU."
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto",
        description="Arithmetic of the model: 'auto' = fp16 autocast on CUDA, fp32 on CPU. "
        "Embeddings are stored as float16 either way.",
    )
    compile: bool = Field(
        False,
        description="Compile the model with torch.compile: faster on long runs, but the first "
        "batch takes tens of seconds.",
    )
    seed: int = Field(0, ge=0, description="Seed of the random weights when weights='none'.")
    decode_workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Decoder threads running ahead of the model; empty = automatic "
        "(1 on a CPU host with few cores, up to 8 when the model runs on a GPU).",
    )
    prefetch_batches: int = Field(
        4,
        ge=1,
        le=64,
        description="Batches of decoded frames held ready for the model; bounds memory to "
        "batch_size x prefetch_batches frames.",
    )

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        value = value.strip()
        try:
            backbone = backbones.parse(value)
            if backbone is not None:
                backbones.check_known(backbone)  # imports timm / open_clip: those names only
                return backbone.name
        except ConfigError as exc:  # pydantic reports ValueErrors as validation errors
            raise ValueError(str(exc)) from None
        if value not in MODELS:
            raise ValueError(
                f"unknown embedding model {value!r}: torchvision models are "
                f"{', '.join(MODELS)}; or 'timm:<name>', 'open_clip:<arch>/<tag>'"
            )
        return value

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("default", "none"):
            return value.lower()
        if value.startswith(POOL_WEIGHTS):
            if not NAME_RE.match(value[len(POOL_WEIGHTS) :]):
                raise ValueError(
                    f"weights={value!r}: a pool model is named 'pool:<model-id>' (letters, digits, "
                    "'.', '_' and '-'), as printed by `winnow train`"
                )
            return value
        if "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError(
                "weights must be 'default', 'none', 'pool:<model-id>', a local checkpoint path "
                f"or an s3:// or file:// URL, not {value!r}"
            )
        return value


def model_spec(name: str) -> ModelSpec:
    """The registry entry of a model.

    Raises:
        ConfigError: If the model is not in the registry.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown embedding model {name!r}; choose one of {', '.join(MODELS)}"
        ) from None


def model_record(
    options: EmbeddingOptions, *, pool: ObjectStore | None = None, s3: S3Options | None = None
) -> ModelRecord:
    """Describe the model a run would use, without building it or downloading pretrained weights.

    Args:
        options: The embedding options.
        pool: The datapool's store, where `pool:<model-id>` weights live.
        s3: Connection options for `s3://` weights (default: the boto3 chain).

    Returns:
        The record the datapool stores: name, weights fingerprint (`torchvision:<enum member>`,
        `none:seed=<seed>`, `checkpoint:<sha256 prefix>`, or `pretrained:<sha256 prefix>` of a
        timm or open_clip model's cached file), input size, embedding width and, for timm and
        open_clip models, the preprocessing (torchvision's is implied: ImageNet mean/std, as
        in pools written before it was recorded). A checkpoint's fingerprint is that of its
        content, however it is named (path, URL or `pool:<model-id>`). For a torchvision model
        this imports no torch; for timm and open_clip it imports the library.

    Raises:
        ConfigError: If the model is unknown or the checkpoint cannot be found or read.
        WeightsUnavailable: If a timm or open_clip model's pretrained weights are not cached.
    """
    backbone = backbones.parse(options.model)
    if backbone is not None:
        return _backbone_record(backbone, options, pool=pool, s3=s3)
    spec = model_spec(options.model)
    weights = _weights_label(options, lambda: f"torchvision:{spec.weights}", pool=pool, s3=s3)
    return ModelRecord(
        name=spec.name, weights=weights, input_size=options.input_size or 224, dim=spec.dim
    )


def _weights_label(
    options: EmbeddingOptions,
    pretrained: Callable[[], str],
    *,
    pool: ObjectStore | None,
    s3: S3Options | None,
) -> str:
    """The record's `weights`: `pretrained()` for "default", the seed, or the checkpoint's digest."""
    if options.weights == "default":
        return pretrained()
    if options.weights == "none":
        return f"none:seed={options.seed}"
    path = _checkpoint_path(options.weights, pool=pool, s3=s3)
    return f"checkpoint:{_checkpoint_digest(path)[:16]}"


def _backbone_record(
    backbone: backbones.Backbone,
    options: EmbeddingOptions,
    *,
    pool: ObjectStore | None,
    s3: S3Options | None,
) -> ModelRecord:
    info = backbones.info(backbone, options.input_size)

    def pretrained() -> str:
        path = backbones.pretrained_file(backbone)
        return f"pretrained:{backbones.weights_digest(path, _checkpoint_digest)[:16]}"

    weights = _weights_label(options, pretrained, pool=pool, s3=s3)
    return ModelRecord(
        name=backbone.name,
        weights=weights,
        input_size=info.preprocess.input_size,
        dim=info.dim,
        preprocess=info.preprocess.describe(),
    )


def options_for_record(
    record: ModelRecord,
    *,
    weights: str | None = None,
    device: str = "auto",
    pool: ObjectStore | None = None,
    s3: S3Options | None = None,
) -> EmbeddingOptions:
    """Options that rebuild the model a pool records (to embed queries in the pool's space).

    Pretrained weights are found again from the record (torchvision's enum, the cached file of
    a timm or open_clip model), random ones from their seed; a checkpoint cannot be found from
    its hash, so it is passed as `weights`. The rebuilt model's record must equal the pool's.

    Args:
        record: The pool's model record.
        weights: The checkpoint (path, URL, `pool:<model-id>`) of a pool built from one.
        device: Where the model runs.
        pool: As for `model_record`.
        s3: As for `model_record`.

    Returns:
        Options whose `model_record` equals `record`.

    Raises:
        ConfigError: If the record names a checkpoint and no (or another) `weights` is given.
        WeightsUnavailable: If pretrained weights are not cached here.
    """
    if weights is None:
        kind, _, value = record.weights.partition(":")
        if kind == "checkpoint":
            raise ConfigError(
                f"the pool's model {record.describe()} was loaded from a checkpoint: pass it "
                "as weights (its path, URL or pool:<model-id>)"
            )
        weights = "none" if kind == "none" else "default"
    seed = int(record.weights.partition("seed=")[2] or 0) if weights == "none" else 0
    options = EmbeddingOptions(
        model=record.name, weights=weights, input_size=record.input_size, seed=seed, device=device
    )
    rebuilt = model_record(options, pool=pool, s3=s3)
    if rebuilt != record:
        raise ConfigError(
            f"these settings give {rebuilt.describe()}, not the pool's {record.describe()}: "
            "pass the weights the pool was built with"
        )
    return options


POOL_WEIGHTS = "pool:"


def pool_model_key(model_id: str) -> str:
    """Key, in the datapool's store, of the weights of a model trained there."""
    return f"models/{model_id}/model.pt"


def _checkpoint_path(
    value: str, *, pool: ObjectStore | None = None, s3: S3Options | None = None
) -> Path:
    """A local file holding the checkpoint `value` names (remote ones are cached locally)."""
    if value.startswith(POOL_WEIGHTS):
        if pool is None:
            raise ConfigError(
                f"weights={value!r} names a model of a datapool, but this run has none; pass "
                "the checkpoint's URL or path instead"
            )
        return _cached_copy(pool, pool_model_key(value[len(POOL_WEIGHTS) :]), value)
    if value.startswith("s3://"):
        parent, _, name = value.rpartition("/")
        return _cached_copy(open_store(parent, s3), name, value)
    if value.startswith("file://"):
        value = value[len("file://") :]
    return _local_checkpoint(value)


def _cached_copy(store: ObjectStore, key: str, value: str) -> Path:
    """The object as a local file: the file itself (local store) or a cached download."""
    info = None
    if isinstance(store, LocalStore):
        if (store.root / key).is_file():
            return (store.root / key).resolve()
    else:  # a listing names folders: list the checkpoint's folder and find it there
        with contextlib.suppress(NotFound):
            info = next((i for i in store.list(key.rpartition("/")[0]) if i.key == key), None)
    if info is None:
        raise ConfigError(
            f"weights={value!r}: no checkpoint at {store.url_for(key)}; `winnow status` lists "
            "a pool's trained models, `winnow train` trains one"
        )
    # One download per content: the name carries the object's fingerprint (ETag and size).
    digest = hashlib.blake2b(f"{store.url_for(key)}\0{info.fingerprint}".encode(), digest_size=12)
    cached = Path(tempfile.gettempdir()) / "winnow-weights" / f"{digest.hexdigest()}.pt"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{uuid.uuid4().hex[:8]}.part")
        partial.write_bytes(store.get(key))
        os.replace(partial, cached)
    return cached


def _local_checkpoint(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"weights={value!r}: no such checkpoint file on this worker; use 'default' "
            "(torchvision pretrained), 'none' (random), 'pool:<model-id>' or the path or URL of "
            "a saved state_dict"
        )
    return path.resolve()


def _checkpoint_digest(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, cached by (path, size, mtime) so repeated records cost nothing."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from exc
    return h.hexdigest()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a `precision` option on `device`; None means plain fp32.

    Raises:
        ConfigError: If bf16 is asked for on a GPU that lacks it.
    """
    import torch

    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision='bf16' is not supported by this GPU; use 'fp16'")
        return torch.bfloat16
    return torch.float16


def load_embedder(
    options: EmbeddingOptions, *, pool: ObjectStore | None = None, s3: S3Options | None = None
) -> Embedder:
    """Build the model, load its weights and move it to its device.

    Args:
        options: The embedding options.
        pool: The datapool's store, where `pool:<model-id>` weights live.
        s3: Connection options for `s3://` weights (default: the boto3 chain).

    Returns:
        A ready `Embedder`.

    Raises:
        WeightsUnavailable: If `weights="default"` and torchvision's pretrained weights are not
            in TORCH_HOME and cannot be downloaded (e.g. an offline worker).
        ConfigError: If the checkpoint path does not exist, the file is not a readable
            state_dict, or it does not fit the model; or if the device or precision cannot be
            used here.
    """
    record = model_record(options, pool=pool, s3=s3)
    device = resolve_device(options.device)
    dtype = resolve_precision(options.precision, device)
    if (backbone := backbones.parse(options.model)) is not None:
        return _load_backbone(backbone, options, record, device, dtype, pool=pool, s3=s3)
    spec = model_spec(options.model)
    model = _build_trunk(spec, seed=options.seed)
    if options.weights == "default":
        state = _pretrained_state_dict(spec)
        _load_trunk_state(model, spec, state, source=f"torchvision weights {spec.weights}")
    elif options.weights != "none":
        path = _checkpoint_path(options.weights, pool=pool, s3=s3)
        source = f"checkpoint {options.weights}" + (
            f" ({path})" if str(path) != options.weights else ""
        )
        _load_trunk_state(model, spec, _read_checkpoint(path), source=source)
    model = prepare_module(model, device=device, channels_last=True, compile=options.compile)
    return Embedder(
        model,
        record=record,
        device=device,
        autocast_dtype=dtype,
        batch_size=options.batch_size,
    )


def _load_backbone(
    backbone: backbones.Backbone,
    options: EmbeddingOptions,
    record: ModelRecord,
    device: torch.device,
    dtype: torch.dtype | None,
    *,
    pool: ObjectStore | None,
    s3: S3Options | None,
) -> Embedder:
    """`load_embedder` for a timm or open_clip model."""
    info = backbones.info(backbone, options.input_size)
    pretrained = backbones.pretrained_file(backbone) if options.weights == "default" else None
    built = backbones.build(
        backbone, input_size=options.input_size, seed=options.seed, pretrained=pretrained
    )
    if options.weights not in ("default", "none"):
        path = _checkpoint_path(options.weights, pool=pool, s3=s3)
        source = f"checkpoint {options.weights}" + (
            f" ({path})" if str(path) != options.weights else ""
        )
        # A CLIP checkpoint holds both towers (what open_clip saves); timm's, the model's
        # trunk (a classifier's head keys are dropped).
        target = getattr(built.image, "clip", built.image)
        head = None if backbone.family == "open_clip" else _timm_head(target)
        _load_state(target, _read_checkpoint(path), name=backbone.name, head=head, source=source)
    module = prepare_module(
        built.image, device=device, channels_last=built.channels_last, compile=options.compile
    )
    return Embedder(
        module,
        record=record,
        device=device,
        autocast_dtype=dtype,
        batch_size=options.batch_size,
        mean=info.preprocess.mean,
        std=info.preprocess.std,
        text=built.text,
    )


def _timm_head(model: torch.nn.Module) -> str | None:
    """The classifier's attribute path of a timm model (its pretrained cfg names it)."""
    name = getattr(model, "pretrained_cfg", {}).get("classifier")
    return name if isinstance(name, str) else None


def _build_trunk(spec: ModelSpec, *, seed: int) -> torch.nn.Module:
    """The model with random weights drawn from `seed` and its head replaced by identity."""
    import torch
    import torchvision

    # fork_rng: seed the init without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.get_model(spec.name, weights=None)
    parent_path, _, attr = spec.head.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, torch.nn.Identity())
    return model.eval().requires_grad_(False)


def _pretrained_state_dict(spec: ModelSpec) -> dict[str, Any]:
    import torch
    import torchvision

    weights = torchvision.models.get_weight(spec.weights)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, timeouts, hash mismatch, truncated file
        raise WeightsUnavailable(
            f"cannot load the pretrained weights {spec.weights} of {spec.name}: "
            f"{type(exc).__name__}: {exc}. They are not cached at {cached} and could not be "
            f"downloaded from {weights.url} (is this worker offline?). Fix: pre-populate "
            f"TORCH_HOME on the worker (download that file into {cached.parent}), pass the "
            "path of a checkpoint file as weights, or use weights='none' (random weights, for "
            "tests only)."
        ) from exc


def _read_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"checkpoint {path} cannot be read as a PyTorch state_dict "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); save it "
            "with torch.save(model.state_dict(), path)"
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConfigError(
            f"checkpoint {path} holds no state_dict (a dict of tensors, or a dict with one under "
            "'state_dict' or 'model'); save it with torch.save(model.state_dict(), path)"
        )
    return obj


def _load_trunk_state(
    model: torch.nn.Module, spec: ModelSpec, state: dict[str, Any], *, source: str
) -> None:
    """Load a full-model or trunk-only state_dict into the trunk, ignoring head keys."""
    _load_state(model, state, name=spec.name, head=spec.head, source=source)


def _load_state(
    model: torch.nn.Module,
    state: dict[str, Any],
    *,
    name: str,
    head: str | None,
    source: str,
) -> None:
    """Load a state_dict strictly, after removing wrapper prefixes and the `head`'s keys.

    Raises:
        ConfigError: Naming missing, unexpected and wrongly shaped keys.
    """
    state = dict(state)
    # Wrappers add a common prefix: DataParallel/DDP ("module."), torch.compile ("_orig_mod.").
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "_orig_mod.", "model."):
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    if head:
        state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("wrong shapes", wrong),
            )
            if keys
        )
        raise ConfigError(
            f"{source} does not fit model {name!r} ({details}); check the `model` option "
            "matches the architecture the checkpoint was trained with"
        )
    model.load_state_dict(state, strict=True)


def prepare_module(
    module: torch.nn.Module, *, device: torch.device, channels_last: bool, compile: bool
) -> torch.nn.Module:
    """Move a module to its device in inference form: channels_last, optionally compiled.

    Args:
        module: The model (in eval mode).
        device: Where it runs.
        channels_last: Convert conv weights to the NHWC memory layout.
        compile: Wrap it with `torch.compile`.

    Returns:
        The module ready for `torch.inference_mode` calls.
    """
    import torch

    module = module.to(device).eval().requires_grad_(False)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile:
        module = torch.compile(module)
    return module


class PendingEmbedding:
    """Embeddings being computed on the device; `result()` waits and returns them."""

    def __init__(self, features: Any, event: Any = None) -> None:
        """Hold device features (or a host copy in flight, with its CUDA event)."""
        self._features = features
        self._event = event

    def result(self) -> np.ndarray:
        """The float16 (N, D) embeddings, once the device has finished them."""
        if self._event is not None:
            self._event.synchronize()
        return self._features.numpy()


class Embedder:
    """A loaded model that turns frames into L2-normalised float16 embeddings.

    Attributes:
        record: What the datapool records about the model.
        device: Where the model runs.
        input_size: Square frame size the model expects.
        batch_size: Frames per model call.
        autocast_dtype: Autocast dtype (None for plain fp32).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        record: ModelRecord,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        batch_size: int = 64,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        text: Callable[[Sequence[str]], torch.Tensor] | None = None,
    ) -> None:
        """Wrap a prepared module (see `prepare_module` and `load_embedder`).

        `mean` and `std` are the model's normalisation (0..1 scale); `text` maps strings to
        text-tower features on the device (CLIP-family models only).
        """
        import torch

        self.module = module
        self.record = record
        self.device = device
        self.input_size = record.input_size
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self._text = text
        mean = torch.tensor(mean, dtype=torch.float32) * 255.0
        std = torch.tensor(std, dtype=torch.float32) * 255.0
        # x * scale + shift == (x / 255 - mean) / std, fused into one pass.
        self._scale = (1.0 / std).view(1, 3, 1, 1).to(device)
        self._shift = (-mean / std).view(1, 3, 1, 1).to(device)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Embedder({self.record.describe()} on {self.device})"

    @property
    def has_text(self) -> bool:
        """Whether the model has a text tower (text queries)."""
        return self._text is not None

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text queries with the model's text tower, in the space of its image embeddings.

        Args:
            texts: Non-empty strings (a CLIP prompt each, e.g. "cyclists at night").

        Returns:
            float16 array (len(texts), D), L2-normalised like the frames' embeddings.

        Raises:
            ConfigError: If the model has no text tower, or a text is empty.
        """
        import torch

        if self._text is None:
            raise ConfigError(
                f"text queries need a model with a text tower, and {self.record.name} has none: "
                "use a CLIP-family model (embedding.model 'open_clip:<arch>/<tag>', e.g. "
                "'open_clip:ViT-B-32/laion2b_s34b_b79k'), or query with images"
            )
        texts = [str(t) for t in texts]
        if not texts or not all(t.strip() for t in texts):
            raise ConfigError(f"text queries must be non-empty strings, got {texts!r}")
        with self._lock, torch.inference_mode():
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    features = self._text(texts)
            else:
                features = self._text(texts)
            features = torch.nn.functional.normalize(features.float(), dim=1)
            return features.to(torch.float16).cpu().numpy()

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Embed frames.

        Args:
            pixels: uint8 array (N, H, W, 3), RGB, with H = W = `input_size`.

        Returns:
            float16 array (N, D): L2-normalised penultimate features, deterministic for a given
            input on a given host.

        Raises:
            ValueError: If `pixels` has the wrong dtype or shape.
        """
        pixels = self._check(pixels)
        if len(pixels) == 0:
            return np.zeros((0, self.record.dim), np.float16)
        parts = [
            self.submit(pixels[start : start + self.batch_size]).result()
            for start in range(0, len(pixels), self.batch_size)
        ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def submit(self, pixels: np.ndarray) -> PendingEmbedding:
        """Queue one batch on the device and return without waiting for CUDA to finish it.

        On CUDA the host-to-device copy comes from pinned memory without blocking and the
        result is copied back the same way, so a caller can queue the next batch before it
        collects this one. On the CPU the work is done before this returns.

        Args:
            pixels: uint8 array (N, H, W, 3) with N <= a few batches.

        Returns:
            A handle whose `result()` is the float16 (N, D) embeddings.
        """
        import torch

        pixels = self._check(pixels)
        with self._lock, torch.inference_mode():
            cuda = self.device.type == "cuda"
            x = torch.from_numpy(np.ascontiguousarray(pixels))
            if cuda:
                x = x.pin_memory().to(self.device, non_blocking=True)
            # NHWC bytes viewed as NCHW are already channels_last: no copy for the layout.
            x = x.permute(0, 3, 1, 2).float()
            x = torch.addcmul(self._shift, x, self._scale)
            x = x.contiguous(memory_format=torch.channels_last)
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    features = self.module(x)
            else:
                features = self.module(x)
            features = torch.nn.functional.normalize(features.float().flatten(1), dim=1)
            features = features.to(torch.float16)
            if not cuda:
                return PendingEmbedding(features)
            host = torch.empty(features.shape, dtype=torch.float16, pin_memory=True)
            host.copy_(features, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return PendingEmbedding(host, event)

    def _check(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        size = self.input_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
            raise ValueError(
                f"expected uint8 frames of shape (N, {size}, {size}, 3), got "
                f"{pixels.dtype} {pixels.shape}"
            )
        return pixels


def default_decode_workers(device: torch.device | str) -> int:
    """Decoder threads to run beside the model when the option is left empty.

    On a GPU host decoding is the bottleneck: use most cores. On a CPU host the model is the
    bottleneck and every decoder thread takes cores from it: one is enough unless there are many
    cores to spare.
    """
    cores = available_cores()
    if str(device).startswith("cuda"):
        return max(1, min(8, cores - 1))
    return max(1, cores // 8)


# --------------------------------------------------------------------------------------------
# a process-level model cache (long-lived workers: Dask workers, child runs)

_CACHE: dict[tuple, Embedder] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_STATS = {"loads": 0, "hits": 0}
_CACHE_SIZE = 2  # models kept per process; a third evicts the oldest


def cached_embedder(
    options: EmbeddingOptions, *, pool: ObjectStore | None = None, s3: S3Options | None = None
) -> Embedder:
    """`load_embedder`, once per process for the same model record and run settings.

    A worker that embeds shard after shard (a Dask worker, a child run's group) loads its model
    once. The key is the model record (name, weights fingerprint, input size) plus the options
    that change how it runs (device, precision, batch size, compile); a checkpoint's content
    is part of the record, so a replaced checkpoint is loaded anew.

    Args:
        options: The embedding options.
        pool: As for `load_embedder`.
        s3: As for `load_embedder`.

    Returns:
        A ready `Embedder`, shared by callers in this process (its `submit` holds a lock).

    Raises:
        As `load_embedder`.
    """
    record = model_record(options, pool=pool, s3=s3)
    key = (record, options.device, options.precision, options.batch_size, options.compile)
    with _CACHE_LOCK:
        if (embedder := _CACHE.get(key)) is not None:
            _CACHE_STATS["hits"] += 1
            return embedder
        embedder = load_embedder(options, pool=pool, s3=s3)
        _CACHE_STATS["loads"] += 1
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = embedder
        return embedder


def embedder_cache_stats() -> dict[str, int]:
    """Models loaded and reused by `cached_embedder` in this process (`loads`, `hits`)."""
    with _CACHE_LOCK:
        return {**_CACHE_STATS, "cached": len(_CACHE)}

"""Backbones from timm and open_clip beside torchvision's: names, preprocessing, weights, build.

`embedding.model` names a model of one of three families:

- `resnet18`, `convnext_tiny`, ... : torchvision classifiers (`winnow.embedding.MODELS`);
- `timm:<name>`, e.g. `timm:vit_small_patch14_dinov2.lvd142m`: any timm model, the tag after
  the dot naming its pretrained weights; the embedding is the model's pooled features
  (`num_classes=0`: the CLS token of a ViT, the global pool of a CNN);
- `open_clip:<arch>/<tag>`, e.g. `open_clip:ViT-B-32/laion2b_s34b_b79k`: a CLIP-family model
  (CLIP, SigLIP, MobileCLIP, Perception Encoder); the embedding is its projected image
  embedding (`encode_image`), which its text tower (`encode_text`) shares, so words can query
  the pool.

Preprocessing comes from the model's own config: input size, mean and std (and the model's
interpolation, which is recorded). Frames are decoded at that square size as for every model
(the whole frame, bilinear, inside PyAV/Pillow: curation must see the frame's edges, which a
center crop would drop).

Pretrained weights are looked up, never downloaded here: the Hugging Face cache (`HF_HOME`,
`HF_HUB_CACHE`), then torch's hub cache (`TORCH_HOME`) for weights published by URL. A missing
file is one `WeightsUnavailable` line naming the model, the paths looked in and the command
that pre-fetches it. Nothing in this module imports torch, timm or open_clip at import time.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from winnow.errors import ConfigError, WeightsUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np
    import torch

TIMM = "timm:"
OPEN_CLIP = "open_clip:"
_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
TIMM_RE = re.compile(rf"^timm:({_PART})$")
OPEN_CLIP_RE = re.compile(rf"^open_clip:({_PART})/({_PART})$")
NAME_PATTERN = rf"^(timm:{_PART}|open_clip:{_PART}/{_PART}|[a-z0-9_]+)$"
"""JSON-schema pattern of `embedding.model` (the Prefect server checks it before a run)."""

_HF_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's hub files, preferred first
_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class Backbone:
    """A parsed `embedding.model` of the timm or open_clip family.

    Attributes:
        family: `timm` or `open_clip`.
        arch: timm model name (with its tag, e.g. `vit_small_patch14_dinov2.lvd142m`) or
            open_clip architecture (`ViT-B-32`).
        tag: open_clip's pretrained tag (`laion2b_s34b_b79k`); None for timm.
    """

    family: str
    arch: str
    tag: str | None = None

    @property
    def name(self) -> str:
        """The name as users write it (and as the pool records it)."""
        if self.family == "timm":
            return f"{TIMM}{self.arch}"
        return f"{OPEN_CLIP}{self.arch}/{self.tag}"


def parse(value: str) -> Backbone | None:
    """The backbone a `timm:` or `open_clip:` name stands for; None for a torchvision name.

    Raises:
        ConfigError: If the name has a family prefix but not its form.
    """
    if value.startswith(TIMM):
        if not (m := TIMM_RE.match(value)):
            raise ConfigError(
                f"embedding model {value!r}: write timm models as 'timm:<name>', e.g. "
                "'timm:vit_small_patch14_dinov2.lvd142m'"
            )
        return Backbone("timm", m.group(1))
    if value.startswith(OPEN_CLIP):
        if not (m := OPEN_CLIP_RE.match(value)):
            raise ConfigError(
                f"embedding model {value!r}: write open_clip models as "
                "'open_clip:<arch>/<pretrained tag>', e.g. 'open_clip:ViT-B-32/laion2b_s34b_b79k'"
            )
        return Backbone("open_clip", m.group(1), m.group(2))
    return None


def check_known(backbone: Backbone) -> None:
    """Refuse a model or tag the library does not know (imports timm or open_clip).

    Raises:
        ConfigError: Naming the closest known names.
    """
    if backbone.family == "timm":
        import timm

        if not timm.is_model(backbone.arch):
            close = difflib.get_close_matches(backbone.arch, timm.list_models(), n=3, cutoff=0.6)
            raise ConfigError(
                f"unknown timm model {backbone.arch!r}"
                + (f" (close: {', '.join(close)})" if close else "")
                + "; `timm.list_models('*dinov2*')` lists names"
            )
        if "." in backbone.arch and _timm_cfg(backbone.arch) is None:
            arch = backbone.arch.split(".")[0]
            tags = timm.list_pretrained(f"{arch}.*")
            raise ConfigError(
                f"timm model {backbone.arch!r} has no such pretrained tag; known: "
                f"{', '.join(tags[:8]) or 'none'}"
            )
        return
    import open_clip

    if backbone.arch not in open_clip.list_models():
        close = difflib.get_close_matches(backbone.arch, open_clip.list_models(), n=3, cutoff=0.6)
        raise ConfigError(
            f"unknown open_clip architecture {backbone.arch!r}"
            + (f" (close: {', '.join(close)})" if close else "")
            + "; `open_clip.list_pretrained()` lists (arch, tag) pairs"
        )
    if not open_clip.get_pretrained_cfg(backbone.arch, backbone.tag):
        tags = open_clip.list_pretrained_tags_by_model(backbone.arch)
        raise ConfigError(
            f"open_clip model {backbone.arch!r} has no pretrained tag {backbone.tag!r}; known: "
            f"{', '.join(tags) or 'none'}"
        )


# --------------------------------------------------------------------------------------------
# what the pool records: width, preprocessing


@dataclass(frozen=True)
class Preprocess:
    """How frames become the model's input.

    Attributes:
        input_size: Square size frames are decoded at.
        mean: Per-channel mean (0..1 scale) subtracted before the model.
        std: Per-channel std divided by.
        interpolation: The model's own resize interpolation (recorded; decoding is bilinear).
    """

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str

    def describe(self) -> str:
        """The form the pool records (`ModelRecord.preprocess`): a change means re-embedding."""

        def nums(values: tuple[float, ...]) -> str:
            return ",".join(f"{v:.4f}" for v in values)

        return (
            f"resize=squash/bilinear({self.input_size}) mean={nums(self.mean)} "
            f"std={nums(self.std)} model_interpolation={self.interpolation}"
        )


@dataclass(frozen=True)
class Info:
    """What a backbone is, known without its weights.

    Attributes:
        backbone: The model.
        dim: Width of the embedding.
        preprocess: Its input.
        has_text: Whether it has a text tower (CLIP family).
    """

    backbone: Backbone
    dim: int
    preprocess: Preprocess
    has_text: bool


@functools.lru_cache(maxsize=32)
def info(backbone: Backbone, input_size: int | None) -> Info:
    """Width and preprocessing of a backbone at `input_size` (None: the model's own size).

    Builds the model on torch's meta device (no memory, no weights) to read its width.

    Raises:
        ConfigError: If the model is unknown or does not run at that size.
    """
    import torch

    check_known(backbone)
    if backbone.family == "timm":
        cfg = _timm_cfg(backbone.arch) or {}
        size = input_size or int(cfg.get("input_size", (3, 224, 224))[-1])
        pre = Preprocess(
            input_size=size,
            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
            interpolation=str(cfg.get("interpolation", "bilinear")),
        )
        with torch.device("meta"):
            model = _create_timm(backbone, size=size, input_size=input_size)
            try:
                dim = int(model(torch.empty(1, 3, size, size)).shape[-1])
            except Exception as exc:  # a fixed-size model asked to run at another size
                raise ConfigError(
                    f"{backbone.name} does not run at input_size={size}: {exc}"
                ) from exc
        return Info(backbone, dim, pre, has_text=False)
    import open_clip

    model_cfg = open_clip.get_model_config(backbone.arch)
    tag_cfg = open_clip.get_pretrained_cfg(backbone.arch, backbone.tag)
    vision = model_cfg["vision_cfg"]
    own = vision.get("image_size", 224)
    own = own[0] if isinstance(own, list | tuple) else own
    pre = Preprocess(
        input_size=input_size or int(own),
        mean=tuple(tag_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(tag_cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        interpolation=str(tag_cfg.get("interpolation", "bicubic")),
    )
    return Info(backbone, int(model_cfg["embed_dim"]), pre, has_text=True)


def _timm_cfg(name: str) -> dict[str, Any] | None:
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # a known architecture with an unknown tag
        return None
    return cfg.to_dict() if cfg is not None else None


# --------------------------------------------------------------------------------------------
# weights: found in the usual caches, never downloaded


def pretrained_file(backbone: Backbone) -> Path:
    """The local file of a backbone's pretrained weights, from the caches.

    Looks in the Hugging Face hub cache (`HF_HUB_CACHE`, under `HF_HOME`) for the files the
    library itself would fetch, then in torch's hub cache (`TORCH_HOME/hub/checkpoints`, and
    `~/.cache/clip` for open_clip) for weights published by URL.

    Raises:
        WeightsUnavailable: One line: the model, every place looked in and how to pre-fetch.
    """
    repo, files, url = _weights_source(backbone)
    looked: list[str] = []
    if repo:
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in files:
            found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        looked.append(f"{folder} ({' or '.join(files)})")
    if url:
        for folder in _url_caches(backbone):
            candidate = folder / os.path.basename(url)
            if candidate.is_file():
                return candidate
            looked.append(str(candidate))
    fetch = (
        f"`hf download {repo} {files[0]}` (huggingface_hub's CLI; set HF_HOME to the cache the "
        "workers read)"
        if repo
        else f"download {url} into {_url_caches(backbone)[0]}"
    )
    raise WeightsUnavailable(
        f"the pretrained weights of {backbone.name} are not on this worker (looked in "
        f"{'; '.join(looked) or 'no cache: the model publishes no weights'}) and are never "
        f"downloaded during a run. Pre-fetch them on a machine with internet: {fetch}, then "
        "copy the cache to the worker; or pass a checkpoint as embedding.weights (a path, a "
        "URL or pool:<model-id>), or weights='none' for random weights (tests only)."
    )


def _weights_source(backbone: Backbone) -> tuple[str | None, tuple[str, ...], str | None]:
    """(Hugging Face repo, its candidate files, URL) the library would fetch the weights from."""
    if backbone.family == "timm":
        cfg = _timm_cfg(backbone.arch) or {}
        files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HF_FILES
        return cfg.get("hf_hub_id") or None, files, cfg.get("url") or None
    import open_clip

    cfg = open_clip.get_pretrained_cfg(backbone.arch, backbone.tag) or {}
    hub = cfg.get("hf_hub", "")
    if hub:
        # open_clip's form: 'org/repo/' (its default file) or 'org/repo/<file>'
        repo, filename = os.path.split(hub)
        if filename:
            stem, ext = os.path.splitext(filename)
            files = (stem + ".safetensors", filename) if ext in (".bin", ".pth") else (filename,)
        else:
            files = _CLIP_FILES
        return repo, files, cfg.get("url") or None
    return None, (), cfg.get("url") or None


def _url_caches(backbone: Backbone) -> list[Path]:
    import torch

    folders = [Path(torch.hub.get_dir()) / "checkpoints"]
    if backbone.family == "open_clip":
        folders.append(Path("~/.cache/clip").expanduser())
    return folders


def weights_digest(path: Path, sha256: Callable[[Path], str]) -> str:
    """SHA-256 of a weights file: free for the Hugging Face cache, whose blobs are named by it.

    Args:
        path: The file (a hub cache snapshot entry links to `blobs/<sha256>`).
        sha256: Hashes a file when its name does not say.
    """
    blob = Path(os.path.realpath(path)).name
    if re.fullmatch(r"[0-9a-f]{64}", blob):
        return blob
    return sha256(path)


# --------------------------------------------------------------------------------------------
# building


@dataclass
class Built:
    """A backbone ready to prepare: its image module and, for CLIP, its text encoder.

    Attributes:
        image: Module mapping a normalised (N, 3, S, S) batch to (N, D) features.
        text: Maps strings to (N, D) un-normalised features on the module's device, or None.
        channels_last: Whether the NHWC layout suits it (CNNs; not ViTs).
    """

    image: torch.nn.Module
    text: Callable[[Sequence[str]], torch.Tensor] | None
    channels_last: bool


def _create_timm(backbone: Backbone, *, size: int, input_size: int | None, **kwargs: Any) -> Any:
    """timm.create_model without a head; `img_size` for a ViT run at another size."""
    import timm

    if input_size is not None:
        try:
            return timm.create_model(backbone.arch, num_classes=0, img_size=size, **kwargs)
        except TypeError:  # a CNN: any size runs, the constructor takes no img_size
            pass
    return timm.create_model(backbone.arch, num_classes=0, **kwargs)


def build(
    backbone: Backbone,
    *,
    input_size: int | None,
    seed: int,
    pretrained: Path | None = None,
) -> Built:
    """Build a backbone with random weights from `seed`, or the library's pretrained ones.

    Args:
        backbone: The model.
        input_size: Square input size; None for the model's own.
        seed: Seed of the random initialisation (used when `pretrained` is None).
        pretrained: A cached pretrained file, loaded by the library's own loader (timm's
            filters adapt original checkpoints, e.g. DINOv2's; open_clip resizes positional
            embeddings).

    Returns:
        The modules, in eval mode, on the CPU.

    Raises:
        ConfigError: If the library cannot load the file into the model.
    """
    import torch

    size = info(backbone, input_size).preprocess.input_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if backbone.family == "timm":
                overlay = (
                    {"pretrained_cfg_overlay": {"file": str(pretrained)}} if pretrained else {}
                )
                model = _create_timm(
                    backbone,
                    size=size,
                    input_size=input_size,
                    pretrained=pretrained is not None,
                    **overlay,
                )
                return Built(
                    model.eval().requires_grad_(False),
                    None,
                    channels_last=not hasattr(model, "patch_embed"),
                )
            return _build_clip(backbone, input_size=input_size, pretrained=pretrained)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ConfigError(
                f"cannot load {pretrained} into {backbone.name}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc


def _build_clip(backbone: Backbone, *, input_size: int | None, pretrained: Path | None) -> Built:
    import open_clip
    import torch

    tag_cfg = open_clip.get_pretrained_cfg(backbone.arch, backbone.tag) or {}
    model = open_clip.create_model(
        backbone.arch,
        pretrained=str(pretrained) if pretrained else None,
        force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
        force_image_size=input_size,
    )
    model = model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(backbone.arch)

    class ImageTower(torch.nn.Module):
        """The CLIP model seen as an image encoder (its text tower rides along)."""

        def __init__(self, clip: torch.nn.Module) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_image(x)

    image = ImageTower(model)

    def text(texts: Sequence[str]) -> torch.Tensor:
        device = next(image.parameters()).device
        return image.clip.encode_text(tokenizer(list(texts)).to(device))

    return Built(image, text, channels_last=False)


def clip_state_dict_target(built: Built) -> torch.nn.Module:
    """The module whose state_dict a checkpoint of this backbone holds (the CLIP model)."""
    return getattr(built.image, "clip", built.image)


def as_numpy(features: torch.Tensor) -> np.ndarray:
    """L2-normalised float16 rows, as the pool stores them."""
    import torch

    return torch.nn.functional.normalize(features.float(), dim=1).to(torch.float16).cpu().numpy()

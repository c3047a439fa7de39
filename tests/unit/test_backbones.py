"""timm and open_clip backbones: names, preprocessing, weights from caches, records, text."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.conftest import make_run
from winnow import backbones, embedding, scale
from winnow.datapool import Datapool, Manifest
from winnow.embedding import EmbeddingOptions, load_embedder, model_record
from winnow.errors import ConfigError, ModelMismatch, WeightsUnavailable
from winnow.media import FrameOptions
from winnow.records import ModelRecord
from winnow.storage import LocalStore

ROOT = Path(__file__).resolve().parents[2]
DINO = "timm:vit_small_patch14_dinov2.lvd142m"
CLIP = "open_clip:ViT-B-32/laion2b_s34b_b79k"
VIT_SIZE = 56  # 4 x 4 patches of 14 px: a ViT-S forward costs milliseconds on 2 cores
CLIP_SIZE = 64  # 2 x 2 patches of 32 px


def _frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _dino(**values) -> EmbeddingOptions:
    return EmbeddingOptions(
        **{"model": DINO, "weights": "none", "input_size": VIT_SIZE, "batch_size": 4, **values}
    )


def _clip(**values) -> EmbeddingOptions:
    return EmbeddingOptions(
        **{"model": CLIP, "weights": "none", "input_size": CLIP_SIZE, "batch_size": 4, **values}
    )


@pytest.fixture(scope="module")
def dino() -> embedding.Embedder:
    return load_embedder(_dino())


@pytest.fixture(scope="module")
def clip() -> embedding.Embedder:
    return load_embedder(_clip())


@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> Path:
    """Empty Hugging Face and torch hub caches (what an offline worker without weights has)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # open_clip's ~/.cache/clip
    return tmp_path


def _put_in_hf_cache(hub: Path, repo: str, filename: str, data: bytes) -> Path:
    """Lay a file out as huggingface_hub does: blobs/<sha256>, snapshots/<rev>/<file> -> blob."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    digest = hashlib.sha256(data).hexdigest()
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / digest).write_bytes(data)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    snap = folder / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / filename).symlink_to(folder / "blobs" / digest)
    return snap / filename


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ("timm:", "timm:<name>"),
        ("timm:vit_small_patch14_dinov3_typo", "unknown timm model"),
        ("timm:vit_small_patch14_dinov2.nosuchtag", "no such pretrained tag"),
        ("open_clip:ViT-B-32", "open_clip:<arch>/<pretrained tag>"),
        ("open_clip:ViT-B-99/laion2b_s34b_b79k", "unknown open_clip architecture"),
        ("open_clip:ViT-B-32/nosuchtag", "no pretrained tag 'nosuchtag'"),
        ("vgg11", "resnet18"),
        ("timm:../../etc/passwd", "timm:<name>"),
    ],
)
def test_a_bad_model_name_is_rejected_when_the_options_are_validated(model, match):
    with pytest.raises(ValidationError, match=match):
        EmbeddingOptions(model=model)


def test_family_names_are_accepted_and_recorded_as_written():
    assert _dino().model == DINO and _clip().model == CLIP
    assert EmbeddingOptions(model=" timm:resnet18.a1_in1k ").model == "timm:resnet18.a1_in1k"


# -- preprocessing and records -----------------------------------------------------------


def test_records_carry_the_models_own_size_mean_std_and_width():
    dino = model_record(_dino(input_size=None))
    assert (dino.input_size, dino.dim) == (518, 384)  # DINOv2's own config
    assert "mean=0.4850,0.4560,0.4060" in dino.preprocess
    clip = model_record(_clip(input_size=None))
    assert (clip.input_size, clip.dim) == (224, 512)
    assert "mean=0.4815,0.4578,0.4082 std=0.2686,0.2613,0.2758" in clip.preprocess
    # torchvision records stay as pools before this change wrote them: no preprocess field.
    assert model_record(EmbeddingOptions(weights="none")).preprocess is None
    assert model_record(EmbeddingOptions(weights="none")).input_size == 224


def test_the_embedder_normalises_with_the_models_mean_and_std(clip):
    pixels = _frames(3, CLIP_SIZE)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(clip.module.clip.encode_image(x), dim=1)
    got = clip.embed(pixels).astype(np.float32)
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-3)


@pytest.mark.parametrize("fixture", ["dino", "clip"])
def test_each_family_embeds_unit_norm_float16_of_its_width(fixture, request):
    embedder = request.getfixturevalue(fixture)
    size = embedder.input_size
    out = embedder.embed(_frames(5, size))
    assert out.dtype == np.float16 and out.shape == (5, embedder.record.dim)
    np.testing.assert_allclose(np.linalg.norm(out.astype(np.float32), axis=1), 1, atol=1e-2)
    assert len({row.tobytes() for row in out}) == 5  # distinct frames, distinct embeddings
    np.testing.assert_array_equal(out, embedder.embed(_frames(5, size)))  # deterministic


# -- weights ------------------------------------------------------------------------------


def test_missing_weights_are_one_line_naming_model_cache_and_how_to_fetch(empty_caches):
    with pytest.raises(WeightsUnavailable) as info:
        model_record(_dino(weights="default"))
    message = str(info.value)
    assert "\n" not in message
    assert DINO in message
    assert str(empty_caches / "hf" / "hub" / "models--timm--vit_small_patch14_dinov2.lvd142m") in (
        message
    )
    assert str(empty_caches / "torch" / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth") in (
        message
    )
    assert "hf download timm/vit_small_patch14_dinov2.lvd142m model.safetensors" in message
    with pytest.raises(WeightsUnavailable, match="laion/CLIP-ViT-B-32-laion2B-s34B-b79K"):
        load_embedder(_clip(weights="default"))


@pytest.mark.slow
def test_pretrained_weights_load_from_the_hf_cache_and_their_hash_is_recorded(empty_caches):
    from safetensors.torch import save

    trained = load_embedder(_dino(seed=5))  # stands for the published weights
    state = {k: v.contiguous() for k, v in trained.module.state_dict().items()}
    data = save(state)
    _put_in_hf_cache(
        empty_caches / "hf" / "hub",
        "timm/vit_small_patch14_dinov2.lvd142m",
        "model.safetensors",
        data,
    )
    record = model_record(_dino(weights="default"))
    assert record.weights == f"pretrained:{hashlib.sha256(data).hexdigest()[:16]}"
    loaded = load_embedder(_dino(weights="default"))
    frames = _frames(4, VIT_SIZE)
    np.testing.assert_array_equal(loaded.embed(frames), trained.embed(frames))
    assert not np.array_equal(loaded.embed(frames), load_embedder(_dino(seed=0)).embed(frames))


@pytest.mark.slow
def test_a_checkpoint_written_by_the_test_loads_strictly_from_a_path_or_the_pool(tmp_path, dino):
    trained = load_embedder(_dino(seed=3))
    path = tmp_path / "dino.pt"
    head = {"head.weight": torch.zeros(10, 384), "head.bias": torch.zeros(10)}  # ignored
    torch.save({"state_dict": {**trained.module.state_dict(), **head}}, path)
    frames = _frames(3, VIT_SIZE)
    from_path = load_embedder(_dino(weights=str(path)))
    np.testing.assert_array_equal(from_path.embed(frames), trained.embed(frames))
    assert from_path.record.weights.startswith("checkpoint:")

    pool = LocalStore(tmp_path / "pool")
    pool.put(embedding.pool_model_key("dino-ft"), path.read_bytes())
    from_pool = load_embedder(_dino(weights="pool:dino-ft"), pool=pool)
    np.testing.assert_array_equal(from_pool.embed(frames), trained.embed(frames))

    wrong = tmp_path / "resnet.pt"
    torch.save(embedding._build_trunk(embedding.MODELS["resnet18"], seed=0).state_dict(), wrong)
    with pytest.raises(ConfigError, match="does not fit model 'timm:vit_small_patch14_dinov2"):
        load_embedder(_dino(weights=str(wrong)))


# -- the re-embed rule --------------------------------------------------------------------


def test_a_pool_written_before_preprocess_was_recorded_still_matches_its_model():
    old = {
        "format": "winnow-datapool/1",
        "version": 1,
        "parent": 0,
        "run_id": "r1",
        "created": "2026-01-01T00:00:00+00:00",
        "model": {"name": "resnet18", "weights": "none:seed=0", "input_size": 64, "dim": 512},
        "parts": {"files": [], "samples": [], "tags": []},
        "counts": {},
    }
    from winnow.datapool import FORMAT

    old["format"] = FORMAT
    manifest = Manifest.from_json(json.dumps(old).encode(), "versions/1.json")
    assert manifest.model == model_record(EmbeddingOptions(weights="none", input_size=64))


def test_a_change_of_model_weights_or_preprocessing_is_refused_by_the_pool(tmp_path):
    pool = Datapool(LocalStore(tmp_path / "pool"))
    files, cands = make_run(["cam/a.mp4"], frames=3)
    built = model_record(_dino())
    pool.commit(base=pool.load(), run_id="r1", files=files, samples=cands, tag=None, model=built)
    snapshot = pool.load()
    snapshot.check_model(model_record(_dino()))  # the same model: no re-embedding
    changed = {
        "weights": model_record(_dino(seed=1)),
        "input size": model_record(_dino(input_size=70)),
        "preprocessing": ModelRecord(**{**built.__dict__, "preprocess": "mean=0,0,0 std=1,1,1"}),
        "model": model_record(_clip()),
    }
    for what, record in changed.items():
        with pytest.raises(ModelMismatch, match="winnow reembed"):
            snapshot.check_model(record)
        assert record != built, what


# -- text ---------------------------------------------------------------------------------


def test_text_embeddings_are_unit_rows_of_the_image_width_one_per_text(clip):
    texts = clip.embed_texts(["cyclists at night", "a red car"])
    assert texts.dtype == np.float16 and texts.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(texts.astype(np.float32), axis=1), 1, atol=1e-2)
    assert not np.array_equal(texts[0], texts[1])
    np.testing.assert_allclose(
        texts[:1].astype(np.float32), clip.embed_texts(["cyclists at night"]), atol=1e-3
    )


def test_a_text_query_on_a_model_without_a_text_tower_is_one_clear_error(dino):
    with pytest.raises(
        ConfigError, match=r"timm:vit_small_patch14_dinov2.lvd142m has none.*open_clip"
    ):
        dino.embed_texts(["cyclists at night"])


def test_a_pool_model_is_rebuilt_from_its_record_for_queries(tmp_path):
    record = model_record(_clip(seed=4))
    options = embedding.options_for_record(record)
    assert (options.weights, options.seed, options.input_size) == ("none", 4, CLIP_SIZE)
    ckpt = model_record(EmbeddingOptions(weights=str(_write(tmp_path / "c.pt"))))
    with pytest.raises(ConfigError, match="loaded from a checkpoint: pass it"):
        embedding.options_for_record(ckpt)


def _write(path: Path) -> Path:
    path.write_bytes(b"bytes whose hash names the checkpoint")
    return path


# -- fan-out ------------------------------------------------------------------------------

_CHILD = """
import sys, numpy as np
from winnow import scale
from winnow.embedding import cached_embedder
spec = scale.GroupSpec.from_json(open(sys.argv[1], "rb").read(), "group")
embedder = cached_embedder(spec.embedding_options)
frames = np.load(sys.argv[2])
np.save(sys.argv[3], embedder.embed(frames))
print(repr(embedder.record))
"""


@pytest.mark.slow
def test_a_fan_out_child_loads_the_same_model_as_the_parent(tmp_path, dino):
    options = _dino(seed=2)
    parent = load_embedder(options)
    job = scale.EmbedJob(
        plan_hash="p", source=str(tmp_path), frames=FrameOptions(), embedding=options
    )
    group = scale.Group(group_id="g", shards=())
    (tmp_path / "group.json").write_bytes(job.describe(group).to_json())
    frames = _frames(4, VIT_SIZE)
    np.save(tmp_path / "frames.npy", frames)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "group.json", "frames.npy", "child.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == repr(parent.record)
    np.testing.assert_array_equal(np.load(tmp_path / "child.npy"), parent.embed(frames))


def test_backbone_names_parse_to_their_family():
    assert backbones.parse(DINO) == backbones.Backbone("timm", "vit_small_patch14_dinov2.lvd142m")
    assert backbones.parse(CLIP) == backbones.Backbone("open_clip", "ViT-B-32", "laion2b_s34b_b79k")
    assert backbones.parse("resnet18") is None

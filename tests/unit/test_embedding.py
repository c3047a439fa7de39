"""Embedding models: registry, weights fingerprints and loading, inference invariants."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from winnow import device, embedding
from winnow.embedding import EmbeddingOptions, load_embedder, model_record
from winnow.errors import ConfigError, WeightsUnavailable

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64  # small frames keep resnet18 fast on 2 cores


def _frames(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def _options(**values) -> EmbeddingOptions:
    return EmbeddingOptions(
        **{"model": "resnet18", "weights": "none", "input_size": SIZE, "batch_size": 4, **values}
    )


@pytest.fixture(scope="module")
def embedder() -> embedding.Embedder:
    return load_embedder(_options())


def test_model_record_fingerprints_each_kind_of_weights(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not really a checkpoint, but records only hash the bytes")
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]

    assert model_record(EmbeddingOptions()).weights == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    assert model_record(EmbeddingOptions(weights="none", seed=7)).weights == "none:seed=7"
    assert model_record(EmbeddingOptions(weights=str(ckpt))).weights == f"checkpoint:{digest}"
    record = model_record(EmbeddingOptions(model="resnet50", input_size=160))
    assert (record.name, record.weights, record.input_size, record.dim) == (
        "resnet50",
        "torchvision:ResNet50_Weights.IMAGENET1K_V2",
        160,
        2048,
    )


def test_model_record_is_cheap_it_imports_no_torch():
    code = (
        "import sys; from winnow.embedding import EmbeddingOptions, model_record; "
        "model_record(EmbeddingOptions(model='convnext_tiny')); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_model_record_of_a_missing_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        model_record(EmbeddingOptions(weights=str(tmp_path / "missing.pt")))


@pytest.mark.parametrize("name", sorted(embedding.MODELS))
def test_registry_matches_torchvision_defaults_and_dims(name):
    import torchvision

    spec = embedding.MODELS[name]
    assert str(torchvision.models.get_model_weights(name).DEFAULT) == spec.weights
    try:
        with torch.device("meta"):  # shapes only: no memory, no init cost
            out = embedding._build_trunk(spec, seed=0)(torch.empty(1, 3, 64, 64))
    except NotImplementedError:  # regnet's builder reads tensor values
        with torch.inference_mode():
            out = embedding._build_trunk(spec, seed=0)(torch.zeros(1, 3, 64, 64))
    assert tuple(out.shape) == (1, spec.dim)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"input_size": 16}, "greater than or equal to 32"),
        ({"input_size": 2048}, "less than or equal to 1024"),
        ({"batch_size": 0}, "greater than or equal to 1"),
        ({"prefetch_batches": 0}, "greater than or equal to 1"),
        ({"decode_workers": 0}, "greater than or equal to 1"),
        ({"model": "vgg11"}, "resnet18"),
        ({"device": "tpu"}, "auto"),
        ({"precision": "int8"}, "fp16"),
        ({"weights": "https://example.com/w.pt"}, "local checkpoint path"),
        ({"batchsize": 8}, "Extra inputs are not permitted"),
    ],
)
def test_options_reject_bad_values(values, match):
    with pytest.raises(ValidationError, match=match):
        EmbeddingOptions(**values)


def test_options_normalise_weights_keywords():
    assert EmbeddingOptions(weights=" None ").weights == "none"
    assert EmbeddingOptions(weights="DEFAULT").weights == "default"


def test_every_option_has_a_description():
    for name, field in EmbeddingOptions.model_fields.items():
        assert field.description, name


def test_embeddings_are_unit_norm_float16_of_the_registry_dim(embedder):
    out = embedder.embed(_frames(6))
    assert out.dtype == np.float16
    assert out.shape == (6, 512) == (6, embedder.record.dim)
    norms = np.linalg.norm(out.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)
    assert embedder.embed(_frames(0)).shape == (0, 512)


def test_embed_is_deterministic_and_independent_of_batching(embedder):
    frames = _frames(5)
    first = embedder.embed(frames)
    np.testing.assert_array_equal(first, embedder.embed(frames))
    one_by_one = np.concatenate([embedder.embed(frames[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(one_by_one.astype(np.float32), first, atol=2e-3)
    pending = embedder.submit(frames[:3])
    np.testing.assert_allclose(pending.result().astype(np.float32), first[:3], atol=2e-3)


def test_different_frames_give_different_embeddings(embedder):
    out = embedder.embed(_frames(4)).astype(np.float32)
    sims = out @ out.T
    assert np.all(sims[~np.eye(4, dtype=bool)] < 0.9999)


def test_embed_rejects_frames_of_the_wrong_shape_or_dtype(embedder):
    with pytest.raises(ValueError, match=r"\(N, 64, 64, 3\)"):
        embedder.embed(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed(np.zeros((2, SIZE, SIZE, 3), np.float32))


@pytest.mark.slow
def test_random_weights_are_identical_in_another_process(tmp_path, embedder):
    frames = _frames(3, seed=1)
    np.save(tmp_path / "frames.npy", frames)
    code = textwrap.dedent(
        f"""
        import numpy as np
        from winnow.embedding import EmbeddingOptions, load_embedder
        e = load_embedder(EmbeddingOptions(weights="none", input_size={SIZE}, batch_size=4))
        np.save({str(tmp_path / "out.npy")!r}, e.embed(np.load({str(tmp_path / "frames.npy")!r})))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), embedder.embed(frames))


def test_the_seed_changes_random_weights_and_the_global_rng_is_untouched(embedder):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    other = load_embedder(_options(seed=1))
    assert torch.equal(torch.rand(3), expected)
    frames = _frames(2)
    assert not np.allclose(other.embed(frames), embedder.embed(frames), atol=1e-2)


def _trunk_state(seed: int) -> dict[str, torch.Tensor]:
    return embedding._build_trunk(embedding.MODELS["resnet18"], seed=seed).state_dict()


@pytest.fixture(scope="module")
def seed5() -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """A trunk state_dict and the embeddings of `_frames(2)` with weights='none', seed=5."""
    return _trunk_state(seed=5), load_embedder(_options(seed=5)).embed(_frames(2))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {**sd, "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)},
    ],
    ids=["plain", "state_dict-key", "model-key-ddp-prefix", "with-a-10-class-head"],
)
def test_checkpoints_load_whatever_their_wrapping(tmp_path, wrap, seed5):
    state, expected = seed5
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(state), path)
    loaded = load_embedder(_options(weights=str(path)))
    np.testing.assert_array_equal(loaded.embed(_frames(2)), expected)
    assert loaded.record.weights.startswith("checkpoint:")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00garbage that is not a torch file", "cannot be read as a PyTorch state_dict"),
        ({"epoch": 3}, "holds no state_dict"),
        ("resnet34", "does not fit model 'resnet18'.*unexpected keys"),
        ("truncated", "cannot be read as a PyTorch state_dict"),
    ],
)
def test_bad_checkpoints_are_config_errors(tmp_path, content, match, seed5):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "resnet34":
        torch.save(embedding._build_trunk(embedding.MODELS["resnet34"], seed=0).state_dict(), path)
    elif content == "truncated":
        torch.save(seed5[0], path)
        path.write_bytes(path.read_bytes()[:5000])
    else:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=match):
        load_embedder(_options(weights=str(path)))


def _network_works() -> bool:
    try:
        socket.create_connection(("download.pytorch.org", 443), timeout=2).close()
        return True
    except OSError:
        return False


def test_default_weights_offline_fail_fast_with_weights_unavailable(tmp_path, monkeypatch):
    if _network_works():
        pytest.skip("this host can reach download.pytorch.org")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(WeightsUnavailable, match="weights='none'.*TORCH_HOME|TORCH_HOME.*'none'"):
        load_embedder(_options(weights="default"))
    assert not list((tmp_path / "torch-home").rglob("*.pth"))  # no partial download left


def test_device_and_precision_resolution_on_this_host():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.resolve_device("auto").type == expected
    assert device.resolve_device("cpu") == cpu
    assert embedding.resolve_precision("auto", cpu) is None
    assert embedding.resolve_precision("auto", cuda) is torch.float16
    assert embedding.resolve_precision("fp32", cuda) is None
    assert embedding.resolve_precision("fp16", cuda) is torch.float16
    assert embedding.resolve_precision("bf16", cpu) is torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no usable CUDA GPU"):
            device.resolve_device("cuda")
        with pytest.raises(ConfigError, match="no usable CUDA GPU"):
            load_embedder(_options(device="cuda"))


def test_model_runs_channels_last_and_autocast_stays_close_to_fp32(embedder):
    conv = embedder.module.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    bf16 = load_embedder(_options(precision="bf16"))
    assert bf16.autocast_dtype is torch.bfloat16
    frames = _frames(3)
    a, b = bf16.embed(frames).astype(np.float32), embedder.embed(frames).astype(np.float32)
    assert np.all(np.sum(a * b, axis=1) > 0.98)


def test_compile_option_wraps_the_model_with_torch_compile(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: calls.append(module) or module)
    load_embedder(_options(compile=True))
    assert len(calls) == 1


@pytest.mark.slow
def test_compiled_module_matches_eager_on_a_tiny_model():
    tiny = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = tiny(x)
        compiled = embedding.prepare_module(
            tiny, device=torch.device("cpu"), channels_last=True, compile=True
        )(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)

"""timm and open_clip backbones through the flows: curate on local and S3 output, a text query
that selects and searches, a preprocessing change refused then re-embedded, `winnow similar`.

Models are randomly initialised (`weights: none`: no weights can be fetched here) and run at
small input sizes (DINOv2 ViT-S/14 at 56 px, CLIP ViT-B/32 at 64 px) so a flow takes seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.integration.conftest import run
from winnow import demo, search
from winnow.datapool import Datapool
from winnow.embedding import EmbeddingOptions, load_embedder
from winnow.errors import ModelMismatch
from winnow.storage import LocalStore, open_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

DINO = {"model": "timm:vit_small_patch14_dinov2.lvd142m", "weights": "none", "input_size": 56}
CLIP = {"model": "open_clip:ViT-B-32/laion2b_s34b_b79k", "weights": "none", "input_size": 64}
TEXT = "cyclists at night"
DEMO = {"n_videos": 2, "n_images": 2, "frames_per_video": 24, "width": 128, "height": 80}


@pytest.fixture
def bucket(backend):
    """(source URL, output URL, storage params, output store), the demo data in the source."""
    source, output, storage, options = backend
    demo.write_demo_files(open_store(source, options), **DEMO)
    return source, output, storage, open_store(output, options)


@pytest.mark.parametrize("model", [DINO, CLIP], ids=["timm-dinov2", "open_clip-vit-b-32"])
def test_each_family_curates_the_demo_data_and_the_pool_records_it(bucket, model):
    source, output, storage, out = bucket
    summary = run(source, output, storage, embedding={**model, "batch_size": 16})
    assert summary["files_new"] == 4 and summary["selected"] == 12

    snapshot = Datapool(out.child("pool")).load()
    embedder = load_embedder(EmbeddingOptions(**model))
    assert snapshot.model == embedder.record
    assert snapshot.model.name == model["model"] and "mean=" in snapshot.model.preprocess
    samples = snapshot.samples()
    assert samples.embedding.shape == (summary["candidates"], embedder.record.dim)
    norms = np.linalg.norm(samples.embedding.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1, atol=1e-2)


def test_a_text_query_selects_and_finds_the_frames_closest_under_the_same_model(tmp_path):
    source, output = tmp_path / "raw", tmp_path / "out"
    demo.write_demo_files(LocalStore(source), **DEMO)
    strategies = [{"type": "similarity", "texts": [TEXT]}]
    summary = run(
        str(source),
        str(output),
        embedding={**CLIP, "batch_size": 16},
        selection={"n_samples": 3, "strategies": strategies, "remove_exact_duplicates": False},
    )
    snapshot = Datapool(LocalStore(output / "pool")).load()
    samples = snapshot.samples()
    # What the test knows: the same model's text embedding against the stored embeddings.
    text = load_embedder(EmbeddingOptions(**CLIP)).embed_texts([TEXT]).astype(np.float32)
    distance = np.sqrt(np.maximum(2 - 2 * samples.embedding.astype(np.float32) @ text[0], 0))
    closest = [str(samples.sample_id[i]) for i in np.argsort(distance, kind="stable")]
    assert summary["selected"] == 3
    assert set(snapshot.tags[0].sample_ids) == set(closest[:3])

    hits = search.search_pool(snapshot, search.query_embeddings(snapshot, texts=[TEXT]), k=5)
    assert [h.sample_id for h in hits] == closest[:5]
    assert hits[0].tag == "run-0001" and hits[0].link

    from flows.cli import app

    result = CliRunner().invoke(
        app, ["similar", "--output", str(output), "--text", TEXT, "--k", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert [h["sample_id"] for h in json.loads(result.output)] == closest[:4]


def test_a_text_query_on_a_pool_without_a_text_tower_is_one_error_line(tmp_path):
    source, output = tmp_path / "raw", tmp_path / "out"
    demo.write_demo_files(LocalStore(source), **DEMO)
    run(str(source), str(output), embedding={**DINO, "batch_size": 16})
    from flows.cli import app

    result = CliRunner().invoke(app, ["similar", "--output", str(output), "--text", TEXT])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: text queries need a model with a text tower")


def test_a_preprocessing_change_is_refused_then_reembedded(tmp_path):
    from flows.reembed import reembed
    from winnow.training import ReembedParams

    source, output = tmp_path / "raw", tmp_path / "out"
    demo.write_demo_files(LocalStore(source), **DEMO)
    first = run(str(source), str(output), embedding={**DINO, "batch_size": 16})
    pool = Datapool(LocalStore(output / "pool"))
    before = pool.load().model

    demo.write_demo_files(LocalStore(source), n_videos=1, n_images=0, first=5, **_frames())
    changed = {**DINO, "input_size": 70, "batch_size": 16}
    with pytest.raises(ModelMismatch, match="winnow reembed"):
        run(str(source), str(output), embedding=changed)

    params = ReembedParams.model_validate({"output": str(output), "embedding": changed})
    result = reembed(**{n: getattr(params, n) for n in ReembedParams.model_fields})
    after = pool.load()
    assert result["samples"] == first["candidates"]
    assert after.model.input_size == 70 and after.model != before
    assert "squash/bilinear(70)" in after.model.preprocess
    assert run(str(source), str(output), embedding=changed)["files_new"] == 1


def _frames() -> dict:
    return {k: v for k, v in DEMO.items() if k in ("frames_per_video", "width", "height")}

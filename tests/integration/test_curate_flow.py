"""The curate flow end to end, on a local folder and on S3 over HTTP (moto's server)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.conftest import run
from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import open_store

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def bucket(backend):
    """(source URL, output URL, storage params, source store) on each backend."""
    source, output, storage, options = backend
    return source, output, storage, open_store(source, options)


def test_two_runs_then_a_noop(bucket):
    source, output, storage, store = bucket
    demo.write_demo_files(
        store, n_videos=3, n_images=3, first=0, frames_per_video=40, width=160, height=96
    )
    broken = demo.write_corrupt_files(store)

    # k-center (diversity), whose first pick this test checks; the default is herding.
    kcenter = {"selection": {"n_samples": 12, "strategies": ["diversity"]}}
    first = run(source, output, storage, **kcenter)
    assert first["files_new"] == 6 + len(broken)
    assert first["files_corrupt"] + first["files_skipped"] == len(broken)
    assert {k for k, _ in first["corrupt"]} == set(broken)
    assert first["selected"] == 12 and first["tag"] == "run-0001"

    demo.write_demo_files(
        store, n_videos=3, n_images=0, first=3, frames_per_video=40, width=160, height=96
    )
    second = run(source, output, storage, **kcenter)
    assert second["files_new"] == 3 and second["files_known"] == 6 + len(broken)
    assert second["tag"] == "run-0002" and second["selected"] == 12
    # Seeded by the first run's dataset: picks fill gaps, farther than random picks would be.
    assert second["mean_pick_distance"] > second["mean_random_distance"]
    assert second["coverage_after"] <= second["coverage_before"]

    third = run(source, output, storage, **kcenter)
    assert third["nothing_new"] and third["tag"] is None and third["pool_version_after"] is None

    out = open_store(output, _options(storage))
    pool = Datapool(out.child("pool")).load()
    assert pool.version == 2
    keys = pool.files.column("key").to_pylist()
    assert len(keys) == len(set(keys)) == 9 + len(broken)  # every file counted once
    assert [t.name for t in pool.tags] == ["run-0001", "run-0002"]
    assert pool.tags[1].parent == "run-0001"
    first_ids, second_ids = set(pool.tags[0].sample_ids), set(pool.tags[1].sample_ids)
    assert not first_ids & second_ids
    samples = pool.samples()
    run_of = dict(zip(samples.sample_id, samples.run_id, strict=True))
    assert {run_of[s] for s in second_ids} == {second["run_id"]}

    # The second selection was seeded by the first: its first pick is the run's candidate
    # farthest from the first tag's samples.
    dataset = pool.samples(first_ids).embedding.astype(np.float32)
    run2 = samples.take(np.flatnonzero(samples.run_id == second["run_id"]))
    emb = run2.embedding.astype(np.float32)
    nearest = np.sqrt(np.maximum(2 - 2 * emb @ dataset.T, 0)).min(axis=1)
    order = list(pool.tags[1].sample_ids)
    assert run2.sample_id[int(np.argmax(nearest))] == order[0]

    # Exports of the second tag.
    names = out.get("tags/run-0002/filenames.txt").decode().split()
    assert len(names) == 12
    for name in names:
        assert name.startswith("frames/") and out.exists(name)


def _options(storage: dict):
    from winnow.storage import S3Options

    return S3Options(**storage) if storage else None


def test_a_run_over_nothing_new_does_no_work(tmp_path):
    source = tmp_path / "raw"
    source.mkdir()
    summary = run(str(source), str(tmp_path / "out"))
    assert summary["nothing_new"] and summary["files_listed"] == 0
    assert not (tmp_path / "out" / "pool" / "versions").exists()


@pytest.mark.slow
def test_pool_weights_on_s3_come_through_the_runs_endpoint(s3_bucket, s3_endpoint, monkeypatch):
    """`pool:<model-id>` of an S3 pool is read with the run's storage options, not boto3's."""
    import io

    import torch

    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.storage import S3Options

    options = S3Options(endpoint_url=s3_endpoint, region="us-east-1")
    source, output = f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/curated"
    demo.write_demo_files(open_store(source, options), n_videos=0, n_images=3, width=64, height=48)
    small = {"model": "mobilenet_v3_small", "input_size": 64, "batch_size": 32, "device": "cpu"}
    trunk = load_embedder(EmbeddingOptions(**small, weights="none", seed=7)).module
    buf = io.BytesIO()
    torch.save(trunk.state_dict(), buf)
    open_store(output, options).put("pool/models/m7/model.pt", buf.getvalue())
    # boto3's own default endpoint refuses connections: only the run's endpoint reaches moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    storage = {"endpoint_url": s3_endpoint, "region": "us-east-1"}
    summary = run(source, output, storage, embedding={**small, "weights": "pool:m7"})
    assert summary["tag"] == "run-0001" and summary["candidates"] == 3
    assert summary["model"].startswith("mobilenet_v3_small (checkpoint:")
    pool = Datapool(open_store(output, options).child("pool")).load()
    assert pool.model.weights == summary["model"].split("(")[1].split(",")[0]

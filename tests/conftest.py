"""Shared fixtures and helpers: environment hygiene, a real S3 endpoint (moto's server over HTTP),
and small synthetic datapool runs."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from winnow.records import Candidates, FileResult, ModelRecord, TagRecord, sample_id_for

# Before anything imports Prefect: keep its state in a temporary home, no telemetry.
_PREFECT_HOME = tempfile.mkdtemp(prefix="winnow-test-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
# Credentials for moto only; boto3 must never find a real account from tests.
os.environ["AWS_ACCESS_KEY_ID"] = "testing-key-id"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing-secret-key"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 at a random port, for the whole session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket (name) on the moto server."""
    import boto3

    name = f"winnow-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Root URL of an empty store, on each backend."""
    if request.param == "local":
        return str(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/root"


@pytest.fixture
def s3_options(s3_endpoint: str):
    """Options that reach the moto server."""
    from winnow.storage import S3Options

    return S3Options(endpoint_url=s3_endpoint, region="us-east-1", max_attempts=2)


@pytest.fixture
def open_test_store(s3_options):
    """Open a store URL with the moto options (local paths ignore them)."""
    from winnow.storage import open_store

    return lambda url: open_store(url, s3_options)


# -- synthetic datapool runs ------------------------------------------------------------------

MODEL = ModelRecord(name="resnet18", weights="none:seed=0", input_size=64, dim=8)


def make_run(keys: list[str], frames: int = 3, seed: int = 0):
    """Files and candidates of a fake run over `keys` (videos of `frames` frames each)."""
    rng = np.random.default_rng(seed)
    files = [
        FileResult(
            key=k,
            fingerprint=f"fp-{k}",
            size_bytes=10,
            kind="video",
            status="ok",
            frames_total=frames,
            frames_sampled=frames,
            width=64,
            height=48,
        )
        for k in keys
    ]
    n = len(keys) * frames
    emb = rng.normal(size=(n, MODEL.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    key_col = np.array([k for k in keys for _ in range(frames)], dtype=object)
    idx = np.array([i for _ in keys for i in range(frames)], dtype=np.int64)
    cands = Candidates(
        sample_id=np.array(
            [sample_id_for(k, f"fp-{k}", int(i)) for k, i in zip(key_col, idx, strict=True)],
            dtype=object,
        ),
        key=key_col,
        fingerprint=np.array([f"fp-{k}" for k in key_col], dtype=object),
        content_hash=np.array([f"h{i}" for i in range(n)], dtype=object),
        frame_index=idx,
        pts_seconds=idx / 30.0,
        width=np.full(n, 64, np.int32),
        height=np.full(n, 48, np.int32),
        brightness=rng.random(n).astype(np.float32),
        contrast=rng.random(n).astype(np.float32),
        sharpness=rng.random(n).astype(np.float32),
        embedding=emb.astype(np.float16),
        run_id=np.array([""] * n, dtype=object),
    )
    return files, cands


def tag_for(name: str, cands: Candidates, parent=None) -> TagRecord:
    """A tag holding the first two of `cands`."""
    return TagRecord(
        name=name,
        parent=parent,
        run_id="r",
        created="2026-01-01T00:00:00+00:00",
        parameters="{}",
        counts="{}",
        sample_ids=tuple(cands.sample_id[:2]),
    )

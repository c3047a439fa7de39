"""Shared fixtures and helpers: environment hygiene, a real S3 endpoint (moto's server over HTTP),
and small synthetic datapool runs."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from winnow.records import Candidates, FileResult, ModelRecord, TagRecord, sample_id_for
from winnow.storage import ObjectStore

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


# -- a fault-injecting, request-recording HTTP proxy in front of the moto server ---------------

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


class FaultProxy:
    """Forward to `upstream`; the first `fail` requests get `mode` instead of an answer.

    Modes: `ok`, `slowdown` (503 SlowDown), `reset` (connection closed, no answer), `deny`
    (403 AccessDenied on every request). Every request's signing key id (the `Credential=`
    of its `Authorization` header) is recorded in `key_ids`, in order, and its method and
    bucket-relative key (decoded) in `requests`. `hook(method, key)`, when given, is called
    for each request that `mode` lets through: None forwards it (the hook may act first,
    e.g. change the object), `(status, code)` answers with that S3 error instead.
    """

    def __init__(
        self, upstream: str, hook: Callable[[str, str], tuple[int, str] | None] | None = None
    ) -> None:
        import http.client
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import unquote, urlsplit

        self.upstream = urlsplit(upstream)
        self.mode, self.fail, self.seen = "ok", 0, 0
        self.hook = hook
        self.key_ids: list[str | None] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self
        credential = re.compile(r"Credential=([^/,\s]+)/")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = credential.search(self.headers.get("Authorization") or "")
                path = urlsplit(self.path).path
                key = unquote(path.split("/", 2)[2]) if path.count("/") >= 2 else ""
                with proxy.lock:
                    proxy.seen += 1
                    proxy.key_ids.append(found.group(1) if found else None)
                    proxy.requests.append((self.command, key))
                    fault = proxy.mode if proxy.fail > 0 or proxy.mode == "deny" else "ok"
                    proxy.fail -= 1 if proxy.fail > 0 else 0
                if fault == "reset":
                    self.close_connection = True
                    self.connection.close()
                    return
                answer = proxy.hook(self.command, key) if fault == "ok" and proxy.hook else None
                if fault in ("slowdown", "deny") or answer is not None:
                    if answer is not None:
                        status, code = answer
                        payload = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>"
                        payload = payload.encode()
                    elif fault == "slowdown":
                        payload, status = SLOW_DOWN, 503
                    else:
                        payload, status = ACCESS_DENIED, 403
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> FaultProxy:
        """Start serving (in a daemon thread)."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, mode: str, fail: int = 0) -> None:
        with self.lock:
            self.mode, self.fail, self.seen = mode, fail, 0
            self.key_ids.clear()


@pytest.fixture
def s3_fault_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A `FaultProxy` in front of the moto server (mode `ok` until told otherwise)."""
    proxy = FaultProxy(s3_endpoint).start()
    yield proxy
    proxy.close()


@pytest.fixture
def refused_endpoint() -> str:
    """An http:// endpoint on 127.0.0.1 where nothing listens (connections are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class CountingStore(ObjectStore):
    """A real store, with every call that reads an object (list, get, local_copy) recorded."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.url = inner, inner.url
        self.reads: list[tuple[str, str]] = []

    def list(self, prefix=""):
        self.reads.append(("list", prefix))
        return self.inner.list(prefix)

    def get(self, key):
        self.reads.append(("get", key))
        return self.inner.get(key)

    @contextlib.contextmanager
    def local_copy(self, key):
        self.reads.append(("local_copy", key))
        with self.inner.local_copy(key) as path:
            yield path

    def put(self, key, data):
        return self.inner.put(key, data)

    def put_if_absent(self, key, data):
        return self.inner.put_if_absent(key, data)

    def exists(self, key):
        return self.inner.exists(key)

    def delete(self, keys):
        return self.inner.delete(keys)

    def presign(self, key, expires_s=7 * 24 * 3600):
        return self.inner.presign(key, expires_s)

    def child(self, prefix):
        return self.inner.child(prefix)

    def url_for(self, key):
        return self.inner.url_for(key)

    def link(self, key):
        return self.inner.link(key)

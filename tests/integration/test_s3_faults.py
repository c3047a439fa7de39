"""S3 failures: transient ones are retried (boto3 backoff, then Prefect task retries), permanent
ones stop early with one clear message. Faults are injected by a small HTTP proxy in front of
moto's server, so the client sees real 503s, resets and 403s over the wire."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from winnow.errors import StorageError, TransientStorageError
from winnow.storage import S3Options, S3Store

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


class FaultProxy:
    """Forward to `upstream`; the first `fail` requests get `mode` instead of an answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.mode, self.fail, self.seen = "ok", 0, 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.seen += 1
                    fault = proxy.mode if proxy.fail > 0 or proxy.mode == "deny" else "ok"
                    proxy.fail -= 1 if proxy.fail > 0 else 0
                if fault == "reset":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault in ("slowdown", "deny"):
                    payload, status = (
                        (SLOW_DOWN, 503) if fault == "slowdown" else (ACCESS_DENIED, 403)
                    )
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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, mode: str, fail: int = 0) -> None:
        with self.lock:
            self.mode, self.fail, self.seen = mode, fail, 0


@pytest.fixture
def proxy(s3_endpoint):
    p = FaultProxy(s3_endpoint)
    p.thread.start()
    yield p
    p.server.shutdown()
    p.server.server_close()


def _store(proxy: FaultProxy, bucket: str, attempts: int) -> S3Store:
    return S3Store(
        bucket, "raw", S3Options(endpoint_url=proxy.url, region="us-east-1", max_attempts=attempts)
    )


@pytest.mark.parametrize("mode", ["slowdown", "reset"])
def test_transient_faults_are_retried_by_boto3(proxy, s3_bucket, mode):
    store = _store(proxy, s3_bucket, attempts=5)
    proxy.inject("ok")
    store.put("a.jpg", b"data")
    proxy.inject(mode, fail=3)
    assert [i.key for i in store.list()] == ["a.jpg"]
    assert store.get("a.jpg") == b"data"
    assert proxy.seen >= 5  # 3 failures absorbed, then the two calls


def test_transient_faults_beyond_the_attempts_are_transient_errors(proxy, s3_bucket):
    store = _store(proxy, s3_bucket, attempts=2)
    proxy.inject("slowdown", fail=100)
    with pytest.raises(
        TransientStorageError, match=f"s3://{s3_bucket}/raw/a.jpg: transient S3 error SlowDown"
    ):
        store.get("a.jpg")


def test_access_denied_stops_with_one_message_naming_bucket_and_permission(proxy, s3_bucket):
    store = _store(proxy, s3_bucket, attempts=5)
    proxy.inject("deny")
    with pytest.raises(
        StorageError, match=rf"list s3://{s3_bucket}/raw: access denied.*s3:ListBucket"
    ):
        list(store.list())
    assert proxy.seen == 1  # permanent: not retried


@pytest.mark.usefixtures("prefect_api")
def test_prefect_task_retries_a_transient_failure_after_boto3_gives_up(proxy, s3_bucket, tmp_path):
    from prefect import flow

    from tasks.connect import connect
    from tasks.discover import load_pool
    from winnow.params import StorageParams

    storage = StorageParams(endpoint_url=proxy.url, region="us-east-1", max_attempts=1)

    @flow
    def just_load():
        return load_pool(connect(f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/out", storage)).version

    proxy.inject("slowdown", fail=2)  # more than one attempt per call: boto3 gives up
    assert just_load() == 0
    assert proxy.seen >= 3

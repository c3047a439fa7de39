"""S3 failures: transient ones are retried (boto3 backoff, then Prefect task retries), permanent
ones stop early with one clear message. Faults are injected by a small HTTP proxy in front of
moto's server (`FaultProxy` in tests/conftest.py), so the client sees real 503s, resets and 403s
over the wire."""

from __future__ import annotations

import time

import pytest

from tests.conftest import FaultProxy
from winnow.errors import StorageError, TransientStorageError
from winnow.storage import S3Options, S3Store


@pytest.fixture
def proxy(s3_fault_proxy: FaultProxy) -> FaultProxy:
    return s3_fault_proxy


def _store(proxy: FaultProxy, bucket: str, attempts: int) -> S3Store:
    return S3Store(
        bucket, "raw", S3Options(endpoint_url=proxy.url, region="us-east-1", max_attempts=attempts)
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["slowdown", "reset"])
def test_transient_faults_are_retried_by_boto3(proxy, s3_bucket, mode):
    store = _store(proxy, s3_bucket, attempts=5)
    proxy.inject("ok")
    store.put("a.jpg", b"data")
    proxy.inject(mode, fail=3)
    assert [i.key for i in store.list()] == ["a.jpg"]
    assert store.get("a.jpg") == b"data"
    assert proxy.seen >= 5  # 3 failures absorbed, then the two calls


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "match"),
    [("slowdown", "transient S3 error SlowDown"), ("reset", "ConnectionClosedError")],
)
def test_transient_faults_beyond_the_attempts_are_transient_errors(proxy, s3_bucket, mode, match):
    store = _store(proxy, s3_bucket, attempts=2)
    proxy.inject(mode, fail=100)
    with pytest.raises(TransientStorageError, match=f"s3://{s3_bucket}/raw/a.jpg: .*{match}"):
        store.get("a.jpg")
    assert proxy.seen >= 2  # retried before giving up


def test_access_denied_stops_with_one_message_naming_bucket_and_permission(proxy, s3_bucket):
    store = _store(proxy, s3_bucket, attempts=5)
    proxy.inject("deny")
    with pytest.raises(
        StorageError, match=rf"list s3://{s3_bucket}/raw: access denied.*s3:ListBucket"
    ):
        list(store.list())
    assert proxy.seen == 1  # permanent: not retried


def test_a_denied_local_copy_is_a_storage_error_and_leaves_no_temporary_file(
    proxy, s3_bucket, tmp_path, monkeypatch
):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where local_copy's file would go
    store = _store(proxy, s3_bucket, attempts=5)
    store.put("cam/a.mp4", b"video bytes")
    proxy.inject("deny")
    with pytest.raises(StorageError, match=rf"get s3://{s3_bucket}/raw/cam/a.mp4: access denied"):
        with store.local_copy("cam/a.mp4"):
            pass
    assert proxy.seen == 1
    assert list(tmp_path.iterdir()) == []


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


# With default settings a retried task waits 2 + 10 + 30 s between its attempts (STORAGE_RETRIES)
# and the old boto3 setup retried a refused connection for ~40 s: any retry blows this bound.
FAIL_FAST_S = 10.0


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("fault", ["access denied", "refused endpoint", "unresolvable endpoint"])
def test_a_permanent_error_fails_a_flow_at_once_with_default_settings(
    proxy, s3_bucket, refused_endpoint, fault
):
    from prefect import flow

    from tasks.connect import connect
    from tasks.discover import load_pool
    from winnow.params import StorageParams

    endpoint = {
        "access denied": proxy.url,
        "refused endpoint": refused_endpoint,
        "unresolvable endpoint": "http://no-such-host.invalid:9000",
    }[fault]
    storage = StorageParams(endpoint_url=endpoint)  # every other setting is the default
    assert storage.max_attempts > 1  # boto3 and Prefect retries are on

    @flow
    def just_load():
        return load_pool(connect(f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/out", storage)).version

    proxy.inject("deny")
    match = "access denied" if fault == "access denied" else f"cannot connect to {endpoint}"
    start = time.monotonic()
    with pytest.raises(StorageError, match=match):
        just_load()
    elapsed = time.monotonic() - start
    assert elapsed < FAIL_FAST_S, f"a permanent error took {elapsed:.1f} s to fail"
    if fault == "access denied":
        assert proxy.seen == 1  # one task attempt, one HTTP request: nothing was retried

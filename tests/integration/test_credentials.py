"""Credentials: from a Prefect AwsCredentials block, missing ones fail clearly, and no secret
ever reaches logs, artifacts, the datapool or the exports."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import FaultProxy
from winnow import demo
from winnow.errors import StorageError
from winnow.storage import S3Options, S3Store

pytestmark = pytest.mark.usefixtures("prefect_api")

KEY_ID = "AKIABLOCKKEYID0000042"
SECRET = "block-secret-Zm9vYmFyYmF6-never-shown"


def _all_text_of_bucket(bucket: str, endpoint: str) -> str:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    text = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            text.append(body.decode("latin-1"))
    return "\n".join(text)


async def _logs_and_artifacts(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        arts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        run = await client.read_flow_run(flow_run_id)
    parts = [log.message for log in logs] + [str(a.data) + str(a.description) for a in arts]
    return "\n".join(parts) + str(run.parameters)


@pytest.mark.slow
def test_a_run_with_block_credentials_leaks_no_secret(s3_endpoint, s3_bucket, monkeypatch):
    from prefect_aws import AwsCredentials

    from flows.curate import curate

    store = S3Store(s3_bucket, "raw", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    demo.write_demo_files(store, n_videos=1, n_images=2, frames_per_video=20, width=96, height=64)
    AwsCredentials(
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1"
    ).save("winnow-test-creds", overwrite=True)
    # No credentials in the environment: only the block can make the run work.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    summary = curate(
        source=f"s3://{s3_bucket}/raw",
        output=f"s3://{s3_bucket}/out",
        embedding={"weights": "none", "input_size": 64},
        selection={"n_samples": 3},
        storage={"endpoint_url": s3_endpoint, "credentials_block": "winnow-test-creds"},
    )
    assert summary["selected"] == 3
    everything = asyncio.run(_logs_and_artifacts(summary["run_id"]))
    everything += _all_text_of_bucket(s3_bucket, s3_endpoint)
    assert "report.html" in everything  # we did read the artifacts and exports
    assert SECRET not in everything
    assert KEY_ID not in everything


def test_missing_credentials_fail_with_one_clear_message(
    s3_endpoint, s3_bucket, monkeypatch, tmp_path
):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = S3Store(s3_bucket, "raw", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    with pytest.raises(StorageError, match=rf"list s3://{s3_bucket}/raw: no AWS credentials found"):
        list(store.list())


def _no_ambient_credentials(monkeypatch, tmp_path, env_key_id: str | None) -> None:
    """No shared config or credentials files, no instance role; env keys only if given."""
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    if env_key_id is None:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", env_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")


@pytest.mark.parametrize("env_key_id", [None, "AKIAENVIRONMENT00001"], ids=["no-env", "env-decoy"])
def test_a_run_signs_its_requests_with_the_block_credentials(
    s3_fault_proxy: FaultProxy, s3_bucket, monkeypatch, tmp_path, env_key_id
):
    from prefect_aws import AwsCredentials

    from tasks.connect import connect
    from winnow.params import StorageParams

    _no_ambient_credentials(monkeypatch, tmp_path, env_key_id)
    storage = StorageParams(endpoint_url=s3_fault_proxy.url, credentials_block="winnow-signing")
    src, out = f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/out"

    for key_id in (KEY_ID, "AKIAROTATEDKEY000043"):  # a rotated key is used by the next run
        AwsCredentials(
            aws_access_key_id=key_id, aws_secret_access_key=SECRET, region_name="us-east-1"
        ).save("winnow-signing", overwrite=True)
        s3_fault_proxy.inject("ok")
        stores = connect(src, out, storage)  # what a run does first, on the worker
        assert stores.pool.load().version == 0
        assert list(stores.source.list()) == []
        assert len(s3_fault_proxy.key_ids) >= 2
        assert set(s3_fault_proxy.key_ids) == {key_id}  # the server saw only the block's key


def test_new_environment_credentials_are_never_served_an_old_client(
    s3_fault_proxy: FaultProxy, s3_bucket, monkeypatch, tmp_path
):
    options = S3Options(endpoint_url=s3_fault_proxy.url, region="us-east-1")
    for key_id in ("AKIAFIRSTRUN00000001", "AKIASECONDRUN0000002"):
        _no_ambient_credentials(monkeypatch, tmp_path, key_id)
        s3_fault_proxy.inject("ok")
        store = S3Store(s3_bucket, "raw", options)  # same options, new run, new credentials
        assert list(store.child("cam").list()) == [] and list(store.list()) == []
        assert s3_fault_proxy.key_ids == [key_id, key_id]

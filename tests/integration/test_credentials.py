"""Credentials: from a Prefect AwsCredentials block, missing ones fail clearly, and no secret
ever reaches logs, artifacts, the datapool or the exports."""

from __future__ import annotations

import asyncio

import pytest

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
    monkeypatch.setattr("winnow.storage._CLIENTS", {})  # clients resolve credentials when made
    store = S3Store(s3_bucket, "raw", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    with pytest.raises(StorageError, match=rf"list s3://{s3_bucket}/raw: no AWS credentials found"):
        list(store.list())

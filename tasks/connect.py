"""Connect a run to its stores, and the retry policy of tasks that talk to storage.

Credentials come from the boto3 default chain, a named profile, or a Prefect `AwsCredentials`
block named in the parameters; they are resolved here, on the worker, and never pass through
flow or task parameters, logs or artifacts.
"""

from __future__ import annotations

from winnow.errors import ConfigError, TransientStorageError
from winnow.params import StorageParams
from winnow.storage import S3Options
from winnow.stores import Stores, open_stores


def s3_options(storage: StorageParams) -> S3Options:
    """S3 connection options, loading keys from the named AwsCredentials block if any.

    Read anew on every call (no cache): a long-lived worker uses a rotated key on its next run.
    """
    keys: dict[str, str | None] = {}
    region = storage.region
    if storage.credentials_block:
        from prefect_aws import AwsCredentials

        try:
            block = AwsCredentials.load(storage.credentials_block)
        except ValueError as exc:
            raise ConfigError(
                f"no AwsCredentials block named {storage.credentials_block!r}: create it in the "
                "Prefect UI (Blocks) or with AwsCredentials(...).save(name)"
            ) from exc
        secret = block.aws_secret_access_key
        keys = {
            "access_key_id": block.aws_access_key_id,
            "secret_access_key": secret.get_secret_value() if secret else None,
            "session_token": block.aws_session_token,
        }
        region = region or block.region_name
    return S3Options(
        endpoint_url=storage.endpoint_url,
        region=region,
        profile=storage.profile,
        max_attempts=storage.max_attempts,
        presign_links=storage.presign_links,
        presign_expires_s=storage.presign_expiry_hours * 3600,
        **keys,
    )


def connect(source: str, output: str, storage: StorageParams) -> Stores:
    """Open the run's stores, with credentials resolved on this worker for this run."""
    return open_stores(source, output, s3_options(storage))


def retry_transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's hook signature
    """Retry a task only for errors a retry can fix (throttling, 5xx, dropped connections)."""
    try:
        state.result()
    except TransientStorageError:
        return True
    except Exception:
        return False
    return False


# Decorator options of tasks that talk to storage: boto3 already retries each call with
# backoff; these retries cover a whole task when boto3's attempts run out on a transient error.
STORAGE_RETRIES = {
    "retries": 3,
    "retry_delay_seconds": [2, 10, 30],
    "retry_condition_fn": retry_transient,
}

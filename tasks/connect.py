"""Open the run's stores: source (read-only), output, and the datapool under the output.

Credentials come from the boto3 default chain, a named profile, or a Prefect `AwsCredentials`
block named in the parameters; they are resolved here, on the worker, and never pass through
flow or task parameters, logs or artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from flows.params import CurateParams, StorageParams
from winnow.datapool import Datapool
from winnow.errors import ConfigError, TransientStorageError
from winnow.storage import ObjectStore, S3Options, open_store, read_url, relative_prefix


@lru_cache(maxsize=8)
def s3_options(storage: StorageParams) -> S3Options:
    """S3 connection options, loading keys from the named AwsCredentials block if any."""
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


@dataclass(frozen=True)
class Stores:
    """The stores of one run."""

    source: ObjectStore
    output: ObjectStore
    pool: Datapool
    output_inside_source: str | None
    options: S3Options

    def read_named(self, name: str) -> bytes:
        """Read a file a parameter names: a key in the source, or a full URL or absolute path."""
        if "://" in name or name.startswith("/"):
            return read_url(name, self.options)
        return self.source.get(name)


def open_stores(params: CurateParams) -> Stores:
    """Open source, output and pool for `params`."""
    options = s3_options(params.storage)
    source = open_store(params.source, options)
    output = open_store(params.output_url, options)
    return Stores(
        source=source,
        output=output,
        pool=Datapool(output.child("pool")),
        output_inside_source=relative_prefix(source, output),
        options=options,
    )


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

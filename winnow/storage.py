"""ObjectStore: one small interface over a local directory and S3 (boto3).

Every byte of bucket data the project reads or writes goes through here. A store is rooted at a
URL (`/data/raw`, `file:///data/raw`, `s3://bucket/prefix`); keys are relative to that root,
use `/` and may not climb out of it, so nothing is ever written outside the configured prefix.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from winnow.errors import (
    ConfigError,
    NotFound,
    StorageError,
    TransientStorageError,
    WinnowError,
)

_TMP_PREFIX = ".winnow-tmp-"
# Files above this size go up to S3 as multipart uploads of MULTIPART_CHUNK bytes per part.
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_CHUNK = 16 << 20


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object.

    Attributes:
        key: Key relative to the store's root.
        size_bytes: Size of the object.
        fingerprint: Content identity: `etag:<etag>:<size>` (S3) or `mtime:<ns>:<size>` (local).
        modified_s: Last modification, in seconds since the epoch (None when not known).
    """

    key: str
    size_bytes: int
    fingerprint: str
    modified_s: float | None = None


def check_key(key: str) -> str:
    """Validate a relative key and return it normalised.

    Raises:
        ConfigError: If the key is absolute, empty or climbs out of the root with `..`.
    """
    if not key or key.startswith("/") or "\\" in key:
        raise ConfigError(
            f"invalid object key {key!r}: keys are relative paths with '/' separators"
        )
    parts = PurePosixPath(key).parts
    if any(p in ("..", ".") for p in parts):
        raise ConfigError(f"invalid object key {key!r}: '.' and '..' are not allowed in keys")
    return "/".join(parts)


# A listed key longer than this (UTF-8 bytes) is refused: S3's own limit is 1,024 bytes, and
# outputs named after the key (frames/<key>-<frame>-<ext>.png) need room for the output prefix.
MAX_KEY_BYTES = 900
# A path component longer than this cannot be a file name on common local file systems.
MAX_NAME_BYTES = 255
_SURROGATE_ESCAPE = re.compile(r"\\udc[89a-f][0-9a-f]")


def key_problem(key: str) -> str | None:
    r"""Why a listed key cannot be read exactly and named safely in outputs (None: it can).

    `check_key` normalises keys given by people (`a//b` → `a/b`); a key found by listing must
    instead be used exactly as it is, or another object would be read. This refuses listed
    keys that an object store holds but that cannot be mapped one-to-one onto a relative path:
    empty, absolute (a leading `/`), empty (`//`), `.` or `..` components, backslashes, control
    characters, names that are not valid UTF-8 (`safe_listed_key` shows them as `\udcXX`),
    and keys or components that are too long (`MAX_KEY_BYTES`, `MAX_NAME_BYTES`).

    Args:
        key: The key relative to the store's root, as listed.

    Returns:
        A short reason naming the rule, or None.
    """
    if not key:
        return "empty key"
    if _SURROGATE_ESCAPE.search(key):
        return "its name is not valid UTF-8 (shown with \\udcXX escapes)"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "its name is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "its key holds control characters (newline, tab, escape…)"
    if "\\" in key:
        return "its key holds a backslash ('\\'), which is not a path separator here"
    if key.startswith("/"):
        return "its key starts with '/' (an absolute path)"
    parts = key.split("/")
    if "" in parts:
        return "its key holds an empty path component ('//' or a trailing '/')"
    if any(p in (".", "..") for p in parts):
        return "its key holds a '.' or '..' component, which could name another object"
    if size > MAX_KEY_BYTES:
        return (
            f"its key is {size} bytes long after the source prefix (at most {MAX_KEY_BYTES}, "
            "leaving room for the output names made from it)"
        )
    if any(len(p.encode("utf-8")) > MAX_NAME_BYTES for p in parts):
        return f"a component of its key is longer than {MAX_NAME_BYTES} bytes"
    return None


def safe_listed_key(key: str) -> str:
    r"""A listed key as a valid string: names that are not UTF-8 get `\udcXX` escapes.

    A local file system may hold names that are not UTF-8 (Python shows their bytes as lone
    surrogates, which cannot be written to Parquet, JSON or S3). `key_problem` refuses the
    escaped form, so such a file is recorded with a readable key and never read.
    """
    try:
        key.encode("utf-8")
        return key
    except UnicodeEncodeError:
        return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _join(prefix: str, key: str) -> str:
    return f"{prefix.rstrip('/')}/{key}" if prefix else key


class ObjectStore(ABC):
    """A flat key space under one root: a local folder or an S3 prefix."""

    url: str

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object under `prefix` (recursively), in key order.

        Raises:
            NotFound: If the root does not exist (missing folder or bucket).
            StorageError: If listing is refused (permissions, credentials).
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object.

        Raises:
            NotFound: If the key does not exist.
        """

    @abstractmethod
    def local_copy(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """Context manager yielding a local file path holding the object.

        Local stores yield the file itself; S3 streams the object to a temporary file (never
        holding it whole in memory) and removes it on exit.
        """

    @contextlib.contextmanager
    def fetch(self, key: str) -> Iterator[tuple[Path, ObjectInfo | None]]:
        """Like `local_copy`, and also the identity of exactly the content read.

        Yields:
            The local path and the `ObjectInfo` of the object as read (its fingerprint may
            differ from a listing's when the object was replaced in between); None when the
            backend cannot tell.

        Raises:
            NotFound: If the key does not exist (e.g. deleted after it was listed).
        """
        with self.local_copy(key) as path:
            yield path, None

    @abstractmethod
    def put(self, key: str, data: bytes | Path) -> None:
        """Write (or replace) an object from bytes or a local file, atomically."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create an object only if the key is free.

        Returns:
            True if this call created it, False if the key already existed (nothing written).
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the key exists."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete the keys that exist; missing keys are ignored."""

    @abstractmethod
    def presign(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        """A link a browser can open: a presigned HTTPS URL (S3) or a `file://` URL (local)."""

    @abstractmethod
    def child(self, prefix: str) -> ObjectStore:
        """A store rooted at `prefix` below this one."""

    def url_for(self, key: str) -> str:
        """Full URL of a key, for messages and exports (never carries credentials)."""
        return _join(self.url, check_key(key))

    def link(self, key: str) -> str:
        """The link put in reports, exports and the UI for a key (see `S3Options.presign_links`)."""
        return self.presign(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalStore(ObjectStore):
    """A directory on the local file system."""

    def __init__(self, root: str | Path) -> None:
        """Root the store at `root` (created lazily on the first write)."""
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield files under `prefix`, sorted by key; temporary files are skipped."""
        if not self.root.is_dir():
            raise NotFound(f"folder {self.root} does not exist: create it or fix the path")
        start = self._path(prefix) if prefix else self.root
        if start.is_file():
            yield self._info(start)
            return
        if not start.is_dir():
            return
        yield from self._walk(start)

    def _walk(self, folder: Path) -> Iterator[ObjectInfo]:
        """Depth-first walk in key order, as S3 lists (a folder sorts as its name plus '/')."""
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:  # removed while listing
            return
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path))
            elif entry.is_file() and not entry.name.startswith(_TMP_PREFIX):
                try:
                    yield self._info(Path(entry.path))
                except FileNotFoundError:
                    continue

    def _info(self, path: Path) -> ObjectInfo:
        st = path.stat()
        key = path.relative_to(self.root).as_posix()
        return ObjectInfo(
            key=key,
            size_bytes=st.st_size,
            fingerprint=f"mtime:{st.st_mtime_ns}:{st.st_size}",
            modified_s=st.st_mtime,
        )

    def get(self, key: str) -> bytes:
        """Read a file whole."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound(f"{self.url_for(key)} does not exist") from exc

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """Yield the file's own path (no copy)."""
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"{self.url_for(key)} does not exist")
        yield path

    @contextlib.contextmanager
    def fetch(self, key: str) -> Iterator[tuple[Path, ObjectInfo | None]]:
        """Yield the file's own path and its size and mtime as it is opened."""
        path = self._path(key)
        try:
            if not path.is_file():
                raise FileNotFoundError(path)
            info = self._info(path)
        except FileNotFoundError as exc:
            raise NotFound(f"{self.url_for(key)} does not exist") from exc
        yield path, info

    def _write_temp(self, target: Path, data: bytes | Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        with open(tmp, "wb") as out:
            if isinstance(data, Path):
                with open(data, "rb") as src:
                    while chunk := src.read(8 << 20):
                        out.write(chunk)
            else:
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return tmp

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes | Path) -> None:
        """Write to a temporary file, fsync, then rename over the target."""
        target = self._path(key)
        tmp = self._write_temp(target, data)
        os.replace(tmp, target)
        self._fsync_dir(target.parent)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write to a temporary file, then hard-link it to the target (fails if it exists)."""
        target = self._path(key)
        tmp = self._write_temp(target, data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        self._fsync_dir(target.parent)
        return True

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def delete(self, keys: Iterable[str]) -> None:
        """Remove files; empty parent folders are left in place."""
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def presign(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        """A `file://` URL of the file."""
        return self._path(key).as_uri()

    def child(self, prefix: str) -> LocalStore:
        """A store rooted at a sub-folder."""
        return LocalStore(self._path(prefix))


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store. Secrets are never shown by `repr`.

    Attributes:
        endpoint_url: Custom endpoint for S3-compatible stores (MinIO, moto); None for AWS.
        region: Region name; None takes the boto3 default chain.
        profile: Named profile from `~/.aws/config`; None for the default chain.
        access_key_id: Explicit key id (e.g. from a Prefect `AwsCredentials` block).
        secret_access_key: Explicit secret key.
        session_token: Explicit session token.
        max_attempts: boto3 attempts per call for transient errors (throttling, 5xx, resets).
        presign_links: Put presigned HTTPS links in reports and exports instead of `s3://` URLs.
            A presigned URL carries the access key id (and, with temporary credentials, the
            session token), so this is off unless asked for.
        presign_expires_s: Lifetime of presigned links.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    max_attempts: int = 8
    presign_links: bool = False
    presign_expires_s: int = 7 * 24 * 3600


# Connecting to an endpoint should take milliseconds; a refused or unresolvable endpoint is a
# configuration error and must fail the run in seconds, not after minutes of backoff.
CONNECT_TIMEOUT_S = 5


def _make_s3_client(options: S3Options) -> Any:
    """A boto3 S3 client; credentials are resolved now (options, profile, then the chain)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        profile_name=options.profile,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        region_name=options.region,
    )
    config = Config(
        retries={"max_attempts": options.max_attempts, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=60,
        max_pool_connections=32,
        s3={"addressing_style": "path"} if options.endpoint_url else None,
        # Presigned links too: without it botocore presigns SigV2 in us-east-1, which S3
        # refuses for buckets created since June 2020.
        signature_version="s3v4",
    )
    client = session.client("s3", endpoint_url=options.endpoint_url, config=config)
    # Registered first, so it runs before boto3's own retry handler on every attempt.
    client.meta.events.register_first("needs-retry.s3", _no_retry_when_unreachable)
    return client


def _no_retry_when_unreachable(caught_exception: Exception | None = None, **_: Any) -> None:
    """Stop boto3 from retrying a refused connection or a name that does not resolve.

    boto3's standard mode retries every connection error with backoff (about 50 s with 8
    attempts); for an endpoint that refuses or does not exist no retry can help. Raising here
    ends the call with the original error. Resets, timeouts, throttling and 5xx still retry.
    """
    from botocore.exceptions import EndpointConnectionError

    if isinstance(caught_exception, EndpointConnectionError):
        raise caught_exception


class _Client:
    """One store's boto3 client, made on first use and shared with its child stores.

    Never cached process-wide: credentials are resolved per store, so each run (which opens
    its own stores) uses the credentials valid now, and no secret outlives the run's stores.
    Not pickled: a store sent to another process makes its own client there.
    """

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._client: Any = None

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _make_s3_client(self.options)
            return self._client

    def __getstate__(self) -> dict:
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["options"])


_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}


class S3Store(ObjectStore):
    """A prefix in an S3 bucket (AWS or any S3-compatible server)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        options: S3Options | None = None,
        *,
        _client: _Client | None = None,
    ) -> None:
        """Root the store at `s3://bucket/prefix`."""
        if not bucket:
            raise ConfigError("S3 URL has no bucket: use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = "/".join(PurePosixPath(prefix).parts) if prefix.strip("/") else ""
        if self.prefix:
            check_key(self.prefix)
        self.options = options or S3Options()
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = _client if _client is not None else _Client(self.options)

    @property
    def client(self) -> Any:
        """This store's boto3 S3 client (thread-safe; shared with its child stores)."""
        return self._client.get()

    def _k(self, key: str) -> str:
        return _join(self.prefix, check_key(key))

    def _fail(self, exc: Exception, op: str, key: str | None = None) -> Exception:
        """Translate a boto3/botocore exception into our hierarchy, naming bucket and operation."""
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        if isinstance(exc, WinnowError):  # e.g. a bad key, already clear
            return exc
        where = f"s3://{self.bucket}/{_join(self.prefix, key)}" if key else self.url
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(
                f"{op} {where}: no AWS credentials found; set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, a profile, or a Prefect AwsCredentials block"
            )
        endpoint = self.options.endpoint_url or "AWS S3"
        if isinstance(exc, EndpointConnectionError):  # refused, or the name does not resolve
            return StorageError(
                f"{op} {where}: cannot connect to {endpoint}: the connection was refused or the "
                "host name does not resolve; check the endpoint URL (storage.endpoint_url) and "
                "that the server is running"
            )
        if isinstance(exc, (ConnectTimeoutError, HTTPClientError)):  # timeouts, resets
            return TransientStorageError(
                f"{op} {where}: connection to {endpoint} failed ({type(exc).__name__}, "
                "retries exhausted)"
            )
        if isinstance(exc, BotoConnectionError):  # TLS or proxy trouble: retrying won't fix it
            return StorageError(
                f"{op} {where}: cannot connect to {endpoint} "
                f"({type(exc).__name__}); check the endpoint URL and the network"
            )
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return NotFound(
                    f"{op} {where}: bucket {self.bucket!r} does not exist; create it or fix the "
                    "bucket name in the URL"
                )
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(f"{op} {where}: no such key")
            if code in ("AccessDenied", "403", "AllAccessDisabled"):
                return StorageError(
                    f"{op} {where}: access denied; the credentials need s3:{_action(op)} on "
                    f"bucket {self.bucket!r}"
                )
            if code in (
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "ExpiredToken",
                "InvalidToken",
            ):
                return StorageError(
                    f"{op} {where}: credentials rejected ({code}); fix the keys or profile"
                )
            if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
                return TransientStorageError(
                    f"{op} {where}: transient S3 error {code} (retries exhausted)"
                )
            return StorageError(
                f"{op} {where}: {code or status}: {err.get('Message', '')}".rstrip(": ")
            )
        return StorageError(f"{op} {where}: {type(exc).__name__}: {exc}")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Paginated listing (1,000 keys a page), in key order."""
        # A prefix names a folder, as in the local backend: "a" lists "a/..." but not "ab".
        root = f"{self.prefix}/" if self.prefix else ""
        list_prefix = f"{self._k(prefix)}/" if prefix else root
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix):
                for obj in page.get("Contents", ()):
                    key = obj["Key"][strip:]
                    if not key or key.endswith("/"):
                        continue  # folder placeholder objects
                    etag = obj.get("ETag", "").strip('"')
                    size = int(obj["Size"])
                    modified = obj.get("LastModified")
                    yield ObjectInfo(
                        key=key,
                        size_bytes=size,
                        fingerprint=f"etag:{etag}:{size}",
                        modified_s=modified.timestamp() if modified is not None else None,
                    )
        except Exception as exc:
            raise self._fail(exc, "list") from exc

    def get(self, key: str) -> bytes:
        """GET the whole object."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
        except Exception as exc:
            raise self._fail(exc, "get", key) from exc

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """Stream the object to a temporary file (ranged, parallel GETs for big objects)."""
        suffix = PurePosixPath(key).suffix
        fd, name = tempfile.mkstemp(prefix="winnow-", suffix=suffix)
        os.close(fd)
        path = Path(name)
        try:
            try:
                self.client.download_file(self.bucket, self._k(key), str(path))
            except Exception as exc:
                raise self._fail(exc, "get", key) from exc
            yield path
        finally:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def fetch(self, key: str) -> Iterator[tuple[Path, ObjectInfo | None]]:
        """Stream the object to a temporary file, with the ETag and size of what was read.

        The transfer manager HEADs the object, then GETs it (ranged and parallel for big
        objects) with `If-Match` on that ETag, so the content is exactly the version the ETag
        names even if the object is replaced meanwhile; a replacement during the download
        fails it with 412 and the read starts again once.
        """
        from boto3.s3.transfer import TransferConfig, create_transfer_manager
        from botocore.exceptions import ClientError

        suffix = PurePosixPath(key).suffix
        fd, name = tempfile.mkstemp(prefix="winnow-", suffix=suffix)
        os.close(fd)
        path = Path(name)
        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK
        )
        try:
            for attempt in range(2):
                try:
                    with create_transfer_manager(self.client, config) as manager:
                        future = manager.download(self.bucket, self._k(key), str(path))
                        future.result()
                    break
                except ClientError as exc:
                    code = str(exc.response.get("Error", {}).get("Code", ""))
                    if attempt == 0 and code in ("PreconditionFailed", "412"):
                        continue  # replaced while it was read: read the new version whole
                    raise self._fail(exc, "get", key) from exc
                except Exception as exc:
                    raise self._fail(exc, "get", key) from exc
            etag = (future.meta.etag or "").strip('"')
            size = path.stat().st_size  # what was read (the transfer's own size may be unset)
            yield path, ObjectInfo(key=key, size_bytes=size, fingerprint=f"etag:{etag}:{size}")
        finally:
            path.unlink(missing_ok=True)

    def put(self, key: str, data: bytes | Path) -> None:
        """PUT an object; large files go up as a multipart upload."""
        try:
            if isinstance(data, Path):
                from boto3.s3.transfer import TransferConfig

                config = TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK
                )
                self.client.upload_file(str(data), self.bucket, self._k(key), Config=config)
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)
        except Exception as exc:
            raise self._fail(exc, "put", key) from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Conditional PUT with `If-None-Match: *` (412 PreconditionFailed when the key exists)."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise self._fail(exc, "put", key) from exc
        except Exception as exc:
            raise self._fail(exc, "put", key) from exc

    def exists(self, key: str) -> bool:
        """HEAD the object."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail(exc, "head", key) from exc
        except Exception as exc:
            raise self._fail(exc, "head", key) from exc

    def delete(self, keys: Iterable[str]) -> None:
        """Batch deletes of up to 1,000 keys."""
        batch: list[str] = []
        for key in keys:
            batch.append(self._k(key))
            if len(batch) == 1000:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: list[str]) -> None:
        try:
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        except Exception as exc:
            raise self._fail(exc, "delete") from exc

    def presign(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        """A presigned GET URL (the signature is a temporary grant, not a credential)."""
        try:
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._k(key)},
                ExpiresIn=expires_s,
            )
        except Exception as exc:
            raise self._fail(exc, "presign", key) from exc

    def link(self, key: str) -> str:
        """An `s3://` URL, or a presigned HTTPS URL when `presign_links` is on."""
        if self.options.presign_links:
            return self.presign(key, self.options.presign_expires_s)
        return self.url_for(key)

    def child(self, prefix: str) -> S3Store:
        """A store rooted at `prefix` below this one, sharing the client."""
        return S3Store(self.bucket, self._k(prefix), self.options, _client=self._client)


def _action(op: str) -> str:
    return {"list": "ListBucket", "get": "GetObject", "head": "GetObject", "put": "PutObject"}.get(
        op, "DeleteObject" if op == "delete" else "GetObject"
    )


def open_store(url: str, s3: S3Options | None = None) -> ObjectStore:
    """Open the store a URL names.

    Args:
        url: `s3://bucket/prefix`, `file:///abs/path` or a plain local path.
        s3: Connection options for S3 URLs.

    Returns:
        A `S3Store` or a `LocalStore`.

    Raises:
        ConfigError: If the URL has an unsupported scheme.
    """
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Store(bucket, prefix, s3)
    if url.startswith("file://"):
        return LocalStore(url[len("file://") :])
    if "://" in url:
        raise ConfigError(
            f"unsupported storage URL {url!r}: use s3://bucket/prefix or a local path"
        )
    return LocalStore(url)


def sibling_url(url: str, name: str) -> str:
    """The URL of `name` beside `url`'s last path element (`s3://b/raw` → `s3://b/<name>`)."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        parent = str(PurePosixPath(prefix.strip("/")).parent) if prefix.strip("/") else ""
        parent = "" if parent == "." else parent
        return f"s3://{bucket}/{_join(parent, name)}"
    path = Path(url[len("file://") :] if url.startswith("file://") else url).expanduser().resolve()
    return str(path.parent / name)


def relative_prefix(outer: ObjectStore, inner: ObjectStore) -> str | None:
    """If `inner`'s root lies inside `outer`'s, the key prefix (with trailing `/`) that leads there."""
    if type(outer) is not type(inner):
        return None
    if isinstance(outer, LocalStore) and isinstance(inner, LocalStore):
        try:
            rel = inner.root.relative_to(outer.root).as_posix()
        except ValueError:
            return None
        return "" if rel == "." else f"{rel}/"
    if isinstance(outer, S3Store) and isinstance(inner, S3Store):
        if outer.bucket != inner.bucket:
            return None
        if not outer.prefix:
            return f"{inner.prefix}/" if inner.prefix else ""
        if inner.prefix == outer.prefix:
            return ""
        if inner.prefix.startswith(outer.prefix + "/"):
            return inner.prefix[len(outer.prefix) + 1 :] + "/"
    return None


def read_url(url: str, s3: S3Options | None = None) -> bytes:
    """Read one object named by a full URL (`s3://bucket/key`, `file://…`) or a local path."""
    parent, _, name = url.rstrip("/").rpartition("/")
    if not name or parent in ("s3:/", "s3:", ""):
        raise ConfigError(f"{url!r} does not name an object")
    return open_store(parent, s3).get(name)

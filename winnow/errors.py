"""One exception hierarchy; every message names the object at fault and the fix."""

from __future__ import annotations


class WinnowError(Exception):
    """Base of every error Winnow raises on purpose."""


class ConfigError(WinnowError):
    """A parameter or a combination of parameters is invalid."""


class StorageError(WinnowError):
    """An object store operation failed for a reason retrying will not fix."""


class NotFound(StorageError):
    """A key, prefix or bucket does not exist."""


class TransientStorageError(WinnowError):
    """A storage operation failed in a way a retry may fix (throttling, 5xx, dropped link)."""


class PoolConflict(WinnowError):
    """Another run committed to the datapool first; this run's commit was refused."""


class PoolCorrupt(WinnowError):
    """The datapool's manifests or parts cannot be read."""


class ModelMismatch(WinnowError):
    """The run's embedding model differs from the one the datapool was built with."""


class WeightsUnavailable(WinnowError):
    """Pretrained weights could not be loaded (offline, missing checkpoint, bad file)."""


class DecodeError(WinnowError):
    """A media file could not be decoded."""


class EmptyVideoError(DecodeError):
    """A video has no video stream or no decodable frame."""


class UnsupportedMediaError(DecodeError):
    """A file's content is not a format we can decode (e.g. mislabelled extension)."""


class LeaksFound(WinnowError):
    """A leak check asked to fail the run found samples of the new tag near another tag's."""

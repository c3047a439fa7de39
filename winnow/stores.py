"""The stores of one run: source (read-only), output, and the datapool under the output."""

from __future__ import annotations

from dataclasses import dataclass

from winnow.datapool import Datapool
from winnow.storage import ObjectStore, S3Options, open_store, read_url, relative_prefix


@dataclass(frozen=True)
class Stores:
    """The stores of one run.

    Attributes:
        source: The raw data (only ever read).
        output: The output prefix: frames, exports and the pool.
        pool: The datapool at `<output>/pool`.
        output_inside_source: The output's prefix relative to the source when the output lies
            inside it (so discovery can skip it), else None.
        options: How S3 is reached (credentials included; never logged).
    """

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


def open_stores(source: str, output: str, options: S3Options) -> Stores:
    """Open the source, the output and the pool under it.

    Args:
        source: Local folder or `s3://bucket/prefix` of the raw data.
        output: Local folder or `s3://` prefix of the outputs.
        options: S3 connection options (ignored for local folders).

    Returns:
        The run's stores.
    """
    source_store = open_store(source, options)
    output_store = open_store(output, options)
    return Stores(
        source=source_store,
        output=output_store,
        pool=Datapool(output_store.child("pool")),
        output_inside_source=relative_prefix(source_store, output_store),
        options=options,
    )

"""Arrow reads of bytes in memory: every pool part, staged shard and predictions file goes here.

Arrow must never hold a Python object it may free on one of its own threads. Given
`io.BytesIO(data)`, `pq.read_table` wraps the Python file (and, pre-buffering, slices of the
`bytes`) in objects that Arrow's I/O and scan threads sometimes release late, while the
interpreter is finalising; releasing a Python object needs the GIL, the thread is torn down
instead and the process aborts after its work is done ("terminate called without an active
exception", exit 134; apache/arrow#34314, pyarrow 26 here). A bench child, a `winnow run` or a
worker's flow process could die that way: a script that reads Parquet bytes, then exits,
aborted 14 times in 40. So the bytes are copied into Arrow-owned memory and read through
Arrow's own `BufferReader`: whatever Arrow frees late is its own. `tests/unit/test_arrow_io.py`
exits fresh interpreters right after such reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq


def owned_reader(data: bytes) -> pa.BufferReader:
    """An Arrow reader over an Arrow-owned copy of `data` (for Parquet, CSV and JSON readers)."""
    owned = pa.allocate_buffer(len(data))
    memoryview(owned).cast("B")[:] = data
    return pa.BufferReader(owned)


def read_parquet(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    """The Parquet file held in `data` as a table (only `columns`, when given).

    Pre-buffering (reading ahead on I/O threads) gains nothing in memory, so it is off.

    Raises:
        pyarrow.ArrowException: If `data` is not a readable Parquet file.
    """
    columns = list(columns) if columns is not None else None
    return pq.read_table(owned_reader(data), columns=columns, pre_buffer=False)

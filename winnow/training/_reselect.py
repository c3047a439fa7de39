"""A new selection from samples already in the pool: embeddings are read from the pool only.

Nothing here touches the source: candidates are the pool's samples (optionally only some tags'
members or some runs' samples) with the embeddings the pool stores, and the dataset is the union
of the tags, as in a curate run; the selection itself is `winnow.runs.select_against_pool`, as
in a curate run. Writing the tag's outputs (frames, exports, report) does read the source
(full-size PNGs of picked video frames, thumbnails).
"""

from __future__ import annotations

from collections.abc import Sequence

from winnow.datapool import PoolSnapshot
from winnow.records import Candidates, FileResult, files_from_arrow
from winnow.training._frames import choose_samples


def reselect_candidates(
    snapshot: PoolSnapshot,
    *,
    from_tags: Sequence[str] | None = None,
    from_runs: Sequence[str] | None = None,
) -> Candidates:
    """The candidates of a re-selection: pool samples with their stored embeddings.

    Args:
        snapshot: The pool.
        from_tags: Only these tags' members (None: every sample).
        from_runs: Only these runs' samples (None: every run).

    Raises:
        ConfigError: If there are no such samples.
        NotFound: If a named tag does not exist.
    """
    return choose_samples(snapshot, tags=from_tags, runs=from_runs)


def pool_file_results(snapshot: PoolSnapshot, keys: Sequence[str]) -> list[FileResult]:
    """The latest file result the pool holds for each of `keys` (for exports and the report)."""
    wanted = set(keys)
    latest: dict[str, FileResult] = {}
    for result in files_from_arrow(snapshot.files):
        if result.key in wanted:
            latest[result.key] = result
    return list(latest.values())

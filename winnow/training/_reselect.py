"""A new selection from samples already in the pool: embeddings are read from the pool only.

Nothing here touches the source: candidates are the pool's samples (optionally only some tags'
members or some runs' samples) with the embeddings the pool stores, and the dataset is the union
of the tags, as in a curate run. Writing the tag's outputs (frames, exports, report) is the
caller's next step and does read the source (full-size PNGs of picked video frames, thumbnails).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from winnow import selection as sel
from winnow.datapool import PoolSnapshot
from winnow.errors import ConfigError
from winnow.records import Candidates, FileResult, Selection, files_from_arrow
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


def reselect(
    snapshot: PoolSnapshot,
    candidates: Candidates,
    *,
    config: sel.SelectionConfig,
    against_dataset: bool = True,
    columns: dict[str, np.ndarray] | None = None,
    device: str = "auto",
) -> tuple[Selection, np.ndarray]:
    """Select among samples the pool already holds, as a curate run selects among new ones.

    Args:
        snapshot: The pool.
        candidates: From `reselect_candidates`.
        config: Any selection config (strategies, stopping rules, dedup).
        against_dataset: Treat the dataset (every tag's members) as already chosen: its members
            are never picked and the picks avoid what it covers. Off: pick afresh.
        columns: Extra per-candidate columns (e.g. joined predictions).
        device: Where distances are computed.

    Returns:
        The selection and the dataset's embeddings (for the plot).

    Raises:
        ConfigError: If the config needs decoding (a similarity strategy's query images).
    """
    if any(getattr(s, "query_keys", None) for s in config.strategies):
        raise ConfigError(
            "a similarity strategy's query_keys must be decoded and embedded, which re-selection "
            "never does: use a curate run (`winnow run`) for query-based selection"
        )
    dim = candidates.embedding.shape[1]
    existing = snapshot.dataset() if against_dataset else Candidates.empty(dim)
    dataset = existing.embedding.astype(np.float32)
    result = sel.select(
        candidates,
        dataset=dataset,
        config=config,
        columns=columns,
        device=device,
        dataset_ids=existing.sample_id,
    )
    return result, dataset


def pool_file_results(snapshot: PoolSnapshot, keys: Sequence[str]) -> list[FileResult]:
    """The latest file result the pool holds for each of `keys` (for exports and the report)."""
    wanted = set(keys)
    latest: dict[str, FileResult] = {}
    for result in files_from_arrow(snapshot.files):
        if result.key in wanted:
            latest[result.key] = result
    return list(latest.values())

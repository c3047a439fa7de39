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
    config: sel.SelectionConfig,
    from_tags: Sequence[str] | None = None,
    from_runs: Sequence[str] | None = None,
    against_dataset: bool = True,
    columns: dict[str, np.ndarray] | None = None,
    device: str = "auto",
) -> tuple[Candidates, Selection, np.ndarray]:
    """Select among samples the pool already holds, with their stored embeddings.

    Args:
        snapshot: The pool.
        config: Any selection config (strategies, stopping rules, dedup).
        from_tags: Candidates are only these tags' members (None: every sample).
        from_runs: Candidates are only these runs' samples (None: every run).
        against_dataset: Treat the dataset (every tag's members) as already chosen: its members
            are never picked and the picks avoid what it covers. Off: pick afresh.
        columns: Extra per-candidate columns (e.g. joined predictions).
        device: Where distances are computed.

    Returns:
        The candidates, the selection and the dataset's embeddings (for the plot).

    Raises:
        ConfigError: If the config needs decoding (similarity queries), or there are no samples.
        NotFound: If a named tag does not exist.
    """
    if any(getattr(s, "query_keys", None) for s in config.strategies):
        raise ConfigError(
            "a similarity strategy's query_keys must be decoded and embedded, which re-selection "
            "never does: use a curate run (`winnow run`) for query-based selection"
        )
    candidates = choose_samples(snapshot, tags=from_tags, runs=from_runs)
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
    return candidates, result, dataset


def pool_file_results(snapshot: PoolSnapshot, keys: Sequence[str]) -> list[FileResult]:
    """The latest file result the pool holds for each of `keys` (for exports and the report)."""
    wanted = set(keys)
    latest: dict[str, FileResult] = {}
    for result in files_from_arrow(snapshot.files):
        if result.key in wanted:
            latest[result.key] = result
    return list(latest.values())

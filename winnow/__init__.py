"""Winnow: incremental data curation for computer vision (core, orchestrator-free).

The public Python API is `winnow.open_pool` (see `winnow.api`): read a datapool's tags, files,
samples and embeddings from a notebook.
"""

from winnow.api import Pool, open_pool

__all__ = ["Pool", "open_pool"]

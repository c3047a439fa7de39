"""A tag's exports are staged per run and published under `tags/<tag>/` only after its commit.

Two runs that start from the same pool version name the same next tag. Were both to write
`tags/<tag>/` before committing, the one that loses the commit race could overwrite the
winner's exports with picks the pool never recorded. So a run writes its tag files to its own
staging folder in the pool, `staging/exports/<run id>/tags/<tag>/…`, and copies them to the
output once its commit has landed (the report last, as in the upload). A run killed between
its commit and the end of the copy leaves the staging folder behind: the next run on the pool
finds it (one listing of `staging/exports/`), sees that the pool holds a tag of that run, and
finishes the copy. A staging folder of a run that never committed is garbage: `winnow.gc`
removes it when old, and never one of a run whose tag the pool holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from winnow.errors import NotFound
from winnow.outputs._names import tag_keys
from winnow.records import TagRecord
from winnow.storage import ObjectStore

EXPORT_STAGING = "staging/exports"


def staged_exports(pool_store: ObjectStore, run_id: str) -> ObjectStore:
    """Where the run `run_id` writes its tag files before its commit (keys as in the output)."""
    return pool_store.child(f"{EXPORT_STAGING}/{run_id}")


def publish_exports(pool_store: ObjectStore, output: ObjectStore, run_id: str, tag: str) -> bool:
    """Copy the committed tag's staged files to `tags/<tag>/` (report last), then unstage them.

    Returns:
        True if this call published them; False if nothing was staged (already published, by
        this run or by another that recovered it).
    """
    staged = staged_exports(pool_store, run_id)
    keys = tag_keys(tag)
    ordered = [k for name, k in keys.items() if name != "report"] + [keys["report"]]
    try:
        for key in ordered[:-1]:
            output.put(key, staged.get(key))
        for key in tag_keys(tag, optional=True).values():
            try:
                data = staged.get(key)
            except NotFound:
                continue  # not written by this run
            output.put(key, data)
        output.put(ordered[-1], staged.get(ordered[-1]))
    except NotFound:  # another run finished this copy and removed the staging
        return False
    pool_store.delete([info.key for info in pool_store.list(f"{EXPORT_STAGING}/{run_id}")])
    return True


def unpublished_exports(pool_store: ObjectStore, tags: Iterable[TagRecord]) -> list[TagRecord]:
    """Committed tags whose staged exports were never published (their run died after commit)."""
    runs = staged_runs(pool_store)
    return [t for t in tags if t.run_id in runs]


def staged_runs(pool_store: ObjectStore) -> set[str]:
    """Run ids with staged exports."""
    try:
        infos = list(pool_store.list(EXPORT_STAGING))
    except NotFound:  # a pool that was never written
        return set()
    return {info.key.split("/")[2] for info in infos}

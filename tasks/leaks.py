"""The leak check after a curate run's tag is registered (`CurateParams.leak_check`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.connect import STORAGE_RETRIES
from winnow import runs
from winnow.errors import LeaksFound
from winnow.index import check_tag_leaks
from winnow.params import LeakCheck


@task(name="check-leaks", cache_policy=NO_CACHE, **STORAGE_RETRIES)
def check_leaks(started: runs.Started, finished: runs.Finished, check: LeakCheck) -> int:
    """Pairs of the new tag's samples and the `against` tags' closer than `check.distance`.

    Each pair list goes to `leaks/<tag>-vs-<other>.csv` under the output; the count per tag
    is logged. Returns the number of pairs.

    Raises:
        LeaksFound: With `check.fail`, when any pair is found (the tag stays registered).
    """
    logger = get_run_logger()
    tag = finished.summary.tag
    snapshot = started.stores.pool.load(finished.version)
    reports = check_tag_leaks(
        snapshot, started.stores.output, tag=tag, against=check.against, distance=check.distance
    )
    for r in reports:
        how = "exact search" if r.exact else "the pool's index"
        logger.info(
            "leak check: %d samples of %s within %.3f of %s (%s): %s",
            len(r.leaks),
            tag,
            check.distance,
            r.against,
            how,
            r.url,
        )
    total = sum(len(r.leaks) for r in reports)
    if total and check.fail:
        raise LeaksFound(
            f"{total} samples of tag {tag} are within {check.distance} of "
            + ", ".join(f"{r.against} ({len(r.leaks)})" for r in reports if r.leaks)
            + " (leak_check.fail is on; the tag stays registered): see "
            + ", ".join(r.url for r in reports if r.leaks)
        )
    return total

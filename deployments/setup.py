"""Create or update Winnow's work pools, their queues and concurrency limits (idempotent).

Run it once per Prefect server, before `prefect --no-prompt deploy --all`, and again whenever
this file or a template in deployments/templates/ changes:

    .venv/bin/python deployments/setup.py                      # both pools, process type
    .venv/bin/python deployments/setup.py --gpu-type kubernetes # GPU pool runs Kubernetes jobs

It talks to the server named by PREFECT_API_URL (or the active profile), like the `prefect` CLI.

What it sets up, in each pool (`winnow-gpu`, `winnow-cpu`):
- the base job template from deployments/templates/<type>.json;
- a pool concurrency limit (default 1: one curate run at a time per pool; runs beyond it wait
  in their queue, so two runs never race for the same datapool and priorities decide who is
  next). A fanned-out curate (`scale.mode: pool`, docs/scaling.md) needs room for its child
  runs of `embed-shards/gpu`: `--gpu-limit N` with N = the GPU workers (one per GPU), plus 1
  when the parent curate itself runs on winnow-gpu (with the default limit of 1 its children
  could never start; the parent refuses to fan out then). Same-output runs stay serialised by
  the curate deployments' own limit of 1;
- work queues `critical` (priority 1), `default` (2) and `low` (3): when a slot frees, the
  worker gets the waiting run of the highest-priority queue first.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
POOL_TYPES = ("process", "docker", "kubernetes")


@dataclass(frozen=True)
class PoolSpec:
    """A work pool Winnow deploys to."""

    name: str
    description: str


@dataclass(frozen=True)
class QueueSpec:
    """A work queue created in every pool; a lower priority number is served first."""

    name: str
    priority: int
    description: str


POOLS = (
    PoolSpec(
        "winnow-gpu",
        "GPU hosts: each host registers itself with `prefect worker start --pool winnow-gpu`. "
        "Scheduled curation of the big buckets runs here.",
    ),
    PoolSpec(
        "winnow-cpu",
        "Any host with the project checked out: on-demand curation of small folders and "
        "buckets (embedding on CPU).",
    ),
)

QUEUES = (
    QueueSpec("critical", 1, "Urgent runs: served before anything else waiting in the pool."),
    QueueSpec("default", 2, "Runs of the deployments (scheduled and on-demand)."),
    QueueSpec("low", 3, "Backfills and re-embeds: run when nothing else waits."),
)


def load_template(pool_type: str) -> dict:
    """The base job template for a pool type, from deployments/templates/."""
    return json.loads((TEMPLATES / f"{pool_type}.json").read_text())


def _ensure_pool(client, spec: PoolSpec, pool_type: str, limit: int | None) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    template = load_template(pool_type)
    try:
        pool = client.read_work_pool(spec.name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(
                name=spec.name,
                type=pool_type,
                description=spec.description,
                base_job_template=template,
                concurrency_limit=limit,
            )
        )
        return "created"
    if pool.type != pool_type:
        raise SystemExit(
            f"work pool {spec.name!r} exists with type {pool.type!r}, not {pool_type!r}: a pool's "
            f"type cannot change. Delete it first (prefect work-pool delete {spec.name}) or pass "
            f"--{spec.name.removeprefix('winnow-')}-type {pool.type}."
        )
    changes = {}
    if pool.base_job_template != template:
        changes["base_job_template"] = template
    if pool.description != spec.description:
        changes["description"] = spec.description
    if pool.concurrency_limit != limit:
        changes["concurrency_limit"] = limit
    if not changes:
        return "unchanged"
    client.update_work_pool(spec.name, WorkPoolUpdate(**changes))
    return "updated " + ", ".join(sorted(changes))


def _ensure_queue(client, pool_name: str, spec: QueueSpec) -> str:
    from prefect.exceptions import ObjectNotFound

    try:
        queue = client.read_work_queue_by_name(spec.name, work_pool_name=pool_name)
    except ObjectNotFound:
        client.create_work_queue(
            name=spec.name,
            work_pool_name=pool_name,
            priority=spec.priority,
            description=spec.description,
        )
        return "created"
    changes = {}
    if queue.priority != spec.priority:
        changes["priority"] = spec.priority
    if queue.description != spec.description:
        changes["description"] = spec.description
    if not changes:
        return "unchanged"
    client.update_work_queue(queue.id, **changes)
    return "updated " + ", ".join(sorted(changes))


def setup(types: dict[str, str], limits: dict[str, int | None]) -> list[str]:
    """Create or update every pool and queue; return one line per object saying what changed."""
    from prefect.client.orchestration import get_client

    report = []
    with get_client(sync_client=True) as client:
        for pool in POOLS:
            done = _ensure_pool(client, pool, types[pool.name], limits[pool.name])
            report.append(
                f"work pool {pool.name} ({types[pool.name]}, concurrency limit "
                f"{limits[pool.name] or 'none'}): {done}"
            )
            # Queues in priority order: the server shifts the others when a priority is taken.
            for queue in sorted(QUEUES, key=lambda q: q.priority):
                done = _ensure_queue(client, pool.name, queue)
                report.append(f"  queue {queue.name} (priority {queue.priority}): {done}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse options, set everything up, print what changed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    for pool in POOLS:
        short = pool.name.removeprefix("winnow-")
        parser.add_argument(
            f"--{short}-type",
            choices=POOL_TYPES,
            default="process",
            help=f"worker type of {pool.name} (default: process; fixed once the pool exists)",
        )
        parser.add_argument(
            f"--{short}-limit",
            type=int,
            default=1,
            metavar="N",
            help=f"flow runs at once in {pool.name} (default 1; 0 for no limit)",
        )
    args = parser.parse_args(argv)
    types, limits = {}, {}
    for pool in POOLS:
        short = pool.name.removeprefix("winnow-")
        types[pool.name] = getattr(args, f"{short}_type")
        limit = getattr(args, f"{short}_limit")
        if limit < 0:
            parser.error(f"--{short}-limit must be 0 (no limit) or more, not {limit}")
        limits[pool.name] = limit or None
    for line in setup(types, limits):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

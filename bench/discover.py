"""Discover cost against a real S3 endpoint (moto's server over HTTP).

Lists and diffs 20,000 keys against a pool that already holds 20,000 files, with 0 and with
1,000 new files, and compares with listing alone and with the same listing against an empty
pool: the cost of discover should be the listing, not the pool's size. The variants are timed
side by side in every round (AB, then BA), each time the median over rounds, each ratio the
median of the per-round ratios.

    .venv/bin/python bench/discover.py [--keys 20000] [--new 1000] [--repeat 3]

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

from winnow.datapool import Datapool  # noqa: E402
from winnow.discover import list_new_files  # noqa: E402
from winnow.records import Candidates, FileResult, ModelRecord  # noqa: E402
from winnow.storage import S3Options, open_store  # noqa: E402


def _put_many(store, keys: list[str], workers: int = 16) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda k: store.put(k, b"x"), keys))


def _interleaved(variants: dict, repeat: int) -> dict[str, list[float]]:
    """Seconds of each variant per round; each round runs every variant once, in turn.

    Odd rounds run them in reverse order (AB, BA, ...), so a slow drift of the machine's load
    falls on every variant alike and cancels out of the per-round ratios.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for rnd in range(repeat):
        for name in names if rnd % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return times


def _median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a / b (the variants of one round side by side)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = S3Options(endpoint_url=f"http://{host}:{port}", region="us-east-1")
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        import boto3

        boto3.client(
            "s3", endpoint_url=options.endpoint_url, region_name="us-east-1"
        ).create_bucket(Bucket=bucket)
        source = open_store(f"s3://{bucket}/raw", options)
        pool = Datapool(open_store(f"s3://{bucket}/out/pool", options))
        empty_pool = Datapool(open_store(f"s3://{bucket}/out/empty-pool", options))

        keys = [f"cam{i % 20:02d}/img-{i:06d}.jpg" for i in range(args.keys)]
        start = time.perf_counter()
        _put_many(source, keys)
        setup_s = time.perf_counter() - start

        # A pool that already holds every listed file.
        files = [
            FileResult(
                key=i.key,
                fingerprint=i.fingerprint,
                size_bytes=i.size_bytes,
                kind="image",
                status="ok",
                frames_total=1,
                frames_sampled=1,
            )
            for i in source.list()
        ]
        model = ModelRecord("resnet18", "none:seed=0", 224, 512)
        pool.commit(
            pool.load(),
            run_id="bench",
            files=files,
            samples=Candidates.empty(512),
            tag=None,
            model=model,
        )

        def discover(p: Datapool) -> int:
            snap = p.load()
            return len(list_new_files(source, known=snap.fingerprints).new)

        assert discover(pool) == 0
        before = _interleaved(
            {
                "list": lambda: sum(1 for _ in source.list()),
                "load": lambda: pool.load().fingerprints,
                "discover": lambda: discover(pool),
                "discover_empty_pool": lambda: discover(empty_pool),
            },
            args.repeat,
        )
        _put_many(source, [f"new/img-{i:06d}.jpg" for i in range(args.new)])
        assert discover(pool) == args.new
        after = _interleaved(
            {"discover": lambda: discover(pool), "list": lambda: sum(1 for _ in source.list())},
            args.repeat,
        )
    finally:
        server.stop()

    result = {
        "bench": "discover",
        "endpoint": "moto server over HTTP on 127.0.0.1",
        "keys_listed": args.keys,
        "pool_files": args.keys,
        "new_files": args.new,
        "setup_put_s": round(setup_s, 2),
        "list_only_s": round(statistics.median(before["list"]), 3),
        "load_pool_s": round(statistics.median(before["load"]), 3),
        "discover_0_new_s": round(statistics.median(before["discover"]), 3),
        "discover_against_empty_pool_s": round(statistics.median(before["discover_empty_pool"]), 3),
        "discover_1000_new_s": round(statistics.median(after["discover"]), 3),
        "list_only_with_new_s": round(statistics.median(after["list"]), 3),
        # Ratios: the median of the per-round ratios (variants of one round side by side).
        "listing_share_0_new": round(_median_ratio(before["list"], before["discover"]), 3),
        "listing_share_1000_new": round(_median_ratio(after["list"], after["discover"]), 3),
        "pool_size_overhead_ratio": round(
            _median_ratio(before["discover"], before["discover_empty_pool"]), 3
        ),
        "repeat": args.repeat,
        "timing": "interleaved: each round times every variant once, reversed on odd rounds",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

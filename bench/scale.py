"""Scale-out: in-process curate vs 2 Dask workers vs 2 GPU-pool workers, on the same input.

Starts, on 127.0.0.1, a Prefect server (temporary PREFECT_HOME), the work pools with
`deployments/setup.py --gpu-limit 2`, the `embed-shards/gpu` deployment and two process workers
(`--limit 1` each); a `dask scheduler` and two `dask worker`s (one thread each). Then curates
the same synthetic videos three ways, each run in a fresh process against that server:

- `local`: the default, decode+embed in the curate run's process;
- `dask`: `scale: {mode: dask, address: ...}`, one task per shard;
- `pool`: `scale: {mode: pool, runs: R}`, R child runs of `embed-shards/gpu`.

Every worker shares this machine's cores with the others, so scaling out cannot add compute
here: whatever a mode takes beyond `local` is orchestration (process start, imports, model
load, polling, API calls). Reported per shard and per child run, and as a share of the run.
On real GPU hosts the same overhead is paid once per child / per shard while the work grows
with the hardware: see docs/scaling.md.

    .venv/bin/python bench/scale.py            # ~24 files, 4 child runs: several minutes
    .venv/bin/python bench/scale.py --quick    # smoke test: 6 files, 2 child runs

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the three modes and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 files, 2 children")
    parser.add_argument("--videos", type=int, default=None, help="videos (default 18; quick 4)")
    parser.add_argument("--images", type=int, default=None, help="stills (default 6; quick 2)")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (90; quick 30)")
    parser.add_argument("--runs", type=int, default=None, help="child runs (default 4; quick 2)")
    args = parser.parse_args(argv)
    videos = args.videos or (4 if args.quick else 18)
    images = args.images if args.images is not None else (2 if args.quick else 6)
    frames = args.frames or (30 if args.quick else 90)
    runs = args.runs or (2 if args.quick else 4)

    from tests.integration.prefect_server import BIN, free_port, prefect_server, stop_process
    from tests.integration.scaleout import RUN_CURATE, assert_same_pool
    from winnow import demo
    from winnow.storage import LocalStore

    params = {
        "embedding": {"weights": "none", "input_size": 64, "batch_size": 32},
        "frames": {"every_n_frames": 3},
        "selection": {"n_samples": 8},
        "shard_files": 1,
    }
    with tempfile.TemporaryDirectory(prefix="winnow-bench-scale-") as tmp:
        root = Path(tmp)
        source = root / "raw"
        demo.write_demo_files(
            LocalStore(source),
            n_videos=videos,
            n_images=images,
            seed=1,
            frames_per_video=frames,
            width=320,
            height=180,
        )
        shards = videos + images
        procs: list[subprocess.Popen] = []
        with prefect_server(root / "prefect-home", ui=False) as server:
            server.run("python", "deployments/setup.py", "--gpu-limit", "2")
            server.run("prefect", "--no-prompt", "deploy", "--name", "embed-shards/gpu")
            for i in range(2):
                server.start_worker(
                    "winnow-gpu",
                    root / f"worker-{i}.log",
                    "--limit",
                    "1",
                    PREFECT_WORKER_QUERY_SECONDS="2",
                )
            port = free_port()
            address = f"tcp://127.0.0.1:{port}"
            local = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
            for name, cmd in [
                ("scheduler", ["scheduler", "--port", str(port), *local]),
                *[
                    (f"dask-{i}", ["worker", address, *local, "--nthreads", "1", "--no-nanny"])
                    for i in range(2)
                ],
            ]:
                with open(root / f"{name}.log", "ab") as out:
                    procs.append(
                        subprocess.Popen(
                            [str(BIN / "dask"), *cmd],
                            cwd=ROOT,
                            env=server.env(),
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            try:
                from distributed import Client

                with Client(address, timeout=60) as client:
                    client.wait_for_workers(2, timeout=60)
                results = {}
                for mode, scale in [
                    ("local", None),
                    ("dask", {"mode": "dask", "address": address}),
                    ("pool", {"mode": "pool", "runs": runs}),
                ]:
                    data = {"source": str(source), "output": str(root / mode), **params}
                    if scale:
                        data["scale"] = scale
                    _log(f"curate, {mode} ...")
                    started = time.perf_counter()
                    out = server.run("python", "-c", RUN_CURATE, json.dumps(data), timeout=1800)
                    wall = time.perf_counter() - started
                    summary = json.loads(out.stdout.strip().splitlines()[-1])
                    results[mode] = {
                        "wall_s": round(wall, 2),
                        "decode_embed_s": summary["seconds"]["decode_embed"],
                        "candidates": summary["candidates"],
                    }
                    _log(f"  {results[mode]}")
                for mode in ("dask", "pool"):
                    assert_same_pool(root / mode, root / "local")
            finally:
                for proc in reversed(procs):
                    stop_process(proc, grace=10)

    base = results["local"]["decode_embed_s"]
    out = {
        "shards": shards,
        "child_runs": runs,
        "frames": results["local"]["candidates"],
        "modes": results,
        "dask_vs_local": round(base / results["dask"]["decode_embed_s"], 3),
        "pool_vs_local": round(base / results["pool"]["decode_embed_s"], 3),
    }
    for mode, units, n in (("dask", "shard", shards), ("pool", "child", runs)):
        extra = results[mode]["decode_embed_s"] - base
        out[f"{mode}_overhead_s"] = round(extra, 2)
        out[f"{mode}_overhead_per_{units}_s"] = round(extra / n, 2)
        out[f"{mode}_overhead_share"] = round(extra / results[mode]["decode_embed_s"], 3)
    out["pool_overhead_per_shard_s"] = round(out["pool_overhead_s"] / shards, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

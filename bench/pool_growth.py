"""Pool growth: a run's load + seed + commit cost against a small and a big pool.

Builds two synthetic pools on the local backend with the same dataset (one tag of
`--dataset` samples) and different totals (`--small`, `--big` samples; videos of 10 frames,
so a tenth as many files), written through `Datapool.commit` in commits of at most 500k samples
with `--dim`-wide float16 embeddings (64 by default, to bound disk and build time: the
cost measured here reads the dataset's embeddings, so it scales with dim x dataset, never with
the pool). Then, in `--repeat` fresh subprocesses per pool, interleaved (so the peak RSS is
that of one run, and load on the machine hits both pools alike), after the imports (not timed),
a run of `--run` new frames loads the pool, seeds selection with the dataset's embeddings
(`snapshot.dataset()`) and commits its files, samples and a tag; its version is then removed so
every cycle sees the same pool. Each process does `--inner` such cycles: one cycle is about
0.1 s, so a single one per process leaves the ratio at the mercy of a noisy host (1 process
of 1 cycle gave 0.78 to 1.55 here). Reported per pool: the median time of those three steps
over all cycles (and over the cold first cycles alone), the child's peak RSS (VmHWM) before,
after its first cycle and after all of them, the same seed through the old path (every samples
part; first process only), and, for information, building the fingerprint index and looking
up the run's keys (discovery: that one is O(files) by nature).

    .venv/bin/python bench/pool_growth.py [--quick] [--repeat 7] [--inner 8] [--workdir DIR]

The last line of output is one JSON object; `pool_growth_ratio` = time at big / time at
small (all cycles), `cold_pool_growth_ratio` the same over first cycles.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.datapool import Datapool  # noqa: E402
from winnow.records import STRING_COLUMNS, Candidates, FileResult, ModelRecord, TagRecord  # noqa: E402
from winnow.storage import LocalStore  # noqa: E402

FRAMES_PER_FILE = 10
COMMIT_SAMPLES = 500_000


def _model(dim: int) -> ModelRecord:
    return ModelRecord(name="resnet18", weights="none:bench", input_size=64, dim=dim)


def _run(prefix: str, n: int, dim: int, seed: int) -> tuple[list[FileResult], Candidates]:
    """Files and candidates of a synthetic run: n frames of n / 10 videos."""
    rng = np.random.default_rng(seed)
    n_files = max(1, n // FRAMES_PER_FILE)
    file_no = np.arange(n) // FRAMES_PER_FILE
    keys = np.array([f"{prefix}/v{i:08d}.mp4" for i in range(n_files)], dtype=object)
    fps = np.array([f"mtime:{seed}{i}:1000" for i in range(n_files)], dtype=object)
    cols = {
        "sample_id": np.array([f"{prefix}-{i:010d}" for i in range(n)], dtype=object),
        "key": keys[file_no],
        "fingerprint": fps[file_no],
        "content_hash": np.array([f"h{prefix}{i}" for i in range(n)], dtype=object),
    }
    assert set(cols) == set(STRING_COLUMNS)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cands = Candidates(
        **cols,
        frame_index=(np.arange(n) % FRAMES_PER_FILE).astype(np.int64),
        pts_seconds=(np.arange(n) % FRAMES_PER_FILE).astype(np.float64) / 30,
        width=np.full(n, 1920, np.int32),
        height=np.full(n, 1080, np.int32),
        brightness=rng.random(n, dtype=np.float32),
        contrast=rng.random(n, dtype=np.float32),
        sharpness=rng.random(n, dtype=np.float32),
        embedding=emb.astype(np.float16),
        run_id=np.full(n, "", dtype=object),
    )
    files = [
        FileResult(
            key=str(k),
            fingerprint=str(f),
            size_bytes=1000,
            kind="video",
            status="ok",
            frames_total=FRAMES_PER_FILE,
            frames_sampled=FRAMES_PER_FILE,
            width=1920,
            height=1080,
        )
        for k, f in zip(keys, fps, strict=True)
    ]
    return files, cands


def _tag(name: str, ids) -> TagRecord:
    return TagRecord(
        name=name,
        parent=None,
        run_id=name,
        created="2026-01-01T00:00:00+00:00",
        parameters="{}",
        counts="{}",
        sample_ids=tuple(str(s) for s in ids),
    )


def build(root: Path, total: int, dataset: int, dim: int) -> float:
    """A pool of `total` samples whose dataset is `dataset` of them; seconds taken."""
    start = time.perf_counter()
    pool = Datapool(LocalStore(root))
    done = 0
    while done < total:
        n = min(COMMIT_SAMPLES, total - done)
        files, cands = _run(f"b{done // COMMIT_SAMPLES:03d}", n, dim, seed=done)
        tag = _tag("dataset", cands.sample_id[:dataset]) if done == 0 else None
        pool.commit(
            pool.load(),
            run_id=f"build{done}",
            files=files,
            samples=cands,
            tag=tag,
            model=_model(dim),
        )
        done += n
    return time.perf_counter() - start


def build_files(root: Path, n_files: int) -> float:
    """A pool of `n_files` files and no samples (commits of 500k files); seconds taken.

    More commits than `COMPACT_AFTER_PARTS` make the last ones compact the files table
    (streaming), as a long-lived pool's commits do.
    """
    start = time.perf_counter()
    pool = Datapool(LocalStore(root))
    done = 0
    while done < n_files:
        n = min(COMMIT_SAMPLES, n_files - done)
        files = [
            FileResult(
                key=f"cam{i % 97:02d}/2026/{i:010d}.mp4",
                fingerprint=f"mtime:{i}:1000",
                size_bytes=1000,
                kind="video",
                status="ok",
            )
            for i in range(done, done + n)
        ]
        pool.commit(
            pool.load(),
            run_id=f"files{done}",
            files=files,
            samples=Candidates.empty(8),
            tag=None,
            model=_model(8),
        )
        done += n
    return time.perf_counter() - start


def index_child(root: Path, n_files: int) -> None:
    """Load the files-only pool, build its fingerprint index, look up 200k listed keys."""
    import pyarrow.dataset  # noqa: F401

    assert n_files >= 100_000, "--index-files: at least 100000 (100k of the listed keys are known)"
    listed = [f"cam{i % 97:02d}/2026/{i:010d}.mp4" for i in range(n_files - 100_000, n_files)]
    listed += [f"new/{i:010d}.mp4" for i in range(100_000)]
    rss_before = _vm_hwm_mb()
    t0 = time.perf_counter()
    snap = Datapool(LocalStore(root)).load()
    t1 = time.perf_counter()
    index = snap.fingerprints
    t2 = time.perf_counter()
    hits = index.lookup(listed)
    t3 = time.perf_counter()
    known = sum(h is not None for h in hits)
    assert len(index) == n_files and known == 100_000, (len(index), known)
    print(
        json.dumps(
            {
                "files": n_files,
                "files_parts": len(snap.manifest.parts["files"]),
                "load_s": t1 - t0,
                "fingerprint_index_s": t2 - t1,
                "lookup_200k_keys_s": t3 - t2,
                "rss_before_mb": rss_before,
                "rss_peak_mb": _vm_hwm_mb(),
            }
        )
    )


def _index_files(tmp: Path, n_files: int) -> dict:
    """Build (or reuse) the files-only pool and measure its index in a fresh process."""
    root = tmp / f"files-{n_files}"
    marker = tmp / f"files-{n_files}.built"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        marker.write_text(str(build_files(root, n_files)))
    result = _child_json(["--index-child", str(root), "--index-files", str(n_files)])
    result["build_s"] = float(marker.read_text())
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cycle(pool: Datapool, files, cands, tag, dim: int, seed: int) -> dict:
    """One measured load + seed + commit, then the pool restored (its version removed)."""
    t0 = time.perf_counter()
    snap = pool.load()
    t1 = time.perf_counter()
    centers = snap.dataset().embedding.astype(np.float32)
    t2 = time.perf_counter()
    version = pool.commit(
        snap, run_id=f"bench-{seed}", files=files, samples=cands, tag=tag, model=_model(dim)
    )
    t3 = time.perf_counter()
    new = pool.load(version)
    added = [p for ps in new.manifest.parts.values() for p in ps if p.startswith("parts/bench-")]
    pool.store.delete([*added, f"versions/{version:020d}.json"])
    pool.store.put("latest", json.dumps({"version": version - 1}).encode())
    return {
        "load_s": t1 - t0,
        "seed_s": t2 - t1,
        "commit_s": t3 - t2,
        "total_s": t3 - t0,
        "dataset_rows": len(centers),
        "snap": snap,
    }


def child(root: Path, run: int, dim: int, seed: int, old_path: bool, inner: int) -> None:
    """Measured runs in one process: `inner` load-seed-commit cycles, then the extras.

    The first cycle is the cold one (first use of the pool in the process, as a real run
    does it); the later ones give the resolution a single 0.1 s cycle lacks on a noisy host.
    """
    import pyarrow.dataset  # noqa: F401  (pq.read_table imports it, and pandas, on first use)

    pool = Datapool(LocalStore(root))
    files, cands = _run(f"new{seed}", run, dim, seed=10_000 + seed)
    tag = _tag(f"run-{seed}", cands.sample_id[: max(1, run // 100)])
    rss_before = _vm_hwm_mb()
    cycles = [_cycle(pool, files, cands, tag, dim, seed)]
    rss_first = _vm_hwm_mb()
    cycles += [_cycle(pool, files, cands, tag, dim, seed) for _ in range(inner - 1)]
    rss_last = _vm_hwm_mb()
    snap = cycles[0].pop("snap")
    for c in cycles[1:]:
        del c["snap"]
    # Not part of the measured steps (their RSS is read above): the old seed path and discovery.
    t4 = time.perf_counter()
    old = snap.samples(snap.dataset_ids) if old_path else snap.dataset()
    t5 = time.perf_counter()
    index = snap.fingerprints
    t6 = time.perf_counter()
    hits = index.lookup([f.key for f in files])
    t7 = time.perf_counter()
    assert len(old) == cycles[0]["dataset_rows"] and all(h is None for h in hits)
    print(
        json.dumps(
            {
                "cycles": cycles,
                "rss_before_mb": rss_before,
                "rss_peak_mb": rss_first,
                "rss_after_all_mb": rss_last,
                "old_seed_s": t5 - t4 if old_path else None,
                "fingerprint_index_s": t6 - t5,
                "lookup_run_keys_s": t7 - t6,
            }
        )
    )


def _measure(root: Path, run: int, dim: int, seed: int, inner: int) -> dict:
    return _child_json(
        ["--child", str(root), "--run", str(run), "--dim", str(dim)]
        + ["--seed", str(seed), "--inner", str(inner)]
        + (["--old-path"] if seed == 0 else [])
    )


def _child_json(args: list[str]) -> dict:
    """The last line of a child's output (JSON); a failed child raises with its stderr."""
    cmd = [sys.executable, "-X", "faulthandler", __file__, *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {out.returncode}; its stderr ends:\n{out.stderr[-3000:]}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small pools (smoke test)")
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=2_000_000)
    parser.add_argument("--dataset", type=int, default=20_000)
    parser.add_argument("--run", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7, help="processes per pool")
    parser.add_argument("--inner", type=int, default=8, help="measured cycles per process")
    parser.add_argument(
        "--workdir", type=Path, help="build the pools here and keep them (reused when present)"
    )
    parser.add_argument(
        "--index-files",
        type=int,
        default=0,
        help="also build a files-only pool of this many files (e.g. 10000000) and time loading "
        "its fingerprint index and looking up 200k listed keys (half of them known)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--old-path", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.index_child:
        index_child(args.index_child, args.index_files)
        return
    if args.child:
        child(args.child, args.run, args.dim, args.seed, args.old_path, args.inner)
        return
    if args.quick:
        args.small, args.big, args.dataset, args.run = 20_000, 200_000, 2_000, 1_000
        args.repeat, args.inner = min(args.repeat, 3), min(args.inner, 3)
        args.index_files = args.index_files or 200_000

    started = time.perf_counter()
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="winnow-pool-growth-"))
    try:
        sizes = {"small": args.small, "big": args.big}
        build_s = {}
        for k, n in sizes.items():
            marker = tmp / f"{k}-{n}-{args.dataset}-{args.dim}.built"
            if marker.exists():
                build_s[k] = float(marker.read_text())
                continue
            shutil.rmtree(tmp / k, ignore_errors=True)
            build_s[k] = build(tmp / k, n, args.dataset, args.dim)
            marker.write_text(str(build_s[k]))
        disk_mb = {
            k: sum(f.stat().st_size for f in (tmp / k).rglob("*") if f.is_file()) / 2**20
            for k in sizes
        }
        index = _index_files(tmp, args.index_files) if args.index_files else None
        runs: dict[str, list[dict]] = {k: [] for k in sizes}
        for i in range(args.repeat):  # interleaved, so load on the machine hits both alike
            for k in sizes:
                runs[k].append(_measure(tmp / k, args.run, args.dim, seed=i, inner=args.inner))
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)

    def med(k: str, name: str) -> float:
        return statistics.median(r[name] for r in runs[k] if r[name] is not None)

    def cyc(k: str, name: str, cold: bool = False) -> float:
        """Median over every measured cycle (or over each process's first, cold one)."""
        cycles = [c for r in runs[k] for c in (r["cycles"][:1] if cold else r["cycles"])]
        return statistics.median(c[name] for c in cycles)

    def peak(k: str, name: str) -> float:
        return max(r[name] for r in runs[k])

    per_pool = {}
    for k, n in sizes.items():
        per_pool[k] = {
            "pool_samples": n,
            "pool_files": n // FRAMES_PER_FILE,
            "disk_mb": round(disk_mb[k], 1),
            "build_s": round(build_s[k], 2),
            "load_s": round(cyc(k, "load_s"), 4),
            "seed_s": round(cyc(k, "seed_s"), 4),
            "commit_s": round(cyc(k, "commit_s"), 4),
            "load_seed_commit_s": round(cyc(k, "total_s"), 4),
            "cold_load_seed_commit_s": round(cyc(k, "total_s", cold=True), 4),
            "rss_before_mb": round(peak(k, "rss_before_mb"), 1),
            "rss_peak_mb": round(peak(k, "rss_peak_mb"), 1),
            "rss_after_all_cycles_mb": round(peak(k, "rss_after_all_mb"), 1),
            "old_path_seed_s": round(med(k, "old_seed_s"), 4),
            "fingerprint_index_s": round(med(k, "fingerprint_index_s"), 4),
            "lookup_run_keys_s": round(med(k, "lookup_run_keys_s"), 4),
        }
        assert all(c["dataset_rows"] == args.dataset for r in runs[k] for c in r["cycles"])
    small, big = per_pool["small"], per_pool["big"]
    result = {
        "bench": "pool_growth",
        "quick": args.quick,
        "backend": "local",
        "dim": args.dim,
        "dataset_samples": args.dataset,
        "run_frames": args.run,
        "repeat": args.repeat,
        "inner": args.inner,
        "small": small,
        "big": big,
        "time_small_s": small["load_seed_commit_s"],
        "time_big_s": big["load_seed_commit_s"],
        "rss_small_mb": small["rss_peak_mb"],
        "rss_big_mb": big["rss_peak_mb"],
        "pool_growth_ratio": round(big["load_seed_commit_s"] / small["load_seed_commit_s"], 3),
        "cold_pool_growth_ratio": round(
            big["cold_load_seed_commit_s"] / small["cold_load_seed_commit_s"], 3
        ),
        "rss_growth_ratio": round(big["rss_peak_mb"] / small["rss_peak_mb"], 3),
        "old_path_seed_ratio": round(big["old_path_seed_s"] / small["old_path_seed_s"], 3),
        "fingerprint_index_at_scale": index,
        "cpu_count": os.cpu_count(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

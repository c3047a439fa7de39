"""Selection speed and quality: k-center greedy against a naive numpy one, and against random.

Speed: N candidates × 512-d (float16, as stored) with M existing samples (float32, as the select
task passes them), k picks, for (N, M, k) = (20k, 10k, 500) (a size the naive baseline fits in
memory), (50k, 20k, 1k) and (200k, 100k, 5k). Each case runs in its own process so its peak RSS
is its own; the naive baseline (numpy, full N × M distance matrix, then one full pass per pick)
runs in a process whose address space is capped (`--mem-limit-gb`, default 6): when its
estimated peak exceeds the cap it is not started and reported as "naive_oom", as is a
MemoryError; a child that dies (the kernel's OOM killer, a signal, an exception) is reported as
`{"status": "crashed", "exit_code": ...}`. Without a naive run the speed-up is null, never a
number. Where both run, their picks are compared; `--quick` fails unless they are the same.

Quality: coverage radius (max over candidates of the distance to the nearest existing-or-picked
sample) of the k-center picks ÷ the mean over 5 seeds of random picks of the same size, on the
(50k, 20k, 1k) clustered data and on scikit-learn's digits (1,797 × 64 pixels / 16, no existing
samples, k = 50). Below 1 is better.

Data: clustered unit vectors standing in for image embeddings: N/200 clusters with Zipf-like
sizes, each a random direction plus Gaussian noise of norm 0.4-1.0; the existing samples come
from 80% of the clusters, so a fifth of the clusters are gaps the picks should fill.

    .venv/bin/python bench/selection.py            # full sizes (several minutes on 2 cores)
    .venv/bin/python bench/selection.py --quick    # small sizes, under a minute (CI smoke)

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 512
FULL_CASES = [(20_000, 10_000, 500), (50_000, 20_000, 1_000), (200_000, 100_000, 5_000)]
QUICK_CASES = [(5_000, 2_000, 100), (10_000, 5_000, 300)]
RANDOM_SEEDS = 5


def clustered(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, DIM) float16 candidates and (m, DIM) float32 existing samples, clustered."""
    rng = np.random.default_rng(seed)
    n_clusters = max(16, n // 200)
    centers = rng.standard_normal((n_clusters, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    spread = rng.uniform(0.4, 1.0, n_clusters).astype(np.float32)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    covered = rng.permutation(n_clusters)[: int(0.8 * n_clusters)]

    def draw(rows: int, clusters: np.ndarray, dtype: type) -> np.ndarray:
        p = weights[clusters] / weights[clusters].sum()
        label = clusters[rng.choice(len(clusters), size=rows, p=p)]
        out = np.empty((rows, DIM), dtype)
        for s in range(0, rows, 16384):
            lab = label[s : s + 16384]
            noise = rng.standard_normal((len(lab), DIM), dtype=np.float32)
            v = centers[lab] + noise * (spread[lab] / np.sqrt(DIM))[:, None]
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            out[s : s + 16384] = v
        return out

    return draw(n, np.arange(n_clusters), np.float16), draw(m, covered, np.float32)


def naive_kcenter(x: np.ndarray, existing: np.ndarray, k: int) -> list[int]:
    """The textbook version: the full N × M distance matrix, then one full pass per pick."""
    x = x.astype(np.float32)
    e = existing.astype(np.float32)
    d2 = (x * x).sum(1)[:, None] + (e * e).sum(1)[None, :] - 2.0 * (x @ e.T)
    d = np.sqrt(np.maximum(d2, 0)).min(1)
    del d2
    picks = []
    for _ in range(k):
        i = int(np.argmax(d))
        picks.append(i)
        d = np.minimum(d, np.linalg.norm(x - x[i], axis=1))
        d[i] = -1.0
    return picks


def naive_estimated_bytes(n: int, m: int) -> int:
    return 3 * n * m * 4 + n * DIM * 6 + m * DIM * 8  # three N × M float32 temporaries + inputs


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ child processes


class _Phases:
    """Captures the phase timings `winnow.selection` logs at DEBUG."""

    def __init__(self) -> None:
        import logging

        self.records: list = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = self.records.append
        log = logging.getLogger("winnow.selection")
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)

    def last(self) -> dict:
        r = self.records[-1]
        return {"initial_distances_s": round(r.initial_s, 2), "greedy_s": round(r.greedy_s, 2)}


def run_case(n: int, m: int, k: int, seed: int, quality: bool) -> dict:
    import torch

    from winnow import selection

    phases = _Phases()
    x, existing = clustered(n, m, seed)
    rss_inputs = rss_mb()
    start = time.perf_counter()
    picks, dists = selection.kcenter_greedy(x, existing=existing, k=k)
    seconds = time.perf_counter() - start
    out = {
        "n": n,
        "m": m,
        "k": k,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "rss_inputs_mb": round(rss_inputs),
        "working_mb": round(peak_rss_mb() - rss_inputs),
        "picks_per_s": round(len(picks) / seconds, 1),
        **phases.last(),
        "torch_threads": torch.get_num_threads(),
        "picks": picks.tolist() if n <= 20_000 else None,
    }
    if quality:
        start = time.perf_counter()
        d0 = selection.nearest_distances(x, existing)
        out["nearest_distances_s"] = round(time.perf_counter() - start, 2)

        def radius(chosen: np.ndarray) -> float:
            return float(np.minimum(d0, selection.nearest_distances(x, x[chosen])).max())

        rng = np.random.default_rng(seed + 1)
        randoms = [radius(rng.choice(n, size=k, replace=False)) for _ in range(RANDOM_SEEDS)]
        out["quality"] = {
            "coverage_before": round(float(d0.max()), 4),
            "kcenter_radius": round(radius(picks), 4),
            "random_radius_mean": round(float(np.mean(randoms)), 4),
            "coverage_vs_random": round(radius(picks) / float(np.mean(randoms)), 4),
            "first_pick_distance": round(float(dists[0]), 4),
        }
    return out


def run_naive(n: int, m: int, k: int, seed: int, limit_bytes: int) -> dict:
    x, existing = clustered(n, m, seed)
    rss_inputs = rss_mb()
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    start = time.perf_counter()
    try:
        picks = naive_kcenter(x, existing, k)
    except MemoryError:
        return {"status": "naive_oom", "reason": "MemoryError under the address-space cap"}
    return {
        "status": "ok",
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "working_mb": round(peak_rss_mb() - rss_inputs),
        "picks": picks,
    }


def run_digits(k: int) -> dict:
    from sklearn.datasets import load_digits

    from winnow import selection

    x = load_digits().data.astype(np.float32) / 16.0
    picks, _ = selection.kcenter_greedy(x, k=k)
    rng = np.random.default_rng(0)

    def radius(chosen: np.ndarray) -> float:
        return selection.coverage_radius(x, x[chosen])

    randoms = [radius(rng.choice(len(x), size=k, replace=False)) for _ in range(RANDOM_SEEDS)]
    return {
        "n": len(x),
        "dim": x.shape[1],
        "k": k,
        "kcenter_radius": round(radius(picks), 4),
        "random_radius_mean": round(float(np.mean(randoms)), 4),
        "coverage_vs_random": round(radius(picks) / float(np.mean(randoms)), 4),
    }


def child(args: list[str]) -> dict:
    """The child's JSON line, or `{"status": "crashed", "exit_code": ...}` when it died.

    A child killed by a signal (e.g. the kernel's OOM killer) has a negative exit code and the
    signal's name; no numbers are made up for it.
    """
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        crashed = {"status": "crashed", "exit_code": proc.returncode}
        if proc.returncode < 0:
            crashed["signal"] = signal.Signals(-proc.returncode).name
        return {**crashed, "stderr": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--mem-limit-gb", type=float, default=6.0, help="cap of the naive run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--case", nargs=3, type=int, metavar=("N", "M", "K"), help=argparse.SUPPRESS
    )
    parser.add_argument("--quality", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--naive", nargs=3, type=int, metavar=("N", "M", "K"), help=argparse.SUPPRESS
    )
    parser.add_argument("--digits", type=int, metavar="K", help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = int(args.mem_limit_gb * 2**30)
    if args.case:
        print(json.dumps(run_case(*args.case, args.seed, args.quality)))
        return
    if args.naive:
        print(json.dumps(run_naive(*args.naive, args.seed, limit)))
        return
    if args.digits:
        print(json.dumps(run_digits(args.digits)))
        return

    started = time.perf_counter()
    cases = QUICK_CASES if args.quick else FULL_CASES
    quality_case = cases[-1] if args.quick else cases[1]
    results = []
    failures: list[str] = []  # quick mode: every case must give the naive baseline's picks
    for n, m, k in cases:
        flags = ["--quality"] if (n, m, k) == quality_case else []
        ours = child(["--case", str(n), str(m), str(k), "--seed", str(args.seed), *flags])
        estimate = naive_estimated_bytes(n, m)
        if estimate > limit:
            naive = {
                "status": "naive_oom",
                "reason": f"needs ~{estimate / 2**30:.1f} GB > {args.mem_limit_gb:g} GB cap; "
                "not started",
            }
        else:
            naive = child(["--naive", str(n), str(m), str(k), "--seed", str(args.seed)])
        row = {**{key: v for key, v in ours.items() if key != "picks"}, "naive": naive}
        row.setdefault("status", "ok")  # ours: "crashed" with its exit code when it died
        row["naive_estimated_gb"] = round(estimate / 2**30, 1)
        if naive.get("status") == "ok" and row["status"] == "ok":
            row["speedup_vs_naive"] = round(naive["seconds"] / ours["seconds"], 2)
            row["working_memory_vs_naive"] = round(
                naive["working_mb"] / max(ours["working_mb"], 1), 2
            )
            row["same_picks_as_naive"] = naive.pop("picks") == ours.get("picks")
        else:  # the naive run was not started, ran out of memory or crashed: see "naive"
            naive.pop("picks", None)
            row["speedup_vs_naive"] = None
            row["working_memory_vs_naive"] = None
            row["same_picks_as_naive"] = None
        print(json.dumps(row), flush=True)
        if args.quick and row["same_picks_as_naive"] is not True:
            failures.append(f"({n}, {m}, {k}): same_picks_as_naive is {row['same_picks_as_naive']}")
        results.append(row)
    digits = child(["--digits", "50"])
    print(json.dumps({"digits": digits}), flush=True)
    measured = [r for r in results if isinstance(r["speedup_vs_naive"], float)]
    clustered_quality = next((r["quality"] for r in results if "quality" in r), {})
    summary = {
        "bench": "selection",
        "quick": args.quick,
        "dim": DIM,
        "cases": results,
        "quality_clustered": clustered_quality,
        "quality_digits": digits,
        "speedup_vs_naive": results[-1]["speedup_vs_naive"],
        "speedup_vs_naive_largest_measured": (
            {
                "n": measured[-1]["n"],
                "m": measured[-1]["m"],
                "k": measured[-1]["k"],
                "speedup": measured[-1]["speedup_vs_naive"],
            }
            if measured
            else None
        ),
        "coverage_vs_random": clustered_quality.get("coverage_vs_random"),
        "coverage_vs_random_digits": digits.get("coverage_vs_random"),
        "cpu_count": len(os.sched_getaffinity(0)),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    if failures:
        sys.exit("bench/selection.py --quick: " + "; ".join(failures))


if __name__ == "__main__":
    main()

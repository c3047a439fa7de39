"""The pool's similarity index (FAISS IVF-SQ8, `winnow.index`): build, recall, near-duplicate
checks against a 5M pool, next to exact search and to usearch (HNSW).

Data: 512-d unit vectors like bench/selection.py's clustered ones (scenes drawn with Zipf-like
weights, one per 2,000 rows), with the local structure real frame embeddings have: each scene
holds videos of 20 frames that are random walks (video offset 0.35 from the scene, steps of
0.08), so a frame's nearest neighbours are the frames next to it. (On bench/selection.py's
isotropic clusters, neighbours within a cluster are all about equally far and no index, FAISS or
usearch, reaches recall@10 0.9: measured 0.84 for IVF-SQ8 at nprobe 32, 0.35 for usearch HNSW.)
The pool is generated in float16 chunks of 100k rows (seeded per chunk, regenerated when needed),
so no process ever holds the pool's embeddings: only the index (8-bit codes).

Measured:
- build (train + add) time and memory at 1M and 5M rows, each in its own process (peak RSS);
  10M extrapolated: memory by the bytes per row (codes + id) × 10M plus the fixed part (the
  centroids), time linearly in rows for adding plus the fixed training time (the training
  sample is capped at 4,096 lists × 39 rows);
- recall@10 of `PoolIndex.search` (nprobe `NPROBE`) against exact search, on 10k queries (new
  frames: a pool frame moved by one walk step) at 1M rows;
- near-duplicate recall at `DEFAULT_NEAR_DISTANCE` (0.05): 10k near-duplicates (pool rows moved
  by 0 to 0.9 × 0.05), found when the check (`nprobe` `CHECK_NPROBE`) puts a pool row within
  0.05;
- the time to check 100k new candidates (90% new frames, 10% near-duplicates) against the 5M
  pool with the index, and exact search of the same candidates: exact is run on a seeded subset
  of the candidates (1,000; the full 100k × 5M × 512 would take over an hour here) and
  extrapolated linearly to 100k (exact cost is linear in the candidates);
- FAISS IVF-SQ8 against usearch HNSW (i8 and f16 codes) on the same 500k rows: build, recall,
  queries/s, memory.

    .venv/bin/python bench/index.py            # full (10-20 minutes on 2 cores)
    .venv/bin/python bench/index.py --quick    # small sizes, under a minute (CI smoke)

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from winnow import index as ix  # noqa: E402

DIM = 512
CHUNK = 100_000
FRAMES = 20
STEP = 0.08
OFFSET = 0.35


def scenes(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scene centers (unit rows) and their Zipf-like weights, for a pool of `rows` rows."""
    rng = np.random.default_rng(seed)
    n = max(16, rows // 2000)
    centers = rng.standard_normal((n, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, n + 1) ** 0.8
    return centers, weights / weights.sum()


def chunk(i: int, rows: int, world: tuple[np.ndarray, np.ndarray], seed: int) -> np.ndarray:
    """Rows [i*CHUNK, i*CHUNK + rows) of the pool: float16 frames of 20-frame videos."""
    centers, weights = world
    rng = np.random.default_rng([seed, i])
    videos = -(-rows // FRAMES)
    scene = rng.choice(len(centers), size=videos, p=weights)
    out = np.empty((videos * FRAMES, DIM), np.float16)
    for s in range(0, videos, 1000):
        v = min(1000, videos - s)
        start = centers[scene[s : s + v]] + rng.standard_normal((v, DIM), np.float32) * (
            OFFSET / np.sqrt(DIM)
        )
        steps = rng.standard_normal((v, FRAMES, DIM), np.float32) * (STEP / np.sqrt(DIM))
        walk = (start[:, None, :] + np.cumsum(steps, axis=1)).reshape(-1, DIM)
        walk /= np.linalg.norm(walk, axis=1, keepdims=True)
        out[s * FRAMES : (s + v) * FRAMES] = walk
    return out[:rows]


def chunks(rows: int, seed: int):
    """(offset, float16 chunk) of the whole pool, in order."""
    world = scenes(rows, seed)
    for i, start in enumerate(range(0, rows, CHUNK)):
        yield start, chunk(i, min(CHUNK, rows - start), world, seed)


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def moved(rows: np.ndarray, norms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows moved by noise of the given norms, on the unit sphere (distance ≈ norm)."""
    noise = rng.standard_normal(rows.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return unit(rows.astype(np.float32) + noise * norms[:, None])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(rows: int, seed: int, grab: np.ndarray) -> tuple[ix.PoolIndex, dict, np.ndarray]:
    """Train on a seeded sample, add every chunk; the rows at `grab` are kept (for queries)."""
    lists = ix.lists_for(rows)
    want = min(rows, max(lists * ix.TRAIN_PER_LIST, 10_000), lists * 64)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(rows, size=want, replace=False))
    start = time.perf_counter()
    sample, kept = [], []
    for offset, x in chunks(rows, seed):
        in_chunk = keep[(keep >= offset) & (keep < offset + len(x))] - offset
        sample.append(x[in_chunk].astype(np.float32))
        kept.append(x[grab[(grab >= offset) & (grab < offset + len(x))] - offset])
    gen_s = time.perf_counter() - start
    start = time.perf_counter()
    template = ix.train_template(np.concatenate(sample), lists=lists, seed=seed)
    train_s = time.perf_counter() - start
    del sample
    start = time.perf_counter()
    index = template
    for offset, x in chunks(rows, seed):
        index.add_with_ids(np.ascontiguousarray(x, np.float32), np.arange(offset, offset + len(x)))
    add_s = time.perf_counter() - start
    nbytes = len(ix._to_bytes(index))
    ids = np.arange(rows).astype(str).astype(object)
    pool = ix.PoolIndex(index, ids, ids, np.zeros(rows, np.int64), version=1)
    info = {
        "rows": rows,
        "lists": int(index.nlist),
        "train_rows": want,
        "train_s": round(train_s, 1),
        "add_s_incl_generation": round(add_s, 1),
        "generation_s": round(gen_s, 1),
        "index_bytes": nbytes,
        "bytes_per_row": round(nbytes / rows, 1),
    }
    return pool, info, np.concatenate(kept)


def exact_topk(queries: np.ndarray, rows: int, seed: int, k: int) -> tuple[np.ndarray, float]:
    """Exact k nearest pool rows of each query (a blockwise scan of the regenerated chunks)."""
    q = unit(queries)
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    scan_s = 0.0
    for offset, x in chunks(rows, seed):
        start = time.perf_counter()
        x32 = x.astype(np.float32)
        for b in range(0, len(q), 1024):  # (1024 × 100k) float32 similarities at a time
            sim = q[b : b + 1024] @ x32.T
            part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            s = np.concatenate([best_s[b : b + 1024], np.take_along_axis(sim, part, 1)], 1)
            i = np.concatenate([best_i[b : b + 1024], part + offset], 1)
            order = np.argsort(-s, axis=1)[:, :k]
            best_s[b : b + 1024] = np.take_along_axis(s, order, 1)
            best_i[b : b + 1024] = np.take_along_axis(i, order, 1)
        scan_s += time.perf_counter() - start
    return best_i, scan_s


def case_build(rows: int, seed: int, check: int, exact_subset: int, recall_q: int) -> dict:
    """Build at `rows`; recall@10 on `recall_q` queries; the check of `check` candidates."""
    rng = np.random.default_rng(seed + 1)
    n_dup = check // 10
    grab = np.unique(rng.choice(rows, size=max(recall_q, n_dup, check), replace=False))
    pool, info, kept = build(rows, seed, grab)
    info["build_s"] = round(info["train_s"] + info["add_s_incl_generation"], 1)
    out = {"build": info}
    rng.shuffle(kept)
    if recall_q:
        queries = moved(kept[:recall_q], np.full(recall_q, STEP), rng)
        start = time.perf_counter()
        found, _ = pool.search(queries, 10)
        search_s = time.perf_counter() - start
        truth, exact_s = exact_topk(queries, rows, seed, 10)
        hits = [len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True)]
        out["recall_at_10"] = round(float(np.mean(hits)) / 10, 4)
        out["recall_queries"] = recall_q
        out["recall_search_s"] = round(search_s, 2)
        out["recall_exact_s"] = round(exact_s, 1)
    if check:
        near = ix.DEFAULT_NEAR_DISTANCE
        dups = moved(kept[:n_dup], rng.uniform(0, 0.9 * near, n_dup).astype(np.float32), rng)
        fresh = moved(kept[n_dup:check], np.full(check - n_dup, STEP), rng)
        candidates = np.concatenate([dups, fresh])
        start = time.perf_counter()
        _, dist = pool.search(candidates, 4, nprobe=ix.CHECK_NPROBE)
        check_s = time.perf_counter() - start
        nearest = dist.min(axis=1)
        flagged = nearest < near * ix.APPROX_SLACK  # as the run's check counts an index hit
        out["near_dup_recall"] = round(float(flagged[:n_dup].mean()), 4)
        out["check_candidates"] = check
        out["check_s"] = round(check_s, 2)
        out["check_flagged_fresh_share"] = round(float(flagged[n_dup:].mean()), 4)
        subset = np.random.default_rng(seed + 2).choice(check, size=exact_subset, replace=False)
        _, exact_s = exact_topk(candidates[subset], rows, seed, 1)
        out["exact_subset"] = exact_subset
        out["exact_subset_s"] = round(exact_s, 1)
        out["exact_check_extrapolated_s"] = round(exact_s * check / exact_subset, 1)
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out


def case_compare(rows: int, seed: int, queries: int) -> dict:
    """FAISS IVF-SQ8 against usearch HNSW (i8, f16) on the same rows and queries."""
    import usearch.index as us

    rng = np.random.default_rng(seed + 3)
    grab = np.sort(rng.choice(rows, size=queries, replace=False))
    pool, info, kept = build(rows, seed, grab)
    q = moved(kept, np.full(len(kept), STEP), rng)
    truth, _ = exact_topk(q, rows, seed, 10)

    def recall(found: np.ndarray) -> float:
        pairs = zip(found.tolist(), truth.tolist(), strict=True)
        return round(float(np.mean([len(set(a) & set(b)) for a, b in pairs])) / 10, 4)

    start = time.perf_counter()
    found, _ = pool.search(q, 10)
    out = {
        "rows": rows,
        "faiss_ivf_sq8": {
            "build_s": round(info["train_s"] + info["add_s_incl_generation"], 1),
            "recall_at_10": recall(found),
            "queries_per_s": round(len(q) / (time.perf_counter() - start)),
            "bytes_per_row": info["bytes_per_row"],
        },
    }
    for dtype in ("i8", "f16"):
        index = us.Index(ndim=DIM, metric="ip", dtype=dtype, connectivity=16, expansion_add=64)
        start = time.perf_counter()
        for offset, x in chunks(rows, seed):
            index.add(np.arange(offset, offset + len(x)), x.astype(np.float32), threads=2)
        build_s = time.perf_counter() - start
        index.expansion_search = 64
        start = time.perf_counter()
        got = index.search(q, 10, threads=2)
        out[f"usearch_hnsw_{dtype}"] = {
            "build_s_incl_generation": round(build_s, 1),
            "recall_at_10": recall(np.asarray(got.keys, np.int64)),
            "queries_per_s": round(len(q) / (time.perf_counter() - start)),
            "bytes_per_row": round(index.memory_usage / rows, 1),
        }
        del index
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out


def child(args: list[str]) -> dict:
    """Run one case in a process of its own (its peak RSS is its own)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        return {"status": "crashed", "exit_code": proc.returncode, "stderr": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *nums = args.child
        nums = [int(n) for n in nums]
        fn = case_build if kind == "build" else case_compare
        print(json.dumps(fn(*nums)))
        return
    seed = args.seed
    if args.quick:
        small = child(["build", "20000", str(seed), "0", "0", "1000"])
        big = child(["build", "60000", str(seed), "10000", "500", "0"])
        compare = child(["compare", "20000", str(seed), "500"])
    else:
        small = child(["build", "1000000", str(seed), "0", "0", "10000"])
        big = child(["build", "5000000", str(seed), "100000", "1000", "0"])
        compare = child(["compare", "500000", str(seed), "2000"])
    for name, result in (("small", small), ("big", big), ("compare", compare)):
        print(f"{name}: {json.dumps(result)}", flush=True)
    summary = {"quick": args.quick, "small": small, "big": big, "usearch_vs_faiss": compare}
    if "build" in small and "build" in big:
        s, b = small["build"], big["build"]
        per_row = (b["index_bytes"] - s["index_bytes"]) / (b["rows"] - s["rows"])
        fixed = b["index_bytes"] - per_row * b["rows"]
        add_per_row = b["add_s_incl_generation"] / b["rows"]
        summary["extrapolated_10m"] = {
            "method": "bytes: fixed + per-row slope between the two sizes, × 10M rows; time: "
            "training (capped sample) + add time per row at the larger size × 10M",
            "index_gb": round((fixed + per_row * 10_000_000) / 1e9, 2),
            "build_s": round(b["train_s"] + add_per_row * 10_000_000),
        }
    summary["recall_at_10"] = small.get("recall_at_10")
    summary["near_dup_recall"] = big.get("near_dup_recall")
    summary["check_candidates"] = big.get("check_candidates")
    summary["pool_rows"] = big.get("build", {}).get("rows")
    summary["check_100k_vs_5m_s"] = big.get("check_s")
    summary["exact_check_100k_vs_5m_s"] = big.get("exact_check_extrapolated_s")
    summary["exact_is_extrapolated_from"] = big.get("exact_subset")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

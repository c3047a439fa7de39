"""Selection quality: which strategy's picks are worth the most labels, on scikit-learn's digits.

Two embeddings of the 1,797 digits (labels hidden from selection): (a) the L2-normalised
pixels; (b) the embeddings Winnow's pipeline makes of the digits written as 64×64 PNG files
(`winnow.engine.embed_keys` through a `LocalStore`, resnet18 with `weights="none"` at 64 px, as
`flows.curate` embeds images). For k = 10, 20, 50, 100 picks, cold start and with an existing
dataset of 200 random samples (candidates are the other 1,597), each strategy runs through
`winnow.selection.select` and is scored by a 1-NN classifier that knows only the labels of the
picks (and of the dataset): accuracy over all 1,797 samples, classes covered, coverage radius
(over all samples), time, picks made. Random is the mean of 20 seeds.

Scale (full mode, or `--scale N M K`): coverage as the default runs it (k-center once everything
is covered), without the default's size rule, vs k-center, time side by side on clustered 512-d data
(`bench/selection.py`'s generator) at a size that fits this machine's CPUs.

    .venv/bin/python bench/selection_quality.py            # full (a few minutes on 2 cores)
    .venv/bin/python bench/selection_quality.py --quick    # pixels of 400 digits, under a minute

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from winnow.records import Candidates  # noqa: E402
from winnow.selection import SelectionConfig, select  # noqa: E402

STRATEGIES = {
    "kcenter": ["diversity"],
    "kcenter_ls": [{"type": "diversity", "local_search_rounds": 200}],
    "coverage": ["coverage"],  # ProbCover: stops once everything is covered
    "typicality": [{"type": "typicality", "per_cluster": True}],
    "default": None,  # SelectionConfig's default: coverage, then k-center once all is covered
}
RANDOM_SEEDS = 20


def candidates(emb: np.ndarray, ids: np.ndarray) -> Candidates:
    n = len(emb)
    return Candidates(
        sample_id=np.array([f"d{i}" for i in ids], dtype=object),
        key=np.array([f"{i:04d}.png" for i in ids], dtype=object),
        fingerprint=np.array(["x"] * n, dtype=object),
        content_hash=np.array([f"h{i}" for i in ids], dtype=object),
        frame_index=np.zeros(n, np.int64),
        pts_seconds=np.zeros(n),
        width=np.full(n, 64, np.int32),
        height=np.full(n, 64, np.int32),
        brightness=np.full(n, 0.5, np.float32),
        contrast=np.full(n, 0.2, np.float32),
        sharpness=np.full(n, 10.0, np.float32),
        embedding=emb.astype(np.float16),
        run_id=np.full(n, "", object),
    )


def pixels(images: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pipeline_embeddings(images: np.ndarray) -> np.ndarray:
    """The digits as 64×64 PNG files, embedded as the curate flow embeds images."""
    import torch
    from PIL import Image

    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.engine import embed_keys
    from winnow.media import FrameOptions
    from winnow.storage import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        keys = []
        for i, img in enumerate(images):
            a = (img * (255 / 16)).clip(0, 255).astype(np.uint8)
            key = f"{i:04d}.png"
            Image.fromarray(a).resize((64, 64), Image.NEAREST).convert("RGB").save(Path(tmp, key))
            keys.append(key)
        embedder = load_embedder(
            EmbeddingOptions(weights="none", input_size=64, device="cpu", batch_size=64)
        )
        # one image per model call: one thread is ~30x faster than several on a shared host
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            emb = embed_keys(keys, source=LocalStore(tmp), frames=FrameOptions(), embedder=embedder)
        finally:
            torch.set_num_threads(threads)
    return emb.astype(np.float32)


def nn_accuracy(x: np.ndarray, y: np.ndarray, labelled: np.ndarray) -> tuple[float, float]:
    """1-NN accuracy over all rows from the labelled rows, and their coverage radius."""
    c = x[labelled]
    d2 = (x * x).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2 * x @ c.T
    near = d2.argmin(1)
    radius = float(np.sqrt(max(float(np.maximum(d2, 0).min(1).max()), 0)))
    return float((y[labelled][near] == y).mean()), radius


def evaluate(x: np.ndarray, y: np.ndarray, ks: list[int], existing: np.ndarray) -> dict:
    """Every strategy at every k, with `existing` (indices) as the dataset."""
    n = len(x)
    pool = np.setdiff1d(np.arange(n), existing)
    cands = candidates(x[pool], pool)
    data = x[existing]
    out: dict = {}
    if len(existing):
        acc0, r0 = nn_accuracy(x, y, existing)
        out["dataset_only"] = {"accuracy": acc0, "radius": r0}
    for k in ks:
        row: dict = {}
        rng = np.random.default_rng(k)
        accs, classes, radii = [], [], []
        for _ in range(RANDOM_SEEDS):
            chosen = np.r_[existing, rng.choice(pool, k, replace=False)].astype(np.int64)
            a, r = nn_accuracy(x, y, chosen)
            accs.append(a)
            radii.append(r)
            classes.append(len(np.unique(y[chosen])))
        row["random"] = {
            "accuracy": float(np.mean(accs)),
            "classes": float(np.mean(classes)),
            "radius": float(np.mean(radii)),
            "time_s": 0.0,
            "picks": k,
        }
        for name, strategies in STRATEGIES.items():
            kw = {} if strategies is None else {"strategies": strategies}
            config = SelectionConfig(n_samples=k, seed=0, **kw)
            start = time.perf_counter()
            result = select(cands, dataset=data, config=config, device="cpu")
            seconds = time.perf_counter() - start
            chosen = np.r_[existing, pool[result.indices]].astype(np.int64)
            a, r = nn_accuracy(x, y, chosen)
            row[name] = {
                "accuracy": a,
                "classes": int(len(np.unique(y[chosen]))),
                "radius": r,
                "time_s": round(seconds, 3),
                "picks": len(result.picks),
                "stop": result.stop_reason,
                "delta": result.delta,
            }
        out[str(k)] = row
    return out


class _Phases(logging.Handler):
    """Collects the selection's phase timings (the `extra` of its debug records)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: dict = {}

    def emit(self, record: logging.LogRecord) -> None:
        for name in ("initial_s", "greedy_s", "graph_s", "edges", "capped", "uncovered"):
            if hasattr(record, name):
                self.seen[name] = getattr(record, name)


COVERAGE_AT_ANY_SIZE = {"type": "coverage", "when_covered": "farthest"}  # default, no size rule


def scale_case(n: int, m: int, k: int, rounds: int = 1, delta: float | None = None) -> dict:
    """Coverage (the default's, without its size rule) vs k-center on clustered 512-d data.

    N candidates, M dataset, k picks; each round runs k-center then the default, so load on a
    shared machine hits both alike; the ratios are of the per-strategy medians of wall time and
    of this process's CPU time (less sensitive to other processes on the machine). `delta`
    fixes coverage's δ (default: chosen from the data); `uncovered` is how many candidates the
    dataset leaves uncovered at δ, the graph's cost driver (it costs them × N).
    """
    spec = importlib.util.spec_from_file_location("bench_selection", ROOT / "bench/selection.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    emb, data = mod.clustered(n, m, seed=0)
    cands = candidates(emb.astype(np.float32), np.arange(n))
    phases = _Phases()
    log = logging.getLogger("winnow.selection")
    log.addHandler(phases)
    log.setLevel(logging.DEBUG)
    out: dict = {"n": n, "m": m, "k": k, "runs": []}
    coverage = {**COVERAGE_AT_ANY_SIZE, **({"delta": delta} if delta else {})}
    try:
        for _ in range(rounds):
            for name, strategy in (("kcenter", "diversity"), ("coverage", coverage)):
                config = SelectionConfig(
                    n_samples=k, remove_exact_duplicates=False, strategies=[strategy]
                )
                phases.seen = {}
                start, cpu = time.perf_counter(), time.process_time()
                result = select(cands, dataset=data, config=config, device="cpu")
                seconds = time.perf_counter() - start
                run = {
                    "strategy": name,
                    "time_s": round(seconds, 2),
                    "cpu_s": round(time.process_time() - cpu, 2),  # all threads of this process
                    "picks": len(result.picks),
                }
                run.update({key: round(v, 2) for key, v in phases.seen.items()})
                if name == "coverage":
                    run["delta"] = result.delta
                    run["covered_picks"] = sum("all covered" not in p.reason for p in result.picks)
                out["runs"].append(run)
                print(f"scale {n}x{m} k={k}: {run}", file=sys.stderr)
    finally:
        log.removeHandler(phases)
    for name in ("kcenter", "coverage"):
        mine = [r for r in out["runs"] if r["strategy"] == name]
        out[name] = float(np.median([r["time_s"] for r in mine]))
        out[f"{name}_cpu"] = float(np.median([r["cpu_s"] for r in mine]))
    out["ratio"] = out["coverage"] / out["kcenter"]
    out["cpu_ratio"] = out["coverage_cpu"] / out["kcenter_cpu"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 digits, pixels only")
    parser.add_argument(
        "--scale",
        nargs=3,
        type=int,
        metavar=("N", "M", "K"),
        help="only the scale case: N candidates, M dataset, K picks (k-center vs default)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of --scale")
    parser.add_argument("--delta", type=float, default=None, help="coverage's δ in --scale")
    args = parser.parse_args()
    if args.scale:
        print(json.dumps(scale_case(*args.scale, rounds=args.rounds, delta=args.delta)))
        return
    from sklearn.datasets import load_digits

    t0 = time.perf_counter()
    digits = load_digits()
    images, y = digits.images, digits.target
    if args.quick:
        keep = np.random.default_rng(0).choice(len(y), 400, replace=False)
        images, y = images[keep], y[keep]
    ks = [10, 20, 50] if args.quick else [10, 20, 50, 100]
    n_existing = 40 if args.quick else 200
    embeddings = {"pixels": pixels(images)}
    if not args.quick:
        start = time.perf_counter()
        embeddings["pipeline"] = pipeline_embeddings(images)
        print(f"pipeline embeddings: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    existing = np.sort(np.random.default_rng(1).choice(len(y), n_existing, replace=False))
    results = {}
    for name, x in embeddings.items():
        results[name] = {
            "cold": evaluate(x, y, ks, np.zeros(0, np.int64)),
            "dataset": evaluate(x, y, ks, existing),
        }
        for setting, table in results[name].items():
            for k in ks:
                cells = " ".join(
                    f"{s}={v['accuracy']:.3f}/{v['radius']:.3f}" for s, v in table[str(k)].items()
                )
                print(f"{name} {setting} k={k}: {cells}", file=sys.stderr)

    px = results["pixels"]
    cold, ds = px["cold"], px["dataset"]

    def gain(table: dict, s: str, k: int) -> float:
        return table[str(k)][s]["accuracy"] - table[str(k)]["random"]["accuracy"]

    def dataset_gain(s: str) -> float:
        base = ds["dataset_only"]["accuracy"]
        return float(np.mean([ds[str(k)][s]["accuracy"] - base for k in ks]))

    kbig = ks[-1]
    summary = {
        "quick": args.quick,
        "n_images": len(y),
        "default_gain_vs_random_k20": gain(cold, "default", 20),
        "default_gain_vs_random_k50": gain(cold, "default", 50),
        f"default_minus_kcenter_k{kbig}": cold[str(kbig)]["default"]["accuracy"]
        - cold[str(kbig)]["kcenter"]["accuracy"],
        "default_dataset_gain_mean": dataset_gain("default"),
        "kcenter_dataset_gain_mean": dataset_gain("kcenter"),
        f"kcenter_radius_k{kbig}": cold[str(kbig)]["kcenter"]["radius"],
        f"kcenter_refined_radius_k{kbig}": cold[str(kbig)]["kcenter_ls"]["radius"],
        "delta_pixels": cold[str(ks[0])]["coverage"]["delta"],
    }
    if "pipeline" in results:
        pc = results["pipeline"]["cold"]
        summary["pipeline_default_gain_vs_random_k20"] = gain(pc, "default", 20)
        summary["pipeline_default_gain_vs_random_k50"] = gain(pc, "default", 50)
        summary["delta_pipeline"] = pc["10"]["coverage"]["delta"]
    if not args.quick:
        summary["targets"] = {
            "default_gain_vs_random_k20_ge_0.05": summary["default_gain_vs_random_k20"] >= 0.05,
            "default_gain_vs_random_k50_ge_0.03": summary["default_gain_vs_random_k50"] >= 0.03,
            "default_not_below_kcenter_k100_by_1pt": summary["default_minus_kcenter_k100"] >= -0.01,
            "default_dataset_gain_above_kcenter": summary["default_dataset_gain_mean"]
            > summary["kcenter_dataset_gain_mean"],
            "kcenter_refined_radius_k100_le_0.540": summary["kcenter_refined_radius_k100"] <= 0.540,
        }
        summary["scale"] = [scale_case(10_000, 5_000, 300), scale_case(20_000, 10_000, 500)]
    summary["results"] = results
    summary["time_s"] = round(time.perf_counter() - t0, 1)
    print(
        json.dumps(summary, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    )


if __name__ == "__main__":
    main()

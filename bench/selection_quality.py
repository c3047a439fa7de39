"""Selection quality: which strategy's picks are worth the most labels, on every kind of data.

Protocol table (digits): scikit-learn's 1,797 digits (labels hidden from selection) under three
embeddings: (a) the L2-normalised pixels; (b) the embeddings Winnow's pipeline makes of the
digits written as 64×64 PNG files (`winnow.engine.embed_keys` through a `LocalStore`, resnet18
with `weights="none"` at 64 px, as `flows.curate` embeds images); (c) the same after
`winnow train` (SimCLR through `winnow.training.train_model` with its defaults, then a
re-embed: `bench/embedding_quality.py`'s `trained_digit_embeddings`). For k = 5, 10, 20, 50
picks, cold start and with an existing dataset of 200 random samples (candidates are the other
1,597), each strategy runs through `winnow.selection.select` and is scored by a 1-NN classifier
that knows only the labels of the picks (and of the dataset): accuracy over all 1,797 samples,
classes covered, coverage radius (over all samples), time, picks made. Random is the mean of
20 seeds. A row's margin is default − max(random, k-center).

Video protocol: the demo's street videos (`winnow.demo`, every 3rd frame, random-weight
resnet18 at 112 px as `make demo` runs): batch 1 (4 videos and 6 stills) cold; batch 2 (4 new
videos) with the default's 50 picks of batch 1 as the dataset; and two short clips (60 frames
each, every frame, 224 px). At 5 and 20 picks (and 50 for batch 2): the mean distance of each
pick to its nearest other pick, the number of distinct files among the picks, and with a
dataset the picks' mean distance to it and the coverage radius of the batch after the picks,
default vs k-center vs coverage vs random (20 seeds).

Scale (full mode, or `--scale N M K`): the default's herding (without its size rule) and
coverage vs k-center, time side by side on clustered 512-d data (`bench/selection.py`'s
generator) at a size that fits this machine's CPUs.

    .venv/bin/python bench/selection_quality.py            # full (~15 min on 2 cores, training incl.)
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
    "coverage": [{"type": "coverage", "when_covered": "farthest"}],  # ProbCover, then k-center
    "typicality": [{"type": "typicality", "per_cluster": True}],
    "herding": ["herding"],  # alone, without the default's diversity factor
    "default": None,  # SelectionConfig's default: herding × diversity^0.5
}
KS = [5, 10, 20, 50]
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


DEFAULT_AT_ANY_SIZE = [{"type": "herding"}, {"type": "diversity", "strength": 0.5}]
COVERAGE_AT_ANY_SIZE = {"type": "coverage", "when_covered": "farthest"}


def scale_case(n: int, m: int, k: int, rounds: int = 1, delta: float | None = None) -> dict:
    """The default (without its size rule) and coverage vs k-center on clustered 512-d data.

    N candidates, M dataset, k picks; each round runs k-center, the default, then coverage, so
    load on a shared machine hits them alike; the ratios are of the per-strategy medians of
    wall time and of this process's CPU time (less sensitive to other processes on the
    machine). `delta` fixes coverage's δ (default: chosen from the data); `uncovered` is how
    many candidates the dataset leaves uncovered at δ, the graph's cost driver.
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
    names = (("kcenter", ["diversity"]), ("default", DEFAULT_AT_ANY_SIZE), ("coverage", [coverage]))
    try:
        for _ in range(rounds):
            for name, strategies in names:
                config = SelectionConfig(
                    n_samples=k, remove_exact_duplicates=False, strategies=strategies
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
                out["runs"].append(run)
                print(f"scale {n}x{m} k={k}: {run}", file=sys.stderr)
    finally:
        log.removeHandler(phases)
    for name, _ in names:
        mine = [r for r in out["runs"] if r["strategy"] == name]
        out[name] = float(np.median([r["time_s"] for r in mine]))
        out[f"{name}_cpu"] = float(np.median([r["cpu_s"] for r in mine]))
    for name in ("default", "coverage"):
        out[f"{name}_ratio"] = out[name] / out["kcenter"]
        out[f"{name}_cpu_ratio"] = out[f"{name}_cpu"] / out["kcenter_cpu"]
    return out


# -- the video protocol ---------------------------------------------------------------------


def video_embeddings() -> dict:
    """The demo's two batches (112 px, every 3rd frame) and two short clips (224 px, all)."""
    import torch

    from winnow import demo
    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.engine import embed_keys
    from winnow.media import FrameOptions
    from winnow.storage import LocalStore

    def embed(store, keys, size, frames):  # noqa: ANN001, ANN202
        torch.manual_seed(0)
        options = EmbeddingOptions(weights="none", input_size=size, device="cpu", batch_size=32)
        embedder = load_embedder(options)
        parts = [embed_keys([k], source=store, frames=frames, embedder=embedder) for k in keys]
        files = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        return np.concatenate(parts).astype(np.float32), files

    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="winnow-video-") as tmp:
            store = LocalStore(Path(tmp, "demo"))
            every3 = FrameOptions(every_n_frames=3)
            keys1 = demo.write_demo_files(store, n_videos=4, first=0, frames_per_video=300)
            keys2 = demo.write_demo_files(
                store, n_videos=4, n_images=0, first=4, frames_per_video=300
            )
            out["demo_batch1"] = embed(store, keys1, 112, every3)
            out["demo_batch2"] = embed(store, keys2, 112, every3)
            clips = LocalStore(Path(tmp, "clips"))
            keys3 = demo.write_demo_files(clips, n_videos=2, n_images=0, frames_per_video=60)
            out["two_clips"] = embed(clips, keys3, 224, FrameOptions())
    finally:
        torch.set_num_threads(threads)
    return out


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0)


def spread(x: np.ndarray, files: np.ndarray, data: np.ndarray, picks: np.ndarray) -> dict:
    """Nearest-other-pick distance, distinct files; with a dataset, distance to it and radius."""
    d = np.sqrt(_sqdist(x[picks], x[picks]))
    np.fill_diagonal(d, np.inf)
    out = {"nearest_other": float(d.min(1).mean()), "files": int(len(np.unique(files[picks])))}
    if len(data):
        out["to_dataset"] = float(np.sqrt(_sqdist(x[picks], data).min(1)).mean())
        out["radius_after"] = float(np.sqrt(_sqdist(x, np.r_[data, x[picks]]).min(1)).max())
    return out


def video_row(x: np.ndarray, files: np.ndarray, data: np.ndarray, k: int) -> dict:
    rng = np.random.default_rng(k)
    draws = [spread(x, files, data, rng.choice(len(x), k, replace=False)) for _ in range(20)]
    row = {"random": {m: float(np.mean([r[m] for r in draws])) for m in draws[0]}}
    cands = candidates(x, np.arange(len(x)))
    for name in ("kcenter", "coverage", "default"):
        kw = {} if STRATEGIES[name] is None else {"strategies": STRATEGIES[name]}
        config = SelectionConfig(n_samples=k, seed=0, **kw)
        row[name] = spread(x, files, data, select(cands, dataset=data, config=config).indices)
    return row


def video_protocol(embeddings: dict) -> dict:
    """Every video row: {case}_k{k} → strategy → measures."""
    out = {}
    empty = np.zeros((0, 512), np.float32)
    for case, ks in (("two_clips", (5, 20)), ("demo_batch1", (5, 20))):
        x, files = embeddings[case]
        for k in ks:
            out[f"{case}_k{k}"] = video_row(x, files, empty, k)
    x1, _ = embeddings["demo_batch1"]
    first = select(candidates(x1, np.arange(len(x1))), dataset=empty, config=SelectionConfig())
    held = x1[first.indices]  # the dataset the demo's second run starts from
    x2, files2 = embeddings["demo_batch2"]
    for k in (5, 20, 50):
        out[f"demo_batch2_k{k}"] = video_row(x2, files2, held, k)
    for name, row in out.items():
        cells = " ".join(
            f"{s}=" + "/".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in m.values())
            for s, m in row.items()
        )
        print(f"video {name} ({'/'.join(row['random'])}): {cells}", file=sys.stderr)
    return out


def video_targets(rows: dict) -> dict:
    """Per row: default vs random on each measure (higher spread, lower radius is better)."""
    ratios = [r["default"]["nearest_other"] / r["random"]["nearest_other"] for r in rows.values()]
    out = {"video_spread_vs_random_min": float(min(ratios))}
    with_data = [r for r in rows.values() if "to_dataset" in r["default"]]
    out["video_to_dataset_vs_random_min"] = float(
        min(r["default"]["to_dataset"] - r["random"]["to_dataset"] for r in with_data)
    )
    out["video_radius_vs_random_max"] = float(
        max(r["default"]["radius_after"] - r["random"]["radius_after"] for r in with_data)
    )
    out["video_files_vs_random_min"] = float(
        min(r["default"]["files"] - r["random"]["files"] for r in rows.values())
    )
    return out


# -- the protocol table -----------------------------------------------------------------------


def margins(results: dict, ks: list[int]) -> dict:
    """default − max(random, k-center) for every (embedding, setting, k): the table's rows."""
    out = {}
    for name, settings in results.items():
        for setting, table in settings.items():
            for k in ks:
                row = table[str(k)]
                best = max(row["random"]["accuracy"], row["kcenter"]["accuracy"])
                out[f"{name}_{setting}_k{k}"] = row["default"]["accuracy"] - best
    return out


def print_table(results: dict, ks: list[int]) -> None:
    for name, settings in results.items():
        for setting, table in settings.items():
            for k in ks:
                cells = " ".join(
                    f"{s}={v['accuracy']:.3f}/{v['radius']:.3f}" for s, v in table[str(k)].items()
                )
                print(f"{name} {setting} k={k}: {cells}", file=sys.stderr)


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
    parser.add_argument("--epochs", type=int, default=None, help="SimCLR epochs (bench default)")
    parser.add_argument("--ssl-cache", type=Path, default=None, help="npz of trained embeddings")
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
    n_existing = 40 if args.quick else 200
    embeddings = {"pixels": pixels(images)}
    timings = {}
    if not args.quick:
        start = time.perf_counter()
        embeddings["pipeline"] = pipeline_embeddings(images)
        timings["pipeline_embed_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        embeddings["trained"] = trained(images, args)
        timings["train_and_embed_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        videos = video_embeddings()
        timings["video_embed_s"] = round(time.perf_counter() - start, 1)
    existing = np.sort(np.random.default_rng(1).choice(len(y), n_existing, replace=False))
    results = {
        name: {
            "cold": evaluate(x, y, KS, np.zeros(0, np.int64)),
            "dataset": evaluate(x, y, KS, existing),
        }
        for name, x in embeddings.items()
    }
    print_table(results, KS)
    rows = margins(results, KS)

    def gain(name: str, k: int) -> float:
        cell = results[name]["cold"][str(k)]
        return cell["default"]["accuracy"] - cell["random"]["accuracy"]

    cold = results["pixels"]["cold"]
    summary = {
        "quick": args.quick,
        "n_images": len(y),
        "default_gain_vs_random_k20": gain("pixels", 20),
        "default_gain_vs_random_k50": gain("pixels", 50),
        "default_vs_best_baseline_min": float(min(rows.values())),
        "default_gain_vs_random_k20_min": float(min(gain(name, 20) for name in embeddings)),
        "kcenter_radius_k50": cold["50"]["kcenter"]["radius"],
        "kcenter_refined_radius_k50": cold["50"]["kcenter_ls"]["radius"],
        "delta_pixels": cold["5"]["coverage"]["delta"],
    }
    if "trained" in results:
        trained_cold = results["trained"]["cold"]["50"]
        summary["ssl_default_k50"] = trained_cold["default"]["accuracy"]
        summary["ssl_random_k50"] = trained_cold["random"]["accuracy"]
        summary["ssl_kcenter_k50"] = trained_cold["kcenter"]["accuracy"]
    if not args.quick:
        video = video_protocol(videos)
        summary.update(video_targets(video))
        summary["targets"] = {
            "default_vs_best_baseline_min_ge_-0.01": summary["default_vs_best_baseline_min"]
            >= -0.01,
            "default_gain_vs_random_k20_min_ge_0.05": summary["default_gain_vs_random_k20_min"]
            >= 0.05,
            "video_spread_vs_random_min_ge_1": summary["video_spread_vs_random_min"] >= 1,
            "video_to_dataset_ge_random": summary["video_to_dataset_vs_random_min"] >= 0,
            "video_radius_le_random": summary["video_radius_vs_random_max"] <= 0,
            "ssl_default_k50_ge_0.93": summary["ssl_default_k50"] >= 0.93,
            "ssl_random_k50_ge_0.89": summary["ssl_random_k50"] >= 0.89,
        }
        summary["video"] = video
        summary["scale"] = [scale_case(10_000, 5_000, 300), scale_case(20_000, 10_000, 500)]
    summary["rows"] = rows
    summary["results"] = results
    summary.update(timings)
    summary["time_s"] = round(time.perf_counter() - t0, 1)
    print(
        json.dumps(summary, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    )


def trained(images: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """The digits embedded by a model `winnow train` made of them (or read from --ssl-cache)."""
    if args.ssl_cache is not None and args.ssl_cache.exists():
        return np.load(args.ssl_cache)["x"].astype(np.float32)
    spec = importlib.util.spec_from_file_location("bench_eq", ROOT / "bench/embedding_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    kw = {} if args.epochs is None else {"epochs": args.epochs}
    x = mod.trained_digit_embeddings(images, **kw)
    if args.ssl_cache is not None:
        np.savez(args.ssl_cache, x=x)
    return x


if __name__ == "__main__":
    main()

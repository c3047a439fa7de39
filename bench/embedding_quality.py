"""Embedding quality: random weights vs a self-supervised model trained on the pool's own frames.

scikit-learn's bundled digits (1,797 labelled 8×8 images) are written as 64×64 PNG files into a
source folder and curated end to end through the stages the flows run — discover, decode+embed
(`winnow.engine`), commit (`Datapool.commit`) — with resnet18 `weights="none"`. Then
`winnow.training.train_model` (what the `train-embedding` flow runs) trains SimCLR on the pool's
frames (20 epochs at 32 px by default: `digit_options`, the README's `winnow train` command),
and the pool is re-embedded with it (`plan_reembed`, `embed_reembed_shards`, `commit_reembed`:
what the `reembed` flow runs). `trained_digit_embeddings(images)` is the same path as one
function, for other benches. Labels are never seen by training or selection. For each model,
from the embeddings the pool stores:

- `knn5_accuracy`: 5-NN accuracy, 5-fold stratified cross-validation (cosine distance);
- label efficiency: accuracy over all images of a 1-NN classifier that sees only the labels of
  k = 20 and k = 50 picks — k-center greedy picks (`winnow.selection.select`, diversity) vs
  random picks (mean of `RANDOM_SEEDS` seeds).

Two protocols:
- `digits`: the digits as they are (centred, same contrast);
- `nuisance`: the same digits, each under one fixed random nuisance (seeded): a shift of up to
  ±8 px, a rotation of up to ±20°, a contrast between 0.35 and 1 and a brightness offset, on a
  64×64 canvas. Random features are sensitive to these; SimCLR's views (crops, rotations,
  colour jitter) teach the model to ignore them.

    .venv/bin/python bench/embedding_quality.py            # full: both protocols, 20 epochs each
    .venv/bin/python bench/embedding_quality.py --protocols digits --temperature 0.2  # a variant
    .venv/bin/python bench/embedding_quality.py --budget-s 300  # epochs that fit 300 s instead
    .venv/bin/python bench/embedding_quality.py --quick    # 150 digits, 1 epoch, about a minute

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RANDOM_SEEDS = 10
KS = (20, 50)
SIZE = 64  # the PNGs' size (and the curate run's model input)
DIGIT_EPOCHS = 20
# The measured setup for tiny digits, on top of `TrainOptions`' defaults (batch 256, NT-Xent
# temperature 0.5, AdamW 2e-3, crops >= 0.5 of the area, colour jitter 1.0 at p 0.8, grey 0.2).
# The CLI equivalent is `winnow train --input-size 32 --no-flip --rotation 20 ...` (README).
DIGIT_VIEWS = {
    "input_size": 32,
    "horizontal_flip": False,  # digits are not mirror-symmetric
    "rotation_degrees": 20.0,
}


def digits(limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.images, data.target
    if limit is not None:
        rng = np.random.default_rng(0)
        keep = np.sort(rng.choice(len(images), limit, replace=False))
        images, labels = images[keep], labels[keep]
    return images, labels


def to_rgb64(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    gray = (np.clip(image / 16.0, 0, 1) * 255).astype(np.uint8)
    big = Image.fromarray(gray).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(big)[:, :, None], 3, axis=2)


def with_nuisance(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One fixed random shift, rotation, contrast and brightness of a 64×64 digit."""
    from PIL import Image

    gray = (np.clip(image / 16.0, 0, 1) * 255).astype(np.uint8)
    digit = Image.fromarray(gray).resize((40, 40), Image.Resampling.BILINEAR)
    digit = digit.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR)
    canvas = Image.new("L", (SIZE, SIZE), 0)
    dx, dy = (int(v) for v in rng.integers(-8, 9, size=2))
    canvas.paste(digit, (12 + dx, 12 + dy))
    x = np.asarray(canvas).astype(np.float32) / 255.0
    contrast, offset = float(rng.uniform(0.35, 1.0)), float(rng.uniform(0.0, 0.4))
    x = np.clip(offset + contrast * x * (1 - offset), 0, 1)
    gray = (x * 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def write_source(folder: Path, images: np.ndarray, *, nuisance: bool) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    keys = []
    for i, image in enumerate(images):
        rgb = with_nuisance(image, rng) if nuisance else to_rgb64(image)
        key = f"digits/{i:05d}.png"
        (folder / "digits").mkdir(exist_ok=True)
        Image.fromarray(rgb).save(folder / key)
        keys.append(key)
    return keys


def curate(source, pool, *, batch_size: int) -> float:  # noqa: ANN001
    """Discover, decode+embed and commit every file, as the curate flow does (no selection)."""
    from winnow import discover, engine
    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.media import FrameOptions
    from winnow.records import Candidates

    t0 = time.perf_counter()
    snapshot = pool.load()
    found = discover.list_new_files(source, known={}, relevant=None, process_all=False)
    shards = discover.plan_shards(found.new, max_files=256)
    embedder = load_embedder(
        EmbeddingOptions(weights="none", input_size=SIZE, batch_size=batch_size, device="cpu")
    )
    parts, files = [], []
    for result in engine.embed_shards(
        shards, source=source, frames=FrameOptions(), embedder=embedder
    ):
        parts.append(result.candidates)
        files.extend(result.files)
    pool.commit(
        snapshot,
        run_id="bench-curate",
        files=files,
        samples=Candidates.concat(parts),
        tag=None,
        model=embedder.record,
    )
    return time.perf_counter() - t0


def reembed(source, pool, weights: str, *, size: int, batch_size: int) -> float:  # noqa: ANN001
    from winnow.embedding import EmbeddingOptions, load_embedder, model_record
    from winnow.records import Candidates
    from winnow.training import commit_reembed, embed_reembed_shards, plan_reembed

    t0 = time.perf_counter()
    options = EmbeddingOptions(
        weights=weights, input_size=size, batch_size=batch_size, device="cpu"
    )
    snapshot = pool.load()
    plan = plan_reembed(snapshot, model_record(options, pool=pool.store), shard_files=256)
    embedder = load_embedder(options, pool=pool.store)
    shards = embed_reembed_shards(plan, plan.shards, source=source, embedder=embedder)
    parts = [r.candidates for r in shards]
    commit_reembed(pool, plan, run_id="bench-reembed", samples=Candidates.concat(parts))
    return time.perf_counter() - t0


def pool_embeddings(pool, keys: list[str]) -> np.ndarray:  # noqa: ANN001
    samples = pool.load().samples()
    row = {str(k): i for i, k in enumerate(samples.key)}
    return samples.embedding[[row[k] for k in keys]].astype(np.float32)


def knn5_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine")
    return float(cross_val_score(knn, x, y, cv=folds).mean())


def nn1_accuracy(x: np.ndarray, y: np.ndarray, labelled: np.ndarray) -> float:
    """Accuracy over all samples of 1-NN (cosine) that knows only the labels of `labelled`."""
    sims = x @ x[labelled].T
    return float((y[labelled][np.argmax(sims, axis=1)] == y).mean())


def label_efficiency(x: np.ndarray, y: np.ndarray) -> dict:
    from winnow.selection import SelectionConfig, select

    sys.path.insert(0, str(ROOT / "bench"))
    from selection_quality import candidates  # the bench's Candidates of bare embeddings

    cands = candidates(x, np.arange(len(x)))
    out = {}
    for k in KS:
        config = SelectionConfig(strategies=["diversity"], n_samples=k, seed=0)
        picks = select(cands, dataset=np.zeros((0, x.shape[1]), np.float32), config=config)
        kcenter = nn1_accuracy(x, y, picks.indices)
        default = select(
            cands,
            dataset=np.zeros((0, x.shape[1]), np.float32),
            config=SelectionConfig(n_samples=k, seed=0),
        )
        rand = [
            nn1_accuracy(x, y, np.random.default_rng(s).choice(len(x), k, replace=False))
            for s in range(RANDOM_SEEDS)
        ]
        out[f"k{k}"] = {
            "kcenter": round(kcenter, 4),
            "default_strategy": round(nn1_accuracy(x, y, default.indices), 4),
            "random": round(float(np.mean(rand)), 4),
            "random_std": round(float(np.std(rand)), 4),
        }
    return out


def measure(x: np.ndarray, y: np.ndarray) -> dict:
    return {"knn5_accuracy": round(knn5_accuracy(x, y), 4), **label_efficiency(x, y)}


def digit_options(*, epochs: int = DIGIT_EPOCHS, seed: int = 0, **overrides: Any) -> Any:
    """`TrainOptions` of the measured digits setup (`DIGIT_VIEWS`), CPU, with `overrides`."""
    from winnow.training import TrainOptions

    return TrainOptions(
        **{**DIGIT_VIEWS, "epochs": epochs, "seed": seed, "device": "cpu", **overrides}
    )


def trained_digit_embeddings(
    images: np.ndarray, *, epochs: int = DIGIT_EPOCHS, seed: int = 0, **overrides: Any
) -> np.ndarray:
    """Embeddings of digits by a SimCLR model trained on them through the pipeline's path.

    The images are written as 64×64 PNGs, curated into a pool (random-weight resnet18), trained
    on with `winnow.training.train_model` (`digit_options`: `TrainOptions` defaults, 32 px, no
    flips, rotations) and re-embedded with the trained model, as `winnow train` then
    `winnow reembed` do. About 2–5 minutes for all 1,797 digits at 20 epochs on 2 CPU cores.

    Args:
        images: sklearn digits images, (N, 8, 8), values 0..16 (`load_digits().images`).
        epochs: Training epochs.
        seed: Seed of the training (init and views).
        **overrides: Other `TrainOptions` fields (e.g. `temperature=0.2`); none: the measured
            setup.

    Returns:
        float32 (N, D) L2-normalised embeddings, in the order of `images`.

    Raises:
        ValueError: If `images` is not (N, 8, 8) with N >= 2.
    """
    from winnow.datapool import Datapool
    from winnow.storage import LocalStore
    from winnow.training import train_model

    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (8, 8) or len(images) < 2:
        raise ValueError(f"images: want (N >= 2, 8, 8) digits, got shape {images.shape}")
    params = digit_options(epochs=epochs, seed=seed, **overrides)
    with tempfile.TemporaryDirectory(prefix="winnow-digits-ssl-") as tmp:
        keys = write_source(Path(tmp) / "raw", images, nuisance=False)
        source = LocalStore(Path(tmp) / "raw")
        pool = Datapool(LocalStore(Path(tmp) / "out").child("pool"))
        curate(source, pool, batch_size=64)
        card = train_model(params, pool=pool, source=source).card
        reembed(source, pool, card.weights, size=params.input_size, batch_size=64)
        x = pool_embeddings(pool, keys)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def epochs_within(budget_s: float, *, samples: int, batch: int, size: int) -> tuple[int, float]:
    """Epochs of SimCLR training that fit `budget_s` on this machine, from timed probe steps."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules.heads import SimCLRProjectionHead

    from winnow.embedding import EmbeddingOptions, load_embedder

    trunk = load_embedder(EmbeddingOptions(weights="none", input_size=size, device="cpu")).module
    trunk = trunk.train().requires_grad_(True)
    head, loss_fn = SimCLRProjectionHead(512, 512, 128), NTXentLoss(0.5)
    opt = torch.optim.AdamW([*trunk.parameters(), *head.parameters()], 1e-3)
    x = torch.randn(2 * batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss = loss_fn(*head(trunk(x).flatten(1)).chunk(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step_s = float(np.mean(times[1:]))
    # 15 % for the views, the checkpoint and the loader; at least one epoch.
    epoch_s = 1.15 * step_s * max(1, samples // batch)
    return max(1, min(200, int(budget_s // epoch_s))), epoch_s


def protocol(name: str, images, labels, args, tmp: Path) -> dict:  # noqa: ANN001
    from winnow.datapool import Datapool
    from winnow.storage import LocalStore
    from winnow.training import train_model

    folder = tmp / name
    keys = write_source(folder / "raw", images, nuisance=name == "nuisance")
    source, output = LocalStore(folder / "raw"), LocalStore(folder / "out")
    pool = Datapool(output.child("pool"))
    curate_s = curate(source, pool, batch_size=args.batch_size)
    random_x = pool_embeddings(pool, keys)
    random_m = measure(random_x, labels)
    print(f"[{name}] random weights: {random_m} (curated in {curate_s:.1f} s)", flush=True)

    random_small = None
    if args.size != SIZE:  # random weights at the SSL model's input size, for a like-for-like view
        reembed(source, pool, "none", size=args.size, batch_size=args.batch_size)
        random_small = measure(pool_embeddings(pool, keys), labels)
        print(f"[{name}] random weights at {args.size} px: {random_small}", flush=True)

    overrides = {
        field: value
        for field, value in (
            ("input_size", args.size),
            ("batch_size", args.train_batch),
            ("learning_rate", args.lr),
            ("temperature", args.temperature),
            ("crop_min_scale", args.min_scale),
            ("rotation_degrees", args.rotation),
            ("translate", args.translate),
            ("color_jitter", args.color_jitter),
            ("noise_std", args.noise),
        )
        if value is not None
    }
    params = digit_options(epochs=1, **overrides)  # validates the overrides
    epochs, epoch_s = args.epochs, None
    if epochs is None:
        epochs, epoch_s = epochs_within(
            args.budget_s, samples=len(keys), batch=params.batch_size, size=params.input_size
        )
        print(f"[{name}] {epochs} epochs fit {args.budget_s:.0f} s (~{epoch_s:.0f} s each)")
    params = params.model_copy(update={"epochs": epochs})
    print(f"[{name}] training: {params.model_dump_json(exclude_defaults=True)}", flush=True)
    t0 = time.perf_counter()
    result = train_model(
        params,
        pool=pool,
        source=source,
        on_epoch=lambda r: print(
            f"[{name}] epoch {r.epoch}/{r.epochs} loss {r.loss:.4f} ({r.seconds:.1f} s)",
            flush=True,
        ),
    )
    train_s = time.perf_counter() - t0
    reembed_s = reembed(
        source, pool, result.card.weights, size=args.size, batch_size=args.batch_size
    )
    ssl_x = pool_embeddings(pool, keys)
    ssl_m = measure(ssl_x, labels)
    print(f"[{name}] self-supervised: {ssl_m} (trained in {train_s:.1f} s)", flush=True)
    best_random = max(
        (m for m in (random_m, random_small) if m is not None), key=lambda m: m["k50"]["kcenter"]
    )
    return {
        "random": random_m,
        f"random_{args.size}px": random_small,
        "ssl": ssl_m,
        # Against the better of the random-weight embeddings (64 px, and the SSL model's size).
        "ssl_vs_random_label_efficiency_k50": round(
            ssl_m["k50"]["kcenter"] / best_random["k50"]["kcenter"], 4
        ),
        "ssl_vs_random_label_efficiency_k50_default": round(
            ssl_m["k50"]["default_strategy"] / best_random["k50"]["default_strategy"], 4
        ),
        "kcenter_not_below_random": all(
            m[f"k{k}"]["kcenter"] >= m[f"k{k}"]["random"] for m in (ssl_m, random_m) for k in KS
        ),
        "ssl_vs_random_knn5": round(ssl_m["knn5_accuracy"] / best_random["knn5_accuracy"], 4),
        "ssl_input_size": args.size,
        "train_s": round(train_s, 1),
        "curate_s": round(curate_s, 1),
        "reembed_s": round(reembed_s, 1),
        "epochs": epochs,
        "train_budget_s": args.budget_s,
        "final_loss": round(result.card.final_loss, 4),
        "samples": len(keys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 digits, 1 epoch (smoke test)")
    parser.add_argument(
        "--epochs", type=int, default=None, help=f"SSL epochs per protocol (default {DIGIT_EPOCHS})"
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="fit the epochs to this many seconds instead"
    )
    parser.add_argument("--protocols", default=None, help="comma list: digits,nuisance")
    # Training overrides; empty: the measured digits setup (`digit_options`).
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=None, help="NT-Xent temperature")
    parser.add_argument("--min-scale", type=float, default=None, help="crop_min_scale")
    parser.add_argument("--rotation", type=float, default=None, help="rotation_degrees")
    parser.add_argument("--translate", type=float, default=None)
    parser.add_argument("--color-jitter", type=float, default=None)
    parser.add_argument("--noise", type=float, default=None, help="noise_std")
    parser.add_argument("--batch-size", type=int, default=64, help="inference batch")
    parser.add_argument(
        "--size",
        type=int,
        default=DIGIT_VIEWS["input_size"],
        help="SSL training and embedding size",
    )
    args = parser.parse_args()
    if args.quick:
        args.epochs = args.epochs or 1
        args.train_batch = min(args.train_batch or 32, 32)
    if args.epochs is None and args.budget_s is None:
        args.epochs = DIGIT_EPOCHS
    names = (args.protocols or ("digits" if args.quick else "digits,nuisance")).split(",")
    images, labels = digits(150 if args.quick else None)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="winnow-bench-emb-") as tmp:
        results = {n: protocol(n, images, labels, args, Path(tmp)) for n in names}
    head = results.get("digits") or next(iter(results.values()))
    summary = {
        "ssl_vs_random_label_efficiency": head["ssl_vs_random_label_efficiency_k50"],
        "ssl_vs_random_label_efficiency_by_protocol": {
            n: r["ssl_vs_random_label_efficiency_k50"] for n, r in results.items()
        },
        "ssl_vs_random_label_efficiency_default_strategy": {
            n: r["ssl_vs_random_label_efficiency_k50_default"] for n, r in results.items()
        },
        "kcenter_not_below_random": {n: r["kcenter_not_below_random"] for n, r in results.items()},
        "random_knn5": head["random"]["knn5_accuracy"],
        "ssl_knn5": head["ssl"]["knn5_accuracy"],
        "random_kcenter_k50": head["random"]["k50"]["kcenter"],
        "random_random_k50": head["random"]["k50"]["random"],
        "ssl_kcenter_k50": head["ssl"]["k50"]["kcenter"],
        "ssl_random_k50": head["ssl"]["k50"]["random"],
        "train_s_total": round(sum(r["train_s"] for r in results.values()), 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "quick": args.quick,
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

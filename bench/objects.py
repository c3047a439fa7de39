"""Object-level selection: what labelling a budget of frames teaches, when frames hold objects.

Data (real labelled images, seeded by `--seed`): scikit-learn's 1,797 8x8 digits. A disjoint
classifier split (`--classifier-digits`, 60: the same number of each class) trains a weak
`LogisticRegression` (max_iter 1000) on the raw 64 pixels; the other digits make the scenes.
Scenes are 192x192 RGB PNGs (`--frames`, 400; quick 120) with a textured background that
differs per frame (a random base colour, a linear gradient in a random direction, 3-6 soft
colour blobs, per-pixel noise), so frame embeddings are dominated by the background as in
street scenes. Each frame holds 2-5 digits (uniform), each upscaled x4 (bilinear, 32x32 px)
and alpha-blended as ink (alpha = pixel / 16) at a random place, boxes at least 4 px apart
and 2 px from the edges, no overlap. `--ink tinted` (the default): the ink is dark (RGB in
[0, 80]) on a light spot and light ([175, 255]) on a dark one (the spot's mean luminance
against 128), in a random tint, straight on the background, so a crop is mostly background and
tint; `--ink tile`: dark ink ([0, 60]) on a light grey tile ([190, 255]) filling the box (a
sign or plate), so the crop's content is the digit.
Digit 8 is the rare class: `--rare-share` (3%) of the scene objects, exactly (rounded); the
other nine classes share the rest equally; the digits are drawn without replacement and
shuffled over the frames. Ground truth = the pasted 32x32 rectangle and the digit's class.

Predictions (`FileRef.boxes`, as a detector would give them): each true box with every edge
moved by a uniform integer in [-2, 2] px (clipped to the frame); `label` = the weak
classifier's argmax on the digit's 8x8 pixels, `probabilities` = its 10 class probabilities.

Embedding, once for every selection: `winnow.engine.embed_shards` over a `LocalStore` of the
PNGs (shards of 32 files), `FrameOptions()`, `CropSettings(padding=0.1, min_size=4)`, resnet18
with RANDOM weights (`weights="none"`, seed `--seed`; no pretrained weights are read) at 64 px
on the CPU: the frames and the crops cut from the full-resolution frames.

Budget = k frames to label (labelling a frame labels all of its objects), k in 10, 20, 50.
Selections of k frames:
- `random_frames`: uniform without replacement, the mean over `--random-seeds` (20) seeds;
- `frame_default`: `winnow.selection.select` on the frames, `SelectionConfig(n_samples=k)`
  (the product default, herding x diversity^0.5), no dataset;
- `object_default`: `winnow.objects._units.select_objects` with
  `SelectionConfig(n_samples=k, unit="object")`: with the default strategies that is herding
  whose picks are frames (`herd_frames`: each step labels the frame whose objects most raise
  the kernel coverage of all the objects, the dataset's objects held);
- `object_margin_diversity`: the same with strategies diversity + uncertainty (margin), picked
  in rounds of objects (a picked object's frame is labelled, its objects held);
- `object_balance_diversity`: balance on the predicted labels (even shares of the ten) x
  diversity^0.5, in rounds of objects: what a user asks for to find rare classes.
Every selection gets seed 0 and an empty dataset.

Scores over all objects (true classes known to the benchmark only): 1-NN accuracy of each
object's true class from the nearest labelled object's true class, by L2 on the L2-normalised
float32 crop embeddings (labelled objects count as themselves: correct), over all objects
and over the unlabelled ones only; rare-class objects labelled; objects and classes labelled;
frames chosen (always k). Diagnostics: the weak classifier's accuracy on the scene objects
and the leave-one-out 1-NN accuracy of the crop embeddings (every other object labelled:
the ceiling of what these embeddings allow).

Headline keys: `object_vs_frame_gain_k20`, `object_vs_frame_gain_k50` (object_default minus
frame_default, 1-NN accuracy over all objects) and `rare_objects_vs_random_k20` (the best
object-level strategy's rare objects labelled / random_frames' mean; None when that mean is
0). Targets: gain >= 0.05 at k 20 and 50; rare ratio >= 2 at k 20.
One scene seed per run: at k 20 random frames label ~2 rare objects, so the rare ratio (and
the gains, by a few points) move between `--seed` values. `--seeds 0,1,2,3` runs each seed in
turn; its last line holds the headline keys as means over the seeds (targets judged on the
means), each seed's headline, and every cell's mean accuracy and rare objects.

    .venv/bin/python bench/objects.py            # 400 frames (15-25 s on 2 CPU cores)
    .venv/bin/python bench/objects.py --quick    # 120 frames, a smoke test (10-20 s)
    .venv/bin/python bench/objects.py --ink tile  # digits on light tiles
    .venv/bin/python bench/objects.py --seeds 0,1,2,3  # four scene seeds, means (about 1 min)

Progress goes to stderr, one JSON line per (strategy, k) to stdout as it is scored; the last
line of stdout is one JSON object (the summary).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# torch and winnow are imported inside the functions that need them, so `--help` answers at once.

SIZE = 192  # frame side, px
SCALE = 4  # digit upscale: 8 px -> 32 px
DIGIT = 8 * SCALE
GAP = 4  # min px between two digits' boxes
MARGIN = 2  # min px from a digit's box to the frame's edge
JITTER = 2  # max px each predicted edge moves
RARE_CLASS = 8
KS = (10, 20, 50)
SHARD_FILES = 32
STRATEGIES = (
    "random_frames",
    "frame_default",
    "object_default",
    "object_margin_diversity",
    "object_balance_diversity",
)
OBJECT_STRATEGIES = ("object_default", "object_margin_diversity", "object_balance_diversity")
MARGIN_DIVERSITY = [{"type": "diversity"}, {"type": "uncertainty", "method": "margin"}]
# Even shares of the predicted labels (the weak classifier's): what a user asks for rare classes.
BALANCE_DIVERSITY = [
    {"type": "balance", "column": "label", "target": {str(c): 0.1 for c in range(10)}},
    {"type": "diversity", "strength": 0.5},
]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Scene:
    """One frame: its file key, its digits (rows of the scene split) and their true boxes."""

    key: str
    digits: list[int]
    boxes: list[tuple[int, int, int, int]]  # x, y, w, h of the pasted digit


def split_digits(seed: int, classifier_digits: int) -> tuple[np.ndarray, ...]:
    """Classifier split (balanced) and scene split of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images, y = data.images.astype(np.float32), data.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    per_class = classifier_digits // 10
    held = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]
    )
    rest = np.setdiff1d(np.arange(len(y)), held)
    return images[held], y[held], images[rest], y[rest]


def weak_classifier(images: np.ndarray, y: np.ndarray, seed: int):
    """A LogisticRegression on the raw 8x8 pixels of the small classifier split."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000, random_state=seed)
    return model.fit(images.reshape(len(images), -1) / 16.0, y)


def assign_digits(
    y: np.ndarray, n_frames: int, rare_share: float, rng: np.random.Generator
) -> list[list[int]]:
    """Per frame, the scene-split rows of its digits: exact class shares, no digit twice."""
    counts = rng.integers(2, 6, n_frames)  # 2-5 digits per frame
    total = int(counts.sum())
    n_rare = round(rare_share * total)
    others = [c for c in range(10) if c != RARE_CLASS]
    wanted = {RARE_CLASS: n_rare}
    for i, c in enumerate(others):
        wanted[c] = (total - n_rare) // len(others) + (i < (total - n_rare) % len(others))
    chosen = []
    for c, n in wanted.items():
        pool = np.flatnonzero(y == c)
        if n > len(pool):
            raise SystemExit(f"{n_frames} frames need {n} digits of class {c}, {len(pool)} left")
        chosen.append(rng.choice(pool, n, replace=False))
    rows = rng.permutation(np.concatenate(chosen))
    bounds = np.cumsum(counts)[:-1]
    return [part.tolist() for part in np.split(rows, bounds)]


def background(rng: np.random.Generator) -> np.ndarray:
    """A textured frame: base colour, gradient, soft colour blobs, noise (float32 0..255)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    rgb = np.empty((SIZE, SIZE, 3), np.float32)
    rgb[:] = rng.uniform(30, 225, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    rgb += ramp[..., None] * rng.uniform(-90, 90, 3)
    for _ in range(rng.integers(3, 7)):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.35)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        rgb += blob[..., None] * rng.uniform(-110, 110, 3)
    rgb += rng.normal(0, rng.uniform(4, 20), rgb.shape)
    return np.clip(rgb, 0, 255)


def place_boxes(n: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """`n` non-overlapping 32x32 boxes (GAP apart, MARGIN from the edges)."""
    boxes: list[tuple[int, int, int, int]] = []
    while len(boxes) < n:
        x, y = (int(v) for v in rng.integers(MARGIN, SIZE - MARGIN - DIGIT + 1, 2))
        if all(
            x + DIGIT + GAP <= bx
            or bx + DIGIT + GAP <= x
            or y + DIGIT + GAP <= by
            or by + DIGIT + GAP <= y
            for bx, by, _, _ in boxes
        ):
            boxes.append((x, y, DIGIT, DIGIT))
    return boxes


def render(images: np.ndarray, digits: list[int], rng: np.random.Generator, ink: str):
    """A frame with the digits at random places; (uint8 RGB, true boxes).

    `ink` tinted: contrasting tinted ink straight on the background; tile: dark ink on a light
    grey tile that fills the box.
    """
    from PIL import Image

    rgb = background(rng)
    boxes = place_boxes(len(digits), rng)
    for d, (x, y, w, h) in zip(digits, boxes, strict=True):
        small = Image.fromarray((images[d] / 16.0).astype(np.float32))
        alpha = np.clip(np.asarray(small.resize((w, h), Image.BILINEAR)), 0, 1)[..., None]
        spot = rgb[y : y + h, x : x + w]
        if ink == "tile":
            spot[:] = rng.uniform(190, 255)
            colour = rng.uniform(0, 60, 3)
        else:
            light = spot.mean() < 128
            colour = rng.uniform(175, 255, 3) if light else rng.uniform(0, 80, 3)
        rgb[y : y + h, x : x + w] = spot * (1 - alpha) + colour * alpha
    return rgb.round().astype(np.uint8), boxes


def jitter(box: tuple[int, int, int, int], rng: np.random.Generator) -> tuple[int, ...]:
    """The predicted box: each edge moved by up to JITTER px, clipped to the frame."""
    x, y, w, h = box
    x0, y0, x1, y1 = np.array([x, y, x + w, y + h]) + rng.integers(-JITTER, JITTER + 1, 4)
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(SIZE, int(x1)), min(SIZE, int(y1))
    return x0, y0, x1 - x0, y1 - y0


def write_scenes(folder: Path, images: np.ndarray, plan: list[list[int]], seed: int, ink: str):
    """The frames as PNGs; their scenes (true boxes) in frame order."""
    from PIL import Image

    rng = np.random.default_rng(seed + 1)
    scenes = []
    for i, digits in enumerate(plan):
        rgb, boxes = render(images, digits, rng, ink)
        key = f"frame_{i:04d}.png"
        Image.fromarray(rgb).save(folder / key)
        scenes.append(Scene(key=key, digits=digits, boxes=boxes))
    return scenes


@dataclass
class Objects:
    """Every object, aligned with the engine's object rows."""

    emb: np.ndarray  # float32 (N, D), L2-normalised crop embeddings
    y: np.ndarray  # true class
    frame: np.ndarray  # row of the frame (in `frames`) the object lies on
    predicted: np.ndarray  # the weak classifier's label


def predictions(scenes: list[Scene], images: np.ndarray, model, seed: int):
    """Per key, the predicted boxes; and (key, x, y, w, h) -> scene-split row of the digit."""
    from winnow.objects import Box

    rng = np.random.default_rng(seed + 2)
    flat = [d for s in scenes for d in s.digits]
    probs = model.predict_proba(images[flat].reshape(len(flat), -1) / 16.0)
    boxes, truth, at = {}, {}, 0
    for s in scenes:
        mine = []
        for d, box in zip(s.digits, s.boxes, strict=True):
            x, y, w, h = jitter(box, rng)
            p = probs[at]
            at += 1
            label = str(int(np.argmax(p)))
            mine.append(Box(0, None, x, y, w, h, False, label, float(p.max()), tuple(p)))
            truth[(s.key, x, y, w, h)] = d
        boxes[s.key] = tuple(mine)
    return boxes, truth


def embed(folder: Path, boxes: dict, seed: int):
    """Frames and crops, through the engine (random-weight resnet18 at 64 px, CPU)."""
    from winnow import engine
    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.media import FrameOptions
    from winnow.objects import CropSettings
    from winnow.records import Candidates, FileRef, ObjectRows, Shard
    from winnow.storage import LocalStore

    store = LocalStore(str(folder))
    infos = {i.key: i for i in store.list("")}
    refs = [
        FileRef(key, infos[key].fingerprint, infos[key].size_bytes, "image", boxes=boxes[key])
        for key in sorted(boxes)
    ]
    shards = []
    for i in range(0, len(refs), SHARD_FILES):
        files = tuple(refs[i : i + SHARD_FILES])
        shards.append(Shard(len(shards), Shard.id_for(files), files))
    options = EmbeddingOptions(
        model="resnet18", weights="none", input_size=64, device="cpu", batch_size=64, seed=seed
    )
    embedder = load_embedder(options)
    results = list(
        engine.embed_shards(
            shards,
            source=store,
            frames=FrameOptions(),
            embedder=embedder,
            crops=CropSettings(padding=0.1, min_size=4),
        )
    )
    frames = Candidates.concat([r.candidates for r in results])
    objects = ObjectRows.concat([r.objects for r in results])
    return frames, objects


def align(frames, objects, truth: dict, y_scene: np.ndarray, labels) -> Objects:
    """The engine's object rows matched to the true digits by their (key, box)."""
    row_of = {sid: i for i, sid in enumerate(frames.sample_id)}
    keys = [
        (str(k), *(round(float(v)) for v in b))
        for k, b in zip(objects.key, objects.boxes(), strict=True)
    ]
    missing = [k for k in keys if k not in truth]
    if missing or len(keys) != len(truth):
        raise SystemExit(f"{len(keys)} objects for {len(truth)} boxes; unmatched: {missing[:3]}")
    emb = objects.embedding.astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Objects(
        emb=emb,
        y=y_scene[[truth[k] for k in keys]],
        frame=np.array([row_of[s] for s in objects.sample_id], np.int64),
        predicted=np.array([int(v) for v in labels], np.int64),
    )


def nearest_labelled_accuracy(obj: Objects, labelled: np.ndarray) -> tuple[float, float]:
    """1-NN accuracy from the labelled objects: over all objects, over the unlabelled ones."""
    if not labelled.any():
        return 0.0, 0.0
    sims = obj.emb @ obj.emb[labelled].T  # unit vectors: max similarity = min L2 distance
    guess = obj.y[labelled][sims.argmax(1)]
    right = guess == obj.y
    right[labelled] = True
    rest = ~labelled
    return float(right.mean()), float(right[rest].mean()) if rest.any() else 1.0


def score(obj: Objects, chosen_frames: np.ndarray) -> dict:
    """What labelling these frames (all their objects) gives."""
    labelled = np.isin(obj.frame, chosen_frames)
    acc_all, acc_rest = nearest_labelled_accuracy(obj, labelled)
    return {
        "accuracy": acc_all,
        "accuracy_unlabelled": acc_rest,
        "rare_labelled": int((obj.y[labelled] == RARE_CLASS).sum()),
        "objects_labelled": int(labelled.sum()),
        "classes_labelled": int(len(np.unique(obj.y[labelled]))),
        "frames": int(len(np.unique(chosen_frames))),
    }


def random_frames(obj: Objects, n_frames: int, k: int, seeds: int) -> dict:
    """The mean of `seeds` uniform draws of k frames."""
    rng = np.random.default_rng(k)
    cells = [score(obj, rng.choice(n_frames, k, replace=False)) for _ in range(seeds)]
    out = {name: float(np.mean([c[name] for c in cells])) for name in cells[0]}
    out["accuracy_std"] = float(np.std([c["accuracy"] for c in cells]))
    out["rare_labelled_std"] = float(np.std([c["rare_labelled"] for c in cells]))
    return out


def selected_frames(name: str, k: int, frames, objects) -> np.ndarray:
    """Rows of `frames` picked by a product strategy for a budget of k frames."""
    from winnow.objects._units import select_objects
    from winnow.records import ObjectRows
    from winnow.selection import SelectionConfig, select

    dim = frames.embedding.shape[1]
    if name == "frame_default":
        config = SelectionConfig(n_samples=k, seed=0)
        result = select(frames, dataset=np.zeros((0, dim), np.float32), config=config, device="cpu")
    else:
        chosen = {
            "object_margin_diversity": MARGIN_DIVERSITY,
            "object_balance_diversity": BALANCE_DIVERSITY,
        }.get(name)
        extra = {"strategies": chosen} if chosen else {}
        config = SelectionConfig(n_samples=k, unit="object", seed=0, **extra)
        result = select_objects(
            objects, frames, held=ObjectRows.empty(dim), config=config, device="cpu"
        )
    return np.array([p.index for p in result.picks], np.int64)


def evaluate(obj: Objects, frames, objects, ks: list[int], seeds: int) -> dict:
    """Every strategy at every budget; one JSON line per cell to stdout."""
    out: dict = {}
    for k in ks:
        row: dict = {}
        for name in STRATEGIES:
            start = time.perf_counter()
            if name == "random_frames":
                cell = random_frames(obj, len(frames), k, seeds)
            else:
                cell = score(obj, selected_frames(name, k, frames, objects))
            cell["time_s"] = round(time.perf_counter() - start, 3)
            row[name] = cell
            print(json.dumps({"k": k, "strategy": name, **cell}), flush=True)
            _log(
                f"k={k} {name}: acc {cell['accuracy']:.3f} (unlabelled "
                f"{cell['accuracy_unlabelled']:.3f}), rare {cell['rare_labelled']}, "
                f"objects {cell['objects_labelled']}, frames {cell['frames']}"
            )
        out[str(k)] = row
    return out


def leave_one_out_accuracy(obj: Objects) -> float:
    """1-NN accuracy with every other object labelled: the embeddings' ceiling."""
    sims = obj.emb @ obj.emb.T
    np.fill_diagonal(sims, -np.inf)
    return float((obj.y[sims.argmax(1)] == obj.y).mean())


def targets(g20: float | None, g50: float | None, rare: float | None) -> dict:
    """The three targets, met or not (a missing figure misses its target)."""
    return {
        "object_vs_frame_gain_k20_ge_0.05": g20 is not None and g20 >= 0.05,
        "object_vs_frame_gain_k50_ge_0.05": g50 is not None and g50 >= 0.05,
        "rare_objects_vs_random_k20_ge_2": rare is not None and rare >= 2,
    }


def headline(results: dict) -> dict:
    """The three headline numbers and the targets."""

    def gain(k: int) -> float | None:
        row = results.get(str(k))
        if row is None:
            return None
        return row["object_default"]["accuracy"] - row["frame_default"]["accuracy"]

    rare = None
    if "20" in results:
        row = results["20"]
        best = max(row[name]["rare_labelled"] for name in OBJECT_STRATEGIES)
        base = row["random_frames"]["rare_labelled"]
        rare = best / base if base > 0 else None
    g20, g50 = gain(20), gain(50)
    return {
        "object_vs_frame_gain_k20": g20,
        "object_vs_frame_gain_k50": g50,
        "rare_objects_vs_random_k20": rare,
        "targets": targets(g20, g50, rare),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="120 frames, a smoke test (< 60 s)")
    parser.add_argument("--frames", type=int, default=None, help="scenes (400; quick 120)")
    parser.add_argument("--rare-share", type=float, default=0.03, help="share of digit 8s")
    parser.add_argument("--classifier-digits", type=int, default=60, help="weak classifier's")
    parser.add_argument("--random-seeds", type=int, default=20, help="draws of random frames")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the model")
    parser.add_argument(
        "--seeds",
        type=lambda v: [int(x) for x in v.split(",") if x.strip()],
        help="several seeds, comma-separated: the last line holds the means",
    )
    parser.add_argument(
        "--ink",
        choices=("tinted", "tile"),
        default="tinted",
        help="tinted: contrasting tinted ink on the background; tile: dark ink on a light tile",
    )
    args = parser.parse_args()
    args.frames = args.frames or (120 if args.quick else 400)
    return args


def main() -> None:
    args = parse_args()
    if not args.seeds:
        print(json.dumps(run_seed(args, args.seed)))
        return
    summaries = [run_seed(args, seed) for seed in args.seeds]
    print(json.dumps(over_seeds(summaries)))


def over_seeds(summaries: list[dict]) -> dict:
    """The headline as means over seeds (targets on the means), per seed, and mean cells."""

    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 4) if values else None

    keys = ("object_vs_frame_gain_k20", "object_vs_frame_gain_k50", "rare_objects_vs_random_k20")
    means = {k: mean([s[k] for s in summaries]) for k in keys}
    first = summaries[0]["results"]
    cells = {
        k: {
            name: {
                field: mean([s["results"][k][name][field] for s in summaries])
                for field in ("accuracy", "rare_labelled")
            }
            for name in first[k]
        }
        for k in first
    }
    g20, g50, rare = means[keys[0]], means[keys[1]], means[keys[2]]
    return {
        **means,
        "targets": targets(g20, g50, rare),
        "seeds": [s["params"]["seed"] for s in summaries],
        "per_seed": [
            {"seed": s["params"]["seed"], **{k: s[k] for k in keys}, "targets": s["targets"]}
            for s in summaries
        ],
        "mean_results": cells,
        "wall_s": round(sum(s["wall_s"] for s in summaries), 2),
    }


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """Make, embed and score the scenes of one seed; the summary (also the single-seed line)."""
    started = time.perf_counter()
    clf_x, clf_y, scene_x, scene_y = split_digits(seed, args.classifier_digits)
    model = weak_classifier(clf_x, clf_y, seed)
    plan = assign_digits(scene_y, args.frames, args.rare_share, np.random.default_rng(seed))
    with tempfile.TemporaryDirectory() as tmp:
        scenes = write_scenes(Path(tmp), scene_x, plan, seed, args.ink)
        boxes, truth = predictions(scenes, scene_x, model, seed)
        made = time.perf_counter()
        _log(f"{len(scenes)} frames, {len(truth)} objects written in {made - started:.1f} s")
        frames, objects = embed(Path(tmp), boxes, seed)
    embedded = time.perf_counter()
    _log(f"embedded {len(frames)} frames and {len(objects)} crops in {embedded - made:.1f} s")
    obj = align(frames, objects, truth, scene_y, objects.label)
    ks = [k for k in KS if k <= len(frames)]
    results = evaluate(obj, frames, objects, ks, args.random_seeds)
    summary = {
        **headline(results),
        "results": results,
        "objects": len(obj.y),
        "frames": len(frames),
        "rare_objects": int((obj.y == RARE_CLASS).sum()),
        "weak_classifier_accuracy": float((obj.predicted == obj.y).mean()),
        "embedding_loo_1nn_accuracy": leave_one_out_accuracy(obj),
        "make_s": round(made - started, 2),
        "embed_s": round(embedded - made, 2),
        "wall_s": round(time.perf_counter() - started, 2),
        "params": {
            "quick": args.quick,
            "frames": args.frames,
            "frame_px": SIZE,
            "digit_px": DIGIT,
            "digits_per_frame": [2, 5],
            "rare_class": RARE_CLASS,
            "rare_share": args.rare_share,
            "classifier_digits": args.classifier_digits,
            "jitter_px": JITTER,
            "ink": args.ink,
            "model": "resnet18 weights=none input_size=64 cpu",
            "crop_padding": 0.1,
            "ks": ks,
            "random_seeds": args.random_seeds,
            "seed": seed,
        },
    }
    return summary


if __name__ == "__main__":
    main()

"""Decode, model and end-to-end throughput, measured side by side in one process.

Makes synthetic street videos (640x360 h264, 1 s GoP) with winnow.demo in a temporary folder,
then, in rounds that alternate the order of the measurements (the machine may be shared and
noisy; every rate is the median over rounds, every ratio the median of per-round ratios):

- decode-only (winnow.media.decode_file at the model's input size, one file at a time) for each
  sampling mode, and FFmpeg's raw decoder ceiling (`ffmpeg -benchmark -i FILE -f null -`) next
  to it in every round (`decode_vs_ffmpeg`, the median of the per-round ratios);
- decode-only against FFmpeg doing the same work, interleaved in every round (AB, then BA):
  the same files, the same codec threads, scaled to the model's input as RGB,
  `ffmpeg -threads T -i FILE -vf scale=S:S:flags=bilinear -pix_fmt rgb24 -f null -`
  (`decode_vs_ffmpeg_same_work`, the median of the per-pair ratios);
- decode-only with 1, 2 and 4 decoders at once (threads, each with
  `device.decode_threads(decoders)` codec threads), total frames/s;
- model-only (frames decoded beforehand) for resnet18 and resnet50; every timed model (and the
  naive baseline's plain one) runs one untimed batch first;
- the engine (winnow.engine.embed_shards, resnet18: decoder threads ahead of a model thread)
  against min(decode-only with the engine's decoders and codec threads, model-only);
- a naive baseline: one file at a time, PyAV frames to PIL, PIL resize, then torchvision's
  `to_tensor` + `normalize` per frame and a plain fp32 torchvision model in batches (no overlap,
  contiguous NCHW); and the same loop with winnow's Embedder (channels_last) in place of the
  plain model, which isolates the gain of overlapping decode with the model.

    .venv/bin/python bench/throughput.py            # a few minutes: stable numbers
    .venv/bin/python bench/throughput.py --quick    # under a minute: smoke test

With `--model` (repeatable or comma-separated: `resnet18`, `timm:<name>`, `open_clip:<arch>/<tag>`)
it measures those backbones side by side instead, in rounds that alternate their order:
model-only frames/s (frames decoded beforehand), end-to-end frames/s (the engine), load
seconds, parameters, embedding width and memory (resident set growth on the CPU; peak CUDA
memory on a GPU), at one `--input-size` for all (default 224, DINOv2's own 518 is 5x slower),
with random weights (speed does not depend on their values):

    .venv/bin/python bench/throughput.py --quick \
        --model resnet18,timm:vit_small_patch14_dinov2.lvd142m,open_clip:ViT-B-32/laion2b_s34b_b79k

With `--objects N` it measures what object crops cost instead: the same videos with N boxes
on every `--boxed-every`-th frame (default 4), decoded and embedded by the engine (resnet18) with
crops (`objects.padding` 0.1) and without, interleaved in rounds; the extra seconds divided by
the objects cut give the cost of one object (its frame converted at full size, the crop cut and
resized, and its share of the model), next to the engine's seconds per frame:

    .venv/bin/python bench/throughput.py --objects 3 --quick

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imports of torch and winnow happen inside main(), so `--help` answers at once.

SAMPLING = {
    "all_frames": {},
    "every_n_frames=10": {"every_n_frames": 10},
    "sample_fps=2": {"sample_fps": 2.0},
    "keyframes_only": {"keyframes_only": True},
}


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v == v]  # drop NaN
    return round(statistics.median(values), 3) if values else None


def _make_videos(folder: Path, args) -> list[Path]:
    from winnow import demo

    paths = []
    for i in range(args.videos):
        path = folder / f"cam{i % 2}" / f"drive-{i:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        demo.make_video(
            path,
            n_frames=args.frames,
            width=args.width,
            height=args.height,
            fps=30,
            seed=i,
            scene=i,
            gop=30,
        )
        paths.append(path)
    return paths


def _ffmpeg_command(path: Path, *, threads: int | None = None, size: int | None = None) -> list:
    """FFmpeg decoding `path` to nothing; with `size`, scaled to size x size RGB as we do."""
    cmd = ["ffmpeg", "-hide_banner", "-nostats", "-benchmark"]
    if threads is not None:
        cmd += ["-threads", str(threads)]
    cmd += ["-i", str(path)]
    if size is not None:
        cmd += ["-vf", f"scale={size}:{size}:flags=bilinear", "-pix_fmt", "rgb24"]
    return [*cmd, "-f", "null", "-"]


def _ffmpeg_rate(
    paths: list[Path], frames_per_video: int, *, threads: int | None = None, size: int | None = None
) -> float | None:
    """Frames per second of FFmpeg decoding the same files to nothing (its `rtime`)."""
    return _ffmpeg_times(paths, frames_per_video, threads=threads, size=size)[0]


def _ffmpeg_times(
    paths: list[Path], frames_per_video: int, *, threads: int | None = None, size: int | None = None
) -> tuple[float | None, float | None]:
    """(frames/s by `rtime`, CPU seconds a frame by `utime + stime`) of FFmpeg on the files."""
    total = cpu = 0.0
    for path in paths:
        out = subprocess.run(
            _ffmpeg_command(path, threads=threads, size=size),
            capture_output=True,
            text=True,
            check=True,
        )
        times = dict(re.findall(r"([urs]time)=([0-9.]+)s", out.stderr))
        if "rtime" not in times:
            return None, None
        total += float(times["rtime"])
        cpu += float(times.get("utime", "nan")) + float(times.get("stime", "nan"))
    frames = frames_per_video * len(paths)
    return _rate(frames, total), cpu / frames


def _video_shards(folder: Path, args) -> tuple[list[Path], Any, list, list]:  # noqa: ANN001
    """The bench's videos made in `folder`: their paths, a store of them, refs, one shard each."""
    from winnow.records import FileRef, Shard
    from winnow.storage import LocalStore

    paths = _make_videos(folder, args)
    refs = [
        FileRef(p.relative_to(folder).as_posix(), "bench", p.stat().st_size, "video") for p in paths
    ]
    shards = [Shard(i, Shard.id_for((r,)), (r,)) for i, r in enumerate(refs)]
    return paths, LocalStore(folder), refs, shards


def _decode_all(folder: Path, refs: list, size: int) -> np.ndarray:
    """Every frame of the files, decoded once at the model's size (model-only measurements)."""
    from winnow import media
    from winnow.records import FileResult

    return np.concatenate(
        [
            item.pixels
            for ref in refs
            for item in media.decode_file(
                folder / ref.key, ref, size=size, options=media.FrameOptions()
            )
            if not isinstance(item, FileResult)
        ]
    )


def _bench_objects(args) -> None:  # noqa: ANN001
    """Engine seconds with and without crops of N boxes on every k-th frame (`--objects`)."""
    import dataclasses

    from winnow import engine, media
    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.objects import Box, CropSettings
    from winnow.records import Shard

    tmp = Path(tempfile.mkdtemp(prefix="winnow-bench-objects-"))
    try:
        _, store, refs, plain = _video_shards(tmp, args)
        w, h = args.width, args.height
        boxes = tuple(
            Box(i, None, w * (0.05 + 0.3 * b), h * 0.3, w * 0.2, h * 0.4, False, "car", 0.9)
            for i in range(0, args.frames, args.boxed_every)
            for b in range(args.objects)
        )
        boxed = [dataclasses.replace(r, boxes=boxes) for r in refs]
        with_boxes = [Shard(i, Shard.id_for((r,)), (r,)) for i, r in enumerate(boxed)]
        embedder = load_embedder(
            EmbeddingOptions(weights="none", input_size=args.input_size, device=args.device)
        )
        times: dict[str, list[float]] = defaultdict(list)
        counts = {}
        for r in range(args.rounds):
            for name in ["plain", "objects"] if r % 2 == 0 else ["objects", "plain"]:
                stats = engine.EngineStats()
                shards = with_boxes if name == "objects" else plain
                crops = CropSettings(padding=0.1) if name == "objects" else None
                t0 = time.perf_counter()
                for _ in engine.embed_shards(
                    shards,
                    source=store,
                    frames=media.FrameOptions(),
                    embedder=embedder,
                    stats=stats,
                    crops=crops,
                ):
                    pass
                times[name].append(time.perf_counter() - t0)
                counts[name] = (stats.frames, stats.objects)
                _log(f"round {r}: {name} {times[name][-1]:.2f} s, {counts[name]}")
        plain_s, objects_s = _median(times["plain"]), _median(times["objects"])
        frames, objects = counts["objects"]
        extra = objects_s - plain_s
        print(
            json.dumps(
                {
                    "mode": "objects",
                    "videos": args.videos,
                    "frames": frames,
                    "objects": objects,
                    "boxes_per_boxed_frame": args.objects,
                    "boxed_every": args.boxed_every,
                    "resolution": f"{w}x{h}",
                    "input_size": args.input_size,
                    "rounds": args.rounds,
                    "engine_plain_s": round(plain_s, 3),
                    "engine_objects_s": round(objects_s, 3),
                    "ms_per_frame": round(1000 * plain_s / frames, 3),
                    "ms_per_object": round(1000 * extra / objects, 3) if objects else None,
                    "object_vs_frame_cost": round(extra / objects / (plain_s / frames), 3)
                    if objects
                    else None,
                }
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rss_mb() -> float:
    """Resident set of this process in MB (Linux)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _bench_models(args) -> None:
    """Backbones side by side: model-only and end-to-end frames/s, load time, memory."""
    import torch

    from winnow import engine, media
    from winnow.device import available_cores
    from winnow.embedding import EmbeddingOptions, load_embedder

    names = [n.strip() for value in args.model for n in value.split(",") if n.strip()]
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="winnow-bench-"))
    try:
        paths, store, refs, shards = _video_shards(tmp, args)
        size = args.input_size
        pixels = _decode_all(tmp, refs, size)
        embedders, facts = {}, {}
        for name in names:
            cuda = args.device != "cpu" and torch.cuda.is_available()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            rss, t0 = _rss_mb(), time.perf_counter()
            options = EmbeddingOptions(
                model=name,
                weights="none",
                input_size=size,
                batch_size=args.batch_size,
                device=args.device,
                precision=args.precision,
                compile=args.compile,
            )
            embedder = load_embedder(options)
            embedder.embed(pixels[: args.batch_size])  # warm-up (and compilation) untimed
            embedders[name] = embedder
            facts[name] = {
                "dim": embedder.record.dim,
                "params_m": round(sum(p.numel() for p in embedder.module.parameters()) / 1e6, 1),
                "load_and_warmup_s": round(time.perf_counter() - t0, 1),
                "rss_growth_mb": round(_rss_mb() - rss),
                "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 1e6) if cuda else None,
                "precision": str(embedder.autocast_dtype or "fp32"),
                "preprocess": embedder.record.preprocess or "imagenet mean/std (torchvision)",
            }
            _log(f"loaded {name}: {facts[name]}")

        def engine_fps(embedder) -> float:
            t0 = time.perf_counter()
            n = sum(
                len(r.candidates)
                for r in engine.embed_shards(
                    shards, source=store, frames=media.FrameOptions(), embedder=embedder
                )
            )
            return _rate(n, time.perf_counter() - t0)

        samples: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in names}
        for rnd in range(args.rounds):
            for name in names if rnd % 2 == 0 else names[::-1]:
                embedder = embedders[name]
                t0 = time.perf_counter()
                embedder.embed(pixels)
                samples[name]["model"].append(_rate(len(pixels), time.perf_counter() - t0))
                samples[name]["engine"].append(engine_fps(embedder))
                _log(
                    f"round {rnd + 1}/{args.rounds} {name}: model {samples[name]['model'][-1]:.1f}"
                    f", end-to-end {samples[name]['engine'][-1]:.1f} frames/s"
                )
        models = {
            name: {
                "model_fps": _median(samples[name]["model"]),
                "end_to_end_fps": _median(samples[name]["engine"]),
                **facts[name],
            }
            for name in names
        }
        first = next(iter(embedders.values()))
        print(
            json.dumps(
                {
                    "bench": "throughput-models",
                    "quick": args.quick,
                    "device": str(first.device),
                    "cpus": available_cores(),
                    "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "input": {
                        "videos": args.videos,
                        "frames_per_video": args.frames,
                        "size": f"{args.width}x{args.height}",
                        "input_size": size,
                        "batch_size": args.batch_size,
                        "compile": args.compile,
                        "rounds": args.rounds,
                        "weights": "none (random; speed does not depend on the values)",
                    },
                    "models": models,
                    "seconds": round(time.perf_counter() - started, 1),
                    "command": " ".join(["python", "bench/throughput.py", *sys.argv[1:]]),
                }
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: under a minute")
    parser.add_argument("--videos", type=int, default=None, help="videos (default 4; quick 2)")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (150; quick 48)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 4; quick 1)")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--r50-frames", type=int, default=None, help="frames for resnet50")
    parser.add_argument("--decode-workers", type=int, default=None)
    parser.add_argument(
        "--pairs", type=int, default=None, help="ours/FFmpeg same-work pairs a round (3; quick 2)"
    )
    parser.add_argument(
        "--model", action="append", default=None, help="backbones to compare (see above)"
    )
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--objects", type=int, default=0, help="boxes a boxed frame (see above)")
    parser.add_argument("--boxed-every", type=int, default=4, help="every k-th frame has boxes")
    args = parser.parse_args()
    if args.objects:
        args.videos = args.videos or 2
        args.frames = args.frames or (48 if args.quick else 150)
        args.rounds = args.rounds or (2 if args.quick else 4)
        _bench_objects(args)
        return
    if args.model:
        args.videos = args.videos or 2
        args.frames = args.frames or (48 if args.quick else 96)
        args.rounds = args.rounds or (1 if args.quick else 2)
        _bench_models(args)
        return
    args.pairs = args.pairs or (2 if args.quick else 3)
    args.videos = args.videos or (2 if args.quick else 4)
    args.frames = args.frames or (48 if args.quick else 150)
    args.rounds = args.rounds or (1 if args.quick else 4)
    args.r50_frames = args.r50_frames or (32 if args.quick else 128)

    import av
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    from winnow import engine, media
    from winnow.device import available_cores, decode_threads
    from winnow.embedding import EmbeddingOptions, default_decode_workers, load_embedder
    from winnow.records import FileResult

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="winnow-bench-"))
    try:
        _log(f"making {args.videos} videos of {args.frames} frames, {args.width}x{args.height}")
        paths, store, refs, shards = _video_shards(tmp, args)
        n_frames = args.videos * args.frames
        size = args.input_size

        def options(model: str, **extra) -> EmbeddingOptions:
            return EmbeddingOptions(
                model=model,
                weights="none",  # speed does not depend on the values of the weights
                input_size=size,
                batch_size=args.batch_size,
                device=args.device,
                **extra,
            )

        r18 = load_embedder(options("resnet18"))
        r50 = load_embedder(options("resnet50"))
        device = r18.device
        _log(f"device {device}, torch threads {torch.get_num_threads()}")

        # Frames decoded once, for the model-only measurements.
        pixels = _decode_all(tmp, refs, size)
        assert len(pixels) == n_frames, (len(pixels), n_frames)
        r18.embed(pixels[: args.batch_size])  # warm-up: allocator, oneDNN primitives, cuDNN
        r50.embed(pixels[: args.batch_size])

        sampled: dict[str, int] = {}

        def decode_only(mode: str) -> float:
            opts = media.FrameOptions(**SAMPLING[mode])
            t0 = time.perf_counter()
            n = 0
            for ref in refs:
                for item in media.decode_file(tmp / ref.key, ref, size=size, options=opts):
                    if not isinstance(item, FileResult):
                        n += len(item)
            sampled[mode] = n
            return _rate(n, time.perf_counter() - t0)

        def decode_parallel(decoders: int) -> float:
            """Total frames/s of `decoders` threads decoding the files (every frame) at once."""
            import queue
            import threading

            work: queue.SimpleQueue = queue.SimpleQueue()
            for ref in refs * max(1, -(-decoders // len(refs))):  # a file for each decoder
                work.put(ref)
            threads = decode_threads(decoders)
            counts = [0] * decoders

            def loop(i: int) -> None:
                while True:
                    try:
                        ref = work.get_nowait()
                    except queue.Empty:
                        return
                    for item in media.decode_file(
                        tmp / ref.key, ref, size=size, options=media.FrameOptions(), threads=threads
                    ):
                        if not isinstance(item, FileResult):
                            counts[i] += len(item)

            workers = [threading.Thread(target=loop, args=(i,)) for i in range(decoders)]
            t0 = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            return _rate(sum(counts), time.perf_counter() - t0)

        same_threads = decode_threads(1)  # what decode_file uses for one video at a time

        def decode_same_work() -> float:
            t0, c0 = time.perf_counter(), time.process_time()
            n = 0
            for ref in refs:
                for item in media.decode_file(
                    tmp / ref.key,
                    ref,
                    size=size,
                    options=media.FrameOptions(),
                    threads=same_threads,
                ):
                    if not isinstance(item, FileResult):
                        n += len(item)
            samples["decode_same_work_cpu_ms"].append((time.process_time() - c0) / n * 1000)
            return _rate(n, time.perf_counter() - t0)

        has_ffmpeg = shutil.which("ffmpeg") is not None

        def ffmpeg_same_work() -> float:
            rate, cpu = _ffmpeg_times(paths, args.frames, threads=same_threads, size=size)
            samples["ffmpeg_same_work_cpu_ms"].append(cpu * 1000 if cpu else float("nan"))
            return rate if rate is not None else float("nan")

        def model_only(embedder, frames) -> float:
            t0 = time.perf_counter()
            embedder.embed(frames)
            return _rate(len(frames), time.perf_counter() - t0)

        last_stats = engine.EngineStats()

        def engine_run() -> float:
            nonlocal last_stats
            stats = engine.EngineStats()
            t0 = time.perf_counter()
            n = 0
            for result in engine.embed_shards(
                shards,
                source=store,
                frames=media.FrameOptions(),
                embedder=r18,
                decode_workers=args.decode_workers,
                stats=stats,
            ):
                n += len(result.candidates)
            seconds = time.perf_counter() - t0
            assert n == n_frames, (n, n_frames)
            last_stats = stats
            return _rate(n, seconds)

        # The textbook loop: torchvision's functional transforms per frame, a plain model.
        import torchvision.transforms.functional as tf

        plain = torchvision.models.resnet18().eval()
        plain.fc = torch.nn.Identity()
        plain = plain.to(device)
        with torch.inference_mode():  # warm-up, untimed: one batch, as for r18 and r50 above
            plain(torch.zeros(args.batch_size, 3, size, size, device=device))
        mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

        def plain_embed(images: list) -> None:
            with torch.inference_mode():
                for i in range(0, len(images), args.batch_size):
                    batch = [
                        tf.normalize(tf.to_tensor(im), mean, std)
                        for im in images[i : i + args.batch_size]
                    ]
                    x = torch.stack(batch).to(device)
                    feats = torch.nn.functional.normalize(plain(x), dim=1)
                    feats.half().cpu().numpy()

        def embedder_embed(images: list) -> None:
            r18.embed(np.stack([np.asarray(im) for im in images]))

        def naive(embed) -> float:
            t0 = time.perf_counter()
            n = 0
            for path in paths:  # one file at a time: decode it all, then embed it all
                with av.open(str(path)) as container:
                    images = [
                        frame.to_image().resize((size, size), Image.Resampling.BILINEAR)
                        for frame in container.decode(video=0)
                    ]
                embed(images)
                n += len(images)
            return _rate(n, time.perf_counter() - t0)

        # The bound's decode side runs the engine's decoders with the engine's codec threads.
        engine_decoders = args.decode_workers or default_decode_workers(device)
        measures = {
            "model_resnet18": lambda: model_only(r18, pixels),
            "model_resnet50": lambda: model_only(r50, pixels[: args.r50_frames]),
            "engine": engine_run,
            "naive": lambda: naive(plain_embed),
            # FFmpeg's raw ceiling next to decode_all_frames (AB, then BA on the next round)
            **(
                {"ffmpeg_raw": lambda: _ffmpeg_rate(paths, args.frames) or float("nan")}
                if has_ffmpeg
                else {}
            ),
            **{f"decode_{mode}": (lambda m=mode: decode_only(m)) for mode in SAMPLING},
            **{
                f"decoders_{n}": (lambda n=n: decode_parallel(n))
                for n in sorted({1, 2, 4, engine_decoders})
            },
        }
        if not args.quick:
            measures["naive_same_model"] = lambda: naive(embedder_embed)

        samples: dict[str, list[float]] = defaultdict(list)
        ratios: dict[str, list[float]] = defaultdict(list)
        # The model-only run and the engine sit next to each other, in AB / BA order on
        # alternate rounds, so slow drift in the machine's load cancels out of their ratios.
        paired = ["model_resnet18", "engine"]
        others = [n for n in measures if n not in paired]
        for rnd in range(args.rounds):
            order = (paired if rnd % 2 == 0 else paired[::-1]) + (
                others if rnd % 2 == 0 else others[::-1]
            )
            got: dict[str, float] = {}
            for name in order:
                got[name] = measures[name]()
                samples[name].append(got[name])
                _log(f"round {rnd + 1}/{args.rounds} {name}: {got[name]:.1f} frames/s")
            bound = min(got[f"decoders_{engine_decoders}"], got["model_resnet18"])
            if "ffmpeg_raw" in got:
                ratios["decode_vs_ffmpeg"].append(got["decode_all_frames"] / got["ffmpeg_raw"])
            ratios["engine_vs_bound"].append(got["engine"] / bound)
            ratios["engine_vs_naive"].append(got["engine"] / got["naive"])
            ratios["engine_vs_model"].append(got["engine"] / got["model_resnet18"])
            if "naive_same_model" in got:
                ratios["engine_vs_naive_same_model"].append(got["engine"] / got["naive_same_model"])
            # Ours and FFmpeg on the same work, next to each other: AB, BA, AB...
            for pair in range(args.pairs if has_ffmpeg else 0):
                if (rnd + pair) % 2 == 0:
                    a, b = decode_same_work(), ffmpeg_same_work()
                else:
                    b, a = ffmpeg_same_work(), decode_same_work()
                samples["decode_same_work"].append(a)
                samples["ffmpeg_same_work"].append(b)
                ratios["decode_vs_ffmpeg_same_work"].append(a / b)
                # The same in CPU time a frame (all threads; steadier than wall on a busy host).
                ratios["decode_vs_ffmpeg_same_work_cpu"].append(
                    samples["ffmpeg_same_work_cpu_ms"][-1] / samples["decode_same_work_cpu_ms"][-1]
                )
                _log(f"round {rnd + 1} pair {pair + 1}: ours {a:.1f}, ffmpeg {b:.1f} frames/s")

        ffmpeg_note = None
        if has_ffmpeg:  # its ceiling ("ffmpeg_raw") was measured in every round above
            version = subprocess.run(
                ["ffmpeg", "-version"], capture_output=True, text=True
            ).stdout.split("\n")[0]
            ffmpeg_note = f"{version}; -benchmark rtime, auto threads, -f null (no scaling)"
        else:
            ffmpeg_note = "ffmpeg not installed (apt-get install -y ffmpeg): ceiling not measured"

        rates = {name: _median(values) for name, values in samples.items()}
        stats = last_stats
        result = {
            "bench": "throughput",
            "quick": args.quick,
            "device": str(device),
            "cpus": available_cores(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "input": {
                "videos": args.videos,
                "frames_per_video": args.frames,
                "size": f"{args.width}x{args.height}",
                "codec": "h264 (libx264 ultrafast, 2 B-frames, GoP 30)",
                "input_size": size,
                "batch_size": args.batch_size,
                "precision": str(r18.autocast_dtype or "fp32"),
                "rounds": args.rounds,
            },
            "decode_fps": {mode: rates[f"decode_{mode}"] for mode in SAMPLING},
            # Video frames gone through per second (sampled frames x source/sampled).
            "decode_source_fps": {
                mode: round(rates[f"decode_{mode}"] * n_frames / sampled[mode], 1)
                for mode in SAMPLING
                if sampled.get(mode) and rates[f"decode_{mode}"]
            },
            "decode_sampled_frames": sampled,
            "decode_same_work_fps": rates.get("decode_same_work"),
            "ffmpeg_same_work_fps": rates.get("ffmpeg_same_work"),
            "decode_same_work_cpu_ms_per_frame": rates.get("decode_same_work_cpu_ms"),
            "ffmpeg_same_work_cpu_ms_per_frame": rates.get("ffmpeg_same_work_cpu_ms"),
            "ffmpeg_same_work_command": (
                " ".join(_ffmpeg_command(Path("FILE"), threads=same_threads, size=size)[4:])
                if has_ffmpeg
                else None
            ),
            "decode_threads": same_threads,
            # Total frames/s of 1, 2 and 4 decoders at once (every frame, model size).
            "decode_fps_by_decoders": {str(n): rates[f"decoders_{n}"] for n in (1, 2, 4)},
            "decode_threads_by_decoders": {str(n): decode_threads(n) for n in (1, 2, 4)},
            "decode_thread_rule": "codec threads per decoder = max(1, min(16, cores // decoders))",
            "ffmpeg_fps": rates.get("ffmpeg_raw"),
            "decode_vs_ffmpeg": None,  # without FFmpeg; else the median of per-round ratios below
            "ffmpeg_note": ffmpeg_note,
            "model_fps": {"resnet18": rates["model_resnet18"], "resnet50": rates["model_resnet50"]},
            "engine_fps": rates["engine"],
            "naive_fps": rates["naive"],
            "naive_same_model_fps": rates.get("naive_same_model"),
            "bound_fps": min(rates[f"decoders_{engine_decoders}"], rates["model_resnet18"]),
            "bound_decoders": engine_decoders,
            "bound_codec_threads": decode_threads(engine_decoders),
            "decode_vs_ffmpeg_same_work": None,  # without FFmpeg; else the median below
            **{name: _median(values) for name, values in ratios.items()},
            "engine_stats": {
                "decode_workers": stats.workers,
                "batches": stats.batches,
                "partial_batches": stats.partial_batches,
                "peak_frames_held": stats.peak_frames,
                "model_waited_s": round(stats.wait_s, 2),
                "model_busy_share": round(stats.model_s / stats.wall_s, 3),
            },
            "seconds": round(time.perf_counter() - started, 1),
            "command": " ".join(["python", "bench/throughput.py", *sys.argv[1:]]),
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

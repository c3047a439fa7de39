#!/usr/bin/env bash
# GPU benchmarks in one go (under 8 minutes on one CUDA GPU): throughput and selection.
#
#   bash bench/device.sh            # on a machine with a CUDA GPU (falls back to a CPU smoke run)
#   WINNOW_DEVICE=cpu bash bench/device.sh   # force the CPU fallback (small sizes)
#
# Runs bench/throughput.py on the GPU (end-to-end engine, decode-only, model-only, FFmpeg same
# work) while sampling `nvidia-smi --query-gpu=utilization.gpu` every 200 ms, then
# bench/selection.py's k-center at 200k candidates x 100k dataset, then the backbones side by
# side (resnet18, DINOv2 ViT-S/14, CLIP ViT-B/32 at 224 px: model-only and end-to-end frames/s,
# peak CUDA memory) in bf16 and in fp16 with torch.compile; channels_last is on for CNNs and off
# for ViTs (`Embedder`). The last line of output is one JSON object; the benchmarks' own JSON
# lines are kept under $OUT (or a temp folder).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT_DIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
export PREFECT_HOME=${PREFECT_HOME:-$OUT_DIR/prefect} DO_NOT_TRACK=1

device=${WINNOW_DEVICE:-}
if [ -z "$device" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 &&
        "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        device=cuda
    else
        device=cpu
    fi
fi

if [ "$device" = cuda ]; then
    # Enough frames that decode, not start-up, dominates; two rounds keep it under ~5 minutes.
    throughput_args=(--device cuda --videos 8 --frames 300 --rounds 2 --batch-size 256
        --r50-frames 1024)
    selection_case=(200000 100000 5000)
    models_args=(--device cuda --videos 4 --frames 150 --rounds 2 --batch-size 256)
else
    throughput_args=(--quick --device cpu)
    selection_case=(20000 10000 500)
    models_args=(--quick --device cpu --frames 24)
fi
MODELS=${WINNOW_BENCH_MODELS:-resnet18,timm:vit_small_patch14_dinov2.lvd142m,open_clip:ViT-B-32/laion2b_s34b_b79k}

sampler=""
util_log="$OUT_DIR/gpu_util.csv"
: >"$util_log"
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"$util_log" &
    sampler=$!
fi
stop_sampler() { if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=""; fi; }
trap stop_sampler EXIT

started=$(date +%s)
timeout 330 "$PY" bench/throughput.py "${throughput_args[@]}" >"$OUT_DIR/throughput.out" \
    2>"$OUT_DIR/throughput.err" || { tail -20 "$OUT_DIR/throughput.err" >&2; exit 1; }
stop_sampler
timeout 120 "$PY" bench/selection.py --case "${selection_case[@]}" >"$OUT_DIR/selection.out" \
    2>"$OUT_DIR/selection.err" || { tail -20 "$OUT_DIR/selection.err" >&2; exit 1; }

if [ "$device" = cuda ]; then
    timeout 150 "$PY" bench/throughput.py "${models_args[@]}" --model "$MODELS" --precision bf16 \
        >"$OUT_DIR/models_bf16.out" 2>"$OUT_DIR/models_bf16.err" || tail -5 "$OUT_DIR/models_bf16.err" >&2
    timeout 200 "$PY" bench/throughput.py "${models_args[@]}" --model "$MODELS" --precision fp16 \
        --compile >"$OUT_DIR/models_fp16_compile.out" 2>"$OUT_DIR/models_fp16_compile.err" ||
        tail -5 "$OUT_DIR/models_fp16_compile.err" >&2
else
    timeout 200 "$PY" bench/throughput.py "${models_args[@]}" --model resnet18 \
        >"$OUT_DIR/models_bf16.out" 2>"$OUT_DIR/models_bf16.err" || tail -5 "$OUT_DIR/models_bf16.err" >&2
fi

"$PY" - "$OUT_DIR" "$device" "$started" <<'EOF'
import json, statistics, sys, time
from pathlib import Path

out, device, started = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
tp = json.loads((out / "throughput.out").read_text().strip().splitlines()[-1])
sel = json.loads((out / "selection.out").read_text().strip().splitlines()[-1])
def models(name):
    path = out / name
    lines = path.read_text().strip().splitlines() if path.is_file() else []
    return json.loads(lines[-1])["models"] if lines else None
util = [float(v) for v in (out / "gpu_util.csv").read_text().split() if v.replace(".", "").isdigit()]
print(json.dumps({
    "bench": "device",
    "device": tp["device"],
    "cpus": tp["cpus"],
    "end_to_end_fps": tp["engine_fps"],
    "decode_only_fps": tp["decode_fps"]["all_frames"],
    "decode_fps_by_decoders": tp.get("decode_fps_by_decoders"),
    "decode_vs_ffmpeg_same_work": tp.get("decode_vs_ffmpeg_same_work"),
    "model_only_fps": tp["model_fps"],
    "engine_vs_bound": tp.get("engine_vs_bound"),
    "engine_decode_workers": tp["engine_stats"]["decode_workers"],
    # GPU utilisation averaged over the whole throughput run (its decode-only and CPU-only
    # phases included, so a lower bound for the engine); the engine's own model-busy share:
    "gpu_busy_share_throughput_run": round(statistics.mean(util) / 100, 3) if util else None,
    "engine_model_busy_share": tp["engine_stats"]["model_busy_share"],
    "gpu_util_samples": len(util),
    "kcenter": {"n": sel["n"], "m": sel["m"], "k": sel["k"], "seconds": sel["seconds"]},
    # per backbone: model_fps, end_to_end_fps, cuda_peak_mb, params_m, dim (224 px)
    "models_bf16": models("models_bf16.out"),
    "models_fp16_compile": models("models_fp16_compile.out"),
    "wall_s": round(time.time() - started, 1),
}))
EOF

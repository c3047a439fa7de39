"""The benchmarks run and end with one JSON object carrying their headline numbers.

Smoke runs only (small sizes): numbers are checked by reading the benchmarks' output, never by
timed tests.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@functools.cache
def _bench(script: str, *args: str) -> subprocess.CompletedProcess:
    """One run of a benchmark per session, shared by the tests that read its output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("script", "args", "keys"),
    [
        ("selection.py", ["--quick"], {"speedup_vs_naive", "coverage_vs_random"}),
        (
            "selection_quality.py",
            ["--quick"],
            {"default_gain_vs_random_k20", "default_gain_vs_random_k50", "delta_pixels"},
        ),
        ("throughput.py", ["--quick"], {"engine_vs_bound", "engine_vs_naive", "model_fps"}),
        (
            "scale.py",
            ["--quick"],
            {"dask_vs_local", "pool_vs_local", "pool_overhead_per_child_s", "dask_overhead_share"},
        ),
        (
            "discover.py",
            ["--keys", "300", "--new", "30", "--repeat", "1"],
            {"discover_0_new_s", "discover_1000_new_s", "list_only_s"},
        ),
    ],
)
def test_bench_prints_one_json_line_last(script, args, keys):
    out = _bench(script, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert keys <= result.keys()
    for key in keys:
        assert result[key] is not None


def test_throughput_quick_reports_same_work_ratio_and_decoder_counts():
    out = _bench("throughput.py", "--quick")  # the run above, not a second one
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = result["decode_vs_ffmpeg_same_work"]
    assert isinstance(ratio, float) and 0.05 < ratio < 20  # quick and noisy: sane, not the bar
    assert "scale=224:224" in result["ffmpeg_same_work_command"]
    assert f"-threads {result['decode_threads']} " in result["ffmpeg_same_work_command"]
    assert set(result["decode_fps_by_decoders"]) == {"1", "2", "4"}
    for decoders, fps in result["decode_fps_by_decoders"].items():
        assert isinstance(fps, float) and fps > 0, decoders
    threads = result["decode_threads_by_decoders"]
    assert threads["1"] == max(1, min(16, result["cpus"]))
    assert threads["4"] == max(1, result["cpus"] // 4)


def test_selection_quality_quick_values_are_sane():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "selection_quality.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("default_gain_vs_random_k20", "default_gain_vs_random_k50"):
        assert isinstance(result[key], float) and -1 <= result[key] <= 1
    assert 0 < result["delta_pixels"] <= 2
    assert 0 < result["kcenter_refined_radius_k50"] <= result["kcenter_radius_k50"] + 1e-6
    for setting in ("cold", "dataset"):
        for k, row in result["results"]["pixels"][setting].items():
            if k == "dataset_only":
                continue
            for name, cell in row.items():
                assert 0 <= cell["accuracy"] <= 1, (setting, k, name)
                assert 1 <= cell["classes"] <= 10 and 0 <= cell["radius"] <= 2
                assert isinstance(cell["time_s"], float) and 0 < cell["picks"] <= int(k)

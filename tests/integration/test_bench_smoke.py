"""The benchmarks run and end with one JSON object carrying their headline numbers.

Smoke runs only (small sizes): numbers are checked by reading the benchmarks' output, never by
timed tests.
"""

from __future__ import annotations

import functools
import json
import math
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
            "video_sampling.py",
            ["--quick"],
            {"shot_precision", "shot_recall", "frames_embedded_ratio", "radius_ratio"},
        ),
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
        (
            "index.py",
            ["--quick"],
            {"recall_at_10", "near_dup_recall", "check_100k_vs_5m_s", "exact_check_100k_vs_5m_s"},
        ),
        (
            "pool_growth.py",
            ["--quick"],
            {"pool_growth_ratio", "time_small_s", "time_big_s", "rss_small_mb", "rss_big_mb"},
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
    _assert_finite(result)


def _result(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_finite(value, where: str = "") -> None:
    """No NaN or infinity anywhere (json.dumps writes them as bare NaN/Infinity tokens)."""
    if isinstance(value, dict):
        for key, v in value.items():
            _assert_finite(v, f"{where}.{key}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _assert_finite(v, f"{where}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), where


def _number(value) -> bool:
    """A real JSON number: int or float, never a bool, a string or null."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(value) -> bool:
    return _number(value) and value >= 0


def _ratio(value) -> bool:
    return _number(value) and 0 < value < 100


def _fps(value) -> bool:
    return _number(value) and value > 0


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


def test_throughput_quick_values_are_sane():
    result = _result(_bench("throughput.py", "--quick"))  # the one quick run, shared
    rates = [result["engine_fps"], result["naive_fps"], result["bound_fps"]]
    rates += [*result["model_fps"].values(), *result["decode_fps"].values()]
    rates += [*result["decode_source_fps"].values(), *result["decode_fps_by_decoders"].values()]
    assert all(_fps(v) for v in rates), rates
    for key in ("engine_vs_bound", "engine_vs_naive", "engine_vs_model"):
        assert _ratio(result[key]), (key, result[key])
    if result["ffmpeg_same_work_command"] is not None:  # FFmpeg installed
        assert _fps(result["ffmpeg_fps"]) and _ratio(result["decode_vs_ffmpeg"])
        assert _fps(result["ffmpeg_same_work_fps"]) and _ratio(result["decode_vs_ffmpeg_same_work"])
    # The bound decodes with the engine's decoders and codec threads.
    stats = result["engine_stats"]
    assert result["bound_decoders"] == stats["decode_workers"] >= 1
    cores = result["cpus"]
    assert result["bound_codec_threads"] == max(1, min(16, cores // result["bound_decoders"]))
    assert _seconds(stats["model_waited_s"]) and 0 <= stats["model_busy_share"] <= 1
    assert stats["batches"] >= 1 and _seconds(result["seconds"])


def test_selection_quick_values_are_sane():
    result = _result(_bench("selection.py", "--quick"))  # the one quick run, shared
    assert result["quick"] is True and result["cases"]
    for case in result["cases"]:
        where = (case["n"], case["m"], case["k"])
        assert case["status"] == "ok" and case["naive"]["status"] == "ok", where
        assert case["same_picks_as_naive"] is True, where
        for key in ("seconds", "initial_distances_s", "greedy_s"):
            assert _seconds(case[key]), (where, key)
        assert _seconds(case["naive"]["seconds"]) and _fps(case["picks_per_s"]), where
        assert _ratio(case["speedup_vs_naive"]), where
        assert _ratio(case["working_memory_vs_naive"]), where
    assert _ratio(result["speedup_vs_naive"])
    assert 0 < result["coverage_vs_random"] < 1.5 and 0 < result["coverage_vs_random_digits"] < 1.5
    quality = result["quality_clustered"]
    assert 0 < quality["kcenter_radius"] <= quality["coverage_before"] <= 2  # unit vectors
    assert _seconds(result["wall_s"])


def test_discover_values_are_sane():
    args = ("--keys", "300", "--new", "30", "--repeat", "1")
    result = _result(_bench("discover.py", *args))  # the run above, not a second one
    assert result["keys_listed"] == 300 and result["new_files"] == 30
    for key in (
        "setup_put_s",
        "list_only_s",
        "load_pool_s",
        "discover_0_new_s",
        "discover_against_empty_pool_s",
        "discover_1000_new_s",
        "list_only_with_new_s",
    ):
        assert _seconds(result[key]), key
    for key in ("listing_share_0_new", "listing_share_1000_new", "pool_size_overhead_ratio"):
        assert _ratio(result[key]), key


def test_pool_growth_quick_values_are_sane():
    result = _result(_bench("pool_growth.py", "--quick"))  # the run above, not a second one
    assert result["quick"] is True and result["backend"] == "local"
    small, big = result["small"], result["big"]
    assert big["pool_samples"] == 10 * small["pool_samples"] > 0
    for run in (small, big):
        for key in (
            "build_s",
            "load_s",
            "seed_s",
            "commit_s",
            "load_seed_commit_s",
            "cold_load_seed_commit_s",
            "old_path_seed_s",
            "fingerprint_index_s",
            "lookup_run_keys_s",
        ):
            assert _seconds(run[key]), key
        assert 30 < run["rss_before_mb"] <= run["rss_peak_mb"] <= run["rss_after_all_cycles_mb"]
        assert run["rss_after_all_cycles_mb"] < 4000
    assert result["time_big_s"] == big["load_seed_commit_s"] and _seconds(result["time_small_s"])
    assert result["rss_big_mb"] == big["rss_peak_mb"]
    assert result["repeat"] == 3 and result["inner"] == 3  # 9 cycles per pool
    # Quick sizes on a shared machine are noisy: sane, not the bar (<= 1.2 in full mode).
    assert _ratio(result["pool_growth_ratio"]) and result["pool_growth_ratio"] < 3
    assert _ratio(result["cold_pool_growth_ratio"])
    index = result["fingerprint_index_at_scale"]  # the child asserts the index and its lookups
    assert index["files"] == 200_000 and index["files_parts"] == 1
    assert _seconds(index["fingerprint_index_s"]) and _seconds(index["lookup_200k_keys_s"])
    # Memory of the measured steps does not grow with the pool (structural, not noisy).
    assert _ratio(result["rss_growth_ratio"]) and result["rss_growth_ratio"] < 1.3
    assert _ratio(result["old_path_seed_ratio"])


def test_scale_quick_values_are_sane():
    result = _result(_bench("scale.py", "--quick"))  # the run above, not a second one
    assert set(result["modes"]) == {"local", "dask", "pool"}
    for mode, run in result["modes"].items():
        assert _seconds(run["wall_s"]) and _seconds(run["decode_embed_s"]), mode
        assert run["candidates"] == result["frames"] > 0, mode
    assert _ratio(result["dask_vs_local"]) and _ratio(result["pool_vs_local"])
    for key in ("dask_overhead_share", "pool_overhead_share"):
        assert _number(result[key]) and result[key] < 1, key


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


def test_embedding_quality_quick_values_are_sane():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "embedding_quality.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["quick"] is True
    assert isinstance(result["ssl_vs_random_label_efficiency"], float)
    assert 0 < result["ssl_vs_random_label_efficiency"] < 10
    assert result["train_s_total"] > 0 and result["wall_s"] >= result["train_s_total"]
    (digits,) = result["results"].values()
    assert digits["samples"] == 150 and digits["epochs"] == 1
    for model in ("random", "ssl"):
        cells = digits[model]
        assert 0.1 <= cells["knn5_accuracy"] <= 1  # 10 classes: chance is 0.1
        for k in ("k20", "k50"):
            for picks in ("kcenter", "random"):
                assert 0 < cells[k][picks] <= 1, (model, k, picks)
            assert 0 <= cells[k]["random_std"] < 0.5


def test_objects_quick_reports_gains_and_rare_objects_per_budget():
    result = _result(_bench("objects.py", "--quick"))
    for key in ("object_vs_frame_gain_k20", "object_vs_frame_gain_k50"):
        assert _number(result[key]) and -1 <= result[key] <= 1, key
    assert result["rare_objects_vs_random_k20"] is None or _number(
        result["rare_objects_vs_random_k20"]
    )
    assert set(result["targets"]) == {
        "object_vs_frame_gain_k20_ge_0.05",
        "object_vs_frame_gain_k50_ge_0.05",
        "rare_objects_vs_random_k20_ge_2",
    }
    assert set(result["results"]) == {"10", "20", "50"}
    for k, row in result["results"].items():
        assert set(row) == {
            "random_frames",
            "frame_default",
            "object_default",
            "object_balance_diversity",
            "object_margin_diversity",
        }
        for name, cell in row.items():
            assert cell["frames"] == int(k), (k, name)  # the budget counts frames
            assert 0 <= cell["accuracy_unlabelled"] <= cell["accuracy"] <= 1, (k, name)
            assert 0 <= cell["rare_labelled"] <= result["rare_objects"], (k, name)
    assert result["objects"] > result["frames"] == 120
    assert _seconds(result["wall_s"])
    _assert_finite(result)


def test_objects_over_seeds_reports_the_means_of_each_seeds_headline():
    result = _result(_bench("objects.py", "--quick", "--seeds", "3,4"))
    assert result["seeds"] == [3, 4] and [s["seed"] for s in result["per_seed"]] == [3, 4]
    for key in ("object_vs_frame_gain_k20", "object_vs_frame_gain_k50"):
        per_seed = [s[key] for s in result["per_seed"]]
        assert per_seed[0] != per_seed[1], key  # two draws of scenes, not one twice
        assert result[key] == pytest.approx(sum(per_seed) / 2, abs=1e-4), key
    assert result["targets"]["object_vs_frame_gain_k20_ge_0.05"] == (
        result["object_vs_frame_gain_k20"] >= 0.05
    )
    cells = result["mean_results"]["20"]
    assert set(cells) >= {"random_frames", "object_default", "object_balance_diversity"}
    assert all(0 <= c["accuracy"] <= 1 for c in cells.values())
    _assert_finite(result)

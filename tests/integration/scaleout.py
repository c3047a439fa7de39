"""Helpers of the scale-out tests: the data, a curate run in a child process, pool equality,
and a probe that makes one child run hold after its first staged shard (the kill point)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from tests.integration.prefect_server import PrefectServer

# 10 files, one shard each: enough for several children, seconds of work on 2 cores.
DEMO = {"n_videos": 6, "n_images": 4, "frames_per_video": 30, "width": 160, "height": 96}
FAST = {
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 16},
    # Change-aware sampling and shots on: children and Dask tasks must decide as this run does.
    "frames": {
        "every_n_frames": 5,
        "min_change": 0.03,
        "max_gap_seconds": 0.5,
        "detect_shots": True,
    },
    "selection": {"n_samples": 8},
    "shard_files": 1,
    # Objects on: children and Dask tasks cut the same crops (preds.csv, `write_source`).
    "objects": {"predictions": "preds.csv"},
}

# Runs curate in this process (a flow run on the server of PREFECT_API_URL); prints its summary.
RUN_CURATE = """
import json, sys
from flows.curate import curate
from winnow.params import CurateParams
params = CurateParams.model_validate(json.loads(sys.argv[1]))
summary = curate(**{name: getattr(params, name) for name in CurateParams.model_fields})
print(json.dumps(summary, default=str))
"""

# sitecustomize of the workers' flow-run processes: when <probe>/armed exists, the first
# process to stage a shard records its pid in <probe>/held and sleeps (until killed).
PROBE = """
import os
probe = os.environ.get("WINNOW_PROBE_DIR")
if probe:
    from winnow import datapool

    _real_stage = datapool.Datapool.stage_shard

    def stage_shard(self, plan_hash, shard_id, *args, **kwargs):
        _real_stage(self, plan_hash, shard_id, *args, **kwargs)
        if os.path.exists(os.path.join(probe, "armed")):
            try:
                fd = os.open(os.path.join(probe, "held"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, f"{os.getpid()} {shard_id}".encode())
            os.close(fd)
            import time
            time.sleep(600)

    datapool.Datapool.stage_shard = stage_shard
"""


def write_probe(folder: Path) -> Path:
    """A folder holding the probe as `sitecustomize.py` (put it on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(PROBE)
    return folder


def write_source(folder: Path) -> Path:
    """The test's raw data: 6 short videos and 4 stills."""
    from tests.integration.conftest import media_sizes, write_predictions
    from winnow import demo
    from winnow.storage import LocalStore

    demo.write_demo_files(LocalStore(folder), seed=3, **DEMO)
    write_predictions(LocalStore(folder), media_sizes(folder))
    return folder


def run_curate(server: PrefectServer, source: Path, output: Path, **scale) -> dict:
    """curate in a child process, on the server (scale={} is the in-process default)."""
    params = {"source": str(source), "output": str(output), **FAST}
    if scale:
        params["scale"] = scale
    out = server.run("python", "-c", RUN_CURATE, json.dumps(params), timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_same_pool(output: Path, expected: Path) -> None:
    """The pools hold the same files, samples (embeddings to float16 rounding) and tag members."""
    from winnow.datapool import Datapool
    from winnow.storage import LocalStore

    got, want = (Datapool(LocalStore(p).child("pool")).load() for p in (output, expected))
    assert got.version == want.version == 1

    def files(snapshot):
        cols = ("key", "fingerprint", "status", "frames_sampled")
        rows = zip(*(snapshot.files.column(c).to_pylist() for c in cols), strict=True)
        return sorted(rows)

    assert files(got) == files(want)
    a, b = got.samples(), want.samples()
    assert len(a) == len(b) > 0
    ia, ib = np.argsort(a.sample_id), np.argsort(b.sample_id)
    assert list(a.sample_id[ia]) == list(b.sample_id[ib])
    ea, eb = a.embedding[ia].astype(np.float32), b.embedding[ib].astype(np.float32)
    np.testing.assert_allclose(ea, eb, atol=2e-3)  # float16 holds ~3 significant digits
    shots = ("key", "fingerprint", "shot", "first_frame", "frames")
    assert sorted(map(str, got.shots().select(shots).to_pylist())) == sorted(
        map(str, want.shots().select(shots).to_pylist())
    )
    if want.manifest.counts.get("objects"):  # the same crops, cut by children or tasks
        oa, ob = got.objects(), want.objects()
        assert sorted(oa.object_id) == sorted(ob.object_id) and len(ob) > 0
        ia, ib = np.argsort(oa.object_id), np.argsort(ob.object_id)
        ea, eb = oa.embedding[ia].astype(np.float32), ob.embedding[ib].astype(np.float32)
        np.testing.assert_allclose(ea, eb, atol=2e-3)
    assert [t.name for t in got.tags] == [t.name for t in want.tags]
    for t, u in zip(got.tags, want.tags, strict=True):
        assert set(t.sample_ids) == set(u.sample_ids), t.name


def no_staging_left(output: Path) -> bool:
    """Nothing staged or described is left once the run committed."""
    staging = output / "pool" / "staging"
    return not staging.exists() or not [p for p in staging.rglob("*") if p.is_file()]


def wait_for_file(path: Path, timeout: float) -> str:
    """The content of `path` once it exists (and is non-empty)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear within {timeout:.0f} s")


def is_gone(pid: int) -> bool:
    """True when `pid` has exited (a zombie waiting for its parent counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def wait_gone(pid: int, timeout: float = 20) -> bool:
    """Wait for `pid` to exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    """True while `pid` runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not is_gone(pid)

"""A run killed mid-way (SIGKILL, no cleanup) and re-run ends with the same pool as an
uninterrupted run: every file committed exactly once, no orphan tag, finished shards reused.

The killed run is a real `winnow run` in a child process with a few probes wrapped around our
real objects (no hooks in production code): each step it reaches leaves a marker file, and at
the chosen kill point the child holds (sleeps) until the test kills it. So the kill always lands
where the test says, and the test checks that it did: the marker of the step after the kill
point is absent and the pool's storage shows exactly the writes that come before it.

Kill points (the boundaries of a run, in order):
    discover   discovery done, decoding not started (`Datapool.resume` entered)
    decode     mid decode+embed: the second of several shards staged
    upload     the upload finished, the commit not started (`Datapool.commit` entered)
    parts      the commit wrote every part, the manifest not created yet (`put_if_absent`)
    manifest   the manifest created, the `latest` hint not written yet (`put("latest")`)
    publish    committed, the tag's staged exports not yet copied to `tags/<tag>/` of the output

After each, the re-run leaves `tags/run-0001/` in the output holding exactly the tag's members.

Every kill point runs with a local output; the commit's two boundaries (`parts`, `manifest`) run
on S3 too (moto's server over HTTP), where the probes wrap `S3Store` instead of `LocalStore` and
the test reads the output through the same `ObjectStore` listing on both backends.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import media_sizes, write_predictions
from winnow import demo
from winnow.datapool import Datapool
from winnow.errors import NotFound
from winnow.storage import LocalStore, ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

PARAMS = {
    # Change-aware sampling and shots on: a resumed run decides as an uninterrupted one.
    "frames": {
        "every_n_frames": 2,
        "min_change": 0.01,
        "max_gap_seconds": 1.0,
        "detect_shots": True,
    },
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 16},
    "selection": {"n_samples": 10},
    "shard_files": 1,
    "objects": {"predictions": "preds.csv"},  # crops staged beside the shards, committed once
}

# Runs `winnow run ARGS...` with probes: argv is STAGE MARKERS_DIR STORE_CLASS ARGS..., where
# STORE_CLASS (LocalStore, S3Store) is the output's store, whose writes the probes wrap.
_PROBED_RUN = r"""
import sys, time
from pathlib import Path

stage, markers = sys.argv[1], Path(sys.argv[2])
markers.mkdir(parents=True, exist_ok=True)

from winnow import datapool, outputs, storage

Store = getattr(storage, sys.argv[3])

def in_staging(store):  # the pool's staging area (staged exports), not the output's tags/
    parts = store.root.parts if isinstance(store, storage.LocalStore) else store.prefix.split("/")
    return "staging" in parts

def mark(name):
    (markers / name).write_text(str(time.time()))

def hold(name):  # the kill point: the test kills this process once the marker exists
    mark(name)
    time.sleep(600)

real_resume = datapool.Datapool.resume
def resume(self, *args, **kwargs):  # the decode step's first call: discovery is done
    mark("decode")
    if stage == "discover":
        hold("kill-point")
    return real_resume(self, *args, **kwargs)
datapool.Datapool.resume = resume

real_stage = datapool.Datapool.stage_shard
staged = []
def stage_shard(self, *args, **kwargs):
    real_stage(self, *args, **kwargs)
    staged.append(1)
    mark(f"staged-{len(staged)}")
    if stage == "decode" and len(staged) == 2:
        hold("kill-point")
datapool.Datapool.stage_shard = stage_shard

real_upload = outputs.upload_selection
def upload_selection(*args, **kwargs):
    mark("upload")
    result = real_upload(*args, **kwargs)
    mark("uploaded")
    return result
outputs.upload_selection = upload_selection

real_commit = datapool.Datapool.commit
def commit(self, *args, **kwargs):
    mark("commit")
    if stage == "upload":
        hold("kill-point")
    return real_commit(self, *args, **kwargs)
datapool.Datapool.commit = commit

real_put = Store.put
def put(self, key, data):
    if key == "latest":
        if stage == "manifest":
            hold("kill-point")
        real_put(self, key, data)
        mark("latest")
        return
    if key.startswith("tags/") and not in_staging(self):  # published, not staged
        if stage == "publish":
            hold("kill-point")
        mark("publish")
    real_put(self, key, data)
    if key.startswith("parts/"):  # a datapool part: parts/<commit-id>/<table>.parquet
        mark("part-" + key.rsplit("/", 1)[-1].split(".")[0])
Store.put = put

real_put_if_absent = Store.put_if_absent
def put_if_absent(self, key, data):
    if key.startswith("versions/"):
        if stage == "parts":
            hold("kill-point")
        created = real_put_if_absent(self, key, data)
        mark("manifest")
        return created
    return real_put_if_absent(self, key, data)
Store.put_if_absent = put_if_absent

sys.argv = ["winnow", *sys.argv[4:]]
from flows.cli import main
main()
"""


def _probed_run(
    stage: str, markers: Path, source: Path, output: ObjectStore, params_file: Path, endpoint: str
) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    args = ["run", "--source", str(source), "--output", output.url]
    args += ["--params-file", str(params_file), "--json"]
    if endpoint:
        args += ["--endpoint-url", endpoint]
    store_class = type(output).__name__
    return subprocess.Popen(
        [sys.executable, "-c", _PROBED_RUN, stage, str(markers), store_class, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill_at_marker(proc: subprocess.Popen, marker: Path, timeout: float = 300) -> None:
    """SIGKILL the run once it is holding at `marker`; fail if it ends or never gets there."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if marker.exists():
                return
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")[-3000:]
                raise AssertionError(f"the run ended before the kill point:\n{out}")
            time.sleep(0.02)
        raise AssertionError("the run did not reach the kill point in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _keys(output: ObjectStore, prefix: str = "") -> list[str]:
    """Every key under `prefix` of the output (none when the folder or prefix is missing)."""
    try:
        return sorted(i.key for i in output.list(prefix))
    except NotFound:
        return []


def _matching(keys: list[str], pattern: str) -> list[str]:
    return [k for k in keys if re.fullmatch(pattern, k)]


def _pool_state(output: ObjectStore) -> dict:
    snap = Datapool(output.child("pool")).load()
    keys = snap.files.column("key").to_pylist()
    return {
        "version": snap.version,
        "files": sorted(keys),
        "file_rows": len(keys),
        "samples": sorted(snap.samples().sample_id),
        "tags": [(t.name, t.sample_ids) for t in snap.tags],
        "shots": sorted(map(str, snap.shots().select(["key", "shot", "frames"]).to_pylist())),
        "objects": sorted(snap.objects().object_id),
    }


def _run_in_process(source: Path, output: ObjectStore, endpoint: str = "") -> dict:
    from flows.curate import curate
    from winnow.params import CurateParams

    storage = {"endpoint_url": endpoint} if endpoint else {}
    data = {**PARAMS, "source": str(source), "output": output.url, "storage": storage}
    p = CurateParams.model_validate(data)
    return curate(**{n: getattr(p, n) for n in CurateParams.model_fields})


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "raw"
    store = LocalStore(root)
    demo.write_demo_files(store, n_videos=5, n_images=2, frames_per_video=90, width=160, height=96)
    write_predictions(store, media_sizes(root))  # before the corrupt files: no boxes there
    demo.write_corrupt_files(store)
    return root


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory) -> tuple[dict, dict]:
    """One uninterrupted run of the same job (summary, final pool), shared by every kill point."""
    clean = LocalStore(tmp_path_factory.mktemp("clean"))
    summary = _run_in_process(source, clean)
    assert summary["video_frames"][2] > 0  # change-aware sampling skipped frames
    state = _pool_state(clean)
    assert len(state["shots"]) == 5  # one shot per video (no cuts in the demo's videos)
    assert len(state["objects"]) == 14 == summary["objects"]  # two boxes on 5 videos, 2 images
    return summary, state


def _markers(markers: Path) -> set[str]:
    return {p.name for p in markers.iterdir()}


def _assert_killed_at(stage: str, markers: Path, crashed: ObjectStore, n_shards: int) -> int:
    """Check the kill landed at `stage` (nothing after it happened); return the shards staged."""
    seen = _markers(markers)
    keys = _keys(crashed)
    staged_reports = _matching(keys, r"pool/staging/exports/[^/]+/tags/run-0001/report\.html")
    published = _matching(keys, r"tags/[^/]+/.+")
    staged = len(_matching(keys, r"pool/staging/[^/]+/shard-[0-9a-f]+\.parquet"))  # not objects
    parts = sorted(k.rsplit("/", 1)[1] for k in _matching(keys, r"pool/parts/[^/]+/[^/]+\.parquet"))
    versions = sorted(k.rsplit("/", 1)[1] for k in _matching(keys, r"pool/versions/[^/]+\.json"))
    hint = "pool/latest" in keys
    before_commit = {"version": 0, "versions": []}
    state = {
        "version": Datapool(crashed.child("pool")).load().version,
        "versions": versions,
    }
    if stage == "discover":
        assert "decode" in seen and not any(m.startswith("staged-") for m in seen), seen
        assert staged == 0 and state == before_commit
    elif stage == "decode":
        assert "staged-2" in seen and "staged-3" not in seen and "upload" not in seen, seen
        assert staged == 2 < n_shards  # shards still to do
        assert state == before_commit
    elif stage == "upload":
        # The upload finished (the report is written last); the commit wrote nothing yet.
        assert {"uploaded", "commit"} <= seen, seen
        assert not any(m.startswith("part-") for m in seen), seen
        assert len(staged_reports) == 1 and published == []  # staged, not published
        assert staged == n_shards and parts == [] and state == before_commit
    elif stage == "parts":
        # Every part of the three tables is written; no manifest names them yet.
        assert {"part-files", "part-samples", "part-tags"} <= seen, seen
        assert "manifest" not in seen, seen
        assert {"files.parquet", "samples.parquet", "tags.parquet"} <= set(parts)
        assert staged == n_shards and state == before_commit
    elif stage == "manifest":
        # Version 1 exists (the run's files count as committed); the hint was never written.
        assert "manifest" in seen and "latest" not in seen, seen
        assert not hint
        assert versions == ["00000000000000000001.json"] and state["version"] == 1
        assert staged == n_shards  # the commit's clean-up of staged shards never ran
        assert len(staged_reports) == 1 and published == []
    elif stage == "publish":
        # Committed (version 1 and its hint), the exports still only staged.
        assert {"manifest", "latest"} <= seen and "publish" not in seen, seen
        assert hint and state["version"] == 1
        assert len(staged_reports) == 1 and published == []
    else:
        raise AssertionError(f"unknown kill point {stage}")
    return staged


BOUNDARIES = ["discover", "decode", "upload", "parts", "manifest", "publish"]
# Every boundary on a local output; the commit's own two on S3 as well.
CASES = [*((stage, "local") for stage in BOUNDARIES), ("parts", "s3"), ("manifest", "s3")]


def _assert_exports_are_the_tag(output: ObjectStore, stage: str) -> None:
    """`tags/run-0001/` holds exactly the committed tag's members; staging is left only by a
    killed run that never committed (garbage for `winnow gc`)."""
    (tag,) = Datapool(output.child("pool")).load().tags
    members = output.get(f"tags/{tag.name}/members.csv").decode().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in members) == sorted(tag.sample_ids)
    assert output.exists(f"tags/{tag.name}/report.html")
    assert {k.split("/")[1] for k in _keys(output, "tags")} == {tag.name}
    left = {k.split("/")[3] for k in _keys(output, "pool/staging/exports")}
    assert len(left) == (1 if stage in ("upload", "parts") else 0), left


@pytest.mark.parametrize(("stage", "backend"), CASES)
def test_a_run_killed_at_any_boundary_resumes_to_the_same_pool(
    source, reference, tmp_path, request, stage, backend
):
    first, expected = reference
    n_shards = first["shards"]
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(PARAMS))

    markers = tmp_path / "markers"
    if backend == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        endpoint = request.getfixturevalue("s3_endpoint")
        crashed = request.getfixturevalue("open_test_store")(f"s3://{bucket}/crashed")
    else:
        crashed, endpoint = LocalStore(tmp_path / "crashed"), ""
    proc = _probed_run(stage, markers, source, crashed, params_file, endpoint)
    _kill_at_marker(proc, markers / "kill-point")
    staged_before = _assert_killed_at(stage, markers, crashed, n_shards)

    summary = _run_in_process(source, crashed, endpoint)
    state = _pool_state(crashed)
    assert state == expected
    assert state["file_rows"] == len(set(state["files"]))  # each file committed exactly once
    _assert_exports_are_the_tag(crashed, stage)
    if stage in ("manifest", "publish"):
        # The killed run had committed: the re-run finds nothing new and adds nothing.
        assert summary["nothing_new"] and summary["files_new"] == 0
    else:
        assert summary["shards_resumed"] == staged_before
        assert summary["files_new"] == len(expected["files"])
        assert summary["pool_version_after"] == 1
        # consumed shards are cleaned up
        assert not _matching(_keys(crashed), r"pool/staging/[^/]+/shard-[^/]+\.parquet")
    again = _run_in_process(source, crashed, endpoint)
    assert again["nothing_new"] and _pool_state(crashed) == expected

"""Losing the commit race is not a failure: the loser rebases onto the winner and commits.

Two runs share one output pool over overlapping new files (two deployments, or a deployment and
a CLI run). Run B — a real `winnow run` in a child process — is held at its commit until run A
(in this process) has committed. B's first commit then loses; B reloads the pool, drops the files
A committed, selects again from its candidates against the new dataset (no decoding), uploads
its new picks and commits on top. The test asserts B really lost once (`commit_attempts == 2`,
the log line) and the pool's invariants: every file once, B's picks disjoint from A's tag, B's
selection seeded with A's members.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import media_sizes, write_predictions
from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

PARAMS = {
    "frames": {"every_n_frames": 3},
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 16},
    "selection": {"n_samples": 4},
    "shard_files": 2,
    "objects": {"predictions": "preds.csv"},  # a rebase drops the winner's files' objects too
}

# `winnow run ARGS...` whose first commit waits for a `go` file: argv is MARKERS_DIR ARGS...
_HELD_RUN = r"""
import sys, time
from pathlib import Path

markers = Path(sys.argv[1])
markers.mkdir(parents=True, exist_ok=True)

from winnow import datapool

real_commit = datapool.Datapool.commit
calls = []
def commit(self, *args, **kwargs):
    calls.append(1)
    (markers / f"commit-{len(calls)}").write_text(str(time.time()))
    if len(calls) == 1:  # held right before the first commit until the test releases it
        deadline = time.monotonic() + 600
        while not (markers / "go").exists():
            if time.monotonic() > deadline:
                raise SystemExit("never released")
            time.sleep(0.05)
    return real_commit(self, *args, **kwargs)
datapool.Datapool.commit = commit

real_decode = datapool.Datapool.stage_shard
def stage_shard(self, *args, **kwargs):
    if (markers / "commit-1").exists():  # decoding after the lost race would be a bug
        (markers / "decoded-after-conflict").write_text("")
    return real_decode(self, *args, **kwargs)
datapool.Datapool.stage_shard = stage_shard

sys.argv = ["winnow", *sys.argv[2:]]
from flows.cli import main
main()
"""


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"run B ended before {path.name}:\n{out[-2000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"run B never reached {path.name}")
        time.sleep(0.05)


def _summary_json(stdout: str) -> dict:
    """The `--json` summary: the last top-level JSON object the CLI printed."""
    start = stdout.rfind("\n{")
    return json.loads(stdout[start + 1 if start >= 0 else stdout.index("{") :])


def test_the_run_that_loses_the_commit_race_rebases_and_commits(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from tests.integration.conftest import run as run_in_process

    source, output, markers = tmp_path / "raw", tmp_path / "out", tmp_path / "markers"
    keys = demo.write_demo_files(
        LocalStore(source), n_videos=6, n_images=0, frames_per_video=30, width=160, height=96
    )
    write_predictions(LocalStore(source), media_sizes(source))
    b_keys, a_keys = keys[:4], keys[2:]  # both find keys[2:4]
    overlap = set(a_keys) & set(b_keys)
    (tmp_path / "b.txt").write_text("\n".join(b_keys))
    (tmp_path / "a.txt").write_text("\n".join(a_keys))
    params = tmp_path / "params.json"
    params.write_text(json.dumps({**PARAMS, "relevant_filenames": str(tmp_path / "b.txt")}))

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    args = ["run", "--source", str(source), "--output", str(output)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _HELD_RUN, str(markers), *args, "--params-file", str(params)]
        + ["--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(markers / "commit-1", proc)
        pool = Datapool(LocalStore(output / "pool"))
        assert pool.load().version == 0  # B is held before its commit...
        # ...with its exports of run-0001 staged in the pool, not in the output's tags/ (where
        # they would stand for picks the pool never records once A takes the name).
        assert not (output / "tags").exists()
        (b_staged,) = (output / "pool" / "staging" / "exports").iterdir()
        assert (b_staged / "tags" / "run-0001" / "report.html").is_file()
        a = run_in_process(
            str(source), str(output), **PARAMS, relevant_filenames=str(tmp_path / "a.txt")
        )
        assert a["pool_version_after"] == 1 and a["commit_attempts"] == 1  # ...A commits first
        (markers / "go").write_text("")
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0, f"{out[-2000:]}\n{err[-4000:]}"
    b = _summary_json(out)

    # B lost exactly once, said so, rebased without decoding, and committed on top of A.
    assert b["commit_attempts"] == 2 and (markers / "commit-2").exists()
    assert not (markers / "commit-3").exists()
    assert "commit attempt 1 of 3 lost" in err and "rebasing onto version 1" in err
    assert not (markers / "decoded-after-conflict").exists()
    assert b["pool_version_before"] == 0 and b["pool_version_after"] == 2
    assert b["files_new"] == len(b_keys) - len(overlap)  # A's copies of the overlap dropped
    assert b["tag"] == "run-0002" and b["parent_tag"] == "run-0001"

    # Both runs ended Completed.
    with get_client(sync_client=True) as client:
        for summary in (a, b):
            assert client.read_flow_run(summary["run_id"]).state.is_completed()

    snap = Datapool(LocalStore(output / "pool")).load()
    assert snap.version == 2 and snap.manifest.run_id == b["run_id"]
    file_keys = snap.files.column("key").to_pylist()
    assert sorted(file_keys) == sorted(keys)  # every file of both runs, each exactly once
    run_of = dict(zip(file_keys, snap.files.column("run_id").to_pylist(), strict=True))
    assert {run_of[k] for k in a_keys} == {a["run_id"]}  # the overlap stays A's
    assert {run_of[k] for k in set(b_keys) - overlap} == {b["run_id"]}
    samples = snap.samples()
    assert len(samples) == len(set(samples.sample_id))  # no sample twice
    overlap_runs = {r for k, r in zip(samples.key, samples.run_id, strict=True) if k in overlap}
    assert overlap_runs == {a["run_id"]}  # the overlap's frames are A's only
    objects = snap.objects()  # two boxes on frame 0 of every video, each committed once
    assert len(objects) == len(set(objects.object_id)) == 2 * len(keys)
    assert {r for k, r in zip(objects.key, objects.run_id, strict=True) if k in overlap} == {
        a["run_id"]
    }
    assert set(objects.sample_id) <= set(samples.sample_id)
    tag_a, tag_b = snap.tags
    assert (tag_a.name, tag_b.name, tag_b.parent) == ("run-0001", "run-0002", "run-0001")
    assert tag_a.run_id == a["run_id"] and tag_b.run_id == b["run_id"]
    assert len(tag_b.sample_ids) == PARAMS["selection"]["n_samples"]
    # B's picks respect A's: none is one of A's samples or from a file A committed, and B's
    # second selection was seeded with A's members as the existing dataset.
    assert not set(tag_b.sample_ids) & set(tag_a.sample_ids)
    key_of = dict(zip(samples.sample_id, samples.key, strict=True))
    picked_keys = {key_of[i] for i in tag_b.sample_ids}
    assert picked_keys <= set(b_keys) - overlap
    assert b["dataset_samples"] == len(tag_a.sample_ids)
    # The exports of both tags are exactly the committed picks (B re-uploaded under its new
    # tag; its first, losing upload of run-0001 was never published), and none stay staged.
    out_store = LocalStore(output)
    for tag in (tag_a, tag_b):
        assert out_store.exists(f"tags/{tag.name}/report.html")
        names = out_store.get(f"tags/{tag.name}/filenames.txt").decode().split()
        assert len(names) == len(tag.sample_ids)
        members = out_store.get(f"tags/{tag.name}/members.csv").decode().splitlines()[1:]
        assert sorted(line.split(",")[0] for line in members) == sorted(tag.sample_ids)
    assert not list((output / "pool" / "staging" / "exports").rglob("*.*"))

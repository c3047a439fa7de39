"""Errors a person can read: the `winnow` command prints one `error:` line naming the object and
the fix, no traceback, exits non-zero; when a flow ran, the Prefect flow run failed with the same
message. The command runs as a subprocess against the session's Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODEL, make_run
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = pytest.mark.usefixtures("prefect_api")

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--weights", "none", "--input-size", "32", "--n-samples", "2"]


def _case(name: str, tmp_path: Path, s3_endpoint: str, refused_endpoint: str, s3_bucket: str):
    """(CLI arguments, extra environment, words the one line must hold, whether a flow runs)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jpg").write_bytes(b"not really a jpeg")
    if name == "bad-parameters":
        args = ["run", "--source", str(raw), "--n-samples", "-1", "--every-n-frames", "0"]
        return (
            args,
            {},
            [
                "invalid parameters",
                "selection.n_samples",
                "frames.every_n_frames",
                "greater than",
                "fix the option",
            ],
            False,
        )
    if name == "unreachable-endpoint":
        args = ["run", "--source", "s3://bkt/raw", "--endpoint-url", refused_endpoint, *FAST]
        return args, {}, [refused_endpoint, "cannot connect", "check the endpoint URL"], True
    if name == "missing-bucket":
        args = [
            "run",
            "--source",
            "s3://no-such-bucket-x/raw",
            "--output",
            f"s3://{s3_bucket}/out",
            "--endpoint-url",
            s3_endpoint,
            *FAST,
        ]
        return args, {}, ["no-such-bucket-x", "does not exist", "create it or fix"], True
    if name == "missing-credentials":
        args = ["run", "--source", f"s3://{s3_bucket}/raw", "--endpoint-url", s3_endpoint, *FAST]
        env = {
            "AWS_ACCESS_KEY_ID": None,
            "AWS_SECRET_ACCESS_KEY": None,
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        return (
            args,
            env,
            [f"s3://{s3_bucket}", "no AWS credentials found", "AWS_ACCESS_KEY_ID"],
            True,
        )
    if name == "pool-of-another-model":
        out = tmp_path / "out"
        pool = Datapool(LocalStore(out).child("pool"))
        files, cands = make_run(["x.mp4"])
        pool.commit(pool.load(), run_id="r0", files=files, samples=cands, tag=None, model=MODEL)
        args = ["run", "--source", str(raw), "--output", str(out), *FAST]
        return args, {}, [str(out / "pool"), "was built with", "winnow reembed"], True
    raise AssertionError(name)


def _latest_flow_run():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
    return runs[0] if runs else None


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "bad-parameters",
        "unreachable-endpoint",
        "missing-bucket",
        "missing-credentials",
        "pool-of-another-model",
    ],
)
def test_errors_are_one_readable_line(name, tmp_path, s3_endpoint, refused_endpoint, s3_bucket):
    from prefect.settings import PREFECT_API_URL

    args, extra, words, flow_runs = _case(name, tmp_path, s3_endpoint, refused_endpoint, s3_bucket)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "NO_COLOR": "1"}
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    before = _latest_flow_run()
    proc = subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"[{name}] exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    for word in words:
        assert word in line, (word, line)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    if not flow_runs:
        assert proc.stderr.strip() == line  # nothing else was printed at all
        after = _latest_flow_run()
        assert (after and after.id) == (before and before.id)  # refused before any run
        return
    run = _latest_flow_run()
    assert run is not None and (before is None or run.id != before.id)
    assert run.state.is_failed()
    message = line.removeprefix("error: ").removesuffix(" (run with --debug for the traceback)")
    assert message.splitlines()[0] in run.state.message, (message, run.state.message)

"""The terminal: one-line errors with a non-zero exit (tracebacks with --debug), a progress bar."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import flows.curate  # noqa: F401 - set up Prefect logging on the real streams, not CliRunner's
from flows.cli import _TerminalBar, app
from tasks.progress import ProgressUpdate
from winnow import demo
from winnow.storage import LocalStore


@pytest.fixture
def corrupt_output(tmp_path):
    """An output whose pool has an unreadable manifest."""
    LocalStore(tmp_path / "out" / "pool").put("versions/00000000000000000001.json", b"{not json")
    return str(tmp_path / "out")


def _winnow(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from flows.cli import main; sys.argv[0] = 'winnow'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_an_error_is_one_line_and_a_non_zero_exit(corrupt_output):
    out = _winnow("tags", "--output", corrupt_output)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: datapool manifest")
    assert "Traceback" not in out.stderr + out.stdout and "--debug" in lines[0]


def test_debug_shows_the_traceback(corrupt_output):
    out = _winnow("--debug", "tags", "--output", corrupt_output)
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr and "PoolCorrupt" in out.stderr


@pytest.mark.usefixtures("prefect_api")
def test_a_failing_run_prints_one_error_line(tmp_path):
    (tmp_path / "raw").mkdir()
    args = ["run", "--source", str(tmp_path / "raw"), "--output", str(tmp_path / "out")]
    args += ["--relevant-filenames", "missing.txt"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "error: " in result.output and "missing.txt does not exist" in result.output
    assert "Traceback" not in result.output
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert debug.exit_code == 1 and type(debug.exception).__name__ == "NotFound"


def test_console_log_lines_lose_their_tracebacks_but_keep_them_for_other_handlers():
    from flows.cli import _brief_console_logs

    logger = logging.getLogger("winnow-test-brief")
    console, other = io.StringIO(), io.StringIO()
    logger.addHandler(logging.StreamHandler(console))
    logger.addHandler(logging.FileHandler(os.devnull))  # a non-console handler stays as it is
    kept = logging.Handler()
    kept.emit = lambda record: other.write(logging.Formatter().format(record))
    logger.addHandler(kept)
    _brief_console_logs()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("Encountered exception during execution")
    assert console.getvalue() == "Encountered exception during execution\n"
    assert "Traceback" in other.getvalue()  # e.g. the API log handler still sends it


def test_the_progress_bar_counts_shards_and_frames():
    from rich.console import Console

    screen = io.StringIO()
    bar = _TerminalBar(Console(file=screen, force_terminal=True, width=120))
    for done in range(4):
        bar(ProgressUpdate("decode + embed", "shards", done, 3, 40 * done, 1.0 + done))
    assert bar.bar is None  # closed when done
    text = screen.getvalue()
    assert "decode + embed" in text and "3/3" in text and "120 frames" in text
    assert "nan" not in text.lower()


@pytest.mark.slow
def test_a_first_local_run_is_quiet_and_says_each_thing_once_and_visibly(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    demo.make_video(raw / "clip.mp4", n_frames=12, width=64, height=48, seed=1, scene=0)
    demo.make_image(raw / "still.jpg", width=64, height=48, seed=2, scene=1)
    (raw / "bell\x07.jpg").write_bytes(b"x")  # keys with control characters: recorded, skipped
    (raw / "new\nline.mp4").write_bytes(b"x")
    # A new user: no Prefect settings at all, a fresh PREFECT_HOME, a temporary server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop("DO_NOT_TRACK", None)
    env["PREFECT_HOME"] = str(tmp_path / "fresh-prefect-home")
    code = "import sys; from flows.cli import main; sys.argv[0] = 'winnow'; main()"
    args = ["run", "--source", str(raw), "--output", str(out), "--weights", "none"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--input-size", "64"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "ERROR" not in text and "Traceback" not in text, text  # nothing failed
    assert "telemetry" not in text.lower(), text
    # The summary is printed once, and says the coverage before a first tag one way.
    assert text.count("coverage radius before → after") == 1, text
    assert "n/a → " in proc.stdout and "∞" not in text
    # Keys are shown escaped: no raw control character, no key split over two lines.
    assert "bell\\x07.jpg" in proc.stdout and "new\\nline.mp4" in proc.stdout
    assert "\x07" not in text and not any(line.startswith("line.mp4") for line in text.splitlines())
    report = (out / "tags" / "run-0001" / "report.html").read_text()
    assert "bell\\x07.jpg" in report and "\x07" not in report

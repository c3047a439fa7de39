"""A real Prefect server, CLI and workers as subprocesses (for the deployment tests).

Everything listens on 127.0.0.1, keeps its state in a temporary PREFECT_HOME (SQLite) and is
stopped by PID (each process leads its own process group, so a worker's flow-run children go
with it).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the project's .venv/bin: prefect, python
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, *, grace: float = 20.0) -> None:
    """Stop a process we started (and its process group): SIGTERM twice, then SIGKILL."""
    if proc.poll() is not None:
        return
    # A busy Prefect worker ignores the first SIGTERM until its run ends; a second one stops it.
    for sig in (signal.SIGTERM, signal.SIGTERM):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace / 2)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def tail(path: Path, n: int = 60) -> str:
    """The last lines of a log file, for assertion messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"(no {path})"


@dataclass
class PrefectServer:
    """A running `prefect server start`, and helpers to drive it like a user would."""

    home: Path
    port: int
    process: subprocess.Popen
    log: Path
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL of the server (the UI is served here)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """PREFECT_API_URL of the server."""
        return f"{self.url}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a Prefect CLI/worker/script process talking to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_CLI_COLORS="false",
            PREFECT_CLI_WRAP_LINES="false",
            COLUMNS="250",
        )
        env.update(extra)
        return env

    def run(
        self, *args: str, timeout: float = 300, check: bool = True, **extra_env: str
    ) -> subprocess.CompletedProcess:
        """Run a command (args[0] is a program in the venv: prefect, python) from the repo."""
        program = str(BIN / args[0])
        result = subprocess.run(
            [program, *args[1:]],
            cwd=REPO,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout}"
                f"\n--- stderr\n{result.stderr}"
            )
        return result

    def start_worker(self, pool: str, log: Path, *args: str, **extra_env: str) -> subprocess.Popen:
        """`prefect worker start --pool POOL` from the repo, logging to `log`."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", pool, *args],
                cwd=REPO,
                env=self.env(**extra_env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        """Stop the workers, then the server."""
        for worker in self.workers:
            stop_process(worker)
        stop_process(self.process)


def _wait_healthy(server: PrefectServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with {server.process.returncode}:\n{tail(server.log)}"
            )
        try:
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy after {timeout:.0f} s:\n{tail(server.log)}")


@contextmanager
def prefect_server(home: Path, *, ui: bool = True, timeout: float = 90) -> Iterator[PrefectServer]:
    """Start `prefect server start` on 127.0.0.1 with SQLite under `home`; stop it after."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "server.log"
    placeholder = PrefectServer(home=home, port=port, process=None, log=log)  # type: ignore[arg-type]
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    if not ui:
        cmd.append("--no-ui")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            cmd,
            cwd=home,
            env=placeholder.env(PREFECT_UI_API_URL=placeholder.api_url),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrefectServer(home=home, port=port, process=process, log=log)
    try:
        _wait_healthy(server, timeout)
        yield server
    finally:
        server.stop()


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,1000",
)


def find_chromium() -> str | None:
    """Debian's chromium (what .ci/run installs), or another Chrome on PATH."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """Headless Chromium driven over the DevTools protocol (one tab, a few commands).

    Enough to open a page of the Prefect UI (a single-page app), click a tab, read the rendered
    text and take a screenshot, without Playwright.
    """

    def __init__(self, executable: str, profile: Path, timeout: float = 30) -> None:
        """Start Chromium with remote debugging on 127.0.0.1 and connect to its tab."""
        import json

        from websockets.sync.client import connect

        self.timeout = timeout
        self._id = 0
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    executable,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                    "about:blank",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start:\n{tail(self.log)}")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
            # A tall viewport: the UI scrolls inside its own panes, so a "full page" capture
            # only shows what fits the window.
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=1400,
                height=1300,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            stop_process(self.process, grace=4)
            raise

    def send(self, method: str, **params) -> dict:
        """Send one DevTools command and wait for its result (events are skipped)."""
        import json

        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=self.timeout))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate the tab to `url`."""
        self.send("Page.enable")
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        """The page's rendered text (what a person sees)."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float | None = None) -> str:
        """Wait until the rendered text contains every needle; return the text."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise AssertionError(f"page never showed {missing}; it shows:\n{text[:3000]}")
            time.sleep(0.25)

    def click_text(self, label: str) -> None:
        """Click the first button, tab or link whose text is exactly `label`."""
        import json

        found = self.evaluate(
            "(() => { const el = [...document.querySelectorAll('button, a, [role=tab], .p-tab')]"
            f".find(e => e.textContent.trim() === {json.dumps(label)});"
            " if (el) { el.click(); return true; } return false; })()"
        )
        if not found:
            raise AssertionError(f"no button or tab labelled {label!r}:\n{self.text()[:2000]}")

    def dom(self) -> str:
        """The rendered DOM as HTML."""
        return self.evaluate("document.documentElement.outerHTML") or ""

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """Save a PNG of the page."""
        import base64

        params: dict = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the connection and stop Chromium."""
        try:
            self._ws.close()
        finally:
            stop_process(self.process, grace=4)

"""A real run's Label Studio export imports into a real Label Studio, which serves every image.

Label Studio (1.23.x) does not resolve beside this project's dependencies, so it runs from its
own virtual environment (`labelstudio_env.sh`, built from requirements/labelstudio.lock.txt and
cached at /tmp/winnow-labelstudio-venv) as the separate server it is, on 127.0.0.1, with
local-files serving on and document root `/`. The test skips only when that venv is missing and
the package registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import winnow.media  # noqa: F401 - registers the HEIF opener with Pillow (to write a HEIC)
from flows.cli import app
from tests.integration.conftest import run
from winnow import demo
from winnow.datapool import Datapool
from winnow.outputs import labelstudio_labels_config
from winnow.outputs._exports import _labelstudio_json
from winnow.records import ObjectRows
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ENV_SCRIPT = Path(__file__).with_name("labelstudio_env.sh")
VENV = Path(os.environ.get("WINNOW_LABELSTUDIO_VENV", "/tmp/winnow-labelstudio-venv"))
NAN = float("nan")
TOKEN = "winnow0test0token0000000000000000000001"  # 40 characters, a legacy API token
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="keep" toName="image"><Choice value="yes"/><Choice value="no"/></Choices></View>'
)


class LabelStudio:
    """A Label Studio server started from its own venv, and its REST API with token auth."""

    def __init__(self, venv: Path, data_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "server.log"
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": "/",
            "LATEST_VERSION_CHECK": "false",  # no call to the package registry at start
        }
        command = [
            str(venv / "bin" / "label-studio"),
            "start",
            "--no-browser",
            "--data-dir",
            str(data_dir),
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--username",
            "winnow@example.com",
            "--password",
            "winnow-test-password",
            "--user-token",
            TOKEN,
            "--enable-legacy-api-token",
        ]
        self.started = time.monotonic()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.ready_after_s: float | None = None

    def wait_ready(self, timeout_s: float = 600) -> None:
        """Poll `/health` until the server answers (a fresh database migrates first)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        self.ready_after_s = time.monotonic() - self.started
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(2)
        raise AssertionError(
            f"Label Studio not ready in {timeout_s} s:\n{self.log.read_text()[-3000:]}"
        )

    def call(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
            data=None if body is None else json.dumps(body).encode(),
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str, body=None):
        status, data = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {data[:1000]!r}"
        return json.loads(data)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: only what it started
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def labelstudio_venv() -> Path:
    """The cached venv with label-studio; made on demand (a few minutes) by labelstudio_env.sh."""
    proc = subprocess.run(
        ["bash", str(ENV_SCRIPT), str(VENV)], capture_output=True, text=True, timeout=1500
    )
    if proc.returncode == 3:
        pytest.skip(
            "label-studio cannot be installed: the package registry is unreachable "
            f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no detail'})"
        )
    assert proc.returncode == 0, f"labelstudio_env.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return VENV


@pytest.fixture(scope="module")
def labelstudio(labelstudio_venv, tmp_path_factory):
    """A started (maybe not yet ready) Label Studio; the test waits for it after its own work."""
    server = LabelStudio(labelstudio_venv, tmp_path_factory.mktemp("labelstudio"))
    try:
        yield server
    finally:
        server.stop()


def _animated_gif(path: Path) -> None:
    frames = []
    for i in range(9):
        a = np.full((72, 96, 3), (25 * i, 200 - 20 * i, 90), np.uint8)
        a[10:30, 8 * i : 8 * i + 20] = 255
        frames.append(Image.fromarray(a))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)


def _source(root: Path) -> Path:
    """Videos, JPEGs, an animated GIF, a HEIC photo, and a file that is not media."""
    for sub in ("cam1", "stills", "phone"):
        (root / sub).mkdir(parents=True)
    demo.make_video(root / "cam1/drive.mp4", n_frames=24, width=128, height=72, seed=1, scene=0)
    demo.make_video(root / "cam1/b & c.mp4", n_frames=24, width=128, height=72, seed=2, scene=1)
    demo.make_image(root / "stills/one.jpg", width=120, height=80, seed=3, scene=2)
    demo.make_image(root / "stills/two two.jpg", width=120, height=80, seed=4, scene=3)
    _animated_gif(root / "stills/loop.gif")
    photo = np.asarray(Image.open(root / "stills/one.jpg").convert("RGB"))[::-1]
    Image.fromarray(np.ascontiguousarray(photo)).save(root / "phone/IMG_0001.HEIC", format="HEIF")
    (root / "notes.txt").write_text("not media\n")
    return root


@pytest.mark.usefixtures("prefect_api")
def test_a_runs_label_studio_export_imports_and_every_image_is_served(labelstudio, tmp_path):
    source = _source(tmp_path / "raw")
    output = tmp_path / "out"
    summary = run(str(source), str(output), selection={"n_samples": 100})  # every candidate

    assert summary["files_ignored"] == 1 and summary["ignored_examples"] == ["notes.txt"]
    assert summary["files_ok"] == 6 and summary["files_corrupt"] == 0
    snapshot = Datapool(LocalStore(output).child("pool")).load()
    kinds = dict(
        zip(
            snapshot.files.column("key").to_pylist(),
            snapshot.files.column("kind").to_pylist(),
            strict=True,
        )
    )
    assert kinds["stills/loop.gif"] == "video" and kinds["phone/IMG_0001.HEIC"] == "image"
    tag = snapshot.tag(summary["tag"])
    exports = output / "tags" / tag.name
    tasks = json.loads((exports / "labelstudio.json").read_text())
    names = (exports / "filenames.txt").read_text().splitlines()
    assert len(tasks) == len(names) == len(tag.sample_ids) > 0
    assert [t["meta"]["sample_id"] for t in tasks] == list(tag.sample_ids)
    assert [t["meta"]["filename"] for t in tasks] == names
    gif_frames = [n for n in names if n.startswith("frames/stills/loop-")]
    # which files the selection keeps is its business; the tag must hold frames and images
    assert any(n.startswith("frames/") for n in names)
    assert any(not n.startswith("frames/") for n in names)

    # The CLI exports the same tasks from the datapool.
    cli = CliRunner().invoke(
        app, ["export", "--output", str(output), "--tag", tag.name, "--format", "labelstudio"]
    )
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == tasks

    labelstudio.wait_ready()
    project = labelstudio.json(
        "POST", "/api/projects", {"title": f"winnow {tag.name}", "label_config": LABEL_CONFIG}
    )
    pid = project["id"]
    labelstudio.json(  # serving a local file needs a project storage whose path holds it
        "POST",
        "/api/storages/localfiles",
        {"project": pid, "path": str(tmp_path), "title": "winnow", "use_blob_urls": False},
    )
    imported = labelstudio.json("POST", f"/api/projects/{pid}/import", tasks)
    assert imported["task_count"] == len(tasks)

    listed = labelstudio.json("GET", f"/api/tasks?project={pid}&page_size=1000")
    assert listed["total"] == len(tasks)
    stored = sorted((t["meta"]["sample_id"], t["data"]["image"]) for t in listed["tasks"])
    assert stored == sorted((t["meta"]["sample_id"], t["data"]["image"]) for t in tasks)

    # Label Studio reads every image reference: the bytes it serves are the exported file's.
    for task in tasks:
        name = task["meta"]["filename"]
        on_disk = (output / name) if name.startswith("frames/") else (source / name)
        status, body = labelstudio.call("GET", task["data"]["image"])
        assert status == 200, f"{task['data']['image']}: {status}"
        assert body == on_disk.read_bytes(), name
    print(
        f"label studio ready after {labelstudio.ready_after_s:.0f} s; "
        f"{len(tasks)} tasks imported and served ({len(gif_frames)} GIF frames)"
    )


# Two images of different sizes (one with a key URLs must quote), boxes in pixels of each.
OBJECT_IMAGES = {
    "street.png": ((160, 90), [((16, 9, 48, 45), "car", 0.9), ((100, 0, 60, 90), "person", NAN)]),
    "b & c.png": ((64, 48), [((0.5, 1.25, 10.5, 20), "person", 0.25)]),
}


def _object_rows(tmp_path: Path) -> list[dict]:
    """Export rows of local PNGs, each with its objects, as `_labelstudio_json` takes them."""
    folder = tmp_path / "objects"
    folder.mkdir()
    rows = []
    for n, (name, ((width, height), boxes)) in enumerate(OBJECT_IMAGES.items()):
        pixels = np.random.default_rng(n).integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        objects = ObjectRows.from_rows(
            [
                {
                    "object_id": f"{n}{i}" + "0" * 22,
                    "sample_id": f"sample-{n}",
                    "key": name,
                    "fingerprint": "fp",
                    "label": label,
                    "frame_index": 0,
                    "pts_seconds": 0.0,
                    **dict(zip("xywh", box, strict=True)),
                    "score": score,
                    "probabilities": [],
                }
                for i, (box, label, score) in enumerate(boxes)
            ]
        )
        rows.append(
            {
                "url": (folder / name).as_uri(),
                "sample_id": f"sample-{n}",
                "key": name,
                "frame_index": 0,
                "filename": name,
                "width": width,
                "height": height,
                "objects": objects,
            }
        )
    return rows


def _regions(result: list[dict]) -> list[tuple[str, list[float]]]:
    return sorted(
        (r["value"]["rectanglelabels"][0], [r["value"][k] for k in ("x", "y", "width", "height")])
        for r in result
    )


def test_object_boxes_import_as_label_studio_predictions(labelstudio, tmp_path):
    rows = _object_rows(tmp_path)
    tasks = json.loads(_labelstudio_json(rows, "objects"))
    assert [len(t["predictions"][0]["result"]) for t in tasks] == [2, 1]

    labelstudio.wait_ready()
    config = labelstudio_labels_config(["car", "person"])
    project = labelstudio.json(
        "POST", "/api/projects", {"title": "objects", "label_config": config}
    )
    pid = project["id"]
    labelstudio.json(
        "POST",
        "/api/storages/localfiles",
        {"project": pid, "path": str(tmp_path), "title": "objects", "use_blob_urls": False},
    )
    imported = labelstudio.json("POST", f"/api/projects/{pid}/import", tasks)
    assert (imported["task_count"], imported["prediction_count"]) == (2, 2)

    listed = labelstudio.json("GET", f"/api/tasks?project={pid}&page_size=100")["tasks"]
    by_sample = {t["meta"]["sample_id"]: t for t in listed}
    for row in rows:
        stored = by_sample[row["sample_id"]]
        (prediction,) = labelstudio.json("GET", f"/api/predictions?task={stored['id']}")
        assert prediction["model_version"] == "winnow"
        (width, height), boxes = OBJECT_IMAGES[row["key"]]
        expected = sorted(
            (label, [100 * x / width, 100 * y / height, 100 * w / width, 100 * h / height])
            for (x, y, w, h), label, _ in boxes
        )
        exported = next(t for t in tasks if t["meta"]["sample_id"] == row["sample_id"])
        exported_result = exported["predictions"][0]["result"]
        got = _regions(prediction["result"])
        for want in (expected, _regions(exported_result)):
            assert [label for label, _ in got] == [label for label, _ in want]
            np.testing.assert_allclose([v for _, v in got], [v for _, v in want], atol=1e-6)
        assert sorted(r["id"] for r in prediction["result"]) == sorted(
            r["id"] for r in exported_result
        )
        assert all(r["original_width"] == width for r in prediction["result"])
        status, body = labelstudio.call("GET", stored["data"]["image"])
        assert status == 200 and body == (tmp_path / "objects" / row["key"]).read_bytes()
    print(f"label studio ready after {labelstudio.ready_after_s:.0f} s; 2 tasks, 3 boxes")

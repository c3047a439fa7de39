"""One bad object never stops a run: hostile keys, unreadable, replaced and vanished objects,
files over the pixel and time budgets. Each is recorded with a reason and nothing is ever
written outside `output`, on the local and the S3 backend."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FaultProxy
from winnow import demo, engine
from winnow.datapool import Datapool
from winnow.embedding import EmbeddingOptions, load_embedder
from winnow.media import FrameOptions
from winnow.outputs._names import output_name_problem
from winnow.records import FileRef, Shard, kind_of
from winnow.storage import LocalStore, S3Options, key_problem, open_store

# -- keys, checked without a run ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "empty"),
        ("../escape.jpg", "'..'"),
        ("a/../../b.jpg", "'..'"),
        ("x/./y.jpg", "'.'"),
        ("/lead.jpg", "starts with '/'"),
        ("a//b.jpg", "empty path component"),
        ("dir/", "empty path component"),
        ("ctl\x01.jpg", "control characters"),
        ("new\nline.jpg", "control characters"),
        ("esc\x1b[31m.jpg", "control characters"),
        ("back\\slash.jpg", "backslash"),
        ("bad\udcff.jpg", "not valid UTF-8"),
        ("bad\\udcff.jpg", "not valid UTF-8"),
        ("/".join(["d" * 240] * 4) + "/v.jpg", "bytes long"),
        ("n" * 256 + ".jpg", "longer than 255"),
    ],
)
def test_listed_keys_that_cannot_be_read_exactly_are_refused(key, rule):
    assert rule in key_problem(key)


@pytest.mark.parametrize(
    "key", ["a.jpg", "dots/..jpg", "space name.mp4", "ünï/çödé.png", "a.mp4/b.jpg", "x" * 255]
)
def test_ordinary_odd_keys_are_accepted(key):
    assert key_problem(key) is None
    assert output_name_problem(key, kind_of(key) or "image") is None


@pytest.mark.parametrize(
    ("key", "kind", "rule"),
    [
        ("v" * 246 + ".mp4", "video", "output file names would be longer"),
        ("clip-0-mp4.png/inner.mp4", "video", "named like a frame PNG"),
        ("a/shot-12.png/anim.gif", "image", "named like a frame PNG"),
        ("/".join(["d" * 220] * 4) + "/v.mp4", "video", "output names would be longer"),
    ],
)
def test_videos_whose_frame_names_are_unsafe_are_refused(key, kind, rule):
    assert key_problem(key) is None  # the key itself is fine
    assert rule in output_name_problem(key, kind)
    # An image under such a folder is referenced in place, never written: nothing to refuse.
    assert output_name_problem(key.rsplit(".", 1)[0] + ".jpg", "image") is None


# -- media --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_bytes(tmp_path_factory) -> dict[str, bytes]:
    """Tiny media: two distinct stills, two distinct 8-frame videos, a 3000x2000 still."""
    folder = tmp_path_factory.mktemp("hostile-media")
    out = {}
    for i in range(2):
        demo.make_image(folder / f"s{i}.jpg", width=64, height=48, seed=i)
        demo.make_video(folder / f"v{i}.mp4", n_frames=8, width=64, height=48, seed=i, scene=i)
        out[f"still{i}"] = (folder / f"s{i}.jpg").read_bytes()
        out[f"video{i}"] = (folder / f"v{i}.mp4").read_bytes()
    buf = io.BytesIO()
    Image.new("RGB", (3000, 2000), (90, 120, 30)).save(buf, format="JPEG", quality=50)
    out["big"] = buf.getvalue()
    return out


# Files every backend can hold: (key, media) of files that must come out `ok` ...
GOOD = [
    ("a/b.jpg", "still0"),
    ("dots/..jpg", "still1"),
    ("space name.jpg", "still0"),
    ("ünï/çödé.jpg", "still1"),
    ("clip.mp4", "video0"),
    ("cam/v.mp4", "video1"),
]
# ... and keys that must come out `skipped` with a reason naming the rule, never read.
HOSTILE_ANY = [
    ("ctl\x01.jpg", "still0", "control characters"),
    ("back\\slash.jpg", "still0", "backslash"),
    ("v" * 246 + ".mp4", "video0", "output file names would be longer"),
    ("clip-0-mp4.png/inner.mp4", "video1", "named like a frame PNG"),
]
HOSTILE_S3 = [  # keys only an object store can hold
    ("../escape.jpg", "still0", "'..'"),
    ("/lead.jpg", "still1", "starts with '/'"),
    ("a//b.jpg", "still1", "empty path component"),  # would read a/b.jpg if normalised
    ("x/./y.jpg", "still0", "'.'"),
    ("/".join(["d" * 200] * 4) + "/" + "e" * 100 + ".jpg", "still0", "bytes long"),
]
HOSTILE_LOCAL = [  # a name that is not UTF-8; a newline (moto's server 404s it in a URL path)
    (b"bad\xff.jpg", "still0", "not valid UTF-8"),
    ("new\nline.jpg", "still1", "control characters"),
]


def _local_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` (bytes paths, so names that are not UTF-8 are seen too)."""
    out = {}
    for dirpath, _, names in os.walk(os.fsencode(root)):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.fsdecode(os.path.relpath(p, os.fsencode(root)))] = Path(os.fsdecode(p))
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_hostile_keys_and_bad_objects_never_stop_a_run(
    backend, tmp_path, media_bytes, s3_endpoint, request
):
    from tests.integration.conftest import run

    good = list(GOOD)
    hostile = list(HOSTILE_ANY)
    # Objects that fail when read: one refused (S3: 403 for that key only), one replaced and
    # one deleted between listing and reading, one over the pixel budget.
    faults = {"denied.jpg": "still0", "replaced.jpg": "still1", "deleted.jpg": "still0"}
    faults["huge.jpg"] = "big"
    replacement = media_bytes["still0"][:-2] + b"\xff\xd9"  # same picture, other bytes/etag
    hooks_done: set[str] = set()

    if backend == "s3":
        import boto3

        bucket = request.getfixturevalue("s3_bucket")
        client = boto3.client("s3", endpoint_url=s3_endpoint)
        hostile += HOSTILE_S3

        def write(key: str, data: bytes) -> None:
            client.put_object(Bucket=bucket, Key=f"raw/{key}", Body=data)

        def hook(method: str, key: str) -> tuple[int, str] | None:
            if key == "raw/denied.jpg" and method in ("GET", "HEAD"):
                return 403, "AccessDenied"
            if method in ("GET", "HEAD") and key in ("raw/replaced.jpg", "raw/deleted.jpg"):
                if key not in hooks_done:  # first read after the listing: change the object
                    hooks_done.add(key)
                    if key == "raw/replaced.jpg":
                        client.put_object(Bucket=bucket, Key=key, Body=replacement)
                    else:
                        client.delete_object(Bucket=bucket, Key=key)
            return None

        proxy = FaultProxy(s3_endpoint, hook).start()
        request.addfinalizer(proxy.close)
        source, output = f"s3://{bucket}/raw", f"s3://{bucket}/out"
        storage = {"endpoint_url": proxy.url, "region": "us-east-1", "max_attempts": 1}

        def everything() -> dict[str, bytes]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return {
                o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                for page in pages
                for o in page.get("Contents", ())
            }

        raw_prefix, out_prefix = "raw/", "out/"
    else:
        raw = tmp_path / "raw"
        raw.mkdir()

        def write(key: str | bytes, data: bytes) -> None:
            path = os.path.join(os.fsencode(raw), key if isinstance(key, bytes) else key.encode())
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)

        hostile += HOSTILE_LOCAL
        import winnow.storage as storage_mod

        real_fetch = storage_mod.LocalStore.fetch

        def fetch(self, key):  # the local file changes or goes between listing and reading
            if key not in hooks_done and key in ("replaced.jpg", "deleted.jpg"):
                hooks_done.add(key)
                path = self.root / key
                if key == "replaced.jpg":
                    path.write_bytes(replacement)
                    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
                else:
                    path.unlink()
            return real_fetch(self, key)

        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setattr(storage_mod.LocalStore, "fetch", fetch)
        del faults["denied.jpg"]  # a local file's permissions: not this test's subject
        source, output, storage = str(raw), str(tmp_path / "out"), {}

        def everything() -> dict[str, bytes]:
            return {k: p.read_bytes() for k, p in _local_files(tmp_path).items()}

        raw_prefix, out_prefix = "raw/", "out/"

    for key, what in [*good, *[(k, m) for k, m, _ in hostile], *faults.items()]:
        write(key, media_bytes[what])
    before = everything()

    frames = {"every_n_frames": 4, "max_pixels": 5_000_000}
    first = run(source, output, storage, frames=frames, selection={"n_samples": 40})

    # The run completed and committed, every file counted once.
    expected_new = len(good) + len(hostile) + len(faults)
    assert first["files_new"] == expected_new
    assert first["pool_version_after"] == 1 and first["tag"] == "run-0001"
    out_store = open_store(output, S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    snapshot = Datapool(out_store.child("pool")).load()
    rows = snapshot.files.to_pylist()
    by_key = {r["key"]: r for r in rows}
    assert len(rows) == len(by_key) == expected_new
    for key, _ in good:
        assert by_key[key]["status"] == "ok", (key, by_key[key]["error"])
    listed = {
        (k if isinstance(k, str) else k.decode("utf-8", "surrogateescape")): rule
        for k, _, rule in hostile
    }
    reported = dict(first["corrupt"])
    for key, rule in listed.items():
        key = key.encode("utf-8", "backslashreplace").decode() if "\udcff" in key else key
        assert by_key[key]["status"] == "skipped", key
        assert by_key[key]["error"].startswith("not read: ") and rule in by_key[key]["error"]
        assert rule in reported[key]  # in the summary (and so the report) with its reason
    assert "over the pixel budget: 3000x2000" in by_key["huge.jpg"]["error"]
    assert by_key["deleted.jpg"]["status"] == "skipped"
    assert "vanished" in by_key["deleted.jpg"]["error"]
    if "denied.jpg" in faults:
        assert by_key["denied.jpg"]["status"] == "skipped"
        assert "cannot be read" in by_key["denied.jpg"]["error"]
        assert "access denied" in by_key["denied.jpg"]["error"]
    # Replaced after the listing: the pool holds the fingerprint (and samples) of what was read.
    current = {i.key: i for i in open_store(source, S3Options(endpoint_url=s3_endpoint)).list()}
    assert by_key["replaced.jpg"]["status"] == "ok"
    assert by_key["replaced.jpg"]["fingerprint"] == current["replaced.jpg"].fingerprint
    assert by_key["replaced.jpg"]["size_bytes"] == len(replacement)
    samples = snapshot.samples()
    fps = set(samples.fingerprint[samples.key == "replaced.jpg"])
    assert fps == {current["replaced.jpg"].fingerprint}
    # Every candidate of an ok file only; every picked frame of a video became a PNG.
    assert set(samples.key) <= {k for k, r in by_key.items() if r["status"] == "ok"}

    # Nothing written outside `output`; the source is untouched (but for the test's own edits).
    after = everything()
    for key in set(after) - set(before):
        assert key.startswith(out_prefix), f"written outside the output: {key!r}"
    for key, data in before.items():
        if key.startswith(raw_prefix) and not key.endswith(("replaced.jpg", "deleted.jpg")):
            assert after.get(key) == data, f"source object changed: {key!r}"
    frames_written = [k for k in after if k.startswith(f"{out_prefix}frames/")]
    assert frames_written  # videos were picked and exported beside the refused ones

    # Never stuck: the next run finds nothing new (each bad object was recorded once).
    second = run(source, output, storage, frames=frames, selection={"n_samples": 40})
    assert second["nothing_new"], second["files_new"]


# -- budgets and unreadable objects, through the engine alone (no Prefect) ---------------------


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(
        EmbeddingOptions(weights="none", input_size=32, batch_size=4, model="resnet18")
    )


def _embed(store, keys, embedder, frames: FrameOptions):
    refs = [FileRef(i.key, i.fingerprint, i.size_bytes, kind_of(i.key)) for i in store.list()]
    refs = [r for r in refs if r.key in keys]
    shard = Shard(0, Shard.id_for(tuple(refs)), tuple(refs))
    (result,) = engine.embed_shards([shard], source=store, frames=frames, embedder=embedder)
    return {f.key: f for f in result.files}, result.candidates


@pytest.mark.slow
def test_files_over_the_pixel_budget_are_skipped_before_decoding(tmp_path, embedder):
    store = LocalStore(tmp_path)
    demo.make_video(tmp_path / "wide.mp4", n_frames=4, width=320, height=180)
    demo.make_image(tmp_path / "still.jpg", width=320, height=180)
    demo.make_image(tmp_path / "small.png", width=64, height=48, fmt="PNG")
    files, cands = _embed(
        store, {"wide.mp4", "still.jpg", "small.png"}, embedder, FrameOptions(max_pixels=10_000)
    )
    for key in ("wide.mp4", "still.jpg"):
        assert files[key].status == "skipped"
        assert "over the pixel budget: 320x180 = 0.1 MP" in files[key].error
        assert (files[key].width, files[key].height) == (320, 180)
    assert files["small.png"].status == "ok" and set(cands.key) == {"small.png"}
    # Without a budget (None), all three decode.
    files, _ = _embed(store, set(files), embedder, FrameOptions(max_pixels=None))
    assert {f.status for f in files.values()} == {"ok"}


def test_a_decompression_bomb_is_skipped_with_the_pixel_budget_reason(
    tmp_path, embedder, monkeypatch
):
    store = LocalStore(tmp_path)
    demo.make_image(tmp_path / "bomb.png", width=200, height=200, fmt="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses > 2x this
    files, _ = _embed(store, {"bomb.png"}, embedder, FrameOptions())  # 100 MP: not ours
    assert files["bomb.png"].status == "skipped"
    assert "decompression bomb" in files["bomb.png"].error


@pytest.mark.slow
def test_a_file_over_the_time_budget_is_skipped_and_its_frames_dropped(
    tmp_path, embedder, monkeypatch
):
    store = LocalStore(tmp_path)
    demo.make_video(tmp_path / "slow.mp4", n_frames=24, width=64, height=48)
    demo.make_image(tmp_path / "fast.jpg", width=64, height=48)
    real = engine.media.decode_file

    def slow_decode(path, ref, **kw):  # each chunk of the video takes 0.2 s to decode
        for item in real(path, ref, **kw):
            if ref.key == "slow.mp4":
                import time

                time.sleep(0.2)
            yield item

    monkeypatch.setattr(engine.media, "decode_file", slow_decode)
    frames = FrameOptions(max_seconds_per_file=0.3)
    files, cands = _embed(store, {"slow.mp4", "fast.jpg"}, embedder, frames)
    assert files["slow.mp4"].status == "skipped"
    assert "over the time budget" in files["slow.mp4"].error
    assert "max_seconds_per_file (0.3 s)" in files["slow.mp4"].error
    assert files["fast.jpg"].status == "ok"
    assert set(cands.key) == {"fast.jpg"}  # frames of the aborted video were dropped
    # With the default budget (600 s) the same video decodes whole.
    files, cands = _embed(store, {"slow.mp4"}, embedder, FrameOptions())
    assert files["slow.mp4"].status == "ok" and len(cands) == 24


def test_budget_defaults_and_validation():
    opts = FrameOptions()
    assert opts.max_seconds_per_file == 600 and opts.max_pixels == 100_000_000
    for bad in ({"max_seconds_per_file": 0}, {"max_pixels": 0}):
        with pytest.raises(ValueError, match="greater than"):
            FrameOptions(**bad)


def test_a_refused_read_of_one_s3_object_is_skipped(s3_endpoint, s3_bucket, embedder, request):
    store_direct = open_store(f"s3://{s3_bucket}/raw", S3Options(endpoint_url=s3_endpoint))
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(buf, format="PNG")
        store_direct.put(f"p{i}.png", buf.getvalue())
    proxy = FaultProxy(
        s3_endpoint, lambda m, k: (403, "AccessDenied") if k == "raw/p1.png" else None
    ).start()
    request.addfinalizer(proxy.close)
    store = open_store(f"s3://{s3_bucket}/raw", S3Options(endpoint_url=proxy.url, max_attempts=1))
    files, cands = _embed(store, {"p0.png", "p1.png", "p2.png"}, embedder, FrameOptions())
    assert files["p1.png"].status == "skipped"
    assert "access denied" in files["p1.png"].error and "p1.png" in files["p1.png"].error
    assert files["p0.png"].status == files["p2.png"].status == "ok"
    assert set(cands.key) == {"p0.png", "p2.png"}

"""Hostile input at volume: mutated media never crash or hang a decode, and every file is recorded.

A fixed seed mutates small valid files of every container and codec the tests make: truncation
at random offsets, byte flips in the header and in the payload, zeroed and duplicated spans. Each
mutant is decoded in a worker thread with a deadline; the decoder must end with exactly one
`FileResult` (ok, corrupt or skipped) and never raise.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from winnow import demo, media
from winnow.records import FileRef, FileResult, FrameBatch, kind_of

SEED = 20261201
MUTANTS_PER_FILE = 25
DEADLINE_S = 60.0  # far above a healthy decode of these tiny files (well under a second)

VIDEOS = {
    "h264.mp4": "libx264",
    "h264.mkv": "libx264",
    "mpeg4.avi": "mpeg4",
    "mpeg4.mov": "mpeg4",
    "vp9.webm": "libvpx-vp9",
    "hevc.mp4": "libx265",
    "av1.mkv": "libsvtav1",
}
IMAGES = {"a.jpg": "JPEG", "a.png": "PNG", "a.webp": "WEBP", "a.bmp": "BMP", "a.tiff": "TIFF"}


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz-originals")
    out = {}
    for name, codec in VIDEOS.items():
        demo.make_video(folder / name, n_frames=12, width=64, height=48, fps=12, codec=codec, gop=4)
        out[name] = (folder / name).read_bytes()
    for name, fmt in IMAGES.items():
        demo.make_image(folder / name, width=64, height=48, fmt=fmt)
        out[name] = (folder / name).read_bytes()
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    buf = bytearray(data)
    how = rng.choice(["truncate", "flip-header", "flip-payload", "zero-span", "duplicate-span"])
    if how == "truncate":
        return how, bytes(buf[: int(rng.integers(0, len(buf)))])
    if how in ("flip-header", "flip-payload"):
        lo, hi = (0, min(256, len(buf))) if how == "flip-header" else (len(buf) // 4, len(buf))
        for pos in rng.integers(lo, hi, size=int(rng.integers(1, 16))):
            buf[pos] ^= int(rng.integers(1, 256))
        return how, bytes(buf)
    start = int(rng.integers(0, len(buf)))
    length = int(rng.integers(1, max(2, len(buf) // 8)))
    if how == "zero-span":
        buf[start : start + length] = bytes(len(buf[start : start + length]))
        return how, bytes(buf)
    return how, bytes(buf[:start] + buf[start : start + length] * 2 + buf[start + length :])


def _decode_with_deadline(path: Path, ref: FileRef) -> list:
    items: list = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            items.extend(
                media.decode_file(path, ref, size=32, options=media.FrameOptions(), chunk_frames=8)
            )
        except BaseException as exc:  # a crash: recorded for the assertion below
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), f"{path.name}: decode still running after {DEADLINE_S} s (hang)"
    assert not errors, f"{path.name}: decode raised {errors[0]!r}"
    return items


def test_mutated_media_never_crash_or_hang_and_are_all_recorded(originals, tmp_path):
    rng = np.random.default_rng(SEED)
    outcomes: dict[str, int] = {}
    mutants = 0
    for name, data in originals.items():
        for i in range(MUTANTS_PER_FILE):
            how, mutated = _mutate(data, rng)
            path = tmp_path / f"{i:02d}-{how}-{name}"
            path.write_bytes(mutated)
            ref = FileRef(
                key=path.name, fingerprint="f", size_bytes=len(mutated), kind=kind_of(name)
            )
            items = _decode_with_deadline(path, ref)
            *batches, result = items or [None]
            assert isinstance(result, FileResult), f"{path.name}: no final FileResult"
            assert all(isinstance(b, FrameBatch) for b in batches), path.name
            assert result.status in ("ok", "corrupt", "skipped"), path.name
            if result.status != "ok":
                assert result.error, f"{path.name}: {result.status} without a reason"
            frames = sum(len(b) for b in batches)
            assert frames == result.frames_sampled, path.name
            if result.status == "ok" and result.error is None:
                assert frames >= 1, f"{path.name}: ok without a frame"
            outcomes[result.status] = outcomes.get(result.status, 0) + 1
            mutants += 1
    assert mutants >= 200
    print(f"{mutants} mutants: {outcomes}")
    assert outcomes.get("corrupt", 0) >= 20  # the mutations did break files, not only add noise

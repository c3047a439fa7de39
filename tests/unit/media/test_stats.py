"""Chunks, sample ids, hashes and frame metadata (media._stats)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.unit.media.conftest import (
    N_FRAMES,
    SIZE,
    _decode,
    _indices,
    _pixels,
    _ref,
    _write_frames,
)
from winnow import media
from winnow.records import FrameBatch, sample_id_for


def test_chunks_are_bounded_and_the_file_result_comes_last(gop_video):
    items = list(
        media.decode_file(
            gop_video,
            _ref(gop_video),
            size=SIZE,
            options=media.FrameOptions(),
            chunk_frames=16,
        )
    )
    assert [type(i).__name__ for i in items] == ["FrameBatch"] * 4 + ["FileResult"]
    assert [len(b) for b in items[:-1]] == [16, 16, 16, 12]
    assert all(b.pixels.shape[0] == len(b) for b in items[:-1])
    assert _indices(items[:-1]) == list(range(N_FRAMES))


def test_consumer_can_stop_early(gop_video):
    stream = media.decode_file(
        gop_video, _ref(gop_video), size=SIZE, options=media.FrameOptions(), chunk_frames=8
    )
    first = next(stream)
    stream.close()  # closes the container; no error
    assert isinstance(first, FrameBatch) and len(first) == 8


def test_sample_ids_and_hashes_are_stable(gop_video):
    first, _ = _decode(gop_video, every_n_frames=5)
    again, _ = _decode(gop_video, every_n_frames=5)
    ids = [s for b in first for s in b.sample_id]
    assert ids == [s for b in again for s in b.sample_id]
    assert ids == [sample_id_for(gop_video.name, "fp:1", i) for i in range(0, N_FRAMES, 5)]
    assert len(set(ids)) == len(ids)
    batch = first[0]
    assert list(batch.key) == [gop_video.name] * len(batch)
    assert list(batch.fingerprint) == ["fp:1"] * len(batch)
    assert [h for b in first for h in b.content_hash] == [h for b in again for h in b.content_hash]
    assert (
        batch.content_hash[1]
        == hashlib.blake2b(batch.pixels[1].tobytes(), digest_size=8).hexdigest()
    )


def test_column_dtypes_match_the_records(gop_video):
    (batch, *_), _ = _decode(gop_video, max_frames_per_video=3)
    for name, dtype in FrameBatch.empty_meta().items():
        assert getattr(batch, name).dtype == dtype.dtype, name
        assert len(getattr(batch, name)) == 3


@pytest.fixture(scope="module")
def flat_and_noisy(media_dir) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    black = [np.zeros((64, 64, 3), np.uint8)] * 4
    noise = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    _write_frames(media_dir / "black.mp4", black)
    _write_frames(media_dir / "noise.mp4", noise)
    return media_dir / "black.mp4", media_dir / "noise.mp4"


def test_black_frames_are_dark_flat_and_identical(flat_and_noisy):
    batches, _ = _decode(flat_and_noisy[0])
    b = batches[0]
    assert b.brightness.max() < 0.01 and b.contrast.max() < 0.01 and b.sharpness.max() < 1e-4
    assert len(set(b.content_hash)) == 1  # exact duplicates share a hash


def test_noisy_frames_are_sharp_with_contrast(flat_and_noisy, gop_video):
    noisy, _ = _decode(flat_and_noisy[1], size=64)  # at its own size: no smoothing
    street, _ = _decode(gop_video, size=64)
    n, s = noisy[0], street[0]
    assert n.sharpness.min() > 0.2 and s.sharpness.min() > 1e-4
    assert n.sharpness.min() > 10 * s.sharpness.max()
    assert n.contrast.min() > 0.15 and 0.35 < n.brightness.mean() < 0.65
    assert len(set(n.content_hash)) == len(n)


def test_video_metadata_agrees_with_the_pixels(gop_video):
    # Videos read luma from the decoder's Y plane; it must agree with BT.601 luma of the RGB.
    batches, _ = _decode(gop_video, size=64, every_n_frames=10)
    px = _pixels(batches).astype(np.float64) / 255
    luma = px @ np.array([0.299, 0.587, 0.114])
    brightness = np.concatenate([b.brightness for b in batches])
    contrast = np.concatenate([b.contrast for b in batches])
    assert np.abs(brightness - luma.mean(axis=(1, 2))).max() < 0.02
    assert np.abs(contrast - luma.std(axis=(1, 2))).max() < 0.02


def test_image_metadata_is_exact(media_dir):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(media_dir / "exact.png")
    (batch,), _ = _decode(media_dir / "exact.png", kind="image")
    assert np.array_equal(batch.pixels[0], pixels)  # already at size: no resampling
    rgb = pixels.astype(np.int64)
    y = ((77 * rgb[..., 0] + 150 * rgb[..., 1] + 29 * rgb[..., 2] + 128) >> 8) / 255
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]
    assert batch.brightness[0] == pytest.approx(y.mean(), abs=1e-6)
    assert batch.contrast[0] == pytest.approx(y.std(), abs=1e-6)
    assert batch.sharpness[0] == pytest.approx(lap.var(), rel=1e-5)

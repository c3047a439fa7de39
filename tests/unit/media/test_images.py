"""Images with Pillow: draft decoding, EXIF orientation, modes, load_image (media._images)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from tests.unit.media.conftest import SIZE, _decode, _resize
from winnow import demo, media
from winnow.errors import DecodeError


def test_jpeg_is_decoded_at_size_with_draft(media_dir, monkeypatch):
    path = media_dir / "big.jpg"
    demo.make_image(path, width=640, height=360, seed=5, scene=3)
    drafts: list[tuple] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafts.append((mode, size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    (batch,), result = _decode(path, kind="image")
    # the JPEG decoder downscaled in the DCT domain (8x here), not after a full decode
    assert drafts == [("RGB", (SIZE, SIZE), (80, 45))]
    assert (result.status, result.width, result.height) == ("ok", 640, 360)
    assert (result.frames_total, result.frames_sampled) == (1, 1)
    assert batch.pixels.shape == (1, SIZE, SIZE, 3)
    assert (batch.frame_index[0], batch.pts_seconds[0]) == (0, 0.0)
    assert (batch.width[0], batch.height[0]) == (640, 360)
    full = np.asarray(Image.open(path).convert("RGB"))
    assert np.abs(batch.pixels[0].astype(np.int16) - _resize(full, SIZE)).mean() < 6


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(media_dir, fmt):
    # a 60x40 picture whose left half is red; EXIF orientation 6 = rotate 90 deg clockwise
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[:, :30] = (255, 0, 0)
    picture[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = media_dir / f"oriented.{fmt.lower()}"
    Image.fromarray(picture).save(path, format=fmt, exif=exif)
    (batch,), result = _decode(path, kind="image")
    assert (result.width, result.height) == (40, 60)  # displayed size
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert upright.shape == (60, 40, 3)
    top, bottom = batch.pixels[0, : SIZE // 3], batch.pixels[0, -SIZE // 3 :]
    assert top[..., 0].mean() > 200 and bottom[..., 2].mean() > 200  # red now on top
    assert np.array_equal(media.load_image(path), upright)


def test_palette_and_alpha_images_become_rgb(media_dir):
    path = media_dir / "rgba.png"
    Image.new("RGBA", (50, 30), (10, 200, 30, 128)).save(path)
    (batch,), result = _decode(path, kind="image")
    assert result.status == "ok" and batch.pixels.shape == (1, SIZE, SIZE, 3)
    Image.new("P", (20, 20), 3).save(media_dir / "pal.png")
    assert _decode(media_dir / "pal.png", kind="image")[1].status == "ok"


def test_load_image_rejects_non_images(media_dir):
    path = media_dir / "notes.png"
    path.write_text("hello")
    with pytest.raises(DecodeError, match="not an image.*text"):
        media.load_image(path)

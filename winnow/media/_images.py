"""Images with Pillow: full size (`load_image`) and squashed to the model's square input.

Pillow reads JPEG, PNG, WebP, BMP, TIFF, GIF and AVIF itself; `pillow-heif` adds HEIC/HEIF
(phone photos), registered here as a Pillow opener.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from winnow.errors import DecodeError, UnsupportedMediaError
from winnow.media._sniff import _file_size, _not_an_image, _reason
from winnow.media._stats import _Chunks
from winnow.objects._crops import Cropper, ObjectBatch
from winnow.objects._options import CropSettings
from winnow.records import FileRef, FileResult, FrameBatch

pillow_heif.register_heif_opener()


def load_image(path: Path) -> np.ndarray:
    """Full-size RGB uint8 picture of an image file, EXIF orientation applied.

    Args:
        path: The image file.

    Returns:
        Array (H, W, 3).

    Raises:
        UnsupportedMediaError: If the content is not an image Pillow can identify.
        DecodeError: If the image is truncated or damaged.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(f"{path.name}: {_not_an_image(path)}") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{path.name}: damaged image: {exc}") from exc


def _decode_image(
    path: Path, ref: FileRef, *, size: int, crops: CropSettings | None = None
) -> Iterator[FrameBatch | ObjectBatch | FileResult]:
    if _file_size(path) == 0:
        yield FileResult.for_ref(ref, status="corrupt", error="zero-byte file")
        return
    try:
        rgb, width, height = _image_at_size(path, size)
    except UnidentifiedImageError:
        yield FileResult.for_ref(ref, status="corrupt", error=_not_an_image(path))
        return
    except Exception as exc:  # per-file boundary: any decoder failure is a corrupt file
        yield FileResult.for_ref(ref, status="corrupt", error=f"damaged image: {_reason(exc)}")
        return
    chunks = _Chunks(ref, size, 1)
    batch = chunks.add(
        index=0, pts=0.0, rgb=rgb, luma=None, full_range=True, width=width, height=height
    )
    assert batch is not None
    yield batch
    found: dict = {}
    if crops is not None and ref.boxes:
        cropper = Cropper(ref, crops, size)
        if cropper.wants(0, 0.0):
            objects = cropper.cut(
                load_image(path), index=0, seconds=0.0, sample_id=str(batch.sample_id[0])
            )
            if objects is not None:
                yield objects
        found = cropper.result(whole_file=True)
    yield FileResult.for_ref(
        ref, status="ok", frames_total=1, frames_sampled=1, width=width, height=height, **found
    )


def _image_at_size(path: Path, size: int) -> tuple[np.ndarray, int, int]:
    """The picture squashed to size x size RGB, and its full size after orientation."""
    with Image.open(path) as im:
        width, height = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that swap axes
            width, height = height, width
        if im.format == "JPEG":
            im.draft("RGB", (size, size))  # DCT-domain downscale: decodes 2-8x fewer pixels
        im = ImageOps.exif_transpose(im)
        if im.mode != "RGB":
            im = im.convert("RGB")
        im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im), width, height

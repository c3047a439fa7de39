"""PNG encoding of full-size frames (outputs._frames)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from winnow.outputs._frames import _png_bytes


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (37, 64, 3)])
def test_frame_png_is_lossless(shape):
    frame = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
    data = _png_bytes(frame)
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (shape[1], shape[0]))
        np.testing.assert_array_equal(np.asarray(im), frame)

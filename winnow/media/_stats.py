"""Chunks of model-size frames and their metadata: brightness, contrast, sharpness, hash."""

from __future__ import annotations

import hashlib

import numpy as np

from winnow.records import FileRef, FrameBatch, sample_id_for


class _Chunks:
    """Collects model-size frames of one file and emits them as `FrameBatch` chunks."""

    def __init__(self, ref: FileRef, size: int, chunk_frames: int) -> None:
        self.ref, self.size, self.cap = ref, size, chunk_frames
        self.count = 0  # frames added over the whole file
        self.n = 0  # frames in the current chunk (its buffers are allocated on the first one)

    def _new(self) -> None:
        n, s = self.cap, self.size
        self.pixels = np.empty((n, s, s, 3), np.uint8)
        self.luma = np.empty((n, s, s), np.uint8)
        # Luma in [0, 1] = (luma - offset) * scale: 16/219 for limited-range video, 0/255 else.
        self.offset = np.empty(n, np.float32)
        self.scale = np.empty(n, np.float32)
        self.index = np.empty(n, np.int64)
        self.pts = np.empty(n, np.float64)
        self.width = np.empty(n, np.int32)
        self.height = np.empty(n, np.int32)

    def add(
        self,
        *,
        index: int,
        pts: float,
        rgb: np.ndarray,
        luma: np.ndarray | None,
        full_range: bool,
        width: int,
        height: int,
    ) -> FrameBatch | None:
        """Add one frame; return a full chunk when this frame fills it."""
        i = self.n
        if i == 0:
            self._new()  # fresh buffers: yielded chunks are never overwritten
        self.pixels[i] = rgb
        if luma is None:  # BT.601 luma of the RGB frame (images, non-YUV video)
            self.luma[i] = _rgb_luma(self.pixels[i])
            full_range = True
        else:
            self.luma[i] = luma
        self.offset[i], self.scale[i] = (0.0, 1 / 255) if full_range else (16.0, 1 / 219)
        self.index[i], self.pts[i], self.width[i], self.height[i] = index, pts, width, height
        self.n += 1
        self.count += 1
        return self.flush() if self.n == self.cap else None

    def flush(self) -> FrameBatch | None:
        """The frames collected since the last chunk, if any."""
        n = self.n
        if n == 0:
            return None
        pixels = self.pixels[:n]
        brightness, contrast, sharpness = _frame_stats(
            self.luma[:n], self.offset[:n], self.scale[:n]
        )
        key, fp = self.ref.key, self.ref.fingerprint
        index = self.index[:n].copy()
        batch = FrameBatch(
            sample_id=np.array([sample_id_for(key, fp, int(i)) for i in index], dtype=object),
            key=np.full(n, key, dtype=object),
            fingerprint=np.full(n, fp, dtype=object),
            content_hash=np.array(
                [hashlib.blake2b(pixels[i], digest_size=8).hexdigest() for i in range(n)],
                dtype=object,
            ),
            frame_index=index,
            pts_seconds=self.pts[:n].copy(),
            width=self.width[:n].copy(),
            height=self.height[:n].copy(),
            brightness=brightness,
            contrast=contrast,
            sharpness=sharpness,
            pixels=pixels,
        )
        self.n = 0
        return batch


def _rgb_luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma (full range, uint8) of an RGB uint8 picture, in 8-bit fixed point."""
    px = rgb.astype(np.uint16)
    return ((77 * px[..., 0] + 150 * px[..., 1] + 29 * px[..., 2] + 128) >> 8).astype(np.uint8)


def _moments(rows: np.ndarray, sums: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and mean square of each row (float32 in, float64 out; BLAS dot per row).

    The rows hold integers, so their sums are exact whichever way they are added: `sums`, when
    given, are those sums found more cheaply (the same float64 values as adding the rows).
    """
    k = rows.shape[1]
    if sums is None:
        sums = rows.sum(axis=1, dtype=np.float64)
    mean = sums / k
    square = np.array([float(np.dot(r, r)) for r in rows]) / k
    return mean, square


def _exact_sums(rows: np.ndarray, peak: int) -> np.ndarray | None:
    """Row sums of non-negative integer-valued float32 rows by BLAS, if float32 holds them exactly."""
    if rows.shape[1] * peak >= 1 << 24:
        return None  # partial sums could round: let the caller add in float64
    return (rows @ np.ones(rows.shape[1], np.float32)).astype(np.float64)


def _laplacian_sums(y: np.ndarray) -> np.ndarray:
    """Sums of the 4-neighbour Laplacian over each plane's interior, exactly, from its borders.

    The sum telescopes: each neighbour term differs from the centre term by two border lines
    (e.g. up - centre = first row - last interior row), all over the interior span.
    """
    edge = [0, 1, -2, -1]
    rows = y[:, edge, 1:-1].sum(axis=2, dtype=np.int64)  # rows 0, 1, H-2, H-1; inner columns
    cols = y[:, 1:-1, edge].sum(axis=1, dtype=np.int64)  # columns 0, 1, W-2, W-1; inner rows
    total = rows[:, 0] - rows[:, 2] + rows[:, 3] - rows[:, 1]
    total += cols[:, 0] - cols[:, 2] + cols[:, 3] - cols[:, 1]
    return total.astype(np.float64)


def _frame_stats(
    luma: np.ndarray, offset: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brightness, contrast and sharpness of N luma planes (uint8, N x S x S).

    With luma in [0, 1] taken as `(Y - offset) * scale`: brightness and contrast are its mean
    and standard deviation, sharpness the variance of its 4-neighbour Laplacian over the
    interior pixels.
    """
    # Algorithm: integer Laplacian on the 8-bit plane (int16 holds -1020..1020), moments from
    # sums; the affine map to [0, 1] is applied to the moments, not to every pixel. The sums are
    # of integers, hence exact: by a BLAS product for luma, by telescoping for the Laplacian.
    n, h, w = luma.shape
    out = np.zeros((3, n), np.float64)
    block = min(8, n)  # frames per step: keeps the temporaries in cache
    # Work buffers allocated once per call (fresh multi-megabyte arrays per step cost page
    # faults that were most of the time here).
    y = np.empty((block, h, w), np.int16)
    rows = np.empty((block, h * w), np.float32)
    inner = h >= 3 and w >= 3
    if inner:
        lap = np.empty((block, h - 2, w - 2), np.int16)
        centre = np.empty_like(lap)
        lap_rows = np.empty((block, (h - 2) * (w - 2)), np.float32)
    for start in range(0, n, block):
        stop = min(start + block, n)
        m = stop - start
        ym, rm = y[:m], rows[:m]
        np.copyto(ym, luma[start:stop])
        np.copyto(rm, luma[start:stop].reshape(m, -1))
        mean, square = _moments(rm, _exact_sums(rm, 255))
        out[0, start:stop] = mean
        out[1, start:stop] = np.sqrt(np.maximum(square - mean**2, 0.0))
        if inner:
            lm, cm, lr = lap[:m], centre[:m], lap_rows[:m]
            np.add(ym[:, :-2, 1:-1], ym[:, 2:, 1:-1], out=lm)
            lm += ym[:, 1:-1, :-2]
            lm += ym[:, 1:-1, 2:]
            np.multiply(ym[:, 1:-1, 1:-1], 4, out=cm)
            lm -= cm
            np.copyto(lr, lm.reshape(m, -1))
            mean, square = _moments(lr, _laplacian_sums(ym))
            out[2, start:stop] = np.maximum(square - mean**2, 0.0)
    scale = scale.astype(np.float64)
    brightness = np.clip((out[0] - offset) * scale, 0.0, 1.0)
    return (
        brightness.astype(np.float32),
        (out[1] * scale).astype(np.float32),
        (out[2] * scale**2).astype(np.float32),
    )

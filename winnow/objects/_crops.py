"""Cutting boxes out of full-resolution frames while decoding.

A `Cropper` holds one file's boxes (`FileRef.boxes`); the decoder asks it, for each frame it
keeps, whether the frame has boxes (`wants`), and only then converts the frame at full size and
hands it over (`cut`). Each box is placed in pixels (a normalised box scaled by the frame's
size), clipped to the frame (a box wholly outside is skipped), checked against `min_size`,
padded, cut and squashed to the model's input size, as frames are.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from winnow.objects._boxes import NOT_SAMPLED, OUTSIDE, TOO_SMALL, Box, object_id_for
from winnow.objects._options import CropSettings
from winnow.records import FileRef, ObjectRows


@dataclass
class ObjectBatch:
    """Crops of one frame's boxes at model input size, with their object rows (no embedding).

    Attributes:
        rows: The objects.
        pixels: uint8 (N, S, S, 3) RGB crops.
    """

    rows: ObjectRows
    pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def place_box(box: Box, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The box in pixels of a `width` x `height` frame, clipped to it; None if wholly outside."""
    sx, sy = (width, height) if box.normalised else (1, 1)
    x0, y0 = max(0.0, box.x * sx), max(0.0, box.y * sy)
    x1, y1 = min(float(width), (box.x + box.w) * sx), min(float(height), (box.y + box.h) * sy)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def cut_crop(
    rgb: np.ndarray, box: tuple[float, float, float, float], *, padding: float, size: int
) -> np.ndarray:
    """The padded box cut from an RGB frame (H, W, 3) and squashed to `size` x `size`."""
    height, width = rgb.shape[:2]
    x, y, w, h = box
    px, py = padding * w, padding * h
    x0, y0 = max(0, math.floor(x - px)), max(0, math.floor(y - py))
    x1, y1 = min(width, math.ceil(x + w + px)), min(height, math.ceil(y + h + py))
    crop = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    return np.array(crop.resize((size, size), Image.Resampling.BILINEAR))


class Cropper:
    """One file's boxes, looked up by frame, and what became of them."""

    def __init__(self, ref: FileRef, settings: CropSettings, size: int) -> None:
        self.ref, self.settings, self.size = ref, settings, size
        self.by_index: dict[int, list[int]] = {}
        self.by_ms: dict[int, list[int]] = {}
        for i, box in enumerate(ref.boxes):
            if box.frame_index is not None:
                self.by_index.setdefault(box.frame_index, []).append(i)
            elif box.pts_seconds is not None:
                self.by_ms.setdefault(_ms(box.pts_seconds), []).append(i)
        self.used = np.zeros(len(ref.boxes), bool)
        self.objects = 0
        self.skipped: Counter[str] = Counter()

    def wants(self, index: int, seconds: float) -> bool:
        """Whether the frame has boxes (then `cut` needs it at full size)."""
        return index in self.by_index or (bool(self.by_ms) and _ms(seconds) in self.by_ms)

    def cut(
        self, rgb: np.ndarray, *, index: int, seconds: float, sample_id: str
    ) -> ObjectBatch | None:
        """Crops of the frame's boxes from the full-size upright RGB frame (None: none usable)."""
        chosen = self.by_index.get(index, []) + self.by_ms.get(_ms(seconds), [])
        height, width = rgb.shape[:2]
        rows, crops = [], []
        for i in chosen:
            self.used[i] = True
            box = self.ref.boxes[i]
            placed = place_box(box, width, height)
            if placed is None:
                self.skipped[OUTSIDE] += 1
                continue
            if min(placed[2], placed[3]) < self.settings.min_size:
                self.skipped[TOO_SMALL] += 1
                continue
            # float32, as stored: the id made from the stored box is this one (re-embedding)
            placed = tuple(float(np.float32(v)) for v in placed)  # type: ignore[assignment]
            crops.append(cut_crop(rgb, placed, padding=self.settings.padding, size=self.size))
            rows.append(self._row(box, placed, index, seconds, sample_id))
        if not rows:
            return None
        self.objects += len(rows)
        return ObjectBatch(ObjectRows.from_rows(rows), np.stack(crops))

    def _row(
        self,
        box: Box,
        placed: tuple[float, float, float, float],
        index: int,
        seconds: float,
        sample_id: str,
    ) -> dict:
        ref = self.ref
        return {
            "object_id": object_id_for(ref.key, ref.fingerprint, index, placed),
            "sample_id": sample_id,
            "key": ref.key,
            "fingerprint": ref.fingerprint,
            "label": box.label,
            "frame_index": index,
            "pts_seconds": seconds,
            "x": placed[0],
            "y": placed[1],
            "w": placed[2],
            "h": placed[3],
            "score": box.score,
            "probabilities": box.probabilities,
        }

    def result(self, *, whole_file: bool) -> dict:
        """`FileResult` fields: objects cut and boxes skipped by reason.

        Boxes on frames never sampled are counted only for a whole-file decode (a time range
        cannot tell a frame of another range from a frame that does not exist).
        """
        skipped = Counter(self.skipped)
        if whole_file:
            missed = int((~self.used).sum())
            if missed:
                skipped[NOT_SAMPLED] += missed
        return {"objects": self.objects, "objects_skipped": tuple(sorted(skipped.items()))}

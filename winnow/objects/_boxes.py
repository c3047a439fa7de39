"""Boxes as predictions give them, and the ids of the objects they become.

A `Box` is one row of a predictions file after parsing: which frame it is on (by index or by
presentation time), where (pixels or fractions of the frame, top-left corner and size), the
predicted label, its score and the class probabilities. A `PredictionSet` is a whole file's
boxes grouped by media key, with the rows it could not use counted per reason.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

# Reasons a row or box is not used (counted per reason, reported, never stop a run).
BAD_FILENAME = "no file name"
BAD_NUMBER = "not a finite number"
BAD_SIZE = "negative or zero size"
BAD_CLASS = "unknown class"
BAD_FRAME = "bad frame reference"
BAD_PROBABILITIES = "bad probabilities"
UNKNOWN_FILE = "unknown file"
OUTSIDE = "box outside the frame"
TOO_SMALL = "smaller than objects.min_size"
NOT_SAMPLED = "frame not sampled"


@dataclass(frozen=True)
class Box:
    """One predicted box on one frame of one file.

    Attributes:
        frame_index: Frame number in presentation order (0 for an image); None when the box
            names its frame by `pts_seconds`.
        pts_seconds: Presentation time of the frame in seconds, when given instead of (or
            beside) `frame_index`; a frame matches when its time rounds to the same millisecond.
        x: Left edge.
        y: Top edge.
        w: Width (positive).
        h: Height (positive).
        normalised: True: x, y, w, h are fractions of the frame's width and height; False:
            pixels of the full-size frame (after display rotation).
        label: Predicted class name.
        score: Detector confidence in [0, 1]; NaN when the predictions have none.
        probabilities: Class probabilities in the prediction set's `classes` order; empty when
            the predictions have none.
    """

    frame_index: int | None
    pts_seconds: float | None
    x: float
    y: float
    w: float
    h: float
    normalised: bool
    label: str
    score: float = math.nan
    probabilities: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # Boxes travel inside shard plans as JSON: lists come back where tuples went in.
        object.__setattr__(self, "probabilities", tuple(float(p) for p in self.probabilities))


@dataclass
class PredictionSet:
    """A predictions source, parsed.

    Attributes:
        boxes: Media key (relative to the source, `/` separators, no leading `./` or `/`) →
            its boxes, in file order.
        classes: Class names, in the order of every box's `probabilities` (and of class ids).
        bad: Reason (the `BAD_*` constants) → rows not used.
        examples: Reason → the first such row, described (e.g. `row 12: w=-3`), for the report.
        rows: Rows read (used or not).
    """

    boxes: dict[str, tuple[Box, ...]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    bad: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    rows: int = 0

    def reject(self, reason: str, example: str) -> None:
        """Count one unusable row (the first of each reason is kept as the example)."""
        self.bad[reason] = self.bad.get(reason, 0) + 1
        self.examples.setdefault(reason, example)

    @property
    def n_boxes(self) -> int:
        """Boxes kept."""
        return sum(len(b) for b in self.boxes.values())


def object_id_for(key: str, fingerprint: str, frame_index: int, box: tuple[float, ...]) -> str:
    """Stable id of an object: its file, fingerprint, frame and pixel box (x, y, w, h).

    The box is rounded to a tenth of a pixel, so the same box read twice (from CSV or Parquet,
    normalised or not) gets the same id.
    """
    coords = ",".join(f"{round(v, 1):.1f}" for v in box)
    text = f"{key}\0{fingerprint}\0{frame_index}\0{coords}\0object"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

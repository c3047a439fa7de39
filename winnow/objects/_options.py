"""`ObjectOptions`: where a run's predictions come from and how boxes are cut into crops."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


@dataclass(frozen=True)
class CropSettings:
    """How boxes become crops (`ObjectOptions.padding`, `min_size`)."""

    padding: float = 0.1
    min_size: int = 8


class ObjectOptions(BaseModel):
    """Objects (boxes from a detector's predictions) as samples beside the frames.

    Off until `predictions` is set (or `format` is `yolo`, whose txt files lie beside the
    media). Each sampled frame that has boxes is cut into crops at full resolution, which are
    embedded with the frames; `selection.unit: object` then picks among objects.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="Objects")

    predictions: str | None = Field(
        None,
        description="Predictions file: a key in the source, a local path or an s3:// URL. A "
        "table (.csv, .parquet, .jsonl: filename, frame_index or pts_seconds, x y w h or x1 y1 "
        "x2 y2, label, score, probabilities or prob_<class> columns) or COCO detection JSON "
        "(.json). With format yolo: a folder of .txt files mirroring the media keys (empty: "
        "the .txt beside each media file).",
    )
    format: Literal["auto", "table", "coco", "yolo"] = Field(
        "auto", description="Predictions format; auto: by the file's extension."
    )
    box_units: Literal["pixels", "normalised"] = Field(
        "pixels",
        description="Units of a table's boxes: pixels of the full-size frame, or fractions of "
        "its width and height (COCO is always pixels, YOLO always normalised).",
    )
    classes: list[str] | None = Field(
        None,
        description="Class names in id order (YOLO class ids, probability order). Empty: from "
        "the predictions (COCO categories, prob_<class> columns, or the labels seen).",
    )
    padding: float = Field(
        0.1,
        ge=0,
        le=2,
        description="Context added around each box before cropping, as a fraction of the box's "
        "width and height on each side.",
    )
    min_size: int = Field(
        8,
        ge=1,
        description="Boxes whose shorter side (in full-size pixels, after clipping to the "
        "frame) is below this are skipped and counted.",
    )

    @property
    def enabled(self) -> bool:
        """Whether the run has objects."""
        return self.predictions is not None or self.format == "yolo"

    @model_validator(mode="after")
    def _check(self) -> ObjectOptions:
        if self.predictions is not None and not self.predictions.strip():
            raise ValueError("objects.predictions is empty: name a file or leave it unset")
        if self.format == "yolo" and not self.classes:
            raise ValueError("objects.format yolo needs objects.classes (class names in id order)")
        return self

    def crops(self) -> CropSettings | None:
        """How the decoders cut boxes (None when objects are off)."""
        return CropSettings(self.padding, self.min_size) if self.enabled else None

    def plan_dict(self) -> dict[str, Any] | None:
        """What changes the crops, for the plan hash (None when objects are off)."""
        if not self.enabled:
            return None
        return {"padding": self.padding, "min_size": self.min_size}

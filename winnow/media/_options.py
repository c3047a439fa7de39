"""`FrameOptions`: how frames are sampled from videos, and what is kept before the model.

One sampling mode and an optional cap choose the candidate frames; change-aware sampling
(`min_change`, `max_gap_seconds`), shots (`detect_shots`, `per_shot`) and quality rules
(`quality`) then decide, while decoding, which of them reach the model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Fields added with video-native curation: left out of the plan hash while at their defaults,
# so shards staged before they existed stay reusable.
_VIDEO_NATIVE_DEFAULTS: dict[str, Any] = {
    "min_change": None,
    "max_gap_seconds": 10.0,
    "detect_shots": False,
    "shot_threshold": 27.0,
    "per_shot": None,
    "quality": None,
}


class QualityRule(BaseModel):
    """Frames dropped before the model, by reason (each threshold empty: that check off).

    The scores are measured on the model-size luma of every candidate frame: brightness (mean,
    0..1), sharpness (variance of the Laplacian, as the `sharpness` column), information
    (Shannon entropy of the luma histogram, bits 0..8) and letterbox (fraction of the frame's
    area in uniform dark bars at its edges). Defaults follow CleanVision's checks (dark,
    light, low information, blurry) with thresholds measured on FFmpeg test sources.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="Quality")

    dark: float | None = Field(
        0.1, ge=0, le=1, description="Drop frames darker than this mean brightness (0..1)."
    )
    overexposed: float | None = Field(
        0.92, ge=0, le=1, description="Drop frames brighter than this mean brightness (0..1)."
    )
    low_information: float | None = Field(
        2.0,
        ge=0,
        le=8,
        description="Drop near-uniform frames (a lens cap, a grey wall): luma entropy below "
        "this many bits (0..8).",
    )
    blurry: float | None = Field(
        None,
        ge=0,
        description="Drop frames whose sharpness (variance of the Laplacian on the model-size "
        "luma, the `sharpness` column) is below this. Empty: off (its scale depends on the "
        "model's input size; pick it from the `sharpness` column of a run).",
    )
    letterbox: float | None = Field(
        0.5,
        ge=0,
        le=1,
        description="Drop frames whose dark uniform edge bars cover more than this fraction "
        "of the frame.",
    )


class FrameOptions(BaseModel):
    """How frames are sampled from videos.

    With no sampling mode set, every frame is kept. At most one of `every_n_frames`,
    `sample_fps` and `keyframes_only` may be set; `max_frames_per_video` caps any of them.
    `max_seconds_per_file` and `max_pixels` are budgets that apply to every file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="Frames")

    every_n_frames: int | None = Field(
        None,
        ge=1,
        description="Keep every n-th frame (presentation index divisible by n). "
        "Empty: no frame-count sampling.",
    )
    sample_fps: float | None = Field(
        None,
        gt=0,
        description="Keep about this many frames per second of video: the first frame at or "
        "after each multiple of 1/fps seconds. Empty: no time-based sampling.",
    )
    keyframes_only: bool = Field(
        False,
        description="Keep only keyframes; the other packets are never decoded (fastest).",
    )
    max_frames_per_video: int | None = Field(
        None,
        ge=1,
        description="At most this many frames per video, spread evenly over the whole video. "
        "Empty: no cap.",
    )

    min_change: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Change-aware sampling: keep a sampled frame only if it differs from the "
        "last kept frame of the same video by at least this mean absolute difference "
        "(0..1, over the channels of a 32x32 RGB thumbnail; 0.02 skips a car waiting at a red light, keeps traffic "
        "passing). Skipped frames never reach the model. Empty: keep every sampled frame.",
    )
    max_gap_seconds: float = Field(
        10.0,
        gt=0,
        description="With min_change: keep at least one frame in every window of this many "
        "seconds (windows start at 0 s of the video), even when nothing changes.",
    )
    detect_shots: bool = Field(
        False,
        description="Detect hard cuts while decoding (PySceneDetect's content detector: mean "
        "HSV difference of consecutive frames) and record a shot table in the pool. "
        "On when per_shot is set.",
    )
    shot_threshold: float = Field(
        27.0,
        gt=0,
        le=255,
        description="Content score (mean absolute HSV difference, 0..255) from which a frame "
        "starts a new shot; PySceneDetect's default.",
    )
    per_shot: int | None = Field(
        None,
        ge=1,
        description="Keep the first this-many frames of every shot whatever the other rules "
        "say (the shot's first frame, then its next sampled frames in the same "
        "max_gap_seconds window). Turns shot detection on. Empty: off.",
    )
    quality: QualityRule | None = Field(
        None,
        title="Quality",
        description="Drop dark, overexposed, near-uniform, blurry or letterboxed frames before "
        "the model, counted per reason. Empty: off.",
    )

    @property
    def shots(self) -> bool:
        """Whether cuts are detected (asked for, or needed by `per_shot`)."""
        return self.detect_shots or self.per_shot is not None

    @property
    def gated(self) -> bool:
        """Whether any rule decides, while decoding, which sampled frames reach the model."""
        return self.shots or self.min_change is not None or self.quality is not None

    def plan_dict(self) -> dict[str, Any]:
        """The options as JSON data for the plan hash (new fields only when set)."""
        data = self.model_dump(mode="json")
        for name, default in _VIDEO_NATIVE_DEFAULTS.items():
            if data.get(name) == default:
                del data[name]
        return data

    max_seconds_per_file: float | None = Field(
        600.0,
        gt=0,
        description="Stop decoding a file after this many seconds and record it as skipped "
        "(a pathological or hostile file never stalls a run). Empty: no time limit.",
    )
    max_pixels: int | None = Field(
        100_000_000,
        ge=1,
        description="Skip an image or video whose frames have more pixels than this (width x "
        "height, read from the header before decoding; 100 MP by default). Pillow's own "
        "decompression-bomb limit (about 179 MP) also applies to images. Empty: no limit.",
    )

    @model_validator(mode="after")
    def _one_sampling_mode(self) -> FrameOptions:
        chosen = [
            name
            for name, on in (
                ("every_n_frames", self.every_n_frames is not None),
                ("sample_fps", self.sample_fps is not None),
                ("keyframes_only", self.keyframes_only),
            )
            if on
        ]
        if len(chosen) > 1:
            raise ValueError(
                f"choose at most one of every_n_frames, sample_fps and keyframes_only "
                f"(got {' and '.join(chosen)})"
            )
        if self.keyframes_only and (self.shots or self.min_change is not None):
            raise ValueError(
                "shots and change-aware sampling look at every frame: keyframes_only cannot "
                "be combined with detect_shots, per_shot or min_change (use sample_fps instead)"
            )
        return self

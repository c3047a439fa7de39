"""`FrameOptions`: how frames are sampled from videos (one sampling mode, an optional cap)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FrameOptions(BaseModel):
    """How frames are sampled from videos.

    With no sampling mode set, every frame is kept. At most one of `every_n_frames`,
    `sample_fps` and `keyframes_only` may be set; `max_frames_per_video` caps any of them.
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
        return self

"""`FrameOptions`: how frames are sampled from videos (one sampling mode, an optional cap)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
        return self

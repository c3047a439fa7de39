"""FrameOptions and decode_file's parameter checks (media._options)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.unit.media.conftest import _ref
from winnow import media
from winnow.errors import ConfigError


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"every_n_frames": 0}, "greater than or equal to 1"),
        ({"sample_fps": 0}, "greater than 0"),
        ({"sample_fps": -1.5}, "greater than 0"),
        ({"max_frames_per_video": 0}, "greater than or equal to 1"),
        (
            {"every_n_frames": 2, "sample_fps": 1.0},
            "at most one of .*every_n_frames and sample_fps",
        ),
        ({"keyframes_only": True, "every_n_frames": 3}, "at most one of"),
        ({"keyframes_only": True, "sample_fps": 3}, "at most one of"),
        ({"fps": 3}, "Extra inputs are not permitted"),
    ],
)
def test_frame_options_reject_bad_values(values, match):
    with pytest.raises(ValidationError, match=match):
        media.FrameOptions(**values)


def test_frame_options_default_to_every_frame():
    opts = media.FrameOptions()
    assert opts.every_n_frames is None and opts.sample_fps is None
    assert opts.keyframes_only is False and opts.max_frames_per_video is None
    # a cap combines with any one mode
    assert media.FrameOptions(keyframes_only=True, max_frames_per_video=3).keyframes_only
    for name, field in media.FrameOptions.model_fields.items():
        assert field.description, name


def test_bad_sizes_raise_config_error(gop_video):
    with pytest.raises(ConfigError, match="must be positive"):
        media.decode_file(gop_video, _ref(gop_video), size=0, options=media.FrameOptions())

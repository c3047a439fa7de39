"""Frame names, export names and tag keys (outputs._names)."""

from __future__ import annotations

import pytest

from winnow import outputs
from winnow.errors import ConfigError


@pytest.mark.parametrize(
    ("key", "frame_index", "frames_total", "expected"),
    [
        ("cam1/drive.mp4", 99, 1200, "frames/cam1/drive-0099-mp4.png"),
        ("drive.mp4", 0, 1, "frames/drive-0-mp4.png"),
        ("drive.mp4", 8, 9, "frames/drive-8-mp4.png"),
        ("drive.mp4", 3, 10, "frames/drive-03-mp4.png"),
        ("drive.mp4", 9, 10, "frames/drive-09-mp4.png"),
        ("drive.mp4", 7, 1000, "frames/drive-0007-mp4.png"),
        ("drive.mp4", 999, 1000, "frames/drive-0999-mp4.png"),
        ("a/b/c/d.mov", 12, 100, "frames/a/b/c/d-012-mov.png"),
        ("v1.2/clip.final.MKV", 5, 250, "frames/v1.2/clip.final-005-MKV.png"),
        ("no_extension", 4, 50, "frames/no_extension-04.png"),
        ("drive.mp4", 1500, 1000, "frames/drive-1500-mp4.png"),  # count too low: not truncated
        ("drive.mp4", 0, 0, "frames/drive-0-mp4.png"),  # unknown count pads to 1 digit
    ],
)
def test_frame_name_pads_to_the_digits_of_the_frame_count(key, frame_index, frames_total, expected):
    assert outputs.frame_name(key, frame_index, frames_total) == expected


def test_export_name_is_the_frame_name_for_videos_and_the_key_for_images():
    assert outputs.export_name("a/b.mp4", "video", 7, 120) == "frames/a/b-007-mp4.png"
    assert outputs.export_name("a/b.c.jpg", "image", 0, 1) == "a/b.c.jpg"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: outputs.frame_name("a.mp4", -1, 10), "negative"),
        (lambda: outputs.frame_name("../a.mp4", 1, 10), "invalid object key"),
        (lambda: outputs.export_name("a.txt", "text", 0, 1), "unknown media kind"),
        (lambda: outputs.tag_keys("../escape"), "invalid tag name"),
        (lambda: outputs.tag_keys("a/b"), "invalid tag name"),
    ],
)
def test_bad_names_are_rejected(call, match):
    with pytest.raises((ValueError, ConfigError), match=match):
        call()

"""Image formats people keep: HEIC/HEIF, AVIF, GIF (still, and animated like a video); and the
keys discovery ignores as non-media, counted with examples in the run summary."""

from __future__ import annotations

import numpy as np
import PIL.features
import pytest
from PIL import Image

from tests.unit.media.conftest import SIZE, _decode, _indices, _pixels, _pts
from winnow import media
from winnow.discover import list_new_files
from winnow.errors import DecodeError
from winnow.records import kind_of
from winnow.storage import LocalStore
from winnow.summary import RunSummary, render_markdown, render_text, summary_rows

# Delays (ms) of the animated GIF: 0 and 10 ms are shown as 100 ms (browsers, FFmpeg).
DELAYS = [100, 200, 0, 50, 100, 10, 100, 300, 100, 100]
PTS = [0.0, 0.1, 0.3, 0.4, 0.45, 0.55, 0.65, 0.75, 1.05, 1.15]
COLORS = [(20 * i + 10, 240 - 20 * i, (97 * i) % 256) for i in range(len(DELAYS))]


def _animated_gif(path, delays=DELAYS, size=(40, 30)) -> None:
    """Frame i is a flat colour with a white square whose position moves with i."""
    frames = []
    for i, color in enumerate(COLORS[: len(delays)]):
        a = np.full((size[1], size[0], 3), color, np.uint8)
        a[2 : 2 + 6, 2 + 3 * i : 2 + 3 * i + 6] = 255
        frames.append(Image.fromarray(a))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=delays, loop=0)


def _color_at(pixels: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in pixels[-3, -3])  # a corner the square never touches


@pytest.mark.parametrize(
    ("key", "kind"),
    [("a.gif", "image"), ("b.GIF", "image"), ("c.avif", "image"), ("phone/IMG_1.HEIC", "image")]
    + [("d.heif", "image"), ("e.jpg", "image"), ("f.mp4", "video"), ("notes.txt", None)],
)
def test_kind_of_knows_the_new_extensions(key, kind):
    assert kind_of(key) == kind


def test_the_installed_pillow_reads_avif():
    assert PIL.features.check("avif")


@pytest.mark.parametrize(("ext", "fmt"), [("heic", "HEIF"), ("heif", "HEIF"), ("avif", "AVIF")])
def test_heic_and_avif_decode_as_images(media_dir, ext, fmt):
    path = media_dir / f"photo.{ext}"
    a = np.zeros((48, 64, 3), np.uint8)
    a[:, :32] = (220, 30, 30)  # left half red, right half blue
    a[:, 32:] = (30, 30, 220)
    Image.fromarray(a).save(path, format=fmt, quality=95)
    (batch,), result = _decode(path, kind="image")
    assert (result.status, result.kind, result.width, result.height) == ("ok", "image", 64, 48)
    assert (result.frames_total, result.frames_sampled) == (1, 1)
    left, right = batch.pixels[0, SIZE // 2, 2], batch.pixels[0, SIZE // 2, -3]
    assert left[0] > 180 and left[2] < 80 and right[2] > 180 and right[0] < 80
    full = media.load_image(path)
    assert full.shape == (48, 64, 3) and full[10, 5, 0] > 180


def test_a_still_gif_is_an_image(media_dir):
    path = media_dir / "still.gif"
    Image.fromarray(np.full((30, 40, 3), (200, 10, 10), np.uint8)).save(path)
    (batch,), result = _decode(path, kind="image")
    assert (result.status, result.kind, result.frames_total) == ("ok", "image", 1)
    assert (batch.frame_index[0], batch.pts_seconds[0]) == (0, 0.0)


def test_every_frame_of_an_animated_gif_with_its_shown_time(media_dir):
    path = media_dir / "anim.gif"
    _animated_gif(path)
    batches, result = _decode(path, kind="image", chunk_frames=4)
    assert (result.status, result.kind, result.error) == ("ok", "video", None)
    assert (result.frames_total, result.frames_sampled) == (10, 10)
    assert (result.width, result.height) == (40, 30)
    assert _indices(batches) == list(range(10))
    assert _pts(batches) == pytest.approx(PTS)
    assert [_color_at(p) for p in _pixels(batches)] == [tuple(c) for c in COLORS]
    assert [len(b) for b in batches] == [4, 4, 2]


@pytest.mark.parametrize(
    ("opts", "indices"),
    [
        ({"every_n_frames": 3}, [0, 3, 6, 9]),
        # ticks every 0.5 s: the first frame at or after 0, 0.5 and 1.0 s
        ({"sample_fps": 2.0}, [0, 5, 8]),
        ({"max_frames_per_video": 3}, [0, 4, 9]),
        ({"every_n_frames": 2, "max_frames_per_video": 2}, [0, 8]),
        ({"sample_fps": 10.0, "max_frames_per_video": 4}, [0, 3, 6, 9]),
        ({"keyframes_only": True}, [0]),  # a GIF has no keyframes but its first frame
    ],
)
def test_animated_gif_frames_follow_the_frame_options(media_dir, opts, indices):
    path = media_dir / "anim.gif"
    _animated_gif(path)
    batches, result = _decode(path, kind="image", **opts)
    assert _indices(batches) == indices
    assert _pts(batches) == pytest.approx([PTS[i] for i in indices])
    assert [_color_at(p) for p in _pixels(batches)] == [tuple(COLORS[i]) for i in indices]
    assert (result.kind, result.frames_total, result.frames_sampled) == ("video", 10, len(indices))


def test_picked_gif_frames_are_extracted_at_full_size(media_dir):
    path = media_dir / "anim.gif"
    _animated_gif(path)
    with Image.open(path) as im:
        reference = {}
        for i in (1, 7):
            im.seek(i)
            reference[i] = np.asarray(im.convert("RGB"))
    got = dict(media.extract_frames(path, [(7, PTS[7]), (1, PTS[1]), (7, PTS[7])]))
    assert sorted(got) == [1, 7]
    for i, frame in got.items():
        assert frame.shape == (30, 40, 3)
        np.testing.assert_array_equal(frame, reference[i])
        assert tuple(frame[4, 2 + 3 * i + 2]) == (255, 255, 255)  # the square, at i's place


def test_a_gif_frame_past_the_end_is_a_decode_error(media_dir):
    path = media_dir / "anim.gif"
    _animated_gif(path)
    with pytest.raises(DecodeError, match="frame 12 not found .the GIF has 10 frames"):
        list(media.extract_frames(path, [(12, 2.0)]))


def test_a_truncated_animated_gif_keeps_the_frames_before_the_damage(media_dir):
    path = media_dir / "cut.gif"
    _animated_gif(path, size=(200, 150))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    batches, result = _decode(path, kind="image")
    assert result.kind == "video" and result.status in ("ok", "corrupt")
    assert 0 < result.frames_total < 10
    if result.status == "ok":
        assert len(_indices(batches)) == result.frames_sampled <= result.frames_total


# -- discovery and the summary: what was not read --------------------------------------------


def test_discovery_counts_non_media_keys_with_examples(tmp_path):
    store = LocalStore(tmp_path / "src")
    names = ["a.gif", "b.heic", "c.avif", "d.HEIF", "e.mp4", "notes.txt", "clip.mts"]
    names += [f"raw/{i}.cr2" for i in range(6)]
    for n in names:
        store.put(n, b"x")
    found = list_new_files(store, known={})
    assert [f.key for f in found.new] == ["a.gif", "b.heic", "c.avif", "d.HEIF", "e.mp4"]
    assert found.ignored == 8
    assert found.ignored_examples == (
        "clip.mts",
        "notes.txt",
        "raw/0.cr2",
        "raw/1.cr2",
        "raw/2.cr2",
    )


def test_the_summary_shows_ignored_files_with_examples():
    summary = RunSummary(run_id="r", source="/src", output="/out", files_listed=2)
    summary.files_ignored, summary.ignored_examples = 3, ["notes.txt", "clip.mts"]
    rows = {r.label: r.value for r in summary_rows(summary)}
    assert rows["ignored (not media)"] == "3 (notes.txt, clip.mts, …)"
    line = next(x for x in render_text(summary).splitlines() if "ignored (not media)" in x)
    assert line.split() == ["ignored", "(not", "media)", "3", "(notes.txt,", "clip.mts,", "…)"]
    again = RunSummary.from_dict(summary.to_dict())
    assert (again.files_ignored, again.ignored_examples) == (3, ["notes.txt", "clip.mts"])
    summary.nothing_new = True
    assert "3 (notes.txt, clip.mts, …) objects ignored (not media)" in render_text(summary)
    assert "objects ignored, not media" in render_markdown(summary)

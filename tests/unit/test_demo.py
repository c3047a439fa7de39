"""winnow.demo: synthetic street media that decodes, moves, varies by scene, and breaks on cue."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from winnow import demo, media
from winnow.records import FileRef, FileResult, kind_of
from winnow.storage import LocalStore


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _decode(store: LocalStore, key: str, size: int = 32) -> tuple[list, FileResult]:
    info = next(store.list(key))
    ref = FileRef(
        key=key, fingerprint=info.fingerprint, size_bytes=info.size_bytes, kind=kind_of(key)
    )
    with store.local_copy(key) as path:
        items = list(media.decode_file(path, ref, size=size, options=media.FrameOptions()))
    return items[:-1], items[-1]


def test_video_has_the_requested_shape_and_moves(tmp_path):
    path = tmp_path / "street.mp4"
    demo.make_video(path, n_frames=24, width=160, height=96, fps=12, seed=1, scene=0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.average_rate) == (160, 96, 12)
        assert stream.codec_context.name == "h264"
    frames = _frames(path)
    assert len(frames) == 24
    steps = [
        np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, frames[1:], strict=False)
    ]
    assert min(steps) > 1.0  # consecutive frames differ (motion, pan, sensor noise)
    assert frames[0].std() > 20  # textured, not flat


def test_scenes_look_different(tmp_path):
    means = []
    for scene in range(6):
        path = tmp_path / f"scene{scene}.mp4"
        demo.make_video(path, n_frames=2, width=96, height=64, seed=0, scene=scene)
        means.append(_frames(path)[0].reshape(-1, 3).mean(axis=0))
    gaps = [np.abs(a - b).sum() for i, a in enumerate(means) for b in means[i + 1 :]]
    assert min(gaps) > 10  # day, dusk, night, rain, fog and snow differ in colour


def test_same_seed_same_pixels_other_seed_other_layout(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.png", "b.png", "c.png"))
    demo.make_image(a, width=96, height=64, seed=3, scene=1, fmt="PNG")
    demo.make_image(b, width=96, height=64, seed=3, scene=1, fmt="PNG")
    demo.make_image(c, width=96, height=64, seed=4, scene=1, fmt="PNG")
    pa, pb, pc = (np.asarray(Image.open(p)) for p in (a, b, c))
    assert pa.shape == (64, 96, 3) and np.array_equal(pa, pb) and not np.array_equal(pa, pc)


def test_video_options_are_written_as_asked(tmp_path):
    path = tmp_path / "opts.mp4"
    demo.make_video(path, n_frames=30, width=64, height=48, gop=6, rotation=90, vfr=True, seed=2)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    order = sorted(pts for pts, _ in packets)
    assert sorted(order.index(pts) for pts, key in packets if key) == list(range(0, 30, 6))
    assert frame.rotation == 90
    assert len(set(np.diff(order))) > 1  # variable frame durations


@pytest.mark.parametrize(("codec", "suffix"), [("libvpx-vp9", ".webm"), ("mpeg4", ".avi")])
def test_other_codecs_and_containers(tmp_path, codec, suffix):
    path = tmp_path / f"clip{suffix}"
    demo.make_video(path, n_frames=8, width=64, height=48, codec=codec)
    assert len(_frames(path)) == 8


def test_make_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="must be even"):
        demo.make_video(tmp_path / "odd.mp4", n_frames=2, width=63, height=48)


def test_demo_files_decode_and_a_second_batch_adds_new_files(tmp_path):
    store = LocalStore(tmp_path / "raw")
    first = demo.write_demo_files(
        store, n_videos=2, n_images=2, frames_per_video=12, width=96, height=64
    )
    assert first == [
        "cam0/drive-0000.mp4",
        "cam1/drive-0001.mp4",
        "stills/still-0000.jpg",
        "stills/still-0001.jpg",
    ]
    second = demo.write_demo_files(
        store, n_videos=2, n_images=1, first=2, frames_per_video=12, width=96, height=64
    )
    assert second == ["cam0/drive-0002.mp4", "cam1/drive-0003.mp4", "stills/still-0002.jpg"]
    assert sorted(i.key for i in store.list()) == sorted(first + second)
    hashes = set()
    for key in first + second:
        batches, result = _decode(store, key)
        assert result.status == "ok" and result.error is None, key
        assert result.frames_sampled == (12 if key.endswith(".mp4") else 1)
        assert (result.width, result.height) == (96, 64)
        hashes.update(h for b in batches for h in b.content_hash)
    assert len(hashes) == 4 * 12 + 3  # every frame of every file is different
    assert store.get("cam0/drive-0002.mp4") != store.get("cam0/drive-0000.mp4")


def test_corrupt_files_never_give_frames(tmp_path):
    store = LocalStore(tmp_path / "raw")
    broken = demo.write_corrupt_files(store)
    assert len(broken) >= 6 and all(k.startswith("broken/") for k in broken)
    assert all(kind_of(k) is not None for k in broken)  # discovery keeps them all
    statuses = {}
    for key, what in broken.items():
        batches, result = _decode(store, key)
        assert batches == [], key
        assert result.status in ("corrupt", "skipped") and result.error, (key, what)
        statuses[key] = result.status
    assert statuses["broken/audio-only.mp4"] == "skipped"
    assert list(statuses.values()).count("skipped") == 1

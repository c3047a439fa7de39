"""Long videos as time ranges: planned by plan_shards, decoded apart, the same as decoded whole."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from winnow import demo, engine, media
from winnow.discover import plan_shards
from winnow.errors import ConfigError
from winnow.media import FrameOptions, _video
from winnow.records import (
    EMPTY_RANGE,
    FileRef,
    FileResult,
    FrameBatch,
    ModelRecord,
    Shard,
    merge_file_results,
)
from winnow.storage import LocalStore

SIZE = 32
SHARD_SECONDS = 0.8  # 3 s videos: four ranges each

OPTIONS = {
    "all_frames": {},
    "every_n_frames=4": {"every_n_frames": 4},
    "sample_fps=7": {"sample_fps": 7.0},
    "keyframes_only": {"keyframes_only": True},
    "max_frames_per_video=7": {"max_frames_per_video": 7},
    "sample_fps=5+max_frames=6": {"sample_fps": 5.0, "max_frames_per_video": 6},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalStore:
    """h264 with two B-frames (pts != dts) and a 12-frame GoP; the same with variable rate."""
    root = tmp_path_factory.mktemp("ranges")
    demo.make_video(root / "bframes.mp4", n_frames=90, width=160, height=96, gop=12, seed=1)
    demo.make_video(root / "vfr.mp4", n_frames=90, width=160, height=96, gop=12, vfr=True)
    demo.make_video(root / "short.mp4", n_frames=12, width=160, height=96, gop=12, seed=2)
    return LocalStore(root)


def _ref(store: LocalStore, key: str) -> FileRef:
    size = (store.root / key).stat().st_size
    return FileRef(key=key, fingerprint=f"fp:{size}", size_bytes=size, kind="video")


def _ranges(store: LocalStore, key: str) -> tuple[FileRef, ...]:
    """The time ranges plan_shards gives the video (one shard each)."""
    durations = {key: media.probe_duration(store.root / key)}
    shards = plan_shards([_ref(store, key)], shard_seconds=SHARD_SECONDS, durations=durations)
    assert all(len(s.files) == 1 for s in shards)
    return tuple(s.files[0] for s in shards)


def _decode(store: LocalStore, ref: FileRef, opts: dict) -> tuple[list[FrameBatch], FileResult]:
    items = list(
        media.decode_file(
            store.root / ref.key, ref, size=SIZE, options=FrameOptions(**opts), chunk_frames=8
        )
    )
    return items[:-1], items[-1]


def _columns(batches: list[FrameBatch]) -> dict[str, np.ndarray]:
    names = [f.name for f in dataclasses.fields(FrameBatch)]
    return {n: np.concatenate([getattr(b, n) for b in batches]) for n in names}


@pytest.mark.parametrize("key", ["bframes.mp4", "vfr.mp4"])
@pytest.mark.parametrize("mode", OPTIONS)
def test_ranges_decoded_apart_give_exactly_the_whole_file_samples(store, key, mode, monkeypatch):
    opts = OPTIONS[mode]
    whole, whole_result = _decode(store, _ref(store, key), opts)
    ranges = _ranges(store, key)
    assert len(ranges) >= 3
    seeks: list[int] = []  # keyframe timestamps the range decodes started from
    frames_from = _video._VideoDecoder._frames_from
    monkeypatch.setattr(
        _video._VideoDecoder,
        "_frames_from",
        lambda self, target: (seeks.append(target), frames_from(self, target))[1],
    )
    parts = [_decode(store, r, opts) for r in ranges]
    got = _columns([b for batches, _ in parts for b in batches])
    want = _columns(whole)
    assert got.keys() == want.keys()
    for name, column in want.items():  # ids, indices, pts, pixels, stats, hashes: all equal
        np.testing.assert_array_equal(got[name], column, err_msg=name)
    assert len(want["sample_id"]) > 1
    for r, (batches, _) in zip(ranges, parts, strict=True):  # each range keeps to its times
        pts = [t for b in batches for t in b.pts_seconds]
        assert all(
            (r.start_s is None or t >= r.start_s) and (r.end_s is None or t < r.end_s) for t in pts
        )
    assert merge_file_results([result for _, result in parts]) == [whole_result]
    if not opts.get("keyframes_only"):  # later ranges start at a keyframe, not at frame 0
        assert seeks and max(seeks) > 0


def test_an_untrusted_packet_index_falls_back_to_filtering_a_whole_decode(store, monkeypatch):
    opts = {"sample_fps": 7.0}
    whole, whole_result = _decode(store, _ref(store, "bframes.mp4"), opts)
    monkeypatch.setattr(_video._VideoDecoder, "_index_exact", lambda self: False)
    parts = [_decode(store, r, opts) for r in _ranges(store, "bframes.mp4")]
    got = _columns([b for batches, _ in parts for b in batches])
    np.testing.assert_array_equal(got["sample_id"], _columns(whole)["sample_id"])
    np.testing.assert_array_equal(got["pixels"], _columns(whole)["pixels"])
    assert merge_file_results([result for _, result in parts]) == [whole_result]


def test_a_range_with_no_frame_is_neutral_when_merged(store):
    ref = _ref(store, "bframes.mp4")
    empty = dataclasses.replace(ref, start_s=100.0, end_s=None)  # after the 3 s video
    batches, result = _decode(store, empty, {})
    assert batches == []
    assert (result.status, result.error, result.frames_sampled) == ("skipped", EMPTY_RANGE, 0)
    before = dataclasses.replace(ref, start_s=None, end_s=100.0)
    _, whole = _decode(store, before, {})
    assert merge_file_results([whole, result]) == [whole]


def test_plan_shards_splits_only_videos_longer_than_shard_seconds(store):
    long, short = _ref(store, "bframes.mp4"), _ref(store, "short.mp4")
    image = FileRef("still.jpg", "fp:1", 10, "image")
    durations = {k: media.probe_duration(store.root / k) for k in ("bframes.mp4", "short.mp4")}
    assert durations["bframes.mp4"] == pytest.approx(3.0, abs=0.05)
    files = [short, image, long, short.__class__("other.mp4", "fp:2", 5, "video")]
    shards = plan_shards(files, shard_seconds=SHARD_SECONDS, durations=durations)
    entries = [s.files for s in shards]
    assert entries[0] == (short, image)  # whole files still group; a split video stands alone
    ranges = [e[0] for e in entries[1:5]]
    assert [(r.start_s, r.end_s) for r in ranges] == [
        (None, 0.8),
        (0.8, 1.6),
        (1.6, pytest.approx(2.4)),
        (pytest.approx(2.4), None),
    ]
    assert all(r.key == long.key and r.fingerprint == long.fingerprint for r in ranges)
    assert entries[5] == (files[3],)  # no duration known: kept whole
    assert [s.index for s in shards] == list(range(len(shards)))
    assert len({s.shard_id for s in shards}) == len(shards)  # ranges hash apart
    again = plan_shards(files, shard_seconds=SHARD_SECONDS, durations=durations)
    assert [s.shard_id for s in again] == [s.shard_id for s in shards]  # stable: resumable
    unsplit = plan_shards(files, durations=durations)  # no shard_seconds: as before
    assert unsplit[0].shard_id == Shard.id_for(tuple(files))


@pytest.mark.parametrize(("value", "match"), [(0, "shard_seconds"), (-1.0, "shard_seconds")])
def test_bad_shard_seconds_are_refused(value, match):
    with pytest.raises(ConfigError, match=match):
        plan_shards([], shard_seconds=value)


def _result(status, error=None, sampled=0, total=90, size=(160, 96)):
    ref = FileRef("a.mp4", "fp", 1, "video")
    w, h = size
    return FileResult.for_ref(
        ref,
        status=status,
        error=error,
        frames_sampled=sampled,
        frames_total=total,
        width=w,
        height=h,
    )


@pytest.mark.parametrize(
    ("parts", "status", "error", "sampled"),
    [
        ([("ok", None, 3), ("skipped", EMPTY_RANGE, 0), ("ok", None, 4)], "ok", None, 7),
        ([("skipped", "no frame sampled", 0), ("ok", None, 2)], "ok", None, 2),
        (
            [("ok", None, 2), ("corrupt", "no decodable frame: x", 0)],
            "ok",
            "partial: a time range failed: no decodable frame: x",
            2,
        ),
        (
            [("skipped", EMPTY_RANGE, 0), ("skipped", "no frame sampled", 0)],
            "skipped",
            "no frame sampled",
            0,
        ),
        ([("corrupt", "bad", 0), ("skipped", "no frame sampled", 0)], "corrupt", "bad", 0),
    ],
)
def test_merged_results_sum_frames_and_keep_the_telling_status(parts, status, error, sampled):
    (merged,) = merge_file_results([_result(*p) for p in parts])
    assert (merged.status, merged.error, merged.frames_sampled) == (status, error, sampled)
    assert (merged.frames_total, merged.width, merged.height) == (90, 160, 96)


def test_merge_keeps_other_files_and_their_order():
    a = _result("ok", None, 1)
    b = dataclasses.replace(a, key="b.mp4")
    assert merge_file_results([b, a, dataclasses.replace(b, frames_sampled=2)]) == [
        dataclasses.replace(b, frames_sampled=3),
        a,
    ]


class _SlowEmbedder:
    """Stands in for an Embedder: zeros, slowly, so a short video takes a while to embed."""

    def __init__(self, delay_s: float) -> None:
        self.batch_size, self.input_size, self.device = 8, SIZE, "cpu"
        self.record = ModelRecord("fake", "none", SIZE, 4)
        self.delay_s = delay_s

    def submit(self, pixels: np.ndarray):
        time.sleep(self.delay_s)
        out = np.zeros((len(pixels), 4), np.float16)
        return type("Done", (), {"result": lambda self: out})()


def test_progress_counts_frames_while_one_long_video_decodes(store):
    ref = _ref(store, "bframes.mp4")
    updates: list[tuple[int, int, str]] = []
    shard = Shard(0, Shard.id_for((ref,)), (ref,))
    results = list(
        engine.embed_shards(
            [shard],
            source=store,
            frames=FrameOptions(),
            embedder=_SlowEmbedder(0.03),  # 90 frames in 12 batches: about 0.4 s
            decode_workers=1,
            on_progress=lambda s: updates.append(
                (s.frames, s.files, threading.current_thread().name)
            ),
            progress_every_s=0.05,
        )
    )
    assert len(results[0].candidates) == 90
    during = [(frames, files) for frames, files, _ in updates if files == 0]
    assert len(during) >= 3  # several updates before the file was finished
    counts = [frames for frames, _ in during]
    assert counts == sorted(counts) and len(set(counts)) == len(counts) and 0 < counts[0] < 90
    assert {name for _, _, name in updates} == {threading.current_thread().name}


def test_ranges_through_the_engine_give_the_whole_file_candidates(store):
    key = "bframes.mp4"
    shards = plan_shards(
        [_ref(store, key)],
        shard_seconds=SHARD_SECONDS,
        durations={key: media.probe_duration(store.root / key)},
    )
    whole_shard = Shard(0, "whole", (_ref(store, key),))
    common = {"source": store, "frames": FrameOptions(every_n_frames=3)}
    split = list(engine.embed_shards(shards, embedder=_SlowEmbedder(0), decode_workers=2, **common))
    (whole,) = engine.embed_shards([whole_shard], embedder=_SlowEmbedder(0), **common)
    ids = [i for r in split for i in r.candidates.sample_id]
    assert ids == list(whole.candidates.sample_id) and len(ids) == 30
    assert merge_file_results([f for r in split for f in r.files]) == whole.files


def test_decode_threads_share_the_cores_between_decoders(monkeypatch):
    from winnow import device

    monkeypatch.setattr(device, "available_cores", lambda: 16)
    assert [device.decode_threads(n) for n in (1, 2, 4, 8, 16, 32)] == [16, 8, 4, 2, 1, 1]
    monkeypatch.setattr(device, "available_cores", lambda: 64)
    assert device.decode_threads(1) == 16  # FFmpeg's own cap
    monkeypatch.setattr(device, "available_cores", lambda: 2)
    assert device.decode_threads(4) == 1


def test_probe_duration_is_none_for_a_non_video(tmp_path: Path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video at all")
    assert media.probe_duration(bad) is None

"""The decode+embed engine: order, completeness, equivalence, bad media, memory, threads, S3."""

from __future__ import annotations

import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from winnow import demo, engine, media
from winnow.embedding import EmbeddingOptions, load_embedder
from winnow.errors import ConfigError, DecodeError, StorageError, TransientStorageError
from winnow.media import FrameOptions
from winnow.records import FileRef, FileResult, FrameBatch, Shard, kind_of
from winnow.storage import LocalStore, ObjectStore, S3Options, S3Store

SIZE = 64
FRAMES = FrameOptions(every_n_frames=2)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(
        EmbeddingOptions(weights="none", input_size=SIZE, batch_size=8, model="resnet18")
    )


@pytest.fixture(scope="module")
def media_store(tmp_path_factory) -> LocalStore:
    """Three short videos, four stills and the demo's broken files."""
    store = LocalStore(tmp_path_factory.mktemp("media"))
    demo.write_demo_files(store, n_videos=3, n_images=4, frames_per_video=30, width=160, height=96)
    demo.write_corrupt_files(store, prefix="broken")
    return store


def _refs(store: ObjectStore, prefix: str = "") -> list[FileRef]:
    return [
        FileRef(o.key, o.fingerprint, o.size_bytes, kind_of(o.key))
        for o in store.list(prefix)
        if kind_of(o.key)
    ]


def _shards(refs: list[FileRef], per_shard: int) -> list[Shard]:
    groups = [tuple(refs[i : i + per_shard]) for i in range(0, len(refs), per_shard)]
    return [Shard(i, Shard.id_for(g), g) for i, g in enumerate(groups)]


def _direct(store: ObjectStore, ref: FileRef, embedder) -> tuple[list[FrameBatch], FileResult]:
    """What decode_file gives for one file, outside the engine."""
    with store.local_copy(ref.key) as path:
        items = list(media.decode_file(path, ref, size=SIZE, options=FRAMES))
    return items[:-1], items[-1]


def _run(shards, store, embedder, **kwargs) -> list[engine.ShardResult]:
    return list(
        engine.embed_shards(shards, source=store, frames=FRAMES, embedder=embedder, **kwargs)
    )


def _engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("winnow-")]


def test_shards_come_in_order_with_one_result_per_file(media_store, embedder):
    shards = _shards(
        _refs(media_store, "cam0") + _refs(media_store, "cam1") + _refs(media_store, "stills"),
        per_shard=3,
    )
    results = _run(shards, media_store, embedder, decode_workers=2)
    assert [r.shard for r in results] == shards
    for result in results:
        assert [f.key for f in result.files] == [f.key for f in result.shard.files]
        assert all(f.status == "ok" for f in result.files)
        keys_in_order = [f.key for f in result.files for _ in range(f.frames_sampled)]
        assert list(result.candidates.key) == keys_in_order
        assert result.candidates.embedding.shape == (len(keys_in_order), 512)
        assert result.candidates.embedding.dtype == np.float16
    assert not _engine_threads()


def test_frames_and_embeddings_match_decoding_and_embedding_each_file_directly(
    media_store, embedder
):
    refs = _refs(media_store, "cam0") + _refs(media_store, "stills")[:2]
    (result,) = _run(_shards(refs, per_shard=len(refs)), media_store, embedder)
    start = 0
    for ref, got in zip(refs, result.files, strict=True):
        batches, expected = _direct(media_store, ref, embedder)
        assert got == expected
        n = sum(len(b) for b in batches)
        assert n == got.frames_sampled > 0
        rows = result.candidates.take(np.arange(start, start + n))
        start += n
        assert list(rows.sample_id) == [s for b in batches for s in b.sample_id]
        np.testing.assert_array_equal(
            rows.frame_index, np.concatenate([b.frame_index for b in batches])
        )
        direct = embedder.embed(np.concatenate([b.pixels for b in batches])).astype(np.float32)
        # Batches formed across files change only the rounding of the fp32 -> fp16 step.
        np.testing.assert_allclose(rows.embedding.astype(np.float32), direct, atol=3e-3)
    assert start == len(result.candidates)


def test_corrupt_files_become_results_while_the_rest_of_the_shard_embeds(media_store, embedder):
    broken = _refs(media_store, "broken")
    good = _refs(media_store, "stills")[:2]
    mixed = (broken[0], good[0], *broken[1:], good[1])
    (result,) = _run([Shard(0, Shard.id_for(mixed), mixed)], media_store, embedder)
    status = {f.key: f.status for f in result.files}
    assert [f.key for f in result.files] == [r.key for r in mixed]
    assert status[good[0].key] == status[good[1].key] == "ok"
    for ref in broken:
        assert status[ref.key] in ("corrupt", "skipped")
        assert next(f for f in result.files if f.key == ref.key).error
    assert sorted(set(result.candidates.key)) == sorted(r.key for r in good)


def test_a_vanished_file_is_skipped_not_fatal(media_store, embedder):
    ghost = FileRef("cam0/deleted-meanwhile.mp4", "mtime:1:10", 10, "video")
    still = _refs(media_store, "stills")[0]
    (result,) = _run([Shard(0, "x", (ghost, still))], media_store, embedder)
    assert result.files[0].status == "skipped"
    assert "vanished" in result.files[0].error
    assert result.files[1].status == "ok" and len(result.candidates) == 1


def test_memory_is_bounded_by_the_batch_and_prefetch_not_the_video(tmp_path, embedder):
    store = LocalStore(tmp_path)
    demo.make_video(tmp_path / "long.mp4", n_frames=360, width=64, height=64, seed=3)
    ref = _refs(store)[0]
    everything = FrameOptions()
    prefetch = 2
    stats = engine.EngineStats()
    tracemalloc.start()
    try:
        (result,) = list(
            engine.embed_shards(
                [Shard(0, "long", (ref,))],
                source=store,
                frames=everything,
                embedder=embedder,
                prefetch_batches=prefetch,
                stats=stats,
            )
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.candidates) == 360
    assert stats.peak_frames <= embedder.batch_size * prefetch
    all_pixels = 360 * SIZE * SIZE * 3
    # Held at most: the budget (16 frames), a decoder's chunk and its next buffer, the batch
    # being embedded, the 360 embeddings and their metadata: a fraction of the video's pixels.
    assert peak < 0.35 * all_pixels, (peak, all_pixels)


@pytest.mark.parametrize(("workers", "prefetch"), [(1, 1), (3, 1), (3, 2)])
def test_small_budgets_and_many_workers_never_deadlock(media_store, embedder, workers, prefetch):
    shards = _shards(_refs(media_store, "cam") + _refs(media_store, "stills"), per_shard=2)
    stats = engine.EngineStats()
    results = _run(
        shards,
        media_store,
        embedder,
        decode_workers=workers,
        prefetch_batches=prefetch,
        stats=stats,
    )
    assert len(results) == len(shards)
    assert stats.peak_frames <= embedder.batch_size * prefetch
    assert stats.frames == sum(len(r.candidates) for r in results)


def test_works_when_called_from_a_worker_thread(media_store, embedder):
    shards = _shards(_refs(media_store, "stills") + _refs(media_store, "cam1"), per_shard=2)
    in_main = _run(shards, media_store, embedder)
    with ThreadPoolExecutor(1) as pool:
        in_thread = pool.submit(_run, shards, media_store, embedder, decode_workers=2).result()
    for a, b in zip(in_main, in_thread, strict=True):
        assert a.files == b.files
        assert list(a.candidates.sample_id) == list(b.candidates.sample_id)
        np.testing.assert_allclose(
            a.candidates.embedding.astype(np.float32), b.candidates.embedding, atol=3e-3
        )


def test_the_model_keeps_working_while_the_caller_stages_a_shard(media_store, embedder):
    still, video = _refs(media_store, "stills")[0], _refs(media_store, "cam0")[0]
    shards = [Shard(0, "still", (still,)), Shard(1, "video", (video,))]
    stats = engine.EngineStats()
    results = engine.embed_shards(
        shards, source=media_store, frames=FrameOptions(), embedder=embedder, stats=stats
    )
    next(results)
    # The caller writes the first shard somewhere slow, asking nothing of the generator...
    deadline = time.monotonic() + 60
    while stats.frames < 1 + 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stats.frames == 1 + 30  # ...while the video's 30 frames were embedded
    assert len(next(results).candidates) == 30


def test_an_unexpected_decoder_error_names_the_file_and_stops_the_decoders(
    media_store, embedder, monkeypatch
):
    real = media.decode_file

    def flaky(path, ref, **kwargs):
        if ref.key.endswith("0001.jpg"):
            raise ZeroDivisionError("bug in a decoder")
        return real(path, ref, **kwargs)

    monkeypatch.setattr(media, "decode_file", flaky)
    shards = _shards(_refs(media_store, "stills"), per_shard=2)
    with pytest.raises(DecodeError, match=r"still-0001\.jpg.*ZeroDivisionError: bug in a decoder"):
        _run(shards, media_store, embedder, decode_workers=2)
    assert not _engine_threads()


def _s3_behind_proxy(
    media_store, s3_bucket, proxy, keys: list[FileRef]
) -> tuple[S3Store, list[FileRef]]:
    """The files copied to a real S3 store reached through `proxy`, listed there."""
    s3 = S3Store(
        s3_bucket, "raw", S3Options(endpoint_url=proxy.url, region="us-east-1", max_attempts=2)
    )
    for ref in keys:
        s3.put(ref.key, media_store.get(ref.key))
    return s3, _refs(s3)


@pytest.mark.slow
def test_reads_refused_before_any_success_stop_the_run(
    media_store, embedder, s3_bucket, s3_fault_proxy
):
    # One refused key is a skipped file (tests/integration/test_hostile_keys.py); refusals
    # before any read succeeds mean the credentials cannot read at all: the run stops. Real
    # objects on the moto server, listed, then every request answered 403 AccessDenied.
    s3, refs = _s3_behind_proxy(
        media_store, s3_bucket, s3_fault_proxy, _refs(media_store, "stills")[:3]
    )
    s3_fault_proxy.inject("deny")
    with pytest.raises(StorageError, match=r"refused 3 times .*still-000\d.jpg: access denied"):
        _run(_shards(refs, per_shard=3), s3, embedder, decode_workers=1)
    assert s3_fault_proxy.seen >= 3  # the reads really went to the server


@pytest.mark.slow
def test_a_transient_read_error_surfaces_unchanged(
    media_store, embedder, s3_bucket, s3_fault_proxy
):
    # A real object the server answers 503 SlowDown for, past boto3's retries: the run stops
    # with the store's TransientStorageError (the flow's retry decodes the shards left).
    s3, refs = _s3_behind_proxy(
        media_store, s3_bucket, s3_fault_proxy, _refs(media_store, "stills")[:1]
    )
    s3_fault_proxy.inject("slowdown", fail=10**6)
    with pytest.raises(TransientStorageError, match=r"still-0000\.jpg: transient S3 error"):
        _run(_shards(refs, per_shard=1), s3, embedder)


def test_closing_the_generator_early_stops_the_decoders(media_store, embedder):
    shards = _shards(_refs(media_store, "cam") + _refs(media_store, "stills"), per_shard=1)
    results = engine.embed_shards(
        shards, source=media_store, frames=FRAMES, embedder=embedder, decode_workers=2
    )
    first = next(results)
    assert first.shard == shards[0]
    results.close()
    assert not _engine_threads()


def test_no_shards_and_empty_shards(media_store, embedder):
    assert _run([], media_store, embedder) == []
    (result,) = _run([Shard(0, "empty", ())], media_store, embedder)
    assert result.files == [] and result.candidates.embedding.shape == (0, 512)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"prefetch_batches": 0}, "prefetch_batches"), ({"decode_workers": 0}, "decode_workers")],
)
def test_bad_parameters_fail_before_any_work(media_store, embedder, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        engine.embed_shards([], source=media_store, frames=FRAMES, embedder=embedder, **kwargs)


def test_an_s3_source_gives_the_same_results(media_store, embedder, s3_bucket, s3_options):
    s3 = S3Store(s3_bucket, "raw", s3_options)
    refs = _refs(media_store, "cam1") + _refs(media_store, "stills")[:2]
    for ref in refs:
        s3.put(ref.key, media_store.get(ref.key))
    s3_refs = [r for r in _refs(s3) if r.key in {x.key for x in refs}]
    local = _run(_shards(refs, per_shard=2), media_store, embedder)
    remote = _run(_shards(s3_refs, per_shard=2), s3, embedder, decode_workers=2)
    for a, b in zip(local, remote, strict=True):
        assert [f.frames_sampled for f in a.files] == [f.frames_sampled for f in b.files]
        np.testing.assert_allclose(
            a.candidates.embedding.astype(np.float32), b.candidates.embedding, atol=3e-3
        )


def test_embed_keys_embeds_named_files_and_refuses_bad_ones(media_store, embedder):
    keys = [_refs(media_store, "stills")[0].key, _refs(media_store, "cam0")[0].key]
    out = engine.embed_keys(keys, source=media_store, frames=FRAMES, embedder=embedder)
    assert out.shape == (1 + 15, 512) and out.dtype == np.float16
    with pytest.raises(ConfigError, match="does not exist"):
        engine.embed_keys(["nope.jpg"], source=media_store, frames=FRAMES, embedder=embedder)
    with pytest.raises(ConfigError, match="corrupt"):
        engine.embed_keys(
            ["broken/notes.jpg"], source=media_store, frames=FRAMES, embedder=embedder
        )

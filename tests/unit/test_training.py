"""Model lifecycle core (no Prefect): SimCLR training and resume, pool weights, re-embedding,
re-selection from stored embeddings."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CountingStore
from winnow import demo, discover, engine, staging
from winnow.datapool import Datapool
from winnow.embedding import EmbeddingOptions, load_embedder, model_record
from winnow.errors import ConfigError, ModelMismatch, PoolConflict
from winnow.media import FrameOptions
from winnow.records import Candidates
from winnow.runs import select_against_pool
from winnow.selection import SelectionConfig
from winnow.storage import LocalStore, ObjectStore
from winnow.training import (
    TrainOptions,
    checkpoint_key,
    commit_reembed,
    embed_reembed_shards,
    list_models,
    plan_reembed,
    read_card,
    reselect_candidates,
    train_model,
)

SIZE = 32
OLD = EmbeddingOptions(weights="none", input_size=SIZE, batch_size=16, device="cpu")
NEW = EmbeddingOptions(
    model="mobilenet_v3_small", weights="none", input_size=SIZE, batch_size=16, device="cpu"
)
TINY = {"epochs": 2, "batch_size": 8, "input_size": SIZE, "device": "cpu", "seed": 3}


def curate_core(source: ObjectStore, pool: Datapool, *, run_id: str, tag: str | None = None):
    """What a curate run commits (discover, decode+embed, commit; `tag`: its first 3 samples)."""
    snapshot = pool.load()
    found = discover.list_new_files(source, known=snapshot.fingerprints)
    shards = discover.plan_shards(found.new, max_files=3)
    embedder = load_embedder(OLD)
    parts, files = [], []
    for r in engine.embed_shards(
        shards, source=source, frames=FrameOptions(every_n_frames=5), embedder=embedder
    ):
        parts.append(r.candidates)
        files.extend(r.files)
    samples = Candidates.concat(parts)
    record = None
    if tag:
        from winnow.records import Pick, Selection

        picks = tuple(
            Pick(sample_id=str(s), index=i, distance=1.0, score=1.0, reason="test")
            for i, s in enumerate(samples.sample_id[:3])
        )
        record = snapshot.new_tag(
            name=tag,
            run_id=run_id,
            parameters={"source": source.url},
            counts={},
            selection=Selection(picks=picks, n_candidates=len(samples)),
        )
    pool.commit(
        snapshot, run_id=run_id, files=files, samples=samples, tag=record, model=embedder.record
    )
    return samples


@pytest.fixture
def pool_dir(tmp_path):
    """A pool of 2 short videos and 4 stills, curated with resnet18 (random weights, 32 px)."""
    source = LocalStore(tmp_path / "raw")
    demo.write_demo_files(source, n_videos=2, n_images=4, frames_per_video=15, width=80, height=48)
    pool = Datapool(LocalStore(tmp_path / "out").child("pool"))
    curate_core(source, pool, run_id="run-1", tag="first")
    return tmp_path, source, pool


# -- weights names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("https://example.com/w.pt", "s3:// or file:// URL"),
        ("pool:../escape", "pool model is named"),
        ("pool:", "pool model is named"),
    ],
)
def test_bad_weights_names_are_rejected(value, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingOptions(weights=value)


def test_pool_weights_without_a_pool_is_a_config_error():
    with pytest.raises(ConfigError, match="names a model of a datapool"):
        model_record(EmbeddingOptions(weights="pool:simclr-x"))


def test_missing_pool_model_names_the_train_command(tmp_path):
    pool = LocalStore(tmp_path / "pool")
    with pytest.raises(ConfigError, match="no such checkpoint file.*winnow train|winnow train"):
        model_record(EmbeddingOptions(weights="pool:nope"), pool=pool)


# -- training -------------------------------------------------------------------------------


@pytest.mark.slow
def test_trained_model_is_stored_with_its_card_and_loads_by_name_url_and_path(pool_dir):
    _, source, pool = pool_dir
    seen = []
    result = train_model(TrainOptions(**TINY), pool=pool, source=source, on_epoch=seen.append)
    card = result.card
    assert [r.epoch for r in seen] == [1, 2] and result.resumed_from == 0
    assert (card.method, card.backbone, card.epochs, card.dim) == ("simclr", "resnet18", 2, 512)
    assert card.data_version == 1 and card.samples == len(pool.load().samples())
    assert card.losses == [r.loss for r in seen] and card.final_loss == seen[-1].loss
    assert all(np.isfinite(card.losses))
    path = Path(card.url)
    assert card.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not pool.store.exists(checkpoint_key(card.model_id))  # training state dropped
    assert read_card(pool.store, card.model_id) == card
    assert [c.model_id for c in list_models(pool.store)] == [card.model_id]
    # The same weights, however named, are the same model record.
    records = {
        model_record(EmbeddingOptions(weights=w, input_size=SIZE), pool=pool.store)
        for w in (card.weights, f"file://{path}", str(path))
    }
    (record,) = records
    assert record.weights == f"checkpoint:{card.sha256[:16]}"
    embedder = load_embedder(
        EmbeddingOptions(weights=card.weights, input_size=SIZE), pool=pool.store
    )
    frames = np.random.default_rng(0).integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    random_weights = load_embedder(EmbeddingOptions(weights="none", seed=3, input_size=SIZE))
    assert not np.allclose(embedder.embed(frames), random_weights.embed(frames))  # it trained
    # A second call with the same options finds the model and trains nothing.
    again = train_model(TrainOptions(**TINY), pool=pool, source=source)
    assert again.already_trained and again.card == card


@pytest.mark.slow
def test_a_resumed_training_follows_the_course_of_an_uninterrupted_one(tmp_path, pool_dir):
    root, source, pool = pool_dir
    # Uninterrupted, in a copy of the pool.
    other = Datapool(LocalStore(tmp_path / "copy").child("pool"))
    curate_copy = {k: pool.store.get(k) for k in (i.key for i in pool.store.list())}
    for key, data in curate_copy.items():
        other.store.put(key, data)
    straight = train_model(TrainOptions(**{**TINY, "epochs": 3}), pool=other, source=source)

    class Killed(Exception):
        pass

    def die_after_first(report):
        if report.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_model(
            TrainOptions(**{**TINY, "epochs": 3}),
            pool=pool,
            source=source,
            on_epoch=die_after_first,
        )
    assert pool.store.exists(checkpoint_key(straight.card.model_id))
    assert read_card(pool.store, straight.card.model_id) is None
    seen = []
    resumed = train_model(
        TrainOptions(**{**TINY, "epochs": 3}), pool=pool, source=source, on_epoch=seen.append
    )
    assert resumed.resumed_from == 1 and [r.epoch for r in seen] == [2, 3]
    assert resumed.card.model_id == straight.card.model_id
    np.testing.assert_allclose(resumed.card.losses, straight.card.losses, rtol=1e-5)
    assert resumed.card.sha256 == straight.card.sha256  # bit for bit the same weights


@pytest.mark.slow
def test_a_model_id_taken_by_other_parameters_is_refused(pool_dir):
    _, source, pool = pool_dir
    from winnow.training._models import save_state

    save_state(pool.store, checkpoint_key("mine"), {"identity": "something else", "epoch": 1})
    with pytest.raises(ConfigError, match="belongs to a training with other parameters"):
        train_model(TrainOptions(**TINY, model_id="mine"), pool=pool, source=source)


@pytest.mark.slow
def test_training_on_a_missing_tag_is_not_found(pool_dir):
    from winnow.errors import NotFound

    _, source, pool = pool_dir
    with pytest.raises(NotFound, match="no tag 'nope'"):
        train_model(TrainOptions(**TINY, tags=["nope"]), pool=pool, source=source)


# -- re-embedding ---------------------------------------------------------------------------


def _reembed(pool, source, options=NEW):
    snapshot = pool.load()
    plan = plan_reembed(snapshot, model_record(options), shard_files=2)
    embedder = load_embedder(options)
    done = staging.embed_and_stage(
        pool,
        plan.plan_hash,
        plan.shards,
        embed=functools.partial(embed_reembed_shards, plan, source=source, embedder=embedder),
        dim=embedder.record.dim,
    )
    return plan, done.candidates, done.files


@pytest.mark.slow
def test_reembed_switches_model_and_every_embedding_keeps_files_tags_and_history(pool_dir):
    _, source, pool = pool_dir
    before = pool.load()
    old = before.samples()
    plan, samples, files = _reembed(pool, source)
    assert {f.status for f in files} == {"ok"}
    version = commit_reembed(pool, plan, run_id="reembed-1", samples=samples)
    after = pool.load()
    assert version == after.version == before.version + 1
    assert after.model == model_record(NEW) and after.model.dim == 576
    new = after.samples()
    assert sorted(new.sample_id) == sorted(old.sample_id)  # every sample, once
    assert new.embedding.shape == (len(old), 576)
    np.testing.assert_allclose(
        np.linalg.norm(new.embedding.astype(np.float32), axis=1), 1, atol=2e-3
    )
    by_id = dict(zip(old.sample_id, old.run_id, strict=True))
    assert all(by_id[s] == r for s, r in zip(new.sample_id, new.run_id, strict=True))
    assert after.tags == before.tags and after.files.equals(before.files)
    assert pool.load(before.version).samples().embedding.shape[1] == 512  # older version readable
    assert not pool.staged_shard_ids(plan.plan_hash)  # staged shards cleared after the commit
    with pytest.raises(ModelMismatch, match="winnow reembed"):
        after.check_model(model_record(OLD))


@pytest.mark.slow
def test_reembed_loses_a_race_cleanly_and_its_retry_reuses_the_staged_shards(pool_dir):
    root, source, pool = pool_dir
    plan, samples, _ = _reembed(pool, source)
    staged = pool.staged_shard_ids(plan.plan_hash)
    assert staged == {s.shard_id for s in plan.shards}
    # A curate run with the old model commits first (new files arrived meanwhile).
    new_keys = demo.write_demo_files(source, n_videos=0, n_images=2, first=10, width=80, height=48)
    curate_core(source, pool, run_id="run-2")
    with pytest.raises(PoolConflict, match="committed by another run"):
        commit_reembed(pool, plan, run_id="reembed-1", samples=samples)
    assert pool.load().model == model_record(OLD)  # nothing of the re-embed is visible
    retry = plan_reembed(pool.load(), model_record(NEW), shard_files=2)
    resumed = pool.resume(retry.plan_hash, retry.shards)
    # Shards whose files did not change are reused; only the new files' shard is left to do.
    assert len(retry.shards) - len(resumed.todo) == len(staged & {s.shard_id for s in retry.shards})
    assert len(resumed.todo) == 1 and {f.key for f in resumed.todo[0].files} <= set(new_keys)


@pytest.mark.slow
def test_reembed_drops_the_samples_of_vanished_and_changed_files(pool_dir):
    root, source, pool = pool_dir
    gone, changed = sorted(k for k in pool.load().fingerprints if k.startswith("stills/"))[:2]
    (root / "raw" / gone).unlink()
    path = root / "raw" / changed
    path.write_bytes(path.read_bytes() + b"\0")
    plan, samples, files = _reembed(pool, source)
    status = {f.key: (f.status, f.error) for f in files}
    assert status[gone] == ("skipped", "vanished from the source")
    assert status[changed][0] == "skipped"
    assert status[changed][1].startswith("changed since it was embedded")
    assert set(samples.key) == {f.key for f in files if f.status == "ok"}
    assert len(samples) == len(plan.samples) - 2


# -- re-selection ---------------------------------------------------------------------------


@pytest.mark.slow
def test_reselect_reads_embeddings_from_the_pool_only(pool_dir):
    _, source, pool = pool_dir
    counting = CountingStore(pool.store)
    snapshot = Datapool(counting).load()
    counting.reads.clear()
    candidates = reselect_candidates(snapshot)
    picked = select_against_pool(snapshot, candidates, config=SelectionConfig(n_samples=4))
    selection, dataset = picked.selection, picked.dataset
    assert len(selection.picks) == 4
    assert not set(selection.sample_ids) & snapshot.dataset_ids  # the dataset counts as chosen
    assert len(dataset) == len(snapshot.dataset_ids) == 3
    read = {key for op, key in counting.reads if op == "get"}
    assert read and all(k.startswith("parts/") for k in read)  # pool parts, nothing else
    # Within one tag, afresh: only that tag's members are candidates.
    first = reselect_candidates(snapshot, from_tags=["first"])
    picked = select_against_pool(
        snapshot,
        first,
        config=SelectionConfig(strategies=["diversity"], n_samples=2),
        against_dataset=False,
    ).selection
    assert set(picked.sample_ids) <= set(snapshot.tag("first").sample_ids)


@pytest.mark.slow
def test_reselect_refuses_strategies_that_need_decoding(pool_dir):
    _, _, pool = pool_dir
    snapshot = pool.load()
    config = SelectionConfig.model_validate(
        {"strategies": [{"type": "similarity", "query_keys": ["stills/any.jpg"]}]}
    )
    with pytest.raises(ConfigError, match="use a curate run"):
        select_against_pool(snapshot, reselect_candidates(snapshot), config=config)

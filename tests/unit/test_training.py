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


# -- training options: CLI, validation, views -------------------------------------------------

VIEW_OPTIONS = {
    "--batch-size": ("batch_size", "128", 128),
    "--learning-rate": ("learning_rate", "0.001", 1e-3),
    "--weight-decay": ("weight_decay", "0.05", 0.05),
    "--temperature": ("temperature", "0.3", 0.3),
    "--crop-min-scale": ("crop_min_scale", "0.8", 0.8),
    "--rotation": ("rotation_degrees", "15", 15.0),
    "--translate": ("translate", "0.1", 0.1),
    "--shear": ("shear_degrees", "10", 10.0),
    "--color-jitter": ("color_jitter", "0.5", 0.5),
    "--color-jitter-prob": ("color_jitter_prob", "0.4", 0.4),
    "--grayscale": ("grayscale_prob", "0", 0.0),
    "--noise": ("noise_std", "0.1", 0.1),
}


@pytest.fixture
def cli_train(monkeypatch):
    """`winnow train` with the flow replaced: returns (exit code, output, TrainParams or None)."""
    from typer.testing import CliRunner

    from flows import cli

    ran = []

    def fake_run(flow_fn, params):
        ran.append(params)
        return {}

    monkeypatch.setattr(cli, "_flow", lambda command: None)  # no Prefect import, no work
    monkeypatch.setattr(cli, "run_flow", fake_run)

    def invoke(*args: str):
        result = CliRunner().invoke(cli.app, ["train", "--output", "unused", "--json", *args])
        return result.exit_code, result.output, (ran[-1] if ran else None)

    return invoke


def test_every_training_option_of_the_cli_reaches_train_options(cli_train):
    args = [a for option, (_, text, _) in VIEW_OPTIONS.items() for a in (option, text)]
    code, text, params = cli_train(*args, "--no-flip")
    assert code == 0, text
    training = params.training
    for option, (field, _, value) in VIEW_OPTIONS.items():
        assert getattr(training, field) == pytest.approx(value), option
    assert training.horizontal_flip is False
    # Not given: the measured defaults.
    code, text, params = cli_train()
    assert code == 0, text
    assert params.training == TrainOptions()
    assert (params.training.batch_size, params.training.temperature) == (256, 0.5)


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("--noise", "-0.1", "training.noise_std"),
        ("--noise", "1.5", "training.noise_std"),
        ("--color-jitter", "3", "training.color_jitter"),
        ("--color-jitter-prob", "1.2", "training.color_jitter_prob"),
        ("--grayscale", "-1", "training.grayscale_prob"),
        ("--crop-min-scale", "0", "training.crop_min_scale"),
        ("--rotation", "200", "training.rotation_degrees"),
        ("--translate", "0.6", "training.translate"),
        ("--shear", "50", "training.shear_degrees"),
        ("--weight-decay", "-1", "training.weight_decay"),
        ("--temperature", "0", "training.temperature"),
        ("--batch-size", "1", "training.batch_size"),
    ],
)
def test_bad_training_options_are_refused_before_any_work(cli_train, option, value, match):
    code, text, params = cli_train(option, value)
    assert code == 2 and match in text and "invalid parameters" in text
    assert params is None  # the flow never ran


def _views(image: np.ndarray, n: int, **options) -> np.ndarray:
    """`n` pairs of training views of one image, de-normalised to 0..1: (n, 2, 3, H, W)."""
    from PIL import Image

    from winnow.embedding import IMAGENET_MEAN, IMAGENET_STD
    from winnow.training._simclr import _seed_epoch, _transform

    transform = _transform(TrainOptions(input_size=SIZE, **options))
    _seed_epoch(0, 0)
    pairs = [np.stack([v.numpy() for v in transform(Image.fromarray(image))]) for _ in range(n)]
    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 1, 3, 1, 1)
    std = np.array(IMAGENET_STD, np.float32).reshape(1, 1, 3, 1, 1)
    return np.stack(pairs) * std + mean


PLAIN = {
    "crop_min_scale": 1.0,
    "horizontal_flip": False,
    "color_jitter": 0.0,
    "grayscale_prob": 0.0,
    "noise_std": 0.0,
}
GREY = np.full((SIZE, SIZE, 3), 128, np.uint8)


def test_views_with_every_augmentation_off_are_the_image_itself():
    views = _views(GREY, 4, **PLAIN)
    np.testing.assert_allclose(views, 128 / 255, atol=1e-5)


def test_noise_makes_two_views_differ_by_the_noise_std():
    views = _views(GREY, 8, **{**PLAIN, "noise_std": 0.1})
    noise = views - 128 / 255
    assert abs(float(noise.mean())) < 0.005  # zero-mean
    assert float(noise.std()) == pytest.approx(0.1, rel=0.05)
    differ = views[:, 0] - views[:, 1]  # two views of one image: independent noise
    assert float(differ.std()) == pytest.approx(0.1 * 2**0.5, rel=0.05)


def test_color_jitter_changes_brightness_between_views_and_only_when_on():
    on = _views(GREY, 16, **{**PLAIN, "color_jitter": 1.0, "color_jitter_prob": 1.0})
    means = on.mean(axis=(2, 3, 4))  # one brightness per view
    assert float(means.std()) > 0.05  # ±80 % brightness: views far apart
    assert float(np.abs(means[:, 0] - means[:, 1]).max()) > 0.1
    off = _views(GREY, 16, **{**PLAIN, "color_jitter": 1.0, "color_jitter_prob": 0.0})
    assert float(off.mean(axis=(2, 3, 4)).std()) < 1e-6


def test_affine_shift_moves_content_and_crop_keeps_the_size():
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[12:20, 12:20] = 255  # a centred square
    shifted = _views(image, 16, **{**PLAIN, "translate": 0.25})
    assert shifted.shape[-2:] == (SIZE, SIZE)
    rows = (shifted[:, :, 0] > 0.5).any(axis=-1)  # rows holding the square, per view
    centres = [float(np.flatnonzero(r).mean()) for r in rows.reshape(-1, SIZE) if r.any()]
    assert np.ptp(centres) > 4  # shifted by up to 8 px


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

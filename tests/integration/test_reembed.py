"""The reembed flow: every sample gets an embedding of the new model in one commit that keeps
files and tags; a killed re-embed resumes with its staged shards; a curate run cannot interleave
with a re-embed (one wins, the other fails cleanly).

The killed re-embed is a real `winnow reembed` in a child process with one probe: after its
first staged shard it holds until the test kills it (SIGKILL), so the kill lands mid-run.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import kill_at_marker, run
from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

DEMO = {"frames_per_video": 20, "width": 96, "height": 64}
NEW = {"model": "mobilenet_v3_small", "weights": "none", "input_size": 64, "batch_size": 32}


@pytest.fixture
def curated(tmp_path) -> tuple[Path, Path]:
    """3 short videos and 4 stills curated into one tag (resnet18, random weights: 512-d)."""
    source, output = tmp_path / "raw", tmp_path / "out"
    demo.write_demo_files(LocalStore(source), n_videos=3, n_images=4, **DEMO)
    run(str(source), str(output), selection={"n_samples": 5}, shard_files=2)
    return source, output


def _pool(output: Path) -> Datapool:
    return Datapool(LocalStore(output / "pool"))


def _reembed(output: Path, **overrides) -> dict:
    from flows.reembed import reembed
    from winnow.training import ReembedParams

    params = ReembedParams.model_validate(
        {"output": str(output), "embedding": NEW, "shard_files": 2, **overrides}
    )
    return reembed(**{n: getattr(params, n) for n in ReembedParams.model_fields})


def test_reembed_gives_every_sample_an_embedding_of_the_new_model_and_keeps_tags(curated):
    from winnow.errors import ModelMismatch

    source, output = curated
    pool = _pool(output)
    before = pool.load()
    old = before.samples()
    assert before.model.dim == 512 and old.embedding.shape[1] == 512
    result = _reembed(output)
    after = pool.load()
    new = after.samples()
    assert result["version_after"] == after.version == before.version + 1
    assert (after.model.name, after.model.dim) == ("mobilenet_v3_small", 576)
    assert sorted(new.sample_id) == sorted(old.sample_id) and new.embedding.shape[1] == 576
    assert result["samples"] == len(old) and result["files_dropped"] == 0
    assert after.tags == before.tags and after.files.equals(before.files)
    assert pool.load(before.version).samples().embedding.shape[1] == 512  # history readable
    # A curate run that still asks for the old model is refused, and told about reembed.
    demo.write_demo_files(LocalStore(source), n_videos=0, n_images=2, first=7, **DEMO)
    with pytest.raises(ModelMismatch, match="winnow reembed"):
        run(str(source), str(output))
    # With the new model it curates the new files into the switched pool.
    summary = run(str(source), str(output), embedding=NEW, selection={"n_samples": 2})
    assert summary["files_new"] == 2 and summary["pool_version_after"] == after.version + 1
    # Re-embedding to the model the pool already has does nothing.
    assert _reembed(output)["nothing_to_do"] is True


_PROBED_REEMBED = r"""
import sys, time
from pathlib import Path

markers = Path(sys.argv[1])
markers.mkdir(parents=True, exist_ok=True)

from winnow import datapool

real_stage = datapool.Datapool.stage_shard
staged = []
def stage_shard(self, *args, **kwargs):
    real_stage(self, *args, **kwargs)
    staged.append(1)
    (markers / f"staged-{len(staged)}").write_text("")
    if len(staged) == 1:
        (markers / "kill-point").write_text("")
        time.sleep(600)  # the test kills this process here
datapool.Datapool.stage_shard = stage_shard

real_commit = datapool.Datapool.commit
def commit(self, *args, **kwargs):
    (markers / "commit").write_text("")
    return real_commit(self, *args, **kwargs)
datapool.Datapool.commit = commit

sys.argv = ["winnow", *sys.argv[2:]]
from flows.cli import main
main()
"""


def test_a_killed_reembed_resumes_with_its_staged_shards(curated, tmp_path):
    _, output = curated
    pool = _pool(output)
    before = pool.load()
    markers = tmp_path / "markers"
    args = ["reembed", "--output", str(output), "--model", NEW["model"], "--weights", "none"]
    args += ["--input-size", "64", "--shard-files", "2", "--json"]
    assert kill_at_marker(_PROBED_REEMBED, markers, args, what="re-embed") == -signal.SIGKILL
    # Killed after one staged shard, before the commit: the pool is unchanged.
    assert not (markers / "staged-2").exists() and not (markers / "commit").exists()
    assert pool.load().version == before.version and pool.load().model == before.model
    staged = list((output / "pool" / "staging").glob("*/shard-*.parquet"))
    assert len(staged) == 1

    result = _reembed(output)
    assert result["shards_resumed"] == 1 and result["shards"] > 1
    after = pool.load()
    assert after.model.dim == 576 and sorted(after.samples().sample_id) == sorted(
        before.samples().sample_id
    )
    assert not list((output / "pool" / "staging").glob("*/shard-*.parquet"))  # cleaned up


def test_a_curate_run_racing_a_reembed_cannot_interleave(curated, monkeypatch):
    from winnow import training
    from winnow.errors import ModelMismatch, PoolConflict

    source, output = curated
    pool = _pool(output)
    base = pool.load()
    new_keys = demo.write_demo_files(LocalStore(source), n_videos=0, n_images=2, first=7, **DEMO)
    real_commit = training.commit_reembed

    def curate_wins_first(*args, **kwargs):
        # Between the re-embed's plan and its commit, a curate run (old model) commits.
        summary = run(str(source), str(output), selection={"n_samples": 2})
        assert summary["pool_version_after"] == base.version + 1
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(training, "commit_reembed", curate_wins_first)
    with pytest.raises(PoolConflict, match="committed by another run"):
        _reembed(output)
    monkeypatch.setattr(training, "commit_reembed", real_commit)
    mid = pool.load()
    assert mid.version == base.version + 1 and mid.model == base.model  # the curate run won
    assert {k for k in mid.fingerprints if k in new_keys} == set(new_keys)

    # The retry re-plans from the newer version and reuses the staged shards.
    result = _reembed(output)
    assert result["shards_resumed"] == result["shards"] - 1  # only the new files' shard redone
    after = pool.load()
    assert after.model.dim == 576 and set(new_keys) <= set(after.samples().key)
    assert len(after.samples()) == len(mid.samples())
    # And now the old-model curate run is the one that fails, clearly.
    demo.write_demo_files(LocalStore(source), n_videos=0, n_images=1, first=9, **DEMO)
    with pytest.raises(ModelMismatch, match="winnow reembed"):
        run(str(source), str(output))
    assert pool.load().version == after.version


def test_the_reembed_commit_record_is_a_replace(curated):
    _, output = curated
    _reembed(output)
    manifests = sorted((output / "pool" / "versions").glob("*.json"))
    last, previous = (json.loads(p.read_text()) for p in (manifests[-1], manifests[-2]))
    assert last["parts"]["files"] == previous["parts"]["files"]
    assert last["parts"]["tags"] == previous["parts"]["tags"]
    assert len(last["parts"]["samples"]) == 1
    assert not set(last["parts"]["samples"]) & set(previous["parts"]["samples"])
    assert last["counts"]["samples"] == previous["counts"]["samples"]

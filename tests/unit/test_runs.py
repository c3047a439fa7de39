"""A run's ending in the core: select → upload → commit (rebasing after a lost race) → publish.

`finish_run` is driven here with the core's own steps (`local_steps`) over a local pool, with no
orchestrator; a second run's commit is injected right before the first commit attempt, so the
race is lost exactly once, where the test says.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow import demo, runs
from winnow.discover import Discovery
from winnow.errors import ConfigError, PoolConflict
from winnow.records import FileRef
from winnow.selection import SelectionConfig
from winnow.storage import LocalStore, S3Options
from winnow.stores import open_stores

KEYS = ["cam/a.mp4", "cam/b.mp4", "cam/c.mp4"]
CONFIG = SelectionConfig(n_samples=2, strategies=["diversity"])


@pytest.fixture
def run(tmp_path):
    """A started run over three videos (real files, fake embeddings) and its candidates."""
    (tmp_path / "raw" / "cam").mkdir(parents=True)
    for i, key in enumerate(KEYS):
        demo.make_video(tmp_path / "raw" / key, n_frames=3, width=64, height=48, seed=i, scene=i)
    stores = open_stores(str(tmp_path / "raw"), str(tmp_path / "out"), S3Options())
    files, cands = make_run(KEYS, seed=1)
    started = runs.Started(
        run_id="run-b",
        stores=stores,
        snapshot=stores.pool.load(),
        model=MODEL,
        parameters={"selection": CONFIG.model_dump(mode="json")},
        source=stores.source.url,
        began_at=0.0,
    )
    refs = tuple(FileRef(f.key, f.fingerprint, f.size_bytes, "video") for f in files)
    discovered = runs.Discovered(Discovery(new=refs, listed=3, known=0, changed=0, ignored=0), ())
    embedded = runs.Embedded(candidates=cands, files=files, shards=1)
    return started, discovered, embedded


def _finish(started, discovered, embedded, steps, **ending):
    summary = runs.start_summary(started, discovered, embedded)
    end = runs.Ending(tag_name=None, candidates=embedded.candidates, files=embedded.files, **ending)
    return runs.finish_run(started, end, summary, steps=steps)


def test_a_run_ends_with_its_tag_committed_and_published(run):
    started, discovered, embedded = run
    steps = runs.local_steps(started, config=CONFIG)
    finished = _finish(started, discovered, embedded, steps)
    snap = started.stores.pool.load()
    assert finished.version == snap.version == 1
    (tag,) = snap.tags
    assert tag.name == "run-0001" and len(tag.sample_ids) == 2
    assert list(tag.sample_ids) == list(finished.picked.selection.sample_ids)
    assert sorted(snap.files.column("key").to_pylist()) == KEYS
    out = LocalStore(started.stores.output.root)
    assert out.get("tags/run-0001/filenames.txt").decode().split()  # published after commit
    s = finished.summary
    assert (s.tag, s.pool_version_after, s.commit_attempts, s.selected) == ("run-0001", 1, 1, 2)
    assert (s.files_new, s.files_ok, s.candidates) == (3, 3, 9)
    assert {"load", "discover", "select", "upload", "register_tag"} <= set(s.seconds)
    assert s.outputs["report"].endswith("tags/run-0001/report.html")


def test_a_lost_race_is_rebased_selected_again_and_committed_on_top(run):
    started, discovered, embedded = run
    pool = started.stores.pool
    steps = runs.local_steps(started, config=CONFIG)
    won = embedded.candidates.take(np.flatnonzero(embedded.candidates.key == "cam/b.mp4"))
    winner_files = [f for f in embedded.files if f.key == "cam/b.mp4"]

    def commit(pending, attempt):
        if attempt == 1:  # another run commits b.mp4 (same fingerprint) and a tag first
            pool.commit(
                pool.load(),
                run_id="run-a",
                files=winner_files,
                samples=won,
                tag=tag_for("run-0001", won),
                model=MODEL,
            )
        return steps.commit(pending, attempt)

    finished = _finish(started, discovered, embedded, dataclasses.replace(steps, commit=commit))
    snap = pool.load()
    assert finished.version == snap.version == 2
    assert [t.name for t in snap.tags] == ["run-0001", "run-0002"]
    files = snap.files.column("key").to_pylist()
    assert sorted(files) == KEYS  # every file once: b.mp4 is the winner's only
    run_of = dict(zip(files, snap.files.column("run_id").to_pylist(), strict=True))
    assert run_of == {"cam/a.mp4": "run-b", "cam/b.mp4": "run-a", "cam/c.mp4": "run-b"}
    mine = set(snap.tag("run-0002").sample_ids)
    assert not mine & set(won.sample_id)  # no pick from the file the winner committed
    s = finished.summary
    assert (s.commit_attempts, s.tag, s.parent_tag) == (2, "run-0002", "run-0001")
    assert (s.files_new, s.files_known, s.files_ok, s.candidates) == (2, 1, 2, 6)
    assert s.dataset_samples == 2  # selected again with the winner's members as the dataset


def test_a_run_that_may_not_rebase_fails_on_a_lost_race_and_commits_nothing(run):
    started, discovered, embedded = run
    pool = started.stores.pool
    steps = runs.local_steps(started, config=CONFIG)
    files, cands = make_run(["other.mp4"], seed=5)

    def commit(pending, attempt):
        pool.commit(pool.load(), run_id="x", files=files, samples=cands, tag=None, model=MODEL)
        return steps.commit(pending, attempt)

    with pytest.raises(PoolConflict, match="another run committed first; nothing of this run"):
        _finish(
            started,
            discovered,
            embedded,
            dataclasses.replace(steps, commit=commit),
            may_rebase=False,
        )
    assert pool.load().version == 1 and not pool.load().tags  # only the other run's commit


def test_select_against_pool_fetches_what_the_config_needs(run):
    started, _, embedded = run
    config = SelectionConfig(
        n_samples=2, strategies=[{"type": "similarity", "query_keys": ["q.jpg", "q.jpg"]}]
    )
    with pytest.raises(ConfigError, match="use a curate run"):
        runs.select_against_pool(started.snapshot, embedded.candidates, config=config)
    asked = []

    def embed_queries(keys):
        asked.append(keys)
        return embedded.candidates.embedding[:1].astype(np.float32)

    picked = runs.select_against_pool(
        started.snapshot, embedded.candidates, config=config, embed_queries=embed_queries
    )
    assert asked == [("q.jpg",)] and len(picked.selection.picks) == 2
    assert picked.selection.picks[0].index == 0  # the query's own embedding is nearest

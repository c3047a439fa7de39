"""A long video planned as time-range shards curates to exactly the pool of decoding it whole."""

from __future__ import annotations

import pytest

from tests.integration.conftest import run
from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = pytest.mark.usefixtures("prefect_api")


def _pool(path):
    return Datapool(LocalStore(path / "pool")).load()


def test_time_range_shards_give_the_samples_of_a_whole_decode(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    demo.make_video(raw / "long.mp4", n_frames=48, width=96, height=64, fps=12, gop=6)
    demo.make_video(raw / "short.mp4", n_frames=6, width=96, height=64, fps=12, seed=1)
    whole = run(str(raw), str(tmp_path / "whole"), shard_files=8)
    split = run(str(raw), str(tmp_path / "split"), shard_files=8, shard_seconds=1.0)
    assert whole["shards"] == 1 and split["shards"] >= 4  # 4 s of video in 1 s ranges
    a, b = _pool(tmp_path / "whole"), _pool(tmp_path / "split")
    sa, sb = a.samples(), b.samples()
    assert sorted(sa.sample_id) == sorted(sb.sample_id) and len(sa) == whole["candidates"]
    order_a, order_b = sa.sample_id.argsort(), sb.sample_id.argsort()
    assert (sa.frame_index[order_a] == sb.frame_index[order_b]).all()
    assert (sa.embedding[order_a] == sb.embedding[order_b]).all()
    files_a = {r["key"]: r for r in a.files.to_pylist()}
    files_b = {r["key"]: r for r in b.files.to_pylist()}
    assert set(files_b) == {"long.mp4", "short.mp4"}  # one row per file, ranges merged
    for key in files_a:
        assert files_b[key]["frames_sampled"] == files_a[key]["frames_sampled"], key
        assert files_b[key]["status"] == files_a[key]["status"] == "ok", key
    assert list(a.tags[0].sample_ids) == list(b.tags[0].sample_ids)  # the same picks

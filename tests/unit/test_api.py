"""winnow.open_pool: a pool read from a notebook, as pandas and numpy, at any version."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import winnow
from tests.conftest import MODEL, make_run, tag_for
from winnow.datapool import Datapool
from winnow.errors import NotFound
from winnow.storage import LocalStore


@pytest.fixture
def output(store_url, open_test_store):
    """An output prefix whose pool has two committed runs with one tag each."""
    pool = Datapool(open_test_store(store_url).child("pool"))
    files, cands = make_run(["a.mp4", "b.mp4"], seed=1)
    pool.commit(
        pool.load(),
        run_id="r1",
        files=files,
        samples=cands,
        tag=tag_for("run-0001", cands),
        model=MODEL,
    )
    files, cands = make_run(["c.mp4"], frames=4, seed=2)
    pool.commit(
        pool.load(),
        run_id="r2",
        files=files,
        samples=cands,
        tag=tag_for("run-0002", cands, parent="run-0001"),
        model=MODEL,
    )
    return store_url


def _open(url, s3_options):
    return winnow.open_pool(url, options=s3_options)


def test_tags_files_samples_and_members_as_dataframes(output, s3_options):
    pool = _open(output, s3_options)
    assert pool.version == 2 and pool.versions() == [1, 2]
    tags = pool.tags()
    assert list(tags["name"]) == ["run-0001", "run-0002"]
    assert tags["parent"].isna().tolist() == [True, False] and tags["parent"][1] == "run-0001"
    assert list(tags["samples"]) == [2, 2]
    assert sorted(pool.files()["key"]) == ["a.mp4", "b.mp4", "c.mp4"]
    samples = pool.samples()
    assert len(samples) == 2 * 3 + 4 and "embedding" not in samples
    members = pool.members("run-0002", embeddings=True)
    expected = list(pool.snapshot.tag("run-0002").sample_ids)
    assert list(members["sample_id"]) == expected  # pick order
    assert set(members["key"]) == {"c.mp4"} and len(members["embedding"][0]) == MODEL.dim


def test_dataset_embeddings_match_the_dataset_rows(output, s3_options):
    pool = _open(output, s3_options)
    emb, rows = pool.dataset_embeddings(), pool.dataset(embeddings=True)
    assert emb.dtype == np.float32 and emb.shape == (4, MODEL.dim)
    np.testing.assert_allclose(emb, np.stack(rows["embedding"]).astype(np.float32))


def test_any_version_is_readable(output, s3_options):
    first = _open(output, s3_options).at(1)
    assert first.version == 1 and list(first.tags()["name"]) == ["run-0001"]
    assert len(first.samples()) == 6
    with pytest.raises(NotFound, match="no version 7 .*versions: \\[1, 2\\]"):
        winnow.open_pool(output, version=7, options=s3_options)


def test_the_pool_url_itself_opens_too(output, s3_options):
    assert _open(output.rstrip("/") + "/pool", s3_options).version == 2


def test_duckdb_reads_the_parts_without_winnow(output, s3_options, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    parts = _open(output, s3_options).parts()
    if parts["samples"][0].startswith("s3://"):
        pytest.skip("the documented DuckDB recipe reads local parts (httpfs needs a download)")
    con = duckdb.connect()
    n = con.execute("select count(*) from read_parquet($p)", {"p": parts["samples"]}).fetchone()
    assert n == (10,)
    keys = con.execute(
        "select distinct key from read_parquet($p) order by key", {"p": parts["files"]}
    ).fetchall()
    assert keys == [("a.mp4",), ("b.mp4",), ("c.mp4",)]


def test_the_readme_examples_run(tmp_path, monkeypatch):
    """The README's notebook and DuckDB snippets run as written against a pool in demo-data/."""

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## The pool in a notebook", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    pool = Datapool(LocalStore(tmp_path / "demo-data" / "output" / "pool"))
    files, cands = make_run(["cam/a.mp4"], seed=3)
    pool.commit(
        pool.load(),
        run_id="r1",
        files=files,
        samples=cands,
        tag=tag_for("run-0001", cands),
        model=MODEL,
    )
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own docs
    assert namespace["emb"].shape == (2, MODEL.dim) and len(namespace["members"]) == 2

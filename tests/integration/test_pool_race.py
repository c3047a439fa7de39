"""Two processes commit to one datapool at once: exactly one wins, the loser fails clearly,
its retry lands on top, and no commit is lost or corrupted (local folder and S3 over HTTP)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow.datapool import Datapool
from winnow.errors import PoolConflict
from winnow.storage import S3Options, open_store


def _commit_after_barrier(url, endpoint, name, barrier, results):
    options = S3Options(endpoint_url=endpoint, region="us-east-1") if endpoint else None
    pool = Datapool(open_store(url, options))
    base = pool.load()
    files, cands = make_run([f"{name}.mp4"], seed=hash(name) % 1000)
    barrier.wait(timeout=60)
    try:
        version = pool.commit(
            base,
            run_id=name,
            files=files,
            samples=cands,
            tag=tag_for(f"tag-{name}", cands),
            model=MODEL,
        )
        results[name] = ("won", version)
    except PoolConflict as exc:
        results[name] = ("lost", str(exc))


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_processes_racing_to_commit(backend, tmp_path, request):
    if backend == "local":
        url, endpoint = str(tmp_path / "pool"), None
    else:
        bucket = request.getfixturevalue("s3_bucket")
        url, endpoint = f"s3://{bucket}/out/pool", request.getfixturevalue("s3_endpoint")
    options = S3Options(endpoint_url=endpoint, region="us-east-1") if endpoint else None
    pool = Datapool(open_store(url, options))
    files, cands = make_run(["seed.mp4"])
    pool.commit(
        pool.load(),
        run_id="seed",
        files=files,
        samples=cands,
        tag=tag_for("t0", cands),
        model=MODEL,
    )

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier, results = manager.Barrier(2), manager.dict()
        procs = [
            ctx.Process(target=_commit_after_barrier, args=(url, endpoint, name, barrier, results))
            for name in ("alpha", "beta")
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        outcome = dict(results)
    assert all(p.exitcode == 0 for p in procs)
    won = [n for n, (status, _) in outcome.items() if status == "won"]
    lost = [n for n, (status, _) in outcome.items() if status == "lost"]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert outcome[won[0]][1] == 2
    message = outcome[lost[0]][1]
    assert f"run {won[0]}" in message and "version 2" in message and "Re-run" in message

    snap = pool.load()
    assert snap.version == 2 and snap.manifest.run_id == won[0]
    assert set(snap.fingerprints) == {"seed.mp4", f"{won[0]}.mp4"}
    assert len(snap.samples()) == 2 * len(cands)
    # The loser's parts were removed; only parts named by a manifest remain.
    named = {k for t in snap.manifest.parts.values() for k in t}
    stored = {i.key for i in pool.store.list("parts")}
    assert stored == named

    # The loser retries from the new version and lands on top; nothing is lost.
    files, cands2 = make_run([f"{lost[0]}.mp4"], seed=7)
    assert (
        pool.commit(
            pool.load(),
            run_id=lost[0],
            files=files,
            samples=cands2,
            tag=tag_for(f"tag-{lost[0]}", cands2),
            model=MODEL,
        )
        == 3
    )
    final = pool.load()
    assert set(final.fingerprints) == {"seed.mp4", "alpha.mp4", "beta.mp4"}
    assert [t.name for t in final.tags] == ["t0", f"tag-{won[0]}", f"tag-{lost[0]}"]

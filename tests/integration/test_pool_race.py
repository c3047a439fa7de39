"""Two processes commit to one datapool at once: exactly one wins, the loser fails clearly,
its retry lands on top, and no commit is lost or corrupted (local folder and S3 over HTTP).

Each process's conditional write of the manifest is held until the other's has arrived, so
the test asserts the writes really overlapped (not merely that the processes started together)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest

from tests.conftest import MODEL, make_run, tag_for
from winnow.datapool import Datapool
from winnow.errors import PoolConflict
from winnow.storage import S3Options, open_store


def _hold_conditional_writes(store, barrier, events, name) -> None:
    """Hold this process's conditional write of a manifest until the other one's has arrived.

    Wraps the real publishing step: `os.link`/`os.replace`/`os.rename` of a file in `versions/`
    (local) or the S3 client's `put_object(..., IfNoneMatch="*")`. `events` records, across both
    processes and in order, when each writer entered and left it.
    """

    def held(call):
        def wrapper(*args, **kwargs):
            events.append(("enter", name))
            try:
                barrier.wait(timeout=60)
                return call(*args, **kwargs)
            finally:
                events.append(("leave", name))

        return wrapper

    if hasattr(store, "root"):  # LocalStore
        for op in ("link", "replace", "rename"):
            real = getattr(os, op)
            wrapped = held(real)

            def publish(src, dst, *args, _real=real, _wrapped=wrapped, **kwargs):
                call = _wrapped if Path(dst).parent.name == "versions" else _real
                return call(src, dst, *args, **kwargs)

            setattr(os, op, publish)
    else:
        client = store.client
        real_put = client.put_object
        wrapped = held(real_put)
        client.put_object = lambda **kw: wrapped(**kw) if "IfNoneMatch" in kw else real_put(**kw)


def _commit_after_barrier(url, endpoint, name, barrier, events, results):
    options = S3Options(endpoint_url=endpoint, region="us-east-1") if endpoint else None
    pool = Datapool(open_store(url, options))
    base = pool.load()
    files, cands = make_run([f"{name}.mp4"], seed=hash(name) % 1000)
    _hold_conditional_writes(pool.store, barrier, events, name)
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


@pytest.mark.slow
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
        barrier, events, results = manager.Barrier(2), manager.list(), manager.dict()
        procs = [
            ctx.Process(
                target=_commit_after_barrier, args=(url, endpoint, name, barrier, events, results)
            )
            for name in ("alpha", "beta")
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        outcome, order = dict(results), list(events)
    assert all(p.exitcode == 0 for p in procs)
    # The two conditional writes overlapped: both writers were inside before either left.
    assert [e for e, _ in order[:2]] == ["enter", "enter"], order
    assert sorted(n for _, n in order[:2]) == ["alpha", "beta"] and len(order) == 4, order
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

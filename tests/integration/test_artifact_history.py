"""History in the UI: keyed artifacts per output pool, and the coverage history they show."""

from __future__ import annotations

import pytest

from tests.integration.conftest import run

DEMO = {"frames_per_video": 20, "width": 128, "height": 80}
KINDS = ("summary", "picks", "report", "plot")


def _artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )

    return run_coro_as_sync(read())


@pytest.mark.slow
def test_runs_on_one_pool_version_the_same_keys_and_another_pool_gets_its_own(
    prefect_api, tmp_path
):
    from tasks.artifacts import artifact_keys
    from winnow import demo
    from winnow.storage import LocalStore

    pools = {}
    for name in ("a", "b"):
        source = LocalStore(tmp_path / name / "raw")
        demo.write_demo_files(source, n_videos=1, n_images=2, first=0, seed=0, **DEMO)
        pools[name] = (source, str(tmp_path / name / "curated"))

    source_a, out_a = pools["a"]
    first = run(str(source_a.root), out_a)
    demo.write_demo_files(source_a, n_videos=1, n_images=1, first=3, seed=1, **DEMO)
    second = run(str(source_a.root), out_a)
    nothing = run(str(source_a.root), out_a)  # nothing new: not a new version of the summary
    other = run(str(pools["b"][0].root), pools["b"][1])
    assert (first["tag"], second["tag"], nothing["nothing_new"]) == ("run-0001", "run-0002", True)

    keys_a, keys_b = artifact_keys(out_a), artifact_keys(pools["b"][1])
    assert keys_a == artifact_keys(out_a + "/")  # stable for one pool
    for kind in KINDS:
        assert keys_a[kind] != keys_b[kind]
        assert keys_a[kind].startswith(f"winnow-{kind}-")
        versions_a = _artifacts(keys_a[kind])
        assert {str(a.flow_run_id) for a in versions_a} == {first["run_id"], second["run_id"]}
        (b,) = _artifacts(keys_b[kind])
        assert str(b.flow_run_id) == other["run_id"]

    # The latest summary of pool a is run 2's, with the pool's coverage history.
    summaries = sorted(_artifacts(keys_a["summary"]), key=lambda a: a.created)
    latest = summaries[-1].data
    assert latest.startswith("## Tag `run-0002`")
    assert "### Coverage radius over the pool's versions" in latest
    (row1,) = [line for line in latest.splitlines() if line.startswith("| `run-0001` |")]
    assert row1.startswith("| `run-0001` | n/a | ")  # first run: no dataset before it
    assert "| `run-0002` | " in latest and "nan" not in latest
    assert [h[0] for h in second["coverage_history"]] == ["run-0001", "run-0002"]
    assert second["coverage_history"][0][1] is None  # ∞ is not JSON: None

    report = (tmp_path / "a" / "curated" / "tags" / "run-0002" / "report.html").read_text()
    start = report.index("<h2>Coverage over the pool")
    section = report[start : report.index("<h2>", start + 4)]
    svg = section[section.index("<svg") : section.index("</svg>") + 6]
    assert svg.count("<circle") == 2 + 1  # after: both tags; before: run-0002 only
    assert "nan" not in section.lower() and "inf" not in section.lower()
    assert (
        "run-0001" in svg
        and "run-0002" in svg
        and "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )

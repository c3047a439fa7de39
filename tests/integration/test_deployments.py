"""Winnow the Prefect way: pools, prefect.yaml deployments, a worker and the UI, on a real server.

The slow tests share one `prefect server start` (SQLite, temporary PREFECT_HOME, UI on) and run
exactly the documented commands: `python deployments/setup.py`, `prefect --no-prompt deploy
--all`, `prefect worker start --pool winnow-cpu`, `prefect deployment run ...`.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.integration.prefect_server import (
    REPO,
    UUID_RE,
    Browser,
    PrefectServer,
    find_chromium,
    prefect_server,
    tail,
)

TEMPLATES = REPO / "deployments" / "templates"
SCREENSHOTS = REPO / "tests" / "artifacts"
DEPLOYMENTS = ("street-videos", "on-demand", "on-upload")
# Small and fast on a 2-core CPU machine.
FAST = {
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 32},
    "frames": {"every_n_frames": 5},
    "selection": {"n_samples": 6},
    "shard_files": 4,  # a few shards, so the progress artifact moves
}
DEMO = {"frames_per_video": 30, "width": 160, "height": 96}


def _prefect_yaml() -> dict:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


# --- prefect.yaml and the job templates, without a server -------------------------------------


def test_prefect_yaml_declares_both_deployments_with_limits_and_validation():
    config = _prefect_yaml()
    assert config["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ checkout.stdout }}"}}
    ]
    (build,) = config["build"]
    assert build["prefect.deployments.steps.run_shell_script"]["id"] == "checkout"
    deployments = {
        d["name"]: d for d in config["deployments"] if d["entrypoint"] == "flows/curate.py:curate"
    }
    assert set(deployments) == set(DEPLOYMENTS)
    # The fan-out child: on the GPU pool, with no deployment concurrency limit (#16027).
    (child,) = [
        d for d in config["deployments"] if d["entrypoint"] == "flows/embed_shards.py:embed_shards"
    ]
    assert child["name"] == "gpu" and child["work_pool"]["name"] == "winnow-gpu"
    assert child["concurrency_limit"] is None and child["enforce_parameter_schema"] is True
    for d in deployments.values():
        assert d["entrypoint"] == "flows/curate.py:curate"
        assert d["description"] and d["enforce_parameter_schema"] is True
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert d["work_pool"]["name"] in {"winnow-gpu", "winnow-cpu"}
        assert d["work_pool"]["work_queue_name"] == "default"
        assert isinstance(d["parameters"], dict)
    street = deployments["street-videos"]
    assert street["work_pool"]["name"] == "winnow-gpu"
    (schedule,) = street["schedules"]
    assert schedule["interval"] == 3600 and schedule["active"] is False
    assert deployments["on-demand"]["work_pool"]["name"] == "winnow-cpu"
    assert deployments["on-demand"]["schedules"] is None  # runs on request only


def test_every_entrypoint_loads():
    from prefect.flows import load_flow_from_entrypoint

    for d in _prefect_yaml()["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO / d["entrypoint"]), use_placeholder_flow=False)
        assert flow.fn.__name__ == d["entrypoint"].rsplit(":", 1)[1]


def _render(template: dict, values: dict | None = None) -> dict:
    """A base job template's job configuration with the variables' defaults (and `values`)."""
    from prefect.utilities.templating import apply_values
    from prefect.workers.base import BaseJobConfiguration

    defaults = BaseJobConfiguration._get_base_config_defaults(
        template["variables"].get("properties", {})
    )
    return apply_values(template["job_configuration"], {**defaults, **(values or {})})


@pytest.mark.parametrize("pool_type", ["process", "docker", "kubernetes"])
def test_job_templates_are_valid_work_pool_templates(pool_type):
    from prefect.server.schemas.actions import WorkPoolCreate

    template = json.loads((TEMPLATES / f"{pool_type}.json").read_text())
    # The server's own validation: every placeholder names a declared variable.
    WorkPoolCreate(name=f"check-{pool_type}", type=pool_type, base_job_template=template)
    assert _render(template)


def test_container_templates_request_gpus():
    kubernetes = json.loads((TEMPLATES / "kubernetes.json").read_text())
    pod = _render(kubernetes)["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    pod = _render(kubernetes, {"gpu_count": 2})["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2

    docker = json.loads((TEMPLATES / "docker.json").read_text())
    kwargs = _render(docker)["container_create_kwargs"]
    assert kwargs["device_requests"] == [{"count": -1, "capabilities": [["gpu"]]}]


def test_process_template_is_prefects_default_with_unbuffered_output():
    from prefect.workers.process import ProcessJobConfiguration

    template = json.loads((TEMPLATES / "process.json").read_text())
    config = ProcessJobConfiguration.model_validate(_render(template))
    assert config.env == {"PYTHONUNBUFFERED": "1"} and config.working_dir is None


# --- a real server: setup, deploy, worker ----------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> PrefectServer:
    """`prefect server start` with the UI on 127.0.0.1, for this module."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home"), ui=True) as s:
        yield s
        # Flush the log/event workers this process may have started before the server goes
        # (drain_all only touches existing ones: `instance()` would start a new one, and with
        # it an ephemeral server).
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all()
        EventsWorker.drain_all()


@pytest.fixture(scope="module")
def client(server):
    """A Prefect client of the module's server."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(server.api_url) as c:
        yield c


@pytest.fixture(scope="module")
def deployed(server) -> PrefectServer:
    """The documented commands: pools and queues, then every deployment of prefect.yaml."""
    setup = server.run("python", "deployments/setup.py")
    assert "work pool winnow-gpu (process, concurrency limit 1): created" in setup.stdout
    server.run("prefect", "--no-prompt", "deploy", "--all")
    return server


@pytest.fixture(scope="module")
def worker(deployed, tmp_path_factory):
    """`prefect worker start --pool winnow-cpu`, polling every 2 s."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = deployed.start_worker("winnow-cpu", log, PREFECT_WORKER_QUERY_SECONDS="2")
    proc.log = log  # type: ignore[attr-defined]
    return proc


@pytest.mark.slow
def test_setup_is_idempotent_and_sets_queue_priorities_and_pool_limits(deployed, client):
    again = deployed.run("python", "deployments/setup.py").stdout
    assert "created" not in again and "updated" not in again, again
    for pool in ("winnow-gpu", "winnow-cpu"):
        work_pool = client.read_work_pool(pool)
        assert work_pool.type == "process" and work_pool.concurrency_limit == 1
        priorities = {q.name: q.priority for q in client.read_work_queues(work_pool_name=pool)}
        assert priorities == {"critical": 1, "default": 2, "low": 3}


@pytest.mark.slow
def test_deployments_run_from_this_checkout_one_at_a_time(deployed, client):
    for name in DEPLOYMENTS:
        d = client.read_deployment_by_name(f"curate/{name}")
        # The pull step got the checkout's absolute path at deploy time.
        assert d.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        assert d.entrypoint == "flows/curate.py:curate"
        assert d.enforce_parameter_schema is True
        assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1
        assert d.concurrency_options.collision_strategy.value == "ENQUEUE"
        assert d.work_queue_name == "default" and d.description
    street = client.read_deployment_by_name("curate/street-videos")
    (schedule,) = street.schedules
    assert schedule.schedule.interval == timedelta(hours=1) and schedule.active is False
    assert street.work_pool_name == "winnow-gpu"
    assert street.parameters["source"].startswith("s3://")
    assert client.read_deployment_by_name("curate/on-demand").schedules == []


def _definition(schema: dict, prop: dict) -> dict:
    """The schema of a nested model parameter (followed through `$ref` / `allOf`)."""
    ref = prop.get("$ref") or (prop.get("allOf") or [{}])[0].get("$ref")
    return schema["definitions"][ref.rsplit("/", 1)[-1]] if ref else prop


def _undocumented(schema: dict) -> list[str]:
    """Form fields without a title or a description (a nested model may carry it)."""
    return [
        f"{owner}.{name}"
        for owner, model in [("flow", schema), *schema.get("definitions", {}).items()]
        for name, field in model.get("properties", {}).items()
        if not field.get("title")
        or not (field.get("description") or _definition(schema, field).get("description"))
    ]


@pytest.mark.slow
def test_parameters_render_as_a_typed_form(deployed, client):
    schema = client.read_deployment_by_name("curate/on-demand").parameter_openapi_schema
    props = schema["properties"]
    assert schema["required"] == ["source"]
    assert set(props) >= {"source", "output", "frames", "embedding", "selection", "storage"}
    assert props["shard_files"]["default"] == 32 and props["shard_files"]["minimum"] == 1
    n_samples = _definition(schema, props["selection"])["properties"]["n_samples"]
    assert n_samples["default"] == 50
    assert {"type": "integer", "minimum": 1} in n_samples["anyOf"]  # an int ≥ 1, or empty
    weights = _definition(schema, props["embedding"])["properties"]["weights"]
    assert weights["default"] == "default"
    # Every field of the form has a title and a description, nested models included. (Prefect
    # 3.9 reads a top-level parameter's description from the flow docstring's `Args:`, not from
    # `Annotated[..., Field(description=...)]`.)
    undocumented = _undocumented(schema)
    assert not undocumented, f"form fields without a title or description: {undocumented}"


@pytest.mark.slow
def test_bad_parameters_are_rejected_before_a_run_exists(deployed, client):
    before = len(client.read_flow_runs())
    cases = [
        (
            ["-p", "source=/tmp/raw", "-p", 'selection={"n_samples": -1}'],
            "Validation failed for field 'selection.n_samples'",
        ),
        (["-p", 'selection={"n_samples": 5}'], "'source' is a required property"),
    ]
    for params, message in cases:
        result = deployed.run(
            "prefect", "deployment", "run", "curate/on-demand", *params, check=False
        )
        assert result.returncode == 1
        assert message in result.stdout + result.stderr
    assert len(client.read_flow_runs()) == before


@pytest.mark.slow
def test_urgent_runs_jump_the_queue(deployed, client):
    # No worker polls winnow-gpu here: ask the server what a worker would get next, which is
    # exactly the call a worker makes. The pool's limit of 1 lets one run through: the most
    # urgent, however late it was queued.
    street = client.read_deployment_by_name("curate/street-videos")
    runs = {
        queue: client.create_flow_run_from_deployment(street.id, work_queue_name=queue)
        for queue in ("low", "default", "critical")
    }
    try:
        soon = datetime.now(UTC) + timedelta(seconds=10)
        offered = client.get_scheduled_flow_runs_for_work_pool("winnow-gpu", scheduled_before=soon)
        assert [r.flow_run.id for r in offered] == [runs["critical"].id]
        offered = client.get_scheduled_flow_runs_for_work_pool(
            "winnow-gpu", work_queue_names=["low", "default"], scheduled_before=soon
        )
        assert [r.flow_run.id for r in offered] == [runs["default"].id]
    finally:
        for run in runs.values():
            client.delete_flow_run(run.id)


# --- two runs through a worker ---------------------------------------------------------------


def _wait_for_final_state(client, flow_run_id: str, worker, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.is_final():
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    if not (run.state and run.state.is_completed()):
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        text = "\n".join(f"{log.level} {log.message}" for log in logs[-60:])
        raise AssertionError(
            f"flow run {flow_run_id} ended in {run.state!r}\n--- run logs\n{text}"
            f"\n--- worker log\n{tail(worker.log)}"
        )
    return run


def _artifacts(client, flow_run_id) -> dict[str, list]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    found: dict[str, list] = {}
    for artifact in client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    ):
        found.setdefault(artifact.type, []).append(artifact)
    return found


RUN_FROM_PYTHON = """
import json, sys
from prefect.deployments import run_deployment
run = run_deployment(
    "curate/on-demand", parameters=json.loads(sys.argv[1]), work_queue_name="critical", timeout=0
)
print(run.id)
"""


def _run_from_cli(server: PrefectServer, params: dict) -> str:
    """`prefect deployment run curate/on-demand -p name=<json> ...`; return the run's id."""
    args = [arg for name, value in params.items() for arg in ("-p", f"{name}={json.dumps(value)}")]
    out = server.run("prefect", "deployment", "run", "curate/on-demand", *args).stdout
    return UUID_RE.search(out.split("UUID:", 1)[1]).group(0)


@pytest.fixture(scope="module")
def runs(deployed, worker, client, tmp_path_factory):
    """curate/on-demand through the worker, the ways users start it.

    1. `first`: from the CLI, on 4 media files and 8 broken ones;
    2. `queued`: the same request again at once: it waits for the pool's one slot, then finds
       nothing new;
    3. `second`: after 2 new files arrive, from Python, in the `critical` queue.
    """
    from winnow import demo
    from winnow.storage import LocalStore

    root = tmp_path_factory.mktemp("bucket")
    source, output = root / "raw", root / "curated"
    store = LocalStore(source)
    first_keys = demo.write_demo_files(store, n_videos=2, n_images=2, first=0, seed=0, **DEMO)
    broken = demo.write_corrupt_files(store)
    params = {"source": str(source), "output": str(output), **FAST}

    started = time.monotonic()
    first_id = _run_from_cli(deployed, params)
    queued_id = _run_from_cli(deployed, params)
    first = _wait_for_final_state(client, first_id, worker)
    first_seconds = time.monotonic() - started
    queued = _wait_for_final_state(client, queued_id, worker)

    second_keys = demo.write_demo_files(store, n_videos=1, n_images=1, first=2, seed=0, **DEMO)
    started = time.monotonic()
    py = deployed.run("python", "-c", RUN_FROM_PYTHON, json.dumps(params))
    second = _wait_for_final_state(client, py.stdout.split()[-1], worker)
    second_seconds = time.monotonic() - started
    print(f"\nrequest -> Completed: run 1 {first_seconds:.1f} s, run 2 {second_seconds:.1f} s")
    return {
        "source": source,
        "output": output,
        "first": first,
        "queued": queued,
        "second": second,
        "keys": {"first": [*first_keys, *broken], "second": list(second_keys)},
        "broken": broken,
    }


@pytest.mark.slow
def test_on_demand_runs_curate_new_files_into_one_tag_each(runs):
    from winnow.datapool import Datapool
    from winnow.storage import LocalStore

    first, second = runs["first"], runs["second"]
    assert first.work_queue_name == "default" and second.work_queue_name == "critical"
    out = LocalStore(runs["output"])
    pool = Datapool(out.child("pool")).load()
    assert pool.version == 2
    assert [t.name for t in pool.tags] == ["run-0001", "run-0002"]
    assert [t.run_id for t in pool.tags] == [str(first.id), str(second.id)]
    assert pool.tags[1].parent == "run-0001"
    assert len(pool.tags[0].sample_ids) == len(pool.tags[1].sample_ids) == 6
    assert not set(pool.tags[0].sample_ids) & set(pool.tags[1].sample_ids)
    # Every file was processed once, by the run that first saw it; broken ones are recorded.
    keys, run_ids, statuses = (
        pool.files.column(c).to_pylist() for c in ("key", "run_id", "status")
    )
    run_of = dict(zip(keys, run_ids, strict=True))
    assert len(keys) == len(runs["keys"]["first"]) + len(runs["keys"]["second"])
    assert {run_of[k] for k in runs["keys"]["first"]} == {str(first.id)}
    assert {run_of[k] for k in runs["keys"]["second"]} == {str(second.id)}
    status = dict(zip(keys, statuses, strict=True))
    assert {k for k, v in status.items() if v != "ok"} == set(runs["broken"])
    source = LocalStore(runs["source"])
    for tag in ("run-0001", "run-0002"):
        names = out.get(f"tags/{tag}/filenames.txt").decode().split()
        assert len(names) == 6
        for name in names:  # video frames are exported as PNGs; images stay in the source
            assert out.exists(name) if name.startswith("frames/") else source.exists(name), name
        assert out.exists(f"tags/{tag}/report.html") and out.exists(f"tags/{tag}/embedding.png")


@pytest.mark.slow
def test_a_second_request_waits_for_the_first_then_finds_nothing_new(runs, client):
    first, queued = runs["first"], runs["queued"]
    # The pool's limit of 1 held it back: it started only once the first run had finished.
    assert queued.start_time >= first.end_time
    artifacts = _artifacts(client, queued.id)
    (summary,) = artifacts["markdown"]
    assert summary.data.startswith("## Nothing new") and "table" not in artifacts


@pytest.mark.slow
@pytest.mark.parametrize("name", ["first", "second"])
def test_every_run_publishes_progress_picks_and_a_summary(runs, client, name):
    run, keys = runs[name], runs["keys"][name]
    tag = {"first": "run-0001", "second": "run-0002"}[name]
    artifacts = _artifacts(client, run.id)

    (progress,) = artifacts["progress"]  # created at 0 %, then updated as shards finished
    assert progress.data == 100 and progress.updated > progress.created
    shards = -(-len(keys) // FAST["shard_files"])
    assert progress.description.startswith(f"decode + embed: {shards}/{shards} shards, ")
    assert " frames (" in progress.description  # frames are counted too, not only shards

    (table,) = artifacts["table"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert len(rows) == 6 and table.description == f"Samples selected into tag {tag}"
    for row in rows:
        assert {"key", "frame", "distance_to_dataset", "thumbnail"} <= set(row)
        assert row["key"] in keys and row["thumbnail"].startswith("file://")

    markdown = {a.description: a.data for a in artifacts["markdown"]}
    summary = markdown.pop("Winnow run summary")
    assert f"## Tag `{tag}`" in summary
    assert f"| new or changed | {len(keys)} |" in summary and "| selected | 6 " in summary
    assert "| coverage radius before → after |" in summary
    assert "[report](file://" in summary and "[embedding_plot](file://" in summary
    broken = runs["broken"] if name == "first" else {}
    assert "| corrupt | " in summary
    if broken:  # listed with the reason each could not be decoded
        assert "### Corrupt or skipped files" in summary
        for key in broken:
            assert re.search(rf"\| `{re.escape(key)}` \| \S", summary), key
    assert sorted(markdown) == ["embedding_plot", "report"]  # the link artifacts


@pytest.mark.slow
def test_the_ui_shows_the_runs_artifacts(runs, server, client, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    run = runs["second"]
    summary = next(
        a for a in _artifacts(client, run.id)["markdown"] if a.description == "Winnow run summary"
    )
    browser = Browser(chromium, tmp_path / "chromium")
    try:
        browser.open(f"{server.url}/runs/flow-run/{run.id}")
        browser.wait_for_text(run.name, "Completed", "winnow-cpu", "critical")
        browser.click_text("Artifacts")
        browser.wait_for_text(
            "Winnow run summary",
            "Samples selected into tag run-0002",
            "PROGRESS",
            "decode + embed: 1/1 shards",
            "embedding_plot",
        )
        shot = browser.screenshot(SCREENSHOTS / "flow-run-artifacts.png")
        (SCREENSHOTS / "flow-run-artifacts.html").write_text(browser.dom())

        browser.open(f"{server.url}/artifacts/artifact/{summary.id}")
        browser.wait_for_text("Tag run-0002", "files listed", "new or changed", "report")
        browser.screenshot(SCREENSHOTS / "run-summary.png")
    finally:
        browser.close()
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one

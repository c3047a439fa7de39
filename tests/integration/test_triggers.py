"""Event-driven runs: S3 notifications → relay → `winnow.object.created` → curate/on-upload.

The fast tests feed the relay the message shapes AWS documents. The slow one deploys the
`on-upload` deployment of prefect.yaml (its trigger as written, only the window shortened) to a
real server with a process worker, posts events through the relay's code for objects really
written to a moto S3 bucket, and counts the flow runs the trigger creates.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.parse
from datetime import UTC, datetime

import pytest
import yaml

from tests.integration.prefect_server import REPO, PrefectServer, prefect_server, tail

RELAY_PATH = REPO / "deployments" / "s3_event_relay.py"
WINDOW = 8  # seconds: the test's `within` (and `schedule_after`), instead of prefect.yaml's 300
FAST = {
    "embedding": {"weights": "none", "input_size": 64, "batch_size": 32},
    "frames": {"every_n_frames": 5},
    "selection": {"n_samples": 3},
}
DEMO = {"frames_per_video": 20, "width": 128, "height": 80}


def _relay():
    spec = importlib.util.spec_from_file_location("s3_event_relay", RELAY_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


relay = _relay()


def _s3_record(bucket: str, key: str, *, size=1024, etag="0123456789abcdef", when=None) -> dict:
    """One record of an S3 event notification, as S3 puts it in an SQS message body."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": when or datetime.now(UTC).isoformat(timespec="milliseconds"),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "winnow",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": urllib.parse.quote_plus(key, safe="/"),
                "size": size,
                "eTag": etag,
                "sequencer": "0A1B2C3D4E5F678901",
            },
        },
    }


def _sqs_body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


# --- the relay, without a server -------------------------------------------------------------


def test_an_s3_notification_becomes_one_event_per_object_with_its_source():
    body = _sqs_body(
        _s3_record("cams", "raw/cam 1/drive+1.mp4", size=42, etag='"abc"'),
        _s3_record("cams", "raw/cam2/b.jpg"),
    )
    first, second = relay.events_from_message(body, sources=["s3://cams/raw"])
    assert first["event"] == "winnow.object.created"
    assert first["resource"] == {
        "prefect.resource.id": "s3://cams/raw/cam 1/drive+1.mp4",  # form-decoded key
        "prefect.resource.name": "raw/cam 1/drive+1.mp4",
        "winnow.source": "s3://cams/raw",
        "winnow.bucket": "cams",
    }
    assert first["payload"]["size"] == 42 and first["payload"]["etag"] == "abc"
    assert first["payload"]["event_name"] == "ObjectCreated:Put"
    assert first["occurred"].endswith("+00:00") and first["id"] != second["id"]
    # Redelivered by SQS: the same id, so the server counts it once.
    (again, _) = relay.events_from_message(body, sources=["s3://cams/raw"])
    assert again["id"] == first["id"]


def test_an_eventbridge_object_created_event_becomes_an_event():
    message = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2025-03-01T10:00:00Z",
        "resources": ["arn:aws:s3:::cams"],
        "detail": {
            "version": "0",
            "bucket": {"name": "cams"},
            "object": {"key": "raw/12:00 x.mp4", "size": 7, "etag": "e1", "sequencer": "01"},
            "reason": "PutObject",
        },
    }
    (event,) = relay.events_from_message(json.dumps(message), sources=["s3://cams/raw"])
    assert event["resource"]["prefect.resource.id"] == "s3://cams/raw/12:00 x.mp4"
    assert event["occurred"] == "2025-03-01T10:00:00+00:00"
    assert event["payload"] | {"sequencer": None} == {
        "size": 7,
        "etag": "e1",
        "event_time": "2025-03-01T10:00:00+00:00",
        "event_name": "ObjectCreated:PutObject",
        "sequencer": None,
    }


def test_only_created_objects_under_a_source_are_relayed():
    sources = ["s3://cams/raw", "s3://cams/raw/night"]
    deleted = {**_s3_record("cams", "raw/a.mp4"), "eventName": "ObjectRemoved:Delete"}
    body = _sqs_body(
        _s3_record("cams", "raw/night/n.mp4"),  # the longest source wins
        _s3_record("cams", ".winnow/frames/a-0001.png"),  # Winnow's own output: no run
        _s3_record("cams", "rawish/x.mp4"),
        _s3_record("other", "raw/x.mp4"),
        _s3_record("cams", "raw/folder/"),
        deleted,
    )
    (event,) = relay.events_from_message(body, sources=sources)
    assert event["resource"]["winnow.source"] == "s3://cams/raw/night"
    sns = {"Type": "Notification", "Message": _sqs_body(_s3_record("cams", "raw/a.mp4"))}
    assert len(relay.events_from_message(json.dumps(sns), sources=sources)) == 1
    assert relay.events_from_message('{"Event": "s3:TestEvent"}', sources=sources) == []
    with pytest.raises(ValueError, match="not an S3 or EventBridge notification"):
        relay.events_from_message('{"hello": 1}', sources=sources)


def test_the_command_line_requires_s3_sources(capsys):
    with pytest.raises(SystemExit):
        relay.main(["--queue-url", "q", "--api-url", "http://x/api", "--source", "/local"])
    assert "--source must be s3://" in capsys.readouterr().err


class _FakeSQS:
    """The two SQS calls the relay makes, over a list of bodies."""

    def __init__(self, bodies: list[str]) -> None:
        self.messages = [
            {"MessageId": str(i), "ReceiptHandle": f"rh{i}", "Body": b}
            for i, b in enumerate(bodies)
        ]
        self.deleted: list[str] = []

    def receive_message(self, **_):
        return {"Messages": self.messages}

    def delete_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's names
        self.deleted += [e["ReceiptHandle"] for e in Entries]


def test_queue_messages_are_deleted_only_once_their_events_were_accepted(monkeypatch):
    sqs = _FakeSQS([_sqs_body(_s3_record("cams", "raw/a.mp4")), "not json", '{"x": 1}'])
    posted = []
    monkeypatch.setattr(relay, "post_events", lambda api, events: posted.extend(events))
    n = relay.poll_queue("q", api_url="http://x/api", sources=["s3://cams/raw"], sqs=sqs, once=True)
    assert n == 1 and len(posted) == 1
    assert sqs.deleted == ["rh0"]  # the two bad bodies stay for the dead-letter queue

    def refuse(api, events):
        raise relay.urllib.error.URLError("down")

    monkeypatch.setattr(relay, "post_events", refuse)
    monkeypatch.setattr(relay.time, "sleep", lambda s: None)
    sqs = _FakeSQS([_sqs_body(_s3_record("cams", "raw/a.mp4"))])
    assert relay.poll_queue("q", api_url="u", sources=["s3://cams/raw"], sqs=sqs, once=True) == 0
    assert sqs.deleted == []  # redelivered later


def test_prefect_yaml_triggers_on_upload_once_per_burst_and_source():
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    d = next(d for d in config["deployments"] if d["name"] == "on-upload")
    (trigger,) = d["triggers"]
    assert trigger["expect"] == [relay.EVENT_NAME] and trigger["for_each"] == ["winnow.source"]
    assert trigger["threshold"] == 1 and trigger["within"] >= 60
    assert trigger["schedule_after"] == trigger["within"]  # lists after the window closes
    assert trigger["parameters"] == {"source": "{{ event.resource['winnow.source'] }}"}
    assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    DeploymentEventTrigger.model_validate(trigger)  # what `prefect deploy` builds


# --- a real server, worker and trigger -------------------------------------------------------


# sitecustomize of the worker's flow-run processes: while <hold>/closed exists, a run that has
# staged a shard waits (it writes <hold>/held once), so run 1 is still running when run 2 is due.
HOLD = """
import os, time
hold = os.environ.get("WINNOW_HOLD_DIR")
if hold:
    from winnow import datapool

    _real_stage = datapool.Datapool.stage_shard

    def stage_shard(self, *args, **kwargs):
        _real_stage(self, *args, **kwargs)
        deadline = time.monotonic() + 300
        while os.path.exists(os.path.join(hold, "closed")) and time.monotonic() < deadline:
            open(os.path.join(hold, "held"), "a").close()
            time.sleep(0.2)

    datapool.Datapool.stage_shard = stage_shard
"""


def _test_prefect_yaml(tmp_path, endpoint: str):
    """prefect.yaml with only on-upload: its trigger as written but a WINDOW-second window."""
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (d,) = [d for d in config["deployments"] if d["name"] == "on-upload"]
    for trigger in d["triggers"]:
        for name in ("within", "schedule_after"):
            if name in trigger:  # shortened, never added: a trigger without one must fail
                trigger[name] = WINDOW
    d["parameters"] = {**d["parameters"], **FAST, "storage": {"endpoint_url": endpoint}}
    config["deployments"] = [d]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with prefect_server(tmp_path_factory.mktemp("prefect-home"), ui=False) as s:
        yield s


def _upload(store, bucket: str, s3, *, first: int, n_videos: int, n_images: int) -> list[dict]:
    """Write demo files to raw/ and return their S3 notification records (real size, ETag)."""
    from winnow import demo

    keys = demo.write_demo_files(
        store, n_videos=n_videos, n_images=n_images, first=first, seed=first, **DEMO
    )
    records = []
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=f"raw/{key}")
        records.append(
            _s3_record(bucket, f"raw/{key}", size=head["ContentLength"], etag=head["ETag"])
        )
    return records


def _runs(client, deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )


def _wait(predicate, timeout: float, what: str, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{tail(log)}" if log else ""))


@pytest.mark.slow
def test_bursts_of_uploads_start_one_queued_run_each(server: PrefectServer, s3_endpoint, tmp_path):
    import boto3
    from prefect.client.orchestration import SyncPrefectClient

    from winnow.datapool import Datapool
    from winnow.storage import S3Options, open_store

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"winnow-trig-{int(time.time())}"
    s3.create_bucket(Bucket=bucket)
    options = S3Options(endpoint_url=s3_endpoint, region="us-east-1", max_attempts=2)
    raw = open_store(f"s3://{bucket}/raw", options)
    sources = [f"s3://{bucket}/raw"]

    server.run("python", "deployments/setup.py")
    server.run(
        "prefect", "--no-prompt", "deploy", "--all",
        "--prefect-file", str(_test_prefect_yaml(tmp_path, s3_endpoint)),
    )  # fmt: skip
    log = tmp_path / "worker.log"
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "sitecustomize.py").write_text(HOLD)
    (hold / "closed").touch()  # run 1 waits after its first staged shard until the test opens it
    server.start_worker(
        "winnow-gpu", log, PREFECT_WORKER_QUERY_SECONDS="2",
        PYTHONPATH=f"{hold}{os.pathsep}{REPO}", WINNOW_HOLD_DIR=str(hold),
    )  # fmt: skip

    with SyncPrefectClient(server.api_url) as client:
        deployment = client.read_deployment_by_name("curate/on-upload")
        started = time.monotonic()
        # Burst 1: 3 uploads, then 2 more a few seconds later, inside the window.
        burst1 = _upload(raw, bucket, s3, first=0, n_videos=2, n_images=1)
        events = relay.relay_bodies(
            [_sqs_body(r) for r in burst1], api_url=server.api_url, sources=sources
        )
        time.sleep(3)
        late = _upload(raw, bucket, s3, first=3, n_videos=1, n_images=1)
        events += relay.relay_bodies([_sqs_body(*late)], api_url=server.api_url, sources=sources)
        assert len(events) == 5
        (first,) = _wait(lambda: _runs(client, deployment.id), 30, "a triggered run", log)
        assert first.parameters["source"] == sources[0]  # from the event, by the trigger
        # Scheduled a window after the first event: it lists what the late events announced.
        window_end = datetime.fromisoformat(events[0]["occurred"]).timestamp() + WINDOW
        assert first.expected_start_time.timestamp() >= window_end
        _wait(lambda: _listed(client, first.id), 90, "run 1 to list the source", log)
        first_seconds = time.monotonic() - started

        # Burst 2, after the window, once run 1 has listed the source and while it still runs:
        # one more run, which must wait for it.
        burst2 = _upload(raw, bucket, s3, first=5, n_videos=1, n_images=1)
        events2 = relay.relay_bodies(
            [_sqs_body(r) for r in burst2], api_url=server.api_url, sources=sources
        )
        assert len(events2) == 2
        runs = _wait(
            lambda: (r := _runs(client, deployment.id)) and len(r) >= 2 and r, 30, "run 2", log
        )
        second = runs[1]
        # Hold run 1 until run 2 is past due, so that run 2 has to wait for it.
        _wait(lambda: (hold / "held").exists(), 90, "run 1 to stage a shard", log)
        due = second.expected_start_time.timestamp()
        _wait(lambda: time.time() > due + 3, WINDOW + 30, "run 2 to be due")
        assert not client.read_flow_run(first.id).state.is_final()
        assert client.read_flow_run(second.id).start_time is None  # due, and still waiting
        (hold / "closed").unlink()
        first = _wait_final(client, first.id, 240, log)
        second = _wait_final(client, second.id, 240, log)
        total_seconds = time.monotonic() - started
        time.sleep(2)  # nothing else trickles in
        assert [r.id for r in _runs(client, deployment.id)] == [first.id, second.id]

        # Run 2 was due while run 1 ran, and waited for it: one run at a time (the pool's limit
        # holds it in Scheduled; the deployment's ENQUEUE limit would hold it in
        # AwaitingConcurrencySlot, test_deployments.py's `queued` run shows that one).
        print(
            f"\nrun 1 {first.start_time} -> {first.end_time}; run 2 due "
            f"{second.expected_start_time}, ran {second.start_time} -> {second.end_time}"
        )
        assert second.expected_start_time < first.end_time <= second.start_time
    print(
        f"\n5 + 2 events -> 2 runs; run 1 listed {first_seconds:.1f} s after the first event, "
        f"both Completed after {total_seconds:.1f} s"
    )

    # Each run curated exactly the files of its burst, late ones included.
    summaries = [_summary_artifact(server, run.id) for run in (first, second)]
    for summary, n_new in zip(summaries, (5, 2), strict=True):
        assert f"| new or changed | {n_new} |" in summary, summary
    pool = Datapool(open_store(f"s3://{bucket}/.winnow/pool", options)).load()
    assert [t.run_id for t in pool.tags] == [str(first.id), str(second.id)]
    keys, run_ids = (pool.files.column(c).to_pylist() for c in ("key", "run_id"))
    by_run = {
        rid: sorted(k for k, r in zip(keys, run_ids, strict=True) if r == rid) for rid in run_ids
    }
    expected = [sorted(_key(r) for r in burst1 + late), sorted(_key(r) for r in burst2)]
    assert [by_run[str(first.id)], by_run[str(second.id)]] == expected


def _key(record: dict) -> str:
    return urllib.parse.unquote_plus(record["s3"]["object"]["key"]).removeprefix("raw/")


def _summary_artifact(server: PrefectServer, flow_run_id) -> str:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with SyncPrefectClient(server.api_url) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    (summary,) = [a for a in artifacts if a.description == "Winnow run summary"]
    return summary.data


def _listed(client, flow_run_id) -> bool:
    """Whether the run's `discover` task has finished (it has listed the source)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="discover")),
    )
    return any(t.state and t.state.is_completed() for t in tasks)


def _wait_final(client, flow_run_id, timeout: float, log):
    run = _wait(
        lambda: (r := client.read_flow_run(flow_run_id)).state.is_final() and r,
        timeout,
        f"run {flow_run_id} to end",
        log,
    )
    assert run.state.is_completed(), f"{run.state!r}\n{tail(log)}"
    return run

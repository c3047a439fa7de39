r"""Relay S3 "object created" notifications to a Prefect server as `winnow.object.created` events.

A deployment trigger in prefect.yaml (`curate/on-upload`) turns a burst of these events into one
curate run of the object's source. This script is the bridge from the bucket to Prefect:

    # AWS: S3 -> SQS (or S3 -> EventBridge -> SQS); poll the queue
    python deployments/s3_event_relay.py --queue-url "$QUEUE_URL" --api-url http://prefect:4200/api \
        --source s3://street-videos/raw

    # MinIO: a webhook target (`mc admin config set ALIAS notify_webhook:winnow endpoint=...`)
    python deployments/s3_event_relay.py --listen 127.0.0.1:8765 --api-url http://prefect:4200/api \
        --source s3://street-videos/raw

It reads the message shapes AWS documents: S3 event notifications (`Records[].s3.bucket.name`,
`.object.key` URL-encoded, `.object.size`, `.object.eTag`, `eventTime`; also as MinIO sends
them, and wrapped in an SNS envelope), and EventBridge "Object Created" events
(`detail.bucket.name`, `detail.object.key`, `.size`, `.etag`, `time`). `s3:TestEvent` messages
and events other than object creation are dropped. Only objects under a `--source` are relayed:
Winnow's own outputs (frames, reports) written to the same bucket must not start runs.

Event (one per object), posted as a JSON list to `POST {api-url}/events`:

    {"id": uuid5(bucket, key, etag, sequencer), "occurred": <S3 event time>,
     "event": "winnow.object.created",
     "resource": {"prefect.resource.id": "s3://<bucket>/<key>", "prefect.resource.name": <key>,
                  "winnow.source": "s3://<bucket>/<prefix>", "winnow.bucket": <bucket>},
     "payload": {"size": <bytes>, "etag": <etag>, "event_time": <ISO-8601>,
                 "event_name": "ObjectCreated:Put", "sequencer": <S3 sequencer>}}

The id is derived from the object's identity, so a message SQS delivers twice (at-least-once)
posts the same event twice and the server counts it once. SQS messages are deleted only after
their events were accepted; a failed post leaves them for redelivery.

Plain Python: the standard library, plus boto3 for `--queue-url`. Import it to call
`events_from_message` and `post_events` directly (the tests do).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

EVENT_NAME = "winnow.object.created"
POST_BATCH = 200  # events per request to the events API
_NAMESPACE = uuid.UUID("5b0f6c1e-8f3a-4d53-9b3c-2f7f3d3c6a10")  # Winnow's uuid5 namespace

log = logging.getLogger("winnow.s3_event_relay")


def source_for(bucket: str, key: str, sources: Sequence[str]) -> str | None:
    """The longest of `sources` (`s3://bucket/prefix` URLs) that contains `bucket/key`, or None."""
    best: str | None = None
    for source in sources:
        src_bucket, _, prefix = source.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if src_bucket != bucket:
            continue
        if prefix and not key.startswith(prefix + "/"):
            continue
        if best is None or len(source.rstrip("/")) > len(best):
            best = source.rstrip("/")
    return best


def object_created_event(
    *,
    bucket: str,
    key: str,
    size: int | None,
    etag: str | None,
    event_time: str | None,
    source: str,
    event_name: str = "ObjectCreated",
    sequencer: str | None = None,
) -> dict[str, Any]:
    """The `winnow.object.created` event of one object (a dict ready for the events API)."""
    occurred = _iso(event_time)
    etag = (etag or "").strip('"') or None
    identity = f"{bucket}/{key}/{etag or ''}/{sequencer or occurred}"
    return {
        "id": str(uuid.uuid5(_NAMESPACE, identity)),
        "occurred": occurred,
        "event": EVENT_NAME,
        "resource": {
            "prefect.resource.id": f"s3://{bucket}/{key}",
            "prefect.resource.name": key,
            "winnow.source": source,
            "winnow.bucket": bucket,
        },
        "payload": {
            "size": size,
            "etag": etag,
            "event_time": occurred,
            "event_name": event_name,
            "sequencer": sequencer,
        },
    }


def events_from_message(body: str | bytes | dict, *, sources: Sequence[str]) -> list[dict]:
    """The events of one notification message (S3 `Records`, EventBridge, SNS-wrapped).

    Args:
        body: The message body: JSON text or the parsed object.
        sources: `s3://bucket/prefix` URLs; objects outside all of them are dropped.

    Returns:
        One event per created object under a source (empty for test events and others).

    Raises:
        ValueError: If the body is not JSON or not a notification shape this relay knows.
    """
    message = json.loads(body) if isinstance(body, str | bytes) else body
    if not isinstance(message, dict):
        raise ValueError(f"not a notification: {str(message)[:200]}")
    if message.get("Type") == "Notification" and "Message" in message:  # SNS envelope
        return events_from_message(message["Message"], sources=sources)
    if message.get("Event") == "s3:TestEvent":  # sent when a notification is configured
        return []
    if "Records" in message:
        return [e for r in message["Records"] or [] if (e := _from_record(r, sources))]
    if message.get("source") == "aws.s3" and "detail" in message:
        event = _from_eventbridge(message, sources)
        return [event] if event else []
    raise ValueError(f"not an S3 or EventBridge notification: {json.dumps(message)[:200]}")


def _from_record(record: dict, sources: Sequence[str]) -> dict | None:
    name = record.get("eventName", "")
    if not name.removeprefix("s3:").startswith("ObjectCreated"):
        return None
    s3 = record["s3"]
    bucket = s3["bucket"]["name"]
    # Keys in S3 notifications are form-encoded ("red flower.jpg" -> "red+flower.jpg").
    key = urllib.parse.unquote_plus(s3["object"]["key"])
    source = source_for(bucket, key, sources)
    if source is None or key.endswith("/"):
        return None
    obj = s3["object"]
    return object_created_event(
        bucket=bucket,
        key=key,
        size=obj.get("size"),
        etag=obj.get("eTag") or obj.get("etag"),
        event_time=record.get("eventTime"),
        source=source,
        event_name=name.removeprefix("s3:"),
        sequencer=obj.get("sequencer"),
    )


def _from_eventbridge(message: dict, sources: Sequence[str]) -> dict | None:
    if message.get("detail-type") != "Object Created":
        return None
    detail = message["detail"]
    bucket, obj = detail["bucket"]["name"], detail["object"]
    key = obj["key"]  # EventBridge gives the key as stored (not form-encoded)
    source = source_for(bucket, key, sources)
    if source is None or key.endswith("/"):
        return None
    return object_created_event(
        bucket=bucket,
        key=key,
        size=obj.get("size"),
        etag=obj.get("etag"),
        event_time=message.get("time"),
        source=source,
        event_name=f"ObjectCreated:{detail.get('reason', '')}".rstrip(":"),
        sequencer=obj.get("sequencer"),
    )


def _iso(value: str | None) -> str:
    """An ISO-8601 UTC time (S3's `1970-01-01T00:00:00.000Z` style), now if missing."""
    if not value:
        return datetime.now(UTC).isoformat()
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).isoformat()


def _auth_headers() -> dict[str, str]:
    """The Prefect API's auth, from the same variables the Prefect CLI reads."""
    if key := os.environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {key}"}
    if basic := os.environ.get("PREFECT_API_AUTH_STRING"):
        return {"Authorization": "Basic " + base64.b64encode(basic.encode()).decode()}
    return {}


def post_events(api_url: str, events: Sequence[dict], *, timeout: float = 30) -> None:
    """POST the events to `{api_url}/events` (JSON lists of at most `POST_BATCH`).

    Raises:
        urllib.error.URLError: If the server cannot be reached or refuses the events.
    """
    url = api_url.rstrip("/") + "/events"
    headers = {"Content-Type": "application/json", **_auth_headers()}
    for start in range(0, len(events), POST_BATCH):
        data = json.dumps(list(events[start : start + POST_BATCH])).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status >= 300:
                raise urllib.error.URLError(f"{url} answered {response.status}")


def relay_bodies(
    bodies: Iterable[str | bytes | dict], *, api_url: str, sources: Sequence[str]
) -> list[dict]:
    """Turn message bodies into events and post them; return the events posted.

    Raises:
        ValueError: If a body is not a notification (nothing is posted then).
        urllib.error.URLError: If posting fails.
    """
    events = [e for body in bodies for e in events_from_message(body, sources=sources)]
    if events:
        post_events(api_url, events)
    return events


def poll_queue(
    queue_url: str,
    *,
    api_url: str,
    sources: Sequence[str],
    sqs: Any = None,
    once: bool = False,
    wait_seconds: int = 20,
) -> int:
    """Long-poll an SQS queue forever (or one receive with `once`); return the events posted.

    A message is deleted once its events were accepted, or when it holds none (test events,
    deletions, objects outside the sources). One that is not a notification stays in the queue
    (give the queue a dead-letter queue); a failed post leaves the whole batch for redelivery.
    """
    if sqs is None:
        import boto3

        sqs = boto3.client("sqs")
    posted = 0
    while True:
        reply = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        )
        done, events = [], []
        for message in reply.get("Messages", []):
            try:
                events += events_from_message(message["Body"], sources=sources)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("message %s left in the queue: %s", message.get("MessageId"), exc)
                continue
            done.append(message)
        try:
            if events:
                post_events(api_url, events)
        except (urllib.error.URLError, OSError) as exc:
            log.warning(
                "posting %d events failed (%s); messages will be redelivered", len(events), exc
            )
            time.sleep(5)
        else:
            posted += len(events)
            if events:
                log.info("posted %d %s events", len(events), EVENT_NAME)
            for start in range(0, len(done), 10):
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ]
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        if once:
            return posted


def serve_webhook(listen: str, *, api_url: str, sources: Sequence[str]) -> None:
    """Accept notifications POSTed to `http://<listen>/` (a MinIO webhook target) forever.

    Answers 200 once the events were posted, 400 for a body that is not a notification, 502 when
    the Prefect server did not take them (MinIO keeps and retries events when its webhook target
    has a `queue_dir`).
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                events = relay_bodies([body], api_url=api_url, sources=sources)
                status = 200
                log.info("posted %d %s events", len(events), EVENT_NAME)
            except (ValueError, KeyError, TypeError) as exc:
                status = 400
                log.warning("not a notification: %s", exc)
            except (urllib.error.URLError, OSError) as exc:
                status = 502
                log.warning("posting to %s failed: %s", api_url, exc)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Command line: poll an SQS queue, or listen for webhooks, and relay to Prefect."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--queue-url", help="SQS queue receiving S3 or EventBridge notifications")
    mode.add_argument("--listen", metavar="HOST:PORT", help="serve a webhook (MinIO targets)")
    parser.add_argument(
        "--api-url",
        default=os.environ.get("PREFECT_API_URL"),
        help="the Prefect server's API URL (default: $PREFECT_API_URL)",
    )
    parser.add_argument(
        "--source",
        action="append",
        required=True,
        help="s3://bucket/prefix whose new objects start runs (repeatable); others are ignored",
    )
    parser.add_argument("--once", action="store_true", help="one SQS receive, then exit")
    args = parser.parse_args(argv)
    if not args.api_url:
        parser.error("--api-url (or PREFECT_API_URL) is required")
    if bad := [s for s in args.source if not s.startswith("s3://")]:
        parser.error(f"--source must be s3://bucket/prefix URLs: {bad}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.queue_url:
        poll_queue(args.queue_url, api_url=args.api_url, sources=args.source, once=args.once)
    else:
        serve_webhook(args.listen, api_url=args.api_url, sources=args.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())

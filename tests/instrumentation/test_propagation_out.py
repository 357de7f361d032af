"""Trace propagation out through AWS (SPEC section 5), against moto in server mode on loopback.

SQS ``SendMessage`` / ``SendMessageBatch`` and SNS ``Publish`` / ``PublishBatch`` calls made by a
monitored handler carry a ``traceparent`` message attribute naming the call's own span, which a
consumer receives from the queue (SNS through an SQS subscription); EventBridge entries carry an
X-Ray ``TraceHeader``; every AWS request carries an X-Ray header that keeps the ``Root`` and
``Lineage`` the Lambda runtime set. Nothing pushes a message past the 10-attribute limit, the
caller's parameters are never mutated, and ``OTEL_PROPAGATORS=none`` turns it all off.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto_server import ACCOUNT, REGION, MotoServer

import lambdascope
from lambdascope._propagation import extract, parse_xray
from lambdascope.testing import capture_reports, fake_context

RUNTIME_ROOT = "1-65f0c1d2-0123456789abcdef01234567"
RUNTIME_TRACE_ID = "65f0c1d20123456789abcdef01234567"
RUNTIME_HEADER = f"Root={RUNTIME_ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1"
CALLERS_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_runtime_trace_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)


@pytest.fixture
def sqs(moto: MotoServer) -> Any:
    return moto.client("sqs")


@pytest.fixture
def queue_url(sqs: Any) -> str:
    """A fresh queue per test."""
    return sqs.create_queue(QueueName=f"out-{uuid.uuid4().hex[:12]}")["QueueUrl"]


def run(handler: Callable[..., Any], validate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    with capture_reports() as reports:
        handler({}, fake_context())
    assert len(reports) == 1, reports
    return validate(reports[0])


def span_named(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in report["spans"] if s["name"] == name]
    assert len(found) == 1, [s["name"] for s in report["spans"]]
    return found[0]


def expected_traceparent(report: dict[str, Any], span: dict[str, Any]) -> str:
    return f"00-{report['trace']['trace_id']}-{span['span_id']}-01"


def receive_all(sqs: Any, queue_url: str, count: int) -> list[dict[str, Any]]:
    """``count`` messages from the queue, with all their message attributes."""
    messages: list[dict[str, Any]] = []
    for _ in range(10):
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
            AttributeNames=["All"], WaitTimeSeconds=0,
        ).get("Messages", [])  # fmt: skip
        messages += got
        if len(messages) >= count:
            break
    assert len(messages) == count, messages
    return messages


def attribute(message: dict[str, Any], name: str = "traceparent") -> str | None:
    entry = (message.get("MessageAttributes") or {}).get(name)
    return entry["StringValue"] if entry else None


def user_attributes(count: int) -> dict[str, dict[str, str]]:
    return {f"attr{i}": {"DataType": "String", "StringValue": f"v{i}"} for i in range(count)}


class Capture:
    """Requests as botocore is about to send them (a ``before-send`` handler)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    def __call__(self, request: Any = None, event_name: str = "", **kwargs: Any) -> None:
        body = request.body
        if hasattr(body, "read"):
            body = b""
        if isinstance(body, str):
            body = body.encode()
        self.requests.append((event_name, dict(request.headers), body or b""))

    def header(self, index: int, name: str) -> str | None:
        headers = self.requests[index][1]
        for key, value in headers.items():
            if key.lower() == name.lower():
                return value.decode() if isinstance(value, bytes) else value
        return None


# -- SQS -------------------------------------------------------------------------------------


def test_send_message_carries_traceparent_of_its_span(
    sqs: Any, queue_url: str, validate_report: Any
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody="order 1")

    report = run(handler, validate_report)
    span = span_named(report, "SQS.SendMessage")
    (message,) = receive_all(sqs, queue_url, 1)
    assert attribute(message) == expected_traceparent(report, span)
    assert message["MessageAttributes"]["traceparent"]["DataType"] == "String"
    assert "lambdascope.propagation.skipped" not in span["attributes"]


def test_send_message_batch_entries_all_carry_traceparent(
    sqs: Any, queue_url: str, validate_report: Any
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": f"order {i}"} for i in range(3)],
        )

    report = run(handler, validate_report)
    expected = expected_traceparent(report, span_named(report, "SQS.SendMessageBatch"))
    messages = receive_all(sqs, queue_url, 3)
    assert [attribute(m) for m in messages] == [expected] * 3


def test_message_with_ten_attributes_is_sent_without_traceparent(
    sqs: Any, queue_url: str, validate_report: Any
) -> None:
    attrs = user_attributes(10)

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody="full", MessageAttributes=attrs)

    report = run(handler, validate_report)
    span = span_named(report, "SQS.SendMessage")
    assert span["status"] == "ok"
    assert span["attributes"]["lambdascope.propagation.skipped"] == 1
    (message,) = receive_all(sqs, queue_url, 1)
    assert message["Body"] == "full"
    assert sorted(message["MessageAttributes"]) == sorted(attrs)  # the user's ten, no 11th


def test_batch_skips_only_the_entries_without_room(
    sqs: Any, queue_url: str, validate_report: Any
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": "full", "MessageBody": "full", "MessageAttributes": user_attributes(10)},
                {"Id": "nine", "MessageBody": "nine", "MessageAttributes": user_attributes(9)},
                {"Id": "none", "MessageBody": "none"},
            ],
        )

    report = run(handler, validate_report)
    span = span_named(report, "SQS.SendMessageBatch")
    assert span["attributes"]["lambdascope.propagation.skipped"] == 1
    expected = expected_traceparent(report, span)
    by_body = {m["Body"]: m for m in receive_all(sqs, queue_url, 3)}
    assert attribute(by_body["full"]) is None
    assert len(by_body["full"]["MessageAttributes"]) == 10
    assert attribute(by_body["nine"]) == expected
    assert len(by_body["nine"]["MessageAttributes"]) == 10
    assert attribute(by_body["none"]) == expected


def test_callers_own_traceparent_attribute_is_kept(
    sqs: Any, queue_url: str, validate_report: Any
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.send_message(
            QueueUrl=queue_url, MessageBody="mine",
            MessageAttributes={
                "traceparent": {"DataType": "String", "StringValue": CALLERS_TRACEPARENT}
            },
        )  # fmt: skip

    report = run(handler, validate_report)
    assert (
        "lambdascope.propagation.skipped" not in span_named(report, "SQS.SendMessage")["attributes"]
    )
    (message,) = receive_all(sqs, queue_url, 1)
    assert attribute(message) == CALLERS_TRACEPARENT
    assert list(message["MessageAttributes"]) == ["traceparent"]


def test_callers_parameters_are_not_mutated(sqs: Any, queue_url: str, validate_report: Any) -> None:
    single = {"QueueUrl": queue_url, "MessageBody": "one", "MessageAttributes": user_attributes(2)}
    batch = {
        "QueueUrl": queue_url,
        "Entries": [
            {"Id": "a", "MessageBody": "a", "MessageAttributes": user_attributes(1)},
            {"Id": "b", "MessageBody": "b"},
        ],
    }
    single_before, batch_before = copy.deepcopy(single), copy.deepcopy(batch)
    entries, first_entry = batch["Entries"], batch["Entries"][0]

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.send_message(**single)
        sqs.send_message_batch(**batch)

    run(handler, validate_report)
    assert single == single_before
    assert batch == batch_before
    assert batch["Entries"] is entries and batch["Entries"][0] is first_entry
    # The messages did carry it: the copies were sent.
    assert all(attribute(m) for m in receive_all(sqs, queue_url, 3))


def test_unsampled_invocation_passes_its_decision_on(
    sqs: Any, queue_url: str, validate_report: Any
) -> None:
    # The caller decided not to sample (flags 00): the consumer must hear of it, or it starts a
    # trace of its own and samples it, the partial trace the caller's decision was to prevent.
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody="unsampled")

    with capture_reports() as reports:
        handler({"headers": {"traceparent": unsampled}}, fake_context())
    (report,) = reports
    validate_report(report)
    assert report["invocation"]["sampled"] is False
    (message,) = receive_all(sqs, queue_url, 1)
    value = attribute(message)
    assert value is not None, message.get("MessageAttributes")
    version, trace_id, span_id, flags = value.split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "00")
    assert len(span_id) == 16 and span_id != "0" * 16


# -- SNS ---------------------------------------------------------------------------------------


@pytest.fixture
def topic(moto: MotoServer, sqs: Any, queue_url: str) -> str:
    """A topic whose messages reach ``queue_url`` (raw delivery off: the SQS body is SNS's JSON
    notification with its MessageAttributes)."""
    sns = moto.client("sns")
    arn = sns.create_topic(Name=f"out-{uuid.uuid4().hex[:12]}")["TopicArn"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}"
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn


def sns_traceparent(message: dict[str, Any]) -> str | None:
    note = json.loads(message["Body"])
    entry = (note.get("MessageAttributes") or {}).get("traceparent")
    return entry["Value"] if entry else None


def test_sns_publish_carries_traceparent(
    moto: MotoServer, sqs: Any, queue_url: str, topic: str, validate_report: Any
) -> None:
    sns = moto.client("sns")

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sns.publish(TopicArn=topic, Message="shipped")

    report = run(handler, validate_report)
    span = span_named(report, "SNS.Publish")
    (message,) = receive_all(sqs, queue_url, 1)
    assert sns_traceparent(message) == expected_traceparent(report, span)
    # A consumer of the queue continues the publisher's trace from the notification SNS wrote.
    record = {
        "messageId": message["MessageId"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }
    found, links, _ = extract({"Records": [record]}, environ={})
    assert found is not None
    assert (found.trace_id, found.span_id) == (report["trace"]["trace_id"], span["span_id"])
    assert [(link["trace_id"], link["span_id"]) for link in links] == [
        (report["trace"]["trace_id"], span["span_id"])
    ]


def test_sns_raw_delivery_to_sqs_carries_traceparent_as_an_sqs_attribute(
    moto: MotoServer, sqs: Any, queue_url: str, validate_report: Any
) -> None:
    sns = moto.client("sns")
    arn = sns.create_topic(Name=f"raw-{uuid.uuid4().hex[:12]}")["TopicArn"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}"
    sns.subscribe(
        TopicArn=arn, Protocol="sqs", Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )  # fmt: skip

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sns.publish(TopicArn=arn, Message="raw")

    report = run(handler, validate_report)
    (message,) = receive_all(sqs, queue_url, 1)
    assert message["Body"] == "raw"
    assert attribute(message) == expected_traceparent(report, span_named(report, "SNS.Publish"))


def test_sns_publish_batch_entries_all_carry_traceparent(
    moto: MotoServer, sqs: Any, queue_url: str, topic: str, validate_report: Any
) -> None:
    sns = moto.client("sns")

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[
                {"Id": "full", "Message": "full", "MessageAttributes": user_attributes(10)},
                {"Id": "a", "Message": "a"},
                {"Id": "b", "Message": "b"},
            ],
        )

    report = run(handler, validate_report)
    span = span_named(report, "SNS.PublishBatch")
    assert span["attributes"]["lambdascope.propagation.skipped"] == 1
    expected = expected_traceparent(report, span)
    by_message = {
        json.loads(m["Body"])["Message"]: sns_traceparent(m) for m in receive_all(sqs, queue_url, 3)
    }
    assert by_message == {"full": None, "a": expected, "b": expected}


# -- EventBridge -----------------------------------------------------------------------------


def test_put_events_entries_carry_an_xray_trace_header(
    moto: MotoServer, validate_report: Any
) -> None:
    events = moto.client("events")
    capture = Capture()
    events.meta.events.register("before-send.events.PutEvents", capture)
    mine = "Root=1-11111111-222222222222222222222222;Parent=3333333333333333;Sampled=1"

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        events.put_events(Entries=[
            {"Source": "com.acme.orders", "DetailType": "created", "Detail": "{}"},
            {"Source": "com.acme.orders", "DetailType": "paid", "Detail": "{}"},
            {"Source": "com.acme.orders", "DetailType": "own", "Detail": "{}",
             "TraceHeader": mine},
        ])  # fmt: skip

    report = run(handler, validate_report)
    span = span_named(report, "EventBridge.PutEvents")
    assert span["status"] == "ok"
    (request,) = capture.requests
    entries = json.loads(request[2])["Entries"]
    for entry in entries[:2]:
        ctx = parse_xray(entry["TraceHeader"])
        assert ctx is not None, entry
        assert (ctx.trace_id, ctx.span_id, ctx.sampled) == (
            report["trace"]["trace_id"],
            span["span_id"],
            True,
        )
    assert entries[2]["TraceHeader"] == mine


def test_put_events_trace_header_keeps_runtime_root_and_lineage(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", RUNTIME_HEADER)
    events = moto.client("events")
    capture = Capture()
    events.meta.events.register("before-send.events.PutEvents", capture)

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        events.put_events(
            Entries=[{"Source": "com.acme.orders", "DetailType": "created", "Detail": "{}"}]
        )

    report = run(handler, validate_report)
    span = span_named(report, "EventBridge.PutEvents")
    (entry,) = json.loads(capture.requests[0][2])["Entries"]
    fields = dict(part.split("=", 1) for part in entry["TraceHeader"].split(";"))
    assert fields == {"Root": RUNTIME_ROOT, "Parent": span["span_id"], "Sampled": "1",
                      "Lineage": "a87bd80c:1"}  # fmt: skip


# -- the X-Ray header of every AWS call ------------------------------------------------------


def test_xray_header_on_the_wire_keeps_root_and_lineage(
    sqs: Any, queue_url: str, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", RUNTIME_HEADER)
    capture = Capture()

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        sqs.get_queue_attributes(QueueUrl=queue_url)  # the first call hooks the client
        # Registered after lambdascope's own before-send handler: sees what goes on the wire.
        sqs.meta.events.register("before-send", capture)
        sqs.send_message(QueueUrl=queue_url, MessageBody="x")
        sqs.get_queue_attributes(QueueUrl=queue_url)

    report = run(handler, validate_report)
    # The invocation continues the runtime's trace.
    assert report["trace"]["trace_id"] == RUNTIME_TRACE_ID
    assert report["trace"]["parent_span_id"] == "53995c3f42cd8ad8"
    client_spans = [s for s in report["spans"] if s["kind"] == "client"]
    assert [s["name"] for s in client_spans] == [
        "SQS.GetQueueAttributes",
        "SQS.SendMessage",
        "SQS.GetQueueAttributes",
    ]
    assert len(capture.requests) == 2
    for index, span in enumerate(client_spans[1:]):
        header = capture.header(index, "X-Amzn-Trace-Id")
        assert header is not None, capture.requests[index][1]
        fields = [part.split("=", 1) for part in header.split(";")]
        assert [name for name, _ in fields].count("Parent") == 1, header
        assert dict(fields) == {"Root": RUNTIME_ROOT, "Parent": span["span_id"],
                                "Sampled": "1", "Lineage": "a87bd80c:1"}  # fmt: skip
    # The message itself carries the W3C context of the same trace.
    (message,) = receive_all(sqs, queue_url, 1)
    assert attribute(message) == expected_traceparent(report, client_spans[1])


# -- OTEL_PROPAGATORS=none ---------------------------------------------------------------------

_PROPAGATORS_SCRIPT = textwrap.dedent(
    """
    import http.server, json, sys, threading, urllib.request
    import boto3
    import lambdascope
    from lambdascope.testing import capture_reports, fake_context

    endpoint, queue_url = sys.argv[1], sys.argv[2]
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    session = boto3.Session(aws_access_key_id="AKIALAMBDASCOPETEST1",
                            aws_secret_access_key="fake-secret-key", region_name="us-east-1")
    sqs = session.client("sqs", endpoint_url=endpoint)
    events = session.client("events", endpoint_url=endpoint)
    wire = []

    def capture(request=None, event_name="", **kwargs):
        body = request.body if isinstance(request.body, (bytes, str)) else b""
        body = body.decode() if isinstance(body, bytes) else body
        wire.append({"event": event_name, "xray": request.headers.get("X-Amzn-Trace-Id"),
                     "body": body})

    @lambdascope.monitor
    def handler(event, context):
        sqs.get_queue_attributes(QueueUrl=queue_url)  # the first calls hook the clients
        events.list_event_buses()
        sqs.meta.events.register("before-send", capture)
        events.meta.events.register("before-send", capture)
        sqs.send_message(QueueUrl=queue_url, MessageBody="none")
        sqs.send_message_batch(QueueUrl=queue_url,
                               Entries=[{"Id": "1", "MessageBody": "batch"}])
        events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}])
        urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/ok", timeout=5).read()

    with capture_reports() as reports:
        handler({}, fake_context())
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                   MessageAttributeNames=["All"]).get("Messages", [])
    xray = [w["xray"] for w in wire]
    xray = [x.decode() if isinstance(x, bytes) else x for x in xray]
    print(json.dumps({
        "spans": [s["name"] for s in reports[0]["spans"] if s["kind"] == "client"],
        "span_ids": {s["name"]: s["span_id"] for s in reports[0]["spans"]},
        "trace_id": reports[0]["trace"]["trace_id"],
        "attributes": [m.get("MessageAttributes") for m in messages],
        "http_headers": seen,
        "put_events": [json.loads(w["body"]) for w in wire if "PutEvents" in w["event"]],
        "xray": xray,
    }))
    """
)


def run_with_propagators(moto: MotoServer, value: str) -> dict[str, Any]:
    """One monitored invocation in a fresh process with ``OTEL_PROPAGATORS=value`` (read at
    import) and the Lambda runtime's X-Ray header set."""
    queue_url = moto.client("sqs").create_queue(QueueName=f"propagators-{value}")["QueueUrl"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDASCOPE_", "AWS_"))}
    env.update({"OTEL_PROPAGATORS": value, "_X_AMZN_TRACE_ID": RUNTIME_HEADER})
    done = subprocess.run(
        [sys.executable, "-c", _PROPAGATORS_SCRIPT, moto.endpoint, queue_url],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def propagators_none(moto: MotoServer) -> dict[str, Any]:
    return run_with_propagators(moto, "none")


def test_otel_propagators_none_injects_no_trace_context(propagators_none: dict[str, Any]) -> None:
    result = propagators_none
    # The calls were traced all the same.
    assert result["spans"] == [
        "SQS.GetQueueAttributes",
        "EventBridge.ListEventBuses",
        "SQS.SendMessage",
        "SQS.SendMessageBatch",
        "EventBridge.PutEvents",
        "GET",
    ], result["spans"]
    assert result["attributes"] == [None, None], result["attributes"]
    (headers,) = result["http_headers"]
    assert "traceparent" not in headers and "x-amzn-trace-id" not in headers, headers
    (put_events,) = result["put_events"]
    assert all("TraceHeader" not in entry for entry in put_events["Entries"]), put_events


def test_otel_propagators_none_leaves_the_xray_header_alone(
    propagators_none: dict[str, Any],
) -> None:
    # Outside a Lambda function botocore sends no X-Ray header of its own; lambdascope, told to
    # propagate nothing, adds none either (and so cannot change the runtime's Parent).
    # (The three calls made in the handler after the capture was registered.)
    assert propagators_none["xray"][:3] == [None, None, None], propagators_none["xray"]


def test_otel_propagators_xray_sends_the_xray_header_over_http(moto: MotoServer) -> None:
    result = run_with_propagators(moto, "xray")
    (headers,) = result["http_headers"]
    assert "traceparent" not in headers, headers
    fields = dict(part.split("=", 1) for part in headers["x-amzn-trace-id"].split(";"))
    assert fields == {"Root": RUNTIME_ROOT, "Parent": result["span_ids"]["GET"], "Sampled": "1",
                      "Lineage": "a87bd80c:1"}  # fmt: skip
    assert result["trace_id"] == RUNTIME_TRACE_ID

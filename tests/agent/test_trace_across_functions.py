"""One trace across two functions, each in its own sandbox (real ``awslambdaric`` against the
local Runtime API emulator), through real peers on loopback.

Function A (``handlers/producer.py``) sends a message to an SQS queue of a moto server; the test
receives it with all its message attributes and turns it into the SQS event Lambda would give
function B (``handlers/consumer.py``). B's report continues A's trace: same trace id, its
invocation span's parent is A's ``SQS.SendMessage`` span, and it links to that span with the
message's age. Over HTTP the same holds: A calls a local server, and B is invoked with an API
Gateway event carrying the headers that server received.
"""

from __future__ import annotations

import http.server
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "instrumentation"))
from moto_server import ACCOUNT, MotoServer  # noqa: E402

REGION = "eu-west-1"  # the sandboxes' region (tests/agent/conftest.py)
ACCESS_KEY_ID = "AKIAPRODUCERTESTKEY1"
SECRET_ACCESS_KEY = "producer-fake-secret-access-key"
QUEUE_DELAY_S = 0.2  # how long the message sits in the queue before B is invoked, at least


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def sqs(moto: MotoServer) -> Any:
    return moto.client("sqs", region_name=REGION)


@pytest.fixture
def queue_url(sqs: Any) -> str:
    return sqs.create_queue(QueueName=f"orders-{uuid.uuid4().hex[:12]}")["QueueUrl"]


class HeaderRecorder(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that records the headers of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/orders"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def http_server() -> Iterator[HeaderRecorder]:
    server = HeaderRecorder()
    yield server
    server.shutdown()
    server.server_close()


def start_functions(sandboxes: Any, moto: MotoServer) -> tuple[Any, Any]:
    env = {
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "OTEL_PROPAGATORS": None,
    }
    return sandboxes("producer.handler", env=env), sandboxes("consumer.handler", env=env)


def lambda_sqs_event(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    """The event Lambda's SQS poller gives a function for ``message`` (as ReceiveMessage
    returned it): camelCase keys, and message attributes in the lowercase shape."""
    queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message["Attributes"]),
        "messageAttributes": attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}",
        "awsRegion": REGION,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return {"Records": [record]}


def root_span(report: dict[str, Any]) -> dict[str, Any]:
    (root,) = [s for s in report["spans"] if s["span_id"] == report["trace"]["span_id"]]
    return root


def span_named(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in report["spans"] if s["name"] == name]
    assert len(found) == 1, [s["name"] for s in report["spans"]]
    return found[0]


def test_consumer_continues_the_producers_trace_through_sqs(
    sandboxes: Any, moto: MotoServer, sqs: Any, queue_url: str, validate_report: Any
) -> None:
    producer, consumer = start_functions(sandboxes, moto)

    sent = producer.invoke({"queue_url": queue_url, "body": '{"order_id": 42}'}, timeout_s=10.0)
    assert sent.ok, (sent.payload, producer.sandbox.output)
    (a,) = producer.reports(1)
    validate_report(a)
    send_span = span_named(a, "SQS.SendMessage")
    assert send_span["status"] == "ok"
    assert send_span["parent_span_id"] == a["trace"]["span_id"]

    got = sqs.receive_message(
        QueueUrl=queue_url, MessageAttributeNames=["All"], AttributeNames=["All"],
        MaxNumberOfMessages=1, WaitTimeSeconds=0,
    )["Messages"]  # fmt: skip
    (message,) = got
    assert message["MessageId"] == sent.payload["message_id"]
    time.sleep(QUEUE_DELAY_S)
    event = lambda_sqs_event(message, queue_url)

    done = consumer.invoke(event, timeout_s=10.0)
    assert done.ok, (done.payload, consumer.sandbox.output)
    assert done.payload == {"batchItemFailures": []}
    (b,) = consumer.reports(1)
    validate_report(b)

    # B's runtime gave it an X-Ray header of its own: the W3C context of the message wins.
    assert b["trace"]["trace_id"] == a["trace"]["trace_id"]
    assert b["trace"]["parent_span_id"] == send_span["span_id"]
    root = root_span(b)
    assert root["parent_span_id"] == send_span["span_id"]
    assert root["kind"] == "consumer"
    assert root["attributes"]["lambdascope.parent.format"] == "w3c"
    assert b["invocation"]["trigger"] == {
        "type": "sqs",
        "source": event["Records"][0]["eventSourceARN"],
    }
    assert b["invocation"]["batch"] == {"size": 1, "failed": 0}
    (link,) = root["links"]
    assert link["trace_id"] == a["trace"]["trace_id"]
    assert link["span_id"] == send_span["span_id"]
    assert link["attributes"]["messaging.message.id"] == message["MessageId"]
    age = link["attributes"]["lambdascope.message.age_ms"]
    sent_at = float(message["Attributes"]["SentTimestamp"])
    assert QUEUE_DELAY_S * 1000.0 <= age <= b["invocation"]["start_ms"] - sent_at + 1.0, age
    # B's own work belongs to the same trace, under its invocation span.
    work = span_named(b, "process-record")
    assert work["parent_span_id"] == root["span_id"]


def test_callee_continues_the_callers_trace_over_http(
    sandboxes: Any, moto: MotoServer, queue_url: str, http_server: HeaderRecorder,
    validate_report: Any,
) -> None:  # fmt: skip
    producer, consumer = start_functions(sandboxes, moto)

    sent = producer.invoke({"queue_url": queue_url, "http_url": http_server.url}, timeout_s=10.0)
    assert sent.ok, (sent.payload, producer.sandbox.output)
    assert sent.payload["http_status"] == 200
    (a,) = producer.reports(1)
    validate_report(a)
    get_span = span_named(a, "GET")
    (headers,) = http_server.seen
    assert headers["traceparent"] == f"00-{a['trace']['trace_id']}-{get_span['span_id']}-01"

    # The request as API Gateway (HTTP API) hands it to B, with the headers the server got.
    event = {
        "version": "2.0",
        "routeKey": "GET /orders",
        "rawPath": "/orders",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "f9e8d7c6b5",
            "domainName": "f9e8d7c6b5.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "f9e8d7c6b5",
            "http": {"method": "GET", "path": "/orders", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "")},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "GET /orders",
            "stage": "$default",
            "time": "12/Mar/2026:19:03:58 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }  # fmt: skip
    done = consumer.invoke(event, timeout_s=10.0)
    assert done.ok, (done.payload, consumer.sandbox.output)
    (b,) = consumer.reports(1)
    validate_report(b)
    assert b["trace"]["trace_id"] == a["trace"]["trace_id"]
    assert b["trace"]["parent_span_id"] == get_span["span_id"]
    root = root_span(b)
    assert root["kind"] == "server"
    assert root["parent_span_id"] == get_span["span_id"]

"""examples/queue_pipeline under awslambdaric: checkout (API Gateway HTTP API) queues a cart's
shipments on SQS (moto on loopback); the poller turns the queue's messages into the batch event
Lambda would give fulfilment, which prints labels to S3 and fails one record alone. One trace
runs across both functions: in the reports, in ``lambdascope show`` and on the service map."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from devstack import ACCOUNT, LABELS_BUCKET, QUEUE_NAME, REGION
from examples_harness import (
    EXAMPLES,
    Function,
    Stack,
    body_of,
    ingest,
    lambdascope_cli,
    load_event,
    metrics_of,
    one_span,
    root_span,
    spans_named,
)

from lambdascope.collector import views
from lambdascope.collector.store import open_reader

POLLER = EXAMPLES / "queue_pipeline" / "sqs_poller.py"


def poll(stack: Stack, out: pathlib.Path) -> dict[str, Any]:
    """The poller, as the demo runs it, with the functions' environment."""
    import os

    env = {**os.environ, **stack.env}
    done = subprocess.run([sys.executable, str(POLLER), "--out", str(out), "--wait-s", "5"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    event: dict[str, Any] = json.loads(out.read_text())
    return event


def test_one_trace_from_checkout_through_the_queue_to_fulfilment(
        function: Callable[..., Function], stack: Stack, tmp_path: pathlib.Path) -> None:
    checkout = function("queue_pipeline", "checkout.handler", "checkout")
    fulfilment = function("queue_pipeline", "fulfilment.handler", "fulfilment")

    status, body = body_of(checkout.invoke(load_event("queue_pipeline", "checkout.json")))
    assert status == 202
    assert body == {"cart_id": "cart-7731",
                    "shipments": ["cart-7731-1", "cart-7731-2", "cart-7731-3"]}
    (a,) = checkout.reports(1)
    assert a["invocation"]["trigger"]["type"] == "api_gateway_v2"
    send = one_span(a, "SQS.SendMessageBatch")
    assert send["attributes"]["aws.sqs.queue_url"] == stack.queue_url
    assert send["attributes"]["messaging.destination.name"] == QUEUE_NAME
    assert send["parent_span_id"] == root_span(a)["span_id"]
    (queued,) = metrics_of(a)["shipments_queued"]
    assert (queued["value"], queued["unit"]) == (3, "Count")
    assert a["labels"] == ["channel=web"]

    event = poll(stack, tmp_path / "batch.json")
    records = event["Records"]
    assert len(records) == 3
    for record in records:
        assert record["eventSourceARN"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE_NAME}"
        assert record["messageAttributes"]["traceparent"]["stringValue"] == (
            f"00-{a['trace']['trace_id']}-{send['span_id']}-01")
    by_warehouse = {json.loads(r["body"])["warehouse"]: r["messageId"] for r in records}
    assert sorted(by_warehouse) == ["ams", "dub", "lis"]

    result = fulfilment.invoke(event)
    assert result.ok, (result.payload, fulfilment.output)
    assert result.payload == {"batchItemFailures": [{"itemIdentifier": by_warehouse["lis"]}]}
    s3 = stack.client("s3")
    label = s3.get_object(Bucket=LABELS_BUCKET, Key="labels/cart-7731-1.txt")["Body"].read()
    assert b"Amsterdam warehouse" in label and b"2 x sku-espresso" in label
    assert b"Keizersgracht 123" in label
    assert s3.list_objects_v2(Bucket=LABELS_BUCKET, Prefix="labels/cart-7731-")["KeyCount"] == 2

    (b,) = fulfilment.reports(1)
    inv = b["invocation"]
    assert inv["status"] == "ok"
    assert inv["trigger"] == {"type": "sqs", "source": records[0]["eventSourceARN"]}
    assert inv["batch"] == {"size": 3, "failed": 1}
    # One trace: B continues A's, under A's SendMessageBatch span, and links to it per record.
    assert b["trace"]["trace_id"] == a["trace"]["trace_id"]
    assert b["trace"]["parent_span_id"] == send["span_id"]
    root = root_span(b)
    assert root["kind"] == "consumer"
    assert root["parent_span_id"] == send["span_id"]
    links = root["links"]
    assert sorted(link["attributes"]["messaging.message.id"] for link in links) == sorted(
        by_warehouse.values())
    for link in links:
        assert (link["trace_id"], link["span_id"]) == (a["trace"]["trace_id"], send["span_id"])
        assert link["attributes"]["lambdascope.message.age_ms"] >= 0

    ships = spans_named(b, "ship")
    assert sorted((s["attributes"]["shipment.warehouse"], s["status"]) for s in ships) == [
        ("ams", "ok"), ("dub", "ok"), ("lis", "error")]
    puts = spans_named(b, "S3.PutObject")
    assert [p["attributes"]["aws.s3.bucket"] for p in puts] == [LABELS_BUCKET] * 2
    ship_ids = {s["span_id"] for s in ships}
    assert all(p["parent_span_id"] in ship_ids for p in puts)
    (printed,) = metrics_of(b)["labels_printed"]
    assert printed["value"] == 2
    assert b["labels"] == ["partial-batch-failure"]
    assert [log["level"] for log in b["logs"]].count("ERROR") == 1

    # In the store: `show` lists the checkout as the same trace; the map has the queue between.
    db = tmp_path / "reports.db"
    ingest(db, checkout.reports_path, fulfilment.reports_path)
    shown = lambdascope_cli("show", "--db", str(db), "--width", "40", inv["request_id"])
    assert shown.returncode == 0, shown.stderr
    assert f"related invocations (trace {a['trace']['trace_id']})" in shown.stdout
    related = shown.stdout.split("related invocations", 1)[1]
    assert "checkout" in related and a["invocation"]["request_id"] in related
    assert "SQS.SendMessageBatch" not in related  # B's own waterfall is above it
    assert "S3.PutObject" in shown.stdout and LABELS_BUCKET in shown.stdout

    with open_reader(db) as conn:
        found = views.service_map(conn, 0.0, a["invocation"]["start_ms"] + 3_600_000)
    edges = {(e["from"], e["to"]) for e in found["edges"]}
    queue = f"sqs:{QUEUE_NAME}"
    assert ("fn:checkout", queue) in edges, edges
    assert (queue, "fn:fulfilment") in edges, edges
    assert ("fn:fulfilment", f"s3:{LABELS_BUCKET}") in edges, edges


def test_checkout_refuses_an_empty_cart(function: Callable[..., Function]) -> None:
    checkout = function("queue_pipeline", "checkout.handler", "checkout")
    status, body = body_of(checkout.invoke(load_event("queue_pipeline", "empty_cart.json")))
    assert status == 400 and "items" in body["error"]
    (report,) = checkout.reports(1)
    assert report["invocation"]["status"] == "ok"
    assert spans_named(report, "SQS.SendMessageBatch") == []

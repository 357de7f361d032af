"""examples/orders_api under awslambdaric: API Gateway events -> DynamoDB (moto on loopback) and
the payment provider over HTTP (a local server). The happy path, a declined card (402), a bad
body (400), the unknown-product bug (an error, grouped by the store under one fingerprint) and
the slow provider that makes the function time out."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

from devstack import ORDERS_TABLE
from examples_harness import (
    EXAMPLES,
    Function,
    Stack,
    body_of,
    ingest,
    invoke_cli,
    lambdascope_cli,
    load_event,
    metrics_of,
    one_span,
    root_span,
    spans_named,
    stored,
)


def start(function: Callable[..., Function]) -> Function:
    return function("orders_api", "orders.handler", "orders")


def get_order_event(order_id: str) -> dict[str, object]:
    event = load_event("orders_api", "get_order.json")
    event["pathParameters"] = {"order_id": order_id}
    event["path"] = f"/orders/{order_id}"
    return event


def test_an_order_is_charged_stored_and_read_back(function: Callable[..., Function],
                                                  stack: Stack) -> None:
    fn = start(function)
    status, body = body_of(fn.invoke(load_event("orders_api", "create_order.json")))
    assert status == 201, body
    assert body["status"] == "paid" and body["total_cents"] == 2 * 1250 + 1500
    order_id = body["order_id"]

    item = stack.client("dynamodb").get_item(TableName=ORDERS_TABLE,
                                             Key={"order_id": {"S": order_id}})["Item"]
    assert item["status"] == {"S": "paid"}
    assert item["total_cents"] == {"N": "4000"}
    assert item["charge_id"]["S"].startswith("ch_")
    assert item["customer_id"] == {"S": "cust-1042"}

    status, read = body_of(fn.invoke(get_order_event(order_id)))
    assert status == 200
    assert read["items"] == [{"sku": "sku-espresso", "qty": 2}, {"sku": "sku-mug", "qty": 1}]
    status, _ = body_of(fn.invoke(get_order_event("no-such-order")))
    assert status == 404

    created, fetched, missing = fn.reports(3)
    assert [r["invocation"]["cold_start"] for r in (created, fetched, missing)] == [
        True, False, False]
    for report in (created, fetched, missing):
        assert report["invocation"]["status"] == "ok"
        assert report["invocation"]["trigger"]["type"] == "api_gateway"

    # The payment call: an HTTP client span with its host, and the trace carried on.
    pay = one_span(created, "POST")
    attrs = pay["attributes"]
    assert attrs["http.request.method"] == "POST"
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == int(stack.payment_url.rsplit(":", 1)[1])
    assert attrs["url.full"] == f"{stack.payment_url}/charges"
    assert attrs["http.response.status_code"] == 201
    assert pay["status"] == "ok"
    (charge,) = [c for c in stack.charges() if c["order_id"] == order_id]
    assert charge["traceparent"] == f"00-{created['trace']['trace_id']}-{pay['span_id']}-01"

    put = one_span(created, "DynamoDB.PutItem")
    assert put["attributes"]["aws.dynamodb.table_names"] == [ORDERS_TABLE]
    assert put["parent_span_id"] == root_span(created)["span_id"]
    assert pay["start_ms"] < put["start_ms"]
    get = one_span(fetched, "DynamoDB.GetItem")
    assert get["attributes"]["aws.dynamodb.table_names"] == [ORDERS_TABLE]
    assert spans_named(fetched, "POST") == []

    assert sorted(created["labels"]) == ["channel=web", "tier=gold"]
    metrics = metrics_of(created)
    (value,) = metrics["order_value"]
    assert (value["value"], value["unit"], value["dimensions"]) == (
        40.0, "None", {"currency": "EUR"})
    (items,) = metrics["order_items"]
    assert (items["value"], items["unit"]) == (3, "Count")
    assert fetched["labels"] == [] and fetched["metrics"] == []


def test_declined_card_is_a_402_and_a_bad_body_a_400(function: Callable[..., Function],
                                                   stack: Stack) -> None:
    fn = start(function)
    status, body = body_of(fn.invoke(load_event("orders_api", "declined_card.json")))
    assert status == 402
    assert body["error"] == "payment declined" and body["reason"] == "insufficient_funds"
    table = stack.client("dynamodb")
    item = table.get_item(TableName=ORDERS_TABLE, Key={"order_id": {"S": body["order_id"]}})
    assert item["Item"]["status"] == {"S": "declined"}
    assert item["Item"]["decline_reason"] == {"S": "insufficient_funds"}

    status, body = body_of(fn.invoke(load_event("orders_api", "bad_body.json")))
    assert status == 400 and "JSON" in body["error"]

    declined, bad = fn.reports(2)
    # Handled answers: the invocation is fine, the HTTP call that got a 402 is not.
    assert declined["invocation"]["status"] == "ok" and declined["error"] is None
    pay = one_span(declined, "POST")
    assert pay["status"] == "error"
    assert pay["attributes"]["http.response.status_code"] == 402
    assert "payment-declined" in declined["labels"]
    assert "channel=mobile" in declined["labels"]
    (count,) = metrics_of(declined)["payments_declined"]
    assert (count["value"], count["unit"]) == (1, "Count")
    assert "order_value" not in metrics_of(declined)
    assert [log["level"] for log in declined["logs"]] == ["WARNING"]
    assert bad["invocation"]["status"] == "ok"
    assert bad["spans"] == [root_span(bad)]  # no call was made


def test_unknown_product_is_an_error_grouped_under_one_fingerprint(
        function: Callable[..., Function], tmp_path: pathlib.Path) -> None:
    fn = start(function)
    results = [fn.invoke(load_event("orders_api", "unknown_product.json")) for _ in range(2)]
    for result in results:
        assert result.status == "error"
        assert result.payload["errorType"] == "KeyError"
        assert result.payload["errorMessage"] == "'sku-teapot'"
    reports = fn.reports(2)
    for report in reports:
        assert report["invocation"]["status"] == "error"
        error = report["error"]
        assert (error["type"], error["message"]) == ("KeyError", "'sku-teapot'")
        frames = [frame["function"] for frame in error["stack"]]
        assert frames[-3:] == ["create_order", "price", "<genexpr>"], frames
        assert spans_named(report, "POST") == []  # it failed before charging anyone
        assert spans_named(report, "DynamoDB.PutItem") == []

    db = tmp_path / "reports.db"
    ingest(db, fn.reports_path)
    stats = lambdascope_cli("stats", "--db", str(db), "--since", "1h", "--json")
    assert stats.returncode == 0, stats.stderr
    (entry,) = json.loads(stats.stdout)["functions"]
    assert entry["function"] == "orders"
    assert entry["invocations"] == 2 and entry["error_rate"] == 1.0
    (group,) = entry["errors"]
    assert group["type"] == "KeyError" and group["count"] == 2
    assert group["fingerprint"]
    assert group["example_request_id"] in {r.request_id for r in results}
    assert group["top_frame"].endswith("orders_api/orders.py:<genexpr>")


def test_slow_payment_provider_makes_the_function_time_out(
        function: Callable[..., Function], stack: Stack, tmp_path: pathlib.Path) -> None:
    fn = start(function)
    result = fn.invoke(load_event("orders_api", "slow_payment.json"), timeout_s=1.0)
    assert result.status == "timeout"
    fn.sandbox.stop()  # what Lambda does to a sandbox that timed out
    (report,) = fn.reports(1)
    inv = report["invocation"]
    assert inv["request_id"] == result.request_id
    assert inv["status"] == "timeout"
    assert 500 <= inv["duration_ms"] <= 1000
    assert inv["timeout_ms"] <= 1000
    assert report["error"]["type"] == "Timeout"
    stack_functions = [frame["function"] for frame in report["error"]["stack"]]
    assert stack_functions[:3] == ["handler", "create_order", "charge"], stack_functions
    # The call still waiting for its answer is in the report.
    pay = one_span(report, "POST")
    assert pay["attributes"]["server.address"] == "127.0.0.1"
    assert spans_named(report, "DynamoDB.PutItem") == []

    # Lambda starts the next request in a fresh process: cold again.
    status, _ = body_of(fn.invoke(load_event("orders_api", "create_order.json")))
    assert status == 201
    reports = fn.reports(2)
    later = [r for r in reports[1:] if r["invocation"]["request_id"] != result.request_id]
    assert [r["invocation"]["cold_start"] for r in later] == [True]
    # The new process finds the killed one's breadcrumb marked "timeout reported": one report
    # per invocation, no second one as crashed.
    assert [r for r in reports[1:] if r["invocation"]["request_id"] == result.request_id] == []
    db = tmp_path / "reports.db"
    ingest(db, fn.reports_path)
    shown = lambdascope_cli("show", "--db", str(db), "--json", result.request_id)
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)["invocation"]
    assert stored["invocation"]["status"] == "timeout"
    assert stored["error"]["type"] == "Timeout"


def test_through_the_runner_two_sandboxes_at_once(stack: Stack,
                                                 tmp_path: pathlib.Path) -> None:
    db = tmp_path / "reports.db"
    run = invoke_cli(stack, "orders_api/orders.py:handler", "--event",
                     str(EXAMPLES / "orders_api" / "events" / "create_order.json"),
                     "--times", "4", "--concurrency", "2", db=db)
    assert run["function"] == "orders"
    counts = run["counts"]
    assert (counts["invocations"], counts["cold"], counts["warm"], counts["ok"]) == (4, 2, 2, 4)
    assert run["sandboxes_started"] == 2

    table = stack.client("dynamodb")
    for invocation in run["invocations"]:
        assert invocation["response"]["statusCode"] == 201
        order_id = json.loads(invocation["response"]["body"])["order_id"]
        item = table.get_item(TableName=ORDERS_TABLE, Key={"order_id": {"S": order_id}})["Item"]
        assert item["request_id"] == {"S": invocation["request_id"]}
        assert item["status"] == {"S": "paid"}
        report = stored(db, invocation["request_id"])
        pay = one_span(report, "POST")
        (charge,) = [c for c in stack.charges() if c["order_id"] == order_id]
        assert charge["traceparent"] == f"00-{report['trace']['trace_id']}-{pay['span_id']}-01"
        assert sorted(report["labels"]) == ["channel=web", "tier=gold"]
        assert report["function"]["name"] == "orders"

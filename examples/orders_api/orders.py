"""Orders API behind API Gateway (REST API, proxy integration).

* ``POST /orders``: prices the order, charges the card with the payment provider
  (``PAYMENT_URL``, an HTTP call), stores the order in DynamoDB (``ORDERS_TABLE``) and answers
  ``201``; a declined card is stored as declined and answered ``402``; a body that is not JSON
  is ``400``.
* ``GET /orders/{order_id}``: the stored order, or ``404``.

lambdascope reports the ``DynamoDB.PutItem`` / ``GetItem`` calls with their table, the payment
call as a ``POST`` span with its host and status, the labels ``tier=…`` and ``channel=…``
(``payment-declined`` on a decline) and the metrics ``order_value`` and ``order_items``.

Two faults are left in on purpose, for the demo to show: an order naming a product that is not
in the catalogue raises ``KeyError`` (API Gateway answers 502; the report has the error, its
stack and its error group), and the payment call's timeout (``PAYMENT_TIMEOUT_S``, 10 s) is
longer than the function's, so a slow provider makes the function time out (README.md).
"""

from __future__ import annotations

import decimal
import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3

import lambdascope

log = logging.getLogger("orders_api")
log.setLevel(logging.INFO)

PAYMENT_URL = os.environ.get("PAYMENT_URL", "http://127.0.0.1:8686").rstrip("/")
PAYMENT_TIMEOUT_S = float(os.environ.get("PAYMENT_TIMEOUT_S", "10"))
CURRENCY = "EUR"
#: Prices in cents, loaded at init as a real function would load its catalogue.
CATALOGUE = {"sku-espresso": 1250, "sku-grinder": 8900, "sku-filter": 450, "sku-mug": 1500}

table = boto3.resource("dynamodb").Table(os.environ.get("ORDERS_TABLE", "orders"))


class PaymentUnavailable(RuntimeError):
    """The payment provider failed (5xx, refused connection): the caller should retry."""


def respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body)}


def price(items: list[dict[str, Any]]) -> int:
    # A SKU that is not in the catalogue raises KeyError: the bug the demo's error shows.
    return sum(CATALOGUE[item["sku"]] * int(item.get("qty", 1)) for item in items)


def charge(order_id: str, amount_cents: int, card: str) -> tuple[int, dict[str, Any]]:
    """POST the charge; the provider's status and answer (402 for a declined card)."""
    request = urllib.request.Request(
        f"{PAYMENT_URL}/charges", method="POST",
        data=json.dumps({"order_id": order_id, "amount_cents": amount_cents,
                         "currency": CURRENCY, "card": card}).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": order_id},
    )
    try:
        with urllib.request.urlopen(request, timeout=PAYMENT_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return exc.code, json.loads(exc.read() or b"{}")
        raise PaymentUnavailable(f"payment provider answered {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise PaymentUnavailable(f"payment provider unreachable: {exc.reason}") from exc


def create_order(event: dict[str, Any], request_id: str) -> dict[str, Any]:
    try:
        order = json.loads(event.get("body") or "")
    except ValueError:
        return respond(400, {"error": "the body must be a JSON order"})
    if not isinstance(order, dict) or not order.get("items") or not order.get("card"):
        return respond(400, {"error": "an order needs items and a card"})
    lambdascope.label(f"tier={order.get('tier', 'standard')}",
                      f"channel={order.get('channel', 'web')}")
    items = order["items"]
    total = price(items)
    order_id = uuid.uuid4().hex
    status, answer = charge(order_id, total, order["card"])
    record = {"order_id": order_id, "customer_id": order.get("customer_id", "anonymous"),
              "items": items, "total_cents": total, "currency": CURRENCY,
              "request_id": request_id}
    if status == 402:
        lambdascope.label("payment-declined")
        lambdascope.metric("payments_declined", 1, "Count")
        table.put_item(Item={**record, "status": "declined",
                             "decline_reason": answer.get("reason", "unknown")})
        log.warning("order %s: card declined (%s)", order_id, answer.get("reason"))
        return respond(402, {"order_id": order_id, "error": "payment declined",
                             "reason": answer.get("reason")})
    if status >= 300:
        raise PaymentUnavailable(f"payment provider refused the charge: {status} {answer}")
    table.put_item(Item={**record, "status": "paid", "charge_id": answer["id"]})
    lambdascope.metric("order_value", total / 100, "None", currency=CURRENCY)
    lambdascope.metric("order_items", sum(int(i.get("qty", 1)) for i in items), "Count")
    log.info("order %s paid: %d cents", order_id, total)
    return respond(201, {"order_id": order_id, "status": "paid", "total_cents": total})


def plain(value: Any) -> Any:
    """DynamoDB's numbers (``Decimal``) as ints, in nested items too."""
    if isinstance(value, decimal.Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def get_order(order_id: str) -> dict[str, Any]:
    item = table.get_item(Key={"order_id": order_id}).get("Item")
    if item is None:
        return respond(404, {"error": f"no order {order_id}"})
    return respond(200, plain(item))


@lambdascope.monitor
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method, resource = event.get("httpMethod"), event.get("resource")
    if method == "POST" and resource == "/orders":
        return create_order(event, context.aws_request_id)
    if method == "GET" and resource == "/orders/{order_id}":
        return get_order((event.get("pathParameters") or {}).get("order_id", ""))
    return respond(404, {"error": f"no route {method} {resource}"})

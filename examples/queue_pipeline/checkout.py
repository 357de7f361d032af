"""Checkout (function A of the queue pipeline), behind an API Gateway HTTP API.

``POST /checkout`` with a cart ``{"cart_id", "customer_id", "address", "items": [{"sku",
"qty", "warehouse"}]}`` splits it into one shipment per warehouse and queues them with one
``SendMessageBatch`` call to ``QUEUE_URL``; it answers ``202`` with the shipment ids.

lambdascope adds a ``traceparent`` message attribute to every message it sends (the trace and
the ``SQS.SendMessageBatch`` span), so the fulfilment function that reads the batch continues
this invocation's trace: one trace from the API call to the shipping labels.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3

import lambdascope

log = logging.getLogger("checkout")
log.setLevel(logging.INFO)

QUEUE_URL = os.environ.get("QUEUE_URL", "")
sqs = boto3.client("sqs")


def respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body)}


@lambdascope.monitor
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        cart = json.loads(event.get("body") or "")
    except ValueError:
        return respond(400, {"error": "the body must be a JSON cart"})
    if not isinstance(cart, dict) or not cart.get("items") or not cart.get("cart_id"):
        return respond(400, {"error": "a cart needs a cart_id and items"})
    lambdascope.label(f"channel={cart.get('channel', 'web')}")

    by_warehouse: dict[str, list[dict[str, Any]]] = {}
    for item in cart["items"]:
        by_warehouse.setdefault(item.get("warehouse", "ams"), []).append(
            {"sku": item["sku"], "qty": int(item.get("qty", 1))})
    shipments = [
        {"shipment_id": f"{cart['cart_id']}-{index}", "cart_id": cart["cart_id"],
         "warehouse": warehouse, "items": items, "address": cart.get("address", "")}
        for index, (warehouse, items) in enumerate(sorted(by_warehouse.items()), start=1)
    ]
    # One call for the whole cart (at most 10 entries per SendMessageBatch).
    sent = sqs.send_message_batch(QueueUrl=QUEUE_URL, Entries=[
        {"Id": str(index), "MessageBody": json.dumps(shipment),
         "MessageAttributes": {"warehouse": {"DataType": "String",
                                             "StringValue": shipment["warehouse"]}}}
        for index, shipment in enumerate(shipments[:10])
    ])
    if sent.get("Failed"):
        raise RuntimeError(f"{len(sent['Failed'])} shipments were not queued: {sent['Failed']}")
    lambdascope.metric("shipments_queued", len(shipments), "Count")
    log.info("cart %s: %d shipments queued", cart["cart_id"], len(shipments))
    return respond(202, {"cart_id": cart["cart_id"],
                         "shipments": [s["shipment_id"] for s in shipments]})

"""Fulfilment (function B of the queue pipeline): consumes the shipments queue in batches.

For each SQS record it prints a shipping label to ``LABELS_BUCKET`` (``labels/<shipment>.txt``).
A shipment from a warehouse this function does not know fails alone: the function answers
``{"batchItemFailures": [...]}`` (the event source mapping's ``ReportBatchItemFailures``), so
only that message comes back to the queue, and the report counts it in
``invocation.batch.failed``.

The batch carries the checkout's trace in each message's ``traceparent`` attribute: this
invocation continues it (same trace id, its root span a child of the checkout's
``SQS.SendMessageBatch`` span), and its root span links to the producer of every record, with
the message's age.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3

import lambdascope

log = logging.getLogger("fulfilment")
log.setLevel(logging.INFO)

LABELS_BUCKET = os.environ.get("LABELS_BUCKET", "shipping-labels")
WAREHOUSES = {"ams": "Amsterdam", "dub": "Dublin"}

s3 = boto3.client("s3")


class UnknownWarehouse(ValueError):
    pass


def ship(shipment: dict[str, Any]) -> str:
    """Print the shipment's label; its key."""
    warehouse = shipment["warehouse"]
    if warehouse not in WAREHOUSES:
        raise UnknownWarehouse(f"shipment {shipment['shipment_id']}: no warehouse {warehouse!r}")
    lines = [f"FROM: lambdascope shop, {WAREHOUSES[warehouse]} warehouse",
             f"TO:   {shipment.get('address', '')}",
             f"SHIPMENT {shipment['shipment_id']} (cart {shipment['cart_id']})"]
    lines += [f"  {item['qty']} x {item['sku']}" for item in shipment["items"]]
    key = f"labels/{shipment['shipment_id']}.txt"
    s3.put_object(Bucket=LABELS_BUCKET, Key=key, Body="\n".join(lines).encode() + b"\n",
                  ContentType="text/plain")
    return key


@lambdascope.monitor
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event.get("Records") or []:
        try:
            shipment = json.loads(record["body"])
            with lambdascope.span("ship", **{"shipment.id": shipment.get("shipment_id", "?"),
                                             "shipment.warehouse": shipment.get("warehouse")}):
                key = ship(shipment)
            log.info("label printed: s3://%s/%s", LABELS_BUCKET, key)
        except (ValueError, KeyError, TypeError) as exc:
            # Only this message goes back to the queue; the rest of the batch is done.
            log.error("message %s failed: %s", record.get("messageId"), exc)
            failures.append({"itemIdentifier": record["messageId"]})
    shipped = len(event.get("Records") or []) - len(failures)
    lambdascope.metric("labels_printed", shipped, "Count")
    if failures:
        lambdascope.label("partial-batch-failure")
    return {"batchItemFailures": failures}

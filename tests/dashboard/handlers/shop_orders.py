"""``shop-orders`` of the dashboard tests (run by awslambdaric in its own process, service
``shop``).

Each invocation labels itself ``tier=<event tier>``, checks stock with an HTTP GET to
``event["inventory_url"]`` (a local server) and, when the event names a queue, sends the order
to it over SQS (moto on loopback): the message carries the trace on to ``shop-payments``.
``event["xss"]`` adds a label and a log line made of markup; ``event["fail"]`` makes the
``charge-card`` span fail with an error message made of markup; ``event["sleep_s"]`` sleeps.
"""

import json
import logging
import os
import time
import urllib.request

import boto3

import lambdascope

log = logging.getLogger("shop.orders")
log.setLevel(logging.INFO)

sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])

SCRIPT_LABEL = "note=<script>alert(1)</script>"
IMG_MARKUP = "<img src=x onerror=alert(1)>"


@lambdascope.monitor
def handler(event, context):
    lambdascope.label("tier=" + event.get("tier", "free"))
    if event.get("xss"):
        lambdascope.label(SCRIPT_LABEL)
        log.warning("customer note: %s", IMG_MARKUP)
    with urllib.request.urlopen(event["inventory_url"], timeout=5) as response:
        response.read()
    log.info("order %s in stock", context.aws_request_id)
    if event.get("sleep_s"):
        with lambdascope.span("wait-for-stock"):
            time.sleep(float(event["sleep_s"]))
    if event.get("queue_url"):
        body = json.dumps({"order_request_id": context.aws_request_id})
        sqs.send_message(QueueUrl=event["queue_url"], MessageBody=body)
    if event.get("fail"):
        log.error("payment refused for order %s: %s", context.aws_request_id, IMG_MARKUP)
        with lambdascope.span("charge-card", provider="test-bank"):
            raise ValueError("card declined " + IMG_MARKUP)
    return {"order": context.aws_request_id}

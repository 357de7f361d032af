"""``shop-payments`` of the dashboard tests (run by awslambdaric in its own process, service
``shop``): the SQS consumer of ``shop-orders``' queue, continuing each order's trace. Each
record's receipt is written to the S3 bucket ``RECEIPTS_BUCKET`` (moto on loopback)."""

import json
import logging
import os

import boto3

import lambdascope

log = logging.getLogger("shop.payments")
log.setLevel(logging.INFO)

s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
BUCKET = os.environ["RECEIPTS_BUCKET"]


@lambdascope.monitor
def handler(event, context):
    for record in event.get("Records") or []:
        order = json.loads(record["body"])["order_request_id"]
        with lambdascope.span("charge", order=order):
            s3.put_object(Bucket=BUCKET, Key=f"receipts/{order}.json", Body=b"{}")
        log.info("receipt written for order %s", order)
    return {"batchItemFailures": []}

"""Function B of the cross-function trace tests (run by awslambdaric in its own process): an SQS
consumer (or an HTTP API behind API Gateway) that does a little work per record."""

import json

import lambdascope


@lambdascope.monitor
def handler(event, context):
    records = event.get("Records") or []
    for record in records:
        with lambdascope.span("process-record", message_id=record.get("messageId", "")):
            json.loads(record.get("body") or "{}")
    if records:
        return {"batchItemFailures": []}
    return {"statusCode": 200, "body": "ok"}

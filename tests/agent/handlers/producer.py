"""Function A of the cross-function trace tests (run by awslambdaric in its own process).

At init, as real functions do, it creates its SQS client against the endpoint the environment
names (``AWS_ENDPOINT_URL``: moto on loopback). Each invocation sends ``event["body"]`` to the
queue ``event["queue_url"]`` and, when the event names one, makes an HTTP GET to
``event["http_url"]``: both carry the invocation's trace on to function B.
"""

import os
import urllib.request

import boto3

import lambdascope

sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


@lambdascope.monitor
def handler(event, context):
    sent = sqs.send_message(QueueUrl=event["queue_url"], MessageBody=event.get("body", "{}"))
    status = None
    if event.get("http_url"):
        with urllib.request.urlopen(event["http_url"], timeout=5) as response:
            response.read()
            status = response.status
    return {"message_id": sent["MessageId"], "http_status": status}

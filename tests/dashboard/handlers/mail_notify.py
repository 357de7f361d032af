"""``mail-notify`` of the dashboard tests (run by awslambdaric in its own process, service
``mail``): posts a notification over HTTP to ``event["notify_url"]`` (a local server) and
archives it in the S3 bucket ``MAIL_BUCKET`` (moto on loopback)."""

import logging
import os
import urllib.request

import boto3

import lambdascope

log = logging.getLogger("mail.notify")
log.setLevel(logging.INFO)

s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
BUCKET = os.environ["MAIL_BUCKET"]


@lambdascope.monitor
def handler(event, context):
    lambdascope.label("channel=" + event.get("channel", "email"))
    with urllib.request.urlopen(event["notify_url"], timeout=5) as response:
        response.read()
    s3.put_object(Bucket=BUCKET, Key=f"sent/{context.aws_request_id}", Body=b"sent")
    log.warning("notification %s sent late", context.aws_request_id)
    return {"sent": True}

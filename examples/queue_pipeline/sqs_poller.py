"""What Lambda's SQS event source mapping does, for a laptop: receive a batch from a queue and
write the event the consumer function gets for it.

    python examples/queue_pipeline/sqs_poller.py [--queue-url URL] [--max 10] [--wait-s 2] \
        [--out FILE]

Receives up to ``--max`` messages (with all their attributes and message attributes, where the
producer's ``traceparent`` travels) from ``--queue-url`` (default ``$QUEUE_URL``) and prints the
SQS event, or writes it to ``--out``: feed it to ``lambdascope invoke
examples/queue_pipeline/fulfilment.py:handler --event FILE`` (or ``--event -``). Exits 1 when no
message came within ``--wait-s`` seconds. boto3 finds moto through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def queue_arn(queue_url: str, region: str) -> str:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME`` from a queue URL (``…/ACCOUNT/NAME``)."""
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:{region}:{account}:{name}"


def sqs_event(messages: list[dict[str, Any]], arn: str, region: str) -> dict[str, Any]:
    """The event Lambda gives a function for ``messages`` as ``ReceiveMessage`` returned them:
    camelCase keys, message attributes in their lower-case shape."""
    records = []
    for message in messages:
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": {
                name: {"stringValue": value.get("StringValue"), "stringListValues": [],
                       "binaryListValues": [], "dataType": value["DataType"]}
                for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def receive_batch(sqs: Any, queue_url: str, max_messages: int = 10, wait_s: float = 2.0
                  ) -> list[dict[str, Any]]:
    """Up to ``max_messages`` messages; waits at most ``wait_s`` for the first one, then takes
    what is there (the mapping's batch window, shortened)."""
    messages: list[dict[str, Any]] = []
    give_up = time.monotonic() + wait_s
    while len(messages) < max_messages:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - len(messages)),
            AttributeNames=["All"], MessageAttributeNames=["All"], WaitTimeSeconds=0,
        ).get("Messages", [])
        messages += got
        if not got:
            if messages or time.monotonic() > give_up:
                break
            time.sleep(0.1)
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue-url", default=os.environ.get("QUEUE_URL"),
                        help="the queue (default $QUEUE_URL)")
    parser.add_argument("--max", type=int, default=10, help="batch size (default 10)")
    parser.add_argument("--wait-s", type=float, default=2.0,
                        help="how long to wait for a first message (default 2)")
    parser.add_argument("--out", help="write the event here (default: standard output)")
    args = parser.parse_args(argv)
    if not args.queue_url:
        parser.error("no queue: pass --queue-url or set QUEUE_URL")
    import boto3

    sqs = boto3.client("sqs")
    region = sqs.meta.region_name
    messages = receive_batch(sqs, args.queue_url, args.max, args.wait_s)
    if not messages:
        print(f"sqs_poller: no message in {args.queue_url}", file=sys.stderr)
        return 1
    text = json.dumps(sqs_event(messages, queue_arn(args.queue_url, region), region), indent=2)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
        print(f"sqs_poller: {len(messages)} messages -> {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

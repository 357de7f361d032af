"""A monitored handler for ``tests/agent/test_exporters_in_lambda.py`` (``http,otlp,emf``).

Each invocation prints a marker line first (``HANDLER-START <request id>``: on stdout, the EMF
documents of the previous invocation must come before it), calls the local server named by
``event["downstream"]`` (an outgoing HTTP span, child of the invocation span), records a custom
metric and logs one line. Then ``event["action"]``: ``raise`` raises ``ValueError``, ``exit``
ends the process mid-invocation; ``event["sleep"]`` (seconds) sleeps in a span of its own (past
the timeout warning) and records one more metric before returning.
"""

import logging
import os
import time
import urllib.request

import lambdascope

log = logging.getLogger("tests.exporters")


@lambdascope.monitor
def handler(event, context):
    request_id = context.aws_request_id
    print(f"HANDLER-START {request_id}", flush=True)
    downstream = event.get("downstream")
    if downstream:
        with urllib.request.urlopen(f"{downstream}/stock?rid={request_id}", timeout=2) as answer:
            answer.read()
    lambdascope.metric("orders_placed", int(event.get("orders", 1)), "Count", channel="web")
    log.warning("order handled for %s", request_id)
    if event.get("action") == "raise":
        raise ValueError("payment declined")
    if event.get("action") == "exit":
        os._exit(3)  # the process dies mid-invocation
    if event.get("sleep"):
        with lambdascope.span("slow-step"):
            time.sleep(float(event["sleep"]))
        lambdascope.metric("late_metric", 1, "Count")
    return {"request_id": request_id}

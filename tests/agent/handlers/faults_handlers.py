"""A monitored handler for the fault-injection tests (``tests/agent/test_faults_in_lambda.py``),
run by awslambdaric in its own process.

The event's ``action`` picks what it does:

* ``echo`` (default): records a label, a metric, a span and a log record, and returns
  ``event["value"]`` as is;
* ``sleep``: creates the file ``event["marker"]`` (when given), then sleeps ``event["seconds"]``
  (a test kills the process meanwhile);
* ``http``: a GET through ``http.client`` (instrumented) to ``event["port"]`` on the loopback,
  returning ``{"status", "body"}`` (against a server that never answers: a span in flight).

``FAULTS_BREAK`` (read at import) breaks one piece of the agent inside this process, so that the
tests can check that a failure of the agent never reaches the function:

* ``spans.start`` / ``spans.finish``: the instrumentation's client-span functions raise;
* ``redact_url``: the URL redaction used while the report is built raises;
* ``file.export``: the ``file`` exporter raises on every export.
"""

import http.client
import logging
import os
import time

import lambdascope

log = logging.getLogger("tests.faults")

BREAK = os.environ.get("FAULTS_BREAK", "")


class InjectedFault(RuntimeError):
    pass


def _boom(*args, **kwargs):
    raise InjectedFault(f"injected fault: {BREAK}")


if BREAK == "spans.start":
    from lambdascope.instrumentation import _spans

    _spans.start = _boom
elif BREAK == "spans.finish":
    from lambdascope.instrumentation import _spans

    _spans.finish = _boom
elif BREAK == "redact_url":
    from lambdascope import _redact

    _redact.redact_url = _boom
elif BREAK == "file.export":
    from lambdascope.exporters.file import FileExporter

    FileExporter.export = _boom
elif BREAK:
    raise RuntimeError(f"unknown FAULTS_BREAK {BREAK!r}")


@lambdascope.monitor
def handler(event, context):
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    if action == "sleep":
        if event.get("marker"):  # tells the test the handler is under way
            with open(event["marker"], "w"):
                pass
        time.sleep(float(event["seconds"]))
        return {"slept": event["seconds"]}
    if action == "http":
        conn = http.client.HTTPConnection("127.0.0.1", int(event["port"]), timeout=30)
        try:
            conn.request("GET", event.get("path", "/upstream?q=1"))
            response = conn.getresponse()
            return {"status": response.status, "body": response.read().decode()}
        finally:
            conn.close()
    lambdascope.label("faults")
    lambdascope.metric("faults_metric", 1, "Count")
    with lambdascope.span("faults-work", step="one"):
        log.warning("faults handler working on %s", context.aws_request_id)
    return event.get("value")

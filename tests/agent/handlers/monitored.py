"""A monitored handler for the sandbox tests (run by awslambdaric in its own process).

The event's ``action`` picks what it does: ``ok`` (default) records a label, a metric, a span
and a log record; ``raise`` raises ``ValueError``; ``echo`` returns ``event["value"]`` as is;
``alloc`` keeps ``event["mb"]`` MB alive across invocations; ``sleep`` sleeps; ``exit`` ends the
process at once (a crash); ``sys_exit`` raises ``SystemExit`` (the process ends on purpose).
"""

import logging
import os
import sys
import time

import lambdascope

log = logging.getLogger("tests.handler")

# Recorded at import time, outside any invocation: kept for the first report.
lambdascope.metric("import_metric", 1, "Count", phase="init")
lambdascope.label("imported")

_kept: list[bytes] = []


def fail(message: str) -> None:
    raise ValueError(message)  # RAISE-HERE


@lambdascope.monitor
def handler(event, context):
    action = event.get("action", "ok") if isinstance(event, dict) else "ok"
    if action == "raise":
        fail(event.get("message", "boom"))
    if action == "echo":
        return event["value"]
    if action == "alloc":
        _kept.append(b"\x01" * (int(event["mb"]) * 1024 * 1024))
    if action == "sleep":
        time.sleep(float(event["seconds"]))
    if action == "exit":
        os._exit(int(event.get("code", 3)))
    if action == "sys_exit":
        sys.exit(int(event.get("code", 4)))
    lambdascope.label("from-handler")
    lambdascope.metric("handler_metric", 2.5, "Milliseconds", route="/orders")
    with lambdascope.span("work", step="one"):
        log.warning("working on %s", context.aws_request_id)
    return {
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }

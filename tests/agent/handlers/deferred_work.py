"""A monitored handler for the deferred-report tests (run by awslambdaric in its own process).

Every invocation answers with what it saw of the agent when it started (``seen``): how many
reports the ``file`` exporter had written by then, whether the trace context was already
resolved, whether its starting resource readings were the ones taken after the previous
delivery, and where the agent's extension thread was. The event's ``action`` picks the work:

* ``noop`` (default): nothing (no call, no span);
* ``alloc_free``: allocates ``event["mb"]`` MB, touches every page, and frees it;
* ``burn``: burns ``event["ms"]`` ms of CPU on this thread;
* ``raise``: raises ``ValueError`` two calls deep;
* ``http``: GET ``event["url"]`` (urllib, instrumented);
* ``http_in_span``: the same inside the user span ``work``, then ``exit`` if asked;
* ``crash_in_call``: GET ``event["url"]`` (a server that never answers) while another thread
  ends the process after ``event["after_s"]``;
* ``exit``: ``os._exit`` at once.

An SQS event (``Records``) answers a partial batch response naming every record whose body is
``"fail"`` (and, with a record body ``"slow"``, a dict whose ``get`` takes 150 ms: only the
agent calls it, when it builds the report).
"""

import os
import sys
import threading
import time
import urllib.request

import lambdascope
from lambdascope import _state

_REPORTS = os.environ.get("LAMBDASCOPE_FILE", "")
_MB = 1024 * 1024


@lambdascope.monitor
def handler(event, context):
    seen = _seen()
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return _sqs(event)
    action = event.get("action", "noop") if isinstance(event, dict) else "noop"
    result = {"seen": seen}
    if action == "alloc_free":
        blob = bytearray(b"\x01") * (int(event["mb"]) * _MB)  # every page written
        del blob
    elif action == "burn":
        t0 = time.thread_time()  # (a system call: read it rarely, so the time is user time)
        while time.thread_time() - t0 < float(event["ms"]) / 1000.0:
            for _ in range(20000):
                pass
    elif action == "raise":
        outer_call(event.get("message", "deferred boom"))
    elif action == "http":
        result["status"] = _get(event["url"])
    elif action == "http_in_span":
        with lambdascope.span("work"):
            result["status"] = _get(event["url"])
        if event.get("exit"):
            os._exit(3)
    elif action == "crash_in_call":
        threading.Thread(target=_exit_later, args=(float(event["after_s"]),), daemon=True).start()
        _get(event["url"])
    elif action == "exit":
        os._exit(3)
    return result


def outer_call(message):
    inner_call(message)


def inner_call(message):
    raise ValueError(message)  # DEFERRED-RAISE-HERE


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
        return response.status


def _exit_later(after_s):
    time.sleep(after_s)
    os._exit(3)


class SlowGet(dict):
    """A partial batch response whose ``get`` is slow (the runtime client never calls it)."""

    def get(self, key, default=None):
        time.sleep(0.15)
        return super().get(key, default)


def _sqs(event):
    bodies = [r.get("body") for r in event["Records"]]
    failures = [
        {"itemIdentifier": r["messageId"]} for r in event["Records"] if r.get("body") == "fail"
    ]
    answer = {"batchItemFailures": failures}
    if "slow" in bodies:
        answer = SlowGet(answer)
    return answer


# -- what the invocation saw of the agent ---------------------------------------------------

# What the flusher prepared after each delivery (the next invocation's starting readings) and
# how many reports were written by then. The flusher exists once the decorator ran (init).
_prepared = []  # (reports written when the next start was prepared, the prepared Start)


def _count_reports():
    try:
        with open(_REPORTS, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return 0
    return data.count(b"\n")


def _watch_idle():
    flusher = _state.S.flusher
    if flusher is None or flusher.on_idle is None:
        return
    original = flusher.on_idle

    def on_idle(pipeline):
        original(pipeline)
        prepared = _state.S.next_start
        _prepared.append((_count_reports(), prepared[1] if prepared else None))

    flusher.on_idle = on_idle


_watch_idle()


def _flusher_stack():
    for thread in threading.enumerate():
        if thread.name == "lambdascope-flush":
            frame = sys._current_frames().get(thread.ident)
            names = []
            while frame is not None:
                names.append(frame.f_code.co_name)
                frame = frame.f_back
            return names
    return None


def _seen():
    inv = lambdascope.current()
    flusher = _state.S.flusher
    last = _prepared[-1] if _prepared else (None, None)
    return {
        "reports_written": _count_reports(),
        "resolved": inv._resolved,
        "prepared_used": last[1] is not None and inv.res_start is last[1],
        "reports_when_prepared": last[0],
        "flusher_defers": bool(flusher is not None and flusher.defers),
        "flusher_stack": _flusher_stack(),
    }

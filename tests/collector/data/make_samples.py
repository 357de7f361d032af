"""Writes the CloudWatch samples in this directory (run it from the repository's root:
``.venv/bin/python tests/collector/data/make_samples.py``).

The agent's reports in them are real: handlers decorated with ``@monitor`` run under
``lambdascope.testing`` (HTTP calls to a loopback server give the spans, a handler raises for
the errors); then each report is moved onto the samples' timeline (2026-11-30, 08:00 UTC),
its durations stretched to Lambda-like figures, and its ``function`` fields set as Lambda sets
them. Around the reports, the lines Lambda and the Python runtime write: ``INIT_START``,
``START``/``END``/``REPORT`` (with ``Init Duration`` on cold starts, ``Status: timeout``),
``[INFO]\\t<time>\\t<request id>\\t…`` records, print() output, the runtime's ``[ERROR]``
record with its traceback, ``Task timed out``. The files are committed; this script is how
they were made (the tests do not run it).
"""

from __future__ import annotations

import copy
import gzip  # noqa: F401 - kept for the reader's convenience (the tests gzip a sample)
import http.server
import json
import logging
import pathlib
import threading
import urllib.request
from datetime import datetime, timezone
from typing import Any

from lambdascope import monitor, testing
from lambdascope.testing import capture_reports, fake_context

HERE = pathlib.Path(__file__).resolve().parent
T0 = datetime(2026, 11, 30, 8, 0, 0, tzinfo=timezone.utc).timestamp() * 1000.0
log = logging.getLogger("orders")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        status = 503 if "fail" in self.path else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


BASE = serve()


@monitor
def orders(event: dict[str, Any], context: Any) -> dict[str, Any]:
    log.info("new order %s for customer %s", event["order"], event["customer"])
    with urllib.request.urlopen(f"{BASE}/payments/{event['order']}", timeout=5) as resp:
        resp.read()
    if event.get("missing"):
        raise ValueError(f"order {event['order']} not found")
    if event.get("inventory_down"):
        try:
            urllib.request.urlopen(f"{BASE}/inventory/fail", timeout=5).read()
        except Exception:
            log.warning("inventory service unavailable, retrying later")
    return {"statusCode": 200}


def make(rid: str, event: dict[str, Any], cold: bool) -> dict[str, Any]:
    if cold:
        testing.reset()
    with capture_reports() as reports:
        try:
            orders(event, fake_context(function_name="orders-api", memory_limit_in_mb=256,
                                       aws_request_id=rid, region="eu-west-1"))
        except ValueError:
            pass
    return reports[-1]


def place(report: dict[str, Any], start: float, duration: float, *, stream: str,
          version: str, function: str = "orders-api", init_ms: float | None = None,
          status: str | None = None, host: str = "payments.example.com",
          message: str | None = None) -> dict[str, Any]:
    """Put the report at ``start`` (epoch ms), lasting ``duration`` ms, in ``stream``."""
    r = copy.deepcopy(report)
    inv = r["invocation"]
    old_start, old_duration = inv["start_ms"], inv["duration_ms"] or 1.0
    factor = duration / old_duration

    def move(t: float) -> float:
        return round(start + (t - old_start) * factor, 3)

    inv["start_ms"] = round(start, 3)
    inv["end_ms"] = round(start + duration, 3)
    inv["duration_ms"] = round(duration, 3)
    if init_ms is not None:
        inv["init_duration_ms"] = init_ms
    if status is not None:
        inv["status"] = status
    for span in r["spans"]:
        span["start_ms"] = move(span["start_ms"])
        span["duration_ms"] = round(span["duration_ms"] * factor, 3)
        attrs = span.get("attributes", {})
        if attrs.get("server.address") == "127.0.0.1":
            host = "inventory.internal" if "inventory" in str(attrs.get("url.full")) else host
            attrs["server.address"] = host
            attrs["server.port"] = 443
            if "url.full" in attrs:
                path = "/" + attrs["url.full"].split("/", 3)[3]
                attrs["url.full"] = f"https://{host}{path}"
    for record in r["logs"]:
        record["timestamp_ms"] = move(record["timestamp_ms"])
        if message is not None:
            record["message"] = message
    for metric in r["metrics"]:
        metric["timestamp_ms"] = move(metric["timestamp_ms"])
    if r.get("error"):
        for frame in r["error"]["stack"]:
            if frame["file"].endswith("make_samples.py"):
                frame["file"] = "/var/task/app.py"
    fn = r["function"]
    fn.update(
        name=function, version=version, region="eu-west-1", memory_limit_mb=256,
        arn=f"arn:aws:lambda:eu-west-1:123456789012:function:{function}",
        log_group=f"/aws/lambda/{function}", log_stream=stream, service=function,
    )
    inv["timeout_ms"] = 3000.0 if inv["timeout_ms"] else inv["timeout_ms"]
    r["resources"]["sandbox_memory_mb"] = 96.4
    r["resources"]["sandbox_memory_peak_mb"] = 101.2
    r["resources"]["tmp_used_mb"] = 0.01
    r.pop("diagnostics", None)
    return r


def iso_z(ms: float) -> str:
    moment = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def line(report: dict[str, Any]) -> str:
    return json.dumps(report, separators=(",", ":"))


def py(level: str, ms: float, rid: str, message: str) -> str:
    return f"[{level}]\t{iso_z(ms)}\t{rid}\t{message}\n"


def report_line(rid: str, duration: float, memory: int, used: int,
                init: float | None = None, status: str | None = None) -> str:
    import math

    billed = math.ceil(duration) + (math.ceil(init) if init else 0)
    text = (f"REPORT RequestId: {rid}\tDuration: {duration:.2f} ms\tBilled Duration: {billed} ms"
            f"\tMemory Size: {memory} MB\tMax Memory Used: {used} MB\t")
    if init:
        text += f"Init Duration: {init:.2f} ms\t"
    if status:
        text += f"Status: {status}\t"
    return text + "\n"


class Export:
    """Events of one log group, interleaved by time as filter-log-events returns them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, stream: str, ms: float, message: str) -> None:
        self.events.append({"logStreamName": stream, "timestamp": int(ms), "message": message})

    def filter_log_events(self) -> str:
        events = sorted(self.events, key=lambda e: e["timestamp"])  # stable: per stream order
        out = []
        for i, e in enumerate(events):
            out.append({**e, "ingestionTime": e["timestamp"] + 480 + (i * 7) % 300,
                        "eventId": f"{e['timestamp']:d}{i:043d}"})
        streams = sorted({e["logStreamName"] for e in events})
        doc = {"events": out,
               "searchedLogStreams": [{"logStreamName": s, "searchedCompletely": True}
                                      for s in streams]}
        return json.dumps(doc, indent=4) + "\n"

    def tail(self) -> str:
        out = []
        for e in sorted(self.events, key=lambda e: e["timestamp"]):
            moment = datetime.fromtimestamp(e["timestamp"] / 1000.0, tz=timezone.utc)
            out.append(f"{moment.isoformat(timespec='microseconds')} {e['logStreamName']} "
                       f"{e['message']}".rstrip() + "\n")
        return "".join(out)


RUNTIME = ("INIT_START Runtime Version: python:3.12.v38\tRuntime Version ARN: "
           "arn:aws:lambda:eu-west-1::runtime:7b620fc2e66107a1046b140b9d320295811af3ad5d4c6a0"
           "11fad1fa65127e9e6\n")


def orders_export() -> None:
    """filter_log_events.json: orders-api version 7, two sandboxes (A, B) interleaved."""
    a = "2026/11/30/[7]0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    b = "2026/11/30/[7]f9e8d7c6b5a4938271605f4e3d2c1b0a"
    x = Export()
    # Sandbox A: r1 cold, r2 warm (print output, a late line from its background thread),
    # r3 warm and failing.
    r1, r2, r3 = ("8f3c2a1e-5b6d-4e7f-9a0b-1c2d3e4f5a01", "8f3c2a1e-5b6d-4e7f-9a0b-1c2d3e4f5a02",
                  "8f3c2a1e-5b6d-4e7f-9a0b-1c2d3e4f5a03")
    x.add(a, T0, RUNTIME)
    x.add(a, T0 + 301, f"START RequestId: {r1} Version: 7\n")
    x.add(a, T0 + 302, py("INFO", T0 + 302, r1, "Found credentials in environment variables."))
    rep = place(make(r1, {"order": "o-1001", "customer": "c-17"}, cold=True), T0 + 302, 84.31,
                stream=a, version="7", init_ms=297.41)
    x.add(a, T0 + 303, py("INFO", T0 + 303, r1, "new order o-1001 for customer c-17"))
    x.add(a, T0 + 387, line(rep) + "\n")
    x.add(a, T0 + 389, f"END RequestId: {r1}\n")
    x.add(a, T0 + 389, report_line(r1, 86.12, 256, 81, init=297.41))

    rep = place(make(r2, {"order": "o-1002", "customer": "c-4"}, cold=False), T0 + 2101, 41.7,
                stream=a, version="7")
    x.add(a, T0 + 2100, f"START RequestId: {r2} Version: 7\n")
    x.add(a, T0 + 2102, py("INFO", T0 + 2102, r2, "new order o-1002 for customer c-4"))
    x.add(a, T0 + 2110, "processing 3 line items\n")  # print(): no prefix
    x.add(a, T0 + 2143, line(rep) + "\n")
    x.add(a, T0 + 2144, f"END RequestId: {r2}\n")
    x.add(a, T0 + 2144, report_line(r2, 43.05, 256, 82))

    rep = place(make(r3, {"order": "o-1003", "customer": "c-9", "missing": True}, cold=False),
                T0 + 4001, 37.2, stream=a, version="7")
    x.add(a, T0 + 4000, f"START RequestId: {r3} Version: 7\n")
    # r2's background thread logs after r2 ended, while r3 runs: its prefix says r2.
    x.add(a, T0 + 4002, py("INFO", T0 + 4002, r2, "audit trail for o-1002 written"))
    x.add(a, T0 + 4003, py("INFO", T0 + 4003, r3, "new order o-1003 for customer c-9"))
    x.add(a, T0 + 4038, line(rep) + "\n")
    x.add(a, T0 + 4039, (
        '[ERROR] ValueError: order o-1003 not found\nTraceback (most recent call last):\n'
        '  File "/var/task/app.py", line 30, in handler\n'
        '    raise ValueError(f"order {event[\'order\']} not found")\n'))
    x.add(a, T0 + 4040, f"END RequestId: {r3}\n")
    x.add(a, T0 + 4040, report_line(r3, 39.40, 256, 83))

    # Sandbox B: r4 cold (inventory warning), r5 timeout, r6 out of memory (no agent report).
    r4, r5, r6 = ("1d2e3f40-6a7b-4c8d-9e0f-a1b2c3d4e5f4", "1d2e3f40-6a7b-4c8d-9e0f-a1b2c3d4e5f5",
                  "1d2e3f40-6a7b-4c8d-9e0f-a1b2c3d4e5f6")
    x.add(b, T0 + 350, RUNTIME)
    x.add(b, T0 + 640, f"START RequestId: {r4} Version: 7\n")
    rep = place(make(r4, {"order": "o-1004", "customer": "c-2", "inventory_down": True},
                     cold=True), T0 + 641, 120.5, stream=b, version="7", init_ms=289.77)
    x.add(b, T0 + 642, py("INFO", T0 + 642, r4, "new order o-1004 for customer c-2"))
    x.add(b, T0 + 700, py("WARNING", T0 + 700, r4,
                          "inventory service unavailable, retrying later"))
    x.add(b, T0 + 762, line(rep) + "\n")
    x.add(b, T0 + 763, f"END RequestId: {r4}\n")
    x.add(b, T0 + 763, report_line(r4, 122.88, 256, 79, init=289.77))

    rep = place(make(r5, {"order": "o-1005", "customer": "c-3"}, cold=False), T0 + 3001,
                2990.0, stream=b, version="7", status="timeout")
    rep["invocation"]["end_ms"] = rep["invocation"]["start_ms"] + 2990.0
    rep["spans"][0]["status"] = "error"
    rep["error"] = {"type": "TimeoutError",
                    "message": "the invocation was about to time out (10 ms left)",
                    "stack": [{"file": "/var/task/app.py", "line": 22, "function": "handler"}]}
    x.add(b, T0 + 3000, f"START RequestId: {r5} Version: 7\n")
    x.add(b, T0 + 3002, py("INFO", T0 + 3002, r5, "new order o-1005 for customer c-3"))
    x.add(b, T0 + 5991, line(rep) + "\n")
    x.add(b, T0 + 6001, f"{iso_z(T0 + 6001)} {r5} Task timed out after 3.00 seconds\n")
    x.add(b, T0 + 6002, f"END RequestId: {r5}\n")
    x.add(b, T0 + 6002, report_line(r5, 3000.0, 256, 84, status="timeout"))

    x.add(b, T0 + 7000, f"START RequestId: {r6} Version: 7\n")
    x.add(b, T0 + 7001, py("INFO", T0 + 7001, r6, "importing a 900 MB catalogue"))
    x.add(b, T0 + 7450, f"END RequestId: {r6}\n")
    x.add(b, T0 + 7450, report_line(r6, 449.2, 256, 256, status="error").replace(
        "Status: error\t", "Status: error\tError Type: Runtime.OutOfMemory\t"))
    (HERE / "filter_log_events.json").write_text(x.filter_log_events())


def tail_export() -> None:
    """tail.txt: ``aws logs tail /aws/lambda/orders-api`` after version 8 was deployed: one
    sandbox, slower, a multi-line log message (continuation lines)."""
    c = "2026/11/30/[8]5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"
    t = T0 + 600_000  # 08:10
    x = Export()
    x.add(c, t, RUNTIME)
    rids = [f"c0ffee00-1111-4222-8333-44445555666{i}" for i in range(7, 10)]
    for i, rid in enumerate(rids):
        start = t + 400 + i * 5000
        cold = i == 0
        duration = [180.2, 96.4, 104.9][i]
        rep = place(make(rid, {"order": f"o-20{i}", "customer": "c-1"}, cold=cold), start + 1,
                    duration, stream=c, version="8", init_ms=331.05 if cold else None)
        x.add(c, start, f"START RequestId: {rid} Version: 8\n")
        x.add(c, start + 2, py("INFO", start + 2, rid, f"new order o-20{i} for customer c-1"))
        if i == 1:
            x.add(c, start + 50, py("WARNING", start + 50, rid,
                                    "slow query:\nSELECT * FROM orders\nWHERE customer = ?"))
        x.add(c, start + duration, line(rep) + "\n")
        x.add(c, start + duration + 1, f"END RequestId: {rid}\n")
        x.add(c, start + duration + 1, report_line(
            rid, duration + 1.9, 256, 90 + i, init=331.05 if cold else None))
    (HERE / "tail.txt").write_text(x.tail())


def report_only() -> None:
    """report_only.json: a function without the agent (REPORT lines only); its log group is the
    standard one, so the function name must be given (--function legacy-cron).
    report_only_custom_group.txt: the same kind of function in a custom log group, whose stream
    names carry the function name (billing-sync)."""
    s = "2026/11/30/[$LATEST]aa11bb22cc33dd44ee55ff6600771188"
    x = Export()
    x.add(s, T0 + 60_000, RUNTIME)
    for i in range(3):
        rid = f"5eed0000-aaaa-4bbb-8ccc-00000000000{i}"
        start = T0 + 60_500 + i * 60_000
        duration = [1520.4, 1210.8, 1388.0][i]
        x.add(s, start, f"START RequestId: {rid} Version: $LATEST\n")
        x.add(s, start + 5, py("INFO", start + 5, rid, f"sync batch {i}: 250 rows"))
        x.add(s, start + duration, f"END RequestId: {rid}\n")
        x.add(s, start + duration, report_line(rid, duration, 512, 140 + i,
                                               init=612.3 if i == 0 else None))
    (HERE / "report_only.json").write_text(x.filter_log_events())

    s = "2026/11/30/billing-sync[$LATEST]99aa88bb77cc66dd55ee44ff33001122"
    x = Export()
    for i in range(2):
        rid = f"b111c000-aaaa-4bbb-8ccc-00000000001{i}"
        start = T0 + 120_000 + i * 30_000
        x.add(s, start, f"START RequestId: {rid} Version: $LATEST\n")
        x.add(s, start + 3, py("INFO", start + 3, rid, "invoices synced: 12"))
        x.add(s, start + 420, f"END RequestId: {rid}\n")
        x.add(s, start + 420, report_line(rid, 420.0 + i, 1024, 200,
                                          init=805.0 if i == 0 else None))
    (HERE / "report_only_custom_group.txt").write_text(x.tail())


def stdout_mixed() -> None:
    """stdout_mixed.log: a container's output as `docker logs` or a log shipper keeps it: raw
    lines, no CloudWatch envelope (function thumbnailer)."""
    out = []
    t = T0 + 900_000
    out.append("Mounting /var/task as readonly\n")
    out.append(RUNTIME)
    rids = ["7a7a7a7a-0000-4000-8000-00000000000a", "7a7a7a7a-0000-4000-8000-00000000000b",
            "7a7a7a7a-0000-4000-8000-00000000000c"]
    for i, rid in enumerate(rids):
        start = t + i * 2000
        rep = place(make(rid, {"order": f"t-{i}", "customer": "c-5"}, cold=i == 0), start + 1,
                    55.0 + i, stream="2026/11/30/[$LATEST]0123456789abcdef0123456789abcdef",
                    version="$LATEST", function="thumbnailer",
                    init_ms=250.0 if i == 0 else None, host="images.example.com",
                    message=f"resizing t-{i}.jpg to 3 sizes")
        out.append(f"START RequestId: {rid} Version: $LATEST\n")
        out.append(py("INFO", start + 2, rid, f"resizing t-{i}.jpg to 3 sizes"))
        out.append("wrote 3 thumbnails\n")
        if i == 1:
            # The runtime's own prefix in front of the report (a logging-based setup).
            out.append(f"{iso_z(start + 56)}\t{rid}\tINFO\t{line(rep)}\n")
        else:
            out.append(line(rep) + "\n")
        out.append(f"END RequestId: {rid}\n")
        out.append(report_line(rid, 57.0 + i, 256, 120, init=250.0 if i == 0 else None))
    # A report cut short (the log shipper's line limit) and a REPORT line without figures.
    out.append(line(rep)[:700] + "\n")
    out.append("REPORT RequestId: 7a7a7a7a-0000-4000-8000-00000000000d\tBilled Duration: ms\n")
    out.append("shutting down\n")
    (HERE / "stdout_mixed.log").write_text("".join(out))


def json_format() -> None:
    """json_format.log: AWS_LAMBDA_LOG_FORMAT=JSON output (function orders-json)."""
    out = []
    t = T0 + 1_200_000
    rid = "9b9b9b9b-1111-4222-8333-444444444444"
    rep = place(make(rid, {"order": "j-1", "customer": "c-8"}, cold=True), t + 1, 70.0,
                stream="2026/11/30/[$LATEST]fedcba9876543210fedcba9876543210",
                version="$LATEST", function="orders-json", init_ms=240.0)

    def at(ms: float) -> str:
        return iso_z(ms)

    out.append(json.dumps({"time": at(t - 250), "type": "platform.initStart", "record": {
        "initializationType": "on-demand", "phase": "init", "runtimeVersion": "python:3.12.v38",
        "functionName": "orders-json", "functionVersion": "$LATEST"}}) + "\n")
    out.append(json.dumps({"time": at(t), "type": "platform.start", "record": {
        "requestId": rid, "functionArn":
        "arn:aws:lambda:eu-west-1:123456789012:function:orders-json", "version": "$LATEST"}})
        + "\n")
    out.append(json.dumps({"timestamp": at(t + 2), "level": "INFO",
                           "message": "new order j-1 for customer c-8", "logger": "orders",
                           "requestId": rid}) + "\n")
    out.append(json.dumps({"timestamp": at(t + 3), "level": "INFO",
                           "message": "cache warmed", "logger": "cache",
                           "requestId": rid}) + "\n")
    out.append(line(rep) + "\n")
    out.append(json.dumps({"time": at(t + 72), "type": "platform.report", "record": {
        "requestId": rid, "metrics": {"durationMs": 71.5, "billedDurationMs": 312,
                                      "memorySizeMB": 256, "maxMemoryUsedMB": 77,
                                      "initDurationMs": 240.0}, "status": "success"}}) + "\n")
    (HERE / "json_format.log").write_text("".join(out))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    orders_export()
    tail_export()
    report_only()
    stdout_mixed()
    json_format()
    print("samples written to", HERE)

"""Bounded reports: an invocation that makes 100,000 calls stays bounded in memory and in size,
and what is pruned is the least valuable."""

from __future__ import annotations

import json
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import lambdascope
from lambdascope._report import MAX_REPORT_BYTES
from lambdascope.testing import capture_reports, fake_context


def test_a_huge_report_is_pruned_by_priority(validate_report: Any) -> None:
    @lambdascope.monitor(max_spans=5000)
    def handler(event: Any, context: Any) -> None:
        for i in range(3000):
            with lambdascope.span(f"step-{i}", blob="x" * 200):
                pass
        try:
            with lambdascope.span("the-failure"):
                raise ValueError("boom")
        except ValueError:
            pass
        raise RuntimeError("the handler failed")

    with capture_reports() as reports:
        try:
            handler({}, fake_context(timeout_s=30))
        except RuntimeError:
            pass
    (report,) = reports
    validate_report(report)
    assert len(json.dumps(report, separators=(",", ":"))) <= MAX_REPORT_BYTES
    names = [s["name"] for s in report["spans"]]
    assert names[0].endswith("handler") and "the-failure" in names  # root and errors survive
    assert report["error"]["message"] == "the handler failed"
    assert report["dropped_spans"] >= 3001 - len(names)
    assert report["invocation"]["status"] == "error"


def test_100k_calls_stay_bounded_in_memory() -> None:
    """100,000 spans in one invocation (each instrumented call records one the same way): the
    report keeps LAMBDASCOPE_MAX_SPANS of them, counts the rest, and memory does not grow per
    call."""
    from lambdascope.instrumentation import _spans

    marks: list[int] = []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> int:
        for i in range(event["n"]):
            handle = _spans.start("GET", {"http.request.method": "GET", "url.full": f"/x?i={i}"})
            _spans.finish(handle)
            if i in (event["n"] // 2, event["n"] - 1):
                marks.append(tracemalloc.get_traced_memory()[0])
        return event["n"]

    tracemalloc.start()
    try:
        with capture_reports() as reports:
            handler({"n": 100_000}, fake_context(timeout_s=300))
    finally:
        tracemalloc.stop()
    (report,) = reports
    assert len(report["spans"]) == 500  # LAMBDASCOPE_MAX_SPANS, root included
    assert report["dropped_spans"] == 100_000 - 499
    assert marks[1] - marks[0] < 256 * 1024  # the second 50,000 calls added nothing


def test_many_real_http_calls_keep_one_span_each_up_to_the_cap() -> None:
    import http.client

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        @lambdascope.monitor(max_spans=100)
        def handler(event: Any, context: Any) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port)
            for i in range(1000):
                conn.request("GET", f"/x?i={i}")
                conn.getresponse().read()

        with capture_reports() as reports:
            handler({}, fake_context(timeout_s=120))
    finally:
        server.shutdown()
        server.server_close()
    (report,) = reports
    assert len(report["spans"]) == 100
    assert report["dropped_spans"] == 1000 - 99

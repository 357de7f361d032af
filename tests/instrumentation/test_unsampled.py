"""An unsampled invocation records no span, but its calls still carry the trace context with the
sampled flag off, so the services downstream keep the decision."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

import lambdascope
from lambdascope.testing import capture_reports, fake_context


def test_unsampled_invocation_sends_traceparent_with_flags_off() -> None:
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("traceparent"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x"

        @lambdascope.monitor(sample_rate=0)
        def handler(event: Any, context: Any) -> int:
            return requests.get(url, timeout=5).status_code

        with capture_reports() as reports:
            assert handler({}, fake_context()) == 200
        report = reports[0]
        assert report["spans"] == []
        (header,) = seen
        version, trace_id, _span_id, flags = header.split("-")
        assert version == "00"
        assert trace_id == report["trace"]["trace_id"]
        assert flags == "00"
    finally:
        server.shutdown()
        server.server_close()

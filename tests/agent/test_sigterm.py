"""A stopped sandbox (SIGTERM, then a short grace) delivers what it had spooled."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_delivers_the_spool(sandboxes: Any) -> None:
    port = _free_port()
    lam = sandboxes(env={
        "LAMBDASCOPE_EXPORTERS": "http",
        "LAMBDASCOPE_COLLECTOR_URL": f"http://127.0.0.1:{port}",
        "LAMBDASCOPE_FLUSH_TIMEOUT_MS": "200",
        # The python3.12+ runtimes poll from a thread: the main thread can take the signal.
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    })
    results = [lam.invoke({}) for _ in range(3)]  # the collector is down: all spooled
    assert all(r.ok for r in results)
    assert lam.sandbox.wait_idle(5.0)

    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            import gzip

            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            body = json.loads(raw)
            for report in body if isinstance(body, list) else [body]:
                received.append(report["invocation"]["request_id"])
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # the collector comes back
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lam.sandbox.stop(grace_s=2.0)  # SIGTERM: the agent delivers what it had spooled
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(received) == sorted(r.request_id for r in results)

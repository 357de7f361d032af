"""The runner's loopback collector: ``POST /v1/reports`` (SPEC section 6) into the embedded
store, for the sandboxes of one ``lambdascope invoke``.

Standard library only (a ``ThreadingHTTPServer`` on 127.0.0.1 at a free port), so the ``local``
extra needs neither starlette nor uvicorn. A body is read whole (bounded), gunzipped when it says
so (bounded too), parsed and checked the way the collector does it — with
:func:`lambdascope.collector.app.parse_body` when the collector extra is installed, else with
the store's own checks (:meth:`Store.add` refuses a report it cannot store) after a quick check
against the shipped schema — and stored *before* the answer, so a sandbox whose delivery
succeeded has its report in the store. The request ids received are counted, and
:meth:`ReportReceiver.wait_for` waits (bounded) for the ones still expected.
"""

from __future__ import annotations

import functools
import json
import socketserver
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ReportReceiver"]

MAX_BODY = 5 * 1024 * 1024
MAX_DECOMPRESSED = 20 * 1024 * 1024
MAX_REPORTS = 1000


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@functools.lru_cache(maxsize=1)
def _quick_check() -> Callable[[Any], bool | None]:
    """The collector's quick yes/no check of a report against the shipped schema."""
    from importlib import resources

    from ..collector.validate import UnsupportedSchema, compile_check

    text = resources.files("lambdascope").joinpath("schema/lambdascope-1.json").read_text("utf-8")
    try:
        return compile_check(json.loads(text))
    except UnsupportedSchema:  # pragma: no cover - a schema keyword the quick check lacks
        return lambda report: None


def _parse_plain(body: bytes) -> tuple[list[dict[str, Any]], list[bytes] | None]:
    """The body's reports without the collector extra: JSON, then the schema's quick check."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _Refused(400, f"malformed JSON: {exc}") from None
    if isinstance(data, dict):
        reports, raws = [data], [body]
    elif isinstance(data, list):
        if len(data) > MAX_REPORTS:
            raise _Refused(413, f"{len(data)} reports in one body; at most {MAX_REPORTS}")
        reports, raws = data, None
    else:
        raise _Refused(400, "expected a JSON report (object) or an array of reports")
    check = _quick_check()
    for index, report in enumerate(reports):
        if check(report) is False:
            raise _Refused(400, f"report {index} does not match the report schema")
    return reports, raws


def _parse(body: bytes) -> tuple[list[dict[str, Any]], list[bytes] | None]:
    try:
        from ..collector.app import ApiError, parse_body
    except ImportError:  # the collector extra (starlette) is not installed
        return _parse_plain(body)
    try:
        return parse_body(body, MAX_REPORTS)
    except ApiError as exc:
        raise _Refused(exc.status, exc.message) from None


def _gunzip(body: bytes) -> bytes:
    inflater = zlib.decompressobj(47)  # gzip or zlib container
    try:
        data = inflater.decompress(body, MAX_DECOMPRESSED + 1)
    except zlib.error as exc:
        raise _Refused(400, f"the body is not valid gzip: {exc}") from None
    if len(data) > MAX_DECOMPRESSED or inflater.unconsumed_tail:
        raise _Refused(413, "the decompressed body is too large")
    return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64
    receiver: ReportReceiver

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sandbox killed mid-request resets its connection: that is no error of ours.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the agent keeps its connection alive
    server_version = "lambdascope-invoke"
    sys_version = ""
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if path != "/v1/reports":
            self._drain(length)
            return self._answer(404, {"error": f"no route for POST {path}"})
        if length < 0:
            self.close_connection = True
            return self._answer(411, {"error": "Content-Length is required"})
        if length > MAX_BODY:
            self.close_connection = True
            return self._answer(413, {"error": f"the body is larger than {MAX_BODY} bytes"})
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        try:
            if encoding in ("gzip", "deflate", "x-gzip"):
                body = _gunzip(body)
            elif encoding not in ("", "identity"):
                raise _Refused(415, f"unsupported Content-Encoding {encoding!r}")
            stored = self.server.receiver.accept(body)
        except _Refused as exc:
            return self._answer(exc.status, {"error": exc.message})
        except Exception as exc:  # the store failed: a 5xx makes the agent spool and retry
            return self._answer(503, {"error": f"the store failed: {exc}"})
        self._answer(200, {"stored": stored})

    def do_GET(self) -> None:  # noqa: N802
        self._answer(404, {"error": "this is the reports receiver of lambdascope invoke"})

    def _drain(self, length: int) -> None:
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class ReportReceiver:
    """A loopback ``/v1/reports`` endpoint that stores into ``store`` (a
    :class:`~lambdascope.collector.store.Store`). :attr:`url` is the agent's
    ``LAMBDASCOPE_COLLECTOR_URL``."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._cond = threading.Condition()
        #: request id → the latest report received for it (status, cold start, …).
        self.reports: dict[str, dict[str, Any]] = {}
        self.bodies = 0
        self.refused = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="lambdascope-invoke-receiver", daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def accept(self, body: bytes) -> int:
        """Parse, check and store one body; returns how many reports it held."""
        try:
            reports, raws = _parse(body)
        except _Refused:
            with self._cond:
                self.refused += 1
            raise
        try:
            self.store.add(reports, raws)
        except ValueError as exc:
            with self._cond:
                self.refused += 1
            raise _Refused(400, str(exc)) from None
        with self._cond:
            self.bodies += 1
            for report in reports:
                inv = report.get("invocation") if isinstance(report, dict) else None
                rid = inv.get("request_id") if isinstance(inv, dict) else None
                if isinstance(rid, str):
                    self.reports[rid] = inv
            self._cond.notify_all()
        return len(reports)

    def received(self) -> set[str]:
        with self._cond:
            return set(self.reports)

    def wait_for(self, request_ids: Iterable[str], timeout_s: float) -> set[str]:
        """Wait until a report of each of ``request_ids`` arrived, at most ``timeout_s``;
        returns the ids still missing."""
        wanted = set(request_ids)
        give_up = time.monotonic() + timeout_s
        with self._cond:
            while True:
                missing = wanted - self.reports.keys()
                remaining = give_up - time.monotonic()
                if not missing or remaining <= 0:
                    return missing
                self._cond.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

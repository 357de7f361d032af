"""A local OTLP/HTTP receiver for tests: what an OpenTelemetry Collector's ``otlp`` receiver
does on port 4318, on a free loopback port.

It accepts ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` with ``application/x-protobuf``
bodies (gzipped or not), decodes them with ``opentelemetry-proto``'s request messages and keeps
them. Faults are switches: ``status`` (every path) or ``status_by_path``, ``hang_s`` (answer
late), ``partial`` (a 2xx with a partial success).

>>> with OtlpReceiver() as receiver:
...     ...  # monitor(exporters="otlp", otlp_endpoint=receiver.url)
...     receiver.spans()  # [(resource attributes, span), ...]
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

REQUESTS = {
    "/v1/traces": trace_service_pb2.ExportTraceServiceRequest,
    "/v1/metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "/v1/logs": logs_service_pb2.ExportLogsServiceRequest,
}
RESPONSES = {
    "/v1/traces": (trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceResponse, "rejected_data_points"),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
}


def value(any_value: Any) -> Any:
    """An ``AnyValue`` as a Python value."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    if kind == "bytes_value":
        return bytes(any_value.bytes_value)
    return getattr(any_value, kind)


def attributes(key_values: Any) -> dict[str, Any]:
    """Repeated ``KeyValue`` as a dict."""
    return {kv.key: value(kv.value) for kv in key_values}


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    raw: bytes  # the body as sent (gzipped when Content-Encoding says so)
    message: Any  # the decoded Export*ServiceRequest, None when it did not decode
    status: int  # what the receiver answered (0: it hung up without answering)
    answered_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver:
    """A threaded OTLP/HTTP receiver on ``127.0.0.1``; ``url`` is its base endpoint."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.connections = 0
        self.status = 200
        self.status_by_path: dict[str, int] = {}
        self.hang_s = 0.0
        #: path -> (rejected count, error message) for a partial success answer.
        self.partial: dict[str, tuple[int, str]] = {}
        self.error_message = "bad request from test"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with outer._lock:
                    outer.connections += 1

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = raw
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(raw)
                message = None
                request_class = REQUESTS.get(self.path)
                if request_class is not None and self.headers.get("Content-Type") == (
                    "application/x-protobuf"
                ):
                    try:
                        message = request_class.FromString(body)
                    except Exception:
                        message = None
                status = outer.status_by_path.get(self.path, outer.status)
                if request_class is None:
                    status = 404
                elif message is None and status < 300:
                    status = 400
                entry = Received(self.path, dict(self.headers), raw, message, status)
                with outer._lock:
                    outer.received.append(entry)
                if outer.hang_s and outer._stop.wait(outer.hang_s):
                    return
                if status < 300:
                    response_class, field_name = RESPONSES[self.path]
                    response = response_class()
                    if self.path in outer.partial:
                        count, text = outer.partial[self.path]
                        setattr(response.partial_success, field_name, count)
                        response.partial_success.error_message = text
                    payload = response.SerializeToString()
                else:
                    payload = status_pb2.Status(
                        code=3, message=outer.error_message
                    ).SerializeToString()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    # -- what arrived ---------------------------------------------------------------------
    def requests(self, path: str | None = None, accepted: bool = False) -> list[Received]:
        with self._lock:
            out = list(self.received)
        return [
            r
            for r in out
            if (path is None or r.path == path) and (not accepted or 200 <= r.status < 300)
        ]

    def messages(self, signal: str, accepted: bool = True) -> list[Any]:
        """Decoded requests of ``signal`` (``traces``, ``metrics`` or ``logs``)."""
        return [
            r.message for r in self.requests(f"/v1/{signal}", accepted) if r.message is not None
        ]

    def spans(self, accepted: bool = True) -> list[tuple[dict[str, Any], Any]]:
        """Every span received: (resource attributes, Span)."""
        out = []
        for message in self.messages("traces", accepted):
            for rs in message.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend((resource, span) for span in ss.spans)
        return out

    def metrics(self, accepted: bool = True) -> list[tuple[dict[str, Any], Any]]:
        """Every metric received: (resource attributes, Metric)."""
        out = []
        for message in self.messages("metrics", accepted):
            for rm in message.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    out.extend((resource, metric) for metric in sm.metrics)
        return out

    def logs(self, accepted: bool = True) -> list[tuple[dict[str, Any], Any]]:
        """Every log record received: (resource attributes, LogRecord)."""
        out = []
        for message in self.messages("logs", accepted):
            for rl in message.resource_logs:
                resource = attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    out.extend((resource, record) for record in sl.log_records)
        return out

    def scopes(self) -> list[tuple[str, str]]:
        """(name, version) of every instrumentation scope received."""
        out = []
        for signal, outer_field, inner_field in (
            ("traces", "resource_spans", "scope_spans"),
            ("metrics", "resource_metrics", "scope_metrics"),
            ("logs", "resource_logs", "scope_logs"),
        ):
            for message in self.messages(signal):
                for resource_level in getattr(message, outer_field):
                    for scope_level in getattr(resource_level, inner_field):
                        out.append((scope_level.scope.name, scope_level.scope.version))
        return out

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

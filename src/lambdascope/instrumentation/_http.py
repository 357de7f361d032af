"""What every HTTP client instrumentation shares: attribute names, redaction of URLs, the
endpoints that are never traced, ``traceparent`` injection, and connection timing.

Attribute names: the names the contract lists (``http.request.method``, ``url.full``,
``server.address``, ``server.port``, ``http.response.status_code``) are always present. By default
the older names that most OpenTelemetry instrumentations still emit (``http.method``,
``http.url``, ``http.status_code``, ``net.peer.name``, ``net.peer.port``) come with them, so
dashboards built for either find what they expect. ``OTEL_SEMCONV_STABILITY_OPT_IN=http`` keeps
only the stable names.

Connection timing: while an HTTP span is in flight (``ACTIVE``), the lower layers report into it,
suppressed or not: the DNS lookup (``socket.getaddrinfo``), the TCP connect and the TLS handshake
when the call opened a new connection, and the time from the request being sent to the response
headers arriving (time to first byte).
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from typing import Any

from .._invocation import SpanRecord

#: The HTTP span in flight in this context (the outermost one).
ACTIVE: ContextVar[SpanRecord | None] = ContextVar("lambdascope_http_span", default=None)

DNS_MS = "lambdascope.net.dns_ms"
CONNECT_MS = "lambdascope.net.connect_ms"
TLS_MS = "lambdascope.net.tls_ms"
NEW_CONNECTION = "lambdascope.net.new_connection"
TTFB_MS = "lambdascope.http.ttfb_ms"

_EXCLUDED: set[tuple[str, int]] = set()


def _old_names() -> bool:
    opt_in = {p.strip() for p in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
    return "http" not in opt_in or "http/dup" in opt_in


OLD_NAMES = _old_names()


def _propagation_formats() -> tuple[bool, bool]:
    from .._propagation import propagators

    chosen = propagators()
    return "tracecontext" in chosen, "xray" in chosen


INJECT_W3C, INJECT_XRAY = _propagation_formats()


def outgoing_headers(inv: Any, span_id: str) -> dict[str, str]:
    """The trace headers an outgoing HTTP call from span ``span_id`` carries, as
    ``OTEL_PROPAGATORS`` asks (``traceparent`` by default; X-Ray with ``xray``)."""
    out: dict[str, str] = {}
    if INJECT_W3C:
        out["traceparent"] = f"00-{inv.trace_id}-{span_id}-{'01' if inv.sampled else '00'}"
    if INJECT_XRAY:
        from .._propagation import xray_header

        header = xray_header(os.environ.get("_X_AMZN_TRACE_ID"), inv.trace_id, span_id,
                             inv.sampled)
        if header:
            out["X-Amzn-Trace-Id"] = header
    return out


def exclude(host: str | None, port: int | None) -> None:
    """Never trace calls to ``host:port`` (the collector, the OTLP endpoint, the Runtime API)."""
    if host:
        _EXCLUDED.add((host.lower(), int(port or 0)))


def clear_exclusions() -> None:
    _EXCLUDED.clear()


def exclude_url(url: str | None) -> None:
    if not url:
        return
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        exclude(parts.hostname, parts.port or default)
    except ValueError:
        pass


def exclude_runtime_api() -> None:
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if address:
        host, _, port = address.rpartition(":")
        try:
            exclude(host or address, int(port) if port else 80)
        except ValueError:
            exclude(address, 80)


def is_excluded(host: str | None, port: int | None) -> bool:
    return bool(_EXCLUDED) and (str(host).lower(), int(port or 0)) in _EXCLUDED


def request_attributes(
    method: str, url: str, host: str | None, port: int | None
) -> dict[str, Any]:
    full = url  # redacted (query values, user info) when the report is built
    attrs: dict[str, Any] = {
        "http.request.method": method,
        "url.full": full,
        "server.address": host,
        "server.port": port,
    }
    if OLD_NAMES:
        attrs["http.method"] = method
        attrs["http.url"] = full
        attrs["net.peer.name"] = host
        attrs["net.peer.port"] = port
    return attrs


def set_status(record: SpanRecord, status: int) -> bool:
    """Record the response status; True when it makes the span an error (4xx, 5xx)."""
    record.attributes["http.response.status_code"] = status
    if OLD_NAMES:
        record.attributes["http.status_code"] = status
    if status >= 400:
        record.attributes["error.type"] = str(status)
        return True
    return False


def set_error(record: SpanRecord, exc: BaseException) -> None:
    record.attributes["error.type"] = type(exc).__qualname__


def add_connection_time(target: SpanRecord, key: str, ms: float) -> None:
    """Add ``ms`` of connecting (``CONNECT_MS`` or ``TLS_MS``) to the span ``target``."""
    attrs = target.attributes
    attrs[key] = round(attrs.get(key, 0.0) + max(0.0, ms), 3)
    attrs[NEW_CONNECTION] = True


def build_url(scheme: str, host: str, port: int | None, target: str) -> str:
    if target.startswith(("http://", "https://")):
        return target
    default = 443 if scheme == "https" else 80
    netloc = host if port in (None, default) else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" if port in (None, default) else f"[{host}]:{port}"
    return f"{scheme}://{netloc}{target if target.startswith('/') else '/' + target}"


def method_name(method: Any) -> str:
    if isinstance(method, bytes):
        method = method.decode("ascii", "replace")
    return str(method).upper()


class Timer:
    __slots__ = ("t0",)

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0


def call_in_span(
    handle: Any, wrapped: Any, args: Any, kwargs: Any, status_of: Any, resends_of: Any
) -> Any:
    """Run an HTTP library's call inside its client span: lower HTTP layers make no span but
    report their connection timing into it; the response's status (and resend count) close it;
    an exception marks it and propagates unchanged."""
    from . import _spans, _suppress

    record = handle[1]
    token = ACTIVE.set(record)
    try:
        with _suppress.suppressed(_suppress.HTTP):
            response = wrapped(*args, **kwargs)
    except BaseException as exc:
        set_error(record, exc)
        _spans.finish_safely(handle, exc)
        raise
    finally:
        ACTIVE.reset(token)
    try:
        error = set_status(record, int(status_of(response) or 0))
        resends = resends_of(response)
        if resends:
            record.attributes["http.request.resend_count"] = resends
    except Exception:
        error = False
    _spans.finish_safely(handle, error=error)
    return response

"""``urllib3``: one client span per request made directly with urllib3 (``PoolManager`` or a
connection pool; retries inside one call stay one span, with ``http.request.resend_count``), and
connection timing (TCP, TLS) for urllib3's own connections, which requests uses too.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from . import _http, _spans, _suppress
from ._base import Instrumentor

_TCP = "_lambdascope_tcp_ms"


class Urllib3Instrumentor(Instrumentor):
    name = "urllib3"
    modules = ("urllib3.connectionpool", "urllib3.connection")

    def __init__(self) -> None:
        super().__init__()
        self.spans = True

    def patch(self, module_name: str, module: ModuleType) -> None:
        if module_name == "urllib3.connectionpool":
            self.wrap(module.HTTPConnectionPool, "urlopen", self._urlopen)
        else:
            self.wrap(module.HTTPConnection, "_new_conn", self._new_conn)
            self.wrap(module.HTTPSConnection, "connect", self._connect_tls)

    def _urlopen(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if (
            not (self.enabled and self.spans)
            or _suppress.LEVEL.get()
            or _http.ACTIVE.get() is not None  # a retry of a call already traced
        ):
            return wrapped(*args, **kwargs)
        handle = None
        try:
            host, port = instance.host, instance.port
            if not _http.is_excluded(host, port):
                method = _http.method_name(args[0] if args else kwargs.get("method", "GET"))
                target = str(args[1] if len(args) > 1 else kwargs.get("url", "/"))
                url = _http.build_url(instance.scheme, host, port, target)
                handle = _spans.start(method, _http.request_attributes(method, url, host, port))
                if handle is not None:
                    args, kwargs = _inject(
                        args, kwargs, _http.outgoing_headers(handle[0], handle[1].span_id)
                    )
        except Exception as exc:
            from .._guard import internal_error

            internal_error("urllib3.urlopen", exc)
            handle = None
        if handle is None:
            return wrapped(*args, **kwargs)
        return _http.call_in_span(handle, wrapped, args, kwargs, _status, _resends)

    # -- connection timing (urllib3 overrides http.client's connect) ------------------------
    def _new_conn(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        target = _http.ACTIVE.get() if self.enabled else None
        if target is None or _suppress.LEVEL.get() >= _suppress.ALL:
            return wrapped(*args, **kwargs)
        dns_before = target.attributes.get(_http.DNS_MS, 0.0)
        t0 = time.perf_counter()
        try:
            return wrapped(*args, **kwargs)
        finally:
            ms = (time.perf_counter() - t0) * 1000.0
            instance.__dict__[_TCP] = ms
            dns = target.attributes.get(_http.DNS_MS, 0.0) - dns_before
            _http.add_connection_time(target, _http.CONNECT_MS, ms - dns)

    def _connect_tls(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        target = _http.ACTIVE.get() if self.enabled else None
        if target is None or _suppress.LEVEL.get() >= _suppress.ALL:
            return wrapped(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return wrapped(*args, **kwargs)
        finally:
            total = (time.perf_counter() - t0) * 1000.0
            tcp = instance.__dict__.pop(_TCP, None)
            if tcp is not None:
                _http.add_connection_time(target, _http.TLS_MS, total - tcp)


def _status(response: Any) -> Any:
    return getattr(response, "status", 0)


def _resends(response: Any) -> int:
    history = getattr(getattr(response, "retries", None), "history", None)
    return len(history) if history else 0


def _inject(args: Any, kwargs: Any, extra: dict[str, str]) -> tuple[Any, Any]:
    """``urlopen(method, url, body=None, headers=None, ...)``: add the trace headers the caller
    did not set itself (for a retry inside one call, our own earlier value is replaced)."""
    if not extra:
        return args, kwargs
    args = list(args)
    positional = len(args) > 3
    headers = dict((args[3] if positional else kwargs.get("headers")) or {})
    present = {str(k).lower() for k in headers}
    for name, value in extra.items():
        if name.lower() not in present:
            headers[name] = value
    if positional:
        args[3] = headers
    else:
        kwargs = dict(kwargs, headers=headers)
    return tuple(args), kwargs

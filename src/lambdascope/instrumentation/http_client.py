"""``http.client``: one client span per request made directly with the standard library, and
connection timing for every HTTP library built on it (urllib3, requests).

Patched: ``HTTPConnection.request`` (span start, ``traceparent`` injection),
``HTTPConnection.getresponse`` (status, time to first byte, span end), ``HTTPConnection.connect``
and ``HTTPSConnection.connect`` (TCP and TLS time when a connection is opened) and
``socket.getaddrinfo`` (DNS time, only while an HTTP span is in flight).
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from . import _http, _spans, _suppress
from ._base import Instrumentor

_ATTR = "_lambdascope_span"


def _target(instance: Any) -> Any:
    handle = getattr(instance, _ATTR, None)
    return handle[1] if handle is not None else _http.ACTIVE.get()


class HttpClientInstrumentor(Instrumentor):
    name = "http.client"
    modules = ("http.client",)

    def __init__(self) -> None:
        super().__init__()
        #: Whether direct ``http.client`` calls get spans (timing is recorded regardless).
        self.spans = True

    def patch(self, module_name: str, module: ModuleType) -> None:
        import socket

        # request() goes through putrequest/putheader/endheaders, and so do callers that build
        # requests by hand (xmlrpc.client, older SDKs): wrapping those covers both.
        self.wrap(module.HTTPConnection, "putrequest", self._putrequest)
        self.wrap(module.HTTPConnection, "endheaders", self._endheaders)
        self.wrap(module.HTTPConnection, "getresponse", self._getresponse)
        self.wrap(module.HTTPConnection, "connect", self._connect)
        self.wrap(module.HTTPSConnection, "connect", self._connect_tls)
        self.wrap(socket, "getaddrinfo", self._getaddrinfo)

    # -- spans ----------------------------------------------------------------------------
    def _putrequest(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        if not (self.enabled and self.spans) or _suppress.LEVEL.get():
            return result
        try:
            stale = instance.__dict__.pop(_ATTR, None)
            if stale is not None:  # a request that never got its response
                _spans.finish_safely(stale, error=True)
            host, port = instance.host, instance.port
            if not _http.is_excluded(host, port):
                method = _http.method_name(args[0] if args else kwargs.get("method", "GET"))
                target = args[1] if len(args) > 1 else kwargs.get("url", "/")
                scheme = "https" if _is_tls(instance) else "http"
                url = _http.build_url(scheme, host, port, str(target))
                handle = _spans.start(method, _http.request_attributes(method, url, host, port))
                if handle is not None:
                    instance.__dict__[_ATTR] = handle
        except Exception as exc:
            from .._guard import internal_error

            internal_error("http.client.putrequest", exc)
        return result

    def _endheaders(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        handle = instance.__dict__.get(_ATTR)
        if handle is None or not self.enabled:
            return wrapped(*args, **kwargs)
        try:
            # The header lines put so far (http.client keeps them until endheaders sends them).
            buffered = b"\r\n".join(getattr(instance, "_buffer", ())).lower()
            for name, value in _http.outgoing_headers(handle[0], handle[1].span_id).items():
                if b"\r\n" + name.lower().encode() + b":" not in buffered:
                    instance.putheader(name, value)
        except Exception as exc:
            from .._guard import internal_error

            internal_error("http.client.endheaders", exc)
        # Sending connects (lazily): DNS, TCP and TLS times go to this span.
        token = _http.ACTIVE.set(handle[1]) if _http.ACTIVE.get() is None else None
        try:
            return wrapped(*args, **kwargs)
        except BaseException as exc:
            if instance.__dict__.get(_ATTR) is handle:
                del instance.__dict__[_ATTR]
                _http.set_error(handle[1], exc)
                _spans.finish_safely(handle, exc)
            raise
        finally:
            if token is not None:
                _http.ACTIVE.reset(token)

    def _getresponse(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.enabled or _suppress.LEVEL.get() >= _suppress.ALL:
            return wrapped(*args, **kwargs)
        handle = instance.__dict__.pop(_ATTR, None)
        target = handle[1] if handle is not None else _http.ACTIVE.get()
        if target is None:
            return wrapped(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            if handle is not None:
                _http.set_error(handle[1], exc)
                _spans.finish_safely(handle, exc)
            raise
        ttfb = (time.perf_counter() - t0) * 1000.0
        target.attributes[_http.TTFB_MS] = round(ttfb, 3)
        if handle is not None:
            error = _http.set_status(handle[1], int(getattr(response, "status", 0) or 0))
            _spans.finish_safely(handle, error=error)
        return response

    # -- connection timing ----------------------------------------------------------------
    def _connect(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        target = _target(instance) if self.enabled else None
        if target is None:
            return wrapped(*args, **kwargs)
        dns_before = target.attributes.get(_http.DNS_MS, 0.0)
        t0 = time.perf_counter()
        try:
            return wrapped(*args, **kwargs)
        finally:
            ms = (time.perf_counter() - t0) * 1000.0
            instance.__dict__["_lambdascope_tcp_ms"] = ms  # for the TLS wrapper around us
            dns = target.attributes.get(_http.DNS_MS, 0.0) - dns_before
            _http.add_connection_time(target, _http.CONNECT_MS, ms - dns)

    def _connect_tls(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        # HTTPSConnection.connect: TCP (through HTTPConnection.connect, timed above), then TLS.
        target = _target(instance) if self.enabled else None
        if target is None:
            return wrapped(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return wrapped(*args, **kwargs)
        finally:
            total = (time.perf_counter() - t0) * 1000.0
            tcp = instance.__dict__.pop("_lambdascope_tcp_ms", None)
            if tcp is not None:
                _http.add_connection_time(target, _http.TLS_MS, total - tcp)

    def _getaddrinfo(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        target = _http.ACTIVE.get() if self.enabled else None
        if target is None:
            return wrapped(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return wrapped(*args, **kwargs)
        finally:
            attrs = target.attributes
            ms = (time.perf_counter() - t0) * 1000.0
            attrs[_http.DNS_MS] = round(attrs.get(_http.DNS_MS, 0.0) + ms, 3)


def _is_tls(instance: Any) -> bool:
    import http.client

    return isinstance(instance, http.client.HTTPSConnection) or getattr(
        instance, "scheme", None
    ) == "https"

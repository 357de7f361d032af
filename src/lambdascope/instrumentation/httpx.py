"""``httpx``: one client span per ``Client.send`` and ``AsyncClient.send`` (every ``get``,
``post``, ``stream`` and the SDKs built on httpx go through them), with ``traceparent``
injected, and connection timing from httpcore's ``trace`` extension (TCP connect, TLS
handshake, time to the response headers)."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from . import _http, _spans, _suppress
from ._base import Instrumentor

_PHASES = {
    "connection.connect_tcp": _http.CONNECT_MS,
    "connection.start_tls": _http.TLS_MS,
}


class _Trace:
    """Collects httpcore trace events into a span, then hands them to the user's callback."""

    __slots__ = ("previous", "record", "sent_at", "started")

    def __init__(self, record: Any, previous: Any) -> None:
        self.record = record
        self.previous = previous
        self.started: dict[str, float] = {}
        self.sent_at: float | None = None

    def note(self, name: str) -> None:
        now = time.perf_counter()
        prefix, _, phase = name.rpartition(".")
        attrs = self.record.attributes
        if phase == "started":
            self.started[prefix] = now
        elif phase in ("complete", "failed"):
            if prefix.endswith("send_request_body"):
                self.sent_at = now  # the response is waited for from here
            began = self.started.pop(prefix, None)
            if began is None:
                return
            ms = (now - began) * 1000.0
            key = _PHASES.get(prefix)
            if key is not None:
                attrs[key] = round(attrs.get(key, 0.0) + ms, 3)
                attrs[_http.NEW_CONNECTION] = True
            elif prefix.endswith("receive_response_headers"):
                since = self.sent_at if self.sent_at is not None else began
                attrs[_http.TTFB_MS] = round((now - since) * 1000.0, 3)

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.note(name)
        if self.previous is not None:
            self.previous(name, info)


class _AsyncTrace(_Trace):
    __slots__ = ()

    async def __call__(self, name: str, info: dict[str, Any]) -> None:  # type: ignore[override]
        self.note(name)
        if self.previous is not None:
            await self.previous(name, info)


class HttpxInstrumentor(Instrumentor):
    name = "httpx"
    modules = ("httpx",)

    def patch(self, module_name: str, module: ModuleType) -> None:
        self.wrap(module.Client, "send", self._send)
        self.wrap(module.AsyncClient, "send", self._send_async)

    def _open(self, args: Any, kwargs: Any, trace_cls: type[_Trace]) -> Any:
        if not self.enabled or _suppress.LEVEL.get() or _http.ACTIVE.get() is not None:
            return None
        try:
            request = args[0] if args else kwargs.get("request")
            url = request.url
            host = url.host
            port = url.port or (443 if url.scheme == "https" else 80)
            if _http.is_excluded(host, port):
                return None
            method = _http.method_name(request.method)
            handle = _spans.start(method, _http.request_attributes(method, str(url), host, port))
            if handle is None:
                return None
            extensions = request.extensions
            # A request object sent again keeps what we injected last time: replace that, but
            # never a header the caller set.
            ours = extensions.get("lambdascope.injected") or {}
            injected = {}
            for name, value in _http.outgoing_headers(handle[0], handle[1].span_id).items():
                current = request.headers.get(name)  # case-insensitive
                if current is None or current == ours.get(name):
                    request.headers[name] = value
                    injected[name] = value
            extensions["lambdascope.injected"] = injected
            previous = extensions.get("trace")
            extensions["trace"] = trace_cls(handle[1], previous)
            return handle, request, previous
        except Exception as exc:
            from .._guard import internal_error

            internal_error("httpx.send", exc)
            return None

    @staticmethod
    def _restore(request: Any, previous: Any) -> None:
        """Put the caller's own trace callback back (or none), so a resend starts clean."""
        try:
            if previous is None:
                request.extensions.pop("trace", None)
            else:
                request.extensions["trace"] = previous
        except Exception:
            pass

    @staticmethod
    def _close(handle: Any, response: Any) -> None:
        try:
            error = _http.set_status(handle[1], int(response.status_code))
            version = getattr(response, "http_version", None)
            if version:
                handle[1].attributes["network.protocol.version"] = str(version).split("/")[-1]
        except Exception:
            error = False
        _spans.finish_safely(handle, error=error)

    def _send(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        opened = self._open(args, kwargs, _Trace)
        if opened is None:
            return wrapped(*args, **kwargs)
        handle, request, previous = opened
        token = _http.ACTIVE.set(handle[1])
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            _http.set_error(handle[1], exc)
            _spans.finish_safely(handle, exc)
            raise
        finally:
            _http.ACTIVE.reset(token)
            self._restore(request, previous)
        self._close(handle, response)
        return response

    async def _send_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        opened = self._open(args, kwargs, _AsyncTrace)
        if opened is None:
            return await wrapped(*args, **kwargs)
        handle, request, previous = opened
        token = _http.ACTIVE.set(handle[1])
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _http.set_error(handle[1], exc)
            _spans.finish_safely(handle, exc)
            raise
        finally:
            _http.ACTIVE.reset(token)
            self._restore(request, previous)
        self._close(handle, response)
        return response

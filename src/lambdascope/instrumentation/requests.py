"""``requests``: one client span per ``Session.send`` (every ``requests.get`` and friends go
through it); urllib3 and http.client beneath make no span of their own but report their
connection timing into this one."""

from __future__ import annotations

from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from . import _http, _spans, _suppress
from ._base import Instrumentor


class RequestsInstrumentor(Instrumentor):
    name = "requests"
    modules = ("requests.sessions",)

    def patch(self, module_name: str, module: ModuleType) -> None:
        self.wrap(module.Session, "send", self._send)

    def _send(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.enabled or _suppress.LEVEL.get() or _http.ACTIVE.get() is not None:
            return wrapped(*args, **kwargs)
        handle = None
        try:
            request = args[0] if args else kwargs.get("request")
            parts = urlsplit(request.url)
            host = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if not _http.is_excluded(host, port):
                method = _http.method_name(request.method or "GET")
                handle = _spans.start(
                    method, _http.request_attributes(method, request.url, host, port)
                )
                if handle is not None:
                    # A request object sent again keeps what we injected last time: replace
                    # that, but never a header the caller set.
                    ours = getattr(request, "_lambdascope_injected", None) or {}
                    injected = {}
                    for name, value in _http.outgoing_headers(
                        handle[0], handle[1].span_id
                    ).items():
                        current = request.headers.get(name)  # case-insensitive
                        if current is None or current == ours.get(name):
                            request.headers[name] = value
                            injected[name] = value
                    request._lambdascope_injected = injected
        except Exception as exc:
            from .._guard import internal_error

            internal_error("requests.send", exc)
            handle = None
        if handle is None:
            return wrapped(*args, **kwargs)
        return _http.call_in_span(
            handle, wrapped, args, kwargs,
            lambda response: response.status_code,
            lambda response: len(response.history),
        )

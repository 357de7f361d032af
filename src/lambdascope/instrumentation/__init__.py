"""Automatic instrumentation: every AWS SDK and HTTP call becomes a client span.

``instrument()`` applies the instrumentations a configuration names (patching libraries already
imported, and hooking the import of the others); ``uninstrument()`` removes them, restoring every
patched attribute to the very object it was. Both are idempotent. Nothing here is imported by
``import lambdascope``: ``@monitor`` applies it on the first invocation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .._guard import internal_error
from ._base import Instrumentor

_lock = threading.RLock()
_instances: dict[str, Instrumentor] = {}
_applied: list[str] = []  # in the order applied; removed in reverse

# Libraries that run over HTTP connections of http.client / urllib3 and need their timing.
_ON_HTTP_CLIENT = ("http.client", "urllib3", "requests")
_ON_URLLIB3 = ("urllib3", "requests")


def _get(name: str) -> Instrumentor:
    found = _instances.get(name)
    if found is None:
        if name == "http.client":
            from .http_client import HttpClientInstrumentor

            found = HttpClientInstrumentor()
        elif name == "urllib3":
            from .urllib3 import Urllib3Instrumentor

            found = Urllib3Instrumentor()
        elif name == "requests":
            from .requests import RequestsInstrumentor

            found = RequestsInstrumentor()
        elif name == "httpx":
            from .httpx import HttpxInstrumentor

            found = HttpxInstrumentor()
        elif name == "botocore":
            from .botocore import BotocoreInstrumentor

            found = BotocoreInstrumentor()
        elif name == "threading":
            from .threading import ThreadingInstrumentor

            found = ThreadingInstrumentor()
        elif name == "subprocess":
            from .subprocess import SubprocessInstrumentor

            found = SubprocessInstrumentor()
        else:
            raise ValueError(f"unknown instrumentation {name!r}")
        _instances[name] = found
    return found


def instrument(names: Iterable[str] | None = None) -> None:
    """Apply the named instrumentations (default: all of ``LAMBDASCOPE_INSTRUMENT``'s)."""
    if names is None:
        from .._config import Config

        names = Config().instrument
    chosen = list(dict.fromkeys(names))
    with _lock:
        plan: list[tuple[str, bool]] = []
        # Connection timing comes from http.client and urllib3 even when only a library above
        # them is chosen; they then record timing but make no span of their own.
        if any(n in chosen for n in _ON_HTTP_CLIENT):
            plan.append(("http.client", "http.client" in chosen))
        if any(n in chosen for n in _ON_URLLIB3):
            plan.append(("urllib3", "urllib3" in chosen))
        plan.extend((n, True) for n in chosen if n not in ("http.client", "urllib3"))
        for name, spans in plan:
            try:
                inst = _get(name)
                if hasattr(inst, "spans"):
                    # Spans once chosen stay on until uninstrument().
                    inst.spans = spans if name not in _applied else (inst.spans or spans)
                if name not in _applied:
                    inst.instrument()
                    _applied.append(name)
            except Exception as exc:
                internal_error(f"instrument.{name}", exc)


def uninstrument() -> None:
    """Remove every instrumentation applied, restoring the original functions exactly."""
    with _lock:
        from . import _http

        _http.clear_exclusions()
        while _applied:
            name = _applied.pop()
            try:
                _instances[name].uninstrument()
            except Exception as exc:
                internal_error(f"uninstrument.{name}", exc)


def applied() -> list[str]:
    return list(_applied)

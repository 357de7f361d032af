"""``span()``: user spans as children of the current span, with the OpenTelemetry bridge."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType

from . import _ids, _state
from ._guard import guarded
from ._invocation import CURRENT, PARENT, Invocation, SpanRecord

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


def current_parent(inv: Invocation) -> str | None:
    """The span id new spans should be parented to."""
    bridge = _state.S.otel_bridge
    if bridge is not None and bridge.active:
        found = bridge.current_span_id(inv)
        if found is not None:
            return found
    parent = PARENT.get()
    if parent is not None:
        return parent
    return inv.root_span_id


def is_async(fn: Any) -> bool:
    """True for ``async def`` functions, also behind ``functools.partial`` and wrappers."""
    seen = 0
    while fn is not None and seen < 20:
        seen += 1
        if getattr(fn, "_is_coroutine_marker", None) is not None:  # inspect.markcoroutinefunction
            return True
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_flags & 0x80:  # CO_COROUTINE
            return True
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        fn = getattr(fn, "__wrapped__", None)
    return False


class span:
    """A child span of the current span: a context manager and a decorator.

    ``with lambdascope.span("parse", rows=10) as s: ...`` or ``@lambdascope.span("parse")``.
    An exception inside is recorded on the span (status ``error``) and propagates unchanged.
    Outside a sampled invocation it records nothing and costs next to nothing.
    """

    __slots__ = ("_inv", "_otel_token", "_record", "_token", "attributes", "name")

    def __init__(self, name: str, **attributes: Any) -> None:
        self.name = str(name)
        self.attributes = attributes
        self._record: SpanRecord | None = None
        self._inv: Invocation | None = None
        self._token: Any = None
        self._otel_token: Any = None

    def set_attribute(self, key: str, value: Any) -> None:
        """Add an attribute to the span while it is open."""
        if self._record is not None:
            self._record.attributes[key] = value
        else:
            self.attributes[key] = value

    @property
    def span_id(self) -> str | None:
        return self._record.span_id if self._record is not None else None

    def __enter__(self) -> span:
        inv = CURRENT.get()
        if inv is None or not inv.sampled:
            return self
        with guarded("span.start"):
            record = SpanRecord(
                _ids.new_span_id(), current_parent(inv), self.name, "internal",
                dict(self.attributes),
            )
            inv.open_spans[record.span_id] = record
            crumbs = _state.S.breadcrumbs
            if crumbs:  # a crash report names the span in flight
                crumbs.span_started(inv, record)
            self._token = PARENT.set(record.span_id)
            bridge = _state.S.otel_bridge
            if bridge is not None and bridge.active:
                self._otel_token = bridge.attach(inv, record.span_id)
            self._record, self._inv = record, inv
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        record, inv = self._record, self._inv
        if record is None or inv is None:
            return False
        with guarded("span.end"):
            self._record = self._inv = None
            record.finish(exc)
            inv.add_span(record)
            crumbs = _state.S.breadcrumbs
            if crumbs:
                crumbs.span_ended(inv, record)
            if self._otel_token is not None:
                _state.S.otel_bridge.detach(self._otel_token)
                self._otel_token = None
            if self._token is not None:
                PARENT.reset(self._token)
                self._token = None
        return False

    def __call__(self, fn: F) -> F:
        name, attributes = self.name, self.attributes
        if is_async(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with span(name, **attributes):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(name, **attributes):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

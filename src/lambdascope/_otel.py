"""The OpenTelemetry bridge, loaded only once the process has imported the OpenTelemetry API.

Spans that user code or a library creates through ``opentelemetry.trace`` appear in the report
as children of the current span:

* the invocation's root span (and each open ``lambdascope.span``) is made current in the
  OpenTelemetry context, so any tracer parents new spans to it;
* when the user has configured an SDK ``TracerProvider``, it stays theirs: a span processor is
  added to it that copies the spans of the invocation's trace into the report;
* when nobody has configured a provider, a light provider of ours is installed once; its spans
  are recorded straight into the report without the SDK's machinery.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from . import _ids, _state
from ._guard import guarded
from ._invocation import CURRENT, Invocation, SpanRecord

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

try:  # works both as a context manager and as a decorator, like the SDK's
    from opentelemetry.util._decorator import _agnosticcontextmanager as _cm
except Exception:  # pragma: no cover - older API
    _cm = contextlib.contextmanager

_KINDS = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}


def _clean(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return str(value)


def _invocation_for(trace_id: int) -> Invocation | None:
    active = _state.S.active
    if not active:
        return None
    wanted = f"{trace_id:032x}"
    for inv in list(active.values()):  # one, or a few on Lambda Managed Instances
        if inv.trace_id == wanted:
            return inv  # type: ignore[no-any-return]
    return None


class _BridgeSpan(trace.Span):
    """An OpenTelemetry API span that records itself into the invocation's report."""

    def __init__(
        self, inv: Invocation, record: SpanRecord, context: SpanContext, start_time: int | None
    ) -> None:
        self._inv = inv
        self._record = record
        self._context = context
        self._ended = False
        if start_time is not None:
            record.start_ms = start_time / 1e6
            record._t0 = time.perf_counter() - (time.time() - start_time / 1e9)

    def get_span_context(self) -> SpanContext:
        return self._context

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self._record.attributes[key] = _clean(value)

    def set_attribute(self, key: str, value: Any) -> None:
        self._record.attributes[key] = _clean(value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        return None

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        return None

    def update_name(self, name: str) -> None:
        self._record.name = name

    def is_recording(self) -> bool:
        return not self._ended

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        code = status.status_code if isinstance(status, Status) else status
        if code is StatusCode.ERROR:
            self._record.status = "error"
            desc = status.description if isinstance(status, Status) else description
            if desc:
                self._record.attributes.setdefault("status.description", desc)
        elif code is StatusCode.OK:
            self._record.status = "ok"

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self._record.attributes["exception.type"] = type(exception).__qualname__
        self._record.attributes["exception.message"] = str(exception)[:1024]

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        with guarded("otel.span.end"):
            if end_time is not None:
                self._record.duration_ms = max(0.0, end_time / 1e6 - self._record.start_ms)
            self._record.finish()
            self._inv.add_span(self._record)


class _Tracer(trace.Tracer):
    def __init__(self, scope: str) -> None:
        self._scope = scope

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        inv = _invocation_for(parent.trace_id) if parent.is_valid else CURRENT.get()
        if inv is None or not inv.sampled or inv.root_span_id is None:
            return NonRecordingSpan(parent if parent.is_valid else INVALID_SPAN_CONTEXT)
        parent_id = f"{parent.span_id:016x}" if parent.is_valid else inv.root_span_id
        attrs = {k: _clean(v) for k, v in (attributes or {}).items()}
        attrs.setdefault("otel.scope.name", self._scope)
        record = SpanRecord(_ids.new_span_id(), parent_id, name, _KINDS.get(kind, "internal"),
                            attrs)
        ctx = SpanContext(
            int(inv.trace_id, 16), int(record.span_id, 16), is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        return _BridgeSpan(inv, record, ctx, start_time)

    @_cm
    def start_as_current_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class _Provider(trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> trace.Tracer:
        return _Tracer(instrumenting_module_name or "unknown")


class _Processor:
    """Span processor added to a user's SDK provider: copies our trace's spans into the report."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:
        return None

    def on_end(self, span: Any) -> None:
        with guarded("otel.processor"):
            ctx = span.get_span_context() if hasattr(span, "get_span_context") else span.context
            inv = _invocation_for(ctx.trace_id)
            if inv is None or not inv.sampled:
                return
            parent = span.parent
            if parent is not None:
                parent_id: str | None = f"{parent.span_id:016x}"
            else:
                parent_id = inv.root_span_id
            record = SpanRecord(
                f"{ctx.span_id:016x}",
                parent_id,
                span.name,
                _KINDS.get(span.kind, "internal"),
                {k: _clean(v) for k, v in (span.attributes or {}).items()},
            )
            if span.start_time is not None:
                record.start_ms = span.start_time / 1e6
            if span.start_time is not None and span.end_time is not None:
                record.duration_ms = (span.end_time - span.start_time) / 1e6
            if span.status is not None and span.status.status_code is StatusCode.ERROR:
                record.status = "error"
            scope = getattr(span, "instrumentation_scope", None)
            if scope is not None:
                record.attributes.setdefault("otel.scope.name", scope.name)
            record.finish()
            inv.add_span(record)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Bridge:
    """Keeps the OpenTelemetry context in step with lambdascope's spans."""

    def __init__(self) -> None:
        self.active = False
        self.mode = "none"
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            trace.set_tracer_provider(_Provider())
            self.mode = "own"
            self.active = True
        elif hasattr(provider, "add_span_processor"):
            provider.add_span_processor(_Processor())
            self.mode = "sdk"
            self.active = True
        elif isinstance(provider, _Provider):  # pragma: no cover - ours from an earlier life
            self.mode = "own"
            self.active = True
        else:
            # Another API implementation: still make our spans current so its spans share our
            # trace, but we cannot see them.
            self.mode = "foreign"
            self.active = True

    def attach(self, inv: Invocation, span_id: str) -> object:
        ctx = SpanContext(
            int(inv.trace_id, 16),
            int(span_id, 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if inv.sampled else TraceFlags.DEFAULT),
        )
        return otel_context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))

    def detach(self, token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    def current_span_id(self, inv: Invocation) -> str | None:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid and f"{ctx.trace_id:032x}" == inv.trace_id:
            return f"{ctx.span_id:016x}"
        return None

"""Client spans for instrumented calls: opened under the current span of the invocation in
flight, never under suppression, never outside a sampled invocation."""

from __future__ import annotations

from typing import Any

from .. import _ids, _state
from .._invocation import CURRENT, Invocation, SpanRecord
from .._tracing import current_parent
from . import _suppress


def start(
    name: str, attributes: dict[str, Any], kind: str = "client", level: int = 1
) -> tuple[Invocation, SpanRecord] | None:
    """Open a span, or ``None`` outside an invocation or under suppression. ``level`` is the
    suppression level at which this call is hidden (1: HTTP layers beneath another span; 2:
    only the agent's own calls).

    In an unsampled invocation the span is opened too, so that the call still carries a trace
    context (with the sampled flag off) downstream, but :func:`finish` does not keep it."""
    if _suppress.LEVEL.get() >= level:
        return None
    inv = CURRENT.get()
    if inv is None:
        return None
    record = SpanRecord(_ids.new_span_id(), current_parent(inv), name, kind, attributes)
    record.trusted = True
    if inv.sampled:
        inv.open_spans[record.span_id] = record
    crumbs = _state.S.breadcrumbs
    if crumbs:
        crumbs.span_started(inv, record)
    return inv, record


def finish(
    handle: tuple[Invocation, SpanRecord],
    exc: BaseException | None = None,
    error: bool = False,
) -> None:
    inv, record = handle
    record.finish(exc)
    if error:
        record.status = "error"
    if inv.sampled:
        inv.add_span(record)  # (no longer open)
    crumbs = _state.S.breadcrumbs
    if crumbs:
        crumbs.span_ended(inv, record)


def finish_safely(
    handle: tuple[Invocation, SpanRecord],
    exc: BaseException | None = None,
    error: bool = False,
) -> None:
    """:func:`finish` for the instrumented calls: whatever goes wrong in the agent's
    bookkeeping is logged once and never reaches (or replaces) the call's own outcome."""
    try:
        finish(handle, exc, error)
    except Exception as err:
        from .._guard import internal_error

        internal_error("span.finish", err)


def traceparent(inv: Invocation, span_id: str) -> str:
    return f"00-{inv.trace_id}-{span_id}-{'01' if inv.sampled else '00'}"

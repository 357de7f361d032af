"""The invocation in flight: ids, clocks, spans, metrics, labels and logs, in a ContextVar."""

from __future__ import annotations

import math
import threading
import time
from contextvars import ContextVar

from . import _state

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

_RESOLVE_LOCK = threading.Lock()

MAX_METRICS = 1000
MAX_LABELS = 100
MAX_LOGS = 200

# CloudWatch metric units (the names EMF and PutMetricData accept).
UNITS = frozenset(
    (
        "Seconds", "Microseconds", "Milliseconds",
        "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
        "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
        "Percent", "Count",
        "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
        "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
        "Gigabits/Second", "Terabits/Second", "Count/Second",
        "None",
    )
)  # fmt: skip


class SpanRecord:
    """One finished (or running) span, in the report's shape."""

    __slots__ = (
        "_t0",
        "attributes",
        "duration_ms",
        "kind",
        "name",
        "parent_span_id",
        "span_id",
        "start_ms",
        "status",
        "trusted",
    )

    def __init__(
        self,
        span_id: str,
        parent_span_id: str | None,
        name: str,
        kind: str = "internal",
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.name = name
        self.kind = kind
        self.attributes = attributes if attributes is not None else {}
        self.start_ms = time.time() * 1000.0
        self._t0 = time.perf_counter()
        self.duration_ms: float | None = None
        self.status = "ok"
        #: Attributes all set by the agent's instrumentation (names, ids, URLs): they get the
        #: key and URL rules but not the free-text scrub.
        self.trusted = False

    def finish(self, exc: BaseException | None = None) -> None:
        if self.duration_ms is None:
            self.duration_ms = (time.perf_counter() - self._t0) * 1000.0
        if exc is not None:
            self.status = "error"
            self.attributes["exception.type"] = type(exc).__qualname__
            self.attributes["exception.message"] = str(exc)[:4096]

    def as_dict(self) -> dict[str, Any]:
        duration = self.duration_ms
        if duration is None:  # still running (timeout report)
            duration = (time.perf_counter() - self._t0) * 1000.0
        return {
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "start_ms": round(self.start_ms, 3),
            "duration_ms": round(duration, 3),
            "status": self.status,
            "attributes": self.attributes,
        }


class Invocation:
    """The invocation in flight. Public read-only view: ``request_id``, ``cold_start``,
    ``trace_id``, ``elapsed_ms``, ``remaining_ms``."""

    __slots__ = (
        "_context",
        "_links",
        "_parent_span_id",
        "_resolved",
        "_root_span_id",
        "_sampled",
        "_trace_id",
        "agent_s",
        "config",
        "dropped_spans",
        "ended",
        "event",
        "event_ref",
        "exc_tb",
        "fire_at",
        "first",
        "labels",
        "logs",
        "metrics",
        "name",
        "oldest_ms",
        "open_spans",
        "otel_token",
        "pipeline",
        "profiler",
        "remote_source",
        "request_id",
        "res_start",
        "root",
        "spans",
        "start_perf",
        "start_wall",
        "thread_id",
        "timed_out",
        "timeout_ms",
        "trigger",
        "verdict",
    )

    def __init__(self, request_id: str, context: Any, event: Any = None) -> None:
        self.start_wall = time.time()
        self.start_perf = time.perf_counter()
        self.request_id = request_id
        self._context = context
        self.event_ref = event  # the event itself: trace context and trigger are read from it
        self.exc_tb: Any = None  # the handler's exception's traceback as it left the handler
        # The trace context (trace id, parent, the invocation span's id, the sampling decision
        # and a batch's links) is worked out from the event on first use (see _resolve): an
        # invocation that makes no call and records no span does that after the response.
        self._resolved = False
        self._trace_id = ""
        self._parent_span_id: str | None = None
        self._root_span_id = ""
        self._sampled = True
        self._links: list[dict[str, Any]] = []
        self.oldest_ms: float | None = None
        self.remote_source: str | None = None
        self.root: SpanRecord | None = None
        self.spans: list[SpanRecord] = []
        self.dropped_spans = 0
        self.metrics: list[dict[str, Any]] = []
        self.labels: list[str] = []
        self.logs: list[dict[str, Any]] = []
        self.agent_s = 0.0
        self.first = False
        self.verdict: Any = None
        self.timeout_ms: float | None = None
        self.trigger: Any = None
        self.event: Any = None  # the redacted copy, with LAMBDASCOPE_CAPTURE_EVENT
        self.name = ""
        self.res_start: Any = None
        self.config: Any = None
        self.pipeline: Any = None
        self.otel_token: Any = None
        self.profiler: Any = None  # a lambdascope._profiler.Profiler when profiled
        self.ended = False
        self.timed_out = False
        self.fire_at = 0.0
        self.thread_id: int | None = None
        #: Spans opened and not yet finished, by id (a timeout report shows them in flight).
        self.open_spans: dict[str, SpanRecord] = {}

    # -- the trace context, worked out on first use ------------------------------------------
    def _resolve(self) -> None:
        failure: Exception | None = None
        with _RESOLVE_LOCK:  # two threads of one invocation must agree on its ids
            if self._resolved:
                return
            from . import _ids
            from ._propagation import extract

            try:
                remote, links, oldest = extract(self.event_ref, now_ms=self.start_wall * 1000.0)
            except Exception as exc:
                failure = exc
                remote, links, oldest = None, [], None
            if remote is not None:
                self._trace_id = remote.trace_id
                self._parent_span_id = remote.span_id
                self.remote_source = remote.source
            else:
                self._trace_id = _ids.new_trace_id()
            self._links = links
            self.oldest_ms = oldest
            # Drawn even when unsampled: outgoing calls of an unsampled invocation still carry
            # it (flags 00), so downstream keeps the decision.
            self._root_span_id = _ids.new_span_id()
            rate = self.config.sample_rate if self.config is not None else 1.0
            if remote is not None and remote.source == "w3c" and remote.sampled is False:
                self._sampled = False  # the caller decided: no partial traces
            else:
                self._sampled = rate >= 1.0 or (rate > 0.0 and _ids.random_fraction() < rate)
            self._resolved = True
        if failure is not None:
            # Logged once the lock is released: a log hook may read the ids (and so resolve).
            from ._guard import internal_error

            internal_error("propagation.extract", failure)

    @property
    def trace_id(self) -> str:
        if not self._resolved:
            self._resolve()
        return self._trace_id

    @property
    def parent_span_id(self) -> str | None:
        if not self._resolved:
            self._resolve()
        return self._parent_span_id

    @property
    def root_span_id(self) -> str:
        """The invocation span's id."""
        if not self._resolved:
            self._resolve()
        return self._root_span_id

    @property
    def sampled(self) -> bool:
        if not self._resolved:
            self._resolve()
        return self._sampled

    @property
    def links(self) -> list[dict[str, Any]]:
        if not self._resolved:
            self._resolve()
        return self._links

    # -- public view ---------------------------------------------------------------------
    @property
    def cold_start(self) -> bool:
        return bool(self.verdict and self.verdict.cold_start)

    @property
    def span_id(self) -> str | None:
        return self.root_span_id

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start_perf) * 1000.0

    @property
    def remaining_ms(self) -> float | None:
        getter = getattr(self._context, "get_remaining_time_in_millis", None)
        if getter is None:
            return None
        try:
            return float(getter())
        except Exception:
            return None

    def __repr__(self) -> str:
        return (
            f"<Invocation request_id={self.request_id!r} cold_start={self.cold_start} "
            f"trace_id={self.trace_id!r}>"
        )

    # -- recording -----------------------------------------------------------------------
    def add_span(self, record: SpanRecord) -> None:
        self.open_spans.pop(record.span_id, None)
        max_spans = self.config.max_spans if self.config is not None else 500
        # The root span counts towards the cap (with a cap of 0, no span is kept at all).
        if len(self.spans) + 1 < max_spans:
            self.spans.append(record)
        else:
            self.dropped_spans += 1


CURRENT: ContextVar[Invocation | None] = ContextVar("lambdascope_invocation", default=None)
# The id of the innermost open lambdascope span (when OpenTelemetry is not bridged).
PARENT: ContextVar[str | None] = ContextVar("lambdascope_parent_span", default=None)


def current() -> Invocation | None:
    """The invocation in flight, or ``None`` outside one."""
    return CURRENT.get()


_UNIT_ALIASES = {u.lower(): u for u in UNITS}
_UNIT_ALIASES.update(
    {
        "ms": "Milliseconds", "millisecond": "Milliseconds", "s": "Seconds", "sec": "Seconds",
        "second": "Seconds", "us": "Microseconds", "µs": "Microseconds", "b": "Bytes",
        "byte": "Bytes", "kb": "Kilobytes", "mb": "Megabytes", "gb": "Gigabytes", "%": "Percent",
        "percentage": "Percent", "": "None",
    }
)  # fmt: skip


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise ValueError("metric value must be a number, not a bool")
    if isinstance(value, int):
        number: float | int = value if abs(value) <= 2**63 else _to_float(value)
    elif isinstance(value, float):
        number = value
    elif not isinstance(value, (str, bytes)) and hasattr(value, "__float__"):
        number = _to_float(value)  # Decimal, NumPy scalars, Fraction
    else:
        raise ValueError(f"metric value must be a number, got {type(value).__name__}")
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"metric value must be finite, got {number!r}")
    return number


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except Exception as exc:  # OverflowError for 10**400, whatever a custom __float__ raises
        raise ValueError(f"metric value cannot be used as a number: {exc}") from None


def _unit(unit: Any) -> str:
    if unit in UNITS:
        return str(unit)
    found = _UNIT_ALIASES.get(str(unit).strip().lower()) if isinstance(unit, str) else None
    if found is None:
        from ._guard import log_once

        log_once(
            f"metric-unit:{unit!r}",
            "lambdascope: unknown metric unit %r; using None (CloudWatch units: Count, "
            "Milliseconds, Bytes, Percent, ...)",
            unit,
        )
        return "None"
    return found


def _single_active() -> Invocation | None:
    """The one invocation in flight, for calls from threads that did not inherit its context."""
    active = _state.S.active
    if len(active) == 1:
        for inv in active.values():
            return inv  # type: ignore[no-any-return]
    return None


def metric(name: str, value: float, unit: str = "None", **dimensions: Any) -> None:
    """Record a custom metric in the current invocation (or the next one, outside one).

    Raises ``ValueError`` for an empty name or a value that is not a finite number. An unknown
    unit is logged once and recorded as ``None`` (common spellings such as ``ms`` or ``count``
    are understood); names are cut at 255 characters and dimensions at 30, as CloudWatch
    requires.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("metric name must be a non-empty string")
    number = _number(value)
    if len(dimensions) > 30:
        from ._guard import log_once

        log_once("metric-dimensions", "lambdascope: a metric has more than 30 dimensions; "
                 "the first 30 are kept")
        dimensions = dict(list(dimensions.items())[:30])
    record = {
        "name": name[:255],
        "value": number,
        "unit": _unit(unit),
        "dimensions": {k: v if isinstance(v, str) else str(v) for k, v in dimensions.items()},
        "timestamp_ms": round(time.time() * 1000.0, 3),
    }
    inv = CURRENT.get() or _single_active()
    target = inv.metrics if inv is not None else _state.S.pending_metrics
    if len(target) < MAX_METRICS:
        target.append(record)


def label(*names: str) -> None:
    """Tag the current invocation (or the next one, outside one)."""
    inv = CURRENT.get() or _single_active()
    target = inv.labels if inv is not None else _state.S.pending_labels
    for name in names:
        text = (name if isinstance(name, str) else str(name))[:200]
        if text and text not in target and len(target) < MAX_LABELS:
            target.append(text)

"""Trace context in and out (contract section 5).

In: the invocation continues the trace the event carries — a W3C ``traceparent`` in the HTTP
headers (API Gateway v1/v2, ALB, function URL) or in SQS / SNS message attributes (SNS delivered
through SQS too), else an X-Ray header (``AWSTraceHeader`` of an SQS record, then the
``_X_AMZN_TRACE_ID`` the Lambda runtime sets). When both kinds arrive, the W3C one wins. A batch
(SQS, Kinesis, DynamoDB streams) links every record's producer context to the invocation span,
with the record's age.

Out: outgoing HTTP calls carry ``traceparent``; SQS, SNS and EventBridge calls carry it as a
message attribute (X-Ray ``TraceHeader`` for EventBridge, which has no message attributes). What
is injected never pushes a message past the 10-attribute limit: it is skipped and counted.
``OTEL_PROPAGATORS`` is honoured: ``tracecontext`` (the default) injects ``traceparent``;
``xray`` adds the X-Ray header to HTTP calls; ``none`` injects nothing.
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
MAX_MESSAGE_ATTRIBUTES = 10
MAX_LINKS = 100


class Context:
    """A remote span context: what an event or header says the caller was."""

    __slots__ = ("sampled", "source", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str | None, sampled: bool | None, source: str):
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.source = source

    def __repr__(self) -> str:
        return f"Context({self.trace_id}, {self.span_id}, {self.sampled}, {self.source})"


def parse_traceparent(value: Any) -> Context | None:
    """``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`` (later versions may append)."""
    if not isinstance(value, str):
        return None
    parts = value.strip().lower().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3][:2]
    if (
        len(version) != 2 or len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2
        or version == "ff" or (version == "00" and len(parts) != 4)
        or not _HEX.issuperset(version + trace_id + span_id + flags)
        or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN
    ):
        return None
    return Context(trace_id, span_id, bool(int(flags, 16) & 1), "w3c")


def _xray_field(value: str, key: str) -> str | None:
    """The value of ``key`` (e.g. ``"Root="``) in an X-Ray header, or ``None``."""
    at = value.find(key)
    while at > 0 and value[at - 1] not in "; ":  # e.g. "Root=" inside "XRoot="
        at = value.find(key, at + 1)
    if at < 0:
        return None
    start = at + len(key)
    stop = value.find(";", start)
    return (value[start:] if stop < 0 else value[start:stop]).strip()


def parse_xray(value: Any) -> Context | None:
    """``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1``.

    Read once per invocation from the runtime's ``_X_AMZN_TRACE_ID``: string searches only."""
    if not isinstance(value, str):
        return None
    root = _xray_field(value, "Root=")
    if root is None or len(root) != 35 or root[:2] != "1-" or root[10] != "-":
        return None
    trace_id = (root[2:10] + root[11:]).lower()
    if not _HEX.issuperset(trace_id):
        return None
    parent = _xray_field(value, "Parent=")
    if parent is not None:
        parent = parent.lower()
        if len(parent) != 16 or parent == _ZERO_SPAN or not _HEX.issuperset(parent):
            parent = None
    flag = _xray_field(value, "Sampled=")
    sampled = True if flag == "1" else False if flag == "0" else None
    return Context(trace_id, parent, sampled, "xray")


def xray_header(env_header: str | None, trace_id: str, span_id: str, sampled: bool) -> str | None:
    """The X-Ray header for an outgoing call from span ``span_id``.

    Keeps the ``Root`` (and ``Lineage``, which AWS's recursive-loop detection relies on) of the
    header the Lambda runtime set, replacing only ``Parent``; without one, the trace id is used
    as the root when it can be one.
    """
    if env_header:
        cut = _XRAY_CACHE.get(env_header)
        if cut is None:
            parts = [p.strip() for p in env_header.split(";") if p.strip()]
            out = [p for p in parts if not p.startswith("Parent=")]
            root_at = next((i for i, p in enumerate(out) if p.startswith("Root=")), None)
            if root_at is None:
                return None
            before = ";".join(out[: root_at + 1]) + ";Parent="
            after = "".join(";" + p for p in out[root_at + 1 :])
            if len(_XRAY_CACHE) > 64:
                _XRAY_CACHE.clear()
            cut = _XRAY_CACHE[env_header] = (before, after)
        return cut[0] + span_id + cut[1]
    return f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled={int(sampled)}"


# The runtime's header changes once per invocation; outgoing calls only swap its Parent.
_XRAY_CACHE: dict[str, tuple[str, str]] = {}


def _header(headers: Any, name: str) -> Any:
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            if isinstance(value, list):
                return value[0] if value else None
            return value
    return None


def _sqs_attribute(record: dict[str, Any]) -> Any:
    attrs = record.get("messageAttributes")
    if isinstance(attrs, dict):
        entry = attrs.get("traceparent")
        if isinstance(entry, dict):
            return entry.get("stringValue") or entry.get("StringValue")
    # SNS delivered to SQS (raw delivery off): the body is the SNS notification.
    body = record.get("body")
    if isinstance(body, str) and body.startswith("{") and '"traceparent"' in body:
        try:
            note = json.loads(body)
        except ValueError:
            return None
        return _sns_attribute(note)
    return None


def _sns_attribute(note: Any) -> Any:
    if not isinstance(note, dict):
        return None
    attrs = note.get("MessageAttributes")
    if isinstance(attrs, dict):
        entry = attrs.get("traceparent")
        if isinstance(entry, dict):
            return entry.get("Value") or entry.get("StringValue")
    return None


def _record_context(record: dict[str, Any], source: str | None) -> Context | None:
    if source == "aws:sqs":
        ctx = parse_traceparent(_sqs_attribute(record))
        if ctx is None:
            attributes = record.get("attributes")
            if isinstance(attributes, dict):
                ctx = parse_xray(attributes.get("AWSTraceHeader"))
        return ctx
    if source == "aws:sns":
        return parse_traceparent(_sns_attribute(record.get("Sns")))
    return None


def _record_age_ms(record: dict[str, Any], source: str | None, now_ms: float) -> float | None:
    try:
        sent: Any = None
        if source == "aws:sqs":
            sent = _mapping(record.get("attributes")).get("SentTimestamp")
        elif source == "aws:kinesis":
            sent = _mapping(record.get("kinesis")).get("approximateArrivalTimestamp")
            if sent is not None:
                sent = float(sent) * 1000.0
        elif source == "aws:dynamodb":
            sent = _mapping(record.get("dynamodb")).get("ApproximateCreationDateTime")
            if sent is not None:
                sent = float(sent) * 1000.0
        return round(max(0.0, now_ms - float(sent)), 3) if sent is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def extract(
    event: Any, environ: Any = None, now_ms: float | None = None
) -> tuple[Context | None, list[dict[str, Any]], float | None]:
    """The context to continue, the links to a batch's producers (each with the record's age),
    and the age of the oldest record of a batch."""
    env = os.environ if environ is None else environ
    found: Context | None = None
    links: list[dict[str, Any]] = []
    oldest: float | None = None
    if isinstance(event, dict):
        found = parse_traceparent(_header(event.get("headers"), "traceparent"))
        if found is None:
            found = parse_traceparent(_header(event.get("multiValueHeaders"), "traceparent"))
        records = event.get("Records")
        if found is None and isinstance(records, list) and records:
            now = time.time() * 1000.0 if now_ms is None else now_ms
            contexts: list[Context] = []
            for record in records:
                if not isinstance(record, dict):
                    continue
                source = record.get("eventSource") or record.get("EventSource")
                age = _record_age_ms(record, source, now)
                if age is not None and (oldest is None or age > oldest):
                    oldest = age
                ctx = _record_context(record, source)
                if ctx is None:
                    continue
                contexts.append(ctx)
                if len(links) < MAX_LINKS:
                    attributes: dict[str, Any] = {}
                    message_id = record.get("messageId") or (record.get("Sns") or {}).get(
                        "MessageId"
                    )
                    if message_id:
                        attributes["messaging.message.id"] = str(message_id)
                    if age is not None:
                        attributes["lambdascope.message.age_ms"] = age
                    links.append(
                        {"trace_id": ctx.trace_id, "span_id": ctx.span_id,
                         "attributes": attributes}
                    )
            # Continue the producers' trace when every record that carries one agrees.
            if len({c.trace_id for c in contexts}) == 1:
                w3c = [c for c in contexts if c.source == "w3c"]
                found = (w3c or contexts)[0]
    if found is None:
        found = parse_xray(env.get("_X_AMZN_TRACE_ID"))
    return found, links, oldest


def propagators() -> frozenset[str]:
    raw = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage")
    return frozenset(p.strip().lower() for p in raw.split(",") if p.strip())

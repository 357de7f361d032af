"""Reports (schema ``lambdascope/1``) to OTLP protobuf requests, one per signal.

Imported by the ``otlp`` exporter at its first export, never before: protobuf and the
``opentelemetry.proto`` classes cost tens of milliseconds to import. Pure functions over report
dicts; :mod:`.otlp` documents what is sent and why.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from .._guard import internal_error

MIB = 1024 * 1024
#: Set by the exporter on a report that follows a timeout report of the same invocation.
FOLLOW_UP = "lambdascope.follow_up"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# -- traces ---------------------------------------------------------------------------------
_KIND = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
STATUS_ERROR = 2
SAMPLED = 0x01
HAS_IS_REMOTE = 0x100
IS_REMOTE = 0x200
#: Trigger types whose endpoints are HTTPS only (API Gateway, function URLs).
_HTTPS_TRIGGERS = frozenset(("api_gateway", "api_gateway_v2", "function_url"))
_ROUTE_TRIGGERS = frozenset(("api_gateway", "api_gateway_v2"))

# -- metrics --------------------------------------------------------------------------------
DELTA = 1  # AGGREGATION_TEMPORALITY_DELTA
#: Seconds. The semantic conventions' boundaries for faas.invoke_duration / faas.init_duration
#: (5 ms .. 10 s), continued to Lambda's 15-minute limit so long invocations are told apart.
DURATION_BOUNDS_S = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
)  # fmt: skip
#: Bytes: Lambda's memory sizes, 32 MiB .. 10 GiB.
_MEMORY_BOUNDS_MB = (32, 64, 128, 256, 512, 1024, 2048, 4096, 6144, 8192, 10240)
MEMORY_BOUNDS_B = tuple(float(mb * MIB) for mb in _MEMORY_BOUNDS_MB)
#: Bytes: 1 KiB .. 1 GiB by powers of 4.
NET_BOUNDS_B = tuple(float(1024 * 4**i) for i in range(11))
_FAAS_TRIGGER = {
    "api_gateway": "http", "api_gateway_v2": "http", "alb": "http", "function_url": "http",
    "sqs": "pubsub", "sns": "pubsub", "kinesis": "pubsub", "eventbridge": "pubsub",
    "s3": "datasource", "dynamodb": "datasource", "schedule": "timer",
}  # fmt: skip
_MEMORY_GAUGES = (
    ("lambdascope.memory.usage", "rss_end_mb", "Process memory (RSS) at the end of the invocation"),
    ("lambdascope.memory.peak", "rss_peak_mb", "Peak process memory (RSS) during the invocation"),
    ("lambdascope.sandbox.memory.usage", "sandbox_memory_mb",
     "Memory charged to the sandbox at the end of the invocation"),
    ("lambdascope.sandbox.memory.peak", "sandbox_memory_peak_mb",
     "Peak memory charged to the sandbox since it started"),
)  # fmt: skip
#: CloudWatch unit name -> UCUM (what OTLP's ``unit`` holds).
UNITS = {
    "Seconds": "s", "Microseconds": "us", "Milliseconds": "ms",
    "Bytes": "By", "Kilobytes": "kBy", "Megabytes": "MBy", "Gigabytes": "GBy",
    "Terabytes": "TBy",
    "Bits": "bit", "Kilobits": "kbit", "Megabits": "Mbit", "Gigabits": "Gbit",
    "Terabits": "Tbit",
    "Percent": "%", "Count": "{count}", "None": "",
    "Bytes/Second": "By/s", "Kilobytes/Second": "kBy/s", "Megabytes/Second": "MBy/s",
    "Gigabytes/Second": "GBy/s", "Terabytes/Second": "TBy/s",
    "Bits/Second": "bit/s", "Kilobits/Second": "kbit/s", "Megabits/Second": "Mbit/s",
    "Gigabits/Second": "Gbit/s", "Terabits/Second": "Tbit/s",
    "Count/Second": "{count}/s",
}  # fmt: skip
#: Custom metrics in these units are counts added up over an invocation (delta Sums); every
#: other unit is a measurement (Gauge).
SUM_UNITS = frozenset(("Count",))

# -- logs -----------------------------------------------------------------------------------
_SEVERITY = {
    "TRACE": 1, "DEBUG": 5, "INFO": 9, "NOTICE": 10, "WARN": 13, "WARNING": 13,
    "ERROR": 17, "CRITICAL": 21, "FATAL": 21,
}  # fmt: skip


def _ns(ms: float) -> int:
    """Epoch ms (µs precision in the report) to epoch ns, exactly."""
    return round(ms * 1000.0) * 1000


def _id(hex_id: Any) -> bytes:
    if not hex_id:
        return b""
    try:
        return bytes.fromhex(hex_id)
    except (TypeError, ValueError):
        return b""


# -- attributes -----------------------------------------------------------------------------
def _value(av: Any, value: Any) -> None:
    kind = type(value)
    if kind is str:
        av.string_value = value
    elif kind is bool:
        av.bool_value = value
    elif kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            av.int_value = value
        else:
            av.double_value = float(value)
    elif kind is float:
        av.double_value = value
    elif value is None:
        return  # an empty AnyValue: null inside an array
    elif isinstance(value, (list, tuple)):
        values = av.array_value.values
        for item in value:
            _value(values.add(), item)
    elif isinstance(value, Mapping):
        kvs = av.kvlist_value.values
        for key, item in value.items():
            kv = kvs.add()
            kv.key = str(key)
            _value(kv.value, item)
    elif isinstance(value, bool):
        av.bool_value = bool(value)
    elif isinstance(value, int):
        _value(av, int(value))
    elif isinstance(value, float):
        av.double_value = float(value)
    else:
        av.string_value = str(value)


def _attributes(target: Any, items: Iterable[tuple[str, Any]]) -> None:
    for key, value in items:
        if value is None:
            continue
        kv = target.add()
        kv.key = key
        _value(kv.value, value)


# -- resource -------------------------------------------------------------------------------
class Resources:
    """The OTLP resource of each function seen, built once per (function, agent, sandbox) and
    reused across invocations."""

    MAX_CACHED = 32

    def __init__(
        self, service_name: str | None, extra: Mapping[str, str], scope_version: str
    ) -> None:
        self.service_name = service_name  # OTEL_SERVICE_NAME
        self.extra = dict(extra)  # OTEL_RESOURCE_ATTRIBUTES
        self._cache: dict[tuple[Any, ...], Any] = {}
        self.scope = common_pb2.InstrumentationScope(name="lambdascope", version=scope_version)

    @staticmethod
    def key(report: Mapping[str, Any]) -> tuple[Any, ...]:
        fn = report.get("function") or {}
        agent = report.get("agent") or {}
        return (
            fn.get("service"), fn.get("name"), fn.get("version"), fn.get("arn"),
            fn.get("region"), fn.get("log_group"), fn.get("log_stream"),
            fn.get("memory_limit_mb"), fn.get("architecture"),
            agent.get("version"), agent.get("python"),
        )  # fmt: skip

    def attributes(self, report: Mapping[str, Any]) -> dict[str, Any]:
        fn = report.get("function") or {}
        agent = report.get("agent") or {}
        arn = fn.get("arn")
        account = None
        resource_id = None
        if isinstance(arn, str):
            parts = arn.split(":")
            if len(parts) >= 7 and parts[0] == "arn":
                account = parts[4] or None
                # The function's ARN with its version, not the alias it was invoked by (an
                # alias is not an identity of the code running): semantic conventions.
                resource_id = ":".join(parts[:7])
                version = fn.get("version")
                if version and version != "$LATEST":
                    resource_id += ":" + str(version)
            else:
                resource_id = arn
        memory = fn.get("memory_limit_mb")
        arch = fn.get("architecture")
        attrs: dict[str, Any] = {
            "service.name": fn.get("service") or fn.get("name") or "unknown_service:python",
            "telemetry.sdk.name": "lambdascope",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": agent.get("version"),
            "cloud.provider": "aws",
            "cloud.platform": "aws_lambda",
            "cloud.region": fn.get("region"),
            "cloud.account.id": account,
            "cloud.resource_id": resource_id,
            "faas.name": fn.get("name"),
            "faas.version": fn.get("version"),
            "faas.instance": fn.get("log_stream"),
            "faas.max_memory": int(memory) * MIB if isinstance(memory, int) else None,
            "host.arch": {"x86_64": "amd64", "arm64": "arm64"}.get(arch or "", arch),
            "process.runtime.name": "cpython",
            "process.runtime.version": agent.get("python"),
            "aws.log.group.names": [fn["log_group"]] if fn.get("log_group") else None,
            "aws.log.stream.names": [fn["log_stream"]] if fn.get("log_stream") else None,
        }
        attrs.update(self.extra)  # the user's OTEL_RESOURCE_ATTRIBUTES beat what we detect
        if self.service_name:
            attrs["service.name"] = self.service_name
        return attrs

    def get(self, report: Mapping[str, Any]) -> Any:
        key = self.key(report)
        resource = self._cache.get(key)
        if resource is None:
            resource = resource_pb2.Resource()
            _attributes(resource.attributes, self.attributes(report).items())
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = resource
        return resource


def _groups(
    reports: Iterable[Mapping[str, Any]], resources: Resources
) -> list[tuple[Any, list[Mapping[str, Any]]]]:
    """Reports grouped by resource, in order of first appearance."""
    groups: dict[tuple[Any, ...], tuple[Any, list[Mapping[str, Any]]]] = {}
    for report in reports:
        key = resources.key(report)
        group = groups.get(key)
        if group is None:
            group = groups[key] = (resources.get(report), [])
        group[1].append(report)
    return list(groups.values())


# -- traces ---------------------------------------------------------------------------------
def _format_stack(error: Mapping[str, Any]) -> str:
    lines = ["Traceback (most recent call last):"]
    for frame in error.get("stack") or []:
        lines.append(
            f'  File "{frame.get("file")}", line {frame.get("line")}, in {frame.get("function")}'
        )
    lines.append(f"{error.get('type')}: {error.get('message')}")
    return "\n".join(lines)


def _add_exception_event(span: Any, when_ns: int, attrs: Mapping[str, Any]) -> None:
    event = span.events.add()
    event.name = "exception"
    event.time_unix_nano = when_ns
    _attributes(event.attributes, attrs.items())


def _spans_of(report: Mapping[str, Any], scope_spans: Any) -> int:
    spans = report.get("spans") or []
    if not spans:
        return 0
    trace = report.get("trace") or {}
    trace_id = _id(trace.get("trace_id"))
    remote_parent = trace.get("parent_span_id")
    invocation = report.get("invocation") or {}
    trigger = invocation.get("trigger") or {}
    fn = report.get("function") or {}
    error = report.get("error")
    root_id = trace.get("span_id")
    count = 0
    for index, record in enumerate(spans):
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = _id(record.get("span_id"))
        parent = record.get("parent_span_id")
        span.parent_span_id = _id(parent)
        root = record.get("span_id") == root_id if root_id else index == 0
        is_remote = root and parent is not None and parent == remote_parent
        span.flags = SAMPLED | HAS_IS_REMOTE | (IS_REMOTE if is_remote else 0)
        span.name = str(record.get("name") or "")
        span.kind = _KIND.get(record.get("kind") or "", 1)
        start_ms = float(record.get("start_ms") or 0.0)
        start = _ns(start_ms)
        end = _ns(start_ms + float(record.get("duration_ms") or 0.0))
        span.start_time_unix_nano = start
        span.end_time_unix_nano = end
        attrs = dict(record.get("attributes") or {})
        exc_type = attrs.pop("exception.type", None)
        exc_message = attrs.pop("exception.message", None)
        failed = record.get("status") == "error"
        if root:
            if fn.get("arn"):
                attrs.setdefault("aws.lambda.invoked_arn", fn["arn"])
            trigger_type = trigger.get("type")
            if trigger_type in _HTTPS_TRIGGERS:
                attrs.setdefault("url.scheme", "https")
            source = trigger.get("source")
            if trigger_type in _ROUTE_TRIGGERS and isinstance(source, str):
                _method, _, route = source.partition(" ")
                if route.startswith("/"):
                    attrs.setdefault("http.route", route)
            labels = report.get("labels")
            if labels:
                attrs["lambdascope.labels"] = list(labels)
            if report.get("dropped_spans"):
                attrs["lambdascope.dropped_spans"] = report["dropped_spans"]
            status = invocation.get("status")
            if status in ("error", "timeout", "crashed"):
                failed = True
            if isinstance(error, Mapping) and error.get("type"):
                exc_type = exc_type or error.get("type")
                exc_message = exc_message if exc_message is not None else error.get("message")
                _add_exception_event(
                    span,
                    end,
                    {
                        "exception.type": error.get("type"),
                        "exception.message": error.get("message"),
                        "exception.stacktrace": _format_stack(error),
                    },
                )
            elif status == "timeout" and exc_type is None:
                exc_type = "timeout"
                exc_message = "the invocation was about to time out"
            for link in record.get("links") or []:
                span_id = _id(link.get("span_id"))
                link_trace = _id(link.get("trace_id"))
                if len(span_id) != 8 or len(link_trace) != 16:
                    span.dropped_links_count += 1  # a link needs both ids
                    continue
                out = span.links.add()
                out.trace_id = link_trace
                out.span_id = span_id
                out.flags = HAS_IS_REMOTE | IS_REMOTE
                _attributes(out.attributes, (link.get("attributes") or {}).items())
        elif exc_type is not None:
            _add_exception_event(
                span, end, {"exception.type": exc_type, "exception.message": exc_message}
            )
        if failed:
            span.status.code = STATUS_ERROR
            if exc_type is not None:
                attrs.setdefault("error.type", exc_type)
                span.status.message = f"{exc_type}: {exc_message}" if exc_message else str(exc_type)
        elif exc_type is not None:  # recorded but not an error: keep what the report said
            attrs["exception.type"] = exc_type
            if exc_message is not None:
                attrs["exception.message"] = exc_message
        _attributes(span.attributes, attrs.items())
        count += 1
    return count


def encode_traces(reports: list[Mapping[str, Any]], resources: Resources) -> bytes | None:
    """An ``ExportTraceServiceRequest``, or None when no report carries spans (unsampled)."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    total = 0
    for resource, group in _groups(reports, resources):
        scope_spans = None
        for report in group:
            if not report.get("spans"):
                continue
            if scope_spans is None:
                resource_spans = request.resource_spans.add()
                resource_spans.resource.CopyFrom(resource)
                scope_spans = resource_spans.scope_spans.add()
                scope_spans.scope.CopyFrom(resources.scope)
            before = len(scope_spans.spans)
            try:
                total += _spans_of(report, scope_spans)
            except Exception as exc:  # one report that cannot be encoded never stops the rest
                internal_error("exporter.otlp.traces", exc)
                del scope_spans.spans[before:]
    if not total:
        return None
    return request.SerializeToString()


# -- metrics --------------------------------------------------------------------------------
class _Metrics:
    """The metrics of one resource, by name, in order of first appearance."""

    def __init__(self, scope_metrics: Any) -> None:
        self.scope_metrics = scope_metrics
        self.by_key: dict[tuple[str, str, str], Any] = {}

    def metric(self, name: str, unit: str, kind: str, description: str = "") -> Any:
        key = (name, unit, kind)
        metric = self.by_key.get(key)
        if metric is None:
            metric = self.by_key[key] = self.scope_metrics.metrics.add()
            metric.name = name
            metric.unit = unit
            if description:
                metric.description = description
            if kind == "sum":
                metric.sum.aggregation_temporality = DELTA
                metric.sum.is_monotonic = True
            elif kind == "histogram":
                metric.histogram.aggregation_temporality = DELTA
            else:
                metric.gauge.SetInParent()
        return metric

    def histogram(
        self,
        name: str,
        unit: str,
        description: str,
        value: float,
        bounds: tuple[float, ...],
        start: int,
        end: int,
        attrs: Iterable[tuple[str, Any]] = (),
        exemplar: tuple[bytes, bytes, Mapping[str, Any]] | None = None,
    ) -> None:
        point = self.metric(name, unit, "histogram", description).histogram.data_points.add()
        point.start_time_unix_nano = start
        point.time_unix_nano = end
        point.count = 1
        point.sum = value
        point.min = value
        point.max = value
        point.explicit_bounds.extend(bounds)
        counts = [0] * (len(bounds) + 1)
        counts[bisect_left(bounds, value)] = 1  # bucket i holds bounds[i-1] < v <= bounds[i]
        point.bucket_counts.extend(counts)
        _attributes(point.attributes, attrs)
        if exemplar is not None:
            self._exemplar(point, value, end, exemplar)

    def counter(
        self,
        name: str,
        unit: str,
        description: str,
        value: int | float,
        start: int,
        end: int,
        attrs: Iterable[tuple[str, Any]] = (),
        exemplar: tuple[bytes, bytes, Mapping[str, Any]] | None = None,
    ) -> None:
        metric = self.metric(name, unit, "sum", description)
        point = metric.sum.data_points.add()
        point.start_time_unix_nano = start
        point.time_unix_nano = end
        _number(point, value)
        if value < 0:
            metric.sum.is_monotonic = False
        _attributes(point.attributes, attrs)
        if exemplar is not None:
            self._exemplar(point, value, end, exemplar)

    def gauge(
        self,
        name: str,
        unit: str,
        description: str,
        value: int | float,
        when: int,
        attrs: Iterable[tuple[str, Any]] = (),
    ) -> None:
        point = self.metric(name, unit, "gauge", description).gauge.data_points.add()
        point.time_unix_nano = when
        _number(point, value)
        _attributes(point.attributes, attrs)

    @staticmethod
    def _exemplar(
        point: Any, value: float, when: int, exemplar: tuple[bytes, bytes, Mapping[str, Any]]
    ) -> None:
        trace_id, span_id, filtered = exemplar
        out = point.exemplars.add()
        out.time_unix_nano = when
        _number(out, value)
        if trace_id and span_id:
            out.trace_id = trace_id
            out.span_id = span_id
        _attributes(out.filtered_attributes, filtered.items())


def _number(point: Any, value: int | float) -> None:
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        point.as_int = value
    else:
        point.as_double = float(value)


def _metrics_of(report: Mapping[str, Any], out: _Metrics) -> None:
    invocation = report.get("invocation") or {}
    resources = report.get("resources") or {}
    trace = report.get("trace") or {}
    start_ms = invocation.get("start_ms")
    if not isinstance(start_ms, (int, float)):
        return
    duration_ms = invocation.get("duration_ms")
    end_ms = invocation.get("end_ms")
    if not isinstance(end_ms, (int, float)):
        end_ms = start_ms + duration_ms if isinstance(duration_ms, (int, float)) else start_ms
    start, end = _ns(start_ms), _ns(max(end_ms, start_ms))
    faas_trigger = _FAAS_TRIGGER.get((invocation.get("trigger") or {}).get("type"), "other")
    by_trigger = (("faas.trigger", faas_trigger),)
    request_id = invocation.get("request_id")
    # The invocation's own id (and its trace) travel as an exemplar, never as a point
    # attribute: one time series per invocation would swamp any metrics backend.
    sampled = bool(invocation.get("sampled")) and bool(trace.get("span_id"))
    exemplar = (
        _id(trace.get("trace_id")) if sampled else b"",
        _id(trace.get("span_id")) if sampled else b"",
        {"faas.invocation_id": request_id} if request_id else {},
    )
    status = invocation.get("status")
    if report.get(FOLLOW_UP):
        # The timeout report of this invocation counted it (duration so far, cold start,
        # timeout): what it could not know is whether the handler then failed.
        failed = status == "error"
        out.counter(
            "faas.errors", "{error}", "Number of invocation errors",
            1 if failed else 0, start, end, by_trigger, exemplar if failed else None,
        )  # fmt: skip
        _custom_metrics(report.get("metrics") or [], start_ms, end_ms, out)
        return
    if isinstance(duration_ms, (int, float)):
        out.histogram(
            "faas.invoke_duration", "s", "Duration of the function's logic execution",
            duration_ms / 1000.0, DURATION_BOUNDS_S, start, end, by_trigger, exemplar,
        )  # fmt: skip
    init_ms = invocation.get("init_duration_ms")
    if isinstance(init_ms, (int, float)):
        init_attrs = (
            *by_trigger,
            ("faas.coldstart", bool(invocation.get("cold_start"))),
            ("lambdascope.init_type", invocation.get("init_type")),
        )
        out.histogram(
            "faas.init_duration", "s", "Duration of the function's initialization",
            init_ms / 1000.0, DURATION_BOUNDS_S, start, end, init_attrs,
        )  # fmt: skip
    out.counter(
        "faas.invocations", "{invocation}", "Number of successful invocations",
        1 if status == "ok" else 0, start, end, by_trigger,
    )  # fmt: skip
    out.counter(
        "faas.coldstarts", "{coldstart}", "Number of invocation cold starts",
        1 if invocation.get("cold_start") else 0, start, end, by_trigger,
    )  # fmt: skip
    failed = status in ("error", "crashed")
    out.counter(
        "faas.errors", "{error}", "Number of invocation errors",
        1 if failed else 0, start, end, by_trigger, exemplar if failed else None,
    )  # fmt: skip
    timed_out = status == "timeout"
    out.counter(
        "faas.timeouts", "{timeout}", "Number of invocation timeouts",
        1 if timed_out else 0, start, end, by_trigger, exemplar if timed_out else None,
    )  # fmt: skip
    peak = resources.get("rss_peak_mb")
    if isinstance(peak, (int, float)):
        out.histogram(
            "faas.mem_usage", "By", "Max memory usage per invocation",
            float(round(peak * MIB)), MEMORY_BOUNDS_B, start, end, by_trigger,
        )  # fmt: skip
    cpu = [resources.get(k) for k in ("cpu_user_ms", "cpu_system_ms")]
    if all(isinstance(v, (int, float)) for v in cpu):
        out.histogram(
            "faas.cpu_usage", "s", "CPU usage per invocation",
            (cpu[0] + cpu[1]) / 1000.0, DURATION_BOUNDS_S, start, end, by_trigger,
        )  # fmt: skip
    net = [resources.get(k) for k in ("net_rx_bytes", "net_tx_bytes")]
    if all(isinstance(v, (int, float)) for v in net):
        out.histogram(
            "faas.net_io", "By", "Network I/O per invocation",
            float(net[0] + net[1]), NET_BOUNDS_B, start, end, by_trigger,
        )  # fmt: skip
    for name, key, description in _MEMORY_GAUGES:
        value = resources.get(key)
        if isinstance(value, (int, float)):
            out.gauge(name, "By", description, round(value * MIB), end)
    used_pct = resources.get("memory_used_pct")
    if isinstance(used_pct, (int, float)):
        out.gauge(
            "lambdascope.memory.utilization", "1",
            "Peak process memory as a share of the function's memory size",
            used_pct / 100.0, end,
        )  # fmt: skip
    dropped = report.get("dropped_reports")
    if isinstance(dropped, int) and dropped > 0:
        out.counter(
            "lambdascope.dropped_reports", "{report}",
            "Reports dropped undelivered (retry queue or spool full)", dropped, start, end,
        )  # fmt: skip
    _custom_metrics(report.get("metrics") or [], start_ms, end_ms, out)


def _custom_metrics(
    metrics: list[Mapping[str, Any]], start_ms: float, end_ms: float, out: _Metrics
) -> None:
    # Counts add up over the invocation: one delta point per (name, dimensions) per report.
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] = {}
    for entry in metrics:
        name = entry.get("name")
        value = entry.get("value")
        if not name or type(value) not in (int, float):
            continue
        unit_name = entry.get("unit") or "None"
        dims = tuple((str(k), str(v)) for k, v in (entry.get("dimensions") or {}).items())
        stamp = entry.get("timestamp_ms")
        stamp = stamp if isinstance(stamp, (int, float)) else end_ms
        if unit_name in SUM_UNITS:
            acc = sums.get((name, dims))
            if acc is None:
                sums[(name, dims)] = [unit_name, value, min(stamp, start_ms)]
            else:
                acc[1] += value
                acc[2] = min(acc[2], stamp)
        else:
            out.gauge(name, UNITS.get(unit_name, unit_name), "", value, _ns(stamp), dims)
    for (name, dims), (unit_name, value, first_ms) in sums.items():
        out.counter(
            name, UNITS.get(unit_name, unit_name), "", value,
            _ns(first_ms), _ns(max(end_ms, first_ms)), dims,
        )  # fmt: skip


def encode_metrics(reports: list[Mapping[str, Any]], resources: Resources) -> bytes | None:
    """An ``ExportMetricsServiceRequest`` with every report's points (one per report)."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    any_point = False
    for resource, group in _groups(reports, resources):
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.CopyFrom(resource)
        scope_metrics = resource_metrics.scope_metrics.add()
        scope_metrics.scope.CopyFrom(resources.scope)
        out = _Metrics(scope_metrics)
        for report in group:
            try:
                _metrics_of(report, out)
            except Exception as exc:  # one report that cannot be encoded never stops the rest
                internal_error("exporter.otlp.metrics", exc)
        if out.by_key:
            any_point = True
        else:
            del request.resource_metrics[-1]
    if not any_point:
        return None
    return request.SerializeToString()


# -- logs -----------------------------------------------------------------------------------
def _severity(level: str) -> int:
    number = _SEVERITY.get(level.upper())
    if number is not None:
        return number
    if level.startswith("Level "):  # logging's name for a custom numeric level
        try:
            levelno = int(level[6:])
        except ValueError:
            return 0
        # 10 DEBUG -> 5, 20 INFO -> 9, 30 WARNING -> 13, 40 ERROR -> 17, 50 CRITICAL -> 21
        return max(1, min(24, 1 + (levelno * 4) // 10)) if levelno > 0 else 0
    return 0


def _logs_of(report: Mapping[str, Any], scope_logs: Any) -> int:
    records = report.get("logs") or []
    if not records:
        return 0
    trace = report.get("trace") or {}
    invocation = report.get("invocation") or {}
    trace_id = _id(trace.get("trace_id"))
    root_span = trace.get("span_id")
    flags = SAMPLED if invocation.get("sampled") else 0
    request_id = invocation.get("request_id")
    count = 0
    for record in records:
        log = scope_logs.log_records.add()
        when = _ns(float(record.get("timestamp_ms") or invocation.get("start_ms") or 0.0))
        log.time_unix_nano = when
        log.observed_time_unix_nano = when
        level = str(record.get("level") or "")
        log.severity_text = level
        log.severity_number = _severity(level)
        log.body.string_value = str(record.get("message") or "")
        log.trace_id = trace_id
        span_id = record.get("span_id") or root_span
        if span_id:
            log.span_id = _id(span_id)
        log.flags = flags
        _attributes(
            log.attributes,
            (("logger.name", record.get("logger")), ("faas.invocation_id", request_id)),
        )
        count += 1
    return count


def encode_logs(reports: list[Mapping[str, Any]], resources: Resources) -> bytes | None:
    """An ``ExportLogsServiceRequest``, or None when no report captured log records."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    total = 0
    for resource, group in _groups(reports, resources):
        scope_logs = None
        for report in group:
            if not report.get("logs"):
                continue
            if scope_logs is None:
                resource_logs = request.resource_logs.add()
                resource_logs.resource.CopyFrom(resource)
                scope_logs = resource_logs.scope_logs.add()
                scope_logs.scope.CopyFrom(resources.scope)
            before = len(scope_logs.log_records)
            try:
                total += _logs_of(report, scope_logs)
            except Exception as exc:
                internal_error("exporter.otlp.logs", exc)
                del scope_logs.log_records[before:]
    if not total:
        return None
    return request.SerializeToString()


ENCODERS = {"traces": encode_traces, "metrics": encode_metrics, "logs": encode_logs}
_RESPONSES = {
    "traces": (trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
    "metrics": (metrics_service_pb2.ExportMetricsServiceResponse, "rejected_data_points"),
    "logs": (logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
}


def partial_success(signal: str, body: bytes) -> tuple[int, str]:
    """(rejected items, error message) of a 2xx answer's body; (0, "") for a full success or
    a body that is not an OTLP response."""
    if not body:
        return 0, ""
    message_class, field = _RESPONSES[signal]
    try:
        response = message_class.FromString(body)
    except Exception:
        return 0, ""
    partial = response.partial_success
    return int(getattr(partial, field)), str(partial.error_message)


def status_message(body: bytes) -> str:
    """The message of a ``google.rpc.Status`` error body (what a Collector answers with a 4xx
    or 5xx), or "" when the body is not one."""
    if not body:
        return ""
    try:
        from google.rpc import status_pb2
    except ImportError:  # googleapis-common-protos comes with the otlp extra; not essential
        return ""
    try:
        return str(status_pb2.Status.FromString(body).message)[:300]
    except Exception:
        return ""

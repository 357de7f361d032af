"""One invocation, start to end: open it, close it, build its report, deliver it.

:func:`begin` and :func:`end` are the agent's whole share of an invocation. Both catch their own
failures: ``begin`` answers ``None`` (the handler then runs unmonitored) and ``end`` always
resets the invocation context, so the handler's outcome is never changed.
"""

from __future__ import annotations

import functools
import sys
import threading
import time

from . import _coldstart, _ids, _state
from ._config import Config
from ._guard import internal_error
from ._invocation import CURRENT, Invocation, SpanRecord
from ._report import SCHEMA, error_info, python_version
from ._resources import Sampler, leak_suspected
from ._triggers import Trigger, batch_failures, detect

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

LEAK_WINDOW = 30
_HTTP_TRIGGERS = frozenset(("api_gateway", "api_gateway_v2", "alb", "function_url"))
_CONSUMER_TRIGGERS = frozenset(("sqs", "sns", "kinesis", "dynamodb", "s3", "eventbridge"))
_FAAS_TRIGGER = {
    "api_gateway": "http", "api_gateway_v2": "http", "alb": "http", "function_url": "http",
    "sqs": "pubsub", "sns": "pubsub", "kinesis": "pubsub", "eventbridge": "pubsub",
    "s3": "datasource", "dynamodb": "datasource", "schedule": "timer",
}  # fmt: skip


_VERSION: list[str] = []


def _version() -> str:
    if not _VERSION:
        from . import __version__

        _VERSION.append(__version__)
    return _VERSION[0]


def setup(config: Config) -> Any:
    """Build what a configuration needs, once per process."""
    t0 = time.perf_counter()
    S = _state.S
    pipeline = S.pipelines.get(config.key)
    if pipeline is None:
        from ._pipeline import Pipeline

        pipeline = Pipeline(config)
        S.pipelines[config.key] = pipeline
    if S.sampler is None:
        S.sampler = Sampler()
    if config.capture_logs and S.log_handler is None:
        from ._logs import install

        S.log_handler = install()
    if S.breadcrumbs is None:
        try:
            from ._breadcrumb import Breadcrumbs, crashed_report

            S.breadcrumbs = Breadcrumbs(config.spool_dir)
            # Invocations of earlier processes of this sandbox that never ended.
            S.crashed = [crashed_report(c, pipeline) for c in S.breadcrumbs.orphans()]
        except Exception as exc:
            S.breadcrumbs = False  # not available here: no crash reports, nothing else changes
            internal_error("breadcrumbs", exc)
    if config.instrument:
        try:
            from .instrumentation import _http, instrument

            _http.exclude_runtime_api()
            _http.exclude_url(config.collector_url)
            if "otlp" in config.exporters:
                _http.exclude_url(config.otlp_endpoint)
            instrument(config.instrument)
        except Exception as exc:
            internal_error("setup.instrument", exc)
    S.setup_ms += (time.perf_counter() - t0) * 1000.0
    return pipeline


def _bridge_otel() -> None:
    """Bridge OpenTelemetry once the process has imported its API (never import it ourselves)."""
    S = _state.S
    if S.otel_bridge is None and "opentelemetry.trace" in sys.modules:
        try:
            from ._otel import Bridge

            S.otel_bridge = Bridge()
        except Exception as exc:
            S.otel_checked = True
            internal_error("otel.bridge", exc)


def _safe_attr(obj: Any, name: str) -> Any:
    """An attribute of the user's context object; whatever reading it raises counts as absent."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _request_id(context: Any) -> str:
    try:
        rid = context.aws_request_id
    except Exception:  # absent, or a property that raises: a request id of our own
        rid = None
    if isinstance(rid, str) and rid:
        return rid
    h = _ids.new_trace_id()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:32]}"


def begin(config: Config, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Open the invocation. Returns a token for :func:`end`, or ``None`` to run unmonitored."""
    t0 = time.perf_counter()
    try:
        if CURRENT.get() is not None:  # already monitored further out: monitor once
            return None
        S = _state.S
        if S.first_invocation:
            _stop_import_timing(S.init_end)
        if S.last_config is config:
            pipeline = S.last_pipeline
        else:
            pipeline = S.pipelines.get(config.key) or setup(config)
            S.last_config, S.last_pipeline = config, pipeline
        event = args[0] if args else kwargs.get("event")
        context = args[1] if len(args) > 1 else kwargs.get("context")
        inv = Invocation(_request_id(context), context, event)
        inv.config, inv.pipeline = config, pipeline
        if S.first_invocation:
            S.first_invocation = False  # cleared at once: a first one that raises is still first
            inv.first = True
            gap_ms = (inv.start_wall - S.init_end) * 1000.0
            inv.verdict = _coldstart.verdict(True, pipeline.init_type, gap_ms)
        else:
            inv.verdict = pipeline.warm_verdict
        try:
            # The runtime client's context keeps its deadline: read it without a call.
            deadline = getattr(context, "_epoch_deadline_time_in_ms", None)
            if type(deadline) is int:
                inv.timeout_ms = float(max(0.0, deadline - inv.start_wall * 1000.0))
            else:
                getter = getattr(context, "get_remaining_time_in_millis", None)
                if getter is not None:
                    inv.timeout_ms = float(getter())
        except Exception:
            inv.timeout_ms = None
        inv.name = name
        if config.capture_event:
            inv.event = pipeline.redactor.mapping(event)
        if S.pending_metrics:
            inv.metrics, S.pending_metrics = S.pending_metrics, []
        if S.pending_labels:
            inv.labels, S.pending_labels = S.pending_labels, []
        prepared = S.next_start
        if prepared is not None and prepared[0] == S.runtime_nexts:
            inv.res_start = prepared[1]  # read after the previous delivery (see prepare_start)
        else:
            inv.res_start = S.sampler.start(pipeline.reuse_net)
        S.next_start = None
        S.active[id(inv)] = inv
        if S.breadcrumbs:
            S.breadcrumbs.enter(inv, inv.res_start.rss_kb, pipeline.memory_limit_mb)
        warning = config.timeout_warning_ms
        if warning and inv.timeout_ms is not None and inv.timeout_ms > warning:
            inv.thread_id = threading.get_ident()
            watchdog = S.watchdog
            if watchdog is None:
                from ._watchdog import Watchdog

                watchdog = S.watchdog = Watchdog()
            watchdog.arm(inv, time.monotonic() + (inv.timeout_ms - warning) / 1000.0)
        token = CURRENT.set(inv)
        if not S.otel_checked:
            _bridge_otel()
        bridge = S.otel_bridge
        if bridge is not None and bridge.active and inv.sampled:
            inv.otel_token = bridge.attach(inv, inv.root_span_id)
        if inv.first and config.diagnostics:
            _watch(True)
        _maybe_profile(inv, config, event)
        inv.agent_s += time.perf_counter() - t0
        return (inv, token)
    except Exception as exc:
        internal_error("begin", exc)
        return None


def end(handle: Any, result: Any, exc: BaseException | None) -> None:
    """Close the invocation, build its report and deliver it. Never raises."""
    t0 = time.perf_counter()
    inv, token = handle
    profiler = inv.profiler
    if profiler is not None:
        try:
            profiler.stop()  # no join: the sampler ends on its own, the report waits for it
        except Exception as err:
            internal_error("profiler.stop", err)
    if inv.first:
        _watch(False)
    end_wall = time.time()
    duration_ms = (t0 - inv.start_perf) * 1000.0
    inv.ended = True
    if exc is not None:  # the stack as it left the handler (frames added later are not ours)
        inv.exc_tb = exc.__traceback__
    S = _state.S
    watchdog = S.watchdog
    if watchdog is not None:
        watchdog.disarm(inv)
    if S.breadcrumbs:
        try:
            S.breadcrumbs.leave()
        except Exception as err:
            internal_error("breadcrumbs.leave", err)
    try:
        if inv.otel_token is not None:
            _state.S.otel_bridge.detach(inv.otel_token)
    except Exception as err:
        internal_error("otel.detach", err)
    try:
        CURRENT.reset(token)
    except Exception:  # a different context (should not happen): make sure nothing leaks
        CURRENT.set(None)
    try:
        S.active.pop(id(inv), None)
        flusher = S.flusher
        if flusher is not None and flusher.alive:
            deadline_ms = (
                inv.start_wall * 1000.0 + inv.timeout_ms if inv.timeout_ms is not None else None
            )
            if flusher.defers:
                # Nothing else can run in this sandbox before the report is delivered: build it
                # (resource readings included) after the response, on the flusher's thread.
                inv.agent_s += time.perf_counter() - t0
                flusher.submit(
                    inv.request_id,
                    inv.pipeline,
                    functools.partial(_reports, inv, result, exc, end_wall, duration_ms, True),
                    deadline_ms,
                )
                return
            reports = _reports(inv, result, exc, end_wall, duration_ms, False, t0)
            flusher.submit(inv.request_id, inv.pipeline, reports, deadline_ms)
        else:
            reports = _reports(inv, result, exc, end_wall, duration_ms, False, t0)
            inv.pipeline.deliver(reports, remaining_ms=inv.remaining_ms)
    except Exception as err:
        internal_error("end", err)


def _reports(
    inv: Invocation,
    result: Any,
    exc: BaseException | None,
    end_wall: float,
    duration_ms: float,
    after_response: bool,
    t0: float | None = None,
) -> list[dict[str, Any]]:
    """The invocation's report, with any report of a dead earlier process before it.

    ``after_response``: built on the flusher's thread once the caller has its answer; the time
    it takes is then reported apart (``after_response_ms``), not as time the invocation waited.
    """
    t1 = time.perf_counter()
    S = _state.S
    try:
        report = build_report(
            inv, result, exc, end_wall, duration_ms, after_response=after_response
        )
    except Exception as err:
        internal_error("report.build", err)
        report = _fallback_report(inv, exc, end_wall, duration_ms, None)
    overhead = report["agent"]["overhead"]
    if after_response:
        overhead["after_response_ms"] = round((time.perf_counter() - t1) * 1000.0, 3)
    else:
        inv.agent_s += time.perf_counter() - (t0 if t0 is not None else t1)
    overhead["invocation_ms"] = round(inv.agent_s * 1000.0, 3)
    if S.crashed:  # reports of a dead earlier process, sent with the first one of this
        reports, S.crashed = [*S.crashed, report], []
        return reports
    return [report]


def prepare_start(pipeline: Any) -> None:
    """On the flusher's thread, after an invocation's delivery and before the sandbox can run
    another: take the next invocation's starting resource readings (and reset the memory peak)
    now, so the caller does not wait for them. Valid only for the very next runtime request."""
    S = _state.S
    if S.sampler is not None:
        S.next_start = (S.runtime_nexts, S.sampler.start(pipeline.reuse_net))


_RESOURCE_KEYS = (
    "rss_start_mb", "rss_end_mb", "rss_peak_mb", "memory_used_pct", "cpu_user_ms",
    "cpu_system_ms", "net_rx_bytes", "net_tx_bytes", "tmp_used_mb", "open_fds", "threads",
    "sandbox_memory_mb", "sandbox_memory_peak_mb",
)  # fmt: skip


def _redacted(redact: Any, attributes: dict[str, Any], trusted: bool) -> dict[str, Any]:
    """Redacted attributes; when redaction itself fails, none at all (never unredacted)."""
    try:
        return redact(attributes, trusted)  # type: ignore[no-any-return]
    except Exception as err:
        internal_error("redact.attributes", err)
        return {"lambdascope.attributes_dropped": True}


def _error_of(exc: BaseException, pipeline: Any, tb: Any = None) -> dict[str, Any]:
    try:
        return error_info(exc, scrub=pipeline.redactor.scrub, tb=tb)
    except Exception as err:  # the type and stack without the message (it could hold a secret)
        internal_error("report.error", err)
        try:
            info = error_info(exc)
            info["message"] = ""
            return info
        except Exception:
            return {"type": type(exc).__name__, "message": "", "stack": []}


def _fallback_report(
    inv: Invocation,
    exc: BaseException | None,
    end_wall: float,
    duration_ms: float,
    status: str | None,
) -> dict[str, Any]:
    """The invocation's bare facts, when building its full report failed: the invocation still
    shows (timing, status, the error's type and stack), without what the agent could not vouch
    for (spans, logs, metrics, resource figures)."""
    pipeline = inv.pipeline
    verdict = inv.verdict
    function = dict(pipeline.function)
    function["memory_limit_mb"] = pipeline.memory_limit_mb
    function["arn"] = None
    if function.get("name") is None:
        function["name"] = inv.name or None
        function["service"] = function.get("service") or function["name"]
    resources: dict[str, Any] = {key: None for key in _RESOURCE_KEYS}
    resources["rss_growth_mb"] = 0.0
    resources["leak_suspected"] = False
    error = None
    if exc is not None:
        error = {"type": type(exc).__name__, "message": "", "stack": []}
        try:
            error = error_info(exc)
            error["message"] = ""
        except Exception:
            pass
    try:
        trace_id, parent = inv.trace_id, inv.parent_span_id
    except Exception:
        trace_id, parent = _ids.new_trace_id(), None
    return {
        "schema": SCHEMA,
        "agent": {
            "name": "lambdascope",
            "version": _version(),
            "python": python_version(),
            "overhead": {"init_ms": None, "invocation_ms": round(inv.agent_s * 1000.0, 3)},
            "report_failed": True,
        },
        "function": function,
        "invocation": {
            "request_id": inv.request_id,
            "start_ms": round(inv.start_wall * 1000.0, 3),
            "end_ms": round(end_wall * 1000.0, 3),
            "duration_ms": round(duration_ms, 3),
            "timeout_ms": inv.timeout_ms,
            "cold_start": bool(verdict and verdict.cold_start),
            "init_duration_ms": None,
            "init_type": verdict.init_type if verdict else pipeline.init_type,
            "proactive_init": bool(verdict and verdict.proactive_init),
            "since_restore_ms": None,
            "status": status or ("error" if exc is not None else "ok"),
            "sampled": False,
            "trigger": {"type": "direct", "source": None},
            "batch": None,
            "tenant_id": None,
        },
        "error": error,
        "resources": resources,
        "metrics": [],
        "labels": [],
        "trace": {"trace_id": trace_id, "span_id": None, "parent_span_id": parent},
        "spans": [],
        "dropped_spans": 0,
        "logs": [],
    }


def _root_span(inv: Invocation, trigger: Any) -> SpanRecord:
    """The invocation span, made when the report is built (nothing during the invocation needs
    more of it than its id, drawn at the start)."""
    kind = (
        "server" if trigger.type in _HTTP_TRIGGERS
        else "consumer" if trigger.type in _CONSUMER_TRIGGERS else "server"
    )
    attrs: dict[str, Any] = {
        "faas.trigger": _FAAS_TRIGGER.get(trigger.type, "other"),
        "faas.invocation_id": inv.request_id,
        "faas.coldstart": inv.verdict.cold_start,
    }
    if trigger.batch_size is not None and trigger.type in _CONSUMER_TRIGGERS:
        attrs["messaging.batch.message_count"] = trigger.batch_size
    if inv.oldest_ms is not None:
        attrs["lambdascope.batch.oldest_age_ms"] = inv.oldest_ms
    if inv.remote_source is not None:
        attrs["lambdascope.parent.format"] = inv.remote_source
    event = inv.event_ref
    if trigger.type in _HTTP_TRIGGERS and isinstance(event, dict):
        request_context = event.get("requestContext")
        http = request_context.get("http") if isinstance(request_context, dict) else None
        method = event.get("httpMethod") or (http.get("method") if isinstance(http, dict) else None)
        path = event.get("rawPath") or event.get("path")
        if method:
            attrs["http.request.method"] = str(method)
        if path:
            attrs["url.path"] = str(path)
    root = SpanRecord(inv.root_span_id, inv.parent_span_id, inv.name, kind, attrs)
    root.start_ms = inv.start_wall * 1000.0
    root._t0 = inv.start_perf
    return root


def build_report(
    inv: Invocation,
    result: Any,
    exc: BaseException | None,
    end_wall: float,
    duration_ms: float,
    status: str | None = None,
    snapshot: bool = False,
    after_response: bool = False,
) -> dict[str, Any]:
    """The report of ``inv`` (schema ``lambdascope/1``).

    ``snapshot`` builds it while the invocation is still running (a timeout report): the
    process-wide memory history is left alone and spans in flight are included.
    ``after_response``: built after the caller has its answer (what may take longer, such as
    the scan of installed distributions for the diagnostics, is done only then)."""
    S = _state.S
    pipeline = inv.pipeline
    config = inv.config
    verdict = inv.verdict
    if status is None:
        status = "error" if exc is not None else "ok"
    error = _error_of(exc, pipeline, inv.exc_tb) if exc is not None else None

    context = inv._context
    memory_limit_mb = pipeline.memory_limit_mb
    if memory_limit_mb is None:  # outside Lambda's environment: the context may know
        try:
            memory_limit_mb = int(_safe_attr(context, "memory_limit_in_mb") or 0) or None
        except (TypeError, ValueError):
            memory_limit_mb = None

    # Resources, RSS growth since the cold start, and the leak signal.
    try:
        resources = S.sampler.end(inv.res_start, memory_limit_mb)
    except Exception as err:  # no figures rather than no report
        internal_error("resources.end", err)
        resources = {key: None for key in _RESOURCE_KEYS}
    rss_end = resources["rss_end_mb"]
    growth = 0.0
    if rss_end is not None and snapshot:
        base = S.rss_baseline_mb
        growth = round(rss_end - base, 2) if base is not None else 0.0
    elif rss_end is not None:
        if S.rss_baseline_mb is None:
            S.rss_baseline_mb = rss_end
        else:
            S.rss_history.append(rss_end)
            if len(S.rss_history) > LEAK_WINDOW:
                del S.rss_history[0]
        growth = round(rss_end - S.rss_baseline_mb, 2)
    resources["rss_growth_mb"] = growth
    resources["leak_suspected"] = leak_suspected(S.rss_history, memory_limit_mb)

    # Init figures, on the first invocation of the process only.
    init_duration_ms = since_restore_ms = None
    overhead: dict[str, Any] = {"init_ms": None, "invocation_ms": None}
    if inv.first:
        if S.restored_at is not None:
            init_duration_ms = S.snapshot_init_ms
            since_restore_ms = round((inv.start_wall - S.restored_at) * 1000.0, 3)
        else:
            # The runtime client's first request for an event, when it could be seen; else up
            # to the first invocation when a caller waited for init (a cold start), and for a
            # sandbox that may have sat idle after init, the decoration.
            exact = S.init_end_exact or not verdict.cold_start
            init_end = S.init_end if exact else inv.start_wall
            init_duration_ms = round(max(0.0, (init_end - S.init_start()) * 1000.0), 3)
        overhead["init_ms"] = round(_state.import_ms + S.decorate_ms, 3)
        overhead["setup_ms"] = round(S.setup_ms, 3)

    trigger = inv.trigger
    if trigger is None:
        try:
            trigger = detect(inv.event_ref)
        except Exception as err:
            internal_error("trigger.detect", err)
            trigger = Trigger("direct", None, None)
        inv.trigger = trigger
    if inv.root is None and inv.sampled:
        inv.root = _root_span(inv, trigger)
        if trigger.type in _HTTP_TRIGGERS and isinstance(result, dict):
            code = result.get("statusCode")  # the HTTP answer the handler gave
            if type(code) is int and 100 <= code <= 599:
                inv.root.attributes["http.response.status_code"] = code
                if code >= 500:  # a server span is an error for 5xx only
                    inv.root.status = "error"
    batch = None
    if trigger.batch_size is not None and trigger.type in ("sqs", "kinesis", "dynamodb"):
        batch = {"size": trigger.batch_size, "failed": batch_failures(trigger.type, result)}

    function = dict(pipeline.function)
    function["memory_limit_mb"] = memory_limit_mb
    arn = _safe_attr(context, "invoked_function_arn")
    function["arn"] = arn if isinstance(arn, str) else None
    if function["region"] is None and function["arn"] and function["arn"].count(":") >= 4:
        function["region"] = function["arn"].split(":")[3] or None
    if function["name"] is None:
        function["name"] = _safe_attr(context, "function_name") or inv.name or None
        function["service"] = function["service"] or function["name"]
    tenant = _safe_attr(context, "tenant_id")

    spans: list[dict[str, Any]] = []
    root = inv.root
    if root is not None:
        root.finish(exc)
        root.duration_ms = duration_ms
        if exc is not None:
            root.attributes.pop("exception.message", None)
        # The root's attributes are all the agent's own (trigger, ids, method, path; no header,
        # query or secret), so they skip redaction.
        root_dict = root.as_dict()
        if status == "timeout":
            root_dict["status"] = "error"
        if inv.links:
            root_dict["links"] = inv.links
        if config.max_spans > 0:
            spans.append(root_dict)
        else:
            inv.dropped_spans += 1
        children = sorted(inv.spans, key=lambda s: s.start_ms)
        redact = pipeline.redactor.attributes
        for record in children:
            record.attributes = _redacted(redact, record.attributes, record.trusted)
            spans.append(record.as_dict())
        if snapshot:
            for record in list(inv.open_spans.values()):
                data = record.as_dict()  # the duration so far
                data["attributes"] = dict(_redacted(redact, record.attributes, False))
                data["attributes"]["lambdascope.in_flight"] = True
                spans.append(data)

    metrics = inv.metrics
    if metrics:
        redact = pipeline.redactor.attributes
        for m in metrics:
            dims = m["dimensions"]
            if dims:
                m["dimensions"] = _redacted(redact, dims, False)

    report: dict[str, Any] = {
        "schema": SCHEMA,
        "agent": {
            "name": "lambdascope",
            "version": _version(),
            "python": python_version(),
            "overhead": overhead,
        },
        "function": function,
        "invocation": {
            "request_id": inv.request_id,
            "start_ms": round(inv.start_wall * 1000.0, 3),
            "end_ms": round(end_wall * 1000.0, 3),
            "duration_ms": round(duration_ms, 3),
            "timeout_ms": inv.timeout_ms,
            "cold_start": verdict.cold_start,
            "init_duration_ms": init_duration_ms,
            "init_type": verdict.init_type,
            "proactive_init": verdict.proactive_init,
            "since_restore_ms": since_restore_ms,
            "status": status,
            "sampled": inv.sampled,
            "trigger": {"type": trigger.type, "source": trigger.source},
            "batch": batch,
            "tenant_id": tenant if isinstance(tenant, str) else None,
        },
        "error": error,
        "resources": resources,
        "metrics": metrics,
        "labels": inv.labels,
        "trace": {
            "trace_id": inv.trace_id,
            "span_id": inv.root_span_id,
            "parent_span_id": inv.parent_span_id,
        },
        "spans": spans,
        "dropped_spans": inv.dropped_spans,
        "logs": inv.logs,
    }
    if not snapshot:
        dropped = pipeline.take_dropped()
        if dropped:
            report["dropped_reports"] = dropped
    if config.capture_event:
        report["event"] = inv.event
    profiler = inv.profiler
    if profiler is not None:
        try:
            report["profile"] = profiler.result(final=not snapshot)
        except Exception as err:
            internal_error("profile.report", err)
    if inv.first and not snapshot and config.diagnostics and _in_lambda():
        try:
            from ._diagnostics import gather

            report["diagnostics"] = gather(
                init_duration_ms,
                handler_fallback=_handler_fallback(inv),
                after_response=after_response,
                sandbox_id=function.get("log_stream") or _safe_attr(context, "log_stream_name"),
            )
        except Exception as err:
            internal_error("diagnostics", err)
    return report


# -- Profiles and diagnostics ---------------------------------------------------------------

_IMPORTTIME = __name__.rpartition(".")[0] + "._importtime"
_PROFILE_KEY = "lambdascope-profile"
_PROFILE_HEADER = "x-lambdascope-profile"
_YES = frozenset(("1", "true", "yes", "on"))
_CO_COROUTINE = 0x80


def _in_lambda() -> bool:
    """Inside a Lambda sandbox (or the local runner's): where cold-start diagnostics apply."""
    import os

    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) or "awslambdaric" in sys.modules


def _handler_fallback(inv: Invocation) -> str | None:
    return inv.name or None


def _stop_import_timing(end_wall: float) -> None:
    """The end of init: the import-timing finder (installed by ``import lambdascope`` inside
    Lambda) leaves ``sys.meta_path``, so nothing after init pays for it."""
    module = sys.modules.get(_IMPORTTIME)
    if module is not None:
        try:
            module.stop(end_wall)
        except Exception as exc:
            internal_error("imports.stop", exc)


def _watch(on: bool) -> None:
    """During the first invocation only (Python 3.12+): note which imported files run code."""
    module = sys.modules.get(_IMPORTTIME)
    if module is not None and module.RECORDER is not None:
        try:
            if on:
                module.watch_start()
            else:
                module.watch_stop()
        except Exception as exc:
            internal_error("imports.watch", exc)


def _asks_profile(event: dict[str, Any]) -> str | None:
    """``event`` or ``header`` when the event asks for this invocation to be profiled."""
    flag = event.get(_PROFILE_KEY)
    if flag is not None and (
        flag is True or (type(flag) is str and flag.strip().lower() in _YES) or flag == 1
    ):
        return "event"
    if "requestContext" not in event:
        return None
    # API Gateway (REST and HTTP APIs), ALB and function URL events. Payload version 2.0 (HTTP
    # APIs, function URLs) has lower-case header names; REST APIs keep the names' case, and ALB
    # or REST events may carry multiValueHeaders instead.
    lower_case = event.get("version") == "2.0"
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field)
        if type(headers) is not dict or not headers:
            continue
        value = headers.get(_PROFILE_HEADER)
        if value is None:
            if lower_case:
                continue
            for key in headers:
                if type(key) is str and len(key) == 21 and key.lower() == _PROFILE_HEADER:
                    value = headers[key]
                    break
            else:
                continue
        for item in value if type(value) is list else (value,):
            if type(item) is str and item.strip().lower() in _YES:
                return "header"
    return None


def _maybe_profile(inv: Invocation, config: Config, event: Any) -> None:
    """Start the sampling profiler when this invocation is to be profiled: the decorator says
    so, the event or a header asks for it, or the rate draws it. Imports nothing otherwise."""
    try:
        mode: str | None = "decorator" if config.profile else None
        if mode is None and type(event) is dict:
            mode = _asks_profile(event)
        if mode is None:
            rate = config.profile_rate
            if rate > 0.0 and (rate >= 1.0 or _ids.random_fraction() < rate):
                mode = "rate"
        if mode is None:
            return
        anchor = sys._getframe(2)  # the wrapper that called begin(): the stack is beyond it
        from ._profiler import Profiler

        task_coro = None
        if anchor.f_code.co_flags & _CO_COROUTINE:
            asyncio = sys.modules.get("asyncio")
            try:
                task = asyncio.current_task() if asyncio is not None else None
            except RuntimeError:  # no running loop (driven by hand)
                task = None
            get_coro = getattr(task, "get_coro", None)
            task_coro = get_coro() if get_coro is not None else None
        profiler = Profiler(
            mode, config.profile_interval_ms, threading.get_ident(), anchor, task_coro
        )
        profiler.start()
        inv.profiler = profiler
    except Exception as exc:
        internal_error("profiler.start", exc)


# -- After the response ---------------------------------------------------------------------


def choose_flusher(config: Config) -> None:
    """During init: set up delivery after the response where the sandbox allows it."""
    S = _state.S
    if S.flusher_chosen:
        return
    S.flusher_chosen = True
    try:
        import os

        from ._extension import choose

        S.flusher = choose(config, os.environ, S.init_end_hooked, prepare_start)
    except Exception as exc:
        internal_error("flusher.choose", exc)


def unmonitored_end(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """An invocation ran without the agent (its set-up failed): tell the flusher not to wait."""
    try:
        flusher = _state.S.flusher
        if flusher is None or CURRENT.get() is not None:  # nested: the outer one reports
            return
        if flusher.runtime_tells:  # the runtime client's next request tells it, after the post
            return
        context = args[1] if len(args) > 1 else kwargs.get("context")
        flusher.finished(_safe_attr(context, "aws_request_id"))
    except Exception as exc:
        internal_error("flusher.finished", exc)


# -- The end of init -----------------------------------------------------------------------

_RUNTIME_CLIENTS = ("awslambdaric.lambda_runtime_client", "lambda_runtime_client")


def hook_init_end() -> None:
    """Catch the exact end of init: the runtime client's first request for an invocation.

    The Lambda runtime interface client imports the handler's module, then asks the Runtime API
    for the next event: that first call is where init ends. A one-shot wrapper on the client
    class records it and puts the original back at once, so later invocations pay nothing.
    Without the runtime client (tests, other runtimes) the decoration time stands in.
    """
    S = _state.S
    if S.init_end_hooked:
        return
    for name in _RUNTIME_CLIENTS:
        module = sys.modules.get(name)
        client = getattr(module, "LambdaRuntimeClient", None) if module is not None else None
        # The class that defines the method (a base class in recent runtime clients).
        cls = next(
            (k for k in getattr(client, "__mro__", ()) if "wait_next_invocation" in k.__dict__),
            None,
        )
        if cls is None:
            continue
        original = cls.__dict__["wait_next_invocation"]

        _install_runtime_next(cls, original)
        S.init_end_hooked = True
        return


def _install_runtime_next(cls: Any, original: Any) -> None:
    bootstrap = sys.modules.get("awslambdaric.bootstrap") or sys.modules.get("bootstrap")

    def runtime_next(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            state = _state.S
            if state.first_invocation and state.restored_at is None and not state.init_end_exact:
                state.init_end = time.time()  # the first request for an event ends init
                state.init_end_exact = True
                _stop_import_timing(state.init_end)
            state.runtime_nexts += 1
            flusher = state.flusher
            if flusher is not None:
                # The runtime asks for the next event: the invocation it just ran is over. If it
                # made no report (its handler was not the monitored one), the extension must not
                # wait for one.
                flusher.finished(getattr(bootstrap, "_GLOBAL_AWS_REQUEST_ID", None))
        except Exception as exc:
            internal_error("runtime_next.hook", exc)
        return original(self, *args, **kwargs)

    cls.wait_next_invocation = runtime_next


# -- SnapStart ----------------------------------------------------------------------------


def register_snapstart() -> None:
    """Register the after-restore hook in a SnapStart sandbox, when the runtime hooks are
    importable (elsewhere their module is not even imported)."""
    S = _state.S
    if S.snapstart_hooked:
        return
    import os

    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start":
        return  # only a SnapStart sandbox is snapshotted and restored
    try:
        import snapshot_restore_py
    except ImportError:
        return
    snapshot_restore_py.register_after_restore(after_restore)
    S.snapstart_hooked = True


def after_restore() -> None:
    """Run by the runtime after a SnapStart restore: restart clocks, baselines and pools, and
    re-seed id generation, so sandboxes restored from one snapshot differ. Never raises."""
    try:
        S = _state.S
        now = time.time()
        _stop_import_timing(S.init_end)  # init ended before the snapshot
        _ids.reseed()
        S.snapshot_init_ms = round(max(0.0, (S.init_end - S.init_start()) * 1000.0), 3)
        S.restored_at = now
        S.process_start, S.process_start_known = now, True
        S.init_end = now
        S.rss_baseline_mb = None
        S.rss_history = []
        S.next_start = None
        if S.sampler is not None:
            S.sampler.close()
            S.sampler = Sampler()
        S.first_invocation = True  # a priming call before the snapshot does not count
        for pipeline in S.pipelines.values():
            pipeline.reset_connections()
            pipeline.rebuild_redactor()
    except Exception as exc:
        internal_error("snapstart.after_restore", exc)

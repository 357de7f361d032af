"""``otlp``: each report as OpenTelemetry traces, metrics and logs over OTLP/HTTP (protobuf).

Any OpenTelemetry Collector (or a vendor's OTLP endpoint) receives the invocation's spans, its
metrics and its captured log records, correlated by trace and span id. The messages are built
straight from the report with the ``opentelemetry-proto`` classes (the ``otlp`` extra) and sent
with lambdascope's own bounded HTTP/1.1 client (:class:`.http.HttpClient`): no SDK exporter,
no background thread, no retry loop of its own. The pipeline calls :meth:`OtlpExporter.export`
within the flush budget, spools what fails and retries it later, as for every exporter.

**Cost.** Building the exporter imports nothing heavy; protobuf and the generated classes
(~60-80 ms) are imported at the first export, which in ``after_response`` mode runs after the
caller has its answer. ``import lambdascope`` never loads them.

**Requests.** One ``POST`` per signal per export, each carrying every report of the batch
(grouped into one ``Resource`` per function and sandbox), sent in the order metrics, traces,
logs (metrics first: they are the smallest, and what alarms are built on) on kept-alive
connections, one per origin. A signal with nothing to send (an unsampled invocation has no
spans; many have no log records) sends no request.

**Resource.** ``service.name`` (``OTEL_SERVICE_NAME``, else ``service.name`` from
``OTEL_RESOURCE_ATTRIBUTES``, else the report's service), ``cloud.provider=aws``,
``cloud.platform=aws_lambda``, ``cloud.region``, ``cloud.account.id`` (from the ARN),
``cloud.resource_id`` (the function's ARN with its version in place of the alias it was invoked
by, as the semantic conventions ask; the invoked ARN is the root span's
``aws.lambda.invoked_arn``), ``faas.name``, ``faas.version``, ``faas.instance`` (the log stream),
``faas.max_memory`` (bytes), ``host.arch``, ``process.runtime.*``, ``aws.log.group.names``,
``aws.log.stream.names`` and ``telemetry.sdk.*`` (``lambdascope``); then
``OTEL_RESOURCE_ATTRIBUTES`` (``k=v`` pairs, percent-decoded) over them. The instrumentation
scope is ``lambdascope`` with the agent's version.

**Traces.** Every span of the report with its ids, parent, kind (the invocation span is
``SERVER``, or ``CONSUMER`` for queue and stream triggers), times in ns and typed attributes;
the invocation span's parent is flagged remote when the trace came in with the event, and its
``links`` (batch triggers) become span links. An error sets ``STATUS_CODE_ERROR`` with
``"Type: message"``, ``error.type``, and an ``exception`` event (with the stack trace on the
invocation span); a timeout or a crashed invocation is an error too. HTTP triggers add
``url.scheme`` (API Gateway and function URLs are HTTPS only) and ``http.route`` (API Gateway's
route) to the report's ``http.request.method`` and ``url.path``.

**Metrics.** One data point per report, delta temporality (each invocation is its own interval,
from its start to its end; nothing is aggregated in the process, so nothing is lost when
Lambda freezes or ends it), named after the FaaS semantic conventions where they have a name:

==================================  =========  ============  ===============================
name                                type       unit          value
==================================  =========  ============  ===============================
``faas.invoke_duration``            histogram  ``s``         duration
``faas.init_duration``              histogram  ``s``         init duration (first invocation
                                                             of a process only)
``faas.invocations``                sum        {invocation}  1 when the invocation succeeded
``faas.coldstarts``                 sum        {coldstart}   1 on a cold start
``faas.errors``                     sum        {error}       1 on error (or crash)
``faas.timeouts``                   sum        {timeout}     1 on timeout
``faas.mem_usage``                  histogram  ``By``        peak RSS of the invocation
``faas.cpu_usage``                  histogram  ``s``         user + system CPU
``faas.net_io``                     histogram  ``By``        bytes received + sent
``lambdascope.memory.usage``        gauge      ``By``        RSS at the end
``lambdascope.memory.peak``         gauge      ``By``        peak RSS
``lambdascope.memory.utilization``  gauge      ``1``         peak RSS / memory size
``lambdascope.sandbox.memory.*``    gauge      ``By``        the sandbox's cgroup (usage, peak)
custom, unit ``Count``              sum        ``{count}``   summed per dimensions per report
custom, any other unit              gauge      UCUM          each value at its time
==================================  =========  ============  ===============================

``faas.invocations`` counts successful invocations, as the conventions define it: the total
is invocations + errors + timeouts. The counters are sent with 0 too, so that error rates have
a denominator. Duration histograms use the conventions' boundaries (5 ms .. 10 s) continued to
Lambda's 15 minutes; a point holds one observation, so its sum, min and max are exact.

*Cardinality.* Built-in points carry ``faas.trigger`` only (``faas.init_duration`` adds
``faas.coldstart`` and ``lambdascope.init_type``), custom ones their dimensions only. The
invocation id is never a point attribute, since that would open one time series per
invocation, which any metrics backend bills or refuses: it travels as an **exemplar** instead
(on ``faas.invoke_duration``, and on ``faas.errors`` / ``faas.timeouts`` when they count),
with the trace and span id when the invocation is sampled, so a latency spike or an error
links back to its trace. The resource makes each sandbox its own stream (``faas.instance``).

**Logs.** Each captured record as a ``LogRecord``: its time, severity number and text, the
message as body, the trace id, the span id of the span that was current (else the invocation
span; none when unsampled), the sampled flag, ``logger.name`` and ``faas.invocation_id``. (The
OpenTelemetry logging bridge puts the logger name in the scope instead; an attribute keeps all
of lambdascope's records in one scope and is easy to filter on.)

**Answers.** 2xx is delivered (a partial success is logged once with the count rejected);
408, 429 and 5xx, a connection failure or no answer in time are worth another try (``RETRY``:
the pipeline spools the batch); any other status (400, 401, 403, 404, 413, …) is refused for
good (``REJECTED``, logged once per status with the receiver's message). ``Retry-After`` is
not read: the pipeline's own back-off (1 s doubling to 30 s) paces the next try.

**Retries are per signal.** The pipeline retries a whole batch per exporter. So that a batch
whose traces were accepted but whose metrics failed does not send its spans (and, worse, its
delta counts, which receivers would add twice) again, the exporter remembers, per report,
which signals are settled, and a retry sends only the rest. The memory is per process and
bounded (``MAX_SETTLED`` reports): a batch retried by another process, or after this one
restarted, is sent whole again. Delivery is at least once; duplicates are possible only then.

**A timeout report, then the end.** The watchdog's timeout report (the invocation so far,
spans in flight marked ``lambdascope.in_flight``) goes out like any report. When the invocation
then finishes after all, its report is cut to what the timeout report could not carry: the
spans not sent yet, the metrics and log records recorded since, and ``faas.errors`` for its
outcome (as the ``emf`` exporter does). Each span id goes out once and the invocation is
counted once, as a timeout. Remembered per process (``MAX_TIMEOUTS`` invocations). Exports
take turns (a lock): the watchdog's thread may deliver while the flusher's does.

**Configuration** (read once, when the exporter is built):

- the endpoint: the ``endpoint`` argument (``LAMBDASCOPE_OTLP_ENDPOINT``, else
  ``OTEL_EXPORTER_OTLP_ENDPOINT``, else ``http://localhost:4318``) with ``/v1/<signal>``
  appended; ``OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`` are used as they are and
  win, unless lambdascope's endpoint was set explicitly (``LAMBDASCOPE_OTLP_ENDPOINT`` or the
  ``otlp_endpoint`` option, differing from the OTel one), which then serves every signal;
- ``OTEL_EXPORTER_OTLP_HEADERS`` and ``OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS`` (``k=v`` pairs,
  percent-decoded; a signal's own headers are added to the general ones and win by name;
  header values are never logged);
- ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]COMPRESSION``: ``gzip`` or ``none`` (the default);
- ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]TIMEOUT``: milliseconds, as the OpenTelemetry specification
  says (the Python SDK long read seconds; a value under 100 is still taken as ms and logged),
  default 10000; a request never waits past the flush budget it is given, whatever this says;
- ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL``: only ``http/protobuf`` is spoken; another value
  is logged and ignored.
An invalid value is logged once (naming the variable, never a header's value) and the default
is used.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from .._guard import log_once
from . import ExportResult
from .http import BudgetSpent, DeliveryError, HttpClient, gzip_bytes

DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_TIMEOUT_MS = 10_000.0
#: Order in which the signals are sent.
SIGNALS = ("metrics", "traces", "logs")
#: Reports whose settled signals are remembered for a retry (oldest forgotten first).
MAX_SETTLED = 4096
#: Timeout reports remembered so that the same invocation's later report sends only the rest.
MAX_TIMEOUTS = 64
#: Marks a report that follows a timeout report of the same invocation (see the encoder).
FOLLOW_UP = "lambdascope.follow_up"
RETRY_STATUSES = frozenset((408, 429))
CONTENT_TYPE = "application/x-protobuf"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_HEADERS = frozenset(
    ("host", "content-length", "content-type", "content-encoding", "transfer-encoding",
     "connection")
)  # fmt: skip
_REASONS = {
    400: "malformed", 401: "not authenticated", 403: "not allowed", 404: "no such path",
    405: "method not allowed", 413: "too large", 415: "unsupported media type",
}  # fmt: skip

_encoder: Any = None


def _encode_module() -> Any:
    """The protobuf encoder, imported at first use (it is what costs)."""
    global _encoder
    if _encoder is None:
        from . import _otlp_encode

        _encoder = _otlp_encode
    return _encoder


def parse_pairs(raw: str) -> dict[str, str] | None:
    """``k=v,k2=v2`` (W3C-baggage-like, percent-encoded) as a dict; None when malformed."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key.strip())
        if not sep or not key:
            return None
        out[key] = unquote(value.strip())
    return out


class _Signal:
    """Where and how one signal is sent."""

    __slots__ = ("bit", "client", "gzip", "headers", "name", "path", "shown", "timeout_s", "url")

    def __init__(self, name: str, bit: int) -> None:
        self.name = name
        self.bit = bit
        self.url = ""
        self.shown = ""  # the URL as logged: no credentials, no query
        self.path = ""
        self.client: HttpClient | None = None
        self.headers: dict[str, str] = {}
        self.gzip = False
        self.timeout_s = DEFAULT_TIMEOUT_MS / 1000.0


class OtlpExporter:
    """Sends reports to an OTLP/HTTP endpoint (see the module's documentation).

    ``endpoint``: the resolved ``config.otlp_endpoint`` (None: from ``environ``). ``environ``:
    where the ``OTEL_*`` variables are read (default ``os.environ``).
    """

    name = "otlp"
    network = True
    #: Lines, not report objects: the pipeline's last redaction pass (secret environment values
    #: anywhere in the report, ``Redactor.text``) runs on the lines only. (Given objects and no
    #: lines, the exporter sends the objects.)
    wants_lines = True

    def __init__(
        self,
        endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        user_agent: str | None = None,
    ) -> None:
        import importlib.util

        from .. import __version__

        for module in ("google.protobuf", "opentelemetry.proto"):
            if importlib.util.find_spec(module) is None:
                raise ImportError(f"{module} is not installed: pip install 'lambdascope[otlp]'")
        env = os.environ if environ is None else environ
        self.version = __version__
        self.user_agent = user_agent or f"lambdascope/{__version__} (OTLP/HTTP protobuf)"
        otel_base = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip().rstrip("/")
        base = (endpoint or "").strip().rstrip("/") or otel_base or DEFAULT_ENDPOINT
        explicit = bool((env.get("LAMBDASCOPE_OTLP_ENDPOINT") or "").strip()) or (
            bool(endpoint) and base != (otel_base or DEFAULT_ENDPOINT)
        )
        self.endpoint = base
        general_headers = self._headers(env, "OTEL_EXPORTER_OTLP_HEADERS")
        self._clients: dict[tuple[str, str, int], HttpClient] = {}
        self.signals: list[_Signal] = []
        for bit, signal in enumerate(SIGNALS):
            s = _Signal(signal, 1 << bit)
            upper = signal.upper()
            own = (env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT") or "").strip()
            url = base + "/v1/" + signal
            if own and not explicit:
                if _valid_url(own):
                    url = own
                else:
                    log_once(
                        f"config:OTEL_EXPORTER_OTLP_{upper}_ENDPOINT",
                        "lambdascope: OTEL_EXPORTER_OTLP_%s_ENDPOINT=%r is not valid (expected "
                        "an http:// or https:// URL with a host); using %s",
                        upper,
                        own,
                        url,
                    )
            parts = urlsplit(url)
            netloc = parts.netloc.rpartition("@")[2]  # no credentials in the Host header
            s.url = url
            s.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            s.shown = f"{parts.scheme}://{netloc}{parts.path}"
            origin = (parts.scheme, parts.hostname or "", parts.port or 0)
            client = self._clients.get(origin)
            if client is None:
                client = self._clients[origin] = HttpClient(
                    f"{parts.scheme}://{netloc}", user_agent=self.user_agent
                )
            s.client = client
            s.headers = {
                **general_headers,
                **self._headers(env, f"OTEL_EXPORTER_OTLP_{upper}_HEADERS"),
            }
            s.gzip = self._compression(env, upper)
            s.timeout_s = self._timeout_ms(env, upper) / 1000.0
            self._protocol(env, upper)
            self.signals.append(s)
        resource_attrs: dict[str, str] = {}
        raw = env.get("OTEL_RESOURCE_ATTRIBUTES")
        if raw and raw.strip():
            parsed = parse_pairs(raw)
            if parsed is None:
                log_once(
                    "config:OTEL_RESOURCE_ATTRIBUTES",
                    "lambdascope: OTEL_RESOURCE_ATTRIBUTES=%r is not valid (expected "
                    "key=value pairs separated by commas, percent-encoded); it is ignored",
                    raw,
                )
            else:
                resource_attrs = parsed
        self.resource_attributes = resource_attrs
        self.service_name = (env.get("OTEL_SERVICE_NAME") or "").strip() or None
        self._resources: Any = None
        self._settled: dict[str, int] = {}
        # request id of a timeout report -> (its span ids, its metric count, its log count)
        self._timeouts: dict[str, tuple[frozenset[str], int, int]] = {}
        # The watchdog's thread may deliver a timeout report while the flusher delivers
        # another: one export at a time on the shared connections.
        self._lock = threading.Lock()

    # -- configuration ------------------------------------------------------------------
    @staticmethod
    def _headers(env: Mapping[str, str], variable: str) -> dict[str, str]:
        raw = env.get(variable)
        if not raw or not raw.strip():
            return {}
        out: dict[str, str] = {}
        for item in raw.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            name = unquote(key.strip())
            value = unquote(value.strip())
            ok = bool(sep) and bool(_TOKEN.match(name)) and not any(c in value for c in "\r\n\0")
            if ok:
                try:
                    value.encode("latin-1")
                except UnicodeEncodeError:
                    ok = False
            if not ok or name.lower() in _RESERVED_HEADERS:
                log_once(
                    f"config:{variable}:{name[:40]}",
                    "lambdascope: %s holds a header that cannot be sent (%r: expected "
                    "name=value with a token name and a Latin-1 value, not a framing header); "
                    "it is left out",
                    variable,
                    name[:40],
                )
                continue
            out[name] = value
        return out

    @staticmethod
    def _setting(env: Mapping[str, str], upper: str, what: str) -> tuple[str, str] | None:
        for variable in (f"OTEL_EXPORTER_OTLP_{upper}_{what}", f"OTEL_EXPORTER_OTLP_{what}"):
            raw = env.get(variable)
            if raw is not None and raw.strip():
                return variable, raw.strip()
        return None

    def _compression(self, env: Mapping[str, str], upper: str) -> bool:
        found = self._setting(env, upper, "COMPRESSION")
        if found is None:
            return False
        variable, raw = found
        value = raw.lower()
        if value in ("gzip", "none"):
            return value == "gzip"
        log_once(
            "config:" + variable,
            "lambdascope: %s=%r is not valid (expected gzip or none); using none",
            variable,
            raw,
        )
        return False

    def _timeout_ms(self, env: Mapping[str, str], upper: str) -> float:
        found = self._setting(env, upper, "TIMEOUT")
        if found is None:
            return DEFAULT_TIMEOUT_MS
        variable, raw = found
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value > 0 or value != value or value == float("inf"):
            log_once(
                "config:" + variable,
                "lambdascope: %s=%r is not valid (expected a timeout in milliseconds above "
                "0); using %d",
                variable,
                raw,
                DEFAULT_TIMEOUT_MS,
            )
            return DEFAULT_TIMEOUT_MS
        if value < 100:
            log_once(
                "config-seconds:" + variable,
                "lambdascope: %s=%s is read as milliseconds, as the OpenTelemetry "
                "specification says (older Python SDKs read seconds)",
                variable,
                raw,
                level=20,
            )
        return value

    @staticmethod
    def _protocol(env: Mapping[str, str], upper: str) -> None:
        found = OtlpExporter._setting(env, upper, "PROTOCOL")
        if found is not None and found[1].lower() != "http/protobuf":
            log_once(
                "config:" + found[0],
                "lambdascope: %s=%r is not supported by the otlp exporter (it speaks "
                "http/protobuf, port 4318 on a Collector); using http/protobuf",
                found[0],
                found[1],
            )

    # -- export -------------------------------------------------------------------------
    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        if not lines and not reports:
            return ExportResult.SUCCESS
        deadline = time.monotonic() + max(0.001, timeout_s)
        if not self._lock.acquire(timeout=max(0.001, timeout_s)):
            return ExportResult.RETRY
        try:
            return self._export(reports, lines, deadline)
        finally:
            self._lock.release()

    def _export(
        self, reports: list[dict[str, Any]], lines: list[str], deadline: float
    ) -> ExportResult:
        encoder = _encode_module()
        if self._resources is None:
            self._resources = encoder.Resources(
                self.service_name, self.resource_attributes, self.version
            )
        # Built from the lines when there are any: they are what was redacted last (secret
        # environment values), and a spooled batch has nothing else.
        parsed: list[dict[str, Any]] = [] if lines else [r for r in reports if r]
        for line in lines:
            try:
                report = json.loads(line)
            except ValueError:
                log_once(
                    "otlp-exporter-bad-line",
                    "lambdascope: a spooled report is not valid JSON; it is dropped",
                )
                continue
            if isinstance(report, dict):
                parsed.append(report)
        keys = [_key(report) for report in parsed]
        parsed = [self._follow_up(report) for report in parsed]
        settled = self._settled
        results: list[ExportResult] = []
        for signal in self.signals:
            bit = signal.bit
            todo = [r for r, k in zip(parsed, keys) if not settled.get(k, 0) & bit]
            if not todo:
                continue
            if time.monotonic() >= deadline:  # no time left: not even worth encoding
                results.append(ExportResult.RETRY)
                continue
            body = encoder.ENCODERS[signal.name](todo, self._resources)
            result = ExportResult.SUCCESS if body is None else self._post(signal, body, deadline)
            results.append(result)
            if result is not ExportResult.RETRY:
                for key in keys:
                    settled[key] = settled.get(key, 0) | bit
        if ExportResult.RETRY in results:
            while len(settled) > MAX_SETTLED:
                del settled[next(iter(settled))]
            return ExportResult.RETRY
        for key in keys:
            settled.pop(key, None)
        if results and all(r is ExportResult.REJECTED for r in results):
            return ExportResult.REJECTED
        return ExportResult.SUCCESS

    def _follow_up(self, report: dict[str, Any]) -> dict[str, Any]:
        """A timeout report is remembered; a later report of the same invocation (it finished
        after all) is cut to what the timeout report could not carry: the spans not sent yet,
        the metrics and log records recorded since, and its outcome. Each span id goes out
        once, and nothing is counted twice."""
        invocation = report.get("invocation")
        if not isinstance(invocation, dict):
            return report
        request_id = invocation.get("request_id")
        status = invocation.get("status")
        timeouts = self._timeouts
        if not isinstance(request_id, str) or (status != "timeout" and not timeouts):
            return report
        if status == "timeout":
            if request_id not in timeouts:
                timeouts[request_id] = (
                    frozenset(s.get("span_id") for s in report.get("spans") or ()),
                    len(report.get("metrics") or ()),
                    len(report.get("logs") or ()),
                )
                while len(timeouts) > MAX_TIMEOUTS:
                    del timeouts[next(iter(timeouts))]
            return report
        sent = timeouts.get(request_id)
        if sent is None or status == "crashed":
            return report
        span_ids, n_metrics, n_logs = sent
        out = dict(report)
        out["spans"] = [s for s in report.get("spans") or () if s.get("span_id") not in span_ids]
        out["metrics"] = list(report.get("metrics") or ())[n_metrics:]
        out["logs"] = list(report.get("logs") or ())[n_logs:]
        out[FOLLOW_UP] = True
        return out

    def _post(self, signal: _Signal, body: bytes, deadline: float) -> ExportResult:
        encoding = None
        if signal.gzip:
            body = gzip_bytes(body)
            encoding = "gzip"
        client = signal.client
        assert client is not None
        request_deadline = min(deadline, time.monotonic() + signal.timeout_s)
        try:
            response = client.post(
                signal.path,
                body,
                CONTENT_TYPE,
                request_deadline,
                headers=signal.headers,
                content_encoding=encoding,
            )
        except BudgetSpent:
            return ExportResult.RETRY
        except DeliveryError as exc:
            log_once(
                "otlp-exporter-unreachable",
                "lambdascope: could not deliver %s to the OTLP endpoint %s (%s); they are kept "
                "and sent again later",
                signal.name,
                signal.shown,
                exc,
            )
            return ExportResult.RETRY
        status = response.status
        if 200 <= status < 300:
            rejected, message = _encode_module().partial_success(signal.name, response.body)
            if rejected or message:
                log_once(
                    f"otlp-exporter-partial-{signal.name}",
                    "lambdascope: the OTLP endpoint %s accepted %s but rejected %d of them%s",
                    signal.shown,
                    signal.name,
                    rejected,
                    f" ({message})" if message else "",
                )
            return ExportResult.SUCCESS
        message = _encode_module().status_message(response.body)
        if status in RETRY_STATUSES or 500 <= status < 600:
            log_once(
                f"otlp-exporter-retry-{status}",
                "lambdascope: the OTLP endpoint %s answered %d%s; %s are kept and sent again later",
                signal.shown,
                status,
                f" ({message})" if message else "",
                signal.name,
            )
            return ExportResult.RETRY
        log_once(
            f"otlp-exporter-{status}",
            "lambdascope: the OTLP endpoint %s refused %s with %d (%s)%s; they are not retried",
            signal.shown,
            signal.name,
            status,
            _REASONS.get(status, "refused"),
            f": {message}" if message else "",
        )
        return ExportResult.REJECTED

    def reset(self) -> None:
        for client in self._clients.values():
            client.reset()

    def shutdown(self) -> None:
        self.reset()


def _key(report: Mapping[str, Any]) -> str:
    invocation = report.get("invocation")
    if not isinstance(invocation, Mapping):
        return repr(sorted(report.items()))[:200]
    return f"{invocation.get('request_id')}/{invocation.get('status')}/{invocation.get('start_ms')}"


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)

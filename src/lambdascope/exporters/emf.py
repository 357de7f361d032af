"""``emf``: CloudWatch Embedded Metric Format documents on stdout, one per invocation.

On Lambda, a JSON object written to stdout in the embedded metric format becomes CloudWatch
metrics with no API call: CloudWatch Logs extracts them from the log event. Each report gives
one document (more when EMF's limits force a split), written as one line, in one ``write``:

* ``_aws.Timestamp``: the invocation's end (its start for a ``crashed`` report), epoch ms.
* The built-in metrics, in one directive with the dimension sets ``[["FunctionName"]]`` (the
  name AWS/Lambda uses) and, when the service is not simply the function's name,
  ``["service"]`` (the name Powertools uses), so a service made of several functions rolls up:

  ==============  ============  =========================================================
  Duration        Milliseconds  the invocation's duration (so far, for a timeout report)
  ColdStart       Count         1 on a cold start, else 0 (Sum: cold starts; Average: the
                                cold-start rate; SampleCount: invocations)
  InitDuration    Milliseconds  on cold starts only
  MemoryUsed      Megabytes     the process's peak RSS during the invocation
  MaxMemoryUsed   Megabytes     the sandbox's peak (its cgroup, as Lambda's REPORT line
                                shows it), where readable
  Errors          Count         1 when the handler raised or the process died, else 0
  Timeouts        Count         1 on a timeout report (sent before the deadline), else 0
  Crashed         Count         1 on a report of an invocation whose process died
  ==============  ============  =========================================================

  Every invocation gives exactly one sample of ``ColdStart``, ``Duration``, ``Errors`` and
  ``Timeouts`` where its outcome is known: a timeout report carries no ``Errors`` sample (the
  invocation may still finish), and when the same invocation then finishes, its report adds
  only ``Errors`` and the custom metrics recorded after the timeout report; when Lambda kills
  it, the ``crashed`` report sent by the next process carries ``Errors`` (and ``Crashed``).
  The request id is never a dimension: every dimension value here is low-cardinality.
* The custom metrics (``lambdascope.metric``), grouped by their dimensions into directives with
  one dimension set each: ``service`` first (the service dimension of Powertools; it is the
  function's name unless ``LAMBDASCOPE_SERVICE`` says otherwise, and a metric's own ``service``
  dimension wins), then the metric's own dimensions in the order given (30 in all: the first 29
  of the metric's own are kept). A name recorded several times in an invocation with the same
  dimensions and unit is one metric with an array of values.
* Properties, so the line links back to the invocation: ``requestId``, ``traceId`` (X-Ray
  format, ``1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy``), ``coldStart``, ``functionVersion``. The
  first document always has them; a later one leaves out a property whose name a metric or
  dimension of its own took. Labels are not added: free text has no place in a metrics line.

EMF's limits are kept by splitting, each document complete on its own (with every dimension
its directives name): at most 100 metrics per document, 100 values per metric (the 101st value
goes on in another document), 4,000 values in all, and no member name with two meanings in one
document (a custom dimension named ``Duration``, one metric name with two sets of dimensions or
two units, one dimension with two values). Names and values are made acceptable to CloudWatch
(printable ASCII, at most 255 characters for names, 1024 for dimension values, an empty value
as ``(empty)``); values that are not finite numbers never appear. The report is redacted
before it gets here and nothing but the members above is added.

stdout that is gone (``None``, closed, a broken pipe) drops the metrics (``REJECTED``): keeping
them would only fill the spool for a stream that does not come back in this process. A stdout
that cannot take a write right now (``EAGAIN``) before anything was written asks for the report
again later (``RETRY``); after some of its documents went out, it is dropped rather than counted
twice.
"""

from __future__ import annotations

import errno
import json
import re
import sys
import threading
import time
from typing import Any

from .._guard import internal_error, log_once
from .._invocation import UNITS
from . import ExportResult

DEFAULT_NAMESPACE = "lambdascope"
MAX_METRICS = 100  # metric definitions per document
MAX_VALUES = 100  # values per metric (an array member)
MAX_DIMENSIONS = 30  # dimensions per dimension set
MAX_NAME = 255  # metric and dimension names, namespace
MAX_DIMENSION_VALUE = 1024
#: Values per document, so that a document stays far below CloudWatch Logs' event size
#: (4,000 values of at most 24 characters: under 100 KB).
MAX_DOCUMENT_VALUES = 4000

FUNCTION_DIMENSION = "FunctionName"
SERVICE_DIMENSION = "service"
BUILTIN_METRICS = (
    "Duration", "ColdStart", "InitDuration", "MemoryUsed", "MaxMemoryUsed", "Errors",
    "Timeouts", "Crashed",
)  # fmt: skip
_BUILTIN_SET = frozenset(BUILTIN_METRICS)
PROPERTIES = ("requestId", "traceId", "coldStart", "functionVersion")
_RESERVED = "_aws"
#: CloudWatch rejects values beyond ±2^360.
_LIMIT = 2.0**360
_METRIC = object()  # the role of a member that holds a metric's value(s)
_PROPERTY = object()  # the role of a member kept for a property
_RESERVED_ROLES = dict.fromkeys(PROPERTIES, _PROPERTY)
_NAMESPACE = re.compile(r"[A-Za-z0-9._/#:\- ]{1,255}")
_REMEMBERED_TIMEOUTS = 16
#: How many documents a metric may look at for room (the first and the latest ones).
_SEARCH = 8

_INT_LIMIT = 2**63
_GONE = (errno.EPIPE, errno.EBADF)  # a stream that does not come back
_CACHE = 4096  # cleaned names and dimension values kept

_UNIT_OF = {
    "Duration": "Milliseconds", "ColdStart": "Count", "InitDuration": "Milliseconds",
    "MemoryUsed": "Megabytes", "MaxMemoryUsed": "Megabytes", "Errors": "Count",
    "Timeouts": "Count", "Crashed": "Count",
}  # fmt: skip
# Shared by every document (serialised, never changed).
_DEFINITIONS = {name: {"Name": name, "Unit": unit} for name, unit in _UNIT_OF.items()}
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _clean(text: Any, limit: int) -> str:
    """``text`` as CloudWatch accepts it in a name or dimension value: printable ASCII, at most
    ``limit`` characters, not blank ("" when nothing is left)."""
    if not isinstance(text, str):
        text = str(text)
    if not (text.isascii() and text.isprintable()):
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        if not text.isprintable():
            text = "".join(c if c.isprintable() else " " for c in text)
    if len(text) > limit:
        text = text[:limit]
    return text if text.strip() else ""


def _name(text: Any) -> str:
    """A metric or dimension name ("" when unusable)."""
    name = _clean(text, MAX_NAME)
    if name.startswith(":"):
        name = name.lstrip(":")
    return "" if name == _RESERVED else name


def _dimension_value(text: Any) -> str:
    return _clean(text, MAX_DIMENSION_VALUE) or "(empty)"


def _number(value: Any) -> float | int | None:
    """``value`` when CloudWatch can take it: a finite number within its range."""
    kind = type(value)
    if kind is float:
        return value if -_LIMIT < value < _LIMIT else None  # NaN compares false
    if kind is int:
        return value if -_INT_LIMIT < value < _INT_LIMIT else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(float(value) if isinstance(value, float) else int(value))
    return None


def xray_trace_id(trace_id: Any) -> str | None:
    """A W3C trace id (32 hex digits) in X-Ray format: ``1-<8 hex>-<24 hex>``."""
    if not isinstance(trace_id, str) or len(trace_id) != 32:
        return None
    return f"1-{trace_id[:8]}-{trace_id[8:]}"


class _Document:
    """One EMF document being assembled, and the meaning of each of its members."""

    __slots__ = ("body", "directives", "groups", "metrics", "roles", "values")

    def __init__(self, body: dict[str, Any] | None, timestamp: int) -> None:
        if body is None:
            body = {"_aws": {"Timestamp": timestamp, "CloudWatchMetrics": []}}
        self.body = body
        self.directives: list[dict[str, Any]] = body["_aws"]["CloudWatchMetrics"]
        #: member name -> its dimension value, or _METRIC / _PROPERTY
        self.roles: dict[str, Any] = {}
        #: group -> the metric definitions of its directive in this document
        self.groups: dict[int, list[dict[str, str]]] = {}
        self.metrics = 0
        self.values = 0

    def room(self, name: str, count: int) -> bool:
        """Whether one more metric ``name`` with ``count`` values fits."""
        return (
            self.metrics < MAX_METRICS
            and self.values + count <= MAX_DOCUMENT_VALUES
            and name not in self.roles
        )

    def dimensions_fit(self, dims: dict[str, str]) -> bool:
        roles = self.roles
        for key, value in dims.items():
            role = roles.get(key)
            if role is not None and role != value:  # a metric's member, or another value
                return False
        return True

    def put(
        self,
        namespace: str,
        group: int,
        dims: dict[str, str],
        dimension_sets: list[list[str]],
        name: str,
        unit: str,
        value: Any,
        count: int,
    ) -> None:
        definitions = self.groups.get(group)
        if definitions is None:
            definitions = self.groups[group] = []
            body, roles = self.body, self.roles
            for key, dim in dims.items():
                body[key] = dim
                roles[key] = dim
            self.directives.append(
                {"Namespace": namespace, "Dimensions": dimension_sets, "Metrics": definitions}
            )
        definitions.append({"Name": name, "Unit": unit})
        self.body[name] = value
        self.roles[name] = _METRIC
        self.metrics += 1
        self.values += count


class EmfExporter:
    name = "emf"
    wants_lines = False  # documents are built from the report objects
    network = False

    def __init__(self, namespace: str | None = None) -> None:
        ns = DEFAULT_NAMESPACE if namespace is None else str(namespace).strip()
        if (
            not _NAMESPACE.fullmatch(ns)
            or ns.startswith(":")
            or ns.upper().startswith("AWS/")
            or not ns.strip()
        ):
            log_once(
                "emf-namespace",
                "lambdascope: %r is not a usable CloudWatch namespace (1 to 255 of letters, "
                "digits and . - _ / # : space, not starting with AWS/); using %r",
                namespace,
                DEFAULT_NAMESPACE,
            )
            ns = DEFAULT_NAMESPACE
        self.namespace = ns
        # Request ids of recent timeout reports -> how many custom metrics they carried.
        self._timeouts: dict[str, int] = {}
        self._lock = threading.Lock()  # the watchdog's thread reports timeouts
        self._functions: dict[Any, tuple[dict[str, str], list[list[str]], str]] = {}
        self._names: dict[str, str] = {}
        self._values: dict[str, str] = {}

    # -- the protocol ------------------------------------------------------------------------
    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        if not reports:  # reports from the spool come as lines only
            reports = []
            for line in lines:
                try:
                    reports.append(json.loads(line))
                except ValueError:
                    log_once("emf-bad-line", "lambdascope: emf: a spooled report is not JSON")
        documents: list[str] = []
        for report in reports:
            try:
                documents.extend(self.documents(report))
            except Exception as exc:  # that report is left out (retrying would not help)
                internal_error("exporter.emf.documents", exc)
        if not documents:
            return ExportResult.SUCCESS
        return self._write(documents)

    def reset(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

    # -- writing ---------------------------------------------------------------------------
    def _write(self, documents: list[str]) -> ExportResult:
        stream = sys.stdout
        if stream is None:  # pythonw, or closed by the application
            return self._gone("stdout is None")
        written = 0
        try:
            for doc in documents:
                stream.write(doc + "\n")  # one write per document: one log event
                written += 1
            flush = getattr(stream, "flush", None)
            if flush is not None:
                flush()
        except (BrokenPipeError, ValueError) as exc:  # closed pipe, closed file
            return self._gone(repr(exc))
        except OSError as exc:
            if written or exc.errno in _GONE:
                # Documents already out would be counted twice if the report came again.
                return self._gone(repr(exc))
            log_once(
                "emf-write-retry",
                "lambdascope: emf: cannot write to stdout now (%r); the report waits",
                exc,
            )
            return ExportResult.RETRY
        return ExportResult.SUCCESS

    @staticmethod
    def _gone(why: str) -> ExportResult:
        # stdout does not come back within this process: keeping the report would only fill the
        # spool with metrics that can never be written.
        log_once(
            "emf-stdout-gone",
            "lambdascope: emf: stdout cannot be written (%s); metrics are dropped",
            why,
        )
        return ExportResult.REJECTED

    # -- documents -------------------------------------------------------------------------
    def documents(self, report: dict[str, Any]) -> list[str]:
        """The EMF documents of one report, serialised (one JSON object each)."""
        inv = report["invocation"]
        function = report.get("function") or {}
        status = inv.get("status")
        request_id = inv.get("request_id")
        when = inv.get("end_ms") or inv.get("start_ms")
        if type(when) is not float and type(when) is not int:
            when = time.time() * 1000.0
        timestamp = int(when)
        cold = inv.get("cold_start") is True

        fkey = (function.get("name"), function.get("service"))
        found = self._functions.get(fkey)
        if found is None:
            found = self._function(*fkey)
        dims, dimension_sets, service = found
        metrics = report.get("metrics")
        metrics = list(metrics) if metrics else []  # a snapshot: the list may still grow

        # A report that follows a timeout report of the same invocation adds only what the
        # timeout report could not know.
        follow_up = False
        timeouts = self._timeouts
        if isinstance(request_id, str) and (status == "timeout" or timeouts):
            with self._lock:
                if status == "timeout":
                    timeouts[request_id] = len(metrics)
                    if len(timeouts) > _REMEMBERED_TIMEOUTS:
                        del timeouts[next(iter(timeouts))]
                elif request_id in timeouts:
                    follow_up = True
                    metrics = metrics[timeouts.pop(request_id) :]

        # The built-ins: one directive, in the first document.
        definitions: list[dict[str, str]] = []
        body: dict[str, Any] = {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": dimension_sets,
                        "Metrics": definitions,
                    }
                ],
            }
        }
        body.update(dims)
        for name, value in _builtins(inv, report.get("resources"), status, cold, follow_up):
            definitions.append(_DEFINITIONS[name])
            body[name] = value
        bodies = [body]
        if metrics:
            bodies = self._custom(metrics, service, body, timestamp)

        properties: dict[str, Any] = {}
        if isinstance(request_id, str):
            properties["requestId"] = request_id
        trace = report.get("trace")
        if trace:
            xray = xray_trace_id(trace.get("trace_id"))
            if xray is not None:
                properties["traceId"] = xray
        properties["coldStart"] = cold
        version = function.get("version")
        if isinstance(version, str):
            properties["functionVersion"] = version
        out = []
        for body in bodies:
            for key, value in properties.items():
                if key not in body:  # a metric or dimension of that name wins
                    body[key] = value
            out.append(_encode(body))
        return out

    def _function(self, name: Any, service: Any) -> tuple[dict[str, str], list[list[str]], str]:
        """The built-ins' dimensions for a function and service (kept: they rarely change)."""
        function_name = _dimension_value(name or service or "unknown")
        service_value = _dimension_value(service or function_name)
        dims = {FUNCTION_DIMENSION: function_name}
        dimension_sets = [[FUNCTION_DIMENSION]]
        if service_value != function_name:
            dims[SERVICE_DIMENSION] = service_value
            dimension_sets.append([SERVICE_DIMENSION])
        found = (dims, dimension_sets, service_value)
        if len(self._functions) < 64:
            self._functions[(name, service)] = found
        return found

    def _custom(
        self, metrics: list[Any], service: str, body: dict[str, Any], timestamp: int
    ) -> list[dict[str, Any]]:
        """The documents of a report with custom metrics: the first (``body``, the built-ins)
        and as many more as the limits and member names require."""
        first = _Document(body, timestamp)
        roles = first.roles
        for directive in first.directives:
            for definition in directive["Metrics"]:
                roles[definition["Name"]] = _METRIC
                first.metrics += 1
                first.values += 1
        for key, value in body.items():
            if key not in roles and key != "_aws":
                roles[key] = value  # the built-ins' dimensions
        # The first document always links back: a metric or dimension named like a property
        # goes to another one.
        roles.update(_RESERVED_ROLES)
        docs = [first]
        namespace = self.namespace
        # Each metric goes to the first document with room for it whose members do not mean
        # something else; a metric's values past the 100th continue in a later one.
        for group, (dims, entries) in enumerate(self._groups(metrics, service)):
            dimension_sets = [list(dims)]
            start = 0
            while True:
                more = False
                for name, unit, values in entries:
                    piece = values[start : start + MAX_VALUES]
                    count = len(piece)
                    if not count:
                        continue
                    if len(values) > start + MAX_VALUES:
                        more = True
                    # The first document and the latest ones: bounded work even when every
                    # metric has dimension values of its own.
                    candidates = docs if len(docs) <= _SEARCH else _candidates(docs)
                    for doc in candidates:
                        if doc.room(name, count) and (
                            group in doc.groups or doc.dimensions_fit(dims)
                        ):
                            break
                    else:
                        doc = _Document(None, timestamp)
                        docs.append(doc)
                    value = piece[0] if count == 1 else piece
                    doc.put(namespace, group, dims, dimension_sets, name, unit, value, count)
                if not more:
                    break
                start += MAX_VALUES
        return [doc.body for doc in docs]

    def _groups(
        self, metrics: list[Any], service: str
    ) -> list[tuple[dict[str, str], list[tuple[str, str, list[Any]]]]]:
        """The custom metrics grouped by their dimensions (service first): for each group, its
        dimensions and its metrics as (name, unit, values), in the order first recorded."""
        groups: dict[Any, tuple[dict[str, str], dict[str, tuple[str, list[Any]]]]] = {}
        names = self._names
        for m in metrics:
            if type(m) is not dict:
                continue
            value = _number(m.get("value"))
            if value is None:
                continue
            raw_name = m.get("name")
            name = names.get(raw_name) if type(raw_name) is str else None
            if name is None:
                name = _name(raw_name)
                if type(raw_name) is str and len(names) < _CACHE:
                    names[raw_name] = name
            if not name:
                log_once(
                    "emf-metric-name",
                    "lambdascope: emf: a metric with an unusable name (empty, or _aws) is left out",
                )
                continue
            unit = m.get("unit")
            if unit not in UNITS:
                unit = "None"
            raw = m.get("dimensions")
            dims = self._dimensions(name, raw, service) if raw else {SERVICE_DIMENSION: service}
            if name == SERVICE_DIMENSION:
                dims.pop(SERVICE_DIMENSION, None)
                log_once(
                    "emf-metric-service",
                    "lambdascope: emf: a metric named %r is sent without the service dimension",
                    name,
                )
            elif len(dims) == 1 and name in _BUILTIN_SET:
                log_once(
                    "emf-builtin-name:" + name,
                    "lambdascope: emf: custom metric %r has the name of a built-in metric; "
                    "with no dimension of its own, its values join the built-in ones of the "
                    "service",
                    name,
                )
            key = tuple(dims.items())
            variant = 0
            while True:
                group = groups.get((key, variant))
                if group is None:
                    group = groups[(key, variant)] = (dims, {})
                entries = group[1]
                entry = entries.get(name)
                if entry is None:
                    entries[name] = (unit, [value])
                    break
                if entry[0] == unit:
                    entry[1].append(value)
                    break
                variant += 1  # the same name in another unit: a metric apart
        return [
            (dims, [(n, u, v) for n, (u, v) in entries.items()])
            for dims, entries in groups.values()
        ]

    def _dimensions(self, name: str, raw: Any, service: str) -> dict[str, str]:
        """A metric's dimensions as CloudWatch takes them: ``service`` first (the metric's own
        ``service`` wins), 30 at most, names and values cleaned."""
        dims = {SERVICE_DIMENSION: service}
        names, values = self._names, self._values
        for raw_key, raw_value in raw.items():
            key = names.get(raw_key) if type(raw_key) is str else None
            if key is None:
                key = _name(raw_key)
                if type(raw_key) is str and len(names) < _CACHE:
                    names[raw_key] = key
            if not key:
                log_once(
                    "emf-dimension-name",
                    "lambdascope: emf: a dimension with an unusable name (empty, or _aws) is "
                    "left out",
                )
                continue
            if key == name:
                log_once(
                    "emf-dimension-is-metric",
                    "lambdascope: emf: metric %r has a dimension of its own name; the "
                    "dimension is left out (one member cannot be both)",
                    name,
                )
                continue
            if key in dims and key != SERVICE_DIMENSION:
                continue  # two names that clean to the same
            if len(dims) >= MAX_DIMENSIONS and key not in dims:
                log_once(
                    "emf-dimensions",
                    "lambdascope: emf: a metric has more than %d dimensions with service; the "
                    "first %d of its own are kept",
                    MAX_DIMENSIONS,
                    MAX_DIMENSIONS - 1,
                )
                break
            value = values.get(raw_value) if type(raw_value) is str else None
            if value is None:
                value = _dimension_value(raw_value)
                if type(raw_value) is str and len(values) < _CACHE:
                    values[raw_value] = value
            dims[key] = value
        return dims


def _builtins(
    inv: dict[str, Any], resources: Any, status: Any, cold: bool, follow_up: bool
) -> list[tuple[str, Any]]:
    if status == "crashed":
        return [("Crashed", 1), ("Errors", 1)]
    errors = 1 if status == "error" else 0
    if follow_up:  # the timeout report carried the rest
        return [("Errors", errors)]
    out: list[tuple[str, Any]] = []
    duration = _number(inv.get("duration_ms"))
    if duration is not None:
        out.append(("Duration", duration))
    out.append(("ColdStart", 1 if cold else 0))
    if cold:
        init = _number(inv.get("init_duration_ms"))
        if init is not None:
            out.append(("InitDuration", init))
    if resources:
        peak = _number(resources.get("rss_peak_mb"))
        if peak is not None:
            out.append(("MemoryUsed", peak))
        sandbox = _number(resources.get("sandbox_memory_peak_mb"))
        if sandbox is None:
            sandbox = _number(resources.get("sandbox_memory_mb"))
        if sandbox is not None:
            out.append(("MaxMemoryUsed", sandbox))
    if status == "timeout":
        out.append(("Timeouts", 1))
    else:
        out.append(("Errors", errors))
        out.append(("Timeouts", 0))
    return out


def _candidates(docs: list[_Document]) -> list[_Document]:
    return [docs[0], *docs[1 - _SEARCH :]]

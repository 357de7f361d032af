"""Reading reports out of log files (``lambdascope ingest``).

Inputs, told apart by their first bytes and then line by line (any size: files are streamed,
never read whole):

* the JSON of ``aws logs filter-log-events`` / ``get-log-events`` (``{"events": [{"timestamp",
  "message", "logStreamName", …}]}``), a bare array of such events (``--query events``),
  CloudWatch Logs subscription payloads (``{"logGroup", "logStream", "logEvents": […]}``, one
  after the other as Firehose writes them) and JSON lines of events (``jq -c '.events[]'``);
* the text of ``aws logs tail`` (``2026-01-31T12:00:00.123000+00:00 <stream> <message>``, the
  ``--format short`` timestamp without a stream, continuation lines of multi-line messages);
* raw log lines: stdout-exporter reports (``{"schema":"lambdascope/1",…}``, possibly after the
  runtime's tab-separated prefix), the Python runtime's ``[INFO]\\t<time>\\t<request id>\\t…``
  records, the ``<time>\\t<request id>\\t<LEVEL>\\t…`` form, ``AWS_LAMBDA_LOG_FORMAT=JSON``
  records and platform events, and Lambda's ``START``/``END``/``REPORT`` lines.

What is kept:

* each agent report (validated with the shipped schema) → ``Store.add``;
* each ``REPORT`` line (or ``platform.report`` event) → a platform record, ``Store.add_platform``:
  joined to the agent's report of the same request id, or stored alone as a minimal invocation
  whose function comes from the agent's reports in the same log stream, the function name in
  the stream name (custom log groups), the log group ``/aws/lambda/<name>``, else
  ``--function``;
* every other line → the logs of its request id (``Store.add_logs``): the id in the line's
  prefix, else the one invocation in flight in its log stream (between ``START`` and
  ``REPORT``), which untangles the interleaved invocations of many sandboxes in one export.
  Lines the agent's report already holds (its captured log records) are not stored twice.

The parsing is pure (:class:`Ingester` takes a store-like object with ``add``,
``add_platform`` and ``add_logs``), so tests can feed it lines and look at what it stored.
"""

from __future__ import annotations

import calendar
import codecs
import functools
import gzip
import json
import os
import re
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

#: Reports and platform records are handed to the store in batches of this size.
BATCH = 500
#: Request ids whose log lines are held waiting for their REPORT line; past this the oldest are
#: written out (a filtered export may have lines of requests whose REPORT never comes).
MAX_PENDING = 5000
#: Agent reports remembered (function, start) for the REPORT and log lines that follow them.
MAX_AGENTS = 100_000
#: Log lines held in all; past this the oldest requests' lines are written out.
MAX_PENDING_LINES = 100_000
#: A log message is cut to this many characters.
MAX_MESSAGE = 16 * 1024
#: A multi-line message of ``aws logs tail`` text is cut past this many characters (CloudWatch
#: events are at most 256 KB).
MAX_EVENT = 1024 * 1024
#: In a JSON export, one event that is not complete after this much more input is corrupt.
MAX_JSON_VALUE = 16 * 1024 * 1024
CHUNK = 1024 * 1024
#: Store calls in flight at once (they share the writer's transactions).
WRITERS = 8


@dataclass
class Counts:
    """What an ingestion read and stored."""

    lines: int = 0            # log lines read (one per event of a JSON export)
    reports: int = 0          # agent reports found
    stored: int = 0           # reports stored (new request ids)
    duplicates: int = 0       # reports already stored
    replaced: int = 0         # reports that replaced an earlier one (final after timeout)
    platform: int = 0         # REPORT records stored (joined or alone)
    platform_alone: int = 0   # of which with no agent report in this input
    platform_duplicates: int = 0  # REPORT records already stored
    logs: int = 0             # log lines attached to a request id
    unattributed: int = 0     # log lines with no request id and none in flight
    unreadable: int = 0       # report/REPORT lines that could not be read, corrupt JSON
    no_function: int = 0      # REPORT lines skipped: no function name known (use --function)
    bytes: int = 0
    first_problem: str | None = None

    def problem(self, where: str, what: str) -> None:
        self.unreadable += 1
        if self.first_problem is None:
            self.first_problem = f"{where}: {what}"

    def summary(self) -> str:
        parts = [
            f"{self.lines:,} lines read",
            f"{self.stored:,} reports stored"
            + (f" ({self.replaced:,} replacing a timeout report)" if self.replaced else ""),
            f"{self.duplicates + self.platform_duplicates:,} duplicates",
            f"{self.platform:,} platform records"
            + (f" ({min(self.platform_alone, self.platform):,} without an agent report)"
               if self.platform_alone and self.platform else ""),
            f"{self.logs:,} log lines attached",
            f"{self.unreadable:,} unreadable lines",
        ]
        if self.no_function:
            parts.append(f"{self.no_function:,} REPORT lines skipped: no function name "
                         f"(give --function)")
        text = ", ".join(parts)
        if self.first_problem:
            text += f" (first unreadable: {self.first_problem})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


# -- line shapes ---------------------------------------------------------------------------------

_LEVELS = "TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL"
_TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
_RID = r"[0-9A-Za-z][0-9A-Za-z-]{7,63}"
#: Python runtime, text format: ``[INFO]\t2026-01-31T12:00:00.123Z\t<request id>\tmessage``.
_PY_PREFIX = re.compile(rf"^\[({_LEVELS})\]\t({_TS})\t({_RID})?\t(.*)$", re.S)
#: Without a request id (outside an invocation): ``[INFO]\t<time>\tmessage``.
_PY_PREFIX_NORID = re.compile(rf"^\[({_LEVELS})\]\t({_TS})\t(.*)$", re.S)
#: The runtime's uncaught-exception record: ``[ERROR] ValueError: boom`` + traceback.
_PY_ERROR = re.compile(rf"^\[({_LEVELS})\] (.*)$", re.S)
#: ``2026-01-31T12:00:00.123Z\t<request id>\tINFO\tmessage`` (and Lambda's own
#: ``<time> <request id> Task timed out after 3.00 seconds``).
_TAB_PREFIX = re.compile(
    rf"^({_TS})[\t ]([0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-"
    rf"[0-9a-fA-F]{{12}})[\t ](?:({_LEVELS})\t)?(.*)$",
    re.S,
)
#: ``aws logs tail`` (detailed): ``2026-01-31T12:00:00.123000+00:00 <stream> message`` (a
#: Lambda log stream: ``2026/01/31/[$LATEST]…``).
_TAIL_DETAILED = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?[+-]\d{2}:\d{2}) (\S*[/\[]\S*) ?(.*)$",
    re.S,
)
#: ``aws logs tail --format short`` and S3 exports: ``<time> message``.
_TAIL_SHORT = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?) (.*)$", re.S)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

_START = re.compile(r"^START RequestId: (\S+)(?:\s+Version: (\S+))?")
_END = re.compile(r"^END RequestId: (\S+)")
_REPORT = re.compile(r"^REPORT RequestId: (\S+)\s+Duration: ([\d.]+) ms")
_REPORT_FIELDS = {
    "billed_ms": re.compile(r"Billed Duration: ([\d.]+) ms"),
    "memory_mb": re.compile(r"Memory Size: (\d+) MB"),
    "max_memory_mb": re.compile(r"Max Memory Used: (\d+) MB"),
    "init_ms": re.compile(r"Init Duration: ([\d.]+) ms"),
    "restore_ms": re.compile(r"(?<!Billed )Restore Duration: ([\d.]+) ms"),
    "billed_restore_ms": re.compile(r"Billed Restore Duration: ([\d.]+) ms"),
}
_REPORT_STATUS = re.compile(r"Status: ([A-Za-z.]+)")
_REPORT_ERROR_TYPE = re.compile(r"Error Type: (\S+)")
_XRAY = re.compile(r"XRAY TraceId: 1-([0-9a-f]{8})-([0-9a-f]{24})")
_PLATFORM_WORDS = ("INIT_START", "INIT_REPORT", "INIT_RUNTIME_DONE", "RESTORE_START",
                   "RESTORE_REPORT", "EXTENSION", "TELEMETRY", "LOGS")
#: ``2026/01/31/[$LATEST]0123abcd…`` or, in a custom log group, ``2026/01/31/orders[3]…``.
_STREAM = re.compile(r"^\d{4}/\d{2}/\d{2}/([^\[\]/]*)\[([^\]]+)\]")
_ARRAY_DOC = re.compile(r"^\s*\[\s*[\{\]]")
_OBJECT_DOC = re.compile(
    r'^\s*\{\s*"(events|logEvents|messageType|owner|logGroup|logStream|searchedLogStreams|'
    r'nextToken|nextForwardToken|nextBackwardToken|subscriptionFilters)"\s*:'
)


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(?:(Z|z)|([+-])(\d{2}):?(\d{2}))?$"
)


def iso_ms(text: str) -> float | None:
    """ISO 8601 → epoch ms (``Z`` or an offset; none means UTC); None when it is not one.
    Any number of fraction digits (Python's ``fromisoformat`` takes 3 or 6 before 3.11)."""
    match = _ISO.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    try:
        seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute),
                                   int(second), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour) < 24
            and int(minute) < 60 and int(second) < 61):
        return None
    ms = seconds * 1000.0
    if fraction:
        ms += int(fraction[:6].ljust(6, "0")) / 1000.0
    if sign:
        offset = (int(off_h) * 60 + int(off_m)) * 60_000.0
        ms = ms - offset if sign == "+" else ms + offset
    return ms


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def function_from_group(group: str | None) -> str | None:
    if group and group.startswith("/aws/lambda/"):
        name = group[len("/aws/lambda/"):]
        return name or None
    return None


def parse_stream_name(stream: str | None) -> tuple[str | None, str | None]:
    """A Lambda log stream name → (function name if the stream carries one, version)."""
    if not stream:
        return None, None
    match = _STREAM.match(stream)
    if not match:
        return None, None
    return (match.group(1) or None), match.group(2)


def parse_report_line(message: str) -> dict[str, Any] | None:
    """Lambda's ``REPORT RequestId: …`` line → its figures, None when it cannot be read."""
    match = _REPORT.match(message)
    if not match:
        return None
    record: dict[str, Any] = {
        "request_id": match.group(1),
        "duration_ms": float(match.group(2)),
    }
    for key, pattern in _REPORT_FIELDS.items():
        found = pattern.search(message)
        if found:
            value = float(found.group(1))
            record[key] = int(value) if key in ("memory_mb", "max_memory_mb") else value
    status = _REPORT_STATUS.search(message)
    if status:
        record["status"] = status.group(1)
    error_type = _REPORT_ERROR_TYPE.search(message)
    if error_type:
        record["error_type"] = error_type.group(1)
    xray = _XRAY.search(message)
    if xray:
        record["trace_id"] = xray.group(1) + xray.group(2)
    return record


def platform_report_event(data: dict[str, Any]) -> dict[str, Any] | None:
    """A ``platform.report`` event of the JSON log format → the same figures as a REPORT line."""
    record = data.get("record")
    if not isinstance(record, dict) or not isinstance(record.get("requestId"), str):
        return None
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    duration = _number(metrics.get("durationMs"))
    if duration is None:
        return None
    out: dict[str, Any] = {"request_id": record["requestId"], "duration_ms": duration}
    for key, name in (("billed_ms", "billedDurationMs"), ("memory_mb", "memorySizeMB"),
                      ("max_memory_mb", "maxMemoryUsedMB"), ("init_ms", "initDurationMs"),
                      ("restore_ms", "restoreDurationMs"),
                      ("billed_restore_ms", "billedRestoreDurationMs")):
        value = _number(metrics.get(name))
        if value is not None:
            out[key] = int(value) if key in ("memory_mb", "max_memory_mb") else value
    status = record.get("status")
    if isinstance(status, str) and status != "success":
        out["status"] = status
    if isinstance(record.get("errorType"), str):
        out["error_type"] = record["errorType"]
    tracing = record.get("tracing")
    if isinstance(tracing, dict) and isinstance(tracing.get("value"), str):
        xray = re.search(r"Root=1-([0-9a-f]{8})-([0-9a-f]{24})", tracing["value"])
        if xray:
            out["trace_id"] = xray.group(1) + xray.group(2)
    return out


@functools.lru_cache(maxsize=1)
def report_validator() -> Callable[[Any], Any]:
    """The shipped report schema compiled with fastjsonschema (once per process)."""
    from importlib import resources

    import fastjsonschema

    text = resources.files("lambdascope").joinpath("schema/lambdascope-1.json").read_text("utf-8")
    return fastjsonschema.compile(json.loads(text))


def _looks_like_report(message: str) -> bool:
    head = message[:80]
    return head.startswith("{") and '"schema"' in head and "lambdascope/1" in head


# -- state -----------------------------------------------------------------------------------------

@dataclass
class _Stream:
    """One log stream (one sandbox): what runs in it now and whose function it is."""

    key: str | None
    function: str | None = None
    version: str | None = None
    group_function: str | None = None
    in_flight: list[str] = field(default_factory=list)
    last_ts: float | None = None
    unnamed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Request:
    """A request id seen in the input, until its REPORT line (or the end)."""

    stream: str | None
    start_ms: float | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    report_messages: set[str] | None = None
    function: str | None = None


class Ingester:
    """Feeds lines, JSON exports and files into a store; :meth:`close` writes what is held and
    returns the :class:`Counts`."""

    def __init__(
        self,
        store: Any,
        function: str | None = None,
        *,
        validate: Callable[[Any], Any] | None = None,
        progress: Callable[[Counts, int, int | None], None] | None = None,
        batch: int = BATCH,
    ) -> None:
        self.store = store
        self.default_function = function
        self.counts = Counts()
        self._validate = validate
        self._progress = progress
        self._batch = batch
        self._reports: list[dict[str, Any]] = []
        self._platform: list[dict[str, Any]] = []
        self._streams: dict[str | None, _Stream] = {}
        self._requests: OrderedDict[str, _Request] = OrderedDict()
        self._pending_lines = 0
        self._deferred: list[tuple[str, _Request]] = []
        #: request id → (function, start) of the agent reports seen lately (REPORT lines and
        #: log lines follow their report closely; older ones are forgotten)
        self._agents: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._pool: Any = None
        self._jobs: deque[tuple[str, int, Any]] = deque()
        self._where = "-"
        self._line_no = 0
        self._total: int | None = None
        self._done_bytes: Callable[[], int] = lambda: 0
        self._next_progress = 0.0

    # -- files -------------------------------------------------------------------------------
    def read_path(self, path: str) -> None:
        """Read one file (``-``: standard input; ``.gz`` unpacked)."""
        if path == "-":
            stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
            self.read_binary(stdin, "<stdin>", None)
            return
        with open(path, "rb") as disk:
            size = os.fstat(disk.fileno()).st_size
            head = disk.read(2)
            disk.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=disk, mode="rb") as unpacked:
                    self.read_binary(unpacked, path, size, disk)
            else:
                self.read_binary(disk, path, size, disk)

    def read_binary(
        self, stream: IO[bytes], name: str, size: int | None, disk: IO[bytes] | None = None
    ) -> None:
        self._where = name
        self._total = size
        self._line_no = 0
        self._done_bytes = (
            (lambda: disk.tell()) if disk is not None else (lambda: self.counts.bytes)
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def chunks() -> Iterator[str]:
            first = True
            while True:
                data = stream.read(CHUNK)
                if not data:
                    tail = decoder.decode(b"", final=True)
                    if tail:
                        yield tail
                    return
                self.counts.bytes += len(data) if disk is None else 0
                text = decoder.decode(data)
                if first:
                    first = False
                    if text.startswith("\ufeff"):
                        text = text[1:]
                yield text

        self.read_text_chunks(chunks())
        if disk is not None:
            try:
                self.counts.bytes += disk.tell()
            except (OSError, ValueError):
                pass
        self._tick(force=True)

    def read_text_chunks(self, chunks: Iterable[str]) -> None:
        """Read one input given as text chunks: a JSON export or lines, told apart by its
        first bytes."""
        it = iter(chunks)
        first = ""
        for chunk in it:
            first += chunk
            # Enough to tell: two lines after any leading blank ones (a pretty-printed
            # document's "{" and its first member), or 4 KB.
            if len(first) >= 4096 or first.lstrip().count("\n") >= 2:
                break
        if not first:
            return
        rest = _chain([first], it)
        if self._is_document(first):
            _JsonEvents(self, rest).run()
        else:
            self.read_lines(_split_lines(rest))

    def _is_document(self, head: str) -> bool:
        # A compact one-line document is a document too; a JSON log line is not.
        return bool(_ARRAY_DOC.match(head) or _OBJECT_DOC.match(head))

    # -- lines -------------------------------------------------------------------------------
    def read_lines(self, lines: Iterable[str]) -> None:
        """Read text lines: ``aws logs tail`` output or raw log lines (tail's continuation
        lines are joined to their event)."""
        # A tail event being read: (time, stream, message parts), emitted at the next event.
        held: tuple[float | None, str | None, list[str]] | None = None
        held_len = 0
        for raw in lines:
            line = raw.rstrip("\r\n")
            if "\x1b" in line:
                line = _ANSI.sub("", line)
            self._line_no += 1
            self.counts.lines += 1
            if line[:2] == "20":
                match = _TAIL_DETAILED.match(line)
                if match is None and _TAB_PREFIX.match(line) is None:
                    match = _TAIL_SHORT.match(line)
                if match is not None:
                    if held is not None:
                        self.event(held[0], held[1], "\n".join(held[2]))
                    groups = match.groups()
                    stream = groups[1] if len(groups) == 3 else None
                    held = (iso_ms(groups[0]), stream, [groups[-1]])
                    held_len = len(groups[-1])
                    continue
            if held is not None:
                if not self._starts_record(line):
                    # A continuation line of a multi-line ``aws logs tail`` message.
                    self.counts.lines -= 1  # counted with its event
                    if held_len < MAX_EVENT:
                        held[2].append(line)
                        held_len += len(line) + 1
                    continue
                self.event(held[0], held[1], "\n".join(held[2]))
                held = None
            if line.startswith("{") and '"message"' in line and not _looks_like_report(line):
                event = self._json_event_line(line)
                if event is not None:
                    self.event(*event)
                    continue
            self.event(None, None, line)
        if held is not None:
            self.event(held[0], held[1], "\n".join(held[2]))

    @staticmethod
    def _starts_record(line: str) -> bool:
        """A raw line that begins a record of its own (not the continuation of a message)."""
        return bool(line) and (line.startswith(("{\"schema\"", "START RequestId:",
                                                "END RequestId:", "REPORT RequestId:"))
                               or _PY_PREFIX.match(line) is not None)

    def _json_event_line(self, line: str) -> tuple[float | None, str | None, str] | None:
        """A JSON line that is a CloudWatch event (``jq -c '.events[]'``), else None."""
        if '"logStreamName"' not in line and '"eventId"' not in line \
                and '"ingestionTime"' not in line:
            return None
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            return None
        return (_number(data.get("timestamp")), _str(data.get("logStreamName")),
                data["message"])

    # -- one log event -----------------------------------------------------------------------
    def event(self, ts_ms: float | None, stream_key: str | None, message: str,
              group: str | None = None) -> None:
        """One log event (one CloudWatch event, one line): classify it and keep what counts."""
        stream = self._stream(stream_key, group)
        if ts_ms is not None:
            stream.last_ts = ts_ms
        msg = message.rstrip("\r\n")
        if msg[:1] == "\n":
            msg = msg.lstrip("\n")  # ``aws logs tail --format json`` puts JSON on its own lines
        if not msg:
            return
        self._tick()
        first = msg[0]
        if first == "{":
            stripped = msg.strip()
            if _looks_like_report(stripped):
                self._report_text(stripped, stream)
                return
            if (stripped.endswith("}")
                    and ('"requestId"' in stripped or '"type"' in stripped
                         or '"function_request_id"' in stripped)
                    and self._json_record(stripped, stream, ts_ms)):
                return
        elif first in "SER" and msg[:6] in ("START ", "END Re", "REPORT"):
            if self._platform_line(msg, stream, ts_ms):
                return
        elif first == "[":
            match = _PY_PREFIX.match(msg)
            if match:
                level, when, rid, text = match.groups()
                self._log(rid or None, stream, iso_ms(when) or ts_ms, level, None, text)
                return
            match = _PY_PREFIX_NORID.match(msg)
            if match:
                level, when, text = match.groups()
                self._log(None, stream, iso_ms(when) or ts_ms, level, None, text)
                return
            match = _PY_ERROR.match(msg)
            if match:
                self._log(None, stream, ts_ms, match.group(1), None, match.group(2))
                return
        elif first == "2":
            match = _TAB_PREFIX.match(msg)
            if match:
                when, rid, level, text = match.groups()
                if _looks_like_report(text):
                    self._report_text(text.strip(), stream)
                    return
                self._log(rid, stream, iso_ms(when) or ts_ms, level, None, text)
                return
        if msg.split(" ", 1)[0] in _PLATFORM_WORDS:
            return  # INIT_START & co.: the sandbox's, not an invocation's
        self._log(None, stream, ts_ms, None, None, msg)

    def _stream(self, key: str | None, group: str | None) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            name, version = parse_stream_name(key)
            stream = self._streams[key] = _Stream(key, function=name, version=version)
        if group and stream.group_function is None:
            stream.group_function = function_from_group(group)
        return stream

    # -- agent reports -----------------------------------------------------------------------
    def _report_text(self, text: str, stream: _Stream) -> None:
        try:
            report = json.loads(text)
        except ValueError as exc:
            self.counts.problem(self._here(), f"report is not valid JSON ({exc.msg})")
            return
        self.report(report, stream)

    def report(self, report: Any, stream: _Stream | None = None) -> None:
        if stream is None:
            stream = self._stream(None, None)
        validate = self._validate if self._validate is not None else report_validator()
        try:
            validate(report)
        except Exception as exc:  # fastjsonschema.JsonSchemaValueException and its like
            message = getattr(exc, "message", None) or str(exc)
            self.counts.problem(self._here(), f"not a valid report ({message})")
            return
        self.counts.reports += 1
        inv = report["invocation"]
        end = inv.get("end_ms") or inv.get("start_ms")
        if end is not None and (stream.last_ts is None or stream.last_ts < end):
            stream.last_ts = end
        fn = report["function"]
        rid = inv["request_id"]
        name = fn.get("name")
        if name:
            # Every REPORT line of this sandbox is this function's.
            for key in {stream.key, fn.get("log_stream")}:
                if key is None and stream.key is not None:
                    continue
                target = self._stream(key, fn.get("log_group"))
                if target.function is None or target.function != name:
                    target.function = name
                    self._release_unnamed(target)
        self._agents[rid] = (name, inv["start_ms"])
        if len(self._agents) > MAX_AGENTS:
            self._agents.popitem(last=False)
        request = self._requests.get(rid)
        if request is not None:
            request.report_messages = _report_messages(report)
            request.function = name or request.function
        self._reports.append(report)
        if len(self._reports) >= self._batch:
            self._flush_reports()

    # -- platform lines ----------------------------------------------------------------------
    def _platform_line(self, msg: str, stream: _Stream, ts_ms: float | None) -> bool:
        if msg.startswith("START "):
            match = _START.match(msg)
            if not match:
                return False
            rid = match.group(1)
            request = self._request(rid, stream)
            request.start_ms = ts_ms  # a raw line has no time: end - duration at REPORT
            if match.group(2) and stream.version is None:
                stream.version = match.group(2)
            if rid not in stream.in_flight:
                stream.in_flight.append(rid)
            return True
        if msg.startswith("END "):
            match = _END.match(msg)
            if not match:
                return False
            rid = match.group(1)
            if rid in stream.in_flight:
                stream.in_flight.remove(rid)
            return True
        if msg.startswith("REPORT "):
            record = parse_report_line(msg)
            if record is None:
                self.counts.problem(self._here(), "a REPORT line without its Duration")
                return True
            self._platform_record(record, stream, ts_ms)
            return True
        return False

    def _json_record(self, text: str, stream: _Stream, ts_ms: float | None) -> bool:
        """A record of ``AWS_LAMBDA_LOG_FORMAT=JSON``: an application log record (``requestId``
        or Powertools' ``function_request_id``) or a platform event."""
        try:
            data = json.loads(text)
        except ValueError:
            return False
        if not isinstance(data, dict):
            return False
        kind = data.get("type")
        if isinstance(kind, str) and kind.startswith("platform."):
            when = iso_ms(data["time"]) if isinstance(data.get("time"), str) else None
            when = when if when is not None else ts_ms
            record = data.get("record") if isinstance(data.get("record"), dict) else {}
            rid = record.get("requestId")
            if kind == "platform.start" and isinstance(rid, str):
                request = self._request(rid, stream)
                request.start_ms = when
                version = record.get("version")
                if isinstance(version, str) and stream.version is None:
                    stream.version = version
                if rid not in stream.in_flight:
                    stream.in_flight.append(rid)
            elif kind == "platform.report":
                parsed = platform_report_event(data)
                if parsed is None:
                    self.counts.problem(self._here(), "a platform.report event without metrics")
                else:
                    self._platform_record(parsed, stream, when)
            elif kind == "platform.runtimeDone" and rid in stream.in_flight:
                stream.in_flight.remove(rid)
            return True
        rid = data.get("requestId", data.get("function_request_id"))
        message = data.get("message")
        if not isinstance(message, str):
            if message is None:
                return False
            message = json.dumps(message, ensure_ascii=False)
        if isinstance(data.get("stackTrace"), list):
            message += "\n" + "".join(str(s) for s in data["stackTrace"])
        when = None
        for key in ("timestamp", "time"):
            value = data.get(key)
            if isinstance(value, str):
                when = iso_ms(value)
            elif _number(value) is not None:
                when = _number(value)
            if when is not None:
                break
        level = data.get("level")
        logger = data.get("logger")
        self._log(rid if isinstance(rid, str) else None, stream,
                  when if when is not None else ts_ms,
                  level.upper() if isinstance(level, str) else None,
                  logger if isinstance(logger, str) else None, message)
        return True

    def _platform_record(self, record: dict[str, Any], stream: _Stream,
                         ts_ms: float | None) -> None:
        rid = record["request_id"]
        if rid in stream.in_flight:
            stream.in_flight.remove(rid)
        request = self._requests.get(rid)
        end_ms = ts_ms if ts_ms is not None else stream.last_ts
        start_ms = request.start_ms if request is not None else None
        if start_ms is None and end_ms is not None:
            start_ms = end_ms - record["duration_ms"]
        record["start_ms"] = start_ms
        record["end_ms"] = end_ms
        record["log_stream"] = stream.key
        if stream.version is not None:
            record.setdefault("version", stream.version)
        function = self._agent_function(rid) or stream.function or stream.group_function
        if function is None:
            # Named when an agent report of this sandbox comes, or at the end (--function).
            stream.unnamed.append(record)
        else:
            record["function"] = function
            self._keep_platform(record)
        self._finish_request(rid)

    def _agent_function(self, rid: str) -> str | None:
        found = self._agents.get(rid)
        return found[0] if found else None

    def _keep_platform(self, record: dict[str, Any]) -> None:
        if record.get("start_ms") is None:
            start = self._agents.get(record["request_id"], (None, None))[1]
            if start is None:
                self.counts.problem(self._where, f"REPORT line of {record['request_id']} "
                                                 f"without a time (no timestamp in the input)")
                return
            record["start_ms"] = start
        if record["request_id"] not in self._agents:
            self.counts.platform_alone += 1
        self._platform.append(record)
        if len(self._platform) >= self._batch:
            self._flush_platform()

    def _release_unnamed(self, stream: _Stream) -> None:
        held, stream.unnamed = stream.unnamed, []
        for record in held:
            record["function"] = self._agent_function(record["request_id"]) or stream.function
            self._keep_platform(record)

    # -- logs --------------------------------------------------------------------------------
    def _request(self, rid: str, stream: _Stream) -> _Request:
        request = self._requests.get(rid)
        if request is None:
            request = self._requests[rid] = _Request(stream.key)
            if len(self._requests) > MAX_PENDING:
                self._finish_request(next(iter(self._requests)))
        return request

    def _log(self, rid: str | None, stream: _Stream, ts_ms: float | None, level: str | None,
             logger: str | None, message: str) -> None:
        if rid is None:
            if len(stream.in_flight) != 1:
                self.counts.unattributed += 1
                if ts_ms is not None:
                    stream.last_ts = ts_ms
                return
            rid = stream.in_flight[0]
        if ts_ms is None:
            ts_ms = stream.last_ts
        else:
            stream.last_ts = ts_ms
        request = self._request(rid, stream)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        request.logs.append({
            "ts_ms": ts_ms, "level": level, "logger": logger,
            "message": message.replace("\r", "\n"),
        })
        self._pending_lines += 1
        if self._pending_lines > MAX_PENDING_LINES:
            while self._requests and self._pending_lines > MAX_PENDING_LINES // 2:
                self._finish_request(next(iter(self._requests)))

    def _finish_request(self, rid: str, closing: bool = False) -> None:
        request = self._requests.pop(rid, None)
        if request is None or not request.logs:
            return
        self._pending_lines -= len(request.logs)
        self._write_logs(rid, request, closing)

    def _write_logs(self, rid: str, request: _Request, closing: bool) -> None:
        lines = request.logs
        if request.report_messages:
            seen = request.report_messages
            lines = [line for line in lines
                     if line["message"] not in seen
                     and line["message"].split("\n", 1)[0] not in seen]
            request.logs = lines
        if not lines:
            return
        function = request.function or self._agent_function(rid)
        if function is None:
            stream = self._streams.get(request.stream)
            if stream is not None:
                function = stream.function or stream.group_function
        if function is None:
            if not closing:
                self._deferred.append((rid, request))  # named at the end, or --function
                return
            function = self.default_function
        if function is None:
            self.counts.unattributed += len(lines)
            return
        fallback = request.start_ms
        for line in lines:
            if line["ts_ms"] is None:
                line["ts_ms"] = fallback if fallback is not None else 0.0
        self._submit_logs(rid, lines, function)

    # -- writing -----------------------------------------------------------------------------
    # Every write goes through a small pool: the store's calls wait for the writer's
    # transaction, and parsing carries on meanwhile (several calls in flight share commits).
    # Results are counted back in this thread, in order, by _drain.

    def _submit(self, kind: str, call: Callable[[], Any], n: int) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="lambdascope-ingest")
        self._jobs.append((kind, n, self._pool.submit(call)))
        self._drain(WRITERS * 4)

    def _drain(self, keep: int = 0) -> None:
        while len(self._jobs) > keep:
            kind, n, job = self._jobs.popleft()
            result = job.result()
            if kind == "logs":
                self.counts.logs += n if result is None else int(result)
                continue
            results, problems = result
            for where, what in problems:
                self.counts.problem(where, what)
            for r in results:
                if kind == "reports":
                    self.counts.stored += int(getattr(r, "stored", 0))
                    self.counts.duplicates += int(getattr(r, "duplicates", 0))
                    self.counts.replaced += int(getattr(r, "replaced", 0))
                else:
                    self.counts.platform += int(getattr(r, "stored", 0))
                    self.counts.platform_duplicates += int(getattr(r, "duplicates", 0))

    def _submit_logs(self, rid: str, lines: list[dict[str, Any]], function: str) -> None:
        add_logs = self.store.add_logs
        self._submit("logs", lambda: add_logs(rid, lines, function=function), len(lines))

    def _flush_reports(self) -> None:
        if not self._reports:
            return
        batch, self._reports = self._reports, []
        where = self._where

        def add() -> tuple[list[Any], list[tuple[str, str]]]:
            try:
                return [self.store.add(batch)], []
            except ValueError:
                # A report the store cannot take (the schema let it through): the rest alone.
                results, problems = [], []
                for report in batch:
                    try:
                        results.append(self.store.add([report]))
                    except ValueError as exc:
                        rid = report.get("invocation", {}).get("request_id")
                        problems.append((where, f"report {rid} not stored: {exc}"))
                return results, problems

        self._submit("reports", add, len(batch))

    def _flush_platform(self) -> None:
        if not self._platform:
            return
        batch, self._platform = self._platform, []
        where = self._where

        def add() -> tuple[list[Any], list[tuple[str, str]]]:
            try:
                return [self.store.add_platform(batch)], []
            except ValueError:
                results, problems = [], []
                for record in batch:
                    try:
                        results.append(self.store.add_platform([record]))
                    except ValueError as exc:
                        problems.append(
                            (where, f"REPORT line of {record['request_id']} not stored: {exc}"))
                return results, problems

        self._submit("platform", add, len(batch))

    def close(self) -> Counts:
        """Write everything still held; the counts of the whole ingestion."""
        for stream in self._streams.values():
            if stream.unnamed:
                if self.default_function is not None:
                    stream.function = stream.function or self.default_function
                    self._release_unnamed(stream)
                else:
                    self.counts.no_function += len(stream.unnamed)
                    stream.unnamed = []
        self._flush_reports()
        self._flush_platform()
        while self._requests:
            self._finish_request(next(iter(self._requests)), closing=True)
        deferred, self._deferred = self._deferred, []
        for rid, request in deferred:
            self._write_logs(rid, request, closing=True)
        self._flush_reports()
        self._flush_platform()
        try:
            self._drain()
        finally:
            self.shutdown()
        return self.counts

    def shutdown(self) -> None:
        """Stop the writing threads (after :meth:`close`, or when giving up half way)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- progress ----------------------------------------------------------------------------
    def _here(self) -> str:
        return f"{self._where}:{self._line_no}" if self._line_no else self._where

    def _tick(self, force: bool = False) -> None:
        if self._progress is None:
            return
        if not force and (self.counts.lines & 0x3FF):
            return
        now = time.monotonic()
        if not force and now < self._next_progress:
            return
        self._next_progress = now + 0.2
        try:
            done = self._done_bytes()
        except (OSError, ValueError):
            done = 0
        self._progress(self.counts, done, self._total)


def _report_messages(report: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    for record in report.get("logs") or ():
        message = record.get("message") if isinstance(record, dict) else None
        if isinstance(message, str) and message:
            seen.add(message)
            seen.add(message.split("\n", 1)[0])
    return seen


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _chain(first: Iterable[str], rest: Iterable[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _split_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines split on ``\\n`` only (a ``\\r`` inside a message is the runtime's line break)."""
    tail = ""
    for chunk in chunks:
        if tail:
            chunk = tail + chunk
        lines = chunk.split("\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


class _JsonEvents:
    """Streams the events out of JSON documents (filter-log-events, get-log-events,
    subscription payloads, bare arrays), one document after another, never holding more than
    one event and a chunk in memory."""

    def __init__(self, ingester: Ingester, chunks: Iterable[str]) -> None:
        self.ing = ingester
        self.chunks = iter(chunks)
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.decoder = json.JSONDecoder()
        self.index = 0

    def _more(self) -> bool:
        if self.eof:
            return False
        for chunk in self.chunks:
            if self.pos > CHUNK:
                self.buf = self.buf[self.pos:]
                self.pos = 0
            self.buf += chunk
            return True
        self.eof = True
        return False

    def _skip_ws(self) -> str | None:
        """The next significant character (not consumed), None at the end of input."""
        while True:
            buf, pos, n = self.buf, self.pos, len(self.buf)
            while pos < n and buf[pos] in " \t\r\n,":
                pos += 1
            self.pos = pos
            if pos < n:
                return buf[pos]
            if not self._more():
                return None

    def _value(self) -> Any:
        """Decode one JSON value at the current position, reading more input as needed."""
        start_len = len(self.buf) - self.pos
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except ValueError as exc:
                if len(self.buf) - self.pos - start_len > MAX_JSON_VALUE or not self._more():
                    raise _Corrupt(exc) from None
                continue
            if (end == len(self.buf) and not self.eof and isinstance(value, (int, float))
                    and self._more()):
                continue  # a number cut at the chunk's end: decode again with what follows
            self.pos = end
            return value

    def _expect(self, char: str) -> None:
        if self._skip_ws() != char:
            found = self._skip_ws()
            raise _Corrupt(ValueError(f"expected {char!r}, found {found!r}"))
        self.pos += 1

    def run(self) -> None:
        try:
            while True:
                char = self._skip_ws()
                if char is None:
                    return
                if char == "[":
                    self.pos += 1
                    self._array(None, None)
                elif char == "{":
                    self.pos += 1
                    self._document()
                else:
                    raise _Corrupt(ValueError(f"unexpected {char!r}"))
        except _Corrupt as exc:
            self.ing.counts.lines += 1
            self.ing.counts.problem(
                f"{self.ing._where} (after event {self.index})",
                f"not valid JSON: {exc.args[0]}; the rest of this input was skipped",
            )

    def _document(self) -> None:
        """The members of a top-level object, the event arrays streamed element by element."""
        group = stream = None
        while True:
            char = self._skip_ws()
            if char == "}":
                self.pos += 1
                return
            if char != '"':
                raise _Corrupt(ValueError(f"expected a member name, found {char!r}"))
            key = self._value()
            self._expect(":")
            char = self._skip_ws()
            if key in ("events", "logEvents") and char == "[":
                self.pos += 1
                self._array(group, stream)
                continue
            value = self._value()
            if key == "logGroup" and isinstance(value, str):
                group = value
            elif key == "logStream" and isinstance(value, str):
                stream = value
            elif key == "message" and isinstance(value, str):
                # A single event object at the top level.
                self.ing.counts.lines += 1
                self.ing.event(None, stream, value, group)

    def _array(self, group: str | None, stream: str | None) -> None:
        while True:
            char = self._skip_ws()
            if char == "]":
                self.pos += 1
                return
            if char is None:
                raise _Corrupt(ValueError("the input ends inside an array"))
            item = self._value()
            self.index += 1
            self._item(item, group, stream)

    def _item(self, item: Any, group: str | None, stream: str | None) -> None:
        ing = self.ing
        ing._line_no = self.index
        if not isinstance(item, dict):
            ing.counts.lines += 1
            ing.counts.problem(f"{ing._where} (event {self.index})", "not a log event")
            return
        message = item.get("message")
        if isinstance(message, str):
            ing.counts.lines += 1
            ing.event(
                _number(item.get("timestamp")),
                _str(item.get("logStreamName")) or _str(item.get("logStream")) or stream,
                message,
                _str(item.get("logGroupName")) or _str(item.get("logGroupIdentifier")) or group,
            )
        elif isinstance(item.get("logEvents"), list):
            sub_group = _str(item.get("logGroup")) or group
            sub_stream = _str(item.get("logStream")) or stream
            for event in item["logEvents"]:
                self._item(event, sub_group, sub_stream)
        elif item.get("schema") == "lambdascope/1":
            ing.counts.lines += 1
            ing.report(item)
        else:
            ing.counts.lines += 1
            ing.counts.problem(f"{ing._where} (event {self.index})", "not a log event")


class _Corrupt(Exception):
    pass


def ingest_paths(
    store: Any,
    paths: list[str],
    function: str | None = None,
    progress: Callable[[Counts, int, int | None], None] | None = None,
) -> Counts:
    """Ingest files into ``store``; the counts. ``OSError`` for a file that cannot be read."""
    ingester = Ingester(store, function, progress=progress)
    for path in paths:
        ingester.read_path(path)
    return ingester.close()

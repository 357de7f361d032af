"""Reports of invocations whose process died (out of memory, a native crash, ``os._exit``, a kill
at the deadline before the timeout report got out).

While an invocation runs, a tiny breadcrumb of it sits under ``LAMBDASCOPE_SPOOL_DIR/inflight``:
one 1 KB file per process, mapped into memory (``MAP_SHARED``), so writing it is a memory copy
with no system call, and what was written survives the process (the page belongs to the file).
Where the file cannot be mapped, ``pwrite`` stands in.

The first half is the invocation in flight, in a fixed binary layout written at its start (request
id, start, time left, RSS and memory size, the runtime's X-Ray header); its first four bytes are
the in-flight mark, set last at the start and cleared first at the end. The second half is a text
line naming the span last opened (trace and span ids, name, start), kept up to date by the
instrumentation. When a new process of the sandbox sets up, it looks at the breadcrumbs of
processes that are gone: a marked one is an invocation that never ended, and the new process
reports it with ``status: "crashed"`` and the likely cause. An invocation whose timeout report
was sent is marked as such (the kill at the deadline that follows is no news): it is not
reported again.
"""

from __future__ import annotations

import json
import os
import struct
import time

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any
_SIZE = 1024  # the breadcrumb file; mapped once, written in place
_HALF = 512  # the invocation record, then the line of the span last opened
_MARK = b"LSB1"  # an invocation is in flight
_REPORTED = b"LSBT"  # still in flight, but its timeout report went out: nothing more to say
_CLEAR = b"\0\0\0\0"
# start (µs since the epoch), time left at the start (ms, -1 unknown), RSS at the start (kB, -1
# unknown), memory size (MB, 0 unknown), request id length, X-Ray header length
_FIXED = struct.Struct("<qqqqHH")
_RID_AT = 4 + _FIXED.size
_RID_MAX = 128
_XRAY_AT = _RID_AT + _RID_MAX
_XRAY_MAX = _HALF - _XRAY_AT


def _xray_bytes() -> bytes:
    """``_X_AMZN_TRACE_ID`` (set by the runtime client for each invocation) as bytes."""
    try:
        value = _ENV_DATA.get(_XRAY_KEY)  # the encoded store behind os.environ: no decoding
        if isinstance(value, bytes):
            return value
    except Exception:
        pass
    return (os.environ.get("_X_AMZN_TRACE_ID") or "").encode("utf-8", "replace")


_ENV_DATA: Any = getattr(os.environ, "_data", {})
try:
    _XRAY_KEY: Any = os.environ.encodekey("_X_AMZN_TRACE_ID")  # type: ignore[attr-defined]
except Exception:  # pragma: no cover - not a POSIX environ
    _XRAY_KEY = None


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        return raw[raw.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def parse(raw: bytes) -> dict[str, Any] | None:
    """The invocation a breadcrumb file holds, or ``None`` when none was in flight (or its
    timeout report already went out)."""
    if len(raw) < _HALF or raw[:4] != _MARK:
        return None
    start_us, left_ms, rss_kb, limit_mb, rid_len, xray_len = _FIXED.unpack_from(raw, 4)
    request_id = raw[_RID_AT : _RID_AT + min(rid_len, _RID_MAX)].decode("utf-8", "replace")
    if not request_id:
        return None
    crumb: dict[str, Any] = {
        "request_id": request_id,
        "start_ms": start_us / 1000.0,
        "timeout_ms": left_ms if left_ms >= 0 else None,
        "rss_mb": round(rss_kb / 1024.0, 2) if rss_kb >= 0 else None,
        "limit_mb": limit_mb or None,
        "xray": raw[_XRAY_AT : _XRAY_AT + min(xray_len, _XRAY_MAX)].decode("ascii", "replace"),
    }
    line = raw[_HALF:_SIZE].split(b"\n", 1)[0].strip(b" \0")
    if line:
        try:
            span = json.loads(line)
        except ValueError:
            span = None
        if isinstance(span, dict):
            crumb["span"] = span
    return crumb


class Breadcrumbs:
    """One process's breadcrumb (see the module's documentation)."""

    def __init__(self, spool_dir: str) -> None:
        self.directory = os.path.join(spool_dir, "inflight")
        from ._spool import private_dirs

        private_dirs(self.directory)
        self.pid = os.getpid()
        self.ticks = _start_ticks(self.pid) or "0"
        self.path = os.path.join(self.directory, f"{self.pid}-{self.ticks}.crumb")
        self._fd = os.open(
            self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        os.ftruncate(self._fd, _SIZE)
        self._blank = b" " * (_HALF - 1) + b"\n"
        self._map: Any = None
        try:
            import mmap

            self._map = mmap.mmap(self._fd, _SIZE)
        except (ImportError, OSError, ValueError):
            self._map = None
        self._write(0, _CLEAR)
        self._write(_HALF, self._blank)
        self._span_id: str | None = None

    def _write(self, at: int, data: bytes) -> None:
        if self._map is not None:
            self._map[at : at + len(data)] = data
        else:
            os.pwrite(self._fd, data, at)

    def enter(self, inv: Any, rss_kb: int | None, memory_limit_mb: float | None) -> None:
        rid = inv.request_id.encode("utf-8", "replace")[:_RID_MAX]
        xray = _xray_bytes()[:_XRAY_MAX]  # the trace Lambda gave the invocation
        left = inv.timeout_ms
        fixed = _FIXED.pack(
            int(inv.start_wall * 1e6),
            -1 if left is None else int(left),
            -1 if rss_kb is None else rss_kb,
            int(memory_limit_mb or 0),
            len(rid),
            len(xray),
        )
        m = self._map
        if m is not None:
            m[4:_RID_AT] = fixed
            m[_RID_AT : _RID_AT + len(rid)] = rid
            m[_XRAY_AT : _XRAY_AT + len(xray)] = xray
            m[0:4] = _MARK  # last: the record is whole before it counts
        else:
            record = (_MARK + fixed + rid.ljust(_RID_MAX, b"\0") + xray).ljust(_HALF, b"\0")
            os.pwrite(self._fd, record, 0)
        if self._span_id is not None:
            self._span_id = None
            self._write(_HALF, self._blank)

    def span_started(self, inv: Any, record: Any) -> None:
        """A span of the invocation opened: the crash report can name the call in flight."""
        self._span_id = record.span_id
        line = (
            '{"trace_id":"%s","root_span_id":"%s","span_id":"%s","name":%s,"start_ms":%.3f}'
            % (
                inv.trace_id,
                inv.root_span_id,
                record.span_id,
                json.dumps(record.name[:200]),
                record.start_ms,
            )
        ).encode()
        if len(line) < _HALF:  # (always, with the name cut at 200 characters)
            self._write(_HALF, line.ljust(_HALF - 1) + b"\n")

    def span_ended(self, inv: Any, record: Any) -> None:
        if self._span_id == record.span_id:
            parent = inv.open_spans.get(record.parent_span_id)
            if parent is not None:  # the span it was opened under is still in flight
                self.span_started(inv, parent)
            else:
                self._span_id = None
                self._write(_HALF, self._blank)

    def timeout_reported(self) -> None:
        """The invocation in flight has had its timeout report delivered (or spooled): if the
        process is now killed at the deadline, the next one must not report it again as
        crashed."""
        self._write(0, _REPORTED)

    def leave(self) -> None:
        self._write(0, _CLEAR)
        if self._span_id is not None:
            self._span_id = None
            self._write(_HALF, self._blank)

    def orphans(self) -> list[dict[str, Any]]:
        """Breadcrumbs of processes that are gone with an invocation in flight (removed)."""
        found: list[dict[str, Any]] = []
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if path == self.path or not name.endswith(".crumb"):
                continue
            pid_text, _, ticks = name[: -len(".crumb")].partition("-")
            try:
                pid = int(pid_text)
            except ValueError:
                continue
            if _start_ticks(pid) == ticks:
                continue  # that process is alive (Managed Instances: a sibling)
            claimed = f"{path}.{self.pid}.claimed"
            try:
                os.rename(path, claimed)  # atomic: of several new processes, one reports it
            except FileNotFoundError:
                continue  # another new process took it
            try:
                with open(claimed, "rb") as fh:
                    raw = fh.read()
            finally:
                os.unlink(claimed)
            crumb = parse(raw)
            if crumb is not None:
                found.append(crumb)
        return found


def crashed_report(crumb: dict[str, Any], pipeline: Any) -> dict[str, Any]:
    """The report of an invocation whose process died, from its breadcrumb."""
    from . import __version__
    from ._report import SCHEMA, python_version

    now_ms = time.time() * 1000.0
    start = float(crumb.get("start_ms") or now_ms)
    timeout = crumb.get("timeout_ms")
    rss = crumb.get("rss_mb")
    limit = crumb.get("limit_mb") or pipeline.memory_limit_mb
    if rss is not None and limit and rss >= 0.8 * limit:
        cause = (f"probable out-of-memory: {rss:.0f} MB of {limit} MB in use when the "
                 "invocation started")
    elif timeout is not None and now_ms - start >= float(timeout):
        cause = "the process was stopped at the invocation's deadline"
    else:
        cause = "the process ended during the invocation (a native crash, os._exit or a kill)"
    span = crumb.get("span") if isinstance(crumb.get("span"), dict) else {}
    if span.get("name"):
        at = span.get("start_ms")
        after = f" ({float(at) - start:.0f} ms after the start)" if at is not None else ""
        cause += f"; in flight: {str(span['name'])[:200]}{after}"
    from ._propagation import parse_xray

    trace_id = span.get("trace_id")
    parent_span_id = None
    ctx = parse_xray(crumb.get("xray"))  # the trace the runtime gave the invocation
    if ctx is not None and trace_id in (None, ctx.trace_id):
        trace_id, parent_span_id = ctx.trace_id, ctx.span_id
    if not trace_id:
        from ._ids import new_trace_id

        trace_id = new_trace_id()
    function = dict(pipeline.function)
    function["memory_limit_mb"] = limit or function.get("memory_limit_mb")
    resources = {key: None for key in (
        "rss_start_mb", "rss_end_mb", "rss_peak_mb", "memory_used_pct", "cpu_user_ms",
        "cpu_system_ms", "net_rx_bytes", "net_tx_bytes", "tmp_used_mb", "open_fds", "threads",
        "sandbox_memory_mb",
    )}
    resources["rss_start_mb"] = rss
    resources["rss_growth_mb"] = 0.0
    resources["leak_suspected"] = False

    # The invocation span, so tracing back ends (OTLP) show the crash in its trace: from the
    # start to the last moment known alive (the deadline when it was stopped there, else the
    # start of the span in flight), marked as an error; the span in flight under it.
    from ._ids import new_span_id

    root_id = span.get("root_span_id") or new_span_id()
    span_start = span.get("start_ms")
    if "deadline" in cause and timeout is not None:
        known_ms = float(timeout)
    elif span_start is not None:
        known_ms = max(0.0, float(span_start) - start)
    else:
        known_ms = 0.0
    spans: list[dict[str, Any]] = [{
        "span_id": root_id, "parent_span_id": parent_span_id,
        "name": function.get("name") or "invocation", "kind": "server",
        "start_ms": round(start, 3), "duration_ms": round(known_ms, 3), "status": "error",
        "attributes": {
            "faas.invocation_id": crumb["request_id"], "lambdascope.crashed": True,
            "lambdascope.duration": "at least",
        },
    }]
    if span.get("span_id") and span.get("name") and span_start is not None:
        spans.append({
            "span_id": span["span_id"], "parent_span_id": root_id, "name": str(span["name"]),
            "kind": "client", "start_ms": round(float(span_start), 3), "duration_ms": 0.0,
            "status": "error",
            "attributes": {"lambdascope.in_flight": True, "lambdascope.crashed": True},
        })
    return {
        "schema": SCHEMA,
        "agent": {"name": "lambdascope", "version": __version__, "python": python_version(),
                  "overhead": {"init_ms": None, "invocation_ms": None}},
        "function": function,
        "invocation": {
            "request_id": crumb["request_id"],
            "start_ms": round(start, 3),
            "end_ms": None,
            "duration_ms": None,
            "timeout_ms": timeout,
            "cold_start": False,
            "init_duration_ms": None,
            "init_type": pipeline.init_type,
            "proactive_init": False,
            "since_restore_ms": None,
            "status": "crashed",
            "sampled": True,
            "trigger": {"type": "direct", "source": None},
            "batch": None,
            "tenant_id": None,
        },
        "error": {"type": "Crashed", "message": cause, "stack": []},
        "resources": resources,
        "metrics": [],
        "labels": [],
        "trace": {"trace_id": trace_id, "span_id": root_id, "parent_span_id": parent_span_id},
        "spans": spans,
        "dropped_spans": 0,
        "logs": [],
    }

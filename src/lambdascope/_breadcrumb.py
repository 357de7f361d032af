"""Reports of invocations whose process died (out of memory, a native crash, ``os._exit``, a kill
at the deadline before the timeout report got out).

While an invocation runs, a tiny breadcrumb of it sits under ``LAMBDASCOPE_SPOOL_DIR/inflight``:
one file per process, rewritten in place with a single ``pwrite`` at the start of each invocation
(request id, start, deadline, memory at the start) and emptied at its end — a few microseconds.
When a new process of the sandbox sets up, it looks at the breadcrumbs of processes that are gone:
a non-empty one is an invocation that never ended, and the new process reports it with
``status: "crashed"`` and the likely cause.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_SIZE = 1024  # the breadcrumb file; mapped once, written in place
_LINE = 512  # the invocation's line, then the line of the span last opened
_PLAIN = frozenset("0123456789abcdefABCDEF-_.:")


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


class Breadcrumbs:
    """One process's breadcrumb: a small file mapped into memory (``MAP_SHARED``), so writing
    it is a memory copy with no system call, and what was written survives the process: the
    page belongs to the file. Where the file cannot be mapped, ``pwrite`` stands in."""

    def __init__(self, spool_dir: str) -> None:
        self.directory = os.path.join(spool_dir, "inflight")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.pid = os.getpid()
        self.ticks = _start_ticks(self.pid) or "0"
        self.path = os.path.join(self.directory, f"{self.pid}-{self.ticks}.json")
        self._fd = os.open(
            self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        os.ftruncate(self._fd, _SIZE)
        self._blank = b" " * _LINE
        self._map: Any = None
        try:
            import mmap

            self._map = mmap.mmap(self._fd, _SIZE)
        except (ImportError, OSError, ValueError):
            self._map = None
        self._put(0, self._blank)
        self._put(_LINE, self._blank)
        self._span_id: str | None = None

    def _put(self, at: int, data: bytes) -> None:
        if len(data) < _LINE:
            data = data.ljust(_LINE - 1) + b"\n"
        elif len(data) > _LINE:
            return  # never a torn line; the earlier one stands
        if self._map is not None:
            self._map[at : at + _LINE] = data
        else:
            os.pwrite(self._fd, data, at)

    def enter(self, inv: Any, rss_kb: int | None, memory_limit_mb: float | None) -> None:
        rid = inv.request_id
        if rid.isascii() and rid.isprintable() and '"' not in rid and "\\" not in rid:
            raw_id = rid.encode()
        else:  # request ids are UUIDs; anything else is escaped
            raw_id = json.dumps(rid).encode()[1:-1]
        # The trace Lambda gave the invocation, read from the environment's own bytes.
        xray = _xray_bytes()
        if len(xray) > 200 or b'"' in xray or b"\\" in xray:
            xray = b""
        self._put(
            0,
            b"".join(
                (
                    b'{"request_id":"',
                    raw_id,
                    b'","start_us":',
                    b"%d" % (inv.start_wall * 1e6),
                    b',"timeout_ms":',
                    b"null" if inv.timeout_ms is None else b"%d" % inv.timeout_ms,
                    b',"rss_kb":',
                    b"null" if rss_kb is None else b"%d" % rss_kb,
                    b',"limit_mb":',
                    b"null" if not memory_limit_mb else b"%d" % memory_limit_mb,
                    b',"xray":"',
                    xray,
                    b'"}',
                )
            ),
        )
        if self._span_id is not None:
            self._span_id = None
            self._put(_LINE, self._blank)

    def span_started(self, inv: Any, record: Any) -> None:
        """A span of the invocation opened: the crash report can name the call in flight."""
        self._span_id = record.span_id
        self._put(
            _LINE,
            (
                '{"trace_id":"%s","root_span_id":"%s","span_id":"%s","name":%s,"start_ms":%.3f}'
                % (
                    inv.trace_id,
                    inv.root_span_id,
                    record.span_id,
                    json.dumps(record.name[:200]),
                    record.start_ms,
                )
            ).encode(),
        )

    def span_ended(self, inv: Any, record: Any) -> None:
        if self._span_id == record.span_id:
            parent = inv.open_spans.get(record.parent_span_id)
            if parent is not None:  # the span it was opened under is still in flight
                self.span_started(inv, parent)
            else:
                self._span_id = None
                self._put(_LINE, self._blank)

    def leave(self) -> None:
        self._put(0, self._blank)
        if self._span_id is not None:
            self._span_id = None
            self._put(_LINE, self._blank)

    def orphans(self) -> list[dict[str, Any]]:
        """Breadcrumbs of processes that are gone with an invocation in flight (removed)."""
        found: list[dict[str, Any]] = []
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if path == self.path or not name.endswith(".json"):
                continue
            pid_text, _, ticks = name[: -len(".json")].partition("-")
            try:
                pid = int(pid_text)
            except ValueError:
                continue
            if _start_ticks(pid) == ticks:
                continue  # that process is alive (Managed Instances: a sibling)
            try:
                with open(path, "rb") as fh:
                    raw = fh.read()
                os.unlink(path)
            except FileNotFoundError:
                continue  # another new process took it
            lines = [line.strip(b" \0") for line in raw.split(b"\n")]
            if not lines or not lines[0]:
                continue
            try:
                crumb = json.loads(lines[0])
            except ValueError:
                continue
            if not isinstance(crumb, dict) or not crumb.get("request_id"):
                continue
            if len(lines) > 1 and lines[1]:
                try:
                    span = json.loads(lines[1])
                except ValueError:
                    span = None
                if isinstance(span, dict):
                    crumb["span"] = span
            found.append(crumb)
        return found


def crashed_report(crumb: dict[str, Any], pipeline: Any) -> dict[str, Any]:
    """The report of an invocation whose process died, from its breadcrumb."""
    from . import __version__
    from ._report import SCHEMA, python_version

    now_ms = time.time() * 1000.0
    start = float(crumb["start_us"]) / 1000.0 if crumb.get("start_us") else now_ms
    timeout = crumb.get("timeout_ms")
    rss_kb = crumb.get("rss_kb")
    rss = round(float(rss_kb) / 1024.0, 2) if rss_kb is not None else None
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
    trace_id = span.get("trace_id")
    if not trace_id:  # no span was opened: the trace the runtime gave the invocation
        from ._propagation import parse_xray

        ctx = parse_xray(crumb.get("xray"))
        if ctx is not None:
            trace_id = ctx.trace_id
        else:
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
            "sampled": False,
            "trigger": {"type": "direct", "source": None},
            "batch": None,
            "tenant_id": None,
        },
        "error": {"type": "Crashed", "message": cause, "stack": []},
        "resources": resources,
        "metrics": [],
        "labels": [],
        "trace": {"trace_id": trace_id, "span_id": span.get("root_span_id"),
                  "parent_span_id": None},
        "spans": [],
        "dropped_spans": 0,
        "logs": [],
    }

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

_PAD = 512  # a breadcrumb is written over the same bytes each time


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        return raw[raw.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None


class Breadcrumbs:
    def __init__(self, spool_dir: str) -> None:
        self.directory = os.path.join(spool_dir, "inflight")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.pid = os.getpid()
        self.ticks = _start_ticks(self.pid) or "0"
        self.path = os.path.join(self.directory, f"{self.pid}-{self.ticks}.json")
        self._fd = os.open(
            self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        self._blank = b" " * _PAD

    def enter(self, inv: Any, rss_mb: float | None, memory_limit_mb: float | None) -> None:
        data = (
            '{"request_id":%s,"start_ms":%.3f,"timeout_ms":%s,"rss_mb":%s,"limit_mb":%s,'
            '"trace_id":"%s","span_id":%s}'
            % (
                json.dumps(inv.request_id),
                inv.start_wall * 1000.0,
                "null" if inv.timeout_ms is None else "%.0f" % inv.timeout_ms,
                "null" if rss_mb is None else "%.2f" % rss_mb,
                "null" if not memory_limit_mb else "%d" % memory_limit_mb,
                inv.trace_id,
                json.dumps(inv.root_span_id),
            )
        ).encode()
        os.pwrite(self._fd, data.ljust(_PAD) if len(data) < _PAD else data, 0)

    def leave(self) -> None:
        os.pwrite(self._fd, self._blank, 0)

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
                    raw = fh.read().strip()
                os.unlink(path)
            except FileNotFoundError:
                continue  # another new process took it
            if not raw:
                continue
            try:
                crumb = json.loads(raw)
            except ValueError:
                continue
            if isinstance(crumb, dict) and crumb.get("request_id"):
                found.append(crumb)
        return found


def crashed_report(crumb: dict[str, Any], pipeline: Any) -> dict[str, Any]:
    """The report of an invocation whose process died, from its breadcrumb."""
    from . import __version__
    from ._report import SCHEMA, python_version

    now_ms = time.time() * 1000.0
    start = float(crumb.get("start_ms") or now_ms)
    timeout = crumb.get("timeout_ms")
    rss, limit = crumb.get("rss_mb"), crumb.get("limit_mb") or pipeline.memory_limit_mb
    if rss is not None and limit and rss >= 0.8 * limit:
        cause = (f"probable out-of-memory: {rss:.0f} MB of {limit} MB in use when the "
                 "invocation started")
    elif timeout is not None and now_ms - start >= float(timeout):
        cause = "the process was stopped at the invocation's deadline"
    else:
        cause = "the process ended during the invocation (a native crash, os._exit or a kill)"
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
        "trace": {"trace_id": crumb.get("trace_id"), "span_id": crumb.get("span_id"),
                  "parent_span_id": None},
        "spans": [],
        "dropped_spans": 0,
        "logs": [],
    }

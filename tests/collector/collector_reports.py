"""Schema-valid reports with chosen figures, for the store and query tests.

The figures a test asserts on are set here; everything else is what the agent would send.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

_ids = itertools.count(1)

#: A fixed "now" for the tests: 2026-01-05 10:00:00 UTC, on an hour boundary.
T0 = 1_767_607_200_000.0
MINUTE = 60_000.0
HOUR = 3_600_000.0


def span_id() -> str:
    return f"{next(_ids):016x}"


def aws_span(operation: str = "S3.GetObject", duration_ms: float = 5.0, status: str = "ok",
             **attributes: Any) -> dict[str, Any]:
    service, method = operation.split(".", 1)
    attrs = {"rpc.system": "aws-api", "rpc.service": service, "rpc.method": method,
             "cloud.region": "us-east-1"}
    attrs.update(attributes)
    return {"name": operation, "kind": "client", "duration_ms": duration_ms, "status": status,
            "attributes": attrs}


def http_span(method: str = "GET", host: str = "api.example.com", duration_ms: float = 5.0,
              status: str = "ok", port: int = 443) -> dict[str, Any]:
    return {"name": method, "kind": "client", "duration_ms": duration_ms, "status": status,
            "attributes": {"http.request.method": method, "server.address": host,
                           "server.port": port, "url.full": f"https://{host}/v1/x",
                           "http.response.status_code": 500 if status == "error" else 200}}


def make_report(
    *,
    request_id: str | None = None,
    function: str | None = "orders",
    version: str | None = "1",
    start_ms: float = T0,
    duration_ms: float | None = 10.0,
    status: str = "ok",
    cold: bool = False,
    proactive: bool = False,
    init_ms: float | None = None,
    init_type: str = "on-demand",
    memory_mb: int | None = 512,
    architecture: str = "x86_64",
    timeout_ms: float | None = 2975.0,
    rss_peak_mb: float | None = 100.0,
    rss_end_mb: float | None = None,
    sandbox_mb: float | None = None,
    leak: bool = False,
    agent_ms: float | None = 0.25,
    error: dict[str, Any] | None = None,
    spans: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
    logs: list[str] | tuple[str, ...] = (),
    labels: list[str] | tuple[str, ...] = (),
    trace_id: str | None = None,
    parent_span_id: str | None = None,
    trigger: str = "direct",
) -> dict[str, Any]:
    rid = request_id or str(uuid.uuid4())
    root = span_id()
    trace_id = trace_id or uuid.uuid4().hex
    if status in ("error", "timeout", "crashed") and error is None:
        error = {"type": {"error": "ValueError", "timeout": "Timeout",
                          "crashed": "Crashed"}[status],
                 "message": f"order {next(_ids)} not found",
                 "stack": [{"file": "/var/task/app.py", "line": 12, "function": "handler"}]}
    end = start_ms + duration_ms if duration_ms is not None else None
    all_spans = [{
        "span_id": root, "parent_span_id": parent_span_id, "name": "handler", "kind": "server",
        "start_ms": start_ms, "duration_ms": duration_ms or 0.0,
        "status": "error" if error else "ok",
        "attributes": {"faas.invocation_id": rid, "faas.coldstart": cold},
    }]
    offset = 0.1
    for extra in spans:
        all_spans.append({
            "span_id": span_id(), "parent_span_id": root, "start_ms": start_ms + offset,
            **extra,
        })
        offset += 0.1
    return {
        "schema": "lambdascope/1",
        "agent": {"name": "lambdascope", "version": "0.1.0", "python": "3.12.1",
                  "overhead": {"init_ms": 5.0 if cold else None, "invocation_ms": agent_ms}},
        "function": {
            "name": function, "version": version,
            "arn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
            "region": "us-east-1", "architecture": architecture, "memory_limit_mb": memory_mb,
            "log_group": f"/aws/lambda/{function}",
            "log_stream": f"2026/01/05/[{version}]0123456789abcdef", "service": function,
        },
        "invocation": {
            "request_id": rid, "start_ms": start_ms, "end_ms": end, "duration_ms": duration_ms,
            "timeout_ms": timeout_ms, "cold_start": cold,
            "init_duration_ms": init_ms if (cold or proactive or init_ms) else None,
            "init_type": init_type, "proactive_init": proactive, "since_restore_ms": None,
            "status": status, "sampled": True,
            "trigger": {"type": trigger, "source": None}, "batch": None, "tenant_id": None,
        },
        "error": error,
        "resources": {
            "rss_start_mb": 90.0, "rss_end_mb": rss_end_mb if rss_end_mb is not None
            else rss_peak_mb, "rss_peak_mb": rss_peak_mb,
            "memory_used_pct": None, "cpu_user_ms": 1.0, "cpu_system_ms": 0.1,
            "net_rx_bytes": 0, "net_tx_bytes": 0, "tmp_used_mb": 1.0, "open_fds": 10,
            "threads": 2, "rss_growth_mb": 0.0, "leak_suspected": leak,
            "sandbox_memory_mb": sandbox_mb,
        },
        "metrics": [],
        "labels": list(labels),
        "trace": {"trace_id": trace_id, "span_id": root, "parent_span_id": parent_span_id},
        "spans": all_spans,
        "dropped_spans": 0,
        "logs": [
            {"timestamp_ms": start_ms + 0.05 * (n + 1), "level": "INFO", "logger": "app",
             "message": message}
            for n, message in enumerate(logs)
        ],
    }


def _comparable(acc: Any) -> tuple[Any, ...]:
    def sketch(s: Any) -> tuple[Any, ...]:
        return (s.count, s.zero, tuple(sorted(s.positive.items())),
                tuple(sorted(s.negative.items())), round(s.sum, 6))

    return (
        acc.n, acc.errors, acc.timeouts, acc.crashed, acc.proactive, acc.leaks,
        sketch(acc.duration), sketch(acc.init), sketch(acc.memory), sketch(acc.agent),
        round(acc.rss_end_sum, 6), acc.rss_end_n, acc.sandbox_peak_max, acc.memory_mb,
        acc.timeout_ms_max, acc.architecture, round(acc.billed_gb_ms, 6),
    )


def assert_rollups_consistent(conn: Any) -> None:
    """Every rollup table equals a recomputation from the stored rows and spans."""
    from lambdascope.collector.sketch import Sketch
    from lambdascope.collector.store import (
        I_COLD_START,
        I_FUNCTION,
        I_START_MS,
        I_VERSION,
        ROW_COLUMNS,
        _InvocationRollup,
    )

    want: dict[tuple[Any, ...], Any] = {}
    for row in conn.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM invocations"):
        minute = int(row[I_START_MS] // 60_000)
        version = row[I_VERSION] or ""
        cold = 1 if row[I_COLD_START] else 0
        for key in (("rollup", row[I_FUNCTION], version, minute, cold),
                    ("rollup_hour", row[I_FUNCTION], version, minute // 60, cold)):
            want.setdefault(key, _InvocationRollup()).apply(row, 1)
    got = {}
    for table in ("rollup", "rollup_hour"):
        unit = "minute" if table == "rollup" else "hour"
        for row in conn.execute(
            f"SELECT function, version, {unit}, cold, n, errors, timeouts, crashed, proactive,"
            " leaks, duration, init, memory, agent, rss_end_sum, rss_end_n, sandbox_peak_max,"
            f" memory_mb, timeout_ms_max, architecture, billed_gb_ms FROM {table}"
        ):
            got[(table, *row[:4])] = _comparable(_InvocationRollup(row[4:]))
    assert got == {k: _comparable(v) for k, v in want.items()}

    deps_want: dict[tuple[Any, ...], list[Any]] = {}
    for function, version, start, dependency, duration, status in conn.execute(
        "SELECT i.function, COALESCE(i.version, ''), i.start_ms, s.dependency, s.duration_ms,"
        " s.status FROM spans s JOIN invocations i USING (request_id)"
        " WHERE s.dependency IS NOT NULL"
    ):
        minute = int(start // 60_000)
        for key in (("dependency_rollup", function, version, minute, dependency),
                    ("dependency_rollup_hour", function, version, minute // 60, dependency)):
            acc = deps_want.setdefault(key, [0, 0, 0.0, Sketch()])
            acc[0] += 1
            acc[1] += status == "error"
            acc[2] += duration
            acc[3].add(duration)
    deps_got = {}
    for table, unit in (("dependency_rollup", "minute"), ("dependency_rollup_hour", "hour")):
        for function, version, when, dependency, n, errors, total, blob in conn.execute(
            f"SELECT function, version, {unit}, dependency, n, errors, total_ms, duration"
            f" FROM {table}"
        ):
            sketch = Sketch.from_bytes(blob)
            deps_got[(table, function, version, when, dependency)] = (
                n, errors, round(total, 6), sketch.count, tuple(sorted(sketch.positive.items())))
    assert deps_got == {
        k: (n, e, round(t, 6), s.count, tuple(sorted(s.positive.items())))
        for k, (n, e, t, s) in deps_want.items()
    }

    groups_want: dict[str, tuple[int, float, float]] = {}
    for fp, count, first, last in conn.execute(
        "SELECT fingerprint, COUNT(*), MIN(start_ms), MAX(start_ms) FROM invocations"
        " WHERE fingerprint IS NOT NULL GROUP BY fingerprint"
    ):
        groups_want[fp] = (count, first, last)
    groups_got = {fp: (count, first, last) for fp, count, first, last in conn.execute(
        "SELECT fingerprint, count, first_ms, last_ms FROM error_groups")}
    assert groups_got == groups_want

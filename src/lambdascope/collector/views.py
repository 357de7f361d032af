"""The dashboard's questions that :mod:`~lambdascope.collector.queries` does not answer: time
series, sparklines, per-sandbox memory, the service map, a faster path for the newest log
lines across functions, and a function's newest cold-start diagnostics.

Like the queries, every function takes a read connection, never writes, and returns plain
JSON-ready dicts (durations ``_ms``, rates 0..1 ``_rate``, memory ``_mb``).

How exact the answers are: the series and the map are read from the rollups, the per-hour
tables for buckets of an hour or more and the per-minute ones below that, so a bucket holds
whole minutes (or whole hours): the first bucket may start before the window and the last end
after it. Counts are exact per bucket; percentiles are within 1 % (the sketches' accuracy).
The per-sandbox memory is read from the rows: all of them up to ``MAX_MEMORY_ROWS``, beyond
that an even sample over the window. The map's edges into a function (a queue, a topic, a
bucket that triggers it, the function that called it) come from a sample of its newest
invocations in the window: their counts are estimates, marked ``estimated``.
"""

from __future__ import annotations

import heapq
import json
import math
import sqlite3
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .sketch import Sketch

__all__ = [
    "bucket_width_ms",
    "function_names",
    "latest_diagnostics",
    "logs",
    "parse_dependency",
    "sandbox_memory",
    "seen",
    "service_map",
    "services",
    "timeseries",
    "trends",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Bucket widths a series may use, smallest first.
BUCKET_STEPS_MS = (
    MINUTE_MS, 2 * MINUTE_MS, 5 * MINUTE_MS, 10 * MINUTE_MS, 15 * MINUTE_MS, 30 * MINUTE_MS,
    HOUR_MS, 2 * HOUR_MS, 3 * HOUR_MS, 6 * HOUR_MS, 12 * HOUR_MS, DAY_MS, 2 * DAY_MS,
    7 * DAY_MS, 14 * DAY_MS, 28 * DAY_MS, 91 * DAY_MS, 364 * DAY_MS,
)
MAX_BUCKETS = 96
#: Rows read for the per-sandbox memory before sampling instead.
MAX_MEMORY_ROWS = 1500
MEMORY_SLICES = 75
#: Sandboxes drawn at most (those with the most points, and the fastest growing).
MAX_SANDBOXES = 12
#: Newest invocations read per function for the map's incoming edges.
MAP_SAMPLE = 24
#: Producer look-ups (trace parents and links) per function for the map.
MAP_TRACE_LOOKUPS = 12


# --------------------------------------------------------------------------------------------
# Windows and buckets


def bucket_width_ms(since_ms: float, until_ms: float, max_buckets: int = MAX_BUCKETS) -> int:
    """The smallest step of ``BUCKET_STEPS_MS`` that cuts the window in at most
    ``max_buckets`` buckets."""
    span = max(0.0, until_ms - since_ms)
    for step in BUCKET_STEPS_MS:
        if math.ceil(span / step) <= max_buckets:
            return step
    return BUCKET_STEPS_MS[-1]


def _first_seen(conn: sqlite3.Connection, function: str | None) -> float | None:
    if function is None:
        row = conn.execute("SELECT MIN(hour) FROM rollup_hour").fetchone()
    else:
        row = conn.execute("SELECT MIN(hour) FROM rollup_hour WHERE function = ?",
                           (function,)).fetchone()
    return None if row[0] is None else float(row[0]) * HOUR_MS


def _clamp_start(conn: sqlite3.Connection, function: str | None, since_ms: float,
                 until_ms: float) -> float:
    """A window that starts long before the first data (``since=0``) starts at the data."""
    first = _first_seen(conn, function)
    if first is not None and first > since_ms:
        return min(first, until_ms)
    return since_ms


def _units(since_ms: float, until_ms: float, width: int) -> tuple[str, str, int, int]:
    """The rollup table, its unit column and the unit range covering the window's buckets."""
    if width >= HOUR_MS:
        table, unit, size = "rollup_hour", "hour", HOUR_MS
    else:
        table, unit, size = "rollup", "minute", MINUTE_MS
    first_bucket = math.floor(since_ms / width)
    last_bucket = max(first_bucket, math.ceil(until_ms / width) - 1)
    return table, unit, first_bucket * width // size, (last_bucket + 1) * width // size


def seen(conn: sqlite3.Connection, function: str) -> bool:
    """Whether the store has ever had an invocation of ``function``."""
    return conn.execute("SELECT 1 FROM rollup_hour WHERE function = ? LIMIT 1",
                        (function,)).fetchone() is not None


def function_names(conn: sqlite3.Connection) -> list[str]:
    """Every function the store holds, by name."""
    return [r[0] for r in conn.execute("SELECT DISTINCT function FROM rollup_hour ORDER BY 1")]


# --------------------------------------------------------------------------------------------
# Time series


def _q(sketch: Sketch, qs: Sequence[float]) -> list[float | None]:
    return [None if v is None else round(v, 3) for v in sketch.quantiles(qs)]


def timeseries(conn: sqlite3.Connection, function: str, since_ms: float, until_ms: float,
               *, version: str | None = None, max_buckets: int = MAX_BUCKETS) -> dict[str, Any]:
    """A function's figures per time bucket: invocations, errors, cold starts, duration p50/p95
    cold and warm, init p50/p95, memory (the warm invocations' mean end-of-invocation RSS,
    the sandbox's peak, the configured size). Every bucket of the window is listed,
    empty ones with zero counts and ``None`` figures."""
    since_ms = _clamp_start(conn, function, since_ms, until_ms)
    width = bucket_width_ms(since_ms, until_ms, max_buckets)
    table, unit, u0, u1 = _units(since_ms, until_ms, width)
    size = HOUR_MS if unit == "hour" else MINUTE_MS
    per = width // size
    first_bucket = u0 // per
    n_buckets = max(1, (u1 - u0) // per)
    acc = [_Bucket() for _ in range(n_buckets)]
    sql = (f"SELECT {unit}, cold, n, errors, timeouts, crashed, proactive, duration, init,"
           f" rss_end_sum, rss_end_n, sandbox_peak_max, memory_mb FROM {table}"
           f" WHERE function = ? AND {unit} >= ? AND {unit} < ?")
    params: list[Any] = [function, u0, u1]
    if version is not None:
        sql += " AND version = ?"
        params.append(version)
    for row in conn.execute(sql, params):
        index = row[0] // per - first_bucket
        if 0 <= index < n_buckets:
            acc[index].add(row[1:])
    points = []
    for i, bucket in enumerate(acc):
        start = (first_bucket + i) * width
        points.append(bucket.point(start, start + width))
    return {"function": function, "version": version, "since_ms": since_ms,
            "until_ms": until_ms, "bucket_ms": width, "points": points}


class _Bucket:
    __slots__ = ("blobs", "cold", "crashed", "errors", "mem_mb", "n", "proactive", "rss_n",
                 "rss_sum", "sandbox_max", "timeouts")

    def __init__(self) -> None:
        self.n = self.errors = self.timeouts = self.crashed = self.cold = self.proactive = 0
        self.rss_sum = 0.0
        self.rss_n = 0
        self.sandbox_max: float | None = None
        self.mem_mb: int | None = None
        self.blobs: dict[str, list[bytes]] = {"cold": [], "warm": [], "init": []}

    def add(self, row: Sequence[Any]) -> None:
        (cold, n, errors, timeouts, crashed, proactive, duration, init, rss_sum, rss_n,
         sandbox_max, memory_mb) = row
        self.n += n
        self.errors += errors
        self.timeouts += timeouts
        self.crashed += crashed
        self.proactive += proactive
        if cold:
            self.cold += n
        self.blobs["cold" if cold else "warm"].append(duration)
        if cold or proactive:  # only these have init durations
            self.blobs["init"].append(init)
        self.rss_sum += rss_sum
        self.rss_n += rss_n
        if sandbox_max is not None and (self.sandbox_max is None or sandbox_max > self.sandbox_max):
            self.sandbox_max = sandbox_max
        if memory_mb is not None:
            self.mem_mb = max(self.mem_mb or 0, memory_mb)

    def point(self, start: int, end: int) -> dict[str, Any]:
        cold_p50, cold_p95 = _q(Sketch.merged(self.blobs["cold"]), (0.5, 0.95))
        warm_p50, warm_p95 = _q(Sketch.merged(self.blobs["warm"]), (0.5, 0.95))
        init_p50, init_p95 = _q(Sketch.merged(self.blobs["init"]), (0.5, 0.95))
        n = self.n
        return {
            "start_ms": start, "end_ms": end, "invocations": n, "errors": self.errors,
            "timeouts": self.timeouts, "crashes": self.crashed, "cold_starts": self.cold,
            "proactive_inits": self.proactive,
            "error_rate": self.errors / n if n else None,
            "cold_start_rate": self.cold / n if n else None,
            "cold_p50_ms": cold_p50, "cold_p95_ms": cold_p95,
            "warm_p50_ms": warm_p50, "warm_p95_ms": warm_p95,
            "init_p50_ms": init_p50, "init_p95_ms": init_p95,
            "rss_end_mean_mb": round(self.rss_sum / self.rss_n, 2) if self.rss_n else None,
            "sandbox_peak_max_mb": self.sandbox_max, "memory_mb": self.mem_mb,
        }


def trends(conn: sqlite3.Connection, since_ms: float, until_ms: float,
           max_buckets: int = 48) -> dict[str, Any]:
    """Invocations and errors per bucket for every function (the overview's sparklines):
    ``{"bucket_ms", "start_ms", "buckets", "functions": {name: [[n, errors], ...]}}``; only
    the counts are read, no sketches."""
    since_ms = _clamp_start(conn, None, since_ms, until_ms)
    width = bucket_width_ms(since_ms, until_ms, max_buckets)
    table, unit, u0, u1 = _units(since_ms, until_ms, width)
    per = width // (HOUR_MS if unit == "hour" else MINUTE_MS)
    first_bucket = u0 // per
    n_buckets = max(1, (u1 - u0) // per)
    out: dict[str, list[list[int]]] = {}
    for function, bucket, n, errors in conn.execute(
        f"SELECT function, {unit} / ?, SUM(n), SUM(errors) FROM {table}"
        f" WHERE {unit} >= ? AND {unit} < ? GROUP BY 1, 2", (per, u0, u1)
    ):
        series = out.get(function)
        if series is None:
            series = out[function] = [[0, 0] for _ in range(n_buckets)]
        index = bucket - first_bucket
        if 0 <= index < n_buckets:
            series[index][0] += n
            series[index][1] += errors
    return {"bucket_ms": width, "start_ms": first_bucket * width, "buckets": n_buckets,
            "functions": out}


def services(conn: sqlite3.Connection, functions: Iterable[str],
             until_ms: float | None = None) -> dict[str, str | None]:
    """Each function's service (``function.service``, the OTel service name) as its newest
    invocation before ``until_ms`` reported it."""
    out: dict[str, str | None] = {}
    for name in functions:
        if until_ms is None:
            row = conn.execute(
                "SELECT service FROM invocations WHERE function = ?"
                " ORDER BY start_ms DESC LIMIT 1", (name,)).fetchone()
        else:
            row = conn.execute(
                "SELECT service FROM invocations WHERE function = ? AND start_ms < ?"
                " ORDER BY start_ms DESC LIMIT 1", (name, until_ms)).fetchone()
        out[name] = row[0] if row else None
    return out


# --------------------------------------------------------------------------------------------
# Memory per sandbox


def sandbox_memory(conn: sqlite3.Connection, function: str, since_ms: float, until_ms: float,
                   *, version: str | None = None, max_rows: int = MAX_MEMORY_ROWS,
                   slices: int = MEMORY_SLICES,
                   max_sandboxes: int = MAX_SANDBOXES) -> dict[str, Any]:
    """End-of-invocation RSS over time per sandbox (log stream): a leak is a rising line.

    Every row of the window is read when there are at most ``max_rows``; otherwise the
    window is cut in ``slices`` and the first ``max_rows // slices`` rows of each are read
    (``sampled`` is then true). The ``max_sandboxes`` sandboxes with the most points are kept,
    and the three that grew the most; ``hidden`` counts the others."""
    base = ("SELECT log_stream, start_ms, rss_end_mb, rss_peak_mb, request_id FROM invocations"
            " WHERE function = ? AND start_ms >= ? AND start_ms < ?")
    extra: list[Any] = []
    if version is not None:
        base += " AND version = ?"
        extra.append(version)
    base += " ORDER BY start_ms LIMIT ?"
    rows = conn.execute(base, (function, since_ms, until_ms, *extra, max_rows + 1)).fetchall()
    sampled = len(rows) > max_rows
    if sampled:
        rows = []
        per = max(1, max_rows // slices)
        step = (until_ms - since_ms) / slices
        for i in range(slices):
            a = since_ms + i * step
            b = until_ms if i == slices - 1 else a + step
            rows.extend(conn.execute(base, (function, a, b, *extra, per)).fetchall())
    by_sandbox: dict[str, list[tuple[float, float, float | None, str]]] = {}
    for stream, start, rss_end, rss_peak, request_id in rows:
        if rss_end is None:
            continue
        by_sandbox.setdefault(stream or "", []).append((start, rss_end, rss_peak, request_id))
    boxes = []
    for stream, points in by_sandbox.items():
        points.sort()
        first, last = points[0], points[-1]
        boxes.append({
            "log_stream": stream or None,
            "points": [[t, end] for t, end, _peak, _rid in points],
            "invocations": len(points),
            "first_ms": first[0],
            "last_ms": last[0],
            "rss_first_mb": first[1],
            "rss_last_mb": last[1],
            "rss_peak_max_mb": max((p for _t, _e, p, _r in points if p is not None),
                                   default=None),
            "growth_mb": round(last[1] - first[1], 2),
            "slope_mb_per_hour": _slope(points),
            "last_request_id": last[3],
        })
    boxes.sort(key=lambda b: (-b["invocations"], -b["last_ms"]))
    kept = boxes[:max_sandboxes]
    growing = sorted(boxes[max_sandboxes:], key=lambda b: -b["growth_mb"])[:3]
    kept += [b for b in growing if b["growth_mb"] > 0]
    kept.sort(key=lambda b: b["first_ms"])
    return {"function": function, "since_ms": since_ms, "until_ms": until_ms,
            "sampled": sampled, "rows": len(rows), "sandboxes": kept,
            "hidden": len(boxes) - len(kept)}


def _slope(points: Sequence[tuple[float, float, Any, Any]]) -> float | None:
    """Least-squares slope of RSS over time, MB per hour."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    den = sum((p[0] - mean_t) ** 2 for p in points)
    if den <= 0:
        return None
    num = sum((p[0] - mean_t) * (p[1] - mean_y) for p in points)
    return round(num / den * HOUR_MS, 3)


# --------------------------------------------------------------------------------------------
# Logs


def logs(conn: sqlite3.Connection, filters: Mapping[str, Any], limit: int = 100,
         offset: int = 0) -> dict[str, Any]:
    """:func:`queries.logs`, newest first, with the same answers; without a function or a
    request id it reads each function's lines through the ``(function, ts_ms)`` index and
    merges them, rather than sorting every stored line."""
    from . import queries

    f = {k: v for k, v in filters.items() if v is not None and v != ""}
    order = str(f.get("order") or "desc")
    if "function" in f or "request_id" in f or order != "desc" or offset + limit + 1 > 1000:
        return queries.logs(conn, f, limit=limit, offset=offset)
    want = offset + limit + 1
    per_function = [
        queries.logs(conn, {**f, "function": name}, limit=want)["logs"]
        for name in _log_functions(conn)
    ]
    merged = list(heapq.merge(*per_function, key=lambda line: -line["timestamp_ms"]))
    page = merged[offset:offset + limit + 1]
    return {"logs": page[:limit], "limit": limit, "offset": offset, "more": len(page) > limit}


def _log_functions(conn: sqlite3.Connection) -> list[str]:
    # The distinct functions of the logs index, found by skipping from one to the next.
    names: list[str] = []
    row = conn.execute("SELECT MIN(function) FROM logs").fetchone()
    while row is not None and row[0] is not None:
        names.append(row[0])
        row = conn.execute("SELECT MIN(function) FROM logs WHERE function > ?",
                           (row[0],)).fetchone()
    return names


# --------------------------------------------------------------------------------------------
# The service map

#: AWS service (as in "SQS.SendMessage") -> the map's node kind.
_AWS_KINDS = {
    "sqs": "queue", "sns": "topic", "dynamodb": "table", "s3": "bucket", "kinesis": "stream",
    "firehose": "stream", "eventbridge": "bus", "events": "bus", "lambda": "function",
    "sfn": "workflow", "stepfunctions": "workflow", "secretsmanager": "secret",
    "ssm": "parameter", "kms": "key",
}
_HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                           "CONNECT", "TRACE"))
#: Trigger type -> the AWS service whose resource its source names.
_TRIGGER_SERVICES = {"sqs": "sqs", "sns": "sns", "s3": "s3", "dynamodb": "dynamodb",
                     "kinesis": "kinesis", "eventbridge": "eventbridge"}


def parse_dependency(dependency: str) -> dict[str, Any]:
    """A dependency string (``"SQS.SendMessage orders-queue"``, ``"GET api.example.com"``) as
    a map node: ``{"id", "kind", "label", "operation"}``."""
    head, _, rest = dependency.partition(" ")
    rest = rest.strip()
    if "." in head and head[:1].isalpha() and head not in _HTTP_METHODS:
        service, _, _op = head.partition(".")
        key = service.lower()
        kind = _AWS_KINDS.get(key, "aws")
        if key == "lambda" and rest:
            return {"id": f"fn:{rest}", "kind": "function", "label": rest, "operation": head}
        if rest:
            return {"id": f"{key}:{rest}", "kind": kind, "label": f"{service} {rest}",
                    "operation": head}
        return {"id": f"aws:{service}", "kind": "aws", "label": service, "operation": head}
    if head in _HTTP_METHODS:
        host = rest or "?"
        return {"id": f"http:{host}", "kind": "http", "label": host, "operation": head}
    return {"id": f"dep:{dependency}", "kind": "other", "label": dependency,
            "operation": dependency}


def _source_node(trigger_type: str | None, source: str | None) -> dict[str, Any] | None:
    """The resource a trigger's source names (``arn:aws:sqs:...:orders-queue``), as a node."""
    service = _TRIGGER_SERVICES.get(trigger_type or "")
    if service is None or not source:
        return None
    name = source
    if source.startswith("arn:"):
        resource = source.split(":", 5)[-1]
        if service in ("dynamodb", "kinesis"):
            # table/orders/stream/2026-...; stream/clicks
            parts = resource.split("/")
            name = parts[1] if len(parts) > 1 else resource
        else:
            name = resource.rsplit(":", 1)[-1]
    if not name:
        return None
    label_service = {"sqs": "SQS", "sns": "SNS", "s3": "S3", "dynamodb": "DynamoDB",
                     "kinesis": "Kinesis", "eventbridge": "EventBridge"}[service]
    return {"id": f"{service}:{name}", "kind": _AWS_KINDS.get(service, "aws"),
            "label": f"{label_service} {name}", "operation": None}


def _ranges(since_ms: float, until_ms: float) -> tuple[list[tuple[int, int]],
                                                       list[tuple[int, int]]]:
    """Whole hours inside the window, and the whole minutes around them (the window starts at
    its first whole minute and includes the minute its end falls in)."""
    m0 = math.ceil(since_ms / MINUTE_MS)
    m1 = max(m0, math.ceil(until_ms / MINUTE_MS))
    h0, h1 = -(-m0 // 60), m1 // 60
    if h0 >= h1:
        return [], [(m0, m1)]
    minutes = []
    if m0 < h0 * 60:
        minutes.append((m0, h0 * 60))
    if h1 * 60 < m1:
        minutes.append((h1 * 60, m1))
    return [(h0, h1)], minutes


def _function_figures(conn: sqlite3.Connection, since_ms: float, until_ms: float
                      ) -> dict[str, dict[str, Any]]:
    hours, minutes = _ranges(since_ms, until_ms)
    acc: dict[str, list[Any]] = {}
    for table, unit, ranges in (("rollup_hour", "hour", hours), ("rollup", "minute", minutes)):
        for r0, r1 in ranges:
            for name, n, errors, duration in conn.execute(
                f"SELECT function, n, errors, duration FROM {table}"
                f" WHERE {unit} >= ? AND {unit} < ?", (r0, r1)
            ):
                item = acc.setdefault(name, [0, 0, []])
                item[0] += n
                item[1] += errors
                item[2].append(duration)
    out = {}
    for name, (n, errors, blobs) in acc.items():
        if not n:
            continue
        p95 = Sketch.merged(blobs).quantile(0.95)
        out[name] = {"invocations": n, "errors": errors, "error_rate": errors / n,
                     "p95_ms": None if p95 is None else round(p95, 3)}
    return out


def _dependency_rows(conn: sqlite3.Connection, since_ms: float, until_ms: float
                     ) -> Iterable[tuple[str, str, int, int, bytes]]:
    hours, minutes = _ranges(since_ms, until_ms)
    for table, unit, ranges in (("dependency_rollup_hour", "hour", hours),
                                ("dependency_rollup", "minute", minutes)):
        for r0, r1 in ranges:
            yield from conn.execute(
                f"SELECT function, dependency, n, errors, duration FROM {table}"
                f" WHERE {unit} >= ? AND {unit} < ?", (r0, r1))


def service_map(conn: sqlite3.Connection, since_ms: float, until_ms: float, *,
                function: str | None = None, sample: int = MAP_SAMPLE,
                trace_lookups: int = MAP_TRACE_LOOKUPS) -> dict[str, Any]:
    """Functions, the AWS resources and HTTP hosts they call, and who calls them.

    Nodes ``{"id", "kind", "label", ...}``: functions (``fn:NAME``, with invocations, error
    rate and p95), queues, topics, tables, buckets, streams (``sqs:NAME``, ``sns:NAME``, ...)
    and HTTP hosts (``http:HOST``). Edges ``{"from", "to", "count", "errors", "error_rate",
    "p95_ms", "operations", "estimated"}``: a function's calls (from the dependency rollups,
    exact; a resource's operations merged), and the edges into a function, found in a sample
    of its newest invocations: the resource its trigger names, and through propagated traces
    (the invocation's parent span, a batch record's link) the resource or function that sent
    it; their counts are the function's invocations in the window times the sample's share
    (``estimated``), their p95 and error rate the function's. With ``function``: the nodes
    next to it, and next to those (a queue it sends to and the function reading it)."""
    figures = _function_figures(conn, since_ms, until_ms)
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str], dict[str, Any]] = {}

    def add_node(node: Mapping[str, Any]) -> str:
        node_id = str(node["id"])
        if node_id in nodes:
            return node_id
        if node["kind"] == "function":
            name = str(node["label"])
            f = figures.get(name, {})
            nodes[node_id] = {"id": node_id, "kind": "function", "label": name,
                              "function": name, "invocations": f.get("invocations", 0),
                              "error_rate": f.get("error_rate"), "p95_ms": f.get("p95_ms")}
        else:
            nodes[node_id] = {"id": node_id, "kind": node["kind"], "label": node["label"]}
        return node_id

    def fn_node(name: str) -> dict[str, Any]:
        return {"id": f"fn:{name}", "kind": "function", "label": name}

    # Calls: the dependency rollups, one edge per (function, resource).
    calls: dict[tuple[str, str], list[Any]] = {}
    for name, dependency, n, errors, blob in _dependency_rows(conn, since_ms, until_ms):
        source = add_node(fn_node(name))
        target = add_node(parse_dependency(dependency))
        acc = calls.setdefault((source, target), [0, 0, [], set()])
        acc[0] += n
        acc[1] += errors
        acc[2].append(blob)
        acc[3].add(dependency.partition(" ")[0])
    for (source, target), (n, errors, blobs, operations) in calls.items():
        p95 = Sketch.merged(blobs).quantile(0.95)
        edges[(source, target)] = {
            "from": source, "to": target, "count": n, "errors": errors,
            "error_rate": errors / n if n else None,
            "p95_ms": None if p95 is None else round(p95, 3),
            "operations": sorted(operations), "estimated": False,
        }
    # Who sends each function its invocations: a sample of its newest ones.
    for name in sorted(figures):
        target = add_node(fn_node(name))
        found = _incoming(conn, name, since_ms, until_ms, sample, trace_lookups)
        total = sum(hits for _node, hits in found)
        fig = figures[name]
        for node, hits in found:
            source = add_node(node)
            if source == target or (source, target) in edges:
                continue  # a direct call (Lambda.Invoke) is already counted exactly
            share = hits / total
            edges[(source, target)] = {
                "from": source, "to": target, "count": round(fig["invocations"] * share),
                "errors": round(fig["errors"] * share), "error_rate": fig["error_rate"],
                "p95_ms": fig["p95_ms"], "operations": [], "estimated": True,
                "sampled": hits,
            }
    if function is not None:
        center = f"fn:{function}"
        near = {b for a, b in edges if a == center} | {a for a, b in edges if b == center}
        hubs = {x for x in near if nodes[x]["kind"] != "function"}
        edges = {k: e for k, e in edges.items()
                 if center in k or k[0] in hubs or k[1] in hubs}
        used = {x for k in edges for x in k}
        if center in nodes:
            used.add(center)
        nodes = {k: v for k, v in nodes.items() if k in used}
    return {"since_ms": since_ms, "until_ms": until_ms,
            "nodes": sorted(nodes.values(), key=lambda n: (n["kind"] != "function", n["id"])),
            "edges": sorted(edges.values(), key=lambda e: (e["from"], e["to"]))}


def _report_of(blob: bytes | None) -> dict[str, Any]:
    if not blob:
        return {}
    try:
        value = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _incoming(conn: sqlite3.Connection, function: str, since_ms: float, until_ms: float,
              sample: int, trace_lookups: int) -> list[tuple[dict[str, Any], int]]:
    """What sent a function's newest invocations (a node: a resource, or a function), with
    how many of the sample each sent."""
    rows = conn.execute(
        "SELECT request_id, trigger_type, trace_id, parent_span_id, report FROM invocations"
        " WHERE function = ? AND start_ms >= ? AND start_ms < ? ORDER BY start_ms DESC LIMIT ?",
        (function, since_ms, until_ms, sample),
    ).fetchall()
    counts: dict[str, list[Any]] = {}
    lookups = 0
    for request_id, trigger_type, trace_id, parent_span_id, blob in rows:
        report = _report_of(blob)
        inv = report.get("invocation")
        trigger = inv.get("trigger") if isinstance(inv, dict) else None
        source_arn = trigger.get("source") if isinstance(trigger, dict) else None
        node = _source_node(trigger_type, source_arn if isinstance(source_arn, str) else None)
        if node is None:
            parents: list[tuple[str, str]] = []
            if trace_id and parent_span_id:
                parents.append((trace_id, parent_span_id))
            spans = report.get("spans")
            links = spans[0].get("links") if isinstance(spans, list) and spans and isinstance(
                spans[0], dict) else None
            for link in (links if isinstance(links, list) else [])[:3]:
                if isinstance(link, dict) and link.get("trace_id") and link.get("span_id"):
                    parents.append((str(link["trace_id"]), str(link["span_id"])))
            for trace, span in parents:
                if lookups >= trace_lookups:
                    break
                lookups += 1
                node = _producer(conn, trace, span, request_id, function)
                if node is not None:
                    break
        if node is not None:
            counts.setdefault(str(node["id"]), [node, 0])[1] += 1
    return [(node, hits) for node, hits in counts.values()]


def _producer(conn: sqlite3.Connection, trace_id: str, span_id: str, request_id: str,
              function: str) -> dict[str, Any] | None:
    """The node behind span ``span_id`` of trace ``trace_id``: the resource its call went to,
    or the function that made it."""
    others = conn.execute(
        "SELECT request_id, function FROM invocations WHERE trace_id = ? AND request_id != ?"
        " ORDER BY start_ms LIMIT 20", (trace_id, request_id)
    ).fetchall()
    for other_id, other_fn in others:
        found = conn.execute(
            "SELECT dependency FROM spans WHERE request_id = ? AND span_id = ?",
            (other_id, span_id),
        ).fetchone()
        if found is None:
            continue
        node = parse_dependency(found[0]) if found[0] else None
        if node is None or node["kind"] == "function":
            # An internal span, or a Lambda invoke: the calling function sent it.
            return {"id": f"fn:{other_fn}", "kind": "function", "label": other_fn}
        return node
    # The parent may be another invocation's root span (the spans table leaves it out).
    for other_id, other_fn in others[:5]:
        if other_fn == function:
            continue
        blob = conn.execute("SELECT report FROM invocations WHERE request_id = ?",
                            (other_id,)).fetchone()
        trace = _report_of(blob[0] if blob else None).get("trace")
        if isinstance(trace, dict) and trace.get("span_id") == span_id:
            return {"id": f"fn:{other_fn}", "kind": "function", "label": other_fn}
    return None


# --------------------------------------------------------------------------------------------
# Cold-start diagnostics


def latest_diagnostics(conn: sqlite3.Connection, function: str, *, version: str | None = None,
                       until_ms: float | None = None) -> dict[str, Any] | None:
    """The newest cold-start diagnostics of ``function`` (of one version; started before
    ``until_ms``): ``{"request_id", "start_ms", "version", "diagnostics"}``, or ``None`` when
    no sandbox of it reported any. Read through the ``diagnostics`` index, then the one
    report."""
    sql = "SELECT request_id, start_ms, version FROM diagnostics WHERE function = ?"
    params: list[Any] = [function]
    if version is not None:
        sql += " AND version = ?"
        params.append(version)
    if until_ms is not None:
        sql += " AND start_ms < ?"
        params.append(until_ms)
    for request_id, start_ms, ver in conn.execute(
            sql + " ORDER BY start_ms DESC LIMIT 3", params).fetchall():
        row = conn.execute("SELECT report FROM invocations WHERE request_id = ?",
                           (request_id,)).fetchone()
        diagnostics = _report_of(row[0] if row else None).get("diagnostics")
        if isinstance(diagnostics, dict):
            return {"request_id": request_id, "start_ms": start_ms, "version": ver or None,
                    "diagnostics": diagnostics}
    return None

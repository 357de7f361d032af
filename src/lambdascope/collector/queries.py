"""The questions asked of the store, answered as JSON-ready dicts.

Every function takes a read connection (``Store.reader()`` or ``store.open_reader(path)``),
never writes, and follows SPEC section 7's conventions: durations in ms (``_ms``), rates and
shares as fractions 0..1 (``_rate``, ``_share``), memory in MB (``_mb``), money in US dollars
(``_usd``). ``since_ms``/``until_ms`` select on the invocation's start, half-open
``[since, until)``; ``since_ms=None`` is the beginning, ``until_ms=None`` now.

How exact the answers are: counts, rates, sums and costs are exact; percentiles come from
the sketches' buckets, within 1 % of the value of their rank (``floor(q * (n - 1))`` of the
sorted values). Windows are read from the hourly rollups for whole hours, the per-minute
rollups for the whole minutes around them, and the raw rows for the partial first and last
minutes when the window is under 2 hours (so a short window is exact to the millisecond),
unless such an edge holds more than ``EDGE_ROWS_MAX`` invocations: it is then rounded to the
nearest minute. A longer window starts at the first whole minute inside it and includes the
minute its end falls in. Error groups are always counted exactly in the window.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from . import pricing
from .pricing import Prices
from .sketch import Sketch

__all__ = [
    "check",
    "dependencies",
    "errors",
    "functions",
    "invocations",
    "logs",
    "show",
    "slow_imports",
    "stats",
    "trace",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: Windows shorter than this have their partial edge minutes read from the raw rows...
EXACT_EDGES_MS = 2 * HOUR_MS
#: ... unless an edge holds more rows than this: it is then rounded to the nearest minute
#: (reading ~15 us of rows and spans per invocation, 3,000 keep an edge near 50 ms).
EDGE_ROWS_MAX = 3000
#: Memory right-sizing: headroom kept over the peak p99 and over the peak max.
HEADROOM_P99 = 0.30
HEADROOM_MAX = 0.15
#: Lambda's memory sizes: 128 MB to 10,240 MB in 1 MB steps; suggestions are rounded up to
#: a multiple of 64 MB.
MEMORY_MIN_MB = 128
MEMORY_MAX_MB = 10_240
MEMORY_STEP_MB = 64
#: Most error groups listed per stats entry.
MAX_ERROR_GROUPS = 50
MAX_LIMIT = 1000

_QUANTILES = (0.5, 0.95, 0.99, 0.999)


# --------------------------------------------------------------------------------------------
# Windows


class _Plan:
    """Which sources answer a window: raw row ranges (ms), minute ranges, hour ranges."""

    __slots__ = ("hours", "minutes", "raw", "since", "until")

    def __init__(self, since: float, until: float) -> None:
        self.since = since
        self.until = until
        self.raw: list[tuple[float, float]] = []
        self.minutes: list[tuple[int, int]] = []
        self.hours: list[tuple[int, int]] = []
        if until <= since:
            return
        if until - since < EXACT_EDGES_MS:
            m0 = math.ceil(since / MINUTE_MS)
            m1 = math.floor(until / MINUTE_MS)
            if m0 >= m1:
                self.raw.append((since, until))
                return
            if since < m0 * MINUTE_MS:
                self.raw.append((since, m0 * MINUTE_MS))
            if m1 * MINUTE_MS < until:
                self.raw.append((m1 * MINUTE_MS, until))
        else:
            m0 = math.ceil(since / MINUTE_MS)
            m1 = math.ceil(until / MINUTE_MS)
        h0 = -(-m0 // 60)
        h1 = m1 // 60
        if h0 < h1:
            self.hours.append((h0, h1))
            if m0 < h0 * 60:
                self.minutes.append((m0, h0 * 60))
            if h1 * 60 < m1:
                self.minutes.append((h1 * 60, m1))
        else:
            self.minutes.append((m0, m1))


def _bounds(since_ms: Any, until_ms: Any) -> tuple[float, float]:
    since = _number("since_ms", since_ms)
    until = _number("until_ms", until_ms)
    if since is None:
        since = 0.0
    if until is None:
        until = time.time() * 1000.0
    return since, until


def _number(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return float(value)


def _flag(name: str, value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "cold"):
        return True
    if text in ("0", "false", "no", "warm"):
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


# --------------------------------------------------------------------------------------------
# Accumulating rollup rows


_SKETCHES = ("cold", "warm", "init", "memory", "agent")


class _Group:
    """Everything a stats entry needs for one function (or one function version)."""

    def __init__(self, function: str, version: str | None) -> None:
        self.function = function
        self.version = version
        self.n = self.errors = self.timeouts = self.crashed = 0
        self.cold_starts = self.proactive = self.leaks = 0
        self.blobs: dict[str, list[bytes]] = {k: [] for k in _SKETCHES}
        self.sketches: dict[str, Sketch] = {k: Sketch() for k in _SKETCHES}
        self.trend: dict[float, list[float]] = {}
        self.sandbox_max: float | None = None
        self.memory_mb: int | None = None
        self.memory_at = -math.inf
        self.timeout_max: float | None = None
        self.arch_n: dict[str | None, int] = {}
        self.gb_ms_by_arch: dict[str | None, float] = {}
        self.init_gb_ms_by_arch: dict[str | None, float] = {}
        self.cold_cost_gb_ms_by_arch: dict[str | None, float] = {}
        self.last = -math.inf
        # Over every invocation, whatever the cold/warm filter: the denominators of the
        # dependencies' shares.
        self.all_n = 0
        self.all_duration_sum = 0.0
        self.all_gb_ms_by_arch: dict[str | None, float] = {}
        self.deps: dict[str, list[Any]] = {}

    def add(self, when: float, cold: int, values: tuple[Any, ...], *, raw: bool,
            cold_filter: bool | None) -> None:
        (n, errors, timeouts, crashed, proactive, leaks, duration, init, memory, agent,
         rss_end_sum, rss_end_n, sandbox_max, memory_mb, timeout_max, arch, billed_gb_ms) = values
        duration_sum = duration.sum if raw else _sketch_sum(duration)
        self.all_n += n
        self.all_duration_sum += duration_sum
        self.all_gb_ms_by_arch[arch] = self.all_gb_ms_by_arch.get(arch, 0.0) + billed_gb_ms
        if when > self.last:
            self.last = when
        if cold_filter is not None and bool(cold) != cold_filter:
            return
        self.n += n
        self.errors += errors
        self.timeouts += timeouts
        self.crashed += crashed
        self.proactive += proactive
        self.leaks += leaks
        if cold:
            self.cold_starts += n
        target = "cold" if cold else "warm"
        if raw:
            self.sketches[target].merge(duration)
            self.sketches["init"].merge(init)
            self.sketches["memory"].merge(memory)
            self.sketches["agent"].merge(agent)
            init_sum = init.sum
        else:
            blobs = self.blobs
            blobs[target].append(duration)
            blobs["init"].append(init)
            blobs["memory"].append(memory)
            blobs["agent"].append(agent)
            init_sum = _sketch_sum(init)
        if rss_end_n:
            point = self.trend.setdefault(when, [0.0, 0])
            point[0] += rss_end_sum
            point[1] += rss_end_n
        if sandbox_max is not None and (self.sandbox_max is None or sandbox_max > self.sandbox_max):
            self.sandbox_max = sandbox_max
        if memory_mb is not None and when >= self.memory_at:
            self.memory_mb = memory_mb
            self.memory_at = when
        if timeout_max is not None and (self.timeout_max is None or timeout_max > self.timeout_max):
            self.timeout_max = timeout_max
        self.arch_n[arch] = self.arch_n.get(arch, 0) + n
        self.gb_ms_by_arch[arch] = self.gb_ms_by_arch.get(arch, 0.0) + billed_gb_ms
        if init_sum and memory_mb:
            self.init_gb_ms_by_arch[arch] = (
                self.init_gb_ms_by_arch.get(arch, 0.0) + init_sum * memory_mb / 1024.0)
        if cold:
            self.cold_cost_gb_ms_by_arch[arch] = (
                self.cold_cost_gb_ms_by_arch.get(arch, 0.0) + billed_gb_ms)

    def sketch(self, name: str) -> Sketch:
        merged = Sketch.merged(self.blobs[name])
        return merged.merge(self.sketches[name])

    def add_dependency(self, dependency: str, n: int, errors: int, total_ms: float,
                       duration: bytes | Sketch) -> None:
        acc = self.deps.get(dependency)
        if acc is None:
            acc = self.deps[dependency] = [0, 0, 0.0, [], Sketch()]
        acc[0] += n
        acc[1] += errors
        acc[2] += total_ms
        if isinstance(duration, Sketch):
            acc[4].merge(duration)
        else:
            acc[3].append(duration)


def _sketch_sum(blob: bytes) -> float:
    """The sum kept in a serialised sketch, without decoding its buckets."""
    if not blob:
        return 0.0
    pos = 1
    while blob[pos] & 0x80:
        pos += 1
    return _SUM_UNPACK(blob, pos + 1)[0]


_SUM_UNPACK = struct.Struct("<d").unpack_from

_ROLLUP_VALUES = (
    "n, errors, timeouts, crashed, proactive, leaks, duration, init, memory, agent,"
    " rss_end_sum, rss_end_n, sandbox_peak_max, memory_mb, timeout_ms_max, architecture,"
    " billed_gb_ms"
)


def _filters(function: str | None, version: str | None) -> tuple[str, list[Any]]:
    where = []
    params: list[Any] = []
    if function is not None:
        where.append("function = ?")
        params.append(function)
    if version is not None:
        where.append("version = ?")
        params.append(version)
    return "".join(f" AND {w}" for w in where), params


def _raw_select() -> str:
    from .store import ROW_COLUMNS

    # The columns in the rows' positions (what the rollup arithmetic indexes), the ones it
    # does not read as NULL: less to decode per row.
    needed = {
        "function", "version", "start_ms", "cold_start", "proactive_init", "status",
        "duration_ms", "init_ms", "rss_peak_mb", "agent_ms", "rss_end_mb", "sandbox_peak_mb",
        "platform_max_memory_mb", "memory_mb", "timeout_ms", "architecture", "billed_ms",
        "leak_suspected",
    }
    return ", ".join(c if c in needed else "NULL" for c in ROW_COLUMNS)


_RAW_SELECT = _raw_select()


def _round_dense_edges(conn: sqlite3.Connection, plan: _Plan, extra: str,
                       params: list[Any]) -> None:
    """Round to the nearest minute any raw edge holding more than EDGE_ROWS_MAX rows."""
    kept = []
    for a, b in plan.raw:
        n = conn.execute(
            f"SELECT COUNT(*) FROM invocations WHERE start_ms >= ? AND start_ms < ?{extra}",
            (a, b, *params),
        ).fetchone()[0]
        if n <= EDGE_ROWS_MAX:
            kept.append((a, b))
            continue
        first, last = math.floor(a / MINUTE_MS + 0.5), math.floor(b / MINUTE_MS + 0.5)
        if first < last:
            plan.minutes.append((first, last))
    plan.raw = kept


def _collect(conn: sqlite3.Connection, plan: _Plan, function: str | None, version: str | None,
             by_version: bool, cold: bool | None, dependencies: bool = True
             ) -> dict[tuple[str, str | None], _Group]:
    # The same arithmetic as the writer's rollups, over the raw rows of the edges.
    from .store import (
        I_COLD_START,
        I_FUNCTION,
        I_START_MS,
        I_VERSION,
        _InvocationRollup,
    )

    groups: dict[tuple[str, str | None], _Group] = {}

    def group(fn: str, ver: str) -> _Group:
        key = (fn, ver if by_version else None)
        found = groups.get(key)
        if found is None:
            found = groups[key] = _Group(fn, (ver or None) if by_version else None)
        return found

    extra, params = _filters(function, version)
    raw_extra = extra.replace("version = ?", "COALESCE(version, '') = ?")
    if plan.raw:
        _round_dense_edges(conn, plan, raw_extra, params)
    for table, unit, unit_ms, ranges in (("rollup_hour", "hour", HOUR_MS, plan.hours),
                                         ("rollup", "minute", MINUTE_MS, plan.minutes)):
        for lo, hi in ranges:
            for row in conn.execute(
                f"SELECT function, version, {unit}, cold, {_ROLLUP_VALUES} FROM {table}"
                f" WHERE {unit} >= ? AND {unit} < ?{extra}", (lo, hi, *params)
            ):
                group(row[0], row[1]).add(row[2] * unit_ms + unit_ms / 2, row[3], row[4:],
                                          raw=False, cold_filter=cold)
    for a, b in plan.raw:
        minutes: dict[tuple[str, str, int, int], _InvocationRollup] = {}
        for row in conn.execute(
            f"SELECT {_RAW_SELECT} FROM invocations"
            f" WHERE start_ms >= ? AND start_ms < ?{raw_extra}", (a, b, *params)
        ):
            key = (row[I_FUNCTION], row[I_VERSION] or "", int(row[I_START_MS] // MINUTE_MS),
                   1 if row[I_COLD_START] else 0)
            acc = minutes.get(key)
            if acc is None:
                acc = minutes[key] = _InvocationRollup()
            acc.apply(row, 1)
        for (fn, ver, minute, is_cold), acc in minutes.items():
            group(fn, ver).add(
                minute * MINUTE_MS + MINUTE_MS / 2, is_cold,
                (acc.n, acc.errors, acc.timeouts, acc.crashed, acc.proactive, acc.leaks,
                 acc.duration, acc.init, acc.memory, acc.agent, acc.rss_end_sum, acc.rss_end_n,
                 acc.sandbox_peak_max, acc.memory_mb, acc.timeout_ms_max, acc.architecture,
                 acc.billed_gb_ms),
                raw=True, cold_filter=cold,
            )
    if dependencies and groups:
        _collect_dependencies(conn, plan, function, version, group, groups)
    return groups


def _collect_dependencies(conn: sqlite3.Connection, plan: _Plan, function: str | None,
                          version: str | None, group: Any,
                          groups: dict[tuple[str, str | None], _Group]) -> None:
    extra, params = _filters(function, version)
    for table, unit, ranges in (("dependency_rollup_hour", "hour", plan.hours),
                                ("dependency_rollup", "minute", plan.minutes)):
        for r0, r1 in ranges:
            for fn, ver, dependency, n, errors, total, blob in conn.execute(
                f"SELECT function, version, dependency, n, errors, total_ms, duration"
                f" FROM {table} WHERE {unit} >= ? AND {unit} < ?{extra}", (r0, r1, *params)
            ):
                group(fn, ver).add_dependency(dependency, n, errors, total, blob)
    raw_extra = extra.replace("function = ?", "i.function = ?").replace(
        "version = ?", "COALESCE(i.version, '') = ?")
    for a, b in plan.raw:
        found: dict[tuple[str, str, str], list[Any]] = {}
        for fn, ver, dependency, duration, status in conn.execute(
            "SELECT i.function, COALESCE(i.version, ''), s.dependency, s.duration_ms, s.status"
            " FROM invocations i JOIN spans s ON s.request_id = i.request_id"
            f" WHERE i.start_ms >= ? AND i.start_ms < ?{raw_extra}"
            " AND s.dependency IS NOT NULL", (a, b, *params)
        ):
            acc = found.get((fn, ver, dependency))
            if acc is None:
                acc = found[(fn, ver, dependency)] = [0, 0, 0.0, Sketch()]
            acc[0] += 1
            if status == "error":
                acc[1] += 1
            if duration is not None:
                acc[2] += duration
                acc[3].add(duration)
        for (fn, ver, dependency), (n, errs, total, sketch) in found.items():
            group(fn, ver).add_dependency(dependency, n, errs, total, sketch)


# --------------------------------------------------------------------------------------------
# stats


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _durations(sketch: Sketch) -> dict[str, Any]:
    p50, p95, p99, p999 = sketch.quantiles(_QUANTILES)
    return {"count": sketch.count, "p50_ms": _round(p50), "p95_ms": _round(p95),
            "p99_ms": _round(p99), "p999_ms": _round(p999)}


def _trend(points: dict[float, list[float]]) -> float | None:
    """Weighted least-squares slope of the mean end-of-invocation RSS, MB per hour."""
    if len(points) < 2:
        return None
    total_w = sum(p[1] for p in points.values())
    if not total_w:
        return None
    mean_t = sum(t * p[1] for t, p in points.items()) / total_w
    mean_y = sum(p[0] for p in points.values()) / total_w
    num = den = 0.0
    for t, (s, w) in points.items():
        dt = t - mean_t
        num += w * dt * (s / w - mean_y)
        den += w * dt * dt
    if den <= 0:
        return None
    return num / den * HOUR_MS


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step - 1e-9) * step)


def suggest_memory(configured: int | None, peak_p99: float | None, peak_max: float | None,
                   sandbox_max: float | None = None) -> tuple[int | None, str]:
    """A memory size for the observed peaks, and why (see docs/collector.md, right-sizing).

    The observed peak is the process RSS peak (p99, and max) or, where Lambda's own figure
    (the sandbox's peak) is larger and plausible (not above the configured size), that. The
    suggestion keeps 30 % headroom over the p99 and 15 % over the max, rounded up to a
    multiple of 64 MB, within Lambda's 128-10,240 MB.
    """
    if peak_p99 is None and peak_max is None and sandbox_max is None:
        return None, "no memory figures in the window"
    p99 = peak_p99 or 0.0
    top = peak_max or p99
    basis = "process peak"
    if sandbox_max is not None and sandbox_max > top and (
        configured is None or sandbox_max <= configured
    ):
        top = sandbox_max
        p99 = max(p99, sandbox_max)
        basis = "sandbox peak (Lambda's Max Memory Used)"
    needed = max(p99 / (1 - HEADROOM_P99), top / (1 - HEADROOM_MAX))
    suggested = min(MEMORY_MAX_MB, max(MEMORY_MIN_MB, _round_up(needed, MEMORY_STEP_MB)))
    seen = f"{basis} p99 {p99:.0f} MB, max {top:.0f} MB"
    if configured is None:
        return suggested, (
            f"{seen}; {suggested} MB keeps {HEADROOM_P99:.0%} headroom over the p99 and "
            f"{HEADROOM_MAX:.0%} over the max (the configured size is unknown)"
        )
    used = top / configured
    if needed > MEMORY_MAX_MB:
        return MEMORY_MAX_MB, (
            f"{seen} of the configured {configured} MB: even the largest size, "
            f"{MEMORY_MAX_MB} MB, leaves less than the wanted headroom"
        )
    if suggested > configured:
        return suggested, (
            f"{seen}: {used:.0%} of the configured {configured} MB leaves less than "
            f"{HEADROOM_P99:.0%} headroom, a risk of running out of memory; {suggested} MB "
            f"would keep it"
        )
    if configured <= max(suggested * 1.25, suggested + MEMORY_STEP_MB):
        return configured, (
            f"{seen}: the configured {configured} MB fits ({used:.0%} used at the peak)"
        )
    cpu = (
        "; CPU share scales with memory, so check the duration after lowering it"
        if configured > 1769 or suggested < configured / 2 else ""
    )
    return suggested, (
        f"{seen}: only {used:.0%} of the configured {configured} MB is used; {suggested} MB "
        f"keeps {HEADROOM_P99:.0%} headroom over the p99 and {HEADROOM_MAX:.0%} over the max"
        f"{cpu}"
    )


def _configured_timeout(timeout_ms: float | None) -> float | None:
    # invocation.timeout_ms is the time left when the invocation started, a few ms under the
    # configured timeout, which Lambda sets in whole seconds.
    if timeout_ms is None:
        return None
    return math.ceil(timeout_ms / 1000.0 - 1e-9) * 1000.0 if timeout_ms > 900 else timeout_ms


def _cost(group: _Group, prices: Prices) -> dict[str, Any]:
    def usd(by_arch: Mapping[str | None, float]) -> float:
        return sum(gb_ms / 1000.0 * prices.per_gb_s(arch) for arch, gb_ms in by_arch.items())

    architecture = max(group.arch_n.items(), key=lambda kv: kv[1])[0] if group.arch_n else None
    total = usd(group.gb_ms_by_arch) + group.n * prices.request
    init = usd(group.init_gb_ms_by_arch)
    per = total / group.n if group.n else None
    return {
        "architecture": architecture or "x86_64",
        "price_gb_s_usd": prices.per_gb_s(architecture),
        "price_request_usd": prices.request,
        "total_usd": total,
        "per_invocation_usd": per,
        "per_million_usd": per * 1_000_000 if per is not None else None,
        "cold_start_share": min(1.0, init / total) if total else None,
        "cold_starts_usd": usd(group.cold_cost_gb_ms_by_arch)
        + group.cold_starts * prices.request,
    }


def _entry(conn: sqlite3.Connection, group: _Group, plan: _Plan, prices: Prices,
           cold: bool | None, by_version: bool, version: str | None,
           cache: dict[Any, Any]) -> dict[str, Any]:
    cold_d = group.sketch("cold")
    warm_d = group.sketch("warm")
    all_d = cold_d.copy().merge(warm_d)
    init = group.sketch("init")
    memory = group.sketch("memory")
    agent = group.sketch("agent")
    init_p50, init_p95 = init.quantiles((0.5, 0.95))
    peak_p99, peak_max = memory.quantiles((0.99, 1.0))
    agent_p50, agent_p95 = agent.quantiles((0.5, 0.95))
    cost = _cost(group, prices)
    suggested, reason = suggest_memory(group.memory_mb, peak_p99, peak_max, group.sandbox_max)
    timeout = _configured_timeout(group.timeout_max)
    p999 = all_d.quantile(0.999)
    headroom = None
    timeout_reason = "no timeout figures in the window"
    if timeout and p999 is not None:
        headroom = max(0.0, min(1.0, 1.0 - p999 / timeout))
        timeout_reason = (
            f"duration p99.9 {p999:.0f} ms uses {p999 / timeout:.0%} of the {timeout:.0f} ms "
            f"timeout"
        )
        if group.timeouts:
            timeout_reason += f"; {group.timeouts} invocation(s) timed out"
    # Dependencies: over every invocation of the group (the cold/warm filter does not apply
    # to spans), shares of the group's total duration and cost.
    all_cost = sum(
        gb_ms / 1000.0 * prices.per_gb_s(arch) for arch, gb_ms in group.all_gb_ms_by_arch.items()
    ) + group.all_n * prices.request
    gb = (group.memory_mb or 0) / 1024.0
    price = prices.per_gb_s(cost["architecture"])
    deps = []
    for dependency, (n, errs, total, blobs, sketch) in group.deps.items():
        merged = Sketch.merged(blobs).merge(sketch)
        p50, p95 = merged.quantiles((0.5, 0.95))
        deps.append({
            "dependency": dependency,
            "count": n,
            "p50_ms": _round(p50),
            "p95_ms": _round(p95),
            "error_rate": _rate(errs, n),
            "total_ms": _round(total),
            "time_share": min(1.0, total / group.all_duration_sum)
            if group.all_duration_sum > 0 else None,
            "cost_share": min(1.0, total / 1000.0 * gb * price / all_cost)
            if all_cost > 0 and gb else None,
        })
    deps.sort(key=lambda d: (-d["total_ms"], d["dependency"]))
    return {
        "function": group.function,
        "version": group.version,
        "invocations": group.n,
        "error_rate": _rate(group.errors, group.n),
        "timeout_rate": _rate(group.timeouts, group.n),
        "crash_rate": _rate(group.crashed, group.n),
        "cold_start_rate": _rate(group.cold_starts, group.n),
        "cold_starts": group.cold_starts,
        "proactive_inits": group.proactive,
        "init_p50_ms": _round(init_p50),
        "init_p95_ms": _round(init_p95),
        "duration": {
            "all": _durations(all_d),
            "cold": _durations(cold_d),
            "warm": _durations(warm_d),
            "mean_ms": _round(all_d.mean),
        },
        "memory": {
            "configured_mb": group.memory_mb,
            "peak_p99_mb": _round(peak_p99, 2),
            "peak_max_mb": _round(peak_max, 2),
            "sandbox_peak_max_mb": _round(group.sandbox_max, 2),
            "warm_trend_mb_per_hour": _round(_trend(group.trend), 3),
            "leak_suspected": group.leaks,
        },
        "agent": {"overhead_p50_ms": _round(agent_p50), "overhead_p95_ms": _round(agent_p95)},
        "cost": cost,
        "right_sizing": {
            "memory_suggested_mb": suggested,
            "memory_reason": reason,
            "timeout_ms": timeout,
            "duration_p999_ms": _round(p999),
            "timeout_headroom_share": _round(headroom, 4),
            "timeout_reason": timeout_reason,
        },
        "dependencies": deps,
        "errors": _error_groups(conn, group.function, plan.since, plan.until,
                                group.version if by_version else version,
                                by_version or version is not None, cold, cache=cache),
    }


def _version_order(entry: dict[str, Any], last: float) -> tuple[float, float, str]:
    version = entry["version"] or ""
    number = float(version) if version.isdigit() else -1.0
    return (last, number, version)


def stats(
    conn: sqlite3.Connection,
    function: str | None = None,
    since_ms: float | None = None,
    until_ms: float | None = None,
    cold: bool | None = None,
    by: str | None = None,
    prices: Prices | None = None,
    *,
    version: str | None = None,
    imports: bool = True,
) -> dict[str, Any]:
    """Per-function figures for a window (see docs/collector.md for the shape).

    ``cold`` True/False keeps cold starts/warm invocations only; ``by="version"`` makes one
    entry per function version, newest first; ``version`` keeps one version only.
    ``imports=False`` leaves out each entry's slowest imports (``diagnosed_sandboxes`` 0 and
    ``slow_imports`` empty), for a caller that does not show them.
    """
    if by not in (None, "", "function", "version"):
        raise ValueError(f"by must be 'version', not {by!r}")
    cold = _flag("cold", cold)
    by_version = by == "version"
    prices = prices or Prices()
    since, until = _bounds(since_ms, until_ms)
    plan = _Plan(since, until)
    groups = _collect(conn, plan, function, version, by_version, cold)
    entries = []
    cache: dict[Any, Any] = {}
    for group in groups.values():
        if group.n == 0:
            continue
        entry = _entry(conn, group, plan, prices, cold, by_version, version, cache)
        # The cold-start diagnostics' slowest imports: of every sandbox diagnosed in the
        # window (the cold/warm filter does not apply: a sandbox's imports are its init's).
        found = {"diagnosed_sandboxes": 0, "slow_imports": []}
        if imports:
            found = slow_imports(conn, group.function, plan.since, plan.until,
                                 version=(group.version or "") if by_version else version)
        entry.update(found)
        entries.append((group, entry))
    entries.sort(key=lambda ge: ge[1]["function"])
    if by_version:
        # Newest version first: the one seen last, then the highest number.
        by_function: dict[str, list[tuple[_Group, dict[str, Any]]]] = {}
        for g, e in entries:
            by_function.setdefault(e["function"], []).append((g, e))
        entries = []
        for name in sorted(by_function):
            entries.extend(sorted(by_function[name],
                                  key=lambda ge: _version_order(ge[1], ge[0].last),
                                  reverse=True))
    return {"since_ms": since, "until_ms": until, "functions": [e for _, e in entries]}


# --------------------------------------------------------------------------------------------
# slowest imports (cold-start diagnostics)


#: Modules listed per stats entry.
MAX_SLOW_IMPORTS = 10
#: A partial hour at a window's edge is read from the ``imports`` rows, unless it holds more
#: than this many: it is then rounded to the nearest hour (read from ``import_rollup``).
IMPORT_EDGE_ROWS_MAX = 20_000
#: Percentiles are worked out for this many times ``limit`` modules, those with the highest
#: mean import time.
IMPORT_CANDIDATES = 3


def _import_plan(since: float, until: float
                 ) -> tuple[list[tuple[int, int, int]], list[tuple[float, float]]]:
    """How ``import_rollup`` answers ``[since, until)``: ``(level, first unit, end unit)``
    ranges (whole UTC days at level 1, whole hours at level 0 around them), and the pieces
    left, each within one hour, for the ``imports`` rows."""
    ranges: list[tuple[int, int, int]] = []
    segments = [(since, until)]
    d0, d1 = math.ceil(since / DAY_MS), math.floor(until / DAY_MS)
    if d0 < d1:
        ranges.append((1, d0, d1))
        segments = [(since, d0 * DAY_MS), (d1 * DAY_MS, until)]
    pieces: list[tuple[float, float]] = []
    for a, b in segments:
        if b <= a:
            continue
        h0, h1 = math.ceil(a / HOUR_MS), math.floor(b / HOUR_MS)
        if h0 < h1:
            ranges.append((0, h0, h1))
            pieces += [(x, y) for x, y in ((a, h0 * HOUR_MS), (h1 * HOUR_MS, b)) if y > x]
            continue
        start = a
        while start < b:
            end = min(b, (math.floor(start / HOUR_MS) + 1) * HOUR_MS)
            pieces.append((start, end))
            start = end
    return ranges, pieces


def slow_imports(conn: sqlite3.Connection, function: str, since_ms: float | None = None,
                 until_ms: float | None = None, *, version: str | None = None,
                 limit: int = MAX_SLOW_IMPORTS) -> dict[str, Any]:
    """The slowest imports of ``function``'s cold starts in the window, from each sandbox's
    ``diagnostics.slowest_imports``: per module, in how many sandboxes it was listed (and
    what share of the sandboxes diagnosed with import times), its median, p95 and largest
    cumulative import time, and the share of the sandboxes that listed it whose first
    invocation did not use it. The highest median first; ``limit`` modules, ranked among the
    ``IMPORT_CANDIDATES * limit`` with the highest mean.

    ``{"diagnosed_sandboxes": n, "slow_imports": [{"module", "sandboxes", "sandbox_share",
    "median_ms", "p95_ms", "max_ms", "unused_share"}]}``. ``version``: one version only
    (``""`` for reports without one). Whole UTC days and hours come from the rollup
    (percentiles within 1 %), the rest of the window from the rows (exact).
    """
    since, until = _bounds(since_ms, until_ms)
    ver_sql = "" if version is None else " AND version = ?"
    ver = [] if version is None else [version]
    diagnosed = conn.execute(
        "SELECT COUNT(*) FROM diagnostics WHERE function = ? AND start_ms >= ?"
        f" AND start_ms < ? AND imports > 0{ver_sql}", (function, since, until, *ver)
    ).fetchone()[0]
    if not diagnosed:
        return {"diagnosed_sandboxes": 0, "slow_imports": []}
    ranges, pieces = _import_plan(since, until)
    # module -> [n, unused, used_known, max_ms, sum_ms, times of the raw rows]
    found: dict[str, list[Any]] = {}

    def entry(module: str) -> list[Any]:
        acc = found.get(module)
        if acc is None:
            acc = found[module] = [0, 0, 0, None, 0.0, []]
        return acc

    for a, b in pieces:
        n = conn.execute(
            "SELECT COUNT(*) FROM imports WHERE function = ? AND start_ms >= ? AND start_ms < ?"
            f"{ver_sql}", (function, a, b, *ver)
        ).fetchone()[0]
        if n > IMPORT_EDGE_ROWS_MAX:
            if b - a >= HOUR_MS / 2:
                hour = math.floor(a / HOUR_MS)
                ranges.append((0, hour, hour + 1))
            continue
        for module, ms, used in conn.execute(
            "SELECT module, ms, used FROM imports WHERE function = ? AND start_ms >= ?"
            f" AND start_ms < ?{ver_sql}", (function, a, b, *ver)
        ):
            acc = entry(module)
            acc[0] += 1
            if used is not None:
                acc[2] += 1
                if not used:
                    acc[1] += 1
            if acc[3] is None or ms > acc[3]:
                acc[3] = ms
            acc[4] += ms
            acc[5].append(ms)
    # Days and hours: counts, maxima and sums added up by SQLite, per module.
    for level, r0, r1 in ranges:
        for module, n, unused, known, top, total in conn.execute(
            "SELECT module, SUM(n), SUM(unused), SUM(used_known), MAX(max_ms), SUM(sum_ms)"
            " FROM import_rollup WHERE function = ? AND level = ? AND unit >= ? AND unit < ?"
            f"{ver_sql} GROUP BY module", (function, level, r0, r1, *ver)
        ):
            acc = entry(module)
            acc[0] += n
            acc[1] += unused
            acc[2] += known
            if top is not None and (acc[3] is None or top > acc[3]):
                acc[3] = top
            acc[4] += total
    # Percentiles for the modules with the highest mean only (the sketches of every module
    # of every hour would be most of the query's time): the median's top ``limit`` are
    # among them unless a module's times are skewed like no import's are.
    ranked = sorted((m for m, acc in found.items() if acc[0] > 0),
                    key=lambda m: (-found[m][4] / found[m][0], m))
    candidates = ranked[:max(limit * IMPORT_CANDIDATES, limit)]
    blobs: dict[str, list[bytes]] = {m: [] for m in candidates}
    if ranges and candidates:
        marks = ", ".join("?" * len(candidates))
        for level, r0, r1 in ranges:
            for module, blob in conn.execute(
                "SELECT module, duration FROM import_rollup WHERE function = ? AND level = ?"
                f" AND unit >= ? AND unit < ?{ver_sql} AND module IN ({marks})",
                (function, level, r0, r1, *ver, *candidates)
            ):
                blobs[module].append(blob)
    out = []
    for module in candidates:
        n, unused, known, top, _total, times = found[module]
        if blobs[module]:
            p50, p95 = Sketch.merged(blobs[module]).merge(Sketch(times)).quantiles((0.5, 0.95))
        else:  # only rows: exact (the value of rank floor(q * (n - 1)))
            times.sort()
            p50, p95 = (times[int(q * (len(times) - 1))] for q in (0.5, 0.95))
        out.append({
            "module": module,
            "sandboxes": n,
            "sandbox_share": min(1.0, n / diagnosed),
            "median_ms": _round(p50),
            "p95_ms": _round(p95),
            "max_ms": _round(top),
            "unused_share": _rate(unused, known),
        })
    out.sort(key=lambda e: (-(e["median_ms"] or 0.0), -e["sandboxes"], e["module"]))
    return {"diagnosed_sandboxes": diagnosed, "slow_imports": out[:limit]}


# --------------------------------------------------------------------------------------------
# errors


def _error_groups(conn: sqlite3.Connection, function: str | None, since: float, until: float,
                  version: str | None, by_version: bool, cold: bool | None,
                  limit: int = MAX_ERROR_GROUPS,
                  cache: dict[Any, Any] | None = None) -> list[dict[str, Any]]:
    """The error groups of a window, counted in it (exactly: through the fingerprint index).
    With ``by_version``, the counts of one version; ``cache`` (one per stats call) keeps the
    per-version counts of a fingerprint for the other versions' entries."""
    where = "last_ms >= ? AND first_ms < ?"
    params: list[Any] = [since, until]
    if function is not None:
        where += " AND function = ?"
        params.append(function)
    candidates = conn.execute(
        "SELECT fingerprint, function, type, message, top_frame FROM error_groups"
        f" WHERE {where} ORDER BY count DESC LIMIT ?", (*params, limit * 4)
    ).fetchall()
    cold_sql = "" if cold is None else " AND cold_start = ?"
    cold_params = [] if cold is None else [1 if cold else 0]
    out = []
    for fp, fn, kind, message, frame in candidates:
        if by_version:
            key = (fp, since, until, cold)
            per_version = cache.get(key) if cache is not None else None
            if per_version is None:
                per_version = {
                    ver: (n, first, last) for ver, n, first, last in conn.execute(
                        "SELECT COALESCE(version, ''), COUNT(*), MIN(start_ms), MAX(start_ms)"
                        " FROM invocations WHERE fingerprint = ? AND start_ms >= ?"
                        f" AND start_ms < ?{cold_sql} GROUP BY 1",
                        (fp, since, until, *cold_params),
                    )
                }
                if cache is not None:
                    cache[key] = per_version
            count, first, last = per_version.get(version or "", (0, None, None))
            extra = f"{cold_sql} AND COALESCE(version, '') = ?"
            extra_params = [*cold_params, version or ""]
        else:
            count, first, last = conn.execute(
                "SELECT COUNT(*), MIN(start_ms), MAX(start_ms) FROM invocations"
                f" WHERE fingerprint = ? AND start_ms >= ? AND start_ms < ?{cold_sql}",
                (fp, since, until, *cold_params),
            ).fetchone()
            extra, extra_params = cold_sql, cold_params
        if not count:
            continue
        example = conn.execute(
            "SELECT request_id FROM invocations WHERE fingerprint = ? AND start_ms >= ?"
            f" AND start_ms < ?{extra} ORDER BY start_ms DESC LIMIT 1",
            (fp, since, until, *extra_params),
        ).fetchone()[0]
        out.append({
            "fingerprint": fp, "function": fn, "type": kind, "message": message,
            "top_frame": frame, "count": count, "first_ms": first, "last_ms": last,
            "example_request_id": example,
        })
    out.sort(key=lambda e: (-e["count"], -e["last_ms"]))
    return out[:limit]


def errors(conn: sqlite3.Connection, function: str | None = None,
           since_ms: float | None = None, until_ms: float | None = None,
           limit: int = MAX_ERROR_GROUPS, *, version: str | None = None) -> dict[str, Any]:
    """Error groups (by fingerprint) with their count, first and last time and an example
    request id in the window, most frequent first."""
    since, until = _bounds(since_ms, until_ms)
    limit = _limit(limit)
    groups = _error_groups(conn, function, since, until, version, version is not None, None,
                           limit)
    return {"since_ms": since, "until_ms": until, "errors": groups}


# --------------------------------------------------------------------------------------------
# dependencies and functions


def dependencies(conn: sqlite3.Connection, function: str | None = None,
                 since_ms: float | None = None, until_ms: float | None = None,
                 *, version: str | None = None) -> dict[str, Any]:
    """Every dependency of every function (or of one) in the window, the most time first."""
    since, until = _bounds(since_ms, until_ms)
    plan = _Plan(since, until)
    groups = _collect(conn, plan, function, version, False, None)
    out = []
    for group in groups.values():
        for dependency, (n, errs, total, blobs, sketch) in group.deps.items():
            merged = Sketch.merged(blobs).merge(sketch)
            p50, p95, p99 = merged.quantiles((0.5, 0.95, 0.99))
            out.append({
                "function": group.function,
                "dependency": dependency,
                "count": n,
                "p50_ms": _round(p50),
                "p95_ms": _round(p95),
                "p99_ms": _round(p99),
                "error_rate": _rate(errs, n),
                "total_ms": _round(total),
                "time_share": min(1.0, total / group.all_duration_sum)
                if group.all_duration_sum > 0 else None,
            })
    out.sort(key=lambda d: (-d["total_ms"], d["function"], d["dependency"]))
    return {"since_ms": since, "until_ms": until, "dependencies": out}


def functions(conn: sqlite3.Connection, since_ms: float | None = None,
              until_ms: float | None = None) -> dict[str, Any]:
    """The functions seen in the window with their counts, versions and last invocation."""
    since, until = _bounds(since_ms, until_ms)
    plan = _Plan(since, until)
    groups = _collect(conn, plan, None, None, True, None, dependencies=False)
    by_function: dict[str, dict[str, Any]] = {}
    for group in groups.values():
        entry = by_function.setdefault(group.function, {
            "function": group.function, "invocations": 0, "errors": 0, "timeouts": 0,
            "crashes": 0, "cold_starts": 0, "versions": [], "_last": -math.inf,
        })
        entry["invocations"] += group.n
        entry["errors"] += group.errors
        entry["timeouts"] += group.timeouts
        entry["crashes"] += group.crashed
        entry["cold_starts"] += group.cold_starts
        entry["versions"].append((group.last, group.version))
    out = []
    for name in sorted(by_function):
        entry = by_function[name]
        versions = sorted(entry.pop("versions"), key=lambda lv: (
            lv[0], float(lv[1]) if (lv[1] or "").isdigit() else -1.0), reverse=True)
        entry.pop("_last")
        entry["versions"] = [v for _, v in versions]
        n = entry["invocations"]
        entry["error_rate"] = _rate(entry["errors"], n)
        entry["cold_start_rate"] = _rate(entry["cold_starts"], n)
        entry["last_ms"] = conn.execute(
            "SELECT MAX(start_ms) FROM invocations WHERE function = ? AND start_ms < ?",
            (name, until),
        ).fetchone()[0]
        out.append(entry)
    return {"since_ms": since, "until_ms": until, "functions": out}


# --------------------------------------------------------------------------------------------
# One invocation, one trace, lists


_SUMMARY_COLUMNS = (
    "request_id", "function", "version", "start_ms", "duration_ms", "status", "cold_start",
    "proactive_init", "init_ms", "trigger_type", "error_type", "fingerprint", "memory_mb",
    "rss_peak_mb", "billed_ms", "source", "trace_id", "parent_span_id", "labels",
)
_SUMMARY_SELECT = ", ".join(_SUMMARY_COLUMNS)


def _summary(values: Iterable[Any]) -> dict[str, Any]:
    row = dict(zip(_SUMMARY_COLUMNS, values))
    row["cold_start"] = bool(row["cold_start"])
    row["proactive_init"] = bool(row["proactive_init"])
    row["labels"] = json.loads(row["labels"]) if row["labels"] else []
    return row


def _report(blob: bytes | None) -> dict[str, Any] | None:
    if not blob:
        return None
    return json.loads(zlib.decompress(blob))


_PLATFORM_ROW = (
    "request_id, function, version, log_stream, start_ms, duration_ms, status, cold_start,"
    " init_ms, memory_mb, architecture, trace_id, billed_ms, platform_duration_ms,"
    " platform_billed_ms, platform_max_memory_mb, platform_init_ms, source, report"
)


def _minimal_report(row: Mapping[str, Any]) -> dict[str, Any]:
    """A report-shaped view of a row that only Lambda's REPORT line told of."""
    end = row["start_ms"] + row["duration_ms"] if row["duration_ms"] is not None else None
    return {
        "schema": None,
        "source": "platform",
        "function": {"name": row["function"], "version": row["version"],
                     "memory_limit_mb": row["memory_mb"], "architecture": row["architecture"],
                     "log_stream": row["log_stream"]},
        "invocation": {"request_id": row["request_id"], "start_ms": row["start_ms"],
                       "end_ms": end, "duration_ms": row["duration_ms"],
                       "cold_start": bool(row["cold_start"]),
                       "init_duration_ms": row["init_ms"], "status": row["status"]},
        "error": None,
        "resources": {"sandbox_memory_peak_mb": row["platform_max_memory_mb"]},
        "metrics": [],
        "labels": [],
        "trace": {"trace_id": row["trace_id"], "span_id": None, "parent_span_id": None},
        "spans": [],
        "dropped_spans": 0,
        "logs": [],
    }


def show(conn: sqlite3.Connection, request_id: str,
         prices: Prices | None = None) -> dict[str, Any] | None:
    """One invocation: its stored report, Lambda's REPORT-line figures, its log lines (the
    report's and those ``ingest`` found), its billed duration and cost, and the other
    invocations of its trace by start; ``None`` when the request id is not stored."""
    found = conn.execute(
        f"SELECT {_PLATFORM_ROW} FROM invocations WHERE request_id = ?", (request_id,)
    ).fetchone()
    if found is None:
        return None
    row = dict(zip([c.strip() for c in _PLATFORM_ROW.split(",")], found))
    report = _report(row["report"]) or _minimal_report(row)
    platform = None
    if row["platform_duration_ms"] is not None or row["platform_billed_ms"] is not None:
        platform = {
            "duration_ms": row["platform_duration_ms"],
            "billed_ms": row["platform_billed_ms"],
            "max_memory_mb": row["platform_max_memory_mb"],
            "init_ms": row["platform_init_ms"],
            "memory_mb": row["memory_mb"],
        }
    related = []
    if row["trace_id"]:
        related = [_summary(r) for r in conn.execute(
            f"SELECT {_SUMMARY_SELECT} FROM invocations WHERE trace_id = ?"
            " AND request_id != ? ORDER BY start_ms LIMIT 200", (row["trace_id"], request_id)
        )]
    lines = [
        {"timestamp_ms": ts, "level": level, "logger": logger, "message": message,
         "source": "report" if seq < _INGESTED_SEQ else "log"}
        for ts, level, logger, message, seq in conn.execute(
            "SELECT ts_ms, level, logger, message, seq FROM logs WHERE request_id = ?"
            " ORDER BY ts_ms, seq", (request_id,)
        )
    ]
    billed = row["billed_ms"]
    return {
        "invocation": report,
        "platform": platform,
        "related": related,
        "logs": lines,
        "billed_ms": billed,
        "cost_usd": pricing.cost_usd(billed or 0.0, row["memory_mb"], row["architecture"],
                                     prices) if row["memory_mb"] else None,
    }


_INGESTED_SEQ = 1 << 32


def trace(conn: sqlite3.Connection, trace_id: str) -> dict[str, Any] | None:
    """Every stored invocation of a trace by start, each with its spans; ``None`` when none
    is stored."""
    rows = conn.execute(
        f"SELECT {_SUMMARY_SELECT}, report FROM invocations WHERE trace_id = ?"
        " ORDER BY start_ms LIMIT 500", (trace_id,)
    ).fetchall()
    if not rows:
        return None
    out = []
    for values in rows:
        item = _summary(values[:-1])
        report = _report(values[-1])
        item["spans"] = report.get("spans", []) if report else []
        item["error"] = report.get("error") if report else None
        out.append(item)
    start = out[0]["start_ms"]
    end = max((i["start_ms"] + (i["duration_ms"] or 0.0)) for i in out)
    return {"trace_id": trace_id, "start_ms": start, "duration_ms": _round(end - start),
            "invocations": out}


def _limit(limit: Any, default: int = 100) -> int:
    value = _number("limit", limit)
    if value is None:
        return default
    if value != int(value) or not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _offset(offset: Any) -> int:
    value = _number("offset", offset)
    if value is None:
        return 0
    if value != int(value) or value < 0:
        raise ValueError("offset must be a whole number >= 0")
    return int(value)


_STATUSES = ("ok", "error", "timeout", "crashed")
_INVOCATION_FILTERS = frozenset((
    "function", "status", "cold", "trigger", "version", "label", "since_ms", "until_ms",
    "slower_than_ms", "trace_id", "fingerprint", "error_type", "source",
))


def _merge_filters(filters: Mapping[str, Any] | None, more: Mapping[str, Any],
                   allowed: frozenset[str]) -> dict[str, Any]:
    merged = dict(filters or {})
    merged.update(more)
    unknown = sorted(set(merged) - allowed)
    if unknown:
        raise ValueError(f"unknown filter {unknown[0]!r}")
    return {k: v for k, v in merged.items() if v is not None and v != ""}


def invocations(conn: sqlite3.Connection, filters: Mapping[str, Any] | None = None,
                limit: int = 100, offset: int = 0, **more: Any) -> dict[str, Any]:
    """Stored invocations, newest first, filtered by any of ``function``, ``status`` (ok,
    error, timeout, crashed), ``cold`` (bool), ``trigger``, ``version``, ``label``,
    ``since_ms``, ``until_ms``, ``slower_than_ms``, ``trace_id``, ``fingerprint``,
    ``error_type``, ``source`` (agent, platform); ``more`` is true when another page
    follows."""
    f = _merge_filters(filters, more, _INVOCATION_FILTERS)
    limit = _limit(limit)
    offset = _offset(offset)
    where = []
    params: list[Any] = []
    for key, column in (("function", "function"), ("trigger", "trigger_type"),
                        ("version", "version"), ("trace_id", "trace_id"),
                        ("fingerprint", "fingerprint"), ("error_type", "error_type"),
                        ("source", "source")):
        if key in f:
            where.append(f"{column} = ?")
            params.append(str(f[key]))
    if "status" in f:
        status = str(f["status"])
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        where.append("status = ?")
        params.append(status)
    cold = _flag("cold", f.get("cold"))
    if cold is not None:
        where.append("cold_start = ?")
        params.append(1 if cold else 0)
    if "label" in f:
        where.append("labels IS NOT NULL AND EXISTS"
                     " (SELECT 1 FROM json_each(invocations.labels) WHERE value = ?)")
        params.append(str(f["label"]))
    since = _number("since_ms", f.get("since_ms"))
    until = _number("until_ms", f.get("until_ms"))
    if since is not None:
        where.append("start_ms >= ?")
        params.append(since)
    if until is not None:
        where.append("start_ms < ?")
        params.append(until)
    slower = _number("slower_than_ms", f.get("slower_than_ms"))
    if slower is not None:
        where.append("duration_ms > ?")
        params.append(slower)
    sql = f"SELECT {_SUMMARY_SELECT} FROM invocations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start_ms DESC, request_id LIMIT ? OFFSET ?"
    rows = conn.execute(sql, (*params, limit + 1, offset)).fetchall()
    return {
        "invocations": [_summary(r) for r in rows[:limit]],
        "limit": limit,
        "offset": offset,
        "more": len(rows) > limit,
    }


_LOG_FILTERS = frozenset(("function", "request_id", "level", "since_ms", "until_ms", "q",
                          "order"))
_LIKE_ESCAPE = re.compile(r"([\\%_])")


def logs(conn: sqlite3.Connection, filters: Mapping[str, Any] | None = None,
         limit: int = 100, offset: int = 0, **more: Any) -> dict[str, Any]:
    """Stored log lines filtered by any of ``function``, ``request_id``, ``level``,
    ``since_ms``, ``until_ms``, ``q`` (text the message contains); newest first unless
    ``order="asc"`` (the default for one request id)."""
    f = _merge_filters(filters, more, _LOG_FILTERS)
    limit = _limit(limit)
    offset = _offset(offset)
    where = []
    params: list[Any] = []
    for key in ("function", "request_id"):
        if key in f:
            where.append(f"{key} = ?")
            params.append(str(f[key]))
    if "level" in f:
        where.append("UPPER(level) = ?")
        params.append(str(f["level"]).upper())
    since = _number("since_ms", f.get("since_ms"))
    until = _number("until_ms", f.get("until_ms"))
    if since is not None:
        where.append("ts_ms >= ?")
        params.append(since)
    if until is not None:
        where.append("ts_ms < ?")
        params.append(until)
    if "q" in f:
        where.append("message LIKE ? ESCAPE '\\'")
        params.append("%" + _LIKE_ESCAPE.sub(r"\\\1", str(f["q"])) + "%")
    order = str(f.get("order") or ("asc" if "request_id" in f else "desc")).lower()
    if order not in ("asc", "desc"):
        raise ValueError("order must be asc or desc")
    sql = "SELECT request_id, function, ts_ms, level, logger, message, seq FROM logs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY ts_ms {order.upper()}, seq {order.upper()} LIMIT ? OFFSET ?"
    rows = conn.execute(sql, (*params, limit + 1, offset)).fetchall()
    return {
        "logs": [
            {"request_id": rid, "function": fn or None, "timestamp_ms": ts, "level": level,
             "logger": logger, "message": message,
             "source": "report" if seq < _INGESTED_SEQ else "log"}
            for rid, fn, ts, level, logger, message, seq in rows[:limit]
        ],
        "limit": limit,
        "offset": offset,
        "more": len(rows) > limit,
    }


# --------------------------------------------------------------------------------------------
# check


_CHECKS = {
    "p95_ms": lambda e: e["duration"]["all"]["p95_ms"],
    "error_rate": lambda e: e["error_rate"],
    "init_ms": lambda e: e["init_p95_ms"],
    "cold_start_rate": lambda e: e["cold_start_rate"],
    "cost_per_million": lambda e: e["cost"]["per_million_usd"],
    "agent_overhead_ms": lambda e: e["agent"]["overhead_p95_ms"],
}
_CHECK_ALIASES = {
    "max_p95_ms": "p95_ms", "max_error_rate": "error_rate", "max_init_ms": "init_ms",
    "max_cold_start_rate": "cold_start_rate", "max_cost_per_million": "cost_per_million",
    "max_agent_overhead_ms": "agent_overhead_ms", "max_regression_pct": "regression_pct",
}


def check(stats_entry: Mapping[str, Any] | None, thresholds: Mapping[str, Any],
          baseline: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each threshold against a stats entry: ``[{"check", "value", "threshold", "ok"}]``.

    Thresholds (any of): ``p95_ms`` (duration p95), ``error_rate``, ``init_ms`` (init p95),
    ``cold_start_rate``, ``cost_per_million`` (USD), ``agent_overhead_ms`` (p95), and
    ``regression_pct`` (how much slower the p95 may be than ``baseline``'s, in %). The
    ``max_``-prefixed names of the command-line flags are accepted too. A check breaks when
    its value is above the threshold; no invocations (or no baseline) breaks every check, a
    figure with no data (no cold start for ``init_ms``) passes with a note.
    """
    wanted: dict[str, float] = {}
    for key, value in thresholds.items():
        if value is None:
            continue
        name = _CHECK_ALIASES.get(key, key)
        if name not in _CHECKS and name != "regression_pct":
            raise ValueError(f"unknown check {key!r}")
        number = _number(key, value)
        if number is None or number < 0:
            raise ValueError(f"{key} must be a number >= 0")
        wanted[name] = number
    results = []
    empty = not stats_entry or not stats_entry.get("invocations")
    for name in [*_CHECKS, "regression_pct"]:
        if name not in wanted:
            continue
        threshold = wanted[name]
        if empty:
            results.append({"check": name, "value": None, "threshold": threshold, "ok": False,
                            "note": "no invocations in the window"})
            continue
        assert stats_entry is not None
        if name == "regression_pct":
            current = stats_entry["duration"]["all"]["p95_ms"]
            base = baseline["duration"]["all"]["p95_ms"] if baseline and baseline.get(
                "invocations") else None
            if base is None or not base or current is None:
                results.append({"check": name, "value": None, "threshold": threshold,
                                "ok": False, "note": "the baseline has no invocations"})
                continue
            value = (current - base) / base * 100.0
            results.append({"check": name, "value": round(value, 2), "threshold": threshold,
                            "ok": value <= threshold, "baseline_p95_ms": base,
                            "p95_ms": current})
            continue
        value = _CHECKS[name](stats_entry)
        if value is None:
            results.append({"check": name, "value": None, "threshold": threshold, "ok": True,
                            "note": "no data"})
            continue
        results.append({"check": name, "value": value, "threshold": threshold,
                        "ok": value <= threshold})
    return results

"""``lambdascope stats``: per function over a window, the figures of ``queries.stats`` as
readable tables (the slowest imports of the cold starts among them), or as they are with
``--json``."""

from __future__ import annotations

from typing import Any

from ._common import (
    clip,
    clip_left,
    die,
    fmt_count,
    fmt_mb,
    fmt_ms,
    fmt_price,
    fmt_rate,
    fmt_time,
    fmt_usd,
    open_source,
    out,
    parse_number,
    parse_window,
    print_json,
    table,
)


def run(args: Any) -> int:
    since_ms, until_ms = parse_window(args)
    price_gb_s = parse_number(args.price_gb_s, "--price-gb-s")
    price_request = parse_number(args.price_request, "--price-request")
    if args.top < 0:
        die(f"--top {args.top}: must be 0 or more")
    cold = True if args.cold else (False if args.warm else None)
    with open_source(args) as source:
        result = source.stats(
            function=args.function, since_ms=since_ms, until_ms=until_ms, cold=cold,
            by=args.by, price_gb_s=price_gb_s, price_request=price_request,
        )
    if args.json:
        print_json(result)
        return 0
    render(result, args)
    return 0


def render(result: dict[str, Any], args: Any) -> None:
    entries = result.get("functions") or []
    window = f"{fmt_time(result.get('since_ms'))} to {fmt_time(result.get('until_ms'))}"
    if not entries:
        who = f"of {args.function} " if args.function else ""
        out(f"no invocations {who}from {window} (widen the window with --since)")
        return
    selection = " (cold starts only)" if args.cold else (" (warm only)" if args.warm else "")
    out(f"{window}{selection}")
    if args.by == "version":
        _versions_side_by_side(entries)
    for entry in entries:
        out()
        _entry(entry, args.top)


def _title(entry: dict[str, Any]) -> str:
    version = entry.get("version")
    return entry["function"] + (f"  version {version}" if version is not None else "")


def _versions_side_by_side(entries: list[dict[str, Any]]) -> None:
    by_function: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_function.setdefault(entry["function"], []).append(entry)
    for function, versions in by_function.items():
        if len(versions) < 2:
            continue
        out()
        out(f"{function}: versions side by side (newest first)")
        rows = []
        for e in versions:
            d = (e.get("duration") or {}).get("all") or {}
            cost = e.get("cost") or {}
            rows.append([
                str(e.get("version")), fmt_count(e.get("invocations")),
                fmt_rate(e.get("error_rate")), fmt_rate(e.get("cold_start_rate")),
                fmt_ms(d.get("p50_ms")), fmt_ms(d.get("p95_ms")), fmt_ms(d.get("p99_ms")),
                fmt_ms(e.get("init_p95_ms")), fmt_usd(cost.get("per_million_usd")),
            ])
        for line in table(["version", "invocations", "errors", "cold", "p50", "p95", "p99",
                           "init p95", "per million"], rows, right=set(range(1, 9))):
            out(line)


def _entry(e: dict[str, Any], top: int) -> None:
    out(_title(e))
    n = e.get("invocations") or 0
    cold_line = (f"cold starts {fmt_rate(e.get('cold_start_rate'))} "
                 f"({fmt_count(e.get('cold_starts'))})")
    if e.get("proactive_inits"):
        cold_line += f", {fmt_count(e.get('proactive_inits'))} proactive inits apart"
    out(f"  invocations {fmt_count(n)}   errors {fmt_rate(e.get('error_rate'))}   "
        f"timeouts {fmt_rate(e.get('timeout_rate'))}   crashed {fmt_rate(e.get('crash_rate'))}   "
        f"{cold_line}")

    duration = e.get("duration") or {}
    rows = []
    for key in ("all", "cold", "warm"):
        d = duration.get(key)
        if not d or not d.get("count"):
            continue
        rows.append([key, fmt_count(d.get("count")), fmt_ms(d.get("p50_ms")),
                     fmt_ms(d.get("p95_ms")), fmt_ms(d.get("p99_ms")), fmt_ms(d.get("p999_ms"))])
    if rows:
        out("  duration")
        for line in table(["", "count", "p50", "p95", "p99", "p99.9"], rows,
                          right={1, 2, 3, 4, 5}, indent="    "):
            out(line)
    if e.get("init_p50_ms") is not None or e.get("init_p95_ms") is not None:
        out(f"  init         p50 {fmt_ms(e.get('init_p50_ms'))} · "
            f"p95 {fmt_ms(e.get('init_p95_ms'))}")

    memory = e.get("memory") or {}
    right = e.get("right_sizing") or {}
    if memory:
        parts = [f"configured {fmt_mb(memory.get('configured_mb'))}",
                 f"peak p99 {fmt_mb(memory.get('peak_p99_mb'))}",
                 f"max {fmt_mb(memory.get('peak_max_mb'))}"]
        if memory.get("sandbox_peak_max_mb") is not None:
            parts.append(f"sandbox max {fmt_mb(memory.get('sandbox_peak_max_mb'))}")
        trend = memory.get("warm_trend_mb_per_hour")
        if trend is not None:
            parts.append(f"warm trend {trend:+.1f} MB/h")
        if memory.get("leak_suspected"):
            parts.append(f"leak suspected in {fmt_count(memory.get('leak_suspected'))} "
                         f"invocations")
        out("  memory       " + " · ".join(parts))
    if right.get("memory_suggested_mb") is not None or right.get("memory_reason"):
        suggestion = (f"suggested {fmt_mb(right.get('memory_suggested_mb'))}"
                      if right.get("memory_suggested_mb") is not None else "no suggestion")
        reason = right.get("memory_reason")
        out(f"               {suggestion}" + (f": {reason}" if reason else ""))
    if right.get("timeout_ms") is not None:
        out(f"  timeout      {fmt_ms(right.get('timeout_ms'))} configured · duration p99.9 "
            f"{fmt_ms(right.get('duration_p999_ms'))} · headroom "
            f"{fmt_rate(right.get('timeout_headroom_share'))}")

    cost = e.get("cost") or {}
    if cost:
        prices = (f"{cost.get('architecture') or 'x86_64'} at "
                  f"{fmt_price(cost.get('price_gb_s_usd'))}/GB-s + "
                  f"{fmt_price(cost.get('price_request_usd'))}/request")
        out(f"  cost         {fmt_usd(cost.get('per_invocation_usd'))} per invocation · "
            f"{fmt_usd(cost.get('per_million_usd'))} per million · "
            f"{fmt_usd(cost.get('total_usd'))} in all · "
            f"{fmt_rate(cost.get('cold_start_share'))} in cold starts ({prices})")
    agent = e.get("agent") or {}
    if agent.get("overhead_p50_ms") is not None or agent.get("overhead_p95_ms") is not None:
        out(f"  agent        overhead p50 {fmt_ms(agent.get('overhead_p50_ms'))} · p95 "
            f"{fmt_ms(agent.get('overhead_p95_ms'))}")

    dependencies = (e.get("dependencies") or [])[:top] if top else []
    if dependencies:
        out("  dependencies")
        rows = [[clip(d.get("dependency"), 48), fmt_count(d.get("count")),
                 fmt_ms(d.get("p50_ms")), fmt_ms(d.get("p95_ms")), fmt_rate(d.get("error_rate")),
                 fmt_rate(d.get("time_share")), fmt_rate(d.get("cost_share"))]
                for d in dependencies]
        for line in table(["", "count", "p50", "p95", "errors", "time", "cost"], rows,
                          right={1, 2, 3, 4, 5, 6}, indent="    "):
            out(line)
        more = len(e.get("dependencies") or []) - len(dependencies)
        if more > 0:
            out(f"    … {more} more (--top N)")

    _slow_imports(e, top)

    errors = (e.get("errors") or [])[:top] if top else []
    if errors:
        out("  errors")
        rows = [[fmt_count(g.get("count")), clip_left(g.get("type"), 32),
                 clip(g.get("message"), 48), clip_left(g.get("top_frame"), 36),
                 fmt_time(g.get("first_ms"))[:19], fmt_time(g.get("last_ms"))[:19],
                 str(g.get("example_request_id") or "-")] for g in errors]
        for line in table(["count", "type", "message", "top frame", "first seen", "last seen",
                           "example"], rows, right={0}, indent="    "):
            out(line)
        more = len(e.get("errors") or []) - len(errors)
        if more > 0:
            out(f"    … {more} more groups (--top N)")


def _slow_imports(e: dict[str, Any], top: int) -> None:
    """The modules whose import made the cold starts slow: per module, over the sandboxes
    diagnosed in the window (each sandbox's first report lists its slowest imports)."""
    found = (e.get("slow_imports") or [])[:top] if top else []
    if not found:
        return
    diagnosed = e.get("diagnosed_sandboxes") or 0
    out(f"  slowest imports (of {fmt_count(diagnosed)} sandbox{'' if diagnosed == 1 else 'es'} "
        f"diagnosed; unused: not used by the first invocation)")
    rows = [[clip(i.get("module"), 40),
             f"{fmt_count(i.get('sandboxes'))} ({fmt_rate(i.get('sandbox_share'))})",
             fmt_ms(i.get("median_ms")), fmt_ms(i.get("p95_ms")), fmt_ms(i.get("max_ms")),
             fmt_rate(i.get("unused_share"))] for i in found]
    for line in table(["module", "sandboxes", "median", "p95", "max", "unused"], rows,
                      right={1, 2, 3, 4, 5}, indent="    "):
        out(line)
    more = len(e.get("slow_imports") or []) - len(found)
    if more > 0:
        out(f"    … {more} more (--top N)")

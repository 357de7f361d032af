"""The pages: each a function of a read connection and the page's parameters, returning the
``<main>`` content (see :func:`.layout.page`). The figures come from
:mod:`~lambdascope.collector.queries` and :mod:`~lambdascope.collector.views` (rollups for
anything over a window), the markup from :mod:`.markup` (escaped by default) and
:mod:`.charts`.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import profiles, queries, views
from ..store import dependency_of
from . import charts, graph
from .charts import Overlay, Series
from .markup import (
    DASH,
    Html,
    el,
    fmt_count,
    fmt_duration_words,
    fmt_mb,
    fmt_ms,
    fmt_rate,
    fmt_time,
    fmt_usd,
    join,
    path_segment,
    url,
)
from .params import MAX_PAGE, Query

__all__ = ["PAGES", "NotFound", "Page", "Rendered"]

#: Presets of the time-range picker.
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d")
DEFAULT_WINDOW = "24h"
DEFAULT_LIMIT = 50
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Colours of the per-sandbox lines (classes s1..s8 of the stylesheet).
PALETTE = 8


class NotFound(Exception):
    """Nothing at this URL: the one line shown on the 404 page."""


@dataclass
class Rendered:
    title: str
    body: Html
    heading: Html | str | None = None
    subtitle: Html | str | None = None


@dataclass
class Page:
    """A page: its renderer, the parameters it takes, their defaults, its navigation key."""

    render: Callable[[sqlite3.Connection, Query, dict[str, Any]], Rendered]
    params: tuple[str, ...]
    defaults: dict[str, str] = field(default_factory=dict)
    nav: str | None = None


# --------------------------------------------------------------------------------------------
# Pieces


def fn_url(name: str, **params: Any) -> str:
    return url(f"/functions/{path_segment(name)}", params)


def inv_url(request_id: str) -> str:
    return f"/invocations/{path_segment(request_id)}"


def th(label: str, sort: str | None = "num", title: str | None = None) -> Html:
    return el("th", label, data_sort=sort, scope="col", title=title,
              tabindex="0" if sort else None)


def td(content: Any, value: Any = None, css: str | None = None,
       title: str | None = None) -> Html:
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    return el("td", content, data_value=value, class_=css, title=title)


def data_table(name: str, head: Sequence[Html], bodies: Sequence[Sequence[Html]],
               empty: str, *, body_attrs: Sequence[Mapping[str, Any]] | None = None) -> Html:
    if not any(bodies):
        return el("p", empty, class_="empty")
    tbodies = [
        el("tbody", rows, **(body_attrs[i] if body_attrs else {}))
        for i, rows in enumerate(bodies) if rows
    ]
    return el("div", el("table", el("thead", el("tr", head)), tbodies, class_="data",
                        data_table=name), class_="scroll")


def status_badge(status: str | None, cold: bool | None = None) -> Html:
    return join(el("span", status or DASH, class_=f"badge status-{status or 'none'}"),
                el("span", "cold", class_="badge cold") if cold else None)


def card(label: str, value: str, href: str | None = None, note: str | None = None,
         css: str | None = None) -> Html:
    figure = el("a", value, href=href) if href else value
    return el("div", el("div", label, class_="card-label"),
              el("div", figure, class_="card-value"),
              el("div", note, class_="card-note") if note else None,
              class_=" ".join(x for x in ("card", css) if x))


def window_line(q: Query, since_ms: float | None, until_ms: float) -> Html:
    if since_ms is None:
        return el("p", f"Up to {fmt_time(until_ms)} UTC", class_="window")
    return el("p", f"{fmt_time(since_ms, seconds=False)} → {fmt_time(until_ms, seconds=False)}"
                   f" UTC ({fmt_duration_words(until_ms - since_ms)})", class_="window")


def _input(q: Query, name: str, label: str, *, placeholder: str = "", kind: str = "text",
           datalist: str | None = None, size: int | None = None) -> Html:
    return el("label", el("span", label), el("input", name=name, type=kind,
                                             value=q.raw.get(name, ""),
                                             placeholder=placeholder or None, list=datalist,
                                             size=size, autocomplete="off"))


def _select(q: Query, name: str, label: str, options: Iterable[tuple[str, str]],
            blank: str = "any") -> Html:
    current = q.raw.get(name, "")
    if name == "status" and current == "crash":
        current = "crashed"
    opts = [el("option", blank, value="")]
    values = []
    for value, text in options:
        values.append(value)
        opts.append(el("option", text, value=value, selected=value == current))
    if current and current not in values:
        opts.append(el("option", current, value=current, selected=True))
    return el("label", el("span", label), el("select", opts, name=name))


def _time_fields(q: Query, default_since: str | None) -> list[Html]:
    return [
        _input(q, "since", "Since", placeholder=default_since or "e.g. 1h", datalist="ranges",
               size=10),
        _input(q, "until", "Until", placeholder="now", size=14),
        el("datalist", [el("option", value=r) for r in RANGES], id="ranges"),
    ]


def filter_form(q: Query, action: str, fields: Sequence[Html],
                hidden: Sequence[str] = ()) -> Html:
    keep = [el("input", type="hidden", name=name, value=q.raw[name])
            for name in hidden if name in q.raw]
    return el("form", fields, keep, el("button", "Apply", type="submit"),
              el("a", "Reset", href=action, class_="reset"),
              class_="filters", method="get", action=action)


def range_links(q: Query) -> Html:
    current = q.raw.get("since")
    links = [el("a", r, href=q.link(since=r, until=None, offset=None),
                class_="current" if current == r and "until" not in q.raw else None)
             for r in RANGES]
    return el("div", el("span", "Range"), links, class_="ranges")


def pager(q: Query, offset: int, limit: int, shown: int, more: bool) -> Html:
    prev_link = el("a", "← Newer", href=q.link(offset=max(0, offset - limit) or None),
                   rel="prev") if offset > 0 else None
    next_link = el("a", "Older →", href=q.link(offset=offset + limit), rel="next") if more \
        else None
    what = f"{offset + 1} to {offset + shown}" if shown else "none"
    return el("div", prev_link, el("span", f"Showing {what}", class_="count"), next_link,
              class_="pager")


def _window(q: Query) -> tuple[float | None, float]:
    return q.since_ms, q.until_ms if q.until_ms is not None else q.now_ms


def _functions_options(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(name, name) for name in views.function_names(conn)]


def _empty_window(q: Query, what: str) -> Html:
    wider = [el("a", r, href=q.link(since=r, until=None)) for r in ("7d", "30d", "365d")]
    return el("div", el("p", f"No {what} in this window."),
              el("p", "Try a wider one: ", join(*[join(a, " ") for a in wider])),
              class_="empty")


# --------------------------------------------------------------------------------------------
# Overview


def overview(conn: sqlite3.Connection, q: Query, ctx: dict[str, Any]) -> Rendered:
    since, until = _window(q)
    result = queries.stats(conn, since_ms=since, until_ms=until, prices=ctx.get("prices"),
                           imports=False)
    entries = result["functions"]
    window = q.window()
    form = filter_form(q, "/", _time_fields(q, DEFAULT_WINDOW))
    top = join(window_line(q, since, until), form, range_links(q))
    if not entries:
        return Rendered("Overview", join(top, _empty_window(q, "invocations")),
                        heading="Functions")
    trend = views.trends(conn, since if since is not None else 0.0, until)
    services = views.services(conn, [e["function"] for e in entries], until)
    total = sum(e["invocations"] for e in entries)
    errors = sum(round((e["error_rate"] or 0) * e["invocations"]) for e in entries)
    colds = sum(e["cold_starts"] for e in entries)
    cost = sum(e["cost"]["total_usd"] for e in entries)
    cards = el("div", [
        card("Invocations", fmt_count(total), url("/invocations", window)),
        card("Error rate", fmt_rate(errors / total if total else None),
             url("/invocations", {**window, "status": "error"}), f"{fmt_count(errors)} errors",
             css="bad" if total and errors / total >= 0.05 else None),
        card("Cold starts", fmt_rate(colds / total if total else None),
             url("/invocations", {**window, "cold": "true"}), f"{fmt_count(colds)} cold"),
        card("Estimated cost", fmt_usd(cost), note="on-demand prices, this window"),
    ], class_="cards")
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault(services.get(entry["function"]) or "", []).append(entry)
    head = [th("Function", "text"), th("Service", "text"), th("Invocations"),
            th("Errors", title="error rate"), th("Cold starts", title="cold-start rate"),
            th("p95 cold"), th("p95 warm"),
            th("Memory peak / limit", title="the sandbox's peak (Lambda's Max Memory Used) "
               "where known, else the process RSS peak"),
            th("Est. cost"), th("Trend", None)]
    bodies = []
    attrs = []
    bucket_ms = trend["bucket_ms"]
    for service in sorted(groups, key=lambda s: (s == "", s)):
        rows = []
        for e in groups[service]:
            name = e["function"]
            f_window = {**window, "function": name}
            peak = e["memory"]["sandbox_peak_max_mb"] or e["memory"]["peak_max_mb"]
            limit = e["memory"]["configured_mb"]
            counts = trend["functions"].get(name, [])
            spark_title = (f"{name}: invocations (line) and errors (red) per "
                           f"{fmt_duration_words(bucket_ms)}")
            rows.append(el("tr", [
                td(el("a", name, href=fn_url(name, **window)), name),
                td(service or DASH, service),
                td(el("a", fmt_count(e["invocations"]), href=url("/invocations", f_window)),
                   e["invocations"]),
                td(el("a", fmt_rate(e["error_rate"]),
                      href=url("/invocations", {**f_window, "status": "error"})),
                   e["error_rate"], "bad" if (e["error_rate"] or 0) >= 0.05 else None),
                td(el("a", fmt_rate(e["cold_start_rate"]),
                      href=url("/invocations", {**f_window, "cold": "true"})),
                   e["cold_start_rate"]),
                td(fmt_ms(e["duration"]["cold"]["p95_ms"]), e["duration"]["cold"]["p95_ms"]),
                td(fmt_ms(e["duration"]["warm"]["p95_ms"]), e["duration"]["warm"]["p95_ms"]),
                td(join(charts.meter(peak, limit, f"{fmt_mb(peak)} of {fmt_mb(limit)}"),
                        el("span", f"{fmt_mb(peak)} / {fmt_mb(limit)}", class_="meter-text")),
                   peak / limit if peak and limit else None),
                td(fmt_usd(e["cost"]["total_usd"]), e["cost"]["total_usd"],
                   title=f"{fmt_usd(e['cost']['per_million_usd'])} per million invocations"),
                td(el("a", charts.sparkline(counts, spark_title), href=fn_url(name, **window),
                      class_="spark-link", aria_label=f"{name} trend")),
            ]))
        bodies.append(rows)
        attrs.append({"data_service": service or "(none)"})
    table = data_table("functions", head, bodies, "No functions.", body_attrs=attrs)
    return Rendered("Overview", join(top, cards, table), heading="Functions")


# --------------------------------------------------------------------------------------------
# One function


def _bucket_title(point: Mapping[str, Any], bucket_ms: int, lines: Sequence[str]) -> str:
    head = f"{fmt_time(point['start_ms'], seconds=False)} UTC, {fmt_duration_words(bucket_ms)}"
    return "\n".join([head, f"{fmt_count(point['invocations'])} invocations", *lines])


def function_page(conn: sqlite3.Connection, q: Query, ctx: dict[str, Any]) -> Rendered:
    name = ctx["name"]
    if not views.seen(conn, name):
        raise NotFound(f"no invocation of a function named {name!r} is stored")
    version = q.get("version")
    since, until = _window(q)
    window = q.window()
    base = f"/functions/{path_segment(name)}"
    form = filter_form(q, base, [*_time_fields(q, DEFAULT_WINDOW),
                                 _input(q, "version", "Version", size=8)])
    top = join(window_line(q, since, until), form, range_links(q))
    prices = ctx.get("prices")
    # The versions side by side (every version of the window); the page's figures are one of
    # them when a version is chosen or there is only one, else the function's whole.
    versions = queries.stats(conn, function=name, since_ms=since, until_ms=until,
                             by="version", prices=prices, imports=False)["functions"]
    if version is not None:
        stats = [v for v in versions if (v["version"] or "") == version]
    elif len(versions) == 1:
        stats = [{**versions[0], "version": None}]
    else:
        stats = queries.stats(conn, function=name, since_ms=since, until_ms=until,
                              prices=prices, imports=False)["functions"]
    heading = join(name, el("span", f"version {version}", class_="badge version")
                   if version else None)
    if not stats:
        return Rendered(name, join(top, _empty_window(q, "invocations of this function")),
                        heading=heading)
    e = stats[0]
    inv_base = {**window, "function": name, "version": version}
    service = views.services(conn, [name], until).get(name)
    sub = join(
        f"service {service}" if service else None,
        f" · {e['cost']['architecture']}",
        f" · {e['memory']['configured_mb']} MB" if e["memory"]["configured_mb"] else None,
        " · ", el("a", "its invocations", href=url("/invocations", inv_base)),
        " · ", el("a", "its logs", href=url("/logs", {**window, "function": name})),
        " · ", el("a", "on the map", href=url("/map", {**window, "function": name})),
    )
    cards = el("div", [
        card("Invocations", fmt_count(e["invocations"]), url("/invocations", inv_base)),
        card("Error rate", fmt_rate(e["error_rate"]),
             url("/invocations", {**inv_base, "status": "error"}),
             f"timeouts {fmt_rate(e['timeout_rate'])}",
             css="bad" if (e["error_rate"] or 0) >= 0.05 else None),
        card("Cold starts", fmt_rate(e["cold_start_rate"]),
             url("/invocations", {**inv_base, "cold": "true"}),
             f"init p95 {fmt_ms(e['init_p95_ms'])}"),
        card("p95 warm", fmt_ms(e["duration"]["warm"]["p95_ms"]),
             note=f"p50 {fmt_ms(e['duration']['warm']['p50_ms'])}"),
        card("p95 cold", fmt_ms(e["duration"]["cold"]["p95_ms"]),
             note=f"p50 {fmt_ms(e['duration']['cold']['p50_ms'])}"),
        card("Estimated cost", fmt_usd(e["cost"]["total_usd"]),
             note=f"{fmt_usd(e['cost']['per_million_usd'])} per million"),
    ], class_="cards")
    series = views.timeseries(conn, name, since if since is not None else 0.0, until,
                              version=version)
    memory = views.sandbox_memory(conn, name, series["since_ms"], until, version=version)
    body = join(top, cards, _function_charts(name, series, memory, e, inv_base),
                _errors_section(e, inv_base),
                _versions_section(versions, name, window),
                _dependencies_section(e, name, window),
                _cold_start_section(conn, name, version, since, until),
                _cost_section(e))
    return Rendered(name, body, heading=heading, subtitle=sub)


def _function_charts(name: str, series: Mapping[str, Any], memory: Mapping[str, Any],
                     entry: Mapping[str, Any], inv_base: Mapping[str, Any]) -> Html:
    points = series["points"]
    width = series["bucket_ms"]
    x0 = points[0]["start_ms"] if points else series["since_ms"]
    x1 = points[-1]["end_ms"] if points else series["until_ms"]

    def pts(key: str) -> list[tuple[float, float, float | None]]:
        return [(p["start_ms"], p["end_ms"], p[key]) for p in points]

    def overlays(extra: Mapping[str, str], lines: Callable[[Mapping[str, Any]], list[str]]
                 ) -> list[Overlay]:
        base = url("/invocations", {**inv_base, **extra, "since": None, "until": None})
        base += "&" if "?" in base else "?"
        out = []
        for p in points:
            if not p["invocations"]:
                continue
            since = max(p["start_ms"], series["since_ms"])
            until = min(p["end_ms"], series["until_ms"])
            out.append(Overlay(p["start_ms"], p["end_ms"],
                               f"{base}since={since:.0f}&until={until:.0f}",
                               _bucket_title(p, width, lines(p))))
        return out

    invocations = charts.time_chart(
        "invocations", x0, x1,
        [Series("invocations", "s-count", pts("invocations"), kind="bars"),
         Series("errors", "s-error", pts("errors"), kind="bars")],
        fmt_y=lambda v: f"{v:,.0f}",
        overlays=overlays({}, lambda p: [f"{fmt_count(p['errors'])} errors",
                                         f"{fmt_count(p['cold_starts'])} cold starts"]),
        title="Invocations and errors")
    latency = charts.time_chart(
        "latency", x0, x1,
        [Series("warm p50", "s-warm", pts("warm_p50_ms"), extra=["thin"]),
         Series("warm p95", "s-warm", pts("warm_p95_ms")),
         Series("cold p50", "s-cold", pts("cold_p50_ms"), extra=["thin"]),
         Series("cold p95", "s-cold", pts("cold_p95_ms"))],
        fmt_y=fmt_ms,
        overlays=overlays({}, lambda p: [
            f"warm p50 {fmt_ms(p['warm_p50_ms'])}, p95 {fmt_ms(p['warm_p95_ms'])}",
            f"cold p50 {fmt_ms(p['cold_p50_ms'])}, p95 {fmt_ms(p['cold_p95_ms'])}"]),
        title="Latency")
    cold = charts.time_chart(
        "cold-starts", x0, x1,
        [Series("cold-start rate", "s-cold", pts("cold_start_rate"), kind="bars")],
        fmt_y=fmt_rate,
        overlays=overlays({"cold": "true"}, lambda p: [
            f"{fmt_count(p['cold_starts'])} cold starts ({fmt_rate(p['cold_start_rate'])})"]),
        title="Cold-start rate")
    init = charts.time_chart(
        "init", x0, x1,
        [Series("init p50", "s-init", pts("init_p50_ms"), extra=["thin"]),
         Series("init p95", "s-init", pts("init_p95_ms"))],
        fmt_y=fmt_ms,
        overlays=overlays({"cold": "true"}, lambda p: [
            f"init p50 {fmt_ms(p['init_p50_ms'])}, p95 {fmt_ms(p['init_p95_ms'])}"]),
        title="Init duration")
    boxes = memory["sandboxes"]
    mem_series = [
        Series(_short_stream(b["log_stream"]), f"s{i % PALETTE + 1}",
               [(t, t, v) for t, v in b["points"]])
        for i, b in enumerate(boxes)
    ]
    mem_series.append(Series("warm mean", "s-mean", pts("rss_end_mean_mb"), extra=["dashed"]))
    limit = entry["memory"]["configured_mb"]
    peak = max((b["rss_peak_max_mb"] or 0 for b in boxes), default=0)
    hlines = [(float(limit), f"limit {limit} MB")] if limit and peak >= 0.25 * limit else []
    mem_chart = charts.time_chart(
        "memory", x0, x1, mem_series, fmt_y=fmt_mb, hlines=hlines, width=1280, height=260,
        overlays=overlays({}, lambda p: [
            f"warm mean RSS {fmt_mb(p['rss_end_mean_mb'])}",
            f"sandbox peak {fmt_mb(p['sandbox_peak_max_mb'])}"]),
        title="Memory per sandbox")
    note = []
    if memory["sampled"]:
        note.append(f"a sample of {fmt_count(memory['rows'])} invocations spread over the window")
    if memory["hidden"]:
        note.append(f"{memory['hidden']} more sandboxes not drawn")
    if limit and not hlines:
        note.append(f"the configured size, {limit} MB, is far above")
    trend = entry["memory"]["warm_trend_mb_per_hour"]
    mem_caption = join(
        "End-of-invocation RSS per sandbox (a leak is a rising line); dashed: the warm mean. ",
        f"Warm trend {trend:+.2f} MB/h. " if trend is not None else None,
        f"({'; '.join(note)})" if note else None,
    )
    return el("section", el("h2", "Over time", class_="section"), el("div", [
        _chart_box("Invocations and errors", invocations,
                   f"per {fmt_duration_words(width)}; click a bar for its invocations"),
        _chart_box("Latency, cold and warm", latency, "p50 thin, p95 thick"),
        _chart_box("Cold-start rate", cold, None),
        _chart_box("Init duration", init, "cold starts and proactive initialisations"),
        _chart_box("Memory", mem_chart, mem_caption, wide=True),
    ], class_="charts"), _sandbox_table(boxes), class_="over-time")


def _chart_box(title: str, chart: Html, caption: Html | str | None, *, wide: bool = False
               ) -> Html:
    return el("figure", el("figcaption", el("strong", title),
                           el("span", caption, class_="caption") if caption else None),
              chart, class_="chart-box wide" if wide else "chart-box")


def _short_stream(stream: str | None) -> str:
    if not stream:
        return "unknown sandbox"
    tail = stream.rsplit("]", 1)[-1]
    return tail[:8] if tail else stream[-8:]


def _sandbox_table(boxes: Sequence[Mapping[str, Any]]) -> Html:
    if not boxes:
        return join()
    rows = []
    for i, b in enumerate(boxes):
        slope = b["slope_mb_per_hour"]
        rising = slope is not None and slope > 1.0 and b["growth_mb"] > 5.0
        rows.append(el("tr", [
            td(join(el("span", "", class_=f"swatch s{i % PALETTE + 1}"),
                    el("a", _short_stream(b["log_stream"]), href=inv_url(b["last_request_id"]),
                       title=b["log_stream"] or "")), b["log_stream"]),
            td(fmt_count(b["invocations"]), b["invocations"]),
            td(fmt_time(b["first_ms"]), b["first_ms"]),
            td(fmt_time(b["last_ms"]), b["last_ms"]),
            td(f"{fmt_mb(b['rss_first_mb'])} → {fmt_mb(b['rss_last_mb'])}", b["rss_last_mb"]),
            td(f"{b['growth_mb']:+.1f} MB", b["growth_mb"], "bad" if rising else None),
            td(f"{slope:+.2f}" if slope is not None else DASH, slope,
               "bad" if rising else None),
        ], class_="rising" if rising else None))
    head = [th("Sandbox", "text"), th("Points"), th("First seen"), th("Last seen"),
            th("RSS first → last"), th("Growth"), th("MB / hour")]
    return el("details", el("summary", f"Sandboxes ({len(boxes)})"),
              data_table("sandboxes", head, [rows], ""), class_="sandboxes", open=True)


def _errors_section(e: Mapping[str, Any], inv_base: Mapping[str, Any]) -> Html:
    rows = []
    for g in e["errors"]:
        text = f"{g['type'] or 'Error'}: {g['message'] or ''}"
        rows.append(el("tr", [
            td(el("a", text, href=inv_url(g["example_request_id"]),
                  title="an example invocation"), text),
            td(el("code", g["top_frame"] or DASH), g["top_frame"] or ""),
            td(el("a", fmt_count(g["count"]), href=url("/invocations", {
                **inv_base, "fingerprint": g["fingerprint"]})), g["count"]),
            td(fmt_time(g["first_ms"]), g["first_ms"]),
            td(fmt_time(g["last_ms"]), g["last_ms"]),
        ]))
    head = [th("Error", "text"), th("Top frame", "text"), th("Count"), th("First seen"),
            th("Last seen")]
    return el("section", el("h2", "Errors by fingerprint", class_="section"),
              data_table("errors", head, [rows], "No errors in this window."))


def _versions_section(entries: Sequence[Mapping[str, Any]], name: str,
                      window: Mapping[str, str]) -> Html:
    rows = []
    for v in entries:
        version = v["version"]
        rows.append(el("tr", [
            td(el("a", version or "(none)", href=fn_url(name, **window, version=version)),
               version or ""),
            td(el("a", fmt_count(v["invocations"]), href=url("/invocations", {
                **window, "function": name, "version": version})), v["invocations"]),
            td(fmt_rate(v["error_rate"]), v["error_rate"],
               "bad" if (v["error_rate"] or 0) >= 0.05 else None),
            td(fmt_rate(v["cold_start_rate"]), v["cold_start_rate"]),
            td(fmt_ms(v["duration"]["all"]["p50_ms"]), v["duration"]["all"]["p50_ms"]),
            td(fmt_ms(v["duration"]["all"]["p95_ms"]), v["duration"]["all"]["p95_ms"]),
            td(fmt_ms(v["duration"]["all"]["p99_ms"]), v["duration"]["all"]["p99_ms"]),
            td(fmt_ms(v["init_p95_ms"]), v["init_p95_ms"]),
            td(fmt_mb(v["memory"]["peak_max_mb"]), v["memory"]["peak_max_mb"]),
            td(fmt_usd(v["cost"]["per_million_usd"]), v["cost"]["per_million_usd"]),
        ]))
    head = [th("Version", "text"), th("Invocations"), th("Error rate"), th("Cold starts"),
            th("p50"), th("p95"), th("p99"), th("Init p95"), th("Memory peak"),
            th("Cost / million")]
    return el("section", el("h2", "Versions side by side", class_="section"),
              data_table("versions", head, [rows], "No versions in this window."))


def _dependencies_section(e: Mapping[str, Any], name: str, window: Mapping[str, str]) -> Html:
    rows = []
    for d in e["dependencies"][:15]:
        rows.append(el("tr", [
            td(el("a", d["dependency"], href=url("/dependencies", {**window, "function": name})),
               d["dependency"]),
            td(fmt_count(d["count"]), d["count"]),
            td(fmt_ms(d["p50_ms"]), d["p50_ms"]),
            td(fmt_ms(d["p95_ms"]), d["p95_ms"]),
            td(fmt_rate(d["error_rate"]), d["error_rate"],
               "bad" if (d["error_rate"] or 0) >= 0.05 else None),
            td(fmt_rate(d["time_share"]), d["time_share"]),
            td(fmt_rate(d["cost_share"]), d["cost_share"]),
        ]))
    head = [th("Dependency", "text"), th("Calls"), th("p50"), th("p95"), th("Error rate"),
            th("Share of time"), th("Share of cost")]
    return el("section", el("h2", "Top dependencies", class_="section"),
              data_table("dependencies", head, [rows], "No dependency calls in this window."))


def _cost_section(e: Mapping[str, Any]) -> Html:
    c, r, m = e["cost"], e["right_sizing"], e["memory"]
    items = [
        ("Estimated cost", f"{fmt_usd(c['total_usd'])} in this window, "
                           f"{fmt_usd(c['per_million_usd'])} per million invocations"),
        ("Cold starts' share", fmt_rate(c["cold_start_share"])),
        ("Price", f"{c['architecture']}: ${c['price_gb_s_usd']:.10g} per GB-s, "
                  f"${c['price_request_usd']:.10g} per request"),
        ("Memory", f"configured {fmt_mb(m['configured_mb'])}; RSS peak p99 "
                   f"{fmt_mb(m['peak_p99_mb'])}, max {fmt_mb(m['peak_max_mb'])}; sandbox peak "
                   f"{fmt_mb(m['sandbox_peak_max_mb'])}"),
        ("Suggested memory", join(el("strong", fmt_mb(r["memory_suggested_mb"])), " — ",
                                  r["memory_reason"])),
        ("Timeout", join(fmt_ms(r["timeout_ms"]), " — ", r.get("timeout_reason") or "")),
        ("Leak suspected", f"{fmt_count(m['leak_suspected'])} invocations"),
        ("Agent overhead", f"p50 {fmt_ms(e['agent']['overhead_p50_ms'])}, p95 "
                           f"{fmt_ms(e['agent']['overhead_p95_ms'])}"),
    ]
    return el("section", el("h2", "Cost and right-sizing", class_="section"),
              el("dl", [join(el("dt", k), el("dd", v)) for k, v in items], class_="facts"))


# --------------------------------------------------------------------------------------------
# Invocations


def invocations_page(conn: sqlite3.Connection, q: Query, ctx: dict[str, Any]) -> Rendered:
    limit = int(q.get("limit", DEFAULT_LIMIT))
    offset = int(q.get("offset", 0))
    filters: dict[str, Any] = {
        "function": q.get("function"), "version": q.get("version"), "status": q.get("status"),
        "cold": q.get("cold"), "trigger": q.get("trigger"), "label": q.get("label"),
        "since_ms": q.since_ms, "until_ms": q.until_ms,
        "slower_than_ms": q.get("slower_than"), "trace_id": q.get("trace_id"),
        "fingerprint": q.get("fingerprint"),
    }
    found = queries.invocations(conn, filters, limit=limit, offset=offset)
    form = filter_form(q, "/invocations", [
        _select(q, "function", "Function", _functions_options(conn)),
        _select(q, "status", "Status", [("ok", "ok"), ("error", "error"),
                                        ("timeout", "timeout"), ("crashed", "crash")]),
        _select(q, "cold", "Start", [("true", "cold"), ("false", "warm")]),
        _input(q, "version", "Version", size=8),
        _input(q, "trigger", "Trigger", placeholder="sqs, api_gateway…", size=12),
        _input(q, "label", "Label", placeholder="key=value", size=14),
        _input(q, "slower_than", "Slower than (ms)", kind="number", size=8),
        *_time_fields(q, None),
        _select(q, "limit", "Per page", [(str(n), str(n)) for n in (100, 200, MAX_PAGE)],
                blank=str(DEFAULT_LIMIT)),
    ], hidden=("trace_id", "fingerprint"))
    rows = []
    for inv in found["invocations"]:
        labels = inv["labels"] or []
        rows.append(el("tr", [
            td(el("a", inv["request_id"], href=inv_url(inv["request_id"]), class_="mono"),
               inv["request_id"]),
            td(fmt_time(inv["start_ms"], millis=True), inv["start_ms"]),
            td(el("a", inv["function"], href=fn_url(inv["function"])), inv["function"]),
            td(inv["version"] or DASH, inv["version"] or ""),
            td(status_badge(inv["status"]), inv["status"]),
            td("cold" if inv["cold_start"] else "proactive" if inv["proactive_init"] else "warm",
               1 if inv["cold_start"] else 0),
            td(fmt_ms(inv["duration_ms"]), inv["duration_ms"]),
            td(fmt_ms(inv["init_ms"]) if inv["init_ms"] is not None else DASH, inv["init_ms"]),
            td(fmt_mb(inv["rss_peak_mb"]), inv["rss_peak_mb"]),
            td(inv["trigger_type"] or DASH, inv["trigger_type"] or ""),
            td([el("span", label, class_="chip") for label in labels[:6]], " ".join(labels)),
            td(inv["error_type"] or "", inv["error_type"] or ""),
        ], class_=f"status-{inv['status']}"))
    head = [th("Request id", "text"), th("Start (UTC)"), th("Function", "text"),
            th("Version", "text"), th("Status", "text"), th("Start type", "num"),
            th("Duration"), th("Init"), th("Memory peak"), th("Trigger", "text"),
            th("Labels", "text"), th("Error", "text")]
    table = data_table("invocations", head, [rows], "No invocations match these filters.")
    notes = []
    if q.get("trace_id"):
        notes.append(el("p", "Trace ", el("code", q.get("trace_id")), " · ",
                        el("a", "all traces", href=q.link(trace_id=None, offset=None))))
    if q.get("fingerprint"):
        notes.append(el("p", "Error fingerprint ", el("code", q.get("fingerprint")), " · ",
                        el("a", "all errors", href=q.link(fingerprint=None, offset=None))))
    body = join(form, notes, table,
                pager(q, offset, limit, len(found["invocations"]), found["more"]))
    return Rendered("Invocations", body)


# --------------------------------------------------------------------------------------------
# One invocation


def _span_resource(span: Mapping[str, Any]) -> str:
    dependency = dependency_of(span)
    if not dependency:
        return ""
    return dependency.partition(" ")[2]


def _attr_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _span_order(spans: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """The spans as a tree, depth first, children by start; spans whose parent is not here
    hang off the top."""
    ids = {s.get("span_id") for s in spans}
    children: dict[Any, list[Mapping[str, Any]]] = {}
    tops = []
    for span in spans:
        parent = span.get("parent_span_id")
        if parent in ids and parent != span.get("span_id"):
            children.setdefault(parent, []).append(span)
        else:
            tops.append(span)

    def start(s: Mapping[str, Any]) -> float:
        value = s.get("start_ms")
        return float(value) if isinstance(value, (int, float)) else 0.0

    out: list[tuple[Mapping[str, Any], int]] = []
    seen: set[Any] = set()
    stack = [(s, 0) for s in sorted(tops, key=start, reverse=True)]
    while stack:
        span, depth = stack.pop()
        if span.get("span_id") in seen:
            continue
        seen.add(span.get("span_id"))
        out.append((span, depth))
        for child in sorted(children.get(span.get("span_id"), []), key=start, reverse=True):
            stack.append((child, depth + 1))
    return out


def _waterfall(report: Mapping[str, Any]) -> Html:
    spans = [s for s in report.get("spans") or [] if isinstance(s, dict)]
    if not spans:
        return el("p", "No spans (the invocation was not sampled, or made no calls).",
                  class_="empty")
    inv = report.get("invocation") or {}
    starts = [float(s["start_ms"]) for s in spans if isinstance(s.get("start_ms"), (int, float))]
    ends = [float(s["start_ms"]) + float(s.get("duration_ms") or 0) for s in spans
            if isinstance(s.get("start_ms"), (int, float))]
    x0 = min([*starts, float(inv.get("start_ms") or math.inf)])
    x1 = max([*ends, float(inv.get("end_ms") or -math.inf)])
    if not math.isfinite(x0) or not math.isfinite(x1) or x1 <= x0:
        x1 = x0 + 1.0 if math.isfinite(x0) else 1.0
        x0 = x0 if math.isfinite(x0) else 0.0
    rows = [el("div", el("span", "Span", class_="label"),
               el("span", el("span", "0 ms"), el("span", fmt_ms((x1 - x0) / 2)),
                  el("span", fmt_ms(x1 - x0)), class_="axis"),
               el("span", "Duration", class_="dur"), class_="span-head")]
    for span, depth in _span_order(spans):
        name = str(span.get("name") or "")
        resource = _span_resource(span)
        start = float(span["start_ms"]) if isinstance(span.get("start_ms"), (int, float)) else x0
        duration = float(span.get("duration_ms") or 0.0)
        failed = span.get("status") == "error"
        attrs = span.get("attributes") if isinstance(span.get("attributes"), dict) else {}
        title = (f"{name} {resource}".strip() + f"\n{fmt_ms(duration)} from +"
                 f"{fmt_ms(start - x0)}" + ("\nfailed" if failed else ""))
        details = [el("tr", el("th", "kind"), el("td", str(span.get("kind") or "")))]
        details += [el("tr", el("th", str(k)), el("td", _attr_value(v)))
                    for k, v in sorted(attrs.items())]
        links = span.get("links") if isinstance(span.get("links"), list) else []
        for link in links[:20]:
            if isinstance(link, dict):
                details.append(el("tr", el("th", "link"), el("td", el(
                    "a", f"trace {link.get('trace_id')}",
                    href=url("/invocations", {"trace_id": link.get("trace_id")})))))
        rows.append(el(
            "div",
            el("div", el("span", name, class_="name"),
               join(" ", el("span", resource, class_="resource")) if resource else None,
               join(" ", el("span", "error", class_="badge status-error")) if failed else None,
               class_="label", title=f"{name} {resource}".strip()),
            charts.bar_track(x0, x1, start, start + duration, error=failed, title=title),
            el("span", fmt_ms(duration), class_="dur"),
            el("details", el("summary", f"attributes ({len(attrs)})"),
               el("table", details, class_="attrs")),
            class_=f"span d{min(depth, 8)}" + (" failed" if failed else ""),
            data_span_id=str(span.get("span_id") or ""),
        ))
    return el("div", rows, class_="waterfall")


def _trace(this: Mapping[str, Any], related: Sequence[Mapping[str, Any]]) -> Html:
    items = sorted([this, *related], key=lambda i: i["start_ms"])
    x0 = min(i["start_ms"] for i in items)
    x1 = max(i["start_ms"] + (i["duration_ms"] or 0.0) for i in items)
    if x1 <= x0:
        x1 = x0 + 1.0
    rows = []
    for inv in items:
        current = inv["request_id"] == this["request_id"]
        end = inv["start_ms"] + (inv["duration_ms"] or 0.0)
        failed = inv["status"] != "ok"
        title = (f"{inv['function']} {inv['status']}, {fmt_ms(inv['duration_ms'])} from +"
                 f"{fmt_ms(inv['start_ms'] - x0)}")
        rows.append(el(
            "div",
            el("div", el("a", inv["function"], href=inv_url(inv["request_id"]),
                         aria_current="page" if current else None),
               el("span", inv["request_id"][:13], class_="mono muted"), class_="label"),
            charts.bar_track(x0, x1, inv["start_ms"], end, error=failed, title=title),
            el("span", fmt_ms(inv["duration_ms"]), class_="dur"),
            class_="inv current" if current else "inv",
            data_request_id=inv["request_id"],
        ))
    return el("div", rows, class_="trace")


def invocation_page(conn: sqlite3.Connection, q: Query, ctx: dict[str, Any]) -> Rendered:
    request_id = ctx["request_id"]
    found = queries.show(conn, request_id, prices=ctx.get("prices"))
    if found is None:
        raise NotFound(f"no invocation with request id {request_id!r} is stored")
    report = found["invocation"]
    fn = report.get("function") or {}
    inv = report.get("invocation") or {}
    res = report.get("resources") or {}
    trace = report.get("trace") or {}
    name = str(fn.get("name") or "")
    status = str(inv.get("status") or "")
    trigger = inv.get("trigger") or {}
    labels = [str(x) for x in report.get("labels") or []]
    facts = [
        ("Function", el("a", name, href=fn_url(name)) if name else DASH),
        ("Version", str(fn.get("version") or DASH)),
        ("Status", status_badge(status, bool(inv.get("cold_start")))),
        ("Start", f"{fmt_time(inv.get('start_ms'), millis=True)} UTC"),
        ("Duration", fmt_ms(inv.get("duration_ms"))),
        ("Init", join(fmt_ms(inv.get("init_duration_ms")),
                      f" ({inv.get('init_type')})" if inv.get("init_type") else None,
                      " proactive" if inv.get("proactive_init") else None)
         if inv.get("init_duration_ms") is not None else DASH),
        ("Billed", join(fmt_ms(found.get("billed_ms")), " · ", fmt_usd(found.get("cost_usd")))),
        ("Trigger", join(str(trigger.get("type") or DASH),
                         el("span", f" {trigger.get('source')}", class_="muted")
                         if trigger.get("source") else None)),
        ("Memory size", fmt_mb(fn.get("memory_limit_mb"))),
        ("Sandbox", el("span", str(fn.get("log_stream") or DASH), class_="mono")),
        ("Trace", el("a", str(trace.get("trace_id")), class_="mono",
                     href=url("/invocations", {"trace_id": trace.get("trace_id")}))
         if trace.get("trace_id") else DASH),
        ("Labels", join(*[el("span", label, class_="chip") for label in labels])
         if labels else DASH),
    ]
    sections = [el("dl", [join(el("dt", k), el("dd", v)) for k, v in facts], class_="facts")]
    error = report.get("error")
    if isinstance(error, dict):
        frames = [f for f in error.get("stack") or [] if isinstance(f, dict)]
        sections.append(el("section", el("h2", "Error", class_="section"), el(
            "div",
            el("p", el("strong", str(error.get("type") or "Error")), ": ",
               el("span", str(error.get("message") or ""), class_="message")),
            el("ol", [el("li", el("code", f"{f.get('file')}:{f.get('line')}"), " in ",
                         el("code", str(f.get("function") or ""))) for f in frames],
               class_="stack") if frames else None,
            class_="error-box")))
    sections.append(el("section", el("h2", "Spans", class_="section"), _waterfall(report),
                       el("p", f"{report.get('dropped_spans')} spans dropped", class_="muted")
                       if report.get("dropped_spans") else None))
    if trace.get("trace_id"):
        this = {"request_id": request_id, "function": name, "start_ms": inv.get("start_ms"),
                "duration_ms": inv.get("duration_ms"), "status": status}
        if isinstance(this["start_ms"], (int, float)):
            sections.append(el("section", el("h2", "The whole trace", class_="section"),
                               el("p", f"{len(found['related']) + 1} invocations share trace "
                                       f"{trace.get('trace_id')}", class_="muted"),
                               _trace(this, found["related"])))
    profile = None
    if report.get("profile") is not None:
        profile = _profile_section(report, _libraries(conn, report))
    if profile is not None:
        sections.append(profile)
    diagnostics = report.get("diagnostics")
    if isinstance(diagnostics, dict):
        sections.append(_diagnostics_section(
            diagnostics, "Cold-start diagnostics",
            "This sandbox's first report: where its init time went, and what it runs on."))
    sections.append(_logs_of(found["logs"], inv.get("start_ms")))
    sections.append(_metrics_of(report.get("metrics") or []))
    sections.append(_resources_of(res, found.get("platform")))
    return Rendered(f"Invocation {request_id}",
                    join(*sections), heading=join("Invocation ",
                                                  el("span", request_id, class_="mono")))


def _logs_of(lines: Sequence[Mapping[str, Any]], start: Any) -> Html:
    rows = []
    for line in lines:
        ts = line.get("timestamp_ms")
        offset = f"+{fmt_ms(ts - start)}" if isinstance(ts, (int, float)) and isinstance(
            start, (int, float)) else ""
        level = str(line.get("level") or "")
        rows.append(el("tr", el("td", offset, class_="mono"),
                       el("td", el("span", level, class_=f"level level-{level.lower()}")),
                       el("td", str(line.get("logger") or "")),
                       el("td", el("pre", str(line.get("message") or "")), class_="message"),
                       class_=f"level-{level.lower()}"))
    content = el("table", el("tbody", rows), class_="loglines") if rows else el(
        "p", "No log lines.", class_="empty")
    return el("section", el("h2", "Logs", class_="section"), content)


def _metrics_of(metrics: Sequence[Any]) -> Html:
    rows = []
    for m in metrics:
        if not isinstance(m, dict):
            continue
        dims = m.get("dimensions") if isinstance(m.get("dimensions"), dict) else {}
        rows.append(el("tr", el("td", str(m.get("name") or "")),
                       el("td", _attr_value(m.get("value")), class_="num"),
                       el("td", str(m.get("unit") or "")),
                       el("td", ", ".join(f"{k}={v}" for k, v in sorted(dims.items())))))
    if not rows:
        return el("section", el("h2", "Metrics", class_="section"),
                  el("p", "No custom metrics.", class_="empty"))
    return el("section", el("h2", "Metrics", class_="section"), el(
        "table", el("thead", el("tr", el("th", "Name"), el("th", "Value"), el("th", "Unit"),
                                el("th", "Dimensions"))), el("tbody", rows), class_="plain"))


def _resources_of(res: Mapping[str, Any], platform: Mapping[str, Any] | None) -> Html:
    def mb(key: str) -> str:
        return fmt_mb(res.get(key)) if isinstance(res.get(key), (int, float)) else DASH

    def num(key: str) -> str:
        value = res.get(key)
        return f"{value:,}" if isinstance(value, (int, float)) else DASH

    items = [
        ("RSS start / end / peak", f"{mb('rss_start_mb')} / {mb('rss_end_mb')} / "
                                   f"{mb('rss_peak_mb')}"),
        ("Growth since the cold start", mb("rss_growth_mb")
         + (" — leak suspected" if res.get("leak_suspected") else "")),
        ("Sandbox memory", mb("sandbox_memory_peak_mb") if res.get("sandbox_memory_peak_mb")
         is not None else mb("sandbox_memory_mb")),
        ("Memory used", fmt_rate(res["memory_used_pct"] / 100.0)
         if isinstance(res.get("memory_used_pct"), (int, float)) else DASH),
        ("CPU user / system", f"{fmt_ms(res.get('cpu_user_ms'))} / "
                              f"{fmt_ms(res.get('cpu_system_ms'))}"),
        ("Network in / out", f"{num('net_rx_bytes')} / {num('net_tx_bytes')} bytes"),
        ("/tmp used", mb("tmp_used_mb")),
        ("Open files / threads", f"{num('open_fds')} / {num('threads')}"),
    ]
    if platform:
        items.append(("Lambda's REPORT line", (
            f"duration {fmt_ms(platform.get('duration_ms'))}, billed "
            f"{fmt_ms(platform.get('billed_ms'))}, max memory "
            f"{fmt_mb(platform.get('max_memory_mb'))}, init {fmt_ms(platform.get('init_ms'))}")))
    return el("section", el("h2", "Memory and CPU", class_="section"),
              el("dl", [join(el("dt", k), el("dd", v)) for k, v in items], class_="facts"))


# --------------------------------------------------------------------------------------------
# Profiles and cold-start diagnostics

#: Rows of the top-functions table; modules of an import tree; rows of the smaller tables.
PROFILE_TOP = 30
IMPORT_TREE_NODES = 200
DIAGNOSTICS_ROWS = 15


def _count_of(n: int, one: str, many: str | None = None) -> str:
    return f"{fmt_count(n)} {one if n == 1 else many or one + 's'}"


def _code_kind(kind: str, package: str | None) -> str:
    if kind == "library":
        return f"library {package}" if package else "library"
    if kind == "stdlib":
        return f"stdlib {package}" if package else "stdlib"
    return profiles.KIND_NAMES.get(kind, kind)


def _libraries(conn: sqlite3.Connection, report: Mapping[str, Any]) -> frozenset[str]:
    """What the function's code imports as libraries (its distributions), to tell library
    frames from the user's: from this report's diagnostics, else its function's newest (of
    its version, else of any)."""
    diag = report.get("diagnostics")
    if not isinstance(diag, dict):
        fn = report.get("function") or {}
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            return frozenset()
        latest = (views.latest_diagnostics(conn, name, version=str(fn.get("version") or ""))
                  or views.latest_diagnostics(conn, name))
        diag = latest["diagnostics"] if latest else None
    return profiles.library_names(diag)


def _profile_section(report: Mapping[str, Any],
                     libraries: frozenset[str] = frozenset()) -> Html | None:
    profile = profiles.read_profile(report.get("profile"), libraries)
    if profile is None:
        return None
    heading = el("h2", "Profile", class_="section")
    notes = [f"{fmt_count(profile.samples)} samples every {fmt_ms(profile.interval_ms)} "
             f"({fmt_ms(profile.ms(profile.samples))} sampled"
             + (f" of {fmt_ms(profile.duration_ms)}" if profile.duration_ms is not None else "")
             + ")"]
    if profile.mode:
        notes.append(f"profiled by {profile.mode}")
    if profile.dropped_samples:
        notes.append(f"{fmt_count(profile.dropped_samples)} samples dropped")
    if profile.truncated_stacks:
        notes.append(_count_of(profile.truncated_stacks, "stack") + " cut short")
    if profile.stacks_skipped:
        notes.append(_count_of(profile.stacks_skipped, "unreadable stack") + " left out")
    summary = el("p", " · ".join(notes), class_="muted")
    if not profile.stacks:
        return el("section", heading, summary, el(
            "p", "No stacks were sampled (the invocation was shorter than the interval).",
            class_="empty"), class_="profile")
    svg, drawn, left_out = charts.flame_graph(profile)
    legend = el("p", [
        el("span", join(el("span", "", class_=f"swatch fl-{css}"), label), class_="key")
        for css, label in (("user", "your code"), ("lib", "libraries"),
                           ("std", "standard library"), ("other", "other"))
    ], " Callers at the bottom, what they called above them; the width is the share of the "
       "samples. Hover a frame for its figures.",
        f" ({fmt_count(left_out)} frames too narrow to draw left out.)" if left_out else None,
        class_="flame-legend muted")
    rows = []
    for f in profiles.top_functions(profile, PROFILE_TOP):
        rows.append(el("tr", [
            td(el("code", f["function"]), f["function"]),
            td(f["where"] or DASH, f["where"], "mono"),
            td(_code_kind(f["kind"], f["package"]), f["kind"]),
            td(fmt_count(f["self_samples"]), f["self_samples"]),
            td(fmt_rate(f["self_share"]), f["self_share"]),
            td(fmt_ms(f["self_ms"]), f["self_ms"]),
            td(fmt_count(f["total_samples"]), f["total_samples"]),
            td(fmt_rate(f["total_share"]), f["total_share"]),
            td(fmt_ms(f["total_ms"]), f["total_ms"]),
        ], class_=f"code-{f['kind']}"))
    head = [th("Function", "text"), th("Where", "text"), th("Code", "text"),
            th("Self", title="samples that ended in the function"), th("Self %"),
            th("Self time"), th("Total", title="samples the function was on"), th("Total %"),
            th("Total time")]
    table = data_table("profile", head, [rows], "No frames.")
    return el("section", heading, summary,
              el("div", svg, class_="flame-wrap", data_frames=drawn), legend,
              el("h3", "Top functions", class_="sub"), table, class_="profile")


def _import_tree(diag: Mapping[str, Any]) -> Html:
    """The import tree as nested lists: each module with its cumulative time (a bar against
    the root's), its own time, and an ``unused`` mark."""
    nodes = profiles.import_tree(diag, max_nodes=IMPORT_TREE_NODES)
    if not nodes:
        tracking = diag.get("import_tracking")
        why = (" (import tracking was off)" if tracking == "off" else "")
        return el("div", el("p", f"No import tree in these diagnostics{why}.",
                            class_="empty"), class_="imports")
    root_ms = nodes[0].ms or 0.0
    out: list[str] = []
    depth = -1
    for node in nodes:
        target = node.depth
        if target > depth:
            out.extend("<ul>" for _ in range(target - depth))
        else:
            out.append("</li>")
            out.extend("</ul></li>" for _ in range(depth - target))
        depth = target
        if node.module is None:
            text = ("… the tree goes on (more modules than are shown)" if node.hidden < 0
                    else f"… {node.hidden} more, {fmt_ms(node.ms)} in all")
            out.append(el("li", text, class_="more").removesuffix("</li>"))
            continue
        share = (node.ms or 0.0) / root_ms if root_ms else 0.0
        out.append(el(
            "li",
            el("span", node.module, class_="mod"),
            el("span", fmt_ms(node.ms), class_="ms"),
            charts.share_bar(share, f"{node.module}: {fmt_ms(node.ms)}, "
                                    f"{fmt_rate(share)} of the handler's import"),
            el("span", f"own {fmt_ms(node.self_ms)}", class_="own")
            if node.self_ms is not None else None,
            el("span", "unused", class_="badge unused",
               title="the first invocation did not use it") if node.unused else None,
            class_="unused" if node.unused else None,
            data_module=node.module,
        ).removesuffix("</li>"))
    out.append("</li>")
    out.extend("</ul></li>" for _ in range(depth))
    out.append("</ul>")
    return el("div", Html("".join(out)), class_="imports")


def _diagnostics_facts(diag: Mapping[str, Any]) -> Html:
    num = profiles.number
    items: list[tuple[str, Html | str]] = [
        ("Init", fmt_ms(num(diag.get("init_ms")))),
        ("Handler", join(el("code", str(diag.get("handler") or DASH)), " imported in ",
                         fmt_ms(num(diag.get("handler_import_ms"))))),
        ("Import tracking", str(diag.get("import_tracking") or DASH)),
        ("Python", " ".join(str(v) for v in (diag.get("implementation"), diag.get("python"))
                            if v) or DASH),
        ("Runtime", " · ".join(str(v) for v in (diag.get("runtime"),
                                                diag.get("architecture")) if v) or DASH),
        ("Sandbox", el("span", str(diag.get("sandbox_id") or DASH), class_="mono")),
    ]
    tmp = diag.get("tmp")
    if isinstance(tmp, Mapping):
        items.append(("/tmp", f"{fmt_mb(num(tmp.get('used_mb')))} used of "
                              f"{fmt_mb(num(tmp.get('total_mb')))}"))
    env = profiles.names(diag.get("env_names"))
    if isinstance(diag.get("env_names"), list):
        items.append(("Environment", el("details", el(
            "summary", f"{len(env)} variable names (values are never recorded)"),
            el("p", join(*[join(el("code", name), " ") for name in env[:300]]),
               class_="env-names"))))
    limits = diag.get("limits")
    if isinstance(limits, Mapping) and limits:
        items.append(("Limits", join(*[
            join(el("code", f"{k}={profiles.limit_text(v)}"), " ")
            for k, v in list(limits.items())[:40]
        ])))
    if diag.get("truncated"):
        items.append(("Note", "the agent cut these diagnostics to fit its size bound"))
    return el("dl", [join(el("dt", k), el("dd", v)) for k, v in items], class_="facts")


def _slowest_of_report(diag: Mapping[str, Any]) -> Html:
    rows = []
    for s in profiles.slowest_imports(diag)[:DIAGNOSTICS_ROWS * 2]:
        used = s.get("used")
        rows.append(el("tr", [
            td(el("code", s["module"]), s["module"]),
            td(fmt_ms(profiles.number(s.get("ms"))), profiles.number(s.get("ms"))),
            td(fmt_ms(profiles.number(s.get("self_ms"))), profiles.number(s.get("self_ms"))),
            td(str(s.get("parent") or DASH), str(s.get("parent") or "")),
            td(el("span", "unused", class_="badge unused") if used is False else
               "used" if used is True else DASH, 0 if used is False else 1 if used else None),
        ]))
    head = [th("Module", "text"), th("Import time"), th("Own time"), th("Imported by", "text"),
            th("First invocation", "num")]
    return data_table("slowest-imports", head, [rows], "No slowest imports listed.")


def _distributions(diag: Mapping[str, Any]) -> Html | None:
    found = profiles.largest_distributions(diag, DIAGNOSTICS_ROWS)
    if not found:
        return None
    rows = []
    for d in found:
        size = profiles.number(d.get("size_kb"))
        rows.append(el("tr", [
            td(str(d.get("name")), str(d.get("name"))),
            td(str(d.get("version") or DASH), str(d.get("version") or "")),
            td(fmt_mb(size / 1024.0) if size is not None else DASH, size),
            td(el("span", str(d.get("location") or DASH), class_="mono"),
               str(d.get("location") or "")),
        ]))
    head = [th("Distribution", "text"), th("Version", "text"), th("Size"),
            th("Location", "text")]
    total = len(diag.get("distributions") or [])
    return join(el("h3", f"Largest distributions ({len(found)} of {total})", class_="sub"),
                data_table("distributions", head, [rows], ""))


def _diagnostics_section(diag: Mapping[str, Any], title: str,
                         intro: Html | str | None = None) -> Html:
    return el("section", el("h2", title, class_="section"),
              el("p", intro, class_="muted") if intro else None,
              _diagnostics_facts(diag),
              el("h3", "Import tree", class_="sub"),
              el("p", "Cumulative import time of each module (the bar: its share of the "
                      "handler module's), its own time apart from what it imported; "
                      "unused: the first invocation did not use it.", class_="muted"),
              _import_tree(diag),
              el("h3", "Slowest imports", class_="sub"),
              _slowest_of_report(diag),
              _distributions(diag),
              class_="diagnostics")


def _cold_start_section(conn: sqlite3.Connection, name: str, version: str | None,
                        since: float | None, until: float) -> Html:
    """The function page's cold starts: the slowest imports across the sandboxes of the
    window, and the newest cold start's diagnostics."""
    found = queries.slow_imports(conn, name, since, until, version=version)
    rows = []
    for i in found["slow_imports"]:
        rows.append(el("tr", [
            td(el("code", i["module"]), i["module"]),
            td(f"{fmt_count(i['sandboxes'])} ({fmt_rate(i['sandbox_share'])})", i["sandboxes"]),
            td(fmt_ms(i["median_ms"]), i["median_ms"]),
            td(fmt_ms(i["p95_ms"]), i["p95_ms"]),
            td(fmt_ms(i["max_ms"]), i["max_ms"]),
            td(fmt_rate(i["unused_share"]), i["unused_share"],
               "bad" if (i["unused_share"] or 0) >= 0.5 else None),
        ]))
    head = [th("Module", "text"),
            th("Sandboxes", title="sandboxes whose slowest imports listed it (and their share "
                                  "of the sandboxes diagnosed)"),
            th("Median"), th("p95"), th("Max"),
            th("Unused", title="share of those sandboxes whose first invocation did not use "
                               "it")]
    diagnosed = found["diagnosed_sandboxes"]
    table = data_table("imports", head, [rows],
                       "No cold-start diagnostics with import times in this window.")
    parts: list[Html | None] = [
        el("h2", "Cold starts: the slowest imports", class_="section"),
        el("p", f"Over the {_count_of(diagnosed, 'sandbox', 'sandboxes')} diagnosed in this "
                "window: the modules whose import took longest (cumulative), by median.",
           class_="muted")
        if diagnosed else None,
        table,
    ]
    latest = views.latest_diagnostics(conn, name, version=version, until_ms=until)
    if latest is not None:
        intro = join("The newest cold start: ",
                     el("a", fmt_time(latest["start_ms"]) + " UTC",
                        href=inv_url(latest["request_id"])),
                     f", version {latest['version']}" if latest["version"] else None, ".")
        parts.append(_diagnostics_section(latest["diagnostics"],
                                          "The newest cold start's diagnostics", intro))
    return el("section", parts, class_="cold-starts")


# --------------------------------------------------------------------------------------------
# Dependencies


def dependencies_page(conn: sqlite3.Connection, q: Query, ctx: dict[str, Any]) -> Rendered:
    since, until = _window(q)
    result = queries.dependencies(conn, function=q.get("function"), since_ms=since,
                                  until_ms=until, version=q.get("version"))
    window = q.window()
    form = filter_form(q, "/dependencies", [
        _select(q, "function", "Function", _functions_options(conn)),
        _input(q, "version", "Version", size=8),
        *_time_fields(q, DEFAULT_WINDOW),
    ])
    rows = []
    for d in result["dependencies"]:
        name = d["function"]
        rows.append(el("tr", [
            td(el("a", name, href=fn_url(name, **window)), name),
            td(d["dependency"], d["dependency"]),
            td(el("a", fmt_count(d["count"]), href=url("/invocations", {**window,
                                                                         "function": name})),
               d["count"]),
            td(fmt_ms(d["p50_ms"]), d["p50_ms"]),
            td(fmt_ms(d["p95_ms"]), d["p95_ms"]),
            td(fmt_ms(d["p99_ms"]), d["p99_ms"]),
            td(fmt_rate(d["error_rate"]), d["error_rate"],
               "bad" if (d["error_rate"] or 0) >= 0.05 else None),
            td(fmt_ms(d["total_ms"]), d["total_ms"]),
            td(fmt_rate(d["time_share"]), d["time_share"]),
        ]))
    head = [th("Function", "text"), th("Dependency", "text"), th("Calls"), th("p50"),
            th("p95"), th("p99"), th("Error rate"), th("Total time"),
            th("Share of time", title="the calls' time over the function's total duration")]
    table = data_table("dependencies", head, [rows], "No dependency calls in this window.")
    return Rendered("Dependencies", join(window_line(q, since, until), form, range_links(q),
                                         table))


# --------------------------------------------------------------------------------------------
# Logs


def logs_page(conn: sqlite3.Connection, q: Query, ctx: dict[str, Any]) -> Rendered:
    limit = int(q.get("limit", DEFAULT_LIMIT * 2))
    offset = int(q.get("offset", 0))
    filters = {"function": q.get("function"), "level": q.get("level"),
               "since_ms": q.since_ms, "until_ms": q.until_ms, "q": q.get("q")}
    found = views.logs(conn, filters, limit=limit, offset=offset)
    form = filter_form(q, "/logs", [
        _select(q, "function", "Function", _functions_options(conn)),
        _select(q, "level", "Level", [(lv, lv) for lv in LOG_LEVELS]),
        _input(q, "q", "Text", placeholder="contains…", size=18),
        *_time_fields(q, None),
        _select(q, "limit", "Per page", [(str(n), str(n)) for n in (200, MAX_PAGE)],
                blank=str(DEFAULT_LIMIT * 2)),
    ])
    rows = []
    for line in found["logs"]:
        level = str(line["level"] or "")
        rows.append(el("tr", [
            td(el("a", fmt_time(line["timestamp_ms"], millis=True),
                  href=inv_url(line["request_id"]), title=line["request_id"]),
               line["timestamp_ms"]),
            td(el("a", line["function"] or DASH, href=fn_url(line["function"]))
               if line["function"] else DASH, line["function"] or ""),
            td(el("span", level, class_=f"level level-{level.lower()}"), level),
            td(line["logger"] or "", line["logger"] or ""),
            td(el("pre", line["message"] or ""), line["message"] or "", "message"),
        ], class_=f"level-{level.lower()}"))
    head = [th("Time (UTC)"), th("Function", "text"), th("Level", "text"),
            th("Logger", "text"), th("Message", "text")]
    table = data_table("logs", head, [rows], "No log lines match these filters.")
    return Rendered("Logs", join(form, table, pager(q, offset, limit, len(found["logs"]),
                                                    found["more"])))


# --------------------------------------------------------------------------------------------
# The service map


_KIND_LABELS = {"function": "λ", "queue": "SQS", "topic": "SNS", "table": "DDB", "bucket": "S3",
                "stream": "KIN", "bus": "EVB", "http": "HTTP", "workflow": "SFN",
                "secret": "SEC", "parameter": "SSM", "key": "KMS", "aws": "AWS", "other": "?"}


def _truncate(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def map_page(conn: sqlite3.Connection, q: Query, ctx: dict[str, Any]) -> Rendered:
    since, until = _window(q)
    function = q.get("function")
    found = views.service_map(conn, since if since is not None else 0.0, until,
                              function=function)
    window = q.window()
    form = filter_form(q, "/map", [
        _select(q, "function", "Function", _functions_options(conn)),
        *_time_fields(q, DEFAULT_WINDOW),
    ])
    top = join(window_line(q, since, until), form, range_links(q))
    nodes = {n["id"]: n for n in found["nodes"]}
    if not nodes:
        return Rendered("Service map", join(top, _empty_window(q, "invocations")))
    layout = graph.layered_layout(list(nodes), [(e["from"], e["to"]) for e in found["edges"]])
    w, h = layout.node_w, layout.node_h
    edge_marks = []
    fan_in: dict[str, int] = {}
    fan_out: dict[str, int] = {}
    for e in found["edges"]:
        fan_in[e["to"]] = fan_in.get(e["to"], 0) + 1
        fan_out[e["from"]] = fan_out.get(e["from"], 0) + 1
    for e in found["edges"]:
        ax, ay = layout.positions[e["from"]]
        bx, by = layout.positions[e["to"]]
        anchor = "middle"
        if bx > ax:
            x1, y1, x2, y2 = ax + w, ay + h / 2, bx, by + h / 2
            bend = max(40.0, (x2 - x1) / 2)
            d = f"M{x1:.1f} {y1:.1f} C{x1 + bend:.1f} {y1:.1f} {x2 - bend:.1f} {y2:.1f} " \
                f"{x2:.1f} {y2:.1f}"
            # The label where it cannot collide: by the arrow when the target has one edge
            # in, else by the source when it has one edge out, else half way.
            if fan_in[e["to"]] == 1:
                mx, my, anchor = x2 - 12, y2 - 6, "end"
            elif fan_out[e["from"]] == 1:
                mx, my, anchor = x1 + 10, y1 - 6, "start"
            else:
                mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 4
        else:  # back or same layer: a loop under the nodes
            x1, y1, x2, y2 = ax + w / 2, ay + h, bx + w / 2, by + h
            low = max(y1, y2) + 36
            d = f"M{x1:.1f} {y1:.1f} C{x1:.1f} {low:.1f} {x2:.1f} {low:.1f} {x2:.1f} {y2:.1f}"
            mx, my = (x1 + x2) / 2, low - 10
        count = e["count"] or 0
        weight = 1 if count < 100 else 2 if count < 10_000 else 3 if count < 1_000_000 else 4
        rate = e["error_rate"] or 0
        health = "bad" if rate >= 0.05 else "warn" if rate >= 0.01 else "ok"
        approx = "≈" if e["estimated"] else ""
        label = f"{approx}{_short_count(count)} · p95 {fmt_ms(e['p95_ms'])}"
        if rate:
            label += f" · {fmt_rate(rate)} err"
        a_label, b_label = nodes[e["from"]]["label"], nodes[e["to"]]["label"]
        title = (f"{a_label} → {b_label}\n{approx}{fmt_count(count)} calls, p95 "
                 f"{fmt_ms(e['p95_ms'])}, error rate {fmt_rate(e['error_rate'])}")
        if e["operations"]:
            title += "\n" + ", ".join(e["operations"])
        if e["estimated"]:
            title += "\nestimated from a sample of the newest invocations"
        edge_marks.append(el(
            "g", el("title", title), el("path", d=d, marker_end="url(#arrow)"),
            el("text", label, x=f"{mx:.1f}", y=f"{my:.1f}", text_anchor=anchor),
            class_=f"edge w{weight} {health}" + (" estimated" if e["estimated"] else ""),
            data_from=e["from"], data_to=e["to"], data_count=count,
        ))
    node_marks = []
    for node_id, node in nodes.items():
        x, y = layout.positions[node_id]
        kind = node["kind"]
        shape = el("rect", x=f"{x:.1f}", y=f"{y:.1f}", width=w, height=h,
                   rx=18 if kind == "function" else 4)
        tag = el("text", _KIND_LABELS.get(kind, "?"), x=f"{x + 8:.1f}", y=f"{y + 25:.1f}",
                 class_="kind")
        name = el("text", _truncate(node["label"], 22), x=f"{x + 40:.1f}",
                  y=f"{y + (17 if kind == 'function' else 25):.1f}", class_="name")
        sub = None
        title = f"{node['label']} ({kind})"
        if kind == "function":
            sub = el("text", f"{_short_count(node['invocations'])} · "
                             f"{fmt_rate(node['error_rate'])} err · p95 {fmt_ms(node['p95_ms'])}",
                     x=f"{x + 40:.1f}", y=f"{y + 32:.1f}", class_="sub")
            title += (f"\n{fmt_count(node['invocations'])} invocations, error rate "
                      f"{fmt_rate(node['error_rate'])}, p95 {fmt_ms(node['p95_ms'])}")
        inner = join(el("title", title), shape, tag, name, sub)
        if kind == "function":
            inner = el("a", inner, href=fn_url(node["label"], **window))
        rate = node.get("error_rate") or 0
        health = " bad" if rate >= 0.05 else " warn" if rate >= 0.01 else ""
        node_marks.append(el("g", inner, class_=f"node {kind}{health}", data_node=node_id))
    defs = el("defs", el("marker", el("path", d="M0 0 L10 5 L0 10 z"), id="arrow",
                         viewBox="0 0 10 10", refX=10, refY=5, markerWidth=9, markerHeight=9,
                         markerUnits="userSpaceOnUse", orient="auto-start-reverse",
                         class_="arrowhead"))
    svg = el("svg", defs, el("g", edge_marks, class_="edges"), el("g", node_marks,
                                                                   class_="nodes"),
             class_="map", viewBox=f"0 0 {layout.width:.0f} {layout.height + 40:.0f}",
             width=f"{layout.width:.0f}", role="img",
             aria_label=f"service map: {len(nodes)} nodes, {len(found['edges'])} edges")
    legend = el("p", "Functions are rounded; resources square. Edges: calls in the window, "
                     "their p95 and error rate; ≈ marks an edge inferred from a sample of "
                     "the newest invocations (a trigger's source, a propagated trace).",
                class_="muted")
    return Rendered("Service map", join(top, el("div", svg, class_="map-wrap"), legend))


def _short_count(n: int | float | None) -> str:
    if n is None:
        return DASH
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{int(n)}"


# --------------------------------------------------------------------------------------------

_WINDOW = ("since", "until")

PAGES: dict[str, Page] = {
    "overview": Page(overview, _WINDOW, {"since": DEFAULT_WINDOW}, "overview"),
    "function": Page(function_page, (*_WINDOW, "version"), {"since": DEFAULT_WINDOW}),
    "invocations": Page(invocations_page, (
        "function", "cold", "status", "label", "trigger", "version", *_WINDOW, "slower_than",
        "limit", "offset", "trace_id", "fingerprint"), {}, "invocations"),
    "invocation": Page(invocation_page, (), {}, "invocations"),
    "dependencies": Page(dependencies_page, ("function", "version", *_WINDOW),
                         {"since": DEFAULT_WINDOW}, "dependencies"),
    "logs": Page(logs_page, ("function", "level", "q", *_WINDOW, "limit", "offset"), {},
                 "logs"),
    "map": Page(map_page, ("function", *_WINDOW), {"since": DEFAULT_WINDOW}, "map"),
}

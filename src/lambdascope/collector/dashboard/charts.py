"""Charts as inline SVG, drawn here: time charts (lines and bars over a time axis), sparklines,
meters, the bars of a waterfall, and a profile's flame graph.

Colours and strokes come from classes in ``dashboard.css`` (the page's CSP allows no inline
styles); geometry is in SVG attributes. Every text goes through :mod:`.markup`, so it is
escaped. Hover details are ``<title>`` elements; a time chart's buckets are links to the
invocations behind them.
"""

from __future__ import annotations

import heapq
import html
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..profiles import Node, Profile
from .markup import Html, el

__all__ = ["Overlay", "Series", "bar_track", "flame_graph", "meter", "share_bar", "sparkline",
           "time_chart"]

WIDTH = 720
HEIGHT = 200
LEFT = 62
RIGHT = 14
TOP = 24
BOTTOM = 22


@dataclass
class Series:
    """One series of a time chart: ``points`` are ``(x0, x1, y)``: a bucket from x0 to x1
    (epoch ms; equal for a point in time), its value or ``None`` for a gap."""

    label: str
    css: str
    points: list[tuple[float, float, float | None]]
    kind: str = "line"  # or "bars"
    extra: list[str] = field(default_factory=list)  # more classes (dashed, thin)


@dataclass
class Overlay:
    """A bucket's hover target: a link (to the invocations behind it) and its details."""

    x0: float
    x1: float
    href: str
    title: str


def _nice(value: float) -> float:
    """The round number (1, 2, 2.5, 5 times a power of ten) at or above ``value``."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


def _f(value: float) -> str:
    return f"{value:.1f}"


def _time_label(ms: float, span_ms: float) -> str:
    t = time.gmtime(ms / 1000.0)
    if span_ms <= 2 * 86_400_000:
        return time.strftime("%H:%M", t)
    if span_ms <= 14 * 86_400_000:
        return time.strftime("%m-%d %H:%M", t)
    return time.strftime("%Y-%m-%d", t)


def time_chart(
    name: str,
    x0: float,
    x1: float,
    series: Sequence[Series],
    *,
    fmt_y: Callable[[float], str],
    overlays: Sequence[Overlay] = (),
    hlines: Sequence[tuple[float, str]] = (),
    y_max: float | None = None,
    title: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Html:
    """A chart over the time axis ``x0``..``x1`` (epoch ms), y from 0, drawn in a
    ``width`` x ``height`` box (the legend above it wraps onto more rows when it must)."""
    values = [y for s in series for _a, _b, y in s.points if y is not None]
    label = title or name
    if not values:
        return el("svg", el("text", "No data in this window", x=width / 2, y=HEIGHT / 4 + 4,
                            class_="empty", text_anchor="middle"),
                  class_="chart empty", data_chart=name, viewBox=f"0 0 {width} {HEIGHT / 2}",
                  role="img", aria_label=f"{label}: no data")
    # Legend rows first: they set the top margin.
    legend_at: list[tuple[float, float]] = []
    lx, ly = float(LEFT), 14.0
    for s in series:
        item = 16 + 6.4 * len(s.label) + 14
        if lx + item > width - RIGHT and lx > LEFT:
            lx, ly = float(LEFT), ly + 15
        legend_at.append((lx, ly))
        lx += item
    top = ly + 10
    height = int(height + (top - TOP))
    top_value = max([*values, *(v for v, _ in hlines)])
    ymax = y_max if y_max is not None else 4 * _nice(top_value * 1.05 / 4)  # round ticks
    if x1 <= x0:
        x1 = x0 + 1.0
    plot_w = width - LEFT - RIGHT
    plot_h = height - top - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (min(max(x, x0), x1) - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - min(max(y, 0.0), ymax) / ymax * plot_h

    parts: list[Html] = []
    # Grid and axes.
    for i in range(5):
        value = ymax * i / 4
        y = sy(value)
        parts.append(el("line", x1=LEFT, x2=width - RIGHT, y1=_f(y), y2=_f(y),
                        class_="grid" if i else "axis"))
        parts.append(el("text", fmt_y(value), x=LEFT - 6, y=_f(y + 3.5), class_="tick",
                        text_anchor="end"))
    for i in range(5):
        t = x0 + (x1 - x0) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(el("text", _time_label(t, x1 - x0), x=_f(sx(t)), y=height - 6,
                        class_="tick", text_anchor=anchor))
    # Bars first, lines over them.
    for s in series:
        if s.kind != "bars":
            continue
        rects = []
        for a, b, y in s.points:
            if y is None or y <= 0:
                continue
            left, right = sx(a), sx(b)
            bar_w = max(1.0, right - left - 1.0)
            rects.append(el("rect", x=_f(left + 0.5), y=_f(sy(y)), width=_f(bar_w),
                            height=_f(sy(0) - sy(y))))
        parts.append(el("g", rects, class_=" ".join(["series", "bars", s.css, *s.extra]),
                        data_series=s.label))
    for s in series:
        if s.kind == "bars":
            continue
        runs: list[list[tuple[float, float]]] = [[]]
        for a, b, y in s.points:
            if y is None:
                runs.append([])
            else:
                runs[-1].append((sx((a + b) / 2), sy(y)))
        d = ["M" + " L".join(f"{_f(x)} {_f(y)}" for x, y in run) for run in runs if run]
        dots = [el("circle", cx=_f(run[0][0]), cy=_f(run[0][1]), r=2.5)
                for run in runs if len(run) == 1]
        if d:
            parts.append(el("g", el("path", d=" ".join(d)), dots,
                            class_=" ".join(["series", "line", s.css, *s.extra]),
                            data_series=s.label))
    for value, text in hlines:
        y = _f(sy(value))
        parts.append(el("g", el("line", x1=LEFT, x2=width - RIGHT, y1=y, y2=y),
                        el("text", text, x=width - RIGHT - 4, y=_f(sy(value) - 4),
                           text_anchor="end"), class_="hline"))
    legend = [
        el("g", el("rect", x=_f(lx), y=_f(ly - 8), width=12, height=8),
           el("text", s.label, x=_f(lx + 16), y=_f(ly)),
           class_=" ".join(["key", s.css, *s.extra]))
        for s, (lx, ly) in zip(series, legend_at)
    ]
    parts.append(el("g", legend, class_="legend"))
    # Hover targets: one link per bucket.
    hits = []
    for o in overlays:
        left, right = sx(o.x0), sx(o.x1)
        hits.append(el("a", el("rect", el("title", o.title), x=_f(left), y=_f(top),
                               width=_f(max(1.0, right - left)), height=plot_h,
                               class_="hit"), href=o.href))
    parts.append(el("g", hits, class_="hits"))
    return el("svg", parts, class_="chart", data_chart=name, viewBox=f"0 0 {width} {height}",
              role="img", aria_label=label)


def sparkline(counts: Sequence[Sequence[int]], title: str) -> Html:
    """Invocations per bucket as a line, errors as red bars under it (the overview)."""
    w, h = 120.0, 28.0
    top = max((n for n, _e in counts), default=0)
    parts: list[Html] = [el("title", title)]
    if top > 0 and counts:
        step = w / len(counts)
        points = [
            (i * step + step / 2, h - 2 - (n / top) * (h - 4)) for i, (n, _e) in enumerate(counts)
        ]
        line = "M" + " L".join(f"{_f(x)} {_f(y)}" for x, y in points)
        area = f"{line} L{_f(points[-1][0])} {_f(h)} L{_f(points[0][0])} {_f(h)} Z"
        parts.append(el("path", d=area, class_="spark-area"))
        parts.append(el("path", d=line, class_="spark-line"))
        bars = []
        for i, (_n, errors) in enumerate(counts):
            if errors:
                bh = max(1.5, errors / top * (h - 4))
                bars.append(el("rect", x=_f(i * step), y=_f(h - bh), width=_f(max(1.0, step)),
                               height=_f(bh)))
        parts.append(el("g", bars, class_="spark-errors"))
    return el("svg", parts, class_="chart spark", data_chart="trend",
              viewBox=f"0 0 {_f(w)} {_f(h)}", role="img", aria_label=title,
              preserveAspectRatio="none")


def meter(value: float | None, limit: float | None, title: str) -> Html:
    """A small horizontal gauge: ``value`` of ``limit`` (memory peak against the size)."""
    parts: list[Html] = [el("title", title), el("rect", x=0, y=0, width=100, height=8,
                                                 class_="meter-track")]
    if value is not None and limit:
        share = max(0.0, min(1.0, value / limit))
        level = "high" if share >= 0.85 else "mid" if share >= 0.6 else "low"
        parts.append(el("rect", x=0, y=0, width=_f(max(1.0, share * 100)), height=8,
                        class_=f"meter-fill {level}"))
    return el("svg", parts, class_="meter", viewBox="0 0 100 8", role="img", aria_label=title,
              preserveAspectRatio="none")


def bar_track(x0: float, x1: float, start: float, end: float, *, error: bool,
              title: str, css: str = "bar") -> Html:
    """One bar of a waterfall: ``start``..``end`` on the axis ``x0``..``x1`` (ms)."""
    span = max(x1 - x0, 1e-9)
    left = max(0.0, min(1000.0, (start - x0) / span * 1000.0))
    width = max(2.0, min(1000.0 - left, (end - start) / span * 1000.0))
    classes = f"{css} error" if error else css
    return el("svg", el("rect", el("title", title), x=_f(left), y=0, width=_f(width),
                        height=12, class_=classes),
              class_="track", viewBox="0 0 1000 12", preserveAspectRatio="none",
              aria_hidden="true")


# -- flame graph and import bars ------------------------------------------------------------------

FLAME_WIDTH = 1200
FLAME_ROW = 18
#: Rects drawn at most (the hottest; a frame is drawn only under its drawn parent), and the
#: narrowest drawn, in viewBox units (of FLAME_WIDTH).
FLAME_MAX_RECTS = 1500
FLAME_MIN_WIDTH = 0.4
#: Width of a label character (11 px monospace) in viewBox units.
_CHAR_W = 6.7
_KIND_CLASS = {"user": "user", "library": "lib", "stdlib": "std", "other": "other"}


def _shade(key: str) -> int:
    """One of four shades per kind, stable for a function (neighbours differ)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % 4


def flame_graph(profile: Profile, *, max_rects: int = FLAME_MAX_RECTS,
                width: int = FLAME_WIDTH) -> tuple[Html, int, int]:
    """The profile's merged stacks as a flame graph: one ``rect.frame`` per function on a
    path from the root, its width the share of the samples that went through it, the root at
    the bottom, callees above their caller (the hottest to the left), coloured by where the
    code lives (``user``, ``lib``, ``std``, ``other``), each with a ``<title>`` naming the
    frame, its samples, their share and their time, and its name written on it when it fits.
    At most ``max_rects`` (the hottest: a frame is drawn only over its drawn caller), none
    narrower than ``FLAME_MIN_WIDTH``. Returns ``(svg, frames drawn, frames left out)``.

    The rects are written straight into the markup (a few thousand elements: :func:`el`
    would be the page's slowest part); every text in them goes through ``escape``."""
    total = profile.samples or 1
    scale = width / total
    # Breadth first, hottest first: a parent is always taken before its children.
    chosen: list[tuple[Node, int, float]] = []
    left_out = 0
    frontier: list[tuple[int, int, int, Node, float]] = []
    order = 0
    x = 0.0
    for child in profile.tree.sorted_children():
        frontier.append((-child.samples, 0, order, child, x))
        order += 1
        x += child.samples * scale
    heapq.heapify(frontier)
    while frontier:
        _, depth, _, node, x0 = heapq.heappop(frontier)
        if node.samples * scale < FLAME_MIN_WIDTH or len(chosen) >= max_rects:
            left_out += 1
            continue
        chosen.append((node, depth, x0))
        cx = x0
        for child in node.sorted_children():
            heapq.heappush(frontier, (-child.samples, depth + 1, order, child, cx))
            order += 1
            cx += child.samples * scale
    depth_max = max((d for _, d, _ in chosen), default=0)
    height = (depth_max + 1) * FLAME_ROW + 4
    interval = profile.interval_ms
    escape = html.escape
    parts: list[str] = []
    for node, depth, x0 in chosen:
        frame = node.frame
        if frame is None:  # pragma: no cover - the root is never queued
            continue
        w = node.samples * scale
        y = height - (depth + 1) * FLAME_ROW
        samples = node.samples
        title = frame.function + (f" ({frame.file})" if frame.file else "")
        figures = (f"{samples:,} samples ({samples / total:.1%}), "
                   f"{samples * interval:,.0f} ms")
        if node.self_samples:
            figures += f"; {node.self_samples:,} in the function itself"
        kind = _KIND_CLASS.get(frame.kind, "other")
        parts.append(
            f'<rect class="frame {kind} k{_shade(frame.key)}" x="{x0:.1f}" y="{y}" '
            f'width="{max(w - 0.5, 0.1):.1f}" height="{FLAME_ROW - 1}"><title>'
            f"{escape(title, quote=False)}\n{figures}</title></rect>")
        chars = int((w - 6) / _CHAR_W)
        if chars >= 3:
            text = frame.function if len(frame.function) <= chars else (
                frame.function[:chars - 1] + "…")
            parts.append(f'<text x="{x0 + 3:.1f}" y="{y + 12}">'
                         f"{escape(text, quote=False)}</text>")
    svg = el("svg", Html("".join(parts)), class_="flame", data_chart="flame",
             viewBox=f"0 0 {width} {height}", role="img",
             aria_label=f"flame graph: {profile.samples:,} samples, {len(chosen)} frames")
    return svg, len(chosen), left_out


def share_bar(share: float, title: str) -> Html:
    """A small bar: a share (0..1) of a whole (an import's time against the handler's)."""
    width = max(0.5, min(1.0, share) * 100.0)
    return el("svg", el("title", title), el("rect", x=0, y=0, width=_f(width), height=6),
              class_="ibar", viewBox="0 0 100 6", preserveAspectRatio="none", role="img",
              aria_label=title)

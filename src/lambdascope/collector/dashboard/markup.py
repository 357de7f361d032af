"""A tiny HTML builder that escapes by default, and the figures' formats.

Every string that reaches a page goes through :func:`el` or :func:`esc`: a plain ``str`` is
escaped (text and attribute values alike), only :class:`Html` (what these functions return)
passes as it is. So a label, a span name, a log line or an error message is always shown as
text, in HTML and in inline SVG.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

__all__ = [
    "Html",
    "el",
    "esc",
    "fmt_count",
    "fmt_mb",
    "fmt_ms",
    "fmt_rate",
    "fmt_time",
    "fmt_usd",
    "join",
    "url",
]


class Html(str):
    """Markup that is already safe: escaped text and elements built here."""

    __slots__ = ()


#: What an element may hold: markup, text (escaped), numbers, nothing, or a sequence of those.
Child = Html | str | int | float | None | Iterable[Any]
Attr = str | int | float | bool | None

_VOID = frozenset(("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"))


def esc(value: object) -> Html:
    """``value`` as text: escaped unless it is :class:`Html` already."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def _children(children: Iterable[Child], out: list[str]) -> None:
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, Html):
            out.append(child)
        elif isinstance(child, str):
            out.append(html.escape(child, quote=False))
        elif isinstance(child, (int, float)):
            out.append(str(child))
        else:
            _children(child, out)


def join(*children: Child) -> Html:
    """The children one after the other (strings escaped, ``None`` left out)."""
    out: list[str] = []
    _children(children, out)
    return Html("".join(out))


_ATTR_NAMES: dict[str, str] = {}


def _attr_name(name: str) -> str:
    found = _ATTR_NAMES.get(name)
    if found is None:
        found = _ATTR_NAMES[name] = name.rstrip("_").replace("_", "-")
    return found


_escape = html.escape


def el(tag: str, *children: Child, **attrs: Attr) -> Html:
    """``<tag attrs>children</tag>``. Attribute names: a trailing ``_`` is dropped (``class_``)
    and ``_`` becomes ``-`` (``data_span_id``); ``None`` and ``False`` leave the attribute
    out, ``True`` writes it bare."""
    parts = ["<", tag]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(" " + _attr_name(name))
        elif type(value) is str:
            parts.append(f' {_attr_name(name)}="{_escape(value, quote=True)}"')
        elif type(value) is int:
            parts.append(f' {_attr_name(name)}="{value}"')
        elif type(value) is float:
            parts.append(f' {_attr_name(name)}="{_num(value)}"')
        else:
            parts.append(f' {_attr_name(name)}="{_escape(str(value), quote=True)}"')
    parts.append(">")
    if tag in _VOID:
        return Html("".join(parts))
    _children(children, parts)
    parts.append(f"</{tag}>")
    return Html("".join(parts))


def _num(value: float) -> str:
    """A coordinate: short, with no exponent."""
    if value.is_integer():
        return str(int(value))
    return f"{value:.2f}"


def url(path: str, params: Mapping[str, object] | None = None) -> str:
    """A URL of this site: ``path`` (each segment percent-encoded as given) and the query
    parameters that are not ``None`` or empty."""
    query = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
    return path + ("?" + urlencode(query) if query else "")


def path_segment(value: str) -> str:
    """A path segment from user data (a function name, a request id)."""
    return quote(value, safe="")


# -- formats -------------------------------------------------------------------------------------
DASH = "\u2013"  # an en dash: no figure


def fmt_ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def fmt_rate(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    pct = value * 100.0
    if pct == 0:
        return "0%"
    if pct < 0.1:
        return f"{pct:.2f}%"
    if pct < 10:
        return f"{pct:.1f}%"
    return f"{pct:.0f}%"


def fmt_mb(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    if abs(value) >= 100:
        return f"{value:.0f} MB"
    return f"{value:.1f} MB"


def fmt_usd(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    if value == 0:
        return "$0"
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 0.01:
        return f"${value:.2f}"
    return f"${value:.2g}" if value >= 1e-4 else f"${value:.1e}"


def fmt_count(value: int | float | None) -> str:
    if value is None:
        return DASH
    return f"{int(value):,}"


def fmt_time(ms: float | None, *, seconds: bool = True, millis: bool = False) -> str:
    """UTC: ``2026-01-05 10:00:00`` (``.123`` with ``millis``)."""
    if ms is None or not math.isfinite(ms):
        return DASH
    whole = math.floor(ms / 1000.0)
    text = time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M",
                         time.gmtime(whole))
    if millis:
        text += f".{int(ms - whole * 1000.0):03d}"
    return text


def fmt_duration_words(ms: float) -> str:
    """A window's length in words: ``15 min``, ``6 h``, ``7 d``."""
    if ms >= 86_400_000 and ms % 86_400_000 == 0:
        return f"{ms / 86_400_000:.0f} d"
    if ms >= 3_600_000:
        return f"{ms / 3_600_000:.3g} h"
    if ms >= 60_000:
        return f"{ms / 60_000:.3g} min"
    return f"{ms / 1000:.3g} s"

"""The pages' query parameters: parsed with the API's parsers (:mod:`..app`), so ``since=1h``,
``since=1767225600000``, ``cold=true`` mean the same on a page as in ``/api/``.

An empty value (what a filter form sends for a field left blank) is no filter; an unknown
parameter or a value that does not parse is a :class:`BadRequest` (a 400 page with one line).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..app import (
    MAX_OFFSET,
    TRACE_ID,
    _boolean,
    _integer,
    _number,
    _pattern,
    _string,
    one_line,
    parse_time_ms,
)
from .markup import url

__all__ = ["MAX_PAGE", "STATUSES", "BadRequest", "Query", "parse_query"]

#: Most rows on one page of a list.
MAX_PAGE = 500
STATUSES = ("ok", "error", "timeout", "crashed")


class BadRequest(Exception):
    """A parameter the page cannot use: ``message`` is the one line shown."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = one_line(message)


def _status(text: str) -> str:
    if text == "crash":  # the short form is accepted too
        return "crashed"
    if text not in STATUSES:
        raise ValueError(f"expected one of {', '.join(STATUSES)}, not {text!r}")
    return text


def _level(text: str) -> str:
    value = _string(32)(text)
    if not value.replace("_", "").isalnum():
        raise ValueError(f"not a log level name: {text!r}")
    return value.upper()


PARSERS: dict[str, Callable[[str], Any]] = {
    "function": _string(256),
    "version": _string(128),
    "cold": _boolean,
    "status": _status,
    "label": _string(256),
    "trigger": _string(64),
    "since": lambda text: text,  # resolved against the request's clock below
    "until": lambda text: text,
    "slower_than": _number(0, 1e9),
    "level": _level,
    "q": _string(256),
    "limit": _integer(1, MAX_PAGE),
    "offset": _integer(0, MAX_OFFSET),
    "trace_id": _pattern(TRACE_ID, "a trace id (32 lowercase hex digits)"),
    "fingerprint": _string(128),
    "next": _string(2000),
}


class Query:
    """A page's parameters: ``raw`` (what the URL said, for links that keep the filters),
    ``values`` (parsed, defaults applied), the window ``since_ms``/``until_ms`` resolved
    against ``now_ms``."""

    def __init__(self, path: str, raw: dict[str, str], values: dict[str, Any], now_ms: float,
                 since_ms: float | None, until_ms: float | None) -> None:
        self.path = path
        self.raw = raw
        self.values = values
        self.now_ms = now_ms
        self.since_ms = since_ms
        self.until_ms = until_ms

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def link(self, path: str | None = None, **changes: Any) -> str:
        """This page (or ``path``) with the same parameters but ``changes`` (``None``
        removes one)."""
        params: dict[str, Any] = dict(self.raw)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return url(self.path if path is None else path, params)

    def window(self) -> dict[str, str]:
        """The window as given or defaulted (``since=1h`` stays relative), for links to other
        pages."""
        return {k: str(self.values[k]) for k in ("since", "until")
                if self.values.get(k) is not None}


def parse_query(path: str, query: Iterable[tuple[str, str]], allowed: Iterable[str],
                defaults: Mapping[str, str] | None = None,
                now_ms: float | None = None) -> Query:
    """The page's parameters, or :class:`BadRequest`."""
    allowed = tuple(allowed)
    raw: dict[str, str] = {}
    for name, value in query:
        if name not in allowed:
            raise BadRequest(f"unknown parameter {name[:64]!r} (this page takes: "
                             f"{', '.join(sorted(allowed))})")
        if name in raw:
            raise BadRequest(f"{name}: given more than once")
        if value.strip() != "":
            raw[name] = value.strip()
    now = time.time() * 1000.0 if now_ms is None else now_ms
    values: dict[str, Any] = {}
    for name in allowed:
        text = raw.get(name, (defaults or {}).get(name))
        if text is None:
            continue
        try:
            values[name] = PARSERS[name](text)
        except ValueError as exc:
            raise BadRequest(f"{name}: {exc}") from exc
    window: dict[str, float] = {}
    for name in ("since", "until"):
        if name in values:
            try:
                window[name] = parse_time_ms(values[name], now)
            except ValueError as exc:
                raise BadRequest(f"{name}: {exc}") from exc
    since_ms, until_ms = window.get("since"), window.get("until")
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise BadRequest("until is before since")
    return Query(path, raw, values, now, since_ms, until_ms)

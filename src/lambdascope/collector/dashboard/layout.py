"""The frame every page shares: head (the stylesheet and script, both files of this package),
navigation, the firing-alerts banner, ``<main id="content">``; the error and login pages; the
static files with their content hashes (so a new release is never served from a stale cache).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from .markup import Html, el, fmt_time, join, path_segment, url

__all__ = ["NAV", "asset", "error_page", "login_page", "page", "static_files"]

#: The pages in the navigation: (path, label, key).
NAV = (
    ("/", "Overview", "overview"),
    ("/invocations", "Invocations", "invocations"),
    ("/dependencies", "Dependencies", "dependencies"),
    ("/logs", "Logs", "logs"),
    ("/map", "Service map", "map"),
)

_TYPES = {
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
}


@functools.lru_cache(maxsize=1)
def static_files() -> dict[str, tuple[bytes, str, str]]:
    """``{name: (content, content type, short hash)}`` for the files under ``static/``."""
    out = {}
    folder = resources.files(__package__).joinpath("static")
    for item in folder.iterdir():
        name = item.name
        kind = _TYPES.get(name.rsplit(".", 1)[-1])
        if kind is None or not item.is_file():
            continue
        data = item.read_bytes()
        out[name] = (data, kind, hashlib.sha256(data).hexdigest()[:12])
    return out


def asset(name: str) -> str:
    """The URL of a static file, with its content hash."""
    return url(f"/static/{name}", {"v": static_files()[name][2]})


def _alerts(alerts: Sequence[Mapping[str, Any]]) -> Html | None:
    if not alerts:
        return None
    items = []
    for alert in alerts:
        function = alert.get("function")
        where: Html | str = ""
        if isinstance(function, str) and function and function != "*":
            where = el("a", function, href=f"/functions/{path_segment(function)}")
        value, threshold = alert.get("value"), alert.get("threshold")
        items.append(el(
            "div",
            el("strong", str(alert.get("rule") or "alert")), " ",
            where, " ",
            el("span", str(alert.get("metric") or ""), class_="metric"), " ",
            _figure(value), " > ", _figure(threshold),
            f" over {alert.get('window')}" if alert.get("window") else "",
            f", since {fmt_time(alert['since_ms'])} UTC"
            if isinstance(alert.get("since_ms"), (int, float)) else "",
            class_="alert",
        ))
    return el("div", el("span", f"{len(items)} alert{'s' if len(items) != 1 else ''} firing",
                        class_="alerts-title"), items, class_="alerts", role="alert")


def _figure(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4g}"


def page(title: str, body: Html, *, active: str | None, alerts: Sequence[Mapping[str, Any]],
         logout: bool, heading: Html | str | None = None, subtitle: Html | str | None = None
         ) -> Html:
    """A whole page: ``<main id="content">`` holds the ``<h1>`` (``heading`` or ``title``),
    then ``body``."""
    nav = el("nav", [
        el("a", label, href=path, aria_current="page" if key == active else None)
        for path, label, key in NAV
    ], aria_label="Pages")
    out = el("form", el("button", "Log out", type="submit", class_="link"),
             method="post", action="/logout", class_="logout") if logout else None
    head = el(
        "head",
        el("meta", charset="utf-8"),
        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
        el("title", f"{title} · lambdascope"),
        el("link", rel="stylesheet", href=asset("dashboard.css")),
        el("link", rel="icon", href=asset("favicon.svg"), type="image/svg+xml"),
        el("script", src=asset("dashboard.js"), defer=True),
    )
    top = el("header", el("a", el("span", "λ", class_="logo"), "lambdascope", href="/",
                          class_="brand"), nav, out, class_="top")
    main = el("main", el("h1", heading if heading is not None else title),
              el("p", subtitle, class_="subtitle") if subtitle else None, body, id="content")
    return Html("<!doctype html>\n" + el("html", head, el("body", top, _alerts(alerts), main),
                                         lang="en"))


def error_page(status: int, message: str, *, alerts: Sequence[Mapping[str, Any]] = (),
               logout: bool = False) -> Html:
    titles = {400: "Bad request", 401: "Not logged in", 404: "Not found",
              500: "Something went wrong"}
    title = titles.get(status, f"Error {status}")
    return page(title, el("p", message, class_="reason"), active=None, alerts=alerts,
                logout=logout)


def login_page(next_path: str, message: str | None = None) -> Html:
    form = el(
        "form",
        el("input", type="hidden", name="next", value=next_path),
        el("label", "Token", el("input", name="token", type="password", required=True,
                                autocomplete="current-password", autofocus=True)),
        el("button", "Log in", type="submit"),
        class_="login", method="post", action="/login",
    )
    body = join(
        el("p", message, class_="reason") if message else None,
        el("p", "This collector needs its token (the one given with --token or "
                "LAMBDASCOPE_TOKEN)."),
        form,
    )
    return page("Log in", body, active=None, alerts=(), logout=False)


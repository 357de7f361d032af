"""The web dashboard the collector serves at ``/``: server-rendered pages, charts as inline SVG,
a small stylesheet and script of this package's own (``static/``), no network beyond the
collector.

``routes(readers, secret)`` gives the Starlette routes that ``create_app`` mounts: the pages of
SPEC section 8 (``/``, ``/functions/{name}``, ``/invocations``, ``/invocations/{request_id}``,
``/dependencies``, ``/logs``, ``/map``), ``/login`` and ``/logout`` when the collector has a
token, and ``/static/{name}``. Every answer carries a strict Content-Security-Policy (no
inline script or style: the pages use classes, and the script is a file), ``nosniff`` and a
``Referrer-Policy``. Pages are rendered in the thread pool on the thread's read connection.
"""

from __future__ import annotations

import hmac
import logging
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import auth
from .layout import error_page, login_page, page, static_files
from .markup import Html, path_segment, url

__all__ = ["CSP", "SECURITY_HEADERS", "routes"]

log = logging.getLogger("lambdascope.collector")

CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
#: The largest login form accepted.
MAX_FORM = 8192
#: A wrong token waits this long before its answer (guessing gets slow).
WRONG_TOKEN_DELAY_S = 0.25


def html_response(body: Html | str, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    return HTMLResponse(str(body), status_code=status, headers={**_PAGE_HEADERS,
                                                                **(headers or {})})


def _firing(state: Any) -> list[dict[str, Any]]:
    alerts = getattr(state, "alerts", None)
    if alerts is None:
        return []
    try:
        found = alerts.firing()
    except Exception:
        log.exception("lambdascope collector: listing the firing alerts failed")
        return []
    return [dict(a) for a in found or [] if isinstance(a, Mapping)]


def _here(request: Request) -> str:
    """This request's path and query, as the browser sent them (for ``next=``)."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else urllib.parse.quote(
        request.url.path)
    query = request.url.query
    return path + ("?" + query if query else "")


def _same_origin(request: Request) -> bool:
    """A form post from a page of this site (or from a client that sends no Origin)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return urllib.parse.urlsplit(origin).netloc == host


def routes(readers: Any, secret: bytes | None, *, prices: Any = None) -> list[Route]:
    """The dashboard's routes. ``readers``: the application's per-thread read connections
    (``.get()``); ``secret``: the token as bytes, or ``None`` for open pages; ``prices``: a
    :class:`~lambdascope.collector.pricing.Prices` for the cost figures (default: AWS's)."""
    from .params import BadRequest, parse_query

    def authed(request: Request) -> bool:
        if secret is None:
            return True
        if auth.session_ok(secret, request.cookies.get(auth.COOKIE), time.time()):
            return True
        from ..app import _bearer_ok

        return "authorization" in request.headers and _bearer_ok(request, secret)

    def to_login(request: Request) -> Response:
        return RedirectResponse(url("/login", {"next": _here(request)}), status_code=303,
                                headers=_PAGE_HEADERS)

    def render(state: Any, key: str, query: Any, ctx: dict[str, Any]) -> Response:
        from .pages import PAGES, NotFound

        spec = PAGES[key]
        alerts = _firing(state)
        logout = secret is not None
        try:
            out = spec.render(readers.get(), query, ctx)
        except NotFound as exc:
            return html_response(error_page(404, str(exc), alerts=alerts, logout=logout), 404)
        except BadRequest as exc:
            return html_response(error_page(400, exc.message, alerts=alerts, logout=logout),
                                 400)
        except ValueError as exc:  # the queries' word for a value they cannot use
            return html_response(error_page(400, str(exc), alerts=alerts, logout=logout), 400)
        except Exception as exc:
            log.exception("lambdascope collector: the %s page failed", key)
            return html_response(error_page(500, f"internal error: {type(exc).__name__}",
                                            alerts=alerts, logout=logout), 500)
        return html_response(page(out.title, out.body, active=spec.nav, alerts=alerts,
                                  logout=logout, heading=out.heading, subtitle=out.subtitle))

    def page_route(path: str, key: str) -> Route:
        async def handle(request: Request) -> Response:
            from .pages import PAGES

            if not authed(request):
                return to_login(request)
            ctx: dict[str, Any] = {"prices": prices}
            page_path = path
            if key == "function":
                ctx["name"] = request.path_params["name"]
                page_path = f"/functions/{path_segment(ctx['name'])}"
            elif key == "invocation":
                ctx["request_id"] = request.path_params["request_id"]
                page_path = f"/invocations/{path_segment(ctx['request_id'])}"
            spec = PAGES[key]
            try:
                query = parse_query(page_path, request.query_params.multi_items(), spec.params,
                                    spec.defaults)
            except BadRequest as exc:
                alerts = await run_in_threadpool(_firing, request.app.state)
                return html_response(error_page(400, exc.message, alerts=alerts,
                                                logout=secret is not None), 400)
            return await run_in_threadpool(render, request.app.state, key, query, ctx)

        return Route(path, handle, methods=["GET"], name=f"dashboard:{key}")

    async def static(request: Request) -> Response:
        found = static_files().get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain",
                            headers=SECURITY_HEADERS)
        data, kind, digest = found
        etag = f'"{digest}"'
        cache = ("public, max-age=31536000, immutable" if request.query_params.get("v") == digest
                 else "no-cache")
        headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=kind, headers=headers)

    async def login(request: Request) -> Response:
        if secret is None:
            return RedirectResponse("/", status_code=303, headers=_PAGE_HEADERS)
        if request.method == "GET":
            unknown = [k for k in request.query_params if k != "next"]
            if unknown:
                return html_response(error_page(400, f"unknown parameter {unknown[0][:64]!r}"),
                                     400)
            target = auth.safe_next(request.query_params.get("next"))
            if authed(request):
                return RedirectResponse(target, status_code=303, headers=_PAGE_HEADERS)
            return html_response(login_page(target))
        if not _same_origin(request):
            return html_response(error_page(403, "a login from another site is refused"), 403)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_FORM:
            return html_response(error_page(413, "the form is too large"), 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                return html_response(error_page(413, "the form is too large"), 413)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        token = (form.get("token") or [""])[0]
        target = auth.safe_next((form.get("next") or ["/"])[0])
        if not token or not auth.token_ok(secret, token):
            hmac.compare_digest(b"", secret)
            await anyio.sleep(WRONG_TOKEN_DELAY_S)
            return html_response(login_page(target, "Wrong token." if token
                                            else "Type the token."), 401)
        response = RedirectResponse(target, status_code=303, headers=_PAGE_HEADERS)
        response.set_cookie(auth.COOKIE, auth.new_session(secret, time.time()),
                            max_age=auth.MAX_AGE_S, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return html_response(error_page(403, "a logout from another site is refused"), 403)
        response = RedirectResponse("/login" if secret is not None else "/", status_code=303,
                                    headers=_PAGE_HEADERS)
        response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        page_route("/", "overview"),
        page_route("/functions/{name:path}", "function"),
        page_route("/invocations", "invocations"),
        page_route("/invocations/{request_id:path}", "invocation"),
        page_route("/dependencies", "dependencies"),
        page_route("/logs", "logs"),
        page_route("/map", "map"),
        Route("/login", login, methods=["GET", "POST"], name="dashboard:login"),
        Route("/logout", logout, methods=["POST"], name="dashboard:logout"),
        Route("/static/{name}", static, methods=["GET"], name="dashboard:static"),
    ]

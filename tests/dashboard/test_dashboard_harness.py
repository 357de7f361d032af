"""The browser harness itself: what ``Watch`` must catch for the page tests to mean anything
(a CSP violation, a console error, an uncaught error, a dialog, an error response), on pages
served by Playwright's router (no collector involved)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboard_harness import Watch, csp_problems

ORIGIN = "http://harness.invalid"
STRICT = ("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
          "frame-ancestors 'none'")


def serve(watch: Watch, body: str, csp: str | None) -> None:
    headers = {"content-type": "text/html; charset=utf-8"}
    if csp:
        headers["content-security-policy"] = csp

    def handle(route: Any) -> None:
        if route.request.url.rstrip("/") == ORIGIN:
            route.fulfill(status=200, headers=headers, body=body)
        else:
            route.fulfill(status=404, body="")

    watch.page.route(f"{ORIGIN}/**", handle)


def test_the_watch_reports_csp_violations(open_page: Callable[[str], Watch]) -> None:
    watch = open_page(ORIGIN)
    serve(watch, "<h1>x</h1><script>document.title = 'ran'</script>", STRICT)
    watch.goto("/")
    assert watch.page.title() != "ran", "the inline script ran despite the policy"
    assert any("Content Security Policy" in p for p in watch.unexpected()), watch.problems
    watch.problems.clear()


def test_the_watch_reports_errors_dialogs_and_bad_responses(
    open_page: Callable[[str], Watch],
) -> None:
    watch = open_page(ORIGIN)
    serve(watch, "<h1>x</h1><img src=x onerror=alert(1)><script>console.warn('w');"
                 "throw new Error('boom')</script>", None)
    watch.goto("/")
    watch.page.wait_for_function("document.images[0].complete")
    problems = "\n".join(watch.unexpected())
    assert "console warning: w" in problems
    assert "page error: boom" in problems
    assert "response 404: GET http://harness.invalid/x" in problems
    assert watch.dialogs == ["alert: 1"]
    watch.allow("console warning: w|page error|response 404|Failed to load resource")
    assert watch.unexpected() == []
    watch.dialogs.clear()


def test_csp_problems() -> None:
    assert csp_problems(STRICT) == []
    assert csp_problems(None) == ["no Content-Security-Policy header"]
    assert "script-src allows 'unsafe-inline'" in csp_problems(
        STRICT.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'"))
    assert "script-src allows https://cdn.example" in csp_problems(
        "default-src 'self' https://cdn.example; object-src 'none'; frame-ancestors 'none'")
    assert "object-src is not 'none'" in csp_problems("default-src 'self'; frame-ancestors 'none'")

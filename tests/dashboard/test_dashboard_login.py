"""With a token, the pages need it too: a collector started with ``--token`` sends every page
to ``/login``, refuses a wrong token and, for the right one, sets an ``HttpOnly``,
``SameSite=Strict`` cookie and lands on the overview."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from collector_harness import Collector
from dashboard_harness import TOKEN, Watch, csp_problems


@pytest.fixture
def login(token_collector: Collector, open_page: Callable[[str], Watch]) -> Watch:
    return open_page(token_collector.url)


def submit_token(watch: Watch, token: str) -> object:
    page = watch.page
    form = page.locator("form.login")
    assert form.count() == 1, "no form.login"
    assert (form.get_attribute("method") or "").lower() == "post"
    assert urlsplit(form.get_attribute("action") or "").path == "/login"
    field = form.locator('input[name="token"]')
    assert field.get_attribute("type") == "password"
    field.fill(token)
    with page.expect_navigation(wait_until="load") as navigation:
        form.locator("button[type=submit], input[type=submit]").first.click()
    return navigation.value


@pytest.mark.parametrize("path", ["/", "/invocations?function=x", "/map", "/logs"])
def test_pages_send_to_the_login_form(login: Watch, path: str) -> None:
    response = login.goto(path)
    assert urlsplit(login.page.url).path == "/login", login.page.url
    assert login.page.locator("h1").count() >= 1
    assert login.page.locator('form.login input[name="token"][type="password"]').count() == 1
    assert csp_problems(response.headers.get("content-security-policy")) == []
    assert login.page.context.cookies() == []
    if path == "/":
        login.screenshot("login")


def test_the_pages_answer_nothing_without_the_token(token_collector: Collector) -> None:
    """Without a browser: a redirect to the login form, with no data in it."""
    response = httpx.get(token_collector.url + "/invocations", follow_redirects=False)
    assert response.status_code in (302, 303, 307), response.status_code
    assert urlsplit(response.headers["location"]).path == "/login"
    assert "data-table" not in response.text


def test_a_wrong_token_is_refused(login: Watch) -> None:
    login.allow_status(401, "POST", "/login")
    login.allow_status(403, "POST", "/login")
    login.goto("/login")
    response = submit_token(login, "not-the-token")
    assert response is not None
    assert urlsplit(login.page.url).path == "/login"
    assert login.page.locator("form.login").count() == 1, "the form is not shown again"
    assert login.page.context.cookies() == [], "a cookie for a wrong token"
    login.goto("/")
    assert urlsplit(login.page.url).path == "/login"


def test_the_right_token_opens_the_dashboard(login: Watch) -> None:
    login.goto("/")
    submit_token(login, TOKEN)
    assert urlsplit(login.page.url).path == "/", login.page.url
    assert login.page.locator("form.login").count() == 0
    assert login.page.locator("main#content").count() == 1
    cookies = login.page.context.cookies()
    assert cookies, "no cookie set"
    for cookie in cookies:
        assert cookie["httpOnly"] is True, cookie
        assert cookie["sameSite"] == "Strict", cookie
    for path in ("/invocations", "/dependencies", "/logs", "/map"):
        login.goto(path)
        assert urlsplit(login.page.url).path == path


def test_login_returns_to_the_page_asked_for(login: Watch) -> None:
    login.goto("/dependencies")
    assert urlsplit(login.page.url).path == "/login"
    submit_token(login, TOKEN)
    assert urlsplit(login.page.url).path == "/dependencies", login.page.url
    assert login.page.locator("form.login").count() == 0
    assert login.page.locator("main#content").count() == 1

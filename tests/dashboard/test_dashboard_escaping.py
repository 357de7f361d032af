"""What users send is shown as text, never run: a label ``note=<script>alert(1)</script>``, a
log line and an error message holding ``<img src=x onerror=alert(1)>`` (both sent by the real
agent), and markup in the query string. Each page registers a dialog handler (the
``Watch`` fails the test if ``alert`` ever opens one) and the DOM is searched for elements the
markup would have made."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from dashboard_harness import (
    IMG_SHAPE,
    IMG_TEXT,
    SCRIPT_LABEL,
    SCRIPT_TEXT,
    Fill,
    Watch,
    csp_problems,
    read_table,
    submit_filters,
)

# Elements the markup would have created, had it been parsed as HTML.
_INJECTED = """() => ({
  scripts: [...document.scripts].filter(s => s.textContent.includes('alert(1)')).length,
  images: [...document.images].filter(i => i.getAttribute('src') === 'x').length,
  handlers: [...document.querySelectorAll('[onerror]')].length,
})"""


def assert_nothing_injected(watch: Watch) -> None:
    assert watch.page.evaluate(_INJECTED) == {"scripts": 0, "images": 0, "handlers": 0}
    assert watch.dialogs == []


def test_the_script_label_is_text_on_its_invocation(dash: Watch, filled: Fill) -> None:
    dash.goto(f"/invocations/{filled.xss_request_id}")
    text = dash.page.inner_text("main#content")
    assert SCRIPT_TEXT in text, "the label is not shown as text"
    assert SCRIPT_LABEL in text
    assert f"customer note: {IMG_TEXT}" in text
    assert_nothing_injected(dash)


def test_the_script_label_as_a_filter(dash: Watch, filled: Fill) -> None:
    """The label filter typed into the form comes back in the form and the list as text."""
    dash.goto("/invocations")
    submit_filters(dash, {"label": SCRIPT_LABEL})
    table = read_table(dash.page, "invocations")
    assert [href.rsplit("/", 1)[-1] for href in table.links if href] == [
        filled.xss_request_id]
    field = dash.page.locator('form.filters [name="label"]')
    assert field.input_value() == SCRIPT_LABEL
    assert_nothing_injected(dash)


@pytest.mark.parametrize(("path", "shown"), [
    ("/logs", IMG_TEXT),
    ("/logs?level=error", IMG_TEXT),
    ("/functions/shop-orders", IMG_SHAPE),  # error groups show the message's shape
])
def test_markup_in_logs_and_errors_is_text(dash: Watch, filled: Fill, path: str,
                                           shown: str) -> None:
    dash.goto(path)
    assert shown in dash.page.inner_text("main#content")
    assert_nothing_injected(dash)


@pytest.mark.parametrize("path", [
    "/invocations?function=" + quote(SCRIPT_TEXT),
    "/logs?q=" + quote(IMG_TEXT),
    "/functions/" + quote(SCRIPT_TEXT, safe=""),
    "/invocations/" + quote(IMG_TEXT, safe=""),
    "/?since=" + quote(SCRIPT_TEXT),
])
def test_markup_in_the_url_is_never_run(dash: Watch, filled: Fill, path: str) -> None:
    # A page may refuse the value (400) or not find it (404); it may not run it.
    dash.allow_status(400)
    dash.allow_status(404)
    response = dash.goto(path, status=None)
    assert response.status in (200, 400, 404), response.status
    assert_nothing_injected(dash)
    # error pages carry the policy too
    assert csp_problems(response.headers.get("content-security-policy")) == []

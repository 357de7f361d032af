"""The dashboard's pages in headless Chromium, on a collector filled by the real agent.

The fill (``dashboard_harness.fill``) ran 13 ``shop-orders`` invocations (versions 1 and 2, two
sandboxes, 2 failed), 3 ``shop-payments`` invocations continuing three orders' traces over SQS,
and 4 ``mail-notify`` invocations; the numbers each page shows are checked against it. Every
test fails on a console error or warning (CSP violations included), an uncaught page error, a
failed request or a dialog (see ``conftest.open_page``). The screenshots of
``docs/dashboard.md`` are written here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from collector_harness import Collector
from dashboard_harness import (
    ALERT_RULE,
    IMG_SHAPE,
    IMG_TEXT,
    QUEUE,
    RECEIPTS_BUCKET,
    SERVICES,
    Fill,
    Peer,
    Table,
    Watch,
    csp_problems,
    fraction,
    iter_nav_links,
    number,
    quantity,
    read_table,
    sort_direction,
    submit_filters,
    svg_shapes,
    wait_for,
)

PAGES = ("overview", "function", "invocations", "invocation", "dependencies", "logs", "map")
NAV_TARGETS = ("/", "/invocations", "/dependencies", "/logs", "/map")


def page_path(name: str, filled: Fill) -> str:
    return {
        "overview": "/",
        "function": "/functions/shop-orders",
        "invocations": "/invocations",
        "invocation": f"/invocations/{filled.failed_traced_request_id}",
        "dependencies": "/dependencies",
        "logs": "/logs",
        "map": "/map",
    }[name]


def query(watch: Watch) -> dict[str, list[str]]:
    return parse_qs(urlsplit(watch.page.url).query)


def main_text(watch: Watch) -> str:
    return watch.page.inner_text("main#content")


def request_id_of(href: str | None) -> str:
    assert href, "a row without a link"
    found = re.search(r"/invocations/([^/?#]+)", href)
    assert found, f"not a link to an invocation: {href}"
    return found.group(1)


def api(collector: Collector, path: str, **params: Any) -> Any:
    response = httpx.get(collector.url + path, params=params, timeout=10.0)
    response.raise_for_status()
    return response.json()


_HAS_H1 = re.compile(r"<h1[\s>]", re.IGNORECASE)


def follow_row_links(watch: Watch, table: Table) -> list[str]:
    """Every row's link answers 200 with an ``h1``: the first opened by a click in the
    browser, the others fetched with the page's cookies. The links' paths, deduplicated."""
    assert table.links and all(table.links), f"rows without a link in {table.name}"
    hrefs = [h for h in dict.fromkeys(table.links) if h is not None]
    first = watch.page.locator(
        f'table.data[data-table="{table.name}"] tbody tr td:first-child a[href]').first
    with watch.page.expect_navigation(wait_until="load") as navigation:
        first.click()
    assert navigation.value is not None and navigation.value.status == 200, hrefs[0]
    assert watch.path() == hrefs[0] or watch.page.url == hrefs[0], (watch.page.url, hrefs[0])
    assert watch.page.locator("h1").count() >= 1
    for href in hrefs[1:]:
        response = watch.page.request.get(watch.url(href))
        assert response.status == 200, (href, response.status)
        assert _HAS_H1.search(response.text()), href
    return [urlsplit(h).path + (f"?{urlsplit(h).query}" if urlsplit(h).query else "")
            for h in hrefs]


# -- every page ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_cleanly_under_a_strict_csp(dash: Watch, filled: Fill,
                                                       name: str) -> None:
    response = dash.goto(page_path(name, filled))
    assert response.headers.get("content-type", "").startswith("text/html")
    page = dash.page
    assert page.locator("h1").count() >= 1, "no h1"
    assert page.locator("h1").first.inner_text().strip()
    assert page.locator("main#content").count() == 1
    links = {urlsplit(href).path for href in iter_nav_links(page)}
    missing = [target for target in NAV_TARGETS if target not in links]
    assert not missing, f"nav lacks links to {missing}: {sorted(links)}"
    header = response.headers.get("content-security-policy")
    assert csp_problems(header) == [], header
    if name == "overview":  # every page the nav names answers
        for target in sorted(links):
            assert page.request.get(dash.url(target)).status == 200, target


# -- overview --------------------------------------------------------------------------------------
def test_overview_lists_every_function_grouped_by_service(dash: Watch, filled: Fill) -> None:
    dash.goto("/")
    table = read_table(dash.page, "functions")
    names = [row[0] for row in table.rows]
    for function in filled.functions:
        assert sum(function in name for name in names) == 1, (function, names)
    invocations = table.column(r"^invocations$", r"invocations", r"calls|requests")
    errors = table.column(r"error.?rate", r"error")
    colds = table.column(r"cold.?start.?rate", r"cold.?start", r"^cold")
    for function in filled.functions:
        row = table.row_with(function)
        total = filled.count(function)
        assert number(row[invocations]) == total, (function, row)
        assert fraction(row[errors], total) == pytest.approx(
            filled.count(function, status="error") / total, abs=0.006), (function, row)
        assert fraction(row[colds], total) == pytest.approx(
            filled.count(function, cold=True) / total, abs=0.006), (function, row)
    # grouped: the functions of one service are next to each other, each service named
    text = main_text(dash)
    order = [next(f for f in filled.functions if f in name) for name in names]
    for service in set(SERVICES.values()):
        assert service in text
        members = [i for i, f in enumerate(order) if SERVICES[f] == service]
        assert members == list(range(members[0], members[0] + len(members))), order
    dash.screenshot("overview")


def test_overview_has_a_trend_chart_per_function(dash: Watch, filled: Fill) -> None:
    dash.goto("/")
    shapes = svg_shapes(dash.page, 'svg.chart[data-chart="trend"]')
    assert len(shapes) >= len(filled.functions), shapes
    assert all(n > 0 for n in shapes), f"trend charts without a path or rect: {shapes}"


def test_overview_time_range_picker_keeps_the_range_in_the_url(dash: Watch,
                                                               filled: Fill) -> None:
    dash.goto("/")
    submit_filters(dash, {"since": "24h"})
    assert query(dash).get("since") == ["24h"], dash.page.url
    assert len(read_table(dash.page, "functions")) == len(filled.functions)


def test_overview_rows_open_their_function_pages(dash: Watch, filled: Fill) -> None:
    dash.goto("/")
    table = read_table(dash.page, "functions")
    paths = follow_row_links(dash, table)
    assert sorted(p.split("?")[0] for p in paths) == sorted(
        f"/functions/{f}" for f in filled.functions)


_CELL_LINKS = """([name, column]) => [...document.querySelectorAll(
    `table.data[data-table="${name}"] tbody tr`)].map(tr => {
  const a = tr.cells[column] && tr.cells[column].querySelector('a[href]');
  return [tr.cells[0].innerText.trim(), a ? a.getAttribute('href') : null];
})"""


def test_overview_counts_link_to_the_invocations_behind_them(dash: Watch,
                                                             filled: Fill) -> None:
    dash.goto("/")
    table = read_table(dash.page, "functions")
    columns = {
        "all": table.column(r"^invocations$", r"invocations"),
        "error": table.column(r"error.?rate", r"error"),
        "cold": table.column(r"cold.?start.?rate", r"cold.?start", r"^cold"),
    }
    links = {kind: dict(dash.page.evaluate(_CELL_LINKS, ["functions", column]))
             for kind, column in columns.items()}
    for kind, match in (("all", {}), ("error", {"status": "error"}), ("cold", {"cold": True})):
        href = next(h for name, h in links[kind].items() if "shop-orders" in name)
        assert href, f"no link behind shop-orders' {kind} count"
        dash.goto(href)
        assert urlsplit(dash.page.url).path == "/invocations"
        assert sorted(listed_ids(dash)) == sorted(
            i.request_id for i in filled.select("shop-orders", **match)), (kind, href)


def test_sorting_the_overview_by_invocations(dash: Watch, filled: Fill) -> None:
    dash.goto("/")
    check_sorting(dash, "functions", r"invocations")


# -- function --------------------------------------------------------------------------------------
def test_function_page_charts(dash: Watch, filled: Fill) -> None:
    dash.goto("/functions/shop-orders")
    assert "shop-orders" in dash.page.inner_text("h1")
    for chart in ("latency", "cold-starts", "init", "memory"):
        shapes = svg_shapes(dash.page, f'svg.chart[data-chart="{chart}"]')
        assert shapes, f"no {chart} chart"
        assert all(n > 0 for n in shapes), f"the {chart} chart has no path or rect"
    dash.screenshot("function")


def test_function_page_versions_side_by_side(dash: Watch, filled: Fill) -> None:
    dash.goto("/functions/shop-orders")
    table = read_table(dash.page, "versions")
    version = table.column(r"version")
    invocations = table.column(r"invocations", r"calls|requests")
    counts = {row[version].strip(): number(row[invocations]) for row in table.rows}
    assert counts == {"2": 6, "1": 7}, table.rows
    assert [row[version].strip() for row in table.rows] == ["2", "1"], "newest version first"


def test_function_page_errors_by_fingerprint(dash: Watch, filled: Fill) -> None:
    dash.goto("/functions/shop-orders")
    table = read_table(dash.page, "errors")
    assert len(table) == 1, table.rows  # both failures share one fingerprint
    (row,) = table.rows
    assert any("ValueError" in cell for cell in row), row
    # the group shows the message's shape, as text
    assert any(f"card declined {IMG_SHAPE}" in cell for cell in row), row
    assert any(number(cell) == 2 for cell in row if re.fullmatch(r"\d+", cell)), row
    assert dash.page.locator('img[src="x"]').count() == 0
    follow_row_links(dash, table)


def test_function_page_dependencies_cost_and_advice(dash: Watch, filled: Fill,
                                                    collector: Collector) -> None:
    dash.goto("/functions/shop-orders")
    text = main_text(dash)
    for dependency in api(collector, "/api/dependencies", since="0",
                          function="shop-orders")["dependencies"]:
        assert dependency["dependency"] in text
    assert "$" in text, "no cost shown"
    assert re.search(r"\b(memory|MB)\b", text, re.IGNORECASE)


# -- invocations -----------------------------------------------------------------------------------
def listed_ids(watch: Watch) -> list[str]:
    return [request_id_of(href) for href in read_table(watch.page, "invocations").links]


def test_invocations_lists_every_invocation(dash: Watch, filled: Fill) -> None:
    dash.goto("/invocations?limit=100")
    assert sorted(listed_ids(dash)) == sorted(i.request_id for i in filled.invocations)
    dash.goto("/invocations")
    dash.screenshot("invocations")


FILTERS: list[tuple[dict[str, str], dict[str, Any]]] = [
    ({"function": "shop-orders"}, {"function": "shop-orders"}),
    ({"cold": "true"}, {"cold": True}),
    ({"function": "shop-orders", "cold": "false"}, {"function": "shop-orders", "cold": False}),
    ({"status": "error"}, {"status": "error"}),
    ({"label": "tier=gold"}, {"label": "tier=gold"}),
    ({"trigger": "sqs"}, {"function": "shop-payments"}),
    ({"function": "shop-orders", "version": "2"}, {"function": "shop-orders", "version": "2"}),
]


@pytest.mark.parametrize(("fields", "expect"), FILTERS,
                         ids=["function", "cold", "function+warm", "status", "label",
                              "trigger", "version"])
def test_filtering_invocations_through_the_form(dash: Watch, filled: Fill,
                                                fields: dict[str, str],
                                                expect: dict[str, Any]) -> None:
    dash.goto("/invocations")
    before = len(read_table(dash.page, "invocations"))
    form = dash.page.locator("form.filters")
    if form.locator('[name="limit"]').count():
        fields = {**fields, "limit": "100"}
    submit_filters(dash, fields)
    got = query(dash)
    for name, value in fields.items():
        assert got.get(name) == [value], f"{name}={value} not in {dash.page.url}"
    wanted = {i.request_id for i in filled.select(**expect)}
    ids = listed_ids(dash)
    assert sorted(ids) == sorted(wanted), f"{fields}: {len(ids)} rows, {len(wanted)} expected"
    assert len(ids) < before or before < len(filled.invocations)
    # the filter is still shown in the form it came from
    for name, value in fields.items():
        field = dash.page.locator(f'form.filters [name="{name}"]')
        assert field.input_value().lower() == value.lower(), name


def test_filtering_invocations_by_time_and_duration(dash: Watch, filled: Fill,
                                                    collector: Collector) -> None:
    summaries = api(collector, "/api/invocations", since="0", limit=1000)["invocations"]
    mail = [s for s in summaries if s["function"] == "mail-notify"]
    since = str(int(min(s["start_ms"] for s in mail)))
    dash.goto("/invocations")
    submit_filters(dash, {"since": since})
    assert sorted(listed_ids(dash)) == sorted(s["request_id"] for s in mail)

    dash.goto("/invocations")
    submit_filters(dash, {"slower_than": "500"})
    assert query(dash).get("slower_than") == ["500"]
    slow = [s["request_id"] for s in summaries if s["duration_ms"] > 500]
    assert filled.slow_request_id in slow  # (on a loaded machine a cold start may be too)
    assert len(slow) < len(summaries)
    assert sorted(listed_ids(dash)) == sorted(slow)


def test_invocations_pagination(dash: Watch, filled: Fill) -> None:
    dash.goto("/invocations?limit=5")
    page = dash.page
    assert page.locator("a[rel=prev]").count() == 0, "a previous page before the first"
    pages = [listed_ids(dash)]
    while page.locator("a[rel=next]").count():
        with page.expect_navigation(wait_until="load"):
            page.locator("a[rel=next]").first.click()
        assert query(dash).get("limit") == ["5"], page.url
        pages.append(listed_ids(dash))
        assert len(pages) <= 10, "no end to the pages"
    assert [len(p) for p in pages] == [5, 5, 5, 5], pages
    every = [rid for p in pages for rid in p]
    assert sorted(every) == sorted(i.request_id for i in filled.invocations)
    with page.expect_navigation(wait_until="load"):
        page.locator("a[rel=prev]").first.click()
    assert listed_ids(dash) == pages[-2]


def check_sorting(watch: Watch, table_name: str, *patterns: str) -> None:
    """Click the sortable header of the column matching ``patterns``: the column is sorted
    (within each group, a table's ``tbody``); click again: sorted the other way."""
    page = watch.page
    table = read_table(page, table_name)
    column = table.column(*patterns)
    assert table.sorts[column], f"{table.heads[column]!r} has no data-sort"
    header = page.locator(f'table.data[data-table="{table_name}"] th[data-sort]').filter(
        has_text=table.heads[column]).first
    directions = []
    for _ in range(2):
        header.click()
        page.wait_for_load_state("load")
        header = page.locator(f'table.data[data-table="{table_name}"] th[data-sort]').filter(
            has_text=table.heads[column]).first
        directions.append(sort_direction(read_table(page, table_name).grouped_values(column)))
    assert directions in (["asc", "desc"], ["desc", "asc"]), directions


def test_sorting_invocations_by_duration(dash: Watch, filled: Fill) -> None:
    dash.goto("/invocations?limit=100")
    check_sorting(dash, "invocations", r"duration")


def test_every_invocation_row_opens_its_invocation(dash: Watch, filled: Fill) -> None:
    dash.goto("/invocations?limit=100")
    paths = follow_row_links(dash, read_table(dash.page, "invocations"))
    assert sorted(request_id_of(p) for p in paths) == sorted(
        i.request_id for i in filled.invocations)


# -- one invocation --------------------------------------------------------------------------------
_READ_WATERFALL = """() => [...document.querySelectorAll('div.waterfall div.span')].map(s => ({
  id: s.dataset.spanId,
  bars: [...s.querySelectorAll('.bar')].map(b => [...b.classList]),
  text: s.innerText,
}))"""


def waterfall(watch: Watch) -> dict[str, dict[str, Any]]:
    spans = watch.page.evaluate(_READ_WATERFALL)
    by_id = {s["id"]: s for s in spans}
    assert len(by_id) == len(spans), "span ids repeated in the waterfall"
    return by_id


def test_invocation_page_waterfall(dash: Watch, filled: Fill, collector: Collector) -> None:
    rid = filled.failed_traced_request_id
    report = api(collector, f"/api/invocations/{rid}")["invocation"]
    dash.goto(f"/invocations/{rid}")
    assert dash.page.locator("div.waterfall").count() == 1
    shown = waterfall(dash)
    assert set(shown) == {s["span_id"] for s in report["spans"]}, (shown, report["spans"])
    for span in report["spans"]:
        item = shown[span["span_id"]]
        assert len(item["bars"]) == 1, item
        assert ("error" in item["bars"][0]) == (span["status"] == "error"), (span, item)
        assert span["name"] in item["text"], (span["name"], item["text"])
    by_name = {s["name"]: shown[s["span_id"]] for s in report["spans"]}
    assert "error" in by_name["charge-card"]["bars"][0]
    assert QUEUE in by_name["SQS.SendMessage"]["text"]
    assert "127.0.0.1" in by_name["GET"]["text"]
    dash.screenshot("invocation")


def test_invocation_page_error_logs_labels_and_resources(dash: Watch, filled: Fill,
                                                         collector: Collector) -> None:
    rid = filled.failed_traced_request_id
    dash.goto(f"/invocations/{rid}")
    text = main_text(dash)
    assert rid in dash.page.inner_text("body")
    assert f"card declined {IMG_TEXT}" in text
    assert "shop_orders.py" in text, "the stack is not shown"
    assert f"payment refused for order {rid}: {IMG_TEXT}" in text
    assert "tier=" in text
    assert dash.page.locator('img[src="x"]').count() == 0
    assert re.search(r"\bMB\b", text), "no memory figures"
    assert re.search(r"\bCPU\b", text, re.IGNORECASE), "no CPU figures"


def test_invocation_page_trace_timeline(dash: Watch, filled: Fill) -> None:
    (pair,) = [p for p in filled.trace_pairs if p[0] == filled.failed_traced_request_id]
    for orders, payments in [pair]:
        for rid in (orders, payments):
            dash.goto(f"/invocations/{rid}")
            trace = dash.page.locator("div.trace")
            assert trace.count() == 1, "no trace timeline"
            rows = trace.first.locator("[data-request-id]").evaluate_all(
                "rows => rows.map(r => [r.dataset.requestId, r.innerText])")
            assert sorted(r for r, _ in rows) == sorted((orders, payments)), rows
            texts = " ".join(t for _, t in rows)
            assert "shop-orders" in texts and "shop-payments" in texts, texts


def test_consumer_invocation_shows_its_bucket(dash: Watch, filled: Fill,
                                              collector: Collector) -> None:
    _, rid = filled.trace_pairs[0]
    report = api(collector, f"/api/invocations/{rid}")["invocation"]
    dash.goto(f"/invocations/{rid}")
    shown = waterfall(dash)
    assert len(shown) == len(report["spans"])
    (put,) = [s for s in report["spans"] if s["name"] == "S3.PutObject"]
    assert RECEIPTS_BUCKET in shown[put["span_id"]]["text"]
    assert all("error" not in item["bars"][0] for item in shown.values())


def test_an_unknown_invocation_is_404(dash: Watch, filled: Fill) -> None:
    dash.allow_status(404, path="/invocations/no-such-request")
    dash.goto("/invocations/no-such-request", status=404)
    assert dash.page.locator("h1").count() == 1


# -- dependencies ----------------------------------------------------------------------------------
def test_dependencies_table(dash: Watch, filled: Fill, collector: Collector) -> None:
    dash.goto("/dependencies")
    table = read_table(dash.page, "dependencies")
    count = table.column(r"^count$", r"calls", r"count|requests")
    expected = api(collector, "/api/dependencies", since="0")["dependencies"]
    assert len(table) == len(expected), (table.rows, expected)
    sent = {("shop-orders", "SQS.SendMessage " + QUEUE): 3,
            ("shop-payments", "S3.PutObject " + RECEIPTS_BUCKET): 3,
            ("mail-notify", "S3.PutObject mail-archive"): 4}
    for entry in expected:
        row = table.row_with(entry["function"], entry["dependency"])
        assert number(row[count]) == entry["count"], row
        if (entry["function"], entry["dependency"]) in sent:
            assert entry["count"] == sent[entry["function"], entry["dependency"]]
        elif entry["dependency"].startswith("GET 127.0.0.1"):
            assert entry["count"] == filled.count(entry["function"])
        else:
            raise AssertionError(f"a dependency nobody called: {entry}")
    dash.screenshot("dependencies")


def test_sorting_dependencies(dash: Watch, filled: Fill) -> None:
    dash.goto("/dependencies")
    check_sorting(dash, "dependencies", r"^count$", r"calls", r"count")


def test_dependency_rows_open_their_pages(dash: Watch, filled: Fill) -> None:
    dash.goto("/dependencies")
    follow_row_links(dash, read_table(dash.page, "dependencies"))


# -- logs ------------------------------------------------------------------------------------------
def test_logs_page_lists_the_captured_lines(dash: Watch, filled: Fill) -> None:
    dash.goto("/logs?limit=100")
    table = read_table(dash.page, "logs")
    assert len(table) == sum(filled.log_lines.values()), table.rows
    dash.goto("/logs")
    dash.screenshot("logs")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"level": "error"}, [("shop-orders", "ERROR")]),
    ({"q": "in stock"}, [("shop-orders", "INFO")]),
    ({"function": "mail-notify"}, [("mail-notify", "WARNING")]),
], ids=["level", "text", "function"])
def test_filtering_logs_through_the_form(dash: Watch, filled: Fill, fields: dict[str, str],
                                         expected: list[tuple[str, str]]) -> None:
    dash.goto("/logs")
    submit_filters(dash, fields)
    for name, value in fields.items():
        assert [v.lower() for v in query(dash).get(name, [])] == [value.lower()], dash.page.url
    table = read_table(dash.page, "logs")
    assert len(table) == sum(filled.log_lines[key] for key in expected), table.rows
    if fields.get("level") == "error":
        assert all(any(IMG_TEXT in cell for cell in row) for row in table.rows), table.rows
        assert dash.page.locator('img[src="x"]').count() == 0
    failed = {i.request_id for i in filled.select(status="error")}
    ids = {request_id_of(href) for href in table.links}
    if fields.get("level") == "error":
        assert ids == failed


def test_logs_pagination(dash: Watch, filled: Fill) -> None:
    dash.goto("/logs?limit=10")
    sizes = [len(read_table(dash.page, "logs"))]
    while dash.page.locator("a[rel=next]").count():
        with dash.page.expect_navigation(wait_until="load"):
            dash.page.locator("a[rel=next]").first.click()
        sizes.append(len(read_table(dash.page, "logs")))
        assert len(sizes) <= 5, "no end to the pages"
    total = sum(filled.log_lines.values())
    assert sizes == [10, 10, total - 20], sizes
    assert dash.page.locator("a[rel=prev]").count() == 1


def test_log_rows_open_their_invocations(dash: Watch, filled: Fill) -> None:
    dash.goto("/logs?function=shop-payments")
    table = read_table(dash.page, "logs")
    paths = follow_row_links(dash, table)
    assert sorted(request_id_of(p) for p in paths) == sorted(
        i.request_id for i in filled.select("shop-payments"))


# -- service map -----------------------------------------------------------------------------------
_READ_MAP = """() => {
  const svg = document.querySelector('svg.map');
  if (!svg) return null;
  return {
    nodes: [...svg.querySelectorAll('g.node')].map(g => [g.dataset.node, g.textContent]),
    edges: [...svg.querySelectorAll('g.edge')].map(
      g => [g.dataset.from, g.dataset.to, g.textContent]),
  };
}"""


def test_service_map(dash: Watch, filled: Fill) -> None:
    dash.goto("/map")
    found = dash.page.evaluate(_READ_MAP)
    assert found is not None, "no svg.map"
    nodes = {node_id: text for node_id, text in found["nodes"]}
    edges = [(a, b) for a, b, _ in found["edges"]]
    assert len(nodes) == len(found["nodes"]), "node ids repeated"

    def node(name: str) -> str:
        hits = [i for i, text in nodes.items() if name in i or name in text]
        assert len(hits) == 1, f"{len(hits)} nodes for {name}: {nodes}"
        return hits[0]

    for a, b in edges:
        assert a in nodes and b in nodes, f"an edge between unknown nodes {a} -> {b}"
    orders, payments, notify = node("shop-orders"), node("shop-payments"), node("mail-notify")
    queue, receipts, archive = node(QUEUE), node(RECEIPTS_BUCKET), node("mail-archive")
    host = node("127.0.0.1")
    for edge in ((orders, queue), (payments, receipts), (notify, archive), (orders, host),
                 (notify, host)):
        assert edge in edges, f"no edge {edge}: {edges}"
    assert (queue, payments) in edges or (orders, payments) in edges, (
        f"no edge from the queue (or shop-orders) to shop-payments: {edges}")
    counts = {(a, b): text for a, b, text in found["edges"]}
    assert re.search(r"\b13\b", counts[orders, host]), counts[orders, host]
    assert re.search(r"\b3\b", counts[orders, queue]), counts[orders, queue]
    dash.screenshot("map")


# -- alerts ----------------------------------------------------------------------------------------
def test_firing_alerts_show_on_every_page(dash: Watch, filled: Fill, peer: Peer) -> None:
    def banner() -> list[str]:
        dash.goto("/")
        return dash.page.locator("div.alerts div.alert").all_inner_texts()

    alerts = wait_for(banner, 20.0, 0.5)
    assert alerts, "no alert banner while shop-orders' error rate is above the rule's 5 %"
    assert any(ALERT_RULE in a and "shop-orders" in a for a in alerts), alerts
    for name in ("function", "invocation", "map"):
        dash.goto(page_path(name, filled))
        texts = dash.page.locator("div.alerts div.alert").all_inner_texts()
        assert any(ALERT_RULE in a for a in texts), (name, texts)
    posted = [p for p in peer.posts if isinstance(p, dict) and p.get("rule") == ALERT_RULE]
    assert [p.get("state") for p in posted] == ["firing"], peer.posts


# -- the numbers behind the charts ---------------------------------------------------------------
def test_overview_numbers_match_the_api(dash: Watch, filled: Fill, collector: Collector) -> None:
    """The p95 columns say what ``/api/stats`` says (the page reads the same queries)."""
    stats = {e["function"]: e for e in api(collector, "/api/stats", since="24h")["functions"]}
    dash.goto("/?since=24h")
    table = read_table(dash.page, "functions")
    warm = table.column(r"p95.*warm", r"warm.*p95", r"warm")
    for function in filled.functions:
        row = table.row_with(function)
        shown = quantity(row[warm])
        want = stats[function]["duration"]["warm"]["p95_ms"]
        assert shown is not None and shown == pytest.approx(want, rel=0.05, abs=0.5), (
            function, row[warm], want)

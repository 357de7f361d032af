"""The dashboard over HTTP: every page served by a real collector (uvicorn in process, and the
service as a subprocess for the login), with known reports and reports made by the agent;
the rows, filters, pagination, links, escaping, headers, errors and the login flow."""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("fastjsonschema")

import httpx  # noqa: E402
from collector_harness import Collector, InProcess  # noqa: E402
from collector_reports import MINUTE, aws_span, http_span, make_report  # noqa: E402

from lambdascope.collector.app import create_app  # noqa: E402
from lambdascope.collector.dashboard import CSP  # noqa: E402
from lambdascope.collector.store import Store  # noqa: E402

TOKEN = "dash-board-token"
EVIL = "<script>alert(1)</script>"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


# -- a small HTML tree, to assert on elements rather than on text ---------------------------
class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node | str] = []

    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes())
                    and all(child.attrs.get(k.replace("_", "-")) == v
                            for k, v in attrs.items())):
                found.append(child)
            found.extend(child.all(tag, cls, **attrs))
        return found

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, cls, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} class={cls} {attrs}>"
        return found[0]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    return tree.root


def rows(doc: Node, table: str) -> list[Node]:
    return [tr for body in doc.one("table", data_table=table).all("tbody")
            for tr in body.all("tr")]


def first_links(doc: Node, table: str) -> list[str]:
    out = []
    for tr in rows(doc, table):
        cell = tr.all("td")[0]
        out.append(cell.all("a")[0].attrs["href"])
    return out


# -- the data ---------------------------------------------------------------------------------
def _reports(now: float) -> dict[str, list[dict[str, Any]]]:
    orders = []
    for i in range(12):
        failed = i in (3, 9)
        error = {"type": "ValueError", "message": f"{EVIL} order {i} failed",
                 "stack": [{"file": "/var/task/app.py", "line": 7, "function": "handler"},
                           {"file": "/var/task/orders.py", "line": 42, "function": "load"}]}
        report = make_report(
            function="orders", version="1" if i < 6 else "2",
            start_ms=now - (12 - i) * 2 * MINUTE, duration_ms=20.0 + 10 * i,
            cold=i in (0, 6), init_ms=250.0 if i in (0, 6) else None,
            status="error" if failed else "ok", error=error if failed else None,
            labels=["plan=pro"] if i % 2 == 0 else [f"tenant={EVIL}"] if i == 5 else [],
            logs=[f"{EVIL} processing order {i}", f"done {i}"],
            rss_end_mb=100.0 + i, rss_peak_mb=110.0 + i,
            spans=[aws_span("SQS.SendMessage", 4.0, **{
                       "aws.sqs.queue_url": "https://sqs.us-east-1.amazonaws.com/1/emails-queue"}),
                   http_span("GET", "api.example.com", 8.0, status="error" if i == 9 else "ok"),
                   {"name": "<script>span</script>", "kind": "internal", "duration_ms": 1.0,
                    "status": "ok", "attributes": {"note": "<img src=x onerror=alert(2)>"}}])
        report["function"]["service"] = "shop"
        orders.append(report)
    emails = []
    for k in range(4):
        parent = orders[k]
        report = make_report(function="emails", start_ms=parent["invocation"]["start_ms"] + 50,
                             duration_ms=15.0, trigger="sqs",
                             trace_id=parent["trace"]["trace_id"],
                             parent_span_id=parent["spans"][1]["span_id"],
                             logs=[f"mail {k} sent"])
        report["invocation"]["trigger"]["source"] = "arn:aws:sqs:us-east-1:1:emails-queue"
        report["function"]["service"] = "shop"
        emails.append(report)
    thumbnails = []
    for k in range(3):
        report = make_report(function="thumbnails", start_ms=now - (5 - k) * MINUTE,
                             duration_ms=300.0, trigger="s3", memory_mb=256,
                             spans=[aws_span("S3.GetObject", 30.0, **{"aws.s3.bucket": "uploads"})])
        report["invocation"]["trigger"]["source"] = "arn:aws:s3:::uploads"
        report["function"]["service"] = "media"
        thumbnails.append(report)
    return {"orders": orders, "emails": emails, "thumbnails": thumbnails}


class Site:
    def __init__(self, url: str, reports: dict[str, list[dict[str, Any]]], app: Any) -> None:
        self.client = httpx.Client(base_url=url, timeout=30.0)
        self.reports = reports
        self.app = app

    def get(self, path: str, status: int = 200) -> httpx.Response:
        response = self.client.get(path)
        assert response.status_code == status, (path, response.status_code, response.text[:600])
        return response

    def page(self, path: str, status: int = 200) -> Node:
        return parse(self.get(path, status).text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    store = Store(tmp_path_factory.mktemp("dashboard") / "reports.db")
    reports = _reports(time.time() * 1000.0)
    assert store.add([r for group in reports.values() for r in group]).stored == 19
    app = create_app(store)
    with InProcess(app) as server:
        s = Site(server.url, reports, app)
        yield s
        s.client.close()
    store.close()


PAGES = ["/", "/functions/orders", "/invocations", "/dependencies", "/logs", "/map"]


class TestEveryPage:
    """Each page answers 200 with the shared frame and the security headers."""

    @pytest.mark.parametrize("path", PAGES)
    def test_frame_and_headers(self, site: Site, path: str) -> None:
        response = site.get(path)
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
        doc = parse(response.text)
        nav = doc.one("nav")
        assert [a.attrs["href"] for a in nav.all("a")] == ["/", "/invocations", "/dependencies",
                                                          "/logs", "/map"]
        main = doc.one("main", id="content")
        assert len(main.all("h1")) == 1
        # No inline script or style for the CSP to block.
        assert [s.attrs.get("src", "")[:20] for s in doc.all("script")] == [
            "/static/dashboard.js"]
        assert not doc.all("style") and 'style="' not in response.text
        assert not doc.all(cls="alerts")

    def test_the_invocation_page_too(self, site: Site) -> None:
        rid = site.reports["orders"][3]["invocation"]["request_id"]
        response = site.get(f"/invocations/{rid}")
        assert response.headers["content-security-policy"] == CSP
        assert parse(response.text).one("main", id="content").one("h1").text() == (
            f"Invocation {rid}")


class TestOverview:
    """Every function, grouped by service, with its figures and links."""

    def test_rows_by_service(self, site: Site) -> None:
        doc = site.page("/")
        table = doc.one("table", data_table="functions")
        groups = {b.attrs["data-service"]: [tr.all("td")[0].text() for tr in b.all("tr")]
                  for b in table.all("tbody")}
        assert groups == {"media": ["thumbnails"], "shop": ["emails", "orders"]}
        by_name = {tr.all("td")[0].text(): tr for tr in rows(doc, "functions")}
        orders = [td.text() for td in by_name["orders"].all("td")]
        assert orders[1:5] == ["shop", "12", "17%", "17%"]  # 2 errors, 2 cold of 12
        assert by_name["thumbnails"].all("td")[2].text() == "3"
        assert first_links(doc, "functions") == [
            "/functions/thumbnails?since=24h", "/functions/emails?since=24h",
            "/functions/orders?since=24h"]
        links = [a.attrs["href"] for a in by_name["orders"].all("a")]
        assert "/invocations?since=24h&function=orders&status=error" in links
        assert "/invocations?since=24h&function=orders&cold=true" in links
        sparks = doc.all("svg", data_chart="trend")
        assert len(sparks) == 3 and all(s.all("path") for s in sparks)
        cards = [c.text() for c in doc.all(cls="card-value")]
        assert cards[:3] == ["19", "11%", "11%"]

    def test_an_empty_window(self, site: Site) -> None:
        doc = site.page("/?since=10d&until=9d")
        assert not doc.all("table")
        assert "No invocations in this window." in doc.one("main").text()


class TestFunctionPage:
    """Charts, errors by fingerprint, versions, dependencies, cost and right-sizing."""

    def test_charts(self, site: Site) -> None:
        doc = site.page("/functions/orders")
        for name in ("invocations", "latency", "cold-starts", "init", "memory"):
            chart = doc.one("svg", data_chart=name)
            assert "chart" in chart.classes()
            assert chart.all("path") or chart.all("rect"), name
        # A bucket's link: the invocations behind it, between the bucket's bounds (epoch ms).
        hits = doc.one("svg", data_chart="latency").all("a")
        assert hits and all("since=24h" not in a.attrs["href"] for a in hits)
        first = urllib.parse.urlsplit(hits[0].attrs["href"])
        query = dict(urllib.parse.parse_qsl(first.query))
        assert first.path == "/invocations" and query["function"] == "orders"
        assert float(query["until"]) > float(query["since"])
        # The memory chart draws one line per sandbox (a version's reports share one here)
        # and the warm mean.
        series = doc.one("svg", data_chart="memory").all("g", cls="series")
        assert len(series) == 3

    def test_tables(self, site: Site) -> None:
        doc = site.page("/functions/orders")
        versions = rows(doc, "versions")
        assert [[td.text() for td in tr.all("td")][:4] for tr in versions] == [
            ["2", "6", "17%", "17%"], ["1", "6", "17%", "17%"]]
        assert first_links(doc, "versions") == ["/functions/orders?since=24h&version=2",
                                                "/functions/orders?since=24h&version=1"]
        [error] = rows(doc, "errors")
        cells = [td.text() for td in error.all("td")]
        assert cells[0] == "ValueError: <script>alert(<n>)</script> order <n> failed"
        assert cells[2] == "2"
        assert first_links(doc, "errors")[0] == (
            "/invocations/" + site.reports["orders"][9]["invocation"]["request_id"])
        deps = [tr.all("td")[0].text() for tr in rows(doc, "dependencies")]
        assert sorted(deps) == ["GET api.example.com", "SQS.SendMessage emails-queue"]
        facts = doc.one("dl", cls="facts").text()
        assert "Suggested memory" in facts and "Estimated cost" in facts

    def test_one_version(self, site: Site) -> None:
        doc = site.page("/functions/orders?version=1")
        assert "version 1" in doc.one("h1").text()
        assert doc.all(cls="card-value")[0].text() == "6"
        assert len(rows(doc, "versions")) == 2  # side by side, whichever is chosen

    def test_unknown_function(self, site: Site) -> None:
        doc = site.page("/functions/nope", 404)
        assert "nope" in doc.one("p", cls="reason").text()


class TestInvocations:
    """The filtered list: filters narrow it, pages follow one another."""

    def ids(self, site: Site, query: str) -> set[str]:
        return {tr.all("td")[0].text() for tr in rows(site.page(f"/invocations?{query}"),
                                                      "invocations")}

    def test_filters(self, site: Site) -> None:
        def rid(group: str, i: int) -> str:
            return str(site.reports[group][i]["invocation"]["request_id"])

        assert len(self.ids(site, "")) == 19
        assert self.ids(site, "function=emails") == {rid("emails", k) for k in range(4)}
        assert self.ids(site, "status=error") == {rid("orders", 3), rid("orders", 9)}
        assert self.ids(site, "cold=true") == {rid("orders", 0), rid("orders", 6)}
        assert self.ids(site, "cold=false&function=orders") == {
            rid("orders", i) for i in range(12) if i not in (0, 6)}
        assert self.ids(site, "label=plan%3Dpro") == {rid("orders", i) for i in range(0, 12, 2)}
        assert self.ids(site, "trigger=s3") == {rid("thumbnails", k) for k in range(3)}
        assert self.ids(site, "version=2&function=orders") == {
            rid("orders", i) for i in range(6, 12)}
        assert self.ids(site, "slower_than=100") == {
            rid("orders", i) for i in range(9, 12)} | {rid("thumbnails", k) for k in range(3)}
        start = site.reports["orders"][9]["invocation"]["start_ms"]
        assert self.ids(site, f"since={start - 1:.0f}") == {
            rid("orders", i) for i in range(9, 12)} | {rid("thumbnails", k) for k in range(3)}
        assert len(self.ids(site, "since=1d")) == 19
        assert not site.page("/invocations?since=1m").all("table")
        start = site.reports["orders"][2]["invocation"]["start_ms"]
        assert self.ids(site, f"function=orders&since={start - 1:.0f}&until={start + 1:.0f}") == {
            rid("orders", 2)}
        trace = site.reports["orders"][1]["trace"]["trace_id"]
        assert self.ids(site, f"trace_id={trace}") == {rid("orders", 1), rid("emails", 1)}

    def test_empty_fields_are_no_filter(self, site: Site) -> None:
        assert len(self.ids(site, "function=&status=&cold=&label=&since=&until=&limit=")) == 19

    def test_the_form_keeps_the_filters(self, site: Site) -> None:
        doc = site.page("/invocations?function=orders&status=error&label=plan%3Dpro")
        form = doc.one("form", cls="filters")
        assert form.attrs["method"] == "get"
        names = {e.attrs["name"] for e in form.all() if e.tag in ("input", "select")}
        assert {"function", "cold", "status", "label", "trigger", "version", "since", "until",
                "slower_than", "limit"} <= names
        selected = {s.attrs["name"]: [o.attrs["value"] for o in s.all("option")
                                      if "selected" in o.attrs] for s in form.all("select")}
        assert selected["function"] == ["orders"] and selected["status"] == ["error"]
        assert form.one("input", name="label").attrs["value"] == "plan=pro"
        assert form.one("button").attrs["type"] == "submit"

    def test_pagination(self, site: Site) -> None:
        seen: list[str] = []
        path: str | None = "/invocations?limit=5"
        pages = 0
        while path is not None:
            doc = site.page(path)
            pages += 1
            ids = [tr.all("td")[0].text() for tr in rows(doc, "invocations")]
            assert len(ids) == (5 if pages < 4 else 4)
            seen += ids
            prev = doc.all("a", rel="prev")
            assert bool(prev) == (pages > 1)
            following = doc.all("a", rel="next")
            path = following[0].attrs["href"] if following else None
        assert pages == 4 and len(seen) == len(set(seen)) == 19
        starts = {r["invocation"]["request_id"]: r["invocation"]["start_ms"]
                  for group in site.reports.values() for r in group}
        assert [starts[i] for i in seen] == sorted(starts.values(), reverse=True)
        back = site.page("/invocations?limit=5&offset=5").one("a", rel="prev").attrs["href"]
        assert back == "/invocations?limit=5"

    def test_rows_link_to_their_invocation(self, site: Site) -> None:
        doc = site.page("/invocations?function=thumbnails")
        for href in first_links(doc, "invocations"):
            rid = urllib.parse.unquote(href.rsplit("/", 1)[1])
            assert site.page(href).one("h1").text() == f"Invocation {rid}"


class TestInvocationPage:
    """The waterfall, the error, the trace, the logs, the resources."""

    def test_waterfall_and_trace(self, site: Site) -> None:
        report = site.reports["orders"][1]
        doc = site.page(f"/invocations/{report['invocation']['request_id']}")
        spans = doc.one("div", cls="waterfall").all("div", cls="span")
        assert [s.attrs["data-span-id"] for s in spans] == [
            s["span_id"] for s in report["spans"]]
        labels = [s.one(cls="label").text() for s in spans]
        assert labels == ["handler", "SQS.SendMessage emails-queue", "GET api.example.com",
                          "<script>span</script>"]
        for span in spans:
            bar = span.one(cls="bar")
            assert "error" not in bar.classes()
            assert float(bar.attrs["width"]) > 0
            assert span.all("details")
        assert "<img src=x onerror=alert(2)>" in spans[3].one("details").text()
        trace = doc.one("div", cls="trace")
        assert [r.attrs["data-request-id"] for r in trace.all("div", cls="inv")] == [
            report["invocation"]["request_id"],
            site.reports["emails"][1]["invocation"]["request_id"]]

    def test_failed_spans_and_the_error(self, site: Site) -> None:
        report = site.reports["orders"][9]
        doc = site.page(f"/invocations/{report['invocation']['request_id']}")
        bars = {s.one(cls="name").text(): s for s in doc.all("div", cls="span")}
        assert "error" in bars["GET"].one(cls="bar").classes()
        assert bars["GET"].one(cls="label").text() == "GET api.example.com error"
        assert "error" not in bars["SQS.SendMessage"].one(cls="bar").classes()
        box = doc.one("div", cls="error-box")
        assert box.one("span", cls="message").text() == f"{EVIL} order 9 failed"
        frames = [li.text() for li in box.one("ol", cls="stack").all("li")]
        assert frames == ["/var/task/app.py:7 in handler", "/var/task/orders.py:42 in load"]
        logs = [tr.all("td")[3].text() for tr in doc.one("table", cls="loglines").all("tr")]
        assert logs == [f"{EVIL} processing order 9", "done 9"]

    def test_unknown_request_id(self, site: Site) -> None:
        doc = site.page("/invocations/no-such-request", 404)
        assert "no-such-request" in doc.one("p", cls="reason").text()


class TestEscaping:
    """User data is shown as text: no markup of its own reaches the page."""

    @pytest.mark.parametrize("path", [
        "/", "/functions/orders", "/invocations", "/logs", "/invocations?label=tenant%3D"
        + urllib.parse.quote(EVIL)])
    def test_no_script_but_ours(self, site: Site, path: str) -> None:
        text = site.get(path).text
        assert text.count("<script") == 1
        assert "<img" not in text

    def test_label_log_error_and_span_escaped(self, site: Site) -> None:
        for report in (site.reports["orders"][5], site.reports["orders"][9]):
            text = site.get(f"/invocations/{report['invocation']['request_id']}").text
            assert text.count("<script") == 1
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
            assert "&lt;script&gt;span&lt;/script&gt;" in text
        labelled = site.page(f"/invocations?label=tenant%3D{urllib.parse.quote(EVIL)}")
        [row] = rows(labelled, "invocations")
        assert f"tenant={EVIL}" in [c.text() for c in row.all("span", cls="chip")]


class TestOtherPages:
    """Dependencies, logs and the service map."""

    def test_dependencies(self, site: Site) -> None:
        doc = site.page("/dependencies")
        found = {(tr.all("td")[0].text(), tr.all("td")[1].text()): tr.all("td")[2].text()
                 for tr in rows(doc, "dependencies")}
        assert found == {("orders", "SQS.SendMessage emails-queue"): "12",
                         ("orders", "GET api.example.com"): "12",
                         ("thumbnails", "S3.GetObject uploads"): "3"}
        table = doc.one("table", data_table="dependencies")
        assert len(table.all("th", data_sort="num")) == 7
        assert all(td.attrs.get("data-value") for td in rows(doc, "dependencies")[0].all("td"))
        only = site.page("/dependencies?function=thumbnails")
        assert len(rows(only, "dependencies")) == 1

    def test_logs_filters(self, site: Site) -> None:
        everything = rows(site.page("/logs"), "logs")
        assert len(everything) == 28  # 12 x 2 + 4
        mails = rows(site.page("/logs?function=emails"), "logs")
        assert [tr.all("td")[4].text() for tr in mails] == [f"mail {k} sent"
                                                            for k in (3, 2, 1, 0)]
        text = rows(site.page("/logs?q=order+7"), "logs")
        assert [tr.all("td")[4].text() for tr in text] == [f"{EVIL} processing order 7"]
        assert rows(site.page("/logs?level=info&function=orders&limit=3"), "logs")[2]
        assert not site.page("/logs?level=ERROR").all("table")
        rid = site.reports["orders"][7]["invocation"]["request_id"]
        assert first_links(site.page("/logs?q=order+7"), "logs") == [f"/invocations/{rid}"]

    def test_map(self, site: Site) -> None:
        svg = site.page("/map").one("svg", cls="map")
        nodes = {g.attrs["data-node"] for g in svg.all("g", cls="node")}
        assert nodes == {"fn:orders", "fn:emails", "fn:thumbnails", "sqs:emails-queue",
                         "http:api.example.com", "s3:uploads"}
        edges = {(g.attrs["data-from"], g.attrs["data-to"]): g for g in svg.all("g", cls="edge")}
        assert set(edges) == {
            ("fn:orders", "sqs:emails-queue"), ("fn:orders", "http:api.example.com"),
            ("sqs:emails-queue", "fn:emails"), ("fn:thumbnails", "s3:uploads"),
            ("s3:uploads", "fn:thumbnails")}
        assert edges[("fn:orders", "sqs:emails-queue")].attrs["data-count"] == "12"
        assert "estimated" in edges[("sqs:emails-queue", "fn:emails")].classes()
        assert edges[("sqs:emails-queue", "fn:emails")].attrs["data-count"] == "4"
        focused = site.page("/map?function=emails").one("svg", cls="map")
        assert {g.attrs["data-node"] for g in focused.all("g", cls="node")} == {
            "fn:emails", "sqs:emails-queue", "fn:orders"}


class TestLinks:
    """Every link of the pages leads to a page that answers 200."""

    def test_links_resolve(self, site: Site) -> None:
        rid = site.reports["orders"][9]["invocation"]["request_id"]
        hrefs: set[str] = set()
        for path in [*PAGES, f"/invocations/{rid}", "/functions/thumbnails"]:
            found = sorted({a.attrs["href"] for a in site.page(path).all("a")
                            if a.attrs.get("href", "").startswith("/")})
            hrefs.update(found[:: max(1, len(found) // 40)])
        assert len(hrefs) > 60
        for href in sorted(hrefs):
            site.get(href)


class TestBadRequests:
    """A value a page cannot use is a 400 page with one line saying why."""

    @pytest.mark.parametrize(("path", "reason"), [
        ("/?since=yesterday", "since: not a time"),
        ("/invocations?cold=maybe", "cold: expected true or false"),
        ("/invocations?status=bogus", "status: expected one of"),
        ("/invocations?limit=0", "limit: must be between 1 and 500"),
        ("/invocations?slower_than=-1", "slower_than: must be between"),
        ("/invocations?funtion=orders", "unknown parameter 'funtion'"),
        ("/?since=1h&until=2h", "until is before since"),
        ("/invocations?trace_id=xyz", "trace_id: not a trace id"),
        ("/functions/orders?since=1h&since=2h", "since: given more than once"),
        ("/logs?level=%3Cb%3E", "level: not a log level name: '<b>'"),
        ("/map?function=orders&q=x", "unknown parameter 'q'"),
    ])
    def test_reason(self, site: Site, path: str, reason: str) -> None:
        response = site.get(path, 400)
        assert response.headers["content-security-policy"] == CSP
        doc = parse(response.text)
        line = doc.one("p", cls="reason").text()
        assert reason in line and "\n" not in line
        assert doc.one("h1").text() == "Bad request"


class TestStatic:
    """The stylesheet, the script and the icon: served by the collector, cached by hash."""

    def test_files(self, site: Site) -> None:
        doc = site.page("/")
        css = doc.one("link", rel="stylesheet").attrs["href"]
        js = doc.one("script").attrs["src"]
        for href, kind in ((css, "text/css"), (js, "text/javascript")):
            response = site.get(href)
            assert response.headers["content-type"].startswith(kind)
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert response.headers["x-content-type-options"] == "nosniff"
            again = site.client.get(href, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304
        assert "th[data-sort]" in site.get(js).text
        assert site.get("/static/dashboard.css").headers["cache-control"] == "no-cache"
        site.get("/static/nothing.css", 404)

    def test_total_size(self, site: Site) -> None:
        doc = site.page("/functions/orders")
        total = len(site.get("/functions/orders").content)
        for href in [doc.one("link", rel="stylesheet").attrs["href"],
                     doc.one("script").attrs["src"]]:
            total += len(site.get(href).content)
        assert total < 500_000


class _Alerts:
    """What the alert engine shows the dashboard: its firing alerts."""

    def __init__(self, firing: list[dict[str, Any]] | Exception) -> None:
        self._firing = firing

    def firing(self) -> list[dict[str, Any]]:
        if isinstance(self._firing, Exception):
            raise self._firing
        return self._firing


class TestAlertsBanner:
    """Firing alerts show on every page; a failing engine hides the banner, not the page."""

    def test_banner(self, site: Site) -> None:
        site.app.state.alerts = _Alerts([
            {"rule": f"errors {EVIL}", "function": "orders", "metric": "error_rate",
             "value": 0.1667, "threshold": 0.05, "window": "5m", "since_ms": 1767607200000.0},
            {"rule": "cost", "function": "*", "metric": "cost_per_day", "value": 12.5,
             "threshold": 10, "window": "1d", "since_ms": 1767607200000.0},
        ])
        try:
            for path in [*PAGES, "/invocations/nope", "/?since=zz"]:
                response = site.client.get(path)
                doc = parse(response.text)
                alerts = doc.one("div", cls="alerts").all("div", cls="alert")
                assert len(alerts) == 2, path
                assert alerts[0].text().startswith(f"errors {EVIL} orders error_rate 0.1667 > "
                                                   f"0.05 over 5m, since 2026-01-05 10:00:00")
                assert response.text.count("<script") == 1
            site.app.state.alerts = _Alerts(RuntimeError("engine down"))
            assert not site.page("/").all(cls="alerts")
        finally:
            site.app.state.alerts = None


# -- access, on the service itself ------------------------------------------------------------
@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("secured") / "reports.db", token=TOKEN) as service:
        reports = _reports(time.time() * 1000.0)
        response = service.post(reports["orders"][:4])
        assert response.status_code == 202
        yield service


class TestLogin:
    """With a token, pages need it: a login form sets a signed cookie."""

    def test_flow(self, secured: Collector) -> None:
        with httpx.Client(base_url=secured.url, timeout=30.0) as client:
            response = client.get("/functions/orders?since=1h")
            assert response.status_code == 303
            assert response.headers["location"] == (
                "/login?next=%2Ffunctions%2Forders%3Fsince%3D1h")
            form = parse(client.get(response.headers["location"]).text).one("form", cls="login")
            assert (form.attrs["method"], form.attrs["action"]) == ("post", "/login")
            assert form.one("input", name="token").attrs["type"] == "password"
            assert form.one("input", name="next").attrs["value"] == "/functions/orders?since=1h"

            wrong = client.post("/login", data={"token": "nope", "next": "/"})
            assert wrong.status_code == 401
            assert "set-cookie" not in wrong.headers
            assert parse(wrong.text).one("p", cls="reason").text() == "Wrong token."

            right = client.post("/login", data={"token": TOKEN,
                                                "next": "/functions/orders?since=1h"})
            assert right.status_code == 303
            assert right.headers["location"] == "/functions/orders?since=1h"
            cookie = right.headers["set-cookie"]
            value, *parts = [part.strip() for part in cookie.split(";")]
            flags = {k.lower(): v for k, _, v in (p.partition("=") for p in parts)}
            assert "httponly" in flags and "secure" not in flags  # plain HTTP here
            assert (flags["samesite"].lower(), flags["path"]) == ("strict", "/")
            assert int(flags["max-age"]) == 30 * 86_400
            assert value.startswith("lambdascope_session=") and TOKEN not in cookie
            page = client.get("/functions/orders?since=1h")
            assert page.status_code == 200
            assert parse(page.text).one("h1").text() == "orders"
            assert parse(page.text).one("form", cls="logout")

            logout = client.post("/logout")
            assert logout.status_code == 303 and logout.headers["location"] == "/login"
            assert 'lambdascope_session=""' in logout.headers["set-cookie"]
            client.cookies.clear()
            assert client.get("/").status_code == 303

    def test_a_forged_or_foreign_session_is_refused(self, secured: Collector) -> None:
        with httpx.Client(base_url=secured.url, timeout=30.0) as client:
            good = client.post("/login", data={"token": TOKEN}).headers["set-cookie"]
            value = good.split(";")[0].split("=", 1)[1]
            expires, mac = value.split(".")
            for forged in (f"{int(expires) + 1}.{mac}", f"{expires}.{'0' * 64}", TOKEN, ""):
                client.cookies.clear()
                client.cookies.set("lambdascope_session", forged)
                assert client.get("/").status_code == 303, forged
            client.cookies.clear()
            client.cookies.set("lambdascope_session", value)
            assert client.get("/").status_code == 200

    def test_next_stays_on_the_site(self, secured: Collector) -> None:
        with httpx.Client(base_url=secured.url, timeout=30.0) as client:
            for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example",
                           "javascript:alert(1)", "/login"):
                response = client.post("/login", data={"token": TOKEN, "next": target})
                assert response.headers["location"] == "/", target
            foreign = client.post("/login", data={"token": TOKEN},
                                  headers={"Origin": "http://evil.example"})
            assert foreign.status_code == 403

    def test_the_bearer_token_works_too(self, secured: Collector) -> None:
        with httpx.Client(base_url=secured.url, timeout=30.0, headers=secured.headers) as c:
            assert c.get("/invocations").status_code == 200
            assert c.get("/login?next=/logs").headers["location"] == "/logs"
        with httpx.Client(base_url=secured.url, timeout=30.0) as client:
            assert client.get("/static/dashboard.css").status_code == 200
            assert client.get("/api/functions").status_code == 401


class TestAgentReports:
    """Reports the agent made, sent to the service: labels, logs, span names and errors with
    markup in them are shown as text."""

    def test_escaped(self, secured: Collector) -> None:
        import lambdascope
        from lambdascope.testing import capture_reports, fake_context

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> Any:
            lambdascope.label(f"user={EVIL}")
            logging.getLogger("app").warning("%s warned", EVIL)
            with lambdascope.span("<b>step</b>"):
                pass
            raise KeyError(EVIL)

        with capture_reports() as reports:
            with pytest.raises(KeyError):
                handler({}, fake_context(function_name="agent-fn"))
        [report] = reports
        assert secured.post(report).status_code == 202
        rid = report["invocation"]["request_id"]
        with secured.client() as client:
            text = client.get(f"/invocations/{rid}").text
            listing = client.get("/invocations", params={"label": f"user={EVIL}"}).text
        assert text.count("<script") == 1 and "<b>" not in text
        doc = parse(text)
        assert doc.one("span", cls="message").text() == repr(EVIL)
        names = [s.one(cls="name").text() for s in doc.all("div", cls="span")]
        assert len(names) == 2 and names[1] == "<b>step</b>"
        assert f"user={EVIL}" in [c.text() for c in doc.all("span", cls="chip")]
        assert f"{EVIL} warned" in doc.one("table", cls="loglines").text()
        assert [a.text() for a in parse(listing).all("a", href=f"/invocations/{rid}")] == [rid]
        assert re.search(r"&lt;script&gt;alert\(1\)&lt;/script&gt;", text)


def test_page_paths_are_escaped_too(tmp_path: Path) -> None:
    """A function name with markup and URL characters links and shows as itself."""
    name = "a/<b>&?x"
    with Store(tmp_path / "odd.db") as store:
        store.add([make_report(function=name, start_ms=time.time() * 1000.0 - MINUTE)])
        with InProcess(create_app(store)) as server, server.client() as client:
            overview = parse(client.get("/").text)
            [href] = first_links(overview, "functions")
            assert href == "/functions/a%2F%3Cb%3E%26%3Fx?since=24h"
            page = client.get(href)
            assert page.status_code == 200
            assert parse(page.text).one("h1").text() == name


class TestMarkup:
    """The HTML builder escapes text and attribute values unless they are markup already."""

    def test_escaping(self) -> None:
        from lambdascope.collector.dashboard.markup import Html, el, esc, join, url

        assert el("a", EVIL, href='/x?a=1&b="2"', data_span_id="s'1") == (
            '<a href="/x?a=1&amp;b=&quot;2&quot;" data-span-id="s&#x27;1">'
            "&lt;script&gt;alert(1)&lt;/script&gt;</a>")
        assert el("input", name="q", value="<b>", required=True, disabled=False) == (
            '<input name="q" value="&lt;b&gt;" required>')
        assert el("rect", x=1.0, width=2.5, class_="bar") == (
            '<rect x="1" width="2.50" class="bar"></rect>')
        assert join("a<", el("b", "c"), None, ["d", 1]) == "a&lt;<b>c</b>d1"
        assert esc(Html("<i>kept</i>")) == "<i>kept</i>" and esc("<i>") == "&lt;i&gt;"
        assert url("/invocations", {"function": "a&b", "status": None, "q": ""}) == (
            "/invocations?function=a%26b")


class TestMapLayout:
    """The layered layout: callers left of what they call, no two nodes on one spot."""

    def test_layers_and_positions(self) -> None:
        from lambdascope.collector.dashboard.graph import layered_layout

        nodes = [f"fn:f{i}" for i in range(12)] + [f"sqs:q{i}" for i in range(6)] + [
            f"http:h{i}" for i in range(20)]
        edges = []
        for i in range(6):  # f_i -> q_i -> f_{i+6}: function, queue, function
            edges += [(f"fn:f{i}", f"sqs:q{i}"), (f"sqs:q{i}", f"fn:f{i + 6}")]
        edges += [(f"fn:f{i % 12}", f"http:h{i}") for i in range(20)]
        layout = layered_layout(nodes, edges)
        assert set(layout.positions) == set(nodes)
        assert len(set(layout.positions.values())) == len(nodes)
        for a, b in edges:
            assert layout.layers[a] < layout.layers[b], (a, b)
        assert {layout.layers[f"fn:f{i}"] for i in range(6)} == {0}
        assert {layout.layers[f"sqs:q{i}"] for i in range(6)} == {1}
        assert {layout.layers[f"fn:f{i}"] for i in range(6, 12)} == {2}
        xs = [x for x, _ in layout.positions.values()]
        ys = [y for _, y in layout.positions.values()]
        assert max(xs) + layout.node_w <= layout.width
        assert max(ys) + layout.node_h <= layout.height

    def test_order_follows_the_neighbours(self) -> None:
        from lambdascope.collector.dashboard.graph import layered_layout

        # Given in crossing order: a->y, b->x; the sweep puts x level with b, y with a.
        layout = layered_layout(["a", "b", "x", "y"], [("a", "y"), ("b", "x")])
        p = layout.positions
        assert (p["a"][1] < p["b"][1]) == (p["y"][1] < p["x"][1])

    def test_cycles(self) -> None:
        from lambdascope.collector.dashboard.graph import layered_layout

        layout = layered_layout(["fn:a", "s3:b", "fn:c"],
                                [("fn:a", "s3:b"), ("s3:b", "fn:a"), ("fn:a", "fn:c"),
                                 ("fn:c", "fn:c"), ("fn:c", "gone")])
        assert layout.layers == {"fn:a": 0, "s3:b": 1, "fn:c": 1}


def test_login_without_a_token(site: Site) -> None:
    """With no token the pages are open and the login page sends one home."""
    response = site.get("/login", 303)
    assert response.headers["location"] == "/"
    assert not parse(site.get("/").text).all("form", cls="logout")

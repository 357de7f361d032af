"""The dashboard's queries (``lambdascope.collector.views``) against known stored reports:
time series, sparklines, services, per-sandbox memory, logs across functions, the service
map."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_reports import HOUR, MINUTE, T0, aws_span, http_span, make_report

from lambdascope.collector import queries, views
from lambdascope.collector.store import Store

PERCENT = 0.01 + 1e-9


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "views.db")
    yield s
    s.close()


def add(store: Store, *reports: dict[str, Any]) -> None:
    assert store.add(list(reports)).stored == len(reports)


def sandbox(report: dict[str, Any], stream: str) -> dict[str, Any]:
    report["function"]["log_stream"] = stream
    return report


class TestBuckets:
    """A series' bucket width: the smallest step that keeps the buckets at most 96."""

    @pytest.mark.parametrize(("span_ms", "width"), [
        (30 * MINUTE, MINUTE),
        (HOUR, MINUTE),
        (2 * HOUR, 2 * MINUTE),
        (24 * HOUR, 15 * MINUTE),
        (5 * 24 * HOUR, 2 * HOUR),
        (14 * 24 * HOUR, 6 * HOUR),
        (0, MINUTE),
    ])
    def test_width(self, span_ms: float, width: float) -> None:
        assert views.bucket_width_ms(T0, T0 + span_ms) == width


class TestTimeseries:
    """A function's figures per bucket, from the rollups."""

    def test_minute_buckets(self, store: Store) -> None:
        add(store,
            *(make_report(start_ms=T0 + 1000 * i, duration_ms=d) for i, d in
              enumerate((10.0, 20.0, 30.0))),
            make_report(start_ms=T0 + 5000, duration_ms=50.0, version="2"),
            make_report(start_ms=T0 + MINUTE + 10, duration_ms=100.0, cold=True, init_ms=300.0),
            make_report(start_ms=T0 + 2 * MINUTE + 10, duration_ms=40.0, status="error"))
        with store.reader() as conn:
            series = views.timeseries(conn, "orders", T0, T0 + HOUR)
            only_v2 = views.timeseries(conn, "orders", T0, T0 + HOUR, version="2")
        assert series["bucket_ms"] == MINUTE
        points = series["points"]
        assert len(points) == 60
        assert [p["start_ms"] for p in points[:3]] == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
        first, cold, failed, empty = points[:4]
        assert first["invocations"] == 4 and first["errors"] == 0
        assert first["warm_p50_ms"] == pytest.approx(20.0, rel=PERCENT)
        assert first["warm_p95_ms"] == pytest.approx(30.0, rel=PERCENT)  # rank floor(.95 * 3)
        assert first["cold_p50_ms"] is None and first["init_p50_ms"] is None
        assert cold["cold_starts"] == 1 and cold["cold_start_rate"] == 1.0
        assert cold["cold_p95_ms"] == pytest.approx(100.0, rel=PERCENT)
        assert cold["init_p50_ms"] == pytest.approx(300.0, rel=PERCENT)
        assert cold["warm_p50_ms"] is None
        assert failed["errors"] == 1 and failed["error_rate"] == 1.0
        assert empty["invocations"] == 0 and empty["error_rate"] is None
        assert empty["warm_p95_ms"] is None
        assert sum(p["invocations"] for p in points) == 6
        assert [p["invocations"] for p in only_v2["points"][:2]] == [1, 0]
        assert sum(p["invocations"] for p in only_v2["points"]) == 1

    def test_hour_buckets_and_memory(self, store: Store) -> None:
        add(store, *(make_report(start_ms=T0 + k * HOUR + 5 * MINUTE, rss_end_mb=100.0 + k,
                                 sandbox_mb=150.0 + k) for k in range(120)))
        with store.reader() as conn:
            series = views.timeseries(conn, "orders", T0, T0 + 120 * HOUR)
        assert series["bucket_ms"] == 2 * HOUR
        points = series["points"]
        assert len(points) == 60
        assert all(p["invocations"] == 2 for p in points)
        assert [p["rss_end_mean_mb"] for p in points[:3]] == [100.5, 102.5, 104.5]
        assert points[-1]["sandbox_peak_max_mb"] == 150.0 + 119
        assert points[0]["memory_mb"] == 512

    def test_a_window_from_the_epoch_starts_at_the_data(self, store: Store) -> None:
        add(store, make_report(start_ms=T0 + 90 * MINUTE))
        with store.reader() as conn:
            series = views.timeseries(conn, "orders", 0.0, T0 + 2 * HOUR)
        assert series["since_ms"] == T0 + HOUR
        assert series["bucket_ms"] == MINUTE and len(series["points"]) == 60
        assert sum(p["invocations"] for p in series["points"]) == 1


class TestTrends:
    """Counts per bucket for every function at once (the overview's sparklines)."""

    def test_counts(self, store: Store) -> None:
        add(store,
            make_report(start_ms=T0 + 10), make_report(start_ms=T0 + 20, status="error"),
            make_report(start_ms=T0 + 3 * MINUTE),
            make_report(function="emails", start_ms=T0 + 59 * MINUTE))
        with store.reader() as conn:
            found = views.trends(conn, T0, T0 + HOUR)
        assert found["bucket_ms"] == 2 * MINUTE and found["buckets"] == 30
        assert found["start_ms"] == T0
        orders = found["functions"]["orders"]
        assert orders[0] == [2, 1] and orders[1] == [1, 0]
        assert sum(n for n, _ in orders) == 3
        assert found["functions"]["emails"][29] == [1, 0]


class TestServices:
    """A function's service name, as its newest invocation reported it."""

    def test_newest_wins(self, store: Store) -> None:
        old = make_report(start_ms=T0)
        old["function"]["service"] = "shop-v1"
        new = make_report(start_ms=T0 + MINUTE)
        new["function"]["service"] = "shop"
        none = make_report(function="emails", start_ms=T0)
        none["function"]["service"] = None
        add(store, old, new, none)
        with store.reader() as conn:
            assert views.services(conn, ["orders", "emails", "gone"]) == {
                "orders": "shop", "emails": None, "gone": None}
            assert views.services(conn, ["orders"], until_ms=T0 + 1) == {"orders": "shop-v1"}
            assert views.seen(conn, "orders") and not views.seen(conn, "gone")
            assert views.function_names(conn) == ["emails", "orders"]


class TestSandboxMemory:
    """End-of-invocation RSS per sandbox: a leak is a rising line."""

    def test_lines_growth_and_slope(self, store: Store) -> None:
        leaking = [sandbox(make_report(start_ms=T0 + k * 6 * MINUTE, rss_end_mb=100.0 + 10 * k),
                           "2026/01/05/[1]aaaaaaaa") for k in range(6)]
        flat = [sandbox(make_report(start_ms=T0 + k * 10 * MINUTE + 1, rss_end_mb=80.0),
                        "2026/01/05/[1]bbbbbbbb") for k in range(3)]
        single = sandbox(make_report(start_ms=T0 + 40 * MINUTE, rss_end_mb=70.0),
                         "2026/01/05/[1]cccccccc")
        add(store, *leaking, *flat, single)
        with store.reader() as conn:
            found = views.sandbox_memory(conn, "orders", T0, T0 + HOUR)
        assert not found["sampled"] and found["rows"] == 10 and found["hidden"] == 0
        a, b, c = found["sandboxes"]
        assert a["log_stream"] == "2026/01/05/[1]aaaaaaaa"
        assert a["invocations"] == 6 and a["growth_mb"] == 50.0
        assert a["slope_mb_per_hour"] == 100.0
        assert a["points"][0] == [T0, 100.0] and a["points"][-1] == [T0 + 30 * MINUTE, 150.0]
        assert a["last_request_id"] == leaking[-1]["invocation"]["request_id"]
        assert (b["growth_mb"], b["slope_mb_per_hour"], b["rss_last_mb"]) == (0.0, 0.0, 80.0)
        assert c["invocations"] == 1 and c["slope_mb_per_hour"] is None

    def test_a_large_window_is_sampled(self, store: Store) -> None:
        add(store, *(sandbox(make_report(start_ms=T0 + k * MINUTE, rss_end_mb=float(k)),
                             f"2026/01/05/[1]{k % 2:08d}") for k in range(60)))
        with store.reader() as conn:
            found = views.sandbox_memory(conn, "orders", T0, T0 + HOUR, max_rows=12, slices=4)
        assert found["sampled"] and found["rows"] == 12
        times = sorted(t for box in found["sandboxes"] for t, _ in box["points"])
        # The first 3 rows of each quarter of the window.
        assert times == [T0 + m * MINUTE for q in range(4) for m in range(15 * q, 15 * q + 3)]

    def test_the_fullest_and_the_fastest_growing_are_kept(self, store: Store) -> None:
        reports = []
        for box in range(5):
            points = 3 if box < 2 else 2
            for k in range(points):
                growth = 40.0 * k if box == 4 else 0.0
                reports.append(sandbox(
                    make_report(start_ms=T0 + box * 1000 + k * MINUTE, rss_end_mb=100 + growth),
                    f"2026/01/05/[1]{box:08d}"))
        add(store, *reports)
        with store.reader() as conn:
            found = views.sandbox_memory(conn, "orders", T0, T0 + HOUR, max_sandboxes=2)
        kept = [b["log_stream"][-1] for b in found["sandboxes"]]
        assert kept == ["0", "1", "4"] and found["hidden"] == 2


class TestLogs:
    """The newest log lines across functions: the same answers as queries.logs."""

    @pytest.fixture
    def filled(self, store: Store) -> Store:
        reports = []
        for i in range(9):
            fn = ("orders", "emails", "thumbnails")[i % 3]
            reports.append(make_report(function=fn, start_ms=T0 + i * 1000,
                                       logs=[f"line {i} a", f"line {i} b"]))
        add(store, *reports)
        return store

    def test_pages_match_the_plain_query(self, filled: Store) -> None:
        with filled.reader() as conn:
            everything = queries.logs(conn, {}, limit=100)["logs"]
            assert len(everything) == 18
            for offset in (0, 4, 8, 16):
                page = views.logs(conn, {}, limit=4, offset=offset)
                assert page["logs"] == everything[offset:offset + 4]
                assert page["more"] == (offset + 4 < 18)
            assert views.logs(conn, {"function": "emails"}, limit=100) == queries.logs(
                conn, {"function": "emails"}, limit=100)

    def test_filters(self, filled: Store) -> None:
        with filled.reader() as conn:
            found = views.logs(conn, {"q": "line 4"}, limit=10)["logs"]
            assert [line["message"] for line in found] == ["line 4 b", "line 4 a"]
            assert all(line["function"] == "emails" for line in found)
            assert views.logs(conn, {"level": "error"}, limit=10)["logs"] == []
            window = views.logs(conn, {"since_ms": T0 + 7000}, limit=10)["logs"]
            assert {line["message"][:6] for line in window} == {"line 7", "line 8"}


class TestParseDependency:
    """A dependency string as a node of the map."""

    @pytest.mark.parametrize(("dependency", "node_id", "kind", "label"), [
        ("SQS.SendMessage orders-queue", "sqs:orders-queue", "queue", "SQS orders-queue"),
        ("SNS.Publish alerts", "sns:alerts", "topic", "SNS alerts"),
        ("DynamoDB.GetItem orders", "dynamodb:orders", "table", "DynamoDB orders"),
        ("S3.GetObject my-bucket", "s3:my-bucket", "bucket", "S3 my-bucket"),
        ("Kinesis.PutRecord clicks", "kinesis:clicks", "stream", "Kinesis clicks"),
        ("Lambda.Invoke audit", "fn:audit", "function", "audit"),
        ("S3.ListBuckets", "aws:S3", "aws", "S3"),
        ("GET api.example.com", "http:api.example.com", "http", "api.example.com"),
        ("POST localhost:8080", "http:localhost:8080", "http", "localhost:8080"),
        ("custom thing", "dep:custom thing", "other", "custom thing"),
    ])
    def test_nodes(self, dependency: str, node_id: str, kind: str, label: str) -> None:
        node = views.parse_dependency(dependency)
        assert (node["id"], node["kind"], node["label"]) == (node_id, kind, label)


class TestServiceMap:
    """Functions, resources and hosts; calls from the rollups, callers from traces."""

    @pytest.fixture
    def filled(self, store: Store) -> dict[str, Any]:
        orders = []
        for i in range(3):
            orders.append(make_report(start_ms=T0 + i * 1000, duration_ms=50.0, spans=[
                aws_span("SQS.SendMessage", 10.0 + i, status="error" if i == 0 else "ok",
                         **{"aws.sqs.queue_url": "https://sqs.us-east-1.amazonaws.com/1/"
                                                 "emails-queue"}),
                aws_span("DynamoDB.GetItem", 5.0, **{"aws.dynamodb.table_names": ["orders"]}),
                http_span("POST", "billing.internal", 20.0),
                aws_span("Lambda.Invoke", 30.0, **{"aws.lambda.function.name": "audit"}),
            ]))
        emails = []
        for i in range(4):
            report = make_report(function="emails", start_ms=T0 + 2000 + i, trigger="sqs",
                                 status="error" if i == 1 else "ok", duration_ms=10.0 * (i + 1))
            report["invocation"]["trigger"]["source"] = "arn:aws:sqs:us-east-1:1:emails-queue"
            emails.append(report)
        http_parent = orders[0]["spans"][3]
        billing = [make_report(function="billing", start_ms=T0 + 3000 + i, trigger="api_gateway",
                               trace_id=orders[0]["trace"]["trace_id"],
                               parent_span_id=http_parent["span_id"]) for i in range(2)]
        invoke = orders[2]["spans"][4]
        audit = [make_report(function="audit", start_ms=T0 + 4000 + i,
                             trace_id=orders[2]["trace"]["trace_id"],
                             parent_span_id=invoke["span_id"]) for i in range(3)]
        child = make_report(function="report", start_ms=T0 + 5000,
                            trace_id=orders[1]["trace"]["trace_id"],
                            parent_span_id=orders[1]["trace"]["span_id"])
        add(store, *orders, *emails, *billing, *audit, child)
        return {"store": store}

    def test_nodes_and_edges(self, filled: dict[str, Any]) -> None:
        with filled["store"].reader() as conn:
            found = views.service_map(conn, T0, T0 + HOUR)
        nodes = {n["id"]: n for n in found["nodes"]}
        assert set(nodes) == {"fn:orders", "fn:emails", "fn:billing", "fn:audit", "fn:report",
                              "sqs:emails-queue", "dynamodb:orders", "http:billing.internal"}
        assert nodes["sqs:emails-queue"]["kind"] == "queue"
        assert nodes["fn:emails"]["invocations"] == 4
        assert nodes["fn:emails"]["error_rate"] == 0.25
        assert nodes["fn:emails"]["p95_ms"] == pytest.approx(30.0, rel=PERCENT)  # of 10..40
        edges = {(e["from"], e["to"]): e for e in found["edges"]}
        assert set(edges) == {
            ("fn:orders", "sqs:emails-queue"), ("fn:orders", "dynamodb:orders"),
            ("fn:orders", "http:billing.internal"), ("fn:orders", "fn:audit"),
            ("sqs:emails-queue", "fn:emails"), ("http:billing.internal", "fn:billing"),
            ("fn:orders", "fn:report"),
        }
        send = edges[("fn:orders", "sqs:emails-queue")]
        assert (send["count"], send["errors"], send["estimated"]) == (3, 1, False)
        assert send["error_rate"] == pytest.approx(1 / 3)
        assert send["p95_ms"] == pytest.approx(11.0, rel=PERCENT)  # rank 1 of 10, 11, 12
        assert send["operations"] == ["SQS.SendMessage"]
        invoke = edges[("fn:orders", "fn:audit")]
        assert (invoke["count"], invoke["estimated"]) == (3, False)  # exact: the call itself
        consume = edges[("sqs:emails-queue", "fn:emails")]
        assert (consume["count"], consume["errors"], consume["estimated"]) == (4, 1, True)
        assert consume["sampled"] == 4
        assert edges[("http:billing.internal", "fn:billing")]["count"] == 2
        assert edges[("fn:orders", "fn:report")]["count"] == 1

    def test_one_function_and_its_neighbours(self, filled: dict[str, Any]) -> None:
        with filled["store"].reader() as conn:
            found = views.service_map(conn, T0, T0 + HOUR, function="emails")
            outside = views.service_map(conn, T0 + HOUR, T0 + 2 * HOUR)
        assert {n["id"] for n in found["nodes"]} == {"fn:emails", "sqs:emails-queue",
                                                     "fn:orders"}
        assert {(e["from"], e["to"]) for e in found["edges"]} == {
            ("sqs:emails-queue", "fn:emails"), ("fn:orders", "sqs:emails-queue")}
        assert outside == {"since_ms": T0 + HOUR, "until_ms": T0 + 2 * HOUR, "nodes": [],
                           "edges": []}

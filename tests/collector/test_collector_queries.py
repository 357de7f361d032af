"""The questions: stats (checked against figures computed here from the reports themselves),
show, trace, the lists, and check."""

from __future__ import annotations

import http.server
import math
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_reports import (
    HOUR,
    MINUTE,
    T0,
    assert_rollups_consistent,
    aws_span,
    http_span,
    make_report,
)

from lambdascope.collector import queries
from lambdascope.collector.pricing import Prices, billed_ms
from lambdascope.collector.queries import suggest_memory
from lambdascope.collector.store import Store

PRICE = 0.0000166667
REQUEST = 0.0000002
PERCENT = 0.01 + 1e-9


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1) + 1e-9)]


def close(got: float | None, want: float) -> bool:
    return got is not None and abs(got - want) <= PERCENT * abs(want) + 1e-9


def dataset(seed: int = 11) -> list[dict[str, Any]]:
    """About 600 invocations of "orders" from T0 - 10 min to T0 + 3 h 10 min, every 20 s:
    version 1 then the slower version 2, cold starts, proactive inits, errors, timeouts,
    crashes, an S3 call each and an HTTP call every third."""
    rng = random.Random(seed)
    reports = []
    start = T0 - 10 * MINUTE + 1234.0
    n = 0
    while start < T0 + 3 * HOUR + 10 * MINUTE:
        version = "1" if start < T0 + 100 * MINUTE else "2"
        slow = 1.6 if version == "2" else 1.0
        status = "ok"
        duration: float | None = round(rng.lognormvariate(3.5, 0.7) * slow, 3)
        if n % 71 == 5:
            status, duration = "timeout", 2950.0
        elif n % 101 == 7:
            status, duration = "crashed", None
        elif n % 13 == 4:
            status = "error"
        cold = n % 50 == 0
        proactive = not cold and n % 97 == 3
        spans = [aws_span("S3.GetObject", round(rng.uniform(1, 30) * slow, 3),
                          "error" if n % 17 == 2 else "ok", **{"aws.s3.bucket": "bucket"})]
        if n % 3 == 0:
            spans.append(http_span("GET", "api.example.com", round(rng.uniform(5, 80), 3)))
        reports.append(make_report(
            request_id=f"r{n:04d}", version=version, start_ms=start, duration_ms=duration,
            status=status, cold=cold, proactive=proactive,
            init_ms=round(rng.uniform(300, 900), 3) if cold or proactive else None,
            rss_peak_mb=round(rng.uniform(80, 150), 2),
            rss_end_mb=round(90 + (start - T0) / HOUR * 4 + rng.uniform(-1, 1), 2),
            agent_ms=round(rng.uniform(0.1, 0.6), 3), spans=spans,
        ))
        start += 20_000.0
        n += 1
    return reports


@pytest.fixture(scope="module")
def reports() -> list[dict[str, Any]]:
    return dataset()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, reports: list[dict[str, Any]]
          ) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("queries") / "reports.db")
    for i in range(0, len(reports), 100):
        s.add(reports[i:i + 100])
    yield s
    s.close()


@pytest.fixture
def conn(store: Store) -> Iterator[Any]:
    with store.reader() as c:
        yield c


def in_window(reports: list[dict[str, Any]], since: float, until: float
              ) -> list[dict[str, Any]]:
    """The documented window rule: exact under 2 hours; otherwise from the first whole
    minute inside the window to the end of the minute ``until`` falls in."""
    if until - since >= 2 * HOUR:
        since = math.ceil(since / MINUTE) * MINUTE
        until = math.ceil(until / MINUTE) * MINUTE
    return [r for r in reports if since <= r["invocation"]["start_ms"] < until]


def billed(r: dict[str, Any]) -> int:
    inv = r["invocation"]
    duration = inv["timeout_ms"] if inv["status"] == "timeout" else inv["duration_ms"]
    return billed_ms(duration, inv["init_duration_ms"], inv["init_type"],
                     inv["cold_start"] or inv["proactive_init"])


def expected(rs: list[dict[str, Any]]) -> dict[str, Any]:
    inv = [r["invocation"] for r in rs]
    n = len(rs)
    durations = [i["duration_ms"] for i in inv if i["duration_ms"] is not None]
    total = sum(billed(r) * 512 / 1024 / 1000 * PRICE for r in rs) + n * REQUEST
    init = [i["init_duration_ms"] for i in inv if i["cold_start"] or i["proactive_init"]]
    return {
        "n": n,
        "errors": sum(i["status"] == "error" for i in inv),
        "timeouts": sum(i["status"] == "timeout" for i in inv),
        "crashes": sum(i["status"] == "crashed" for i in inv),
        "cold": sum(i["cold_start"] for i in inv),
        "proactive": sum(i["proactive_init"] for i in inv),
        "durations": durations,
        "cold_durations": [i["duration_ms"] for i in inv
                           if i["cold_start"] and i["duration_ms"] is not None],
        "warm_durations": [i["duration_ms"] for i in inv
                           if not i["cold_start"] and i["duration_ms"] is not None],
        "init": init,
        "memory": [r["resources"]["rss_peak_mb"] for r in rs],
        "agent": [r["agent"]["overhead"]["invocation_ms"] for r in rs],
        "total_usd": total,
        "init_usd": sum(init) * 512 / 1024 / 1000 * PRICE,
        "duration_sum": sum(durations),
    }


def check_entry(entry: dict[str, Any], rs: list[dict[str, Any]]) -> None:
    want = expected(rs)
    n = want["n"]
    assert entry["invocations"] == n
    assert entry["error_rate"] == want["errors"] / n
    assert entry["timeout_rate"] == want["timeouts"] / n
    assert entry["crash_rate"] == want["crashes"] / n
    assert entry["cold_starts"] == want["cold"]
    assert entry["cold_start_rate"] == want["cold"] / n
    assert entry["proactive_inits"] == want["proactive"]
    for name, values in (("all", want["durations"]), ("cold", want["cold_durations"]),
                         ("warm", want["warm_durations"])):
        block = entry["duration"][name]
        assert block["count"] == len(values)
        for key, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99), ("p999_ms", 0.999)):
            if values:
                assert close(block[key], exact(values, q)), (name, key, block[key])
            else:
                assert block[key] is None
    if want["init"]:
        assert close(entry["init_p50_ms"], exact(want["init"], 0.5))
        assert close(entry["init_p95_ms"], exact(want["init"], 0.95))
    assert close(entry["memory"]["peak_p99_mb"], exact(want["memory"], 0.99))
    assert close(entry["memory"]["peak_max_mb"], max(want["memory"]))
    assert close(entry["agent"]["overhead_p50_ms"], exact(want["agent"], 0.5))
    assert close(entry["agent"]["overhead_p95_ms"], exact(want["agent"], 0.95))
    cost = entry["cost"]
    assert cost["architecture"] == "x86_64"
    assert cost["price_gb_s_usd"] == PRICE and cost["price_request_usd"] == REQUEST
    assert cost["total_usd"] == pytest.approx(want["total_usd"], rel=1e-9)
    assert cost["per_invocation_usd"] == pytest.approx(want["total_usd"] / n, rel=1e-9)
    assert cost["per_million_usd"] == pytest.approx(want["total_usd"] / n * 1e6, rel=1e-9)
    assert cost["cold_start_share"] == pytest.approx(want["init_usd"] / want["total_usd"],
                                                     rel=1e-6)
    assert entry["duration"]["mean_ms"] == pytest.approx(
        want["duration_sum"] / len(want["durations"]), abs=1e-3)


class TestStats:
    """stats() against figures computed independently from the reports."""

    @pytest.mark.parametrize(("since", "until"), [
        (T0 - HOUR, T0 + 4 * HOUR),  # everything: hours, minutes
        (T0 + 59 * MINUTE + 30_000.0, T0 + 2 * HOUR + MINUTE + 10_000.0),  # raw edges + an hour
        (T0 + 25 * MINUTE + 13_500.0, T0 + 107 * MINUTE + 2_250.0),  # raw edges + minutes
        (T0 + 5_000.0, T0 + 50_000.0),  # inside one minute: raw rows only
        (T0 - 7 * MINUTE - 12_345.0, T0 + 2 * HOUR + 41 * MINUTE + 1_000.0),  # long, ragged
    ])
    def test_windows(self, conn: Any, reports: list[dict[str, Any]], since: float,
                     until: float) -> None:
        result = queries.stats(conn, "orders", since, until)
        assert (result["since_ms"], result["until_ms"]) == (since, until)
        rs = in_window(reports, since, until)
        if not rs:
            assert result["functions"] == []
            return
        [entry] = result["functions"]
        assert entry["function"] == "orders" and entry["version"] is None
        check_entry(entry, rs)

    def test_all_functions_and_no_data(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        result = queries.stats(conn, None, T0 - HOUR, T0 + 4 * HOUR)
        assert [e["function"] for e in result["functions"]] == ["orders"]
        assert queries.stats(conn, "nope", T0 - HOUR, T0 + HOUR)["functions"] == []
        assert queries.stats(conn, "orders", T0 + 10 * HOUR, T0 + 11 * HOUR)["functions"] == []

    def test_by_version_newest_first(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        since, until = T0 - HOUR, T0 + 4 * HOUR
        result = queries.stats(conn, "orders", since, until, by="version")
        assert [e["version"] for e in result["functions"]] == ["2", "1"]
        for entry in result["functions"]:
            rs = [r for r in in_window(reports, since, until)
                  if r["function"]["version"] == entry["version"]]
            check_entry(entry, rs)
        v2, v1 = result["functions"]
        assert v2["duration"]["all"]["p50_ms"] > v1["duration"]["all"]["p50_ms"] * 1.3
        one = queries.stats(conn, "orders", since, until, version="1")["functions"]
        assert [e["invocations"] for e in one] == [v1["invocations"]]

    @pytest.mark.parametrize("cold", [True, False])
    def test_cold_and_warm(self, conn: Any, reports: list[dict[str, Any]], cold: bool) -> None:
        since, until = T0 - HOUR, T0 + 4 * HOUR
        [entry] = queries.stats(conn, "orders", since, until, cold=cold)["functions"]
        rs = [r for r in in_window(reports, since, until)
              if r["invocation"]["cold_start"] == cold]
        assert entry["invocations"] == len(rs)
        assert entry["duration"]["warm" if cold else "cold"]["count"] == 0
        assert entry["cold_start_rate"] == (1.0 if cold else 0.0)
        assert close(entry["duration"]["all"]["p95_ms"],
                     exact(expected(rs)["durations"], 0.95))

    def test_dependencies(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        since, until = T0 + 30 * MINUTE + 1.0, T0 + 90 * MINUTE + 7.0
        [entry] = queries.stats(conn, "orders", since, until)["functions"]
        rs = in_window(reports, since, until)
        want = expected(rs)
        deps = {d["dependency"]: d for d in entry["dependencies"]}
        assert list(deps) == sorted(deps, key=lambda k: -deps[k]["total_ms"])
        for name, kind in (("S3.GetObject bucket", "S3.GetObject"), ("GET api.example.com",
                                                                     "GET")):
            spans = [s for r in rs for s in r["spans"][1:] if s["name"] == kind]
            d = deps[name]
            assert d["count"] == len(spans)
            assert d["error_rate"] == sum(s["status"] == "error" for s in spans) / len(spans)
            durations = [s["duration_ms"] for s in spans]
            assert close(d["p50_ms"], exact(durations, 0.5))
            assert close(d["p95_ms"], exact(durations, 0.95))
            assert d["time_share"] == pytest.approx(sum(durations) / want["duration_sum"],
                                                    rel=1e-9)
            assert d["cost_share"] == pytest.approx(
                sum(durations) / 1000 * 0.5 * PRICE / want["total_usd"], rel=1e-9)

    def test_error_groups(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        since, until = T0 + 20 * MINUTE, T0 + 80 * MINUTE
        [entry] = queries.stats(conn, "orders", since, until)["functions"]
        rs = [r for r in in_window(reports, since, until) if r["error"]]
        groups = {g["type"]: g for g in entry["errors"]}
        for kind in ("ValueError", "Timeout", "Crashed"):
            mine = [r for r in rs if r["error"]["type"] == kind]
            if not mine:
                assert kind not in groups
                continue
            g = groups[kind]
            assert g["count"] == len(mine)
            assert g["message"] == "order <n> not found"
            assert g["top_frame"] == "app.py:handler"
            assert g["first_ms"] == min(r["invocation"]["start_ms"] for r in mine)
            assert g["last_ms"] == max(r["invocation"]["start_ms"] for r in mine)
            assert g["example_request_id"] == max(
                mine, key=lambda r: r["invocation"]["start_ms"])["invocation"]["request_id"]
        counts = [g["count"] for g in entry["errors"]]
        assert counts == sorted(counts, reverse=True)

    def test_memory_trend_and_right_sizing(self, conn: Any) -> None:
        [entry] = queries.stats(conn, "orders", T0, T0 + 3 * HOUR)["functions"]
        # rss_end rises 4 MB an hour in the data set.
        assert entry["memory"]["warm_trend_mb_per_hour"] == pytest.approx(4.0, abs=0.3)
        assert entry["memory"]["configured_mb"] == 512
        sizing = entry["right_sizing"]
        # Peak p99 about 149 MB: 149 / 0.7 = 213 -> 256 MB (a multiple of 64).
        assert sizing["memory_suggested_mb"] == 256
        assert "512 MB" in sizing["memory_reason"]
        assert sizing["timeout_ms"] == 3000.0  # 2975 ms left at the start: a 3 s timeout
        assert sizing["duration_p999_ms"] == entry["duration"]["all"]["p999_ms"]
        assert sizing["timeout_headroom_share"] == pytest.approx(
            1 - sizing["duration_p999_ms"] / 3000, abs=1e-4)

    def test_prices_override(self, conn: Any) -> None:
        prices = Prices(gb_s=0.00003, request=0.000001)
        [base] = queries.stats(conn, "orders", T0, T0 + HOUR)["functions"]
        [entry] = queries.stats(conn, "orders", T0, T0 + HOUR, prices=prices)["functions"]
        n = entry["invocations"]
        compute = base["cost"]["total_usd"] - n * REQUEST
        assert entry["cost"]["total_usd"] == pytest.approx(
            compute / PRICE * 0.00003 + n * 0.000001, rel=1e-9)
        assert entry["cost"]["price_gb_s_usd"] == 0.00003

    @pytest.mark.parametrize(("since", "until", "want"), [
        (T0 + 10_500.0, T0 + 170_000.0, 1800),  # 49.5 s and 50 s edges: their whole minutes
        (T0 + 40_000.0, T0 + 130_000.0, 600),  # 20 s and 10 s edges: left out
        (T0 + 20_000.0, T0 + 100_000.0, 1200),  # inside two minutes: 0:20 -> 0:00, 1:40 -> 2:00
    ])
    def test_dense_edges_are_rounded_to_the_nearest_minute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, since: float, until: float,
        want: int,
    ) -> None:
        monkeypatch.setattr(queries, "EDGE_ROWS_MAX", 20)
        with Store(tmp_path / "dense.db") as s:
            s.add([make_report(start_ms=T0 + n * 100.0, spans=[http_span()])
                   for n in range(1800)])  # 10 a second for 3 minutes
            with s.reader() as conn:
                [entry] = queries.stats(conn, "orders", since, until)["functions"]
                [dep] = queries.dependencies(conn, "orders", since, until)["dependencies"]
        assert entry["invocations"] == want
        assert dep["count"] == want

    def test_bad_arguments(self, conn: Any) -> None:
        with pytest.raises(ValueError):
            queries.stats(conn, by="region")
        with pytest.raises(ValueError):
            queries.stats(conn, since_ms="yesterday")
        with pytest.raises(ValueError):
            queries.stats(conn, cold="maybe")

    def test_rollups_match_the_rows(self, conn: Any) -> None:
        assert_rollups_consistent(conn)


class TestRightSizing:
    """A memory size with headroom over the observed peak, and why."""

    def test_oversized(self) -> None:
        size, reason = suggest_memory(1024, 100.0, 120.0)
        assert size == 192  # max(100 / 0.7, 120 / 0.85) = 142.9 -> 192
        assert "1024 MB" in reason and "only" in reason

    def test_undersized(self) -> None:
        size, reason = suggest_memory(128, 110.0, 126.0)
        assert size == 192
        assert "risk of running out of memory" in reason

    def test_fits(self) -> None:
        size, reason = suggest_memory(256, 150.0, 160.0)
        assert size == 256 and "fits" in reason

    def test_sandbox_figure_counts_when_plausible(self) -> None:
        # 300 MB (Lambda's Max Memory Used) / 0.7 = 428.6 -> 448 MB.
        assert suggest_memory(1024, 100.0, 110.0, sandbox_max=300.0)[0] == 448
        size, reason = suggest_memory(512, 100.0, 110.0, sandbox_max=300.0)
        assert size == 512 and "fits" in reason and "sandbox peak" in reason
        # Larger than the configured size: not a Lambda sandbox figure, ignored.
        assert suggest_memory(1024, 100.0, 110.0, sandbox_max=3000.0)[0] == 192

    def test_limits(self) -> None:
        assert suggest_memory(None, 10.0, 12.0)[0] == 128
        assert suggest_memory(10240, 9000.0, 9500.0)[0] == 10240
        assert suggest_memory(512, None, None) == (None, "no memory figures in the window")


class TestShowAndTrace:
    """One invocation, and the invocations of its trace."""

    def test_show(self, tmp_path: Path) -> None:
        trace = "ab" * 16
        first = make_report(request_id="first", trace_id=trace, start_ms=T0, duration_ms=50.0,
                            spans=[aws_span("SQS.SendMessage", 3.0, **{
                                "aws.sqs.queue_url": "https://sqs/1/jobs"})], logs=["sent"])
        second = make_report(request_id="second", function="worker", trace_id=trace,
                             start_ms=T0 + 80.0, parent_span_id="1" * 16, trigger="sqs")
        with Store(tmp_path / "s.db") as s:
            s.add([second, first, make_report(request_id="alone")])
            s.add_platform({"request_id": "first", "function": "orders", "duration_ms": 50.4,
                            "billed_ms": 51.0, "memory_mb": 512, "max_memory_mb": 140.0,
                            "init_ms": None, "timestamp": T0 + 51.0})
            with s.reader() as conn:
                shown = queries.show(conn, "first")
                assert shown["invocation"] == first
                assert shown["platform"] == {"duration_ms": 50.4, "billed_ms": 51.0,
                                             "max_memory_mb": 140.0, "init_ms": None,
                                             "memory_mb": 512}
                assert [r["request_id"] for r in shown["related"]] == ["second"]
                assert shown["related"][0]["function"] == "worker"
                assert [line["message"] for line in shown["logs"]] == ["sent"]
                assert shown["billed_ms"] == 51.0
                assert shown["cost_usd"] == pytest.approx(0.051 * 0.5 * PRICE + REQUEST)
                assert queries.show(conn, "alone")["related"] == []
                assert queries.show(conn, "missing") is None

                traced = queries.trace(conn, trace)
                assert [i["request_id"] for i in traced["invocations"]] == ["first", "second"]
                assert traced["invocations"][0]["spans"] == first["spans"]
                assert traced["duration_ms"] == pytest.approx(90.0)
                assert queries.trace(conn, "cd" * 16) is None


class TestLists:
    """invocations(), logs(), functions(), dependencies(), errors() for the dashboard."""

    def test_invocation_filters(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        def ids(**filters: Any) -> list[str]:
            return [i["request_id"] for i in
                    queries.invocations(conn, filters, limit=1000)["invocations"]]

        def want(pred: Any) -> list[str]:
            chosen = [r for r in reports if pred(r)]
            chosen.sort(key=lambda r: -r["invocation"]["start_ms"])
            return [r["invocation"]["request_id"] for r in chosen]

        assert ids() == want(lambda r: True)
        assert ids(status="error") == want(lambda r: r["invocation"]["status"] == "error")
        assert ids(cold=True) == want(lambda r: r["invocation"]["cold_start"])
        assert ids(cold="false") == want(lambda r: not r["invocation"]["cold_start"])
        assert ids(version="2") == want(lambda r: r["function"]["version"] == "2")
        assert ids(slower_than_ms=100) == want(
            lambda r: (r["invocation"]["duration_ms"] or 0) > 100)
        assert ids(since_ms=T0, until_ms=T0 + HOUR) == want(
            lambda r: T0 <= r["invocation"]["start_ms"] < T0 + HOUR)
        assert ids(trigger="direct", function="orders", status="timeout") == want(
            lambda r: r["invocation"]["status"] == "timeout")
        assert ids(function="orders' OR '1'='1") == []
        assert ids(trigger="direct'; DROP TABLE invocations; --") == []
        assert len(ids()) == len(reports)

    def test_pages(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        seen = []
        offset = 0
        while True:
            page = queries.invocations(conn, limit=250, offset=offset)
            seen += [i["request_id"] for i in page["invocations"]]
            if not page["more"]:
                break
            offset += 250
        assert len(seen) == len(set(seen)) == len(reports)

    def test_bad_filters(self, conn: Any) -> None:
        for bad in ({"colour": "red"}, {"status": "weird"}, {"since_ms": "soon"},
                    {"cold": "sometimes"}):
            with pytest.raises(ValueError):
                queries.invocations(conn, bad)
        for limit in (0, 5000, 2.5):
            with pytest.raises(ValueError):
                queries.invocations(conn, limit=limit)
        with pytest.raises(ValueError):
            queries.invocations(conn, offset=-1)

    def test_labels(self, tmp_path: Path) -> None:
        with Store(tmp_path / "l.db") as s:
            s.add([make_report(request_id="a", labels=["beta", "100%"]),
                   make_report(request_id="b", labels=["gamma"]), make_report(request_id="c")])
            with s.reader() as conn:
                assert [i["request_id"] for i in
                        queries.invocations(conn, label="beta")["invocations"]] == ["a"]
                assert [i["request_id"] for i in
                        queries.invocations(conn, label="100%")["invocations"]] == ["a"]
                assert queries.invocations(conn, label="bet")["invocations"] == []

    def test_logs(self, tmp_path: Path) -> None:
        with Store(tmp_path / "g.db") as s:
            s.add([make_report(request_id="a", start_ms=T0, logs=["50% done", "all_done"]),
                   make_report(request_id="b", start_ms=T0 + 1000, function="other",
                               logs=["hello"])])
            s.add_logs("a", [{"timestamp_ms": T0 + 5, "level": "ERROR", "message": "boom"}])
            with s.reader() as conn:
                def messages(**f: Any) -> list[str]:
                    return [x["message"] for x in queries.logs(conn, f)["logs"]]

                assert messages(request_id="a") == ["50% done", "all_done", "boom"]
                assert messages(function="orders") == ["boom", "all_done", "50% done"]
                assert messages(q="%") == ["50% done"]
                assert messages(q="_") == ["all_done"]
                assert messages(level="error") == ["boom"]
                assert messages(since_ms=T0 + 500) == ["hello"]
                assert messages(function="x' OR 1=1 --") == []
                with pytest.raises(ValueError):
                    queries.logs(conn, {"order": "sideways"})

    def test_functions(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        [entry] = queries.functions(conn, T0 - HOUR, T0 + 4 * HOUR)["functions"]
        assert entry["function"] == "orders"
        assert entry["invocations"] == len(reports)
        assert entry["versions"] == ["2", "1"]
        assert entry["last_ms"] == max(r["invocation"]["start_ms"] for r in reports)
        assert entry["errors"] == sum(r["invocation"]["status"] == "error" for r in reports)

    def test_dependencies_and_errors(self, conn: Any, reports: list[dict[str, Any]]) -> None:
        deps = queries.dependencies(conn, None, T0 - HOUR, T0 + 4 * HOUR)["dependencies"]
        assert {d["dependency"] for d in deps} == {"S3.GetObject bucket", "GET api.example.com"}
        s3 = next(d for d in deps if d["dependency"].startswith("S3"))
        assert s3["count"] == len(reports) and s3["function"] == "orders"
        errs = queries.errors(conn, "orders", T0 - HOUR, T0 + 4 * HOUR)["errors"]
        assert sum(e["count"] for e in errs) == sum(bool(r["error"]) for r in reports)
        assert queries.errors(conn, "orders", T0 - HOUR, T0 + 4 * HOUR, limit=1)[
            "errors"] == errs[:1]


class TestCheck:
    """Thresholds against a stats entry: what a deploy gate reads."""

    @pytest.fixture
    def entry(self, conn: Any) -> dict[str, Any]:
        return queries.stats(conn, "orders", T0, T0 + HOUR)["functions"][0]

    def test_pass_and_fail(self, entry: dict[str, Any]) -> None:
        p95 = entry["duration"]["all"]["p95_ms"]
        results = queries.check(entry, {"p95_ms": p95 + 1, "error_rate": 0.01,
                                        "max_cold_start_rate": 1.0})
        assert [(r["check"], r["ok"]) for r in results] == [
            ("p95_ms", True), ("error_rate", False), ("cold_start_rate", True)]
        assert results[1]["value"] == entry["error_rate"]
        assert results[1]["threshold"] == 0.01

    def test_every_threshold(self, entry: dict[str, Any]) -> None:
        huge = {name: 1e12 for name in ("p95_ms", "error_rate", "init_ms", "cold_start_rate",
                                        "cost_per_million", "agent_overhead_ms")}
        results = queries.check(entry, huge)
        assert len(results) == 6 and all(r["ok"] for r in results)
        values = {r["check"]: r["value"] for r in results}
        assert values["cost_per_million"] == entry["cost"]["per_million_usd"]
        assert values["agent_overhead_ms"] == entry["agent"]["overhead_p95_ms"]
        assert values["init_ms"] == entry["init_p95_ms"]

    def test_regression_against_a_baseline(self, conn: Any) -> None:
        v2, v1 = queries.stats(conn, "orders", T0 - HOUR, T0 + 4 * HOUR,
                               by="version")["functions"]
        [result] = queries.check(v2, {"regression_pct": 10}, baseline=v1)
        want = (v2["duration"]["all"]["p95_ms"] / v1["duration"]["all"]["p95_ms"] - 1) * 100
        assert result["value"] == pytest.approx(want, abs=0.01)
        assert result["ok"] is False
        assert queries.check(v1, {"max_regression_pct": 10}, baseline=v2)[0]["ok"] is True
        missing = queries.check(v2, {"regression_pct": 10}, baseline=None)[0]
        assert missing["ok"] is False and "baseline" in missing["note"]

    def test_no_invocations_fails_every_check(self) -> None:
        results = queries.check(None, {"p95_ms": 100, "error_rate": 0.1})
        assert [r["ok"] for r in results] == [False, False]

    def test_no_data_for_one_figure_passes_with_a_note(self, entry: dict[str, Any]) -> None:
        empty = dict(entry, init_p95_ms=None)
        [result] = queries.check(empty, {"init_ms": 500})
        assert result["ok"] is True and result["note"] == "no data"

    def test_bad_thresholds(self, entry: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            queries.check(entry, {"p99_ms": 5})
        with pytest.raises(ValueError):
            queries.check(entry, {"p95_ms": -1})


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(500 if "fail" in self.path else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


class TestRealReports:
    """Reports made by the agent itself, through the store and back."""

    def test_agent_reports(self, tmp_path: Path) -> None:
        import requests

        import lambdascope
        from lambdascope.testing import capture_reports, fake_context

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_address[1]

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> Any:
            requests.get(f"http://127.0.0.1:{port}/{event['path']}", timeout=5)
            if event["path"] == "fail":
                raise RuntimeError(f"upstream failed for order {event['n']}")
            return {"ok": True}

        try:
            with capture_reports() as reports:
                for n in range(12):
                    event = {"path": "fail" if n % 4 == 3 else "ok", "n": n}
                    try:
                        handler(event, fake_context(function_name="orders",
                                                    memory_limit_in_mb=256))
                    except RuntimeError:
                        pass
        finally:
            server.shutdown()
            server.server_close()
        with Store(tmp_path / "real.db") as s:
            assert s.add(reports).stored == 12
            with s.reader() as conn:
                [entry] = queries.stats(conn, "orders")["functions"]
                shown = queries.show(conn, reports[5]["invocation"]["request_id"])
                assert_rollups_consistent(conn)
        assert entry["invocations"] == 12
        assert entry["error_rate"] == 3 / 12
        assert entry["cold_starts"] == 1
        assert entry["memory"]["configured_mb"] == 256
        [dep] = entry["dependencies"]
        assert dep["dependency"] == f"GET 127.0.0.1:{port}"
        assert dep["count"] == 12 and dep["error_rate"] == 3 / 12
        assert 0 < dep["time_share"] <= 1
        [group] = entry["errors"]
        assert group["type"] == "RuntimeError" and group["count"] == 3
        assert group["message"] == "upstream failed for order <n>"
        assert group["top_frame"].endswith("test_collector_queries.py:handler")
        assert shown["invocation"] == reports[5]

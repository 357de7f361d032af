"""Alerts (docs/alerts.md): rules files checked at start, metrics computed from the store,
breaches and recoveries posted once each to a real webhook receiver, state kept across a
restart, a webhook that is down getting each post exactly once when it is back.

The collector runs as a real subprocess; reports come from the real agent under the Runtime API
emulator and from ``make_report``; the webhook is an HTTP server on loopback in a thread.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from collector_harness import AGENT_HANDLERS, ROOT, Collector, run_server  # noqa: E402
from collector_harness import make_report as harness_report  # noqa: E402
from collector_reports import T0, aws_span, http_span  # noqa: E402
from collector_reports import make_report as figures_report  # noqa: E402

from lambdascope.collector import queries, server  # noqa: E402
from lambdascope.collector.alerts import (  # noqa: E402
    METRICS,
    AlertEngine,
    RulesError,
    load_rules,
    metric_value,
    parse_rules,
    state_path_for,
)
from lambdascope.collector.pricing import REQUEST, X86_64_GB_S  # noqa: E402
from lambdascope.collector.store import Store, open_reader  # noqa: E402
from lambdascope.runner.runtime_api import Sandbox  # noqa: E402

SECRET = "T0KEN-SECRET-1234"
EXAMPLE = ROOT / "examples" / "alerts.toml"
DOC = ROOT / "docs" / "alerts.md"
MINUTE = 60_000.0
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


# -- a webhook receiver ---------------------------------------------------------------------------
class Webhook:
    """An HTTP server on loopback that records the JSON posted to it. ``fail_next`` posts are
    answered 503 (and not recorded as accepted); ``stop()``/``start()`` take it off and back on
    the same port (a webhook that is down refuses connections)."""

    def __init__(self) -> None:
        self.path = f"/services/{SECRET}"
        self.accepted: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_next = 0
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook._lock:
                    hook.attempts += 1
                    failing = hook.fail_next > 0
                    if failing:
                        hook.fail_next -= 1
                    elif self.path == hook.path:
                        hook.accepted.append({"json": json.loads(body),
                                              "content_type": self.headers["Content-Type"]})
                status = 503 if failing else (200 if self.path == hook.path else 404)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def posts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p["json"] for p in self.accepted]

    def states(self) -> list[tuple[str, str, str]]:
        return [(p["rule"], p["function"], p["state"]) for p in self.posts()]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0) -> bool:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def rules_file(tmp_path: pathlib.Path, webhook_url: str, *rules: str,
               interval: str = "100ms") -> pathlib.Path:
    path = tmp_path / "rules.toml"
    path.write_text(f'interval = "{interval}"\nwebhook = "{webhook_url}"\n\n'
                    + "\n".join(rules))
    return path


def rule(name: str, function: str, metric: str, threshold: float, window: str,
         dependency: str | None = None) -> str:
    text = (f'[[rules]]\nname = "{name}"\nfunction = "{function}"\nmetric = "{metric}"\n'
            f"threshold = {threshold}\nwindow = \"{window}\"\n")
    if dependency:
        text += f'dependency = "{dependency}"\n'
    return text


def start(db: pathlib.Path, rules: pathlib.Path, *args: str) -> Collector:
    return Collector(db, "--alerts", str(rules), *args, env=NO_PROXY).start()


def evaluations(c: Collector) -> int:
    return int(c.get("/api/alerts").json()["evaluations"])


def settle(c: Collector, rounds: int = 4) -> None:
    """Let the collector evaluate its rules ``rounds`` more times."""
    first = evaluations(c)
    assert wait_for(lambda: evaluations(c) >= first + rounds), c.stderr


def stopped_cleanly(c: Collector) -> None:
    assert c.stop() == 0, c.stderr
    assert "Traceback" not in c.stderr, c.stderr
    assert SECRET not in c.stderr, c.stderr


def now_ms() -> float:
    return time.time() * 1000.0


# -- the real agent -------------------------------------------------------------------------------
def agent_sandbox(tmp_path: pathlib.Path, url: str, function: str) -> Sandbox:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAMBDASCOPE_")}
    env.update({"LAMBDASCOPE_EXPORTERS": "http", "LAMBDASCOPE_COLLECTOR_URL": url,
                "LAMBDASCOPE_SPOOL_DIR": str(tmp_path / f"spool-{function}"), **NO_PROXY})
    sandbox = Sandbox("monitored.handler", AGENT_HANDLERS, env=env, function_name=function,
                      memory_mb=256, region="eu-west-1")
    sandbox.start()
    if not sandbox.wait_ready(20.0):
        sandbox.stop()
        pytest.fail(f"the sandbox did not finish its init\n{sandbox.output}")
    return sandbox


def test_the_agents_errors_fire_once_per_function_and_recover_once(
    tmp_path: pathlib.Path, webhook: Webhook
) -> None:
    rules = rules_file(tmp_path, webhook.url,
                       rule("errors", "*", "error_rate", 0.25, "10m"))
    c = start(tmp_path / "reports.db", rules)
    try:
        assert f"posting to 127.0.0.1:{webhook.port}" in c.ready_line
        assert SECRET not in c.ready_line
        # A healthy function (never alerted) and a failing one beside the agent's.
        assert c.post([harness_report(function="healthy") for _ in range(3)]).status_code == 202
        assert c.post([harness_report(function="billing", status="error")
                       for _ in range(2)]).status_code == 202
        sandbox = agent_sandbox(tmp_path, c.url, "alerts-agent")
        try:
            for i in range(3):
                sandbox.invoke({"action": "raise", "message": f"bad order {i}"}, 10.0)
            assert wait_for(lambda: ("errors", "alerts-agent", "firing") in webhook.states())
            settle(c)
            assert sorted(webhook.states()) == [("errors", "alerts-agent", "firing"),
                                                ("errors", "billing", "firing")]
            firing = c.get("/api/alerts").json()["alerts"]
            assert {(a["function"], a["value"]) for a in firing} == {("alerts-agent", 1.0),
                                                                     ("billing", 1.0)}
            # Good traffic dilutes the agent's errors: 3 of 12 is not above 0.25.
            for _ in range(9):
                assert sandbox.invoke({}, 10.0).ok
        finally:
            sandbox.stop()
        assert wait_for(lambda: ("errors", "alerts-agent", "resolved") in webhook.states())
        settle(c)
        assert webhook.states().count(("errors", "alerts-agent", "firing")) == 1
        assert webhook.states().count(("errors", "alerts-agent", "resolved")) == 1
        assert webhook.states().count(("errors", "billing", "firing")) == 1
        assert len(webhook.posts()) == 3  # billing is still failing: nothing more
        [resolved] = [p for p in webhook.posts() if p["state"] == "resolved"]
        assert resolved["value"] == pytest.approx(0.25)
        assert [a["function"] for a in c.get("/api/alerts").json()["alerts"]] == ["billing"]
        assert c.get("/api/alerts", function="billing").json()["alerts"][0]["rule"] == "errors"
        assert c.get("/api/alerts", function="healthy").json()["alerts"] == []
    finally:
        stopped_cleanly(c)
    assert (sandbox.stdout + sandbox.stderr).count("lambdascope: internal error") == 0


def test_a_breach_is_posted_once_with_its_figures_and_recovers_when_it_ages_out(
    tmp_path: pathlib.Path, webhook: Webhook
) -> None:
    rules = rules_file(tmp_path, webhook.url,
                       rule("orders errors", "orders/eu", "error_rate", 0.5, "4s"))
    c = start(tmp_path / "reports.db", rules)
    try:
        posted_at = now_ms()
        reports = [harness_report(function="orders/eu", status="error", start_ms=posted_at)
                   for _ in range(4)]
        assert c.post(reports).status_code == 202
        assert wait_for(lambda: webhook.posts())
        firing = webhook.posts()[0]
        assert firing["state"] == "firing"
        assert {k: firing[k] for k in ("rule", "function", "metric", "value", "threshold",
                                        "window", "dependency")} == {
            "rule": "orders errors", "function": "orders/eu", "metric": "error_rate",
            "value": 1.0, "threshold": 0.5, "window": "4s", "dependency": None}
        assert firing["dashboard_url"] == f"{c.url}/functions/orders%2Feu"
        assert firing["text"] == (
            f"[FIRING] orders errors: error_rate of orders/eu is 100%, above 50% over the last "
            f"4s {c.url}/functions/orders%2Feu")
        assert "\n" not in firing["text"]
        assert posted_at - 5000 < firing["since_ms"] <= firing["at_ms"] < now_ms()
        assert webhook.accepted[0]["content_type"] == "application/json"
        # The reports leave the 4 s window: no value, not breached, recovered.
        assert wait_for(lambda: len(webhook.posts()) == 2, timeout_s=30)
        settle(c)
        assert webhook.states() == [("orders errors", "orders/eu", "firing"),
                                    ("orders errors", "orders/eu", "resolved")]
        resolved = webhook.posts()[1]
        assert resolved["value"] is None
        assert resolved["id"] == firing["id"]  # the same breach
        assert resolved["text"].startswith("[RESOLVED] orders errors: error_rate of orders/eu: "
                                           "nothing to measure in the window")
        assert c.get("/api/alerts").json()["alerts"] == []
    finally:
        stopped_cleanly(c)


def test_alert_state_survives_a_restart(tmp_path: pathlib.Path, webhook: Webhook) -> None:
    db = tmp_path / "reports.db"
    rules = rules_file(tmp_path, webhook.url, rule("p95", "orders", "p95_ms", 200, "10m"),
                       rule("errors", "orders", "error_rate", 0.5, "10m"))
    c = start(db, rules)
    try:
        assert c.post([harness_report(status="error", duration_ms=500.0) for _ in range(3)]
                      ).status_code == 202
        assert wait_for(lambda: len(webhook.posts()) == 2)
        api = c.get("/api/alerts").json()
        assert (api["configured"], api["rules"], api["pending_posts"]) == (True, 2, 0)
        since = {p["rule"]: p["since_ms"] for p in webhook.posts()}
        url = f"{c.url}/functions/orders"
        assert sorted(api["alerts"], key=lambda a: a["rule"]) == [
            {"rule": "errors", "function": "orders", "metric": "error_rate", "value": 1.0,
             "threshold": 0.5, "window": "10m", "since_ms": since["errors"], "dependency": None,
             "dashboard_url": url},
            {"rule": "p95", "function": "orders", "metric": "p95_ms",
             "value": pytest.approx(500.0, rel=0.01), "threshold": 200.0, "window": "10m",
             "since_ms": since["p95"], "dependency": None, "dashboard_url": url}]
    finally:
        stopped_cleanly(c)
    assert sorted(webhook.states()) == [("errors", "orders", "firing"),
                                        ("p95", "orders", "firing")]
    state = json.loads(pathlib.Path(state_path_for(db)).read_text())
    assert {(a["rule"], a["posted"]) for a in state["alerts"]} == {("errors", "firing"),
                                                                   ("p95", "firing")}
    assert oct(os.stat(state_path_for(db)).st_mode & 0o777) == "0o600"

    c = start(db, rules)
    try:
        # Firing from the first moment (the dashboard shows it before any evaluation).
        assert {a["rule"] for a in c.get("/api/alerts").json()["alerts"]} == {"errors", "p95"}
        settle(c, rounds=5)
        assert len(webhook.posts()) == 2  # no second "firing" for the same breach
        # Fast, successful traffic: the error rate and the p95 recover.
        assert c.post([harness_report(duration_ms=20.0) for _ in range(57)]).status_code == 202
        assert wait_for(lambda: len(webhook.posts()) == 4)
        settle(c)
    finally:
        stopped_cleanly(c)
    assert sorted(webhook.states()[2:]) == [("errors", "orders", "resolved"),
                                            ("p95", "orders", "resolved")]
    c = start(db, rules)
    try:
        settle(c)
        assert len(webhook.posts()) == 4 and c.get("/api/alerts").json()["alerts"] == []
    finally:
        stopped_cleanly(c)


def test_a_recovery_while_the_collector_is_down_is_posted_once(
    tmp_path: pathlib.Path, webhook: Webhook
) -> None:
    db = tmp_path / "reports.db"
    rules = rules_file(tmp_path, webhook.url, rule("timeouts", "*", "timeout_rate", 0.1, "10m"))
    c = start(db, rules)
    try:
        assert c.post([harness_report(function="slow", status="timeout")]).status_code == 202
        assert wait_for(lambda: webhook.states() == [("timeouts", "slow", "firing")])
    finally:
        stopped_cleanly(c)
    # While the collector is stopped, good invocations reach the store (`lambdascope ingest`
    # writes to it the same way): 1 timeout in 20 is under the threshold.
    with Store(db) as store:
        store.add([harness_report(function="slow") for _ in range(19)])
    c = start(db, rules)
    try:
        assert wait_for(lambda: len(webhook.posts()) == 2)
        settle(c)
        assert webhook.states() == [("timeouts", "slow", "firing"),
                                    ("timeouts", "slow", "resolved")]
        assert webhook.posts()[1]["value"] == pytest.approx(0.05)
    finally:
        stopped_cleanly(c)


def test_a_webhook_that_is_down_gets_each_post_once_when_it_is_back(
    tmp_path: pathlib.Path, webhook: Webhook
) -> None:
    webhook.stop()  # connections refused
    rules = rules_file(tmp_path, webhook.url, rule("errors", "orders", "error_rate", 0.5, "1m"))
    c = start(tmp_path / "reports.db", rules)
    try:
        assert c.post([harness_report(status="error") for _ in range(2)]).status_code == 202
        assert wait_for(lambda: c.get("/api/alerts").json()["alerts"])
        settle(c)
        assert c.get("/api/alerts").json()["pending_posts"] == 1
        # The breach recovers before the webhook is back: both are still owed to it.
        assert c.post([harness_report() for _ in range(4)]).status_code == 202
        assert wait_for(lambda: not c.get("/api/alerts").json()["alerts"])
        settle(c)
        assert c.get("/api/alerts").json()["pending_posts"] == 2
        webhook.start()
        assert wait_for(lambda: len(webhook.posts()) == 2)
        settle(c, rounds=5)
        assert webhook.states() == [("errors", "orders", "firing"),
                                    ("errors", "orders", "resolved")]
        assert [p["value"] for p in webhook.posts()] == [1.0, pytest.approx(2 / 6)]
        assert c.get("/api/alerts").json()["pending_posts"] == 0
    finally:
        stopped_cleanly(c)
    # Logged once while it was down (by its host: the path holds the token), once when back.
    warnings = [line for line in c.stderr.splitlines() if "webhook" in line]
    assert len(warnings) == 2, c.stderr
    assert f"the webhook at 127.0.0.1:{webhook.port} did not take a post (cannot connect)" in (
        warnings[0])
    assert "takes posts again" in warnings[1]


def test_a_webhook_answering_5xx_is_retried_until_it_takes_the_post(
    tmp_path: pathlib.Path, webhook: Webhook
) -> None:
    webhook.fail_next = 3
    rules = rules_file(tmp_path, webhook.url, rule("cold", "*", "cold_start_rate", 0.5, "1m"))
    c = start(tmp_path / "reports.db", rules)
    try:
        assert c.post([harness_report(function="fresh", cold=True)]).status_code == 202
        assert wait_for(lambda: webhook.posts())
        settle(c)
        assert webhook.attempts == 4
        assert webhook.states() == [("cold", "fresh", "firing")]
    finally:
        stopped_cleanly(c)
    assert "did not take a post (HTTP 503)" in c.stderr


def test_the_example_rules_file_runs(tmp_path: pathlib.Path, webhook: Webhook) -> None:
    """examples/alerts.toml as docs/alerts.md shows it, pointed at the local receiver."""
    text = EXAMPLE.read_text()
    assert text in DOC.read_text()  # the page shows the example as it is
    text = re.sub(r'(?m)^webhook = ".*"$', f'webhook = "{webhook.url}"', text)
    text = re.sub(r'(?m)^interval = ".*"$', 'interval = "100ms"', text)
    rules = tmp_path / "alerts.toml"
    rules.write_text(text)
    c = start(tmp_path / "reports.db", rules)
    try:
        assert c.post([harness_report(status="error"), harness_report()]).status_code == 202
        assert wait_for(lambda: webhook.posts())
        settle(c)
        assert webhook.states() == [("orders errors", "orders", "firing")]
        assert webhook.posts()[0]["value"] == 0.5
    finally:
        stopped_cleanly(c)


# -- every metric, computed from the store ------------------------------------------------------
ORDERS_DURATIONS = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 400.0]


def fill_store(db: pathlib.Path) -> None:
    """Ten invocations of ``orders`` in the five minutes before T0, one a minute...-ish, with
    figures each metric is checked against; nothing of ``billing`` in the window."""
    reports = []
    for i, duration in enumerate(ORDERS_DURATIONS):
        status = "error" if i in (1, 5) else ("timeout" if i == 7 else "ok")
        cold = i in (0, 4, 8)
        minute = i // 2  # two invocations per minute, minutes T0-5m .. T0-1m
        start = T0 - 5 * MINUTE + minute * MINUTE + 1000.0 + i
        s3 = aws_span("S3.GetObject", duration_ms=5.0 * (i + 1),
                      status="error" if i == 9 else "ok", **{"aws.s3.bucket": "my-bucket"})
        api = http_span("POST", "api.payments.example", duration_ms=3.0,
                        status="error" if i < 4 else "ok")
        reports.append(figures_report(
            function="orders", start_ms=start, duration_ms=duration, status=status, cold=cold,
            memory_mb=512, rss_peak_mb=150.0, rss_end_mb=100.0 + 10.0 * minute,
            spans=[s3, api]))
    reports.append(figures_report(function="billing", start_ms=T0 - 20 * MINUTE))
    with Store(db) as store:
        store.add(reports)


# Lambda bills a timed-out invocation (i = 7) for its whole timeout (make_report's 2975 ms).
EXPECTED_BILLED_MS = sum(math.ceil(d) for i, d in enumerate(ORDERS_DURATIONS) if i != 7) + 2975
EXPECTED_COST_5M = EXPECTED_BILLED_MS * 0.5 / 1000.0 * X86_64_GB_S + 10 * REQUEST
EXPECTED = {
    "error_rate": 0.2,
    "timeout_rate": 0.1,
    "cold_start_rate": 0.3,
    # rank floor(0.95 * 9) = 8 of the sorted durations, within the sketch's 1 %
    "p95_ms": 90.0,
    "dependency_p95_ms": 45.0,  # S3 spans 5..50 ms: rank 8 is 45
    "dependency_error_rate": 0.4,  # POST api.payments.example: 4 of 10 failed
    # warm end-of-invocation RSS rises 10 MB a minute: 600 MB/h, 50 MB over 5 minutes
    "memory_growth_mb": 50.0,
    "cost_per_day": EXPECTED_COST_5M * 24 * 12,
}
DEPENDENCY = {"dependency_p95_ms": "S3.GetObject my-bucket",
              "dependency_error_rate": "POST api.payments.example"}


def test_each_metric_is_computed_from_the_stats(tmp_path: pathlib.Path) -> None:
    assert set(EXPECTED) == set(METRICS)
    db = tmp_path / "reports.db"
    fill_store(db)
    with Store(db) as store, store.reader() as conn:
        stats = queries.stats(conn, since_ms=T0 - 5 * MINUTE, until_ms=T0)
        [entry] = [e for e in stats["functions"] if e["function"] == "orders"]
        for metric, expected in EXPECTED.items():
            value = metric_value(metric, entry, 5 * MINUTE, DEPENDENCY.get(metric))
            assert value == pytest.approx(expected, rel=0.011), metric
        # Nothing to compute from: no value (never a breach).
        assert metric_value("error_rate", None, MINUTE) is None
        assert metric_value("dependency_p95_ms", entry, 5 * MINUTE, "SQS.SendMessage q") is None
        one_minute = queries.stats(conn, function="orders", since_ms=T0 - MINUTE, until_ms=T0)
        assert metric_value("memory_growth_mb", one_minute["functions"][0], MINUTE) is None
        empty = queries.stats(conn, function="billing", since_ms=T0 - 5 * MINUTE, until_ms=T0)
        assert empty["functions"] == []


def test_the_engine_posts_every_metric_and_nothing_without_data(
    tmp_path: pathlib.Path, webhook: Webhook
) -> None:
    """The engine in this process, on a real store, against the receiver: one rule per metric
    with a threshold just under its value fires; one just over it does not; a function with
    nothing in the window never fires."""
    db = tmp_path / "reports.db"
    fill_store(db)
    lines = []
    for metric, expected in EXPECTED.items():
        lines.append(rule(f"{metric} under", "orders", metric, round(expected * 0.95, 12),
                          "5m", DEPENDENCY.get(metric)))
        above = expected * 1.05 if METRICS[metric] != "rate" else min(1.0, expected * 1.05)
        lines.append(rule(f"{metric} over", "*", metric, round(above, 12), "5m",
                          DEPENDENCY.get(metric)))
    lines.append(rule("billing quiet", "billing", "error_rate", 0, "5m"))
    path = rules_file(tmp_path, webhook.url, *lines)
    store = Store(db)
    engine = AlertEngine(load_rules(path), store.reader, state_path=state_path_for(db),
                         base_url="http://dash.example:8585/")
    try:
        engine.evaluate(now_ms=T0)
        engine.evaluate(now_ms=T0 + 1)
        assert len(webhook.posts()) == len(EXPECTED)  # each once, over two evaluations
        posts = {p["rule"]: p for p in webhook.posts()}
        assert sorted(posts) == sorted(f"{m} under" for m in EXPECTED)
        for metric, expected in EXPECTED.items():
            post = posts[f"{metric} under"]
            assert post["value"] == pytest.approx(expected, rel=0.011), metric
            assert post["state"] == "firing" and post["metric"] == metric
            assert post["dependency"] == DEPENDENCY.get(metric)
            assert post["dashboard_url"] == "http://dash.example:8585/functions/orders"
        assert len(engine.firing()) == len(EXPECTED)
        # Ten minutes later the window is empty: every alert recovers, once.
        engine.evaluate(now_ms=T0 + 10 * MINUTE)
        engine.evaluate(now_ms=T0 + 10 * MINUTE + 1)
        resolved = [p for p in webhook.posts() if p["state"] == "resolved"]
        assert sorted(p["rule"] for p in resolved) == sorted(posts)
        assert all(p["value"] is None for p in resolved)
        assert engine.firing() == [] and engine.pending_posts() == 0
    finally:
        engine.stop()
        store.close()
    assert json.loads(pathlib.Path(state_path_for(db)).read_text())["alerts"] == []


def test_slack_text_escapes_and_dependencies_are_named(tmp_path: pathlib.Path,
                                                       webhook: Webhook) -> None:
    db = tmp_path / "reports.db"
    with Store(db) as store:
        store.add([figures_report(function="a<b>&c", start_ms=T0 - 1000.0, status="error",
                                  spans=[aws_span("S3.GetObject", duration_ms=80.0,
                                                  **{"aws.s3.bucket": "my-bucket"})])])
    path = rules_file(tmp_path, webhook.url,
                      rule("slow s3", "*", "dependency_p95_ms", 50, "1m",
                           "S3.GetObject my-bucket"))
    store = Store(db)
    engine = AlertEngine(load_rules(path), store.reader, state_path=None,
                         base_url="http://127.0.0.1:8585")
    try:
        engine.evaluate(now_ms=T0)
    finally:
        engine.stop()
        store.close()
    [post] = webhook.posts()
    assert post["function"] == "a<b>&c"
    assert post["text"].startswith(
        "[FIRING] slow s3: dependency_p95_ms of a&lt;b&gt;&amp;c → S3.GetObject my-bucket is ")
    assert post["dashboard_url"] == "http://127.0.0.1:8585/functions/a%3Cb%3E%26c"


# -- rules files with a mistake -------------------------------------------------------------------
GOOD_TOP = 'interval = "30s"\nwebhook = "https://hooks.example/services/abc"\n\n'
GOOD_RULE = ('[[rules]]\nname = "errors"\nfunction = "*"\nmetric = "error_rate"\n'
             'threshold = 0.05\nwindow = "5m"\n')

BAD_FILES = [
    # (file text, line, what the reason says)
    (GOOD_TOP + "[[rules]\nname = 'x'\n", 4, "not valid TOML"),
    (GOOD_TOP + GOOD_RULE + 'window = "6m"\n', 10, "not valid TOML"),  # a key given twice
    ('interval = "30s"\nwebhok = "https://x.example"\n' + GOOD_RULE, 2, "unknown key 'webhok'"),
    (GOOD_TOP + GOOD_RULE.replace('window = "5m"\n', 'window = "5m"\nseverity = "high"\n'),
     10, "unknown key 'severity'"),
    (GOOD_TOP + GOOD_RULE.replace('"error_rate"', '"eror_rate"'), 7,
     "unknown metric 'eror_rate'"),
    (GOOD_TOP + GOOD_RULE + GOOD_RULE.replace('threshold = 0.05\n', ''), 10,
     "rule 'errors': threshold is missing"),
    (GOOD_TOP + GOOD_RULE.replace('"5m"', '"5 minutes"'), 9, "not a duration"),
    (GOOD_TOP + GOOD_RULE.replace('"5m"', "300"), 9, "window must be a duration string"),
    (GOOD_TOP.replace('"30s"', '"soon"'), 1, "not a duration"),
    (GOOD_TOP.replace('"30s"', '"10ms"'), 1, "interval '10ms' is shorter than 100ms"),
    (GOOD_TOP.replace("https://hooks.example/services/abc", "ftp://hooks.example/x"), 2,
     "webhook must be an http:// or https:// URL"),
    (GOOD_TOP.replace("https://hooks.example/services/abc", "https:///nohost"), 2,
     "webhook has no host"),
    ('interval = "30s"\n\n' + GOOD_RULE, 1, "no webhook"),
    (GOOD_TOP, 1, "no [[rules]]"),
    (GOOD_TOP + GOOD_RULE + "\n" + GOOD_RULE, 12, "a second rule with this name"),
    (GOOD_TOP + GOOD_RULE.replace('"error_rate"', '"dependency_p95_ms"'), 4,
     "dependency_p95_ms needs dependency"),
    (GOOD_TOP + GOOD_RULE + 'dependency = "S3.GetObject b"\n', 10,
     "dependency applies to dependency_error_rate and dependency_p95_ms only"),
    (GOOD_TOP + GOOD_RULE.replace("0.05", "-1"), 8, "threshold -1 is negative"),
    (GOOD_TOP + GOOD_RULE.replace("0.05", "5"), 8, "error_rate is a rate from 0 to 1"),
    (GOOD_TOP + GOOD_RULE.replace("0.05", '"5%"'), 8, "threshold must be a number"),
    (GOOD_TOP + GOOD_RULE.replace("0.05", "nan"), 8, "threshold must be a finite number"),
    (GOOD_TOP + GOOD_RULE.replace('name = "errors"', 'name = ""'), 5,
     "name must not be empty"),
    (GOOD_TOP + GOOD_RULE.replace('function = "*"', "function = 3"), 6,
     "function must be a string"),
    (GOOD_TOP + "rules = 3\n", 4, "rules must be [[rules]] tables"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD_FILES,
                         ids=[r for _, _, r in BAD_FILES])
def test_a_rules_file_with_a_mistake_is_refused_with_its_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], text: str, line: int,
    reason: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert caught.value.line == line, str(caught.value)
    assert reason in caught.value.reason
    # The service refuses to start: one line naming the file, the line and the reason.
    with pytest.raises(SystemExit) as exited:
        server.main(["--alerts", str(path), "--db", str(tmp_path / "r.db"), "--port", "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"alert rules {path}, line {line}: " in err and reason in err, err
    assert "Traceback" not in err
    assert "services/abc" not in err  # a webhook URL is never repeated
    assert not (tmp_path / "r.db").exists()


def test_an_unreadable_rules_file_is_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "latin1.toml").write_bytes(GOOD_TOP.encode() + b'# caf\xe9\n' + b"x = 1\n")
    cases = [(tmp_path / "missing.toml", "No such file or directory"),
             (tmp_path, "is a directory"),
             (tmp_path / "latin1.toml", "line 4: not UTF-8 text")]
    for path, reason in cases:
        with pytest.raises(RulesError, match=re.escape(reason)):
            load_rules(path)


def test_the_command_refuses_a_bad_rules_file_at_start(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD_TOP + GOOD_RULE.replace('"error_rate"', '"p99_ms"'))
    for argv in ([sys.executable, "-m", "lambdascope.cli", "collector"],
                 [sys.executable, "-m", "lambdascope.collector.server"]):
        done = subprocess.run([*argv, "--alerts", str(path), "--db", str(tmp_path / "r.db")],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 2, done
        assert done.stderr == (
            f"lambdascope collector: error: argument --alerts: alert rules {path}, line 7: "
            f"rule 'errors': unknown metric 'p99_ms' (one of error_rate, timeout_rate, "
            f"cold_start_rate, p95_ms, dependency_p95_ms, dependency_error_rate, "
            f"memory_growth_mb, cost_per_day)\n")
    path.write_text(GOOD_TOP + GOOD_RULE)
    done = run_server("--alerts", str(path), "--public-url", "not a url")
    assert done.returncode == 2, done
    assert done.stderr == ("lambdascope collector: error: argument --public-url: --public-url "
                           "must be an http:// or https:// URL without spaces\n")


def test_rules_are_read_as_documented(tmp_path: pathlib.Path) -> None:
    rules = parse_rules(
        'webhook = "https://user:pw@hooks.example:8443/services/abc"\n'
        "rules = [{name = 'a', function = 'f', metric = 'memory_growth_mb', threshold = 64,"
        " window = '1h'}]\n", "inline.toml")
    assert rules.interval == "30s" and rules.interval_ms == 30_000  # the default
    assert rules.webhook_host == "hooks.example:8443"  # no credentials, no path
    [only] = rules.rules
    assert (only.name, only.function, only.metric, only.threshold, only.window,
            only.window_ms, only.dependency) == ("a", "f", "memory_growth_mb", 64.0, "1h",
                                                 3_600_000.0, None)
    with pytest.raises(RulesError) as caught:  # the line of `rules =` for inline tables
        parse_rules('webhook = "https://h.example"\n\nrules = [{name = "a"}]\n', "i.toml")
    assert caught.value.line == 3 and "function is missing" in caught.value.reason


def test_the_help_and_the_ready_line_tell_of_alerts(tmp_path: pathlib.Path,
                                                     webhook: Webhook) -> None:
    text = " ".join(server.build_parser().format_help().split())
    assert "--alerts FILE" in text and "--public-url URL" in text
    rules = rules_file(tmp_path, webhook.url, rule("e", "*", "error_rate", 0.1, "1m"),
                       interval="1s")
    c = start(tmp_path / "r.db", rules, "--public-url", "https://lambdascope.example/")
    try:
        assert c.ready_line.endswith(
            f"; 1 alert rule from {rules}, every 1s, posting to 127.0.0.1:{webhook.port}")
        assert c.post([harness_report(function="f x", status="error")]).status_code == 202
        assert wait_for(lambda: webhook.posts())
        assert webhook.posts()[0]["dashboard_url"] == (
            "https://lambdascope.example/functions/f%20x")
        assert httpx.get(c.url + "/api/alerts", params={"nope": "1"}).status_code == 400
    finally:
        stopped_cleanly(c)


def test_a_flap_the_webhook_did_not_see_is_not_posted(tmp_path: pathlib.Path,
                                                      webhook: Webhook) -> None:
    """Fired and posted; then, while the webhook is down, a recovery and a new breach: for the
    webhook the alert never stopped firing, so nothing more is posted when it is back."""
    db = tmp_path / "reports.db"
    with Store(db) as store:
        store.add([figures_report(start_ms=T0 - 30_000.0, status="error")])
    path = rules_file(tmp_path, webhook.url, rule("errors", "orders", "error_rate", 0.5, "1m"))
    store = Store(db)
    engine = AlertEngine(load_rules(path), store.reader, state_path=state_path_for(db),
                         base_url="http://127.0.0.1:8585")
    try:
        engine.evaluate(now_ms=T0)
        assert webhook.states() == [("errors", "orders", "firing")]
        webhook.stop()
        engine.evaluate(now_ms=T0 + 2 * MINUTE)  # the error left the window: recovered
        assert engine.firing() == [] and engine.pending_posts() == 1
        store.add([figures_report(start_ms=T0 + 5 * MINUTE, status="error")])
        engine.evaluate(now_ms=T0 + 5 * MINUTE + 10_000.0)  # and breached again
        [again] = engine.firing()
        assert again["since_ms"] == T0 + 5 * MINUTE + 10_000.0
        assert engine.pending_posts() == 0
        webhook.start()
        engine.evaluate(now_ms=T0 + 5 * MINUTE + 20_000.0)
        assert webhook.states() == [("errors", "orders", "firing")]
        # Its recovery is owed once.
        engine.evaluate(now_ms=T0 + 10 * MINUTE)
        assert webhook.states() == [("errors", "orders", "firing"),
                                    ("errors", "orders", "resolved")]
    finally:
        engine.stop()
        store.close()


def test_an_evaluation_that_fails_is_logged_once_and_never_raises(
    tmp_path: pathlib.Path, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "later.db"  # no store yet: every read fails
    path = rules_file(tmp_path, webhook.url, rule("errors", "*", "error_rate", 0.5, "1m"))
    engine = AlertEngine(load_rules(path), lambda: open_reader(db), state_path=None,
                         base_url="http://127.0.0.1:8585")
    try:
        with caplog.at_level(logging.WARNING, logger="lambdascope.collector"):
            for _ in range(3):
                engine.evaluate(now_ms=T0)
            assert engine.summary()["evaluations"] == 3
            with Store(db) as store:
                store.add([figures_report(start_ms=T0 - 1000.0, status="error")])
            engine.evaluate(now_ms=T0)
            engine.evaluate(now_ms=T0 + 1)
    finally:
        engine.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "evaluating the rules failed (StoreError: no store at" in messages[0]
    assert "evaluating the rules works again" in messages[1]
    assert webhook.states() == [("errors", "orders", "firing")]


def test_an_unreadable_state_file_is_logged_and_the_engine_starts_empty(
    tmp_path: pathlib.Path, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "reports.db"
    pathlib.Path(state_path_for(db)).write_text('{"version": 1, "alerts": [')
    path = rules_file(tmp_path, webhook.url, rule("errors", "*", "error_rate", 0.5, "1m"))
    with Store(db) as store, caplog.at_level(logging.WARNING, logger="lambdascope.collector"):
        engine = AlertEngine(load_rules(path), store.reader, state_path=state_path_for(db),
                             base_url="http://127.0.0.1:8585")
        try:
            assert engine.firing() == []
        finally:
            engine.stop()
    [message] = [r.getMessage() for r in caplog.records]
    assert "cannot read the alert state" in message and "starting without it" in message

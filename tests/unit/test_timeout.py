"""Timeout reports: sent before the deadline from inside the invocation, never into the next one,
never raising into the handler, no signal taken."""

from __future__ import annotations

import signal
import time
from typing import Any

import lambdascope
from lambdascope.testing import capture_reports, fake_context


def test_timeout_report_before_the_deadline_with_stack_and_spans(validate_report: Any) -> None:
    @lambdascope.monitor(timeout_warning_ms=200)
    def handler(event: Any, context: Any) -> str:
        lambdascope.metric("started", 1, "Count")
        with lambdascope.span("done-part"):
            pass
        with lambdascope.span("stuck-part"):
            time.sleep(0.75)  # the handler is here when the watchdog fires (at 0.7 s)
        return "finished late"

    with capture_reports() as reports:
        assert handler({}, fake_context(timeout_s=0.9)) == "finished late"
    assert [r["invocation"]["status"] for r in reports] == ["timeout", "ok"]
    timeout = validate_report(reports[0])
    assert timeout["error"]["type"] == "Timeout"
    last = timeout["error"]["stack"][-1]
    assert last["function"] == "handler" and last["file"] == __file__
    spans = {s["name"]: s for s in timeout["spans"]}
    assert spans["done-part"]["status"] == "ok"
    assert spans["stuck-part"]["attributes"]["lambdascope.in_flight"] is True
    assert [m["name"] for m in timeout["metrics"]] == ["started"]
    assert timeout["invocation"]["request_id"] == reports[1]["invocation"]["request_id"]
    # Sent before the deadline: 900 ms minus the 200 ms warning, give or take the scheduler.
    assert 650 <= timeout["invocation"]["duration_ms"] <= 850


def test_a_finished_invocation_never_fires_into_the_next() -> None:
    @lambdascope.monitor(timeout_warning_ms=100)
    def handler(event: Any, context: Any) -> None:
        time.sleep(event["sleep"])

    with capture_reports() as reports:
        handler({"sleep": 0.05}, fake_context(timeout_s=0.4))  # would fire at 0.3 s
        handler({"sleep": 0.5}, fake_context(timeout_s=5.0))  # still running at 0.3 s
    assert [r["invocation"]["status"] for r in reports] == ["ok", "ok"]


def test_no_timer_without_a_deadline_or_when_disabled() -> None:
    @lambdascope.monitor(timeout_warning_ms=0)
    def off(event: Any, context: Any) -> None:
        time.sleep(0.3)

    @lambdascope.monitor(timeout_warning_ms=200)
    def no_context(event: Any, context: Any = None) -> None:
        time.sleep(0.05)

    with capture_reports() as reports:
        off({}, fake_context(timeout_s=0.5))
        no_context({})
    assert [r["invocation"]["status"] for r in reports] == ["ok", "ok"]


def test_no_signal_handler_is_taken() -> None:
    def mine(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        @lambdascope.monitor(timeout_warning_ms=100)
        def handler(event: Any, context: Any) -> None:
            time.sleep(0.25)

        with capture_reports() as reports:
            handler({}, fake_context(timeout_s=0.3))
        assert signal.getsignal(signal.SIGALRM) is mine
        assert reports[0]["invocation"]["status"] == "timeout"
    finally:
        signal.signal(signal.SIGALRM, previous)

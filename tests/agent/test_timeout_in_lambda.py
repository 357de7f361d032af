"""Under the real runtime: a handler that runs past its timeout still reports, before Lambda (the
emulator) gives up on it."""

from __future__ import annotations

from typing import Any


def test_timeout_report_arrives_before_the_sandbox_is_killed(
    sandboxes: Any, validate_report: Any
) -> None:
    lam = sandboxes(env={"LAMBDASCOPE_TIMEOUT_WARNING_MS": "300"})
    result = lam.invoke({"action": "sleep", "seconds": 5}, timeout_s=1.0)
    assert result.status == "timeout"
    lam.sandbox.stop()  # what Lambda does to a sandbox that timed out
    (report,) = lam.reports(1)
    validate_report(report)
    assert report["invocation"]["request_id"] == result.request_id
    assert report["invocation"]["status"] == "timeout"
    assert report["error"]["type"] == "Timeout"
    assert report["error"]["stack"][-1]["function"] == "handler"
    assert 600 <= report["invocation"]["duration_ms"] <= 1000

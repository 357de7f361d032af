"""The ``stdout`` exporter under the real runtime: one JSON line per report, found among the
function's own output, in text and in JSON log format."""

from __future__ import annotations

import json
from typing import Any

import pytest


def report_lines(output: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith('{"schema":"lambdascope/1"')
    ]


@pytest.mark.parametrize("log_format", ["Text", "JSON"])
def test_stdout_reports_are_whole_json_lines(
    sandboxes: Any, validate_report: Any, log_format: str
) -> None:
    lam = sandboxes(
        env={
            "LAMBDASCOPE_EXPORTERS": "stdout",
            "AWS_LAMBDA_LOG_FORMAT": log_format,
            "AWS_LAMBDA_LOG_LEVEL": "INFO",
        }
    )
    results = [lam.invoke({}) for _ in range(3)]
    assert all(r.ok for r in results)
    # The last report is written after its response: wait until the sandbox is idle (the
    # runtime and the agent's extension both asked for the next event), as Lambda does.
    assert lam.sandbox.wait_idle(5.0)
    lam.sandbox.stop()
    reports = report_lines(lam.sandbox.stdout)
    assert [r["invocation"]["request_id"] for r in reports] == [r.request_id for r in results]
    for report in reports:
        validate_report(report)
    # The handler's own log line still went through the runtime's logging, and was captured.
    assert reports[0]["logs"][0]["message"].startswith("working on")
    if log_format == "JSON":
        runtime_lines = [
            json.loads(line) for line in lam.sandbox.stdout.splitlines()
            if line.startswith("{") and "lambdascope/1" not in line
        ]
        assert any(entry.get("message", "").startswith("working on") for entry in runtime_lines)

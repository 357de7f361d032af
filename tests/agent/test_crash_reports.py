"""An invocation that kills its process still gets a report: the next process of the sandbox
finds its breadcrumb and reports it as crashed."""

from __future__ import annotations

import pathlib
from typing import Any


def test_os_exit_mid_invocation_is_reported_by_the_next_process(
    sandboxes: Any, tmp_path: pathlib.Path, validate_report: Any
) -> None:
    spool = str(tmp_path / "shared-spool")  # /tmp survives a runtime restart in the sandbox
    first = sandboxes(env={"LAMBDASCOPE_SPOOL_DIR": spool})
    assert first.invoke({}).ok
    died = first.invoke({"action": "exit"})
    assert not died.ok
    first.sandbox.stop()
    (ok_report,) = first.reports(1)  # the dying invocation wrote nothing itself

    second = sandboxes(env={"LAMBDASCOPE_SPOOL_DIR": spool})
    assert second.invoke({}).ok
    reports = second.by_request_id(2)
    crashed = reports[died.request_id]
    validate_report(crashed)
    assert crashed["invocation"]["status"] == "crashed"
    assert crashed["error"]["type"] == "Crashed"
    assert "ended during the invocation" in crashed["error"]["message"]
    assert crashed["trace"]["trace_id"]
    assert ok_report["invocation"]["request_id"] != died.request_id


def test_memory_near_the_limit_is_named_the_likely_cause(
    sandboxes: Any, tmp_path: pathlib.Path, validate_report: Any
) -> None:
    spool = str(tmp_path / "shared-spool")
    first = sandboxes(env={"LAMBDASCOPE_SPOOL_DIR": spool})  # 256 MB function
    assert first.invoke({"action": "alloc", "mb": 220}).ok
    died = first.invoke({"action": "exit"})
    first.sandbox.stop()

    second = sandboxes(env={"LAMBDASCOPE_SPOOL_DIR": spool})
    assert second.invoke({}).ok
    crashed = second.by_request_id(2)[died.request_id]
    validate_report(crashed)
    assert "out-of-memory" in crashed["error"]["message"]


def test_a_clean_stop_leaves_nothing_to_report(sandboxes: Any, tmp_path: pathlib.Path) -> None:
    spool = str(tmp_path / "shared-spool")
    first = sandboxes(env={"LAMBDASCOPE_SPOOL_DIR": spool})
    assert first.invoke({}).ok
    assert first.sandbox.wait_idle(5.0)
    first.sandbox.stop()
    second = sandboxes(env={"LAMBDASCOPE_SPOOL_DIR": spool})
    assert second.invoke({}).ok
    assert [r["invocation"]["status"] for r in second.reports(1)] == ["ok"]

"""The runner under real conditions: ``awslambdaric`` processes, one per sandbox, the loopback
Runtime API, the agent reporting to the runner's receiver, and the embedded store read back."""

from __future__ import annotations

import os
import pathlib
import threading
import time
from typing import Any

import pytest
from runner_harness import stored_rows

from lambdascope.runner.invoke import RunResult


def _proc_states(pid: int) -> set[str]:
    """The state letter of every thread of ``pid``."""
    states = set()
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue
        states.add(raw[raw.rindex(")") + 2])
    return states


def test_cold_then_warm_over_containers_and_the_store_matches(
    run_handler: Any, tmp_path: pathlib.Path
) -> None:
    result: RunResult = run_handler("scripted.py:handler", {"script": ["ok"]}, times=5,
                                    containers=2, function_name="spread")
    records = result.invocations
    assert [r.index for r in records] == [1, 2, 3, 4, 5]
    assert all(r.status == "ok" for r in records), [r.error_message for r in records]
    # Two sandboxes, each cold once, then warm; invocations go to the one that served fewest.
    assert [r.start for r in records] == ["cold", "cold", "warm", "warm", "warm"]
    assert [r.sandbox for r in records] == [1, 2, 1, 2, 1]
    assert result.sandboxes_started == 2
    pids = {s: {r.payload["pid"] for r in records if r.sandbox == s} for s in (1, 2)}
    assert len(pids[1]) == len(pids[2]) == 1 and pids[1] != pids[2]  # one process each
    assert [r.payload["calls_here"] for r in records] == [1, 1, 2, 2, 3]
    assert all(r.init_ms and r.init_ms > 0 for r in records[:2])
    assert all(r.init_ms is None for r in records[2:])

    # Every report is in the store before the run returns, with the runner's cold flags.
    assert result.reports_received == 5 and result.reports_missing == []
    rows = stored_rows(tmp_path / "reports.db", "spread")
    assert len(rows) == 5
    by_id = {row["request_id"]: row for row in rows}
    assert set(by_id) == {r.request_id for r in records}
    for r in records:
        row = by_id[r.request_id]
        assert row["source"] == "agent" and row["status"] == "ok"
        assert bool(row["cold_start"]) == r.cold_start
        assert row["report"]["invocation"]["cold_start"] == r.cold_start
        assert row["platform_duration_ms"] == pytest.approx(r.duration_ms)
        assert row["memory_mb"] == 128
        # The sandbox's memory the agent reports is the runner's figure, not the host's.
        sandbox_mb = row["report"]["resources"]["sandbox_memory_mb"]
        assert sandbox_mb is not None and 5 < sandbox_mb < 128


def test_concurrency_runs_that_many_at_once_and_no_more(run_handler: Any) -> None:
    result = run_handler("scripted.py:handler", {"script": ["sleep:0.8"]}, times=4,
                         concurrency=2)
    records = result.invocations
    assert [r.status for r in records] == ["ok"] * 4
    assert sorted(r.sandbox for r in records) == [1, 1, 2, 2]  # containers default to C
    assert sorted(r.start for r in records) == ["cold", "cold", "warm", "warm"]
    windows = [(r.payload["started"], r.payload["ended"]) for r in records]
    # The first two ran at once: each started before the other ended.
    assert max(w[0] for w in windows[:2]) < min(w[1] for w in windows[:2])
    # Never three at once: when one started, at most one other was running.
    for started, _ in windows:
        running = [w for w in windows if w[0] <= started < w[1]]
        assert len(running) <= 2, windows


def test_timeout_kills_the_sandbox_and_a_cold_one_replaces_it(
    run_handler: Any, tmp_path: pathlib.Path
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    result = run_handler(
        "scripted.py:handler", {"script": ["sleep:5", "ok"]}, times=2, timeout_s=1.0,
        function_name="slowpoke", on_event=lambda name, info: events.append((name, info)),
    )
    first, second = result.invocations
    assert first.status == "timeout" and first.error_type == "Sandbox.Timedout"
    assert first.duration_ms == pytest.approx(1000.0, abs=1.0)
    assert ("killed", {"sandbox": 1, "pid": first.pid, "reason": "timeout"}) in events
    assert not os.path.exists(f"/proc/{first.pid}") or "Z" in _proc_states(first.pid)
    # The slot got a new process: cold again.
    assert second.status == "ok" and second.start == "cold" and second.process == 2
    assert second.pid != first.pid and second.payload["calls_here"] == 1
    rows = {row["request_id"]: row for row in stored_rows(tmp_path / "reports.db", "slowpoke")}
    assert len(rows) == 2
    timed_out = rows[first.request_id]
    assert timed_out["status"] == "timeout"
    assert timed_out["source"] == "agent"  # the agent's own timeout report, sent in time
    assert timed_out["report"]["error"]["type"] == "Timeout"
    assert timed_out["platform_duration_ms"] == pytest.approx(1000.0, abs=1.0)
    assert rows[second.request_id]["status"] == "ok"
    assert rows[second.request_id]["cold_start"] == 1


def test_out_of_memory_kills_the_sandbox_and_the_next_process_reports_it(
    run_handler: Any, tmp_path: pathlib.Path
) -> None:
    result = run_handler("scripted.py:handler", {"script": ["alloc:400", "ok"]}, times=2,
                         memory_mb=128, function_name="hungry")
    first, second = result.invocations
    assert first.status == "crashed"
    assert first.error_type == "Runtime.OutOfMemory"
    assert "Runtime exited with error: signal: killed" in (first.error_message or "")
    assert first.max_memory_mb is not None and 128 < first.max_memory_mb < 400
    assert second.status == "ok" and second.start == "cold" and second.process == 2
    rows = {row["request_id"]: row for row in stored_rows(tmp_path / "reports.db", "hungry")}
    assert len(rows) == 2
    crashed = rows[first.request_id]
    # Reported by the slot's next process, from the breadcrumb the killed one left.
    assert crashed["status"] == "crashed" and crashed["source"] == "agent"
    assert crashed["report"]["invocation"]["status"] == "crashed"
    assert crashed["platform_max_memory_mb"] == pytest.approx(first.max_memory_mb)
    assert first.reported


def test_the_sandbox_is_frozen_between_invocations(
    run_handler: Any, tmp_path: pathlib.Path
) -> None:
    frozen: list[tuple[int, set[str]]] = []
    lock = threading.Lock()

    def on_event(name: str, info: dict[str, Any]) -> None:
        if name == "frozen":
            pid = info["pid"]
            give_up = time.monotonic() + 2.0
            states = _proc_states(pid)
            while states != {"T"} and time.monotonic() < give_up:
                time.sleep(0.01)
                states = _proc_states(pid)
            with lock:
                frozen.append((pid, states))

    result = run_handler("background.py:handler", times=3, interval_s=0.5, on_event=on_event,
                         function_name="ticker")
    records = result.invocations
    assert [r.status for r in records] == ["ok"] * 3
    assert [r.start for r in records] == ["cold", "warm", "warm"]
    # Frozen after each invocation: every thread of the process stopped ('T').
    assert len(frozen) == 3
    assert all(states == {"T"} for _, states in frozen), frozen
    # The ticker thread (100 ticks a second) did not run during the 0.5 s pauses.
    ticks = [r.payload["ticks"] for r in records]
    assert ticks[2] - ticks[1] < 20, ticks
    # The handler's own extension got every INVOKE and finished its work before each freeze;
    # the agent's extension delivered every report.
    lines = (tmp_path / "extension.log").read_text().splitlines()
    assert len(lines) == 3
    assert result.reports_received == 3 and result.reports_missing == []


@pytest.mark.parametrize(
    ("init_type", "start"),
    [("provisioned-concurrency", "provisioned"), ("snap-start", "restored"),
     ("lambda-managed-instances", "managed")],
)
def test_init_types(run_handler: Any, tmp_path: pathlib.Path, init_type: str,
                    start: str) -> None:
    events: list[str] = []
    result = run_handler("scripted.py:handler", {"script": ["ok"]}, times=2,
                         init_type=init_type, function_name="inits",
                         on_event=lambda name, info: events.append(name))
    first, second = result.invocations
    assert (first.start, second.start) == (start, "warm")
    assert not first.cold_start and not second.cold_start
    assert first.status == second.status == "ok"
    # Initialised ahead of the first invocation; frozen until it, but for managed instances
    # (never frozen).
    if init_type == "lambda-managed-instances":
        assert events[0] == "started" and "frozen" not in events
    else:
        assert events[:3] == ["started", "frozen", "thawed"]
    assert first.init_ms is not None and first.init_ms > 0
    rows = stored_rows(tmp_path / "reports.db", "inits")
    assert [row["init_type"] for row in rows] == [init_type, init_type]
    assert [row["cold_start"] for row in rows] == [0, 0]
    reports = [row["report"]["invocation"] for row in rows]
    if init_type == "snap-start":
        assert first.restore_ms is not None
        assert reports[0].get("since_restore_ms") is not None
        assert reports[1].get("since_restore_ms") is None


def test_init_error_is_the_invocations_failure(run_handler: Any, tmp_path: pathlib.Path
                                               ) -> None:
    result = run_handler("broken_import.py:handler", times=2, function_name="broken")
    for record in result.invocations:
        assert record.status == "error"
        assert record.error_type == "Runtime.ImportModuleError"
        assert "lambdascope_tests_no_such_dependency" in (record.error_message or "")
        assert record.start == "cold"
    assert result.sandboxes_started == 2  # Lambda retries the init with the next invocation
    rows = stored_rows(tmp_path / "reports.db", "broken")
    assert [row["error_type"] for row in rows] == ["Runtime.ImportModuleError"] * 2
    assert [row["source"] for row in rows] == ["platform"] * 2


def test_a_handler_without_the_agent_is_stored_from_the_runners_records(
    run_handler: Any, tmp_path: pathlib.Path
) -> None:
    result = run_handler("plain.py:handler", times=3, containers=2, function_name="plain")
    assert [r.status for r in result.invocations] == ["ok"] * 3
    assert result.reports_received == 0
    rows = stored_rows(tmp_path / "reports.db", "plain")
    assert sorted(row["request_id"] for row in rows) == sorted(
        r.request_id for r in result.invocations)
    assert sorted(row["cold_start"] for row in rows) == [0, 1, 1]
    assert all(row["source"] == "platform" and row["status"] == "ok" for row in rows)

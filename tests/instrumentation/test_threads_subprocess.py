"""Threads and child processes started from a handler belong to its invocation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import lambdascope
from lambdascope.testing import capture_reports, fake_context


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["spans"]}


def test_spans_in_pool_threads_are_parented_where_submitted(validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> list[int]:
        def work(i: int) -> int:
            with lambdascope.span(f"work-{i}"):
                lambdascope.metric("done", 1)
            return i

        with lambdascope.span("fan-out"), ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(work, range(3)))

    with capture_reports() as reports:
        assert handler({}, fake_context()) == [0, 1, 2]
    report = validate_report(reports[0])
    spans = by_name(report)
    for i in range(3):
        assert spans[f"work-{i}"]["parent_span_id"] == spans["fan-out"]["span_id"]
    assert len(report["metrics"]) == 3


def test_spans_in_a_plain_thread_are_parented_where_started() -> None:
    class Worker(threading.Thread):
        def run(self) -> None:  # a subclass overriding run() is covered too
            with lambdascope.span("in-thread"):
                pass

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        with lambdascope.span("outer"):
            t = Worker()
            t.start()
            t.join()

    with capture_reports() as reports:
        handler({}, fake_context())
    spans = by_name(reports[0])
    assert spans["in-thread"]["parent_span_id"] == spans["outer"]["span_id"]


def test_asyncio_tasks_are_parented_where_created() -> None:
    @lambdascope.monitor
    async def handler(event: Any, context: Any) -> None:
        async def task(i: int) -> None:
            with lambdascope.span(f"task-{i}"):
                await asyncio.sleep(0)

        with lambdascope.span("gather"):
            await asyncio.gather(*(task(i) for i in range(3)))

    with capture_reports() as reports:
        asyncio.run(handler({}, fake_context()))
    spans = by_name(reports[0])
    assert {spans[f"task-{i}"]["parent_span_id"] for i in range(3)} == {spans["gather"]["span_id"]}


def test_threads_outside_an_invocation_are_untouched() -> None:
    lambdascope.instrument()
    seen: list[Any] = []
    t = threading.Thread(target=lambda: seen.append(lambdascope.current()))
    t.start()
    t.join()
    assert seen == [None]


def test_subprocess_is_a_span_with_command_and_exit_code(validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> int:
        ok = subprocess.run([sys.executable, "-c", "pass", "--secret-arg=hunter2"], check=True)
        bad = subprocess.run([sys.executable, "-c", "import sys; sys.exit(3)"])
        return ok.returncode + bad.returncode

    with capture_reports() as reports:
        assert handler({}, fake_context()) == 3
    report = validate_report(reports[0])
    procs = [s for s in report["spans"] if s["name"].startswith("subprocess ")]
    assert len(procs) == 2
    name = procs[0]["name"]
    assert name == "subprocess " + sys.executable.rsplit("/", 1)[-1]
    assert procs[0]["attributes"]["process.exit.code"] == 0 and procs[0]["status"] == "ok"
    assert procs[1]["attributes"]["process.exit.code"] == 3 and procs[1]["status"] == "error"
    assert "hunter2" not in str(report)  # arguments are not recorded


def test_subprocess_that_cannot_start_raises_as_before() -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        subprocess.run(["/nonexistent/tool"])

    with capture_reports() as reports, pytest.raises(FileNotFoundError):
        handler({}, fake_context())
    (span,) = [s for s in reports[0]["spans"] if s["name"] == "subprocess tool"]
    assert span["status"] == "error"


def test_uninstrument_restores_threading_and_subprocess() -> None:
    from concurrent.futures import thread as cf_thread

    originals = {
        (threading.Thread, "start"): threading.Thread.__dict__["start"],
        (threading.Thread, "_bootstrap_inner"): threading.Thread.__dict__["_bootstrap_inner"],
        (cf_thread.ThreadPoolExecutor, "submit"): cf_thread.ThreadPoolExecutor.__dict__["submit"],
        (subprocess.Popen, "__init__"): subprocess.Popen.__dict__["__init__"],
        (subprocess.Popen, "wait"): subprocess.Popen.__dict__["wait"],
    }
    lambdascope.instrument()
    assert threading.Thread.__dict__["start"] is not originals[(threading.Thread, "start")]
    lambdascope.uninstrument()
    for (owner, attr), original in originals.items():
        assert owner.__dict__[attr] is original, attr

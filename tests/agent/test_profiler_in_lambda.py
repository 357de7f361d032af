"""The sampling profiler under the real runtime client (``awslambdaric``) and the Runtime API
emulator: ``handlers/prof_app.py`` in its own process, reports read back from the ``file``
exporter.

What the profile must show (a known hot function on top, an ``async def`` handler's awaiting
line), when it is taken (rate, decorator, on demand for one request only), that with profiling
off no sampler thread exists and nothing is imported for it, that sizes stay bounded, and that a
failing profiler never changes the handler's answer.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import time
from typing import Any

import pytest

from lambdascope.runner.runtime_api import Sandbox

HANDLERS = pathlib.Path(__file__).resolve().parent / "handlers"
EVENTS = pathlib.Path(__file__).resolve().parents[1] / "events"
INTERNAL_ERROR = "lambdascope: internal error"
HANDLER_FILE = "prof_app.py"
PROFILER_THREAD = "lambdascope-profiler"


def event_file(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def invoke_ok(lam: Any, event: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    result = lam.invoke(event, timeout_s=timeout_s)
    assert result.ok, (result.status, result.payload, lam.sandbox.output)
    return result.payload  # type: ignore[no-any-return]


def top_stack(profile: dict[str, Any]) -> dict[str, Any]:
    return profile["stacks"][0]


def check_profile_shape(profile: dict[str, Any]) -> None:
    """What every profile must be: bounded, counts adding up, no agent frame, short paths."""
    assert profile["interval_ms"] == 10
    stacks = profile["stacks"]
    assert len(stacks) <= 201
    assert sum(s["count"] for s in stacks) == profile["samples"]
    counts = [s["count"] for s in stacks]
    assert counts == sorted(counts, reverse=True)
    assert len(json.dumps(profile, ensure_ascii=False).encode()) <= 64 * 1024
    for stack in stacks:
        assert 1 <= len(stack["frames"]) <= 65
        for frame in stack["frames"]:
            assert "lambdascope/" not in frame, frame  # the agent's own frames are left out
            assert not frame.startswith("/"), frame  # paths are relative


def frames_of(profile: dict[str, Any], needle: str) -> int:
    """Samples whose stack has a frame containing ``needle``."""
    return sum(s["count"] for s in profile["stacks"] if any(needle in f for f in s["frames"]))


# -- what the profile shows --------------------------------------------------------------------


def test_the_hot_function_is_on_top_of_the_profile(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes("prof_app.handler", env={"LAMBDASCOPE_PROFILE_RATE": "1"})
    payload = invoke_ok(lam, {"action": "hot", "ms": 400})
    (report,) = lam.reports(1)
    validate_report(report)
    profile = report["profile"]
    check_profile_shape(profile)
    assert profile["mode"] == "rate"
    # About one sample per 10 ms of the ~400 ms invocation (some ticks can be late on a busy
    # host: those are counted as dropped, never double counted).
    assert 20 <= profile["samples"] + profile["dropped_samples"] <= 60, profile
    assert profile["duration_ms"] >= 380
    top = top_stack(profile)
    leaf = top["frames"][-1]
    assert leaf.startswith(f"{HANDLER_FILE}:burn_cpu:"), top
    assert top["frames"][0].startswith(f"{HANDLER_FILE}:handler:"), top  # root first
    assert top["count"] > profile["samples"] / 2, profile
    assert frames_of(profile, ":burn_cpu:") >= 0.8 * profile["samples"]
    # During the invocation the sampler thread existed; after the report it is gone.
    assert PROFILER_THREAD in payload["seen"]["threads"]
    after = invoke_ok(lam, {"action": "noop"})
    assert after["seen"]["threads"].count(PROFILER_THREAD) <= 1
    lam.reports(2)


def test_time_waiting_for_io_goes_to_the_waiting_line(sandboxes: Any) -> None:
    lam = sandboxes("prof_app.handler", env={"LAMBDASCOPE_PROFILE_RATE": "1"})
    invoke_ok(lam, {"action": "io", "ms": 300})
    (report,) = lam.reports(1)
    profile = report["profile"]
    check_profile_shape(profile)
    top = top_stack(profile)
    # select() is C: the innermost Python frame is the line that called it.
    assert top["frames"][-1].startswith(f"{HANDLER_FILE}:wait_io:"), top
    assert top["count"] > profile["samples"] / 2


def test_an_async_handler_is_attributed_to_its_awaiting_coroutine(
    sandboxes: Any, validate_report: Any
) -> None:
    lam = sandboxes("prof_app.run_async", env={"LAMBDASCOPE_PROFILE_RATE": "1"})
    invoke_ok(lam, {"io_ms": 300, "cpu_ms": 150})
    (report,) = lam.reports(1)
    validate_report(report)
    profile = report["profile"]
    check_profile_shape(profile)
    source = (pathlib.Path(__file__).parent / "handlers" / HANDLER_FILE).read_text().splitlines()
    await_line = next(i for i, text in enumerate(source, 1) if "AWAIT-LINE" in text)
    waiting = f"{HANDLER_FILE}:wait_async_io:{await_line}"
    # The suspended coroutine chain: handler -> wait_async_io at its await, then asyncio.sleep.
    io_samples = frames_of(profile, waiting)
    assert io_samples >= 0.4 * profile["samples"], profile
    top = top_stack(profile)
    assert top["frames"][0].startswith(f"{HANDLER_FILE}:async_handler:"), top
    assert waiting in top["frames"], top
    # The CPU part runs inside the handler's coroutine, on the thread's stack.
    assert frames_of(profile, ":burn_cpu:") >= 3
    # The event loop's own frames are left out of every stack.
    for stack in profile["stacks"]:
        for frame in stack["frames"]:
            assert not frame.startswith(("asyncio/base_events.py", "asyncio/runners.py")), stack
            assert not frame.startswith("selectors.py"), stack


def test_deep_recursion_is_cut_to_the_depth_bound(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes("prof_app.handler", env={"LAMBDASCOPE_PROFILE_RATE": "1"})
    invoke_ok(lam, {"action": "deep", "depth": 400, "ms": 200})
    (report,) = lam.reports(1)
    validate_report(report)
    profile = report["profile"]
    check_profile_shape(profile)
    top = top_stack(profile)
    frames = top["frames"]
    assert len(frames) == 65
    assert frames[0].startswith(f"{HANDLER_FILE}:handler:")
    assert frames[8].startswith("(… ") and frames[8].endswith(" frames)"), frames[8]
    assert frames[-1].startswith(f"{HANDLER_FILE}:burn_cpu:")
    assert profile["truncated_stacks"] >= top["count"]


def test_thousands_of_distinct_stacks_stay_bounded(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes(
        "prof_app.handler",
        env={"LAMBDASCOPE_PROFILE_RATE": "1", "LAMBDASCOPE_PROFILE_INTERVAL_MS": "1"},
    )
    invoke_ok(lam, {"action": "many", "n": 1500, "ms": 1.5}, timeout_s=30.0)
    (report,) = lam.reports(1)
    validate_report(report)
    profile = report["profile"]
    assert profile["interval_ms"] == 1
    stacks = profile["stacks"]
    assert len(stacks) <= 201
    (other,) = [s for s in stacks if s["frames"] == ["(other stacks)"]]
    assert other["count"] > 0
    assert sum(s["count"] for s in stacks) == profile["samples"]
    assert len(json.dumps(profile, ensure_ascii=False).encode()) <= 64 * 1024
    assert len(json.dumps(report).encode()) <= 256 * 1024


# -- when a profile is taken --------------------------------------------------------------------


def test_profiling_off_never_starts_a_sampler_nor_imports_the_profiler(sandboxes: Any) -> None:
    """Rate 0 (the default): no invocation imports ``lambdascope._profiler`` and no sampler
    thread ever exists, whatever the handler does."""
    lam = sandboxes("prof_app.handler", env={"LAMBDASCOPE_PROFILE_RATE": "0"})
    events = [
        {"action": "hot", "ms": 50},
        {"action": "noop"},
        {"action": "io", "ms": 30},
        {"lambdascope-profile": False},
    ]
    for event in events:
        seen = invoke_ok(lam, event)["seen"]
        assert seen["profiler_imported"] is False
        assert PROFILER_THREAD not in seen["threads"]
    for report in lam.reports(len(events)):
        assert "profile" not in report


def test_an_event_key_profiles_that_invocation_only(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes("prof_app.handler")  # LAMBDASCOPE_PROFILE_RATE unset: 0
    before = invoke_ok(lam, {"action": "hot", "ms": 50})
    asked = invoke_ok(lam, {"action": "hot", "ms": 200, "lambdascope-profile": True})
    after = [invoke_ok(lam, {"action": "hot", "ms": 50}) for _ in range(3)]
    reports = lam.reports(5)
    assert before["seen"]["profiler_imported"] is False
    assert PROFILER_THREAD in asked["seen"]["threads"]
    for payload in after:
        assert PROFILER_THREAD not in payload["seen"]["threads"]
    assert "profile" not in reports[0]
    profile = validate_report(reports[1])["profile"]
    assert profile["mode"] == "event"
    assert top_stack(profile)["frames"][-1].startswith(f"{HANDLER_FILE}:burn_cpu:")
    assert all("profile" not in r for r in reports[2:])


@pytest.mark.parametrize(
    ("event_name", "field", "name"),
    [
        ("apigw_rest.json", "headers", "X-LambdaScope-Profile"),  # REST APIs keep the case
        ("apigw_rest.json", "multiValueHeaders", "X-Lambdascope-Profile"),
        ("apigw_http.json", "headers", "x-lambdascope-profile"),
        ("alb.json", "headers", "x-lambdascope-profile"),
        ("alb.json", "multiValueHeaders", "x-lambdascope-profile"),
        ("function_url.json", "headers", "x-lambdascope-profile"),
    ],
)
def test_an_http_header_profiles_that_request_only(
    sandboxes: Any, validate_report: Any, event_name: str, field: str, name: str
) -> None:
    lam = sandboxes("prof_app.handler")
    plain = event_file(event_name)
    plain["action"] = "hot"
    plain["ms"] = 150
    asked = copy.deepcopy(plain)
    headers = asked.setdefault(field, {}) or {}
    asked[field] = headers
    headers[name] = ["1"] if field == "multiValueHeaders" else "1"
    invoke_ok(lam, plain)
    invoke_ok(lam, asked)
    invoke_ok(lam, plain)
    first, profiled, last = lam.reports(3)
    assert "profile" not in first and "profile" not in last
    profile = validate_report(profiled)["profile"]
    assert profile["mode"] == "header"
    assert frames_of(profile, ":burn_cpu:") > profile["samples"] / 2


def test_a_header_that_does_not_say_yes_profiles_nothing(sandboxes: Any) -> None:
    lam = sandboxes("prof_app.handler")
    event = event_file("apigw_http.json")
    event["headers"]["x-lambdascope-profile"] = "0"
    not_http = {"headers": {"x-lambdascope-profile": "1"}, "action": "noop"}  # no requestContext
    invoke_ok(lam, event)
    invoke_ok(lam, not_http)
    assert all("profile" not in r for r in lam.reports(2))


def test_monitor_profile_true_profiles_every_invocation(
    sandboxes: Any, validate_report: Any
) -> None:
    lam = sandboxes("prof_app.always")
    for _ in range(3):
        invoke_ok(lam, {"action": "hot", "ms": 60})
    for report in lam.reports(3):
        profile = validate_report(report)["profile"]
        assert profile["mode"] == "decorator"
        assert profile["samples"] >= 1


# -- a failing profiler never reaches the function ----------------------------------------------


class FaultySandbox:
    """A sandbox whose agent is expected to log its own failures (the ``sandboxes`` fixture
    fails a test on any): ``file`` exporter, reports read back from the file."""

    def __init__(self, directory: pathlib.Path, handler: str, env: dict[str, str]) -> None:
        self.reports_path = directory / "reports.jsonl"
        full: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAMBDASCOPE_")}
        full.update(
            {
                "LAMBDASCOPE_EXPORTERS": "file",
                "LAMBDASCOPE_FILE": str(self.reports_path),
                "LAMBDASCOPE_SPOOL_DIR": str(directory / "spool"),
                **env,
            }
        )
        self.sandbox = Sandbox(handler, HANDLERS, env=full, function_name="lambdascope-test")
        self.sandbox.start()
        assert self.sandbox.wait_ready(20.0), self.sandbox.output

    def invoke(self, event: Any, timeout_s: float = 10.0) -> Any:
        return self.sandbox.invoke(event, timeout_s)

    def reports(self, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        give_up = time.monotonic() + timeout_s
        lines: list[str] = []
        while time.monotonic() < give_up:
            if self.reports_path.exists():
                text = self.reports_path.read_text()
                lines = [line for line in text.splitlines() if line.strip()]
                if len(lines) >= count and text.endswith("\n"):
                    break
            time.sleep(0.01)
        assert len(lines) == count, self.sandbox.output
        return [json.loads(line) for line in lines]


@pytest.mark.parametrize("fault", ["sample", "start", "result"])
def test_a_failing_profiler_leaves_the_answer_and_the_report(
    tmp_path: pathlib.Path, validate_report: Any, fault: str
) -> None:
    lam = FaultySandbox(
        tmp_path, "prof_app.handler", {"LAMBDASCOPE_PROFILE_RATE": "1", "PROF_FAULT": fault}
    )
    try:
        payloads = [invoke_ok(lam, {"action": "hot", "ms": 80}) for _ in range(3)]
        reports = lam.reports(3)
    finally:
        lam.sandbox.stop()
    for payload in payloads:
        assert set(payload) == {"seen"}  # the handler's own answer, unchanged
    for report in reports:
        validate_report(report)
        assert report["invocation"]["status"] == "ok"
        if fault == "sample":  # the samples before the failure (none): an empty profile
            assert report["profile"]["samples"] == 0
        else:
            assert "profile" not in report
    output = lam.sandbox.stdout + lam.sandbox.stderr
    assert output.count(INTERNAL_ERROR) == 1, output  # logged once per site
    assert "injected profiler fault" in output

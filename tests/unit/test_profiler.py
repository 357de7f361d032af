"""The sampling profiler in process: when it runs, what a sample records, how the stacks are
written and bounded, and that its failures never reach the handler."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import lambdascope
from lambdascope import _monitor, _profiler
from lambdascope._config import Config
from lambdascope._profiler import MAX_BYTES, OTHER, Profiler, _Formatter
from lambdascope.testing import capture_reports, fake_context

HERE = os.path.basename(__file__)


def burn(ms: float) -> int:
    end = time.perf_counter() + ms / 1000.0
    total = 0
    while time.perf_counter() < end:
        for i in range(100):
            total += i
    return total


def profile_of(report: dict[str, Any]) -> dict[str, Any]:
    profile = report["profile"]
    assert sum(s["count"] for s in profile["stacks"]) == profile["samples"]
    assert len(json.dumps(profile, ensure_ascii=False).encode()) <= MAX_BYTES
    return profile  # type: ignore[no-any-return]


# -- the decision -------------------------------------------------------------------------------


def rest_event(headers: dict[str, Any] | None = None, multi: dict[str, Any] | None = None) -> Any:
    event: dict[str, Any] = {"httpMethod": "GET", "requestContext": {"resourcePath": "/x"}}
    if headers is not None:
        event["headers"] = headers
    if multi is not None:
        event["multiValueHeaders"] = multi
    return event


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"lambdascope-profile": True}, "event"),
        ({"lambdascope-profile": "true"}, "event"),
        ({"lambdascope-profile": 1}, "event"),
        ({"lambdascope-profile": False}, None),
        ({"lambdascope-profile": "no"}, None),
        ({"lambdascope-profile": {"x": 1}}, None),
        (rest_event({"X-LambdaScope-Profile": "1"}), "header"),
        (rest_event({"x-lambdascope-profile": " TRUE "}), "header"),
        (rest_event({"x-lambdascope-profile": "0"}), None),
        (rest_event({"Accept": "*/*"}), None),
        (rest_event(None, {"X-Lambdascope-Profile": ["0", "1"]}), "header"),
        (rest_event(None, {"x-lambdascope-profile": []}), None),
        (rest_event({}, None), None),
        ({"version": "2.0", "requestContext": {"http": {}}, "headers": {"x-lambdascope-profile":
                                                                          "1"}}, "header"),
        ({"headers": {"x-lambdascope-profile": "1"}}, None),  # not an HTTP trigger
        ({"requestContext": {}, "headers": "x-lambdascope-profile: 1"}, None),
        ({"requestContext": {}, "headers": {1: "1", "x-lambdascope-profilE": 1}}, None),
    ],
)
def test_what_asks_for_a_profile(event: dict[str, Any], expected: str | None) -> None:
    assert _monitor._asks_profile(event) == expected


def test_the_decorator_option_is_typed_and_only_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASCOPE_PROFILE", "true")  # not a variable: only the decorator says
    assert Config().profile is False
    assert Config({"profile": True}).profile is True
    assert Config({"profile": True}).key == Config().key  # one pipeline for both

    @lambdascope.monitor(profile=True)
    def handler(event: Any, context: Any) -> str:
        return "ok"

    assert handler.__lambdascope_config__.profile is True  # type: ignore[attr-defined]


def test_rate_draws_a_share_of_invocations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASCOPE_PROFILE_RATE", "0.5")

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        return None

    with capture_reports() as reports:
        for _ in range(60):
            handler({}, fake_context())
    profiled = [r for r in reports if "profile" in r]
    assert 10 <= len(profiled) <= 50
    assert {r["profile"]["mode"] for r in profiled} == {"rate"}


def test_profiling_off_imports_nothing_and_starts_no_thread(tmp_path: Any) -> None:
    """A fresh process (this one has imported the profiler for other tests): with the default
    rate of 0, ``import lambdascope`` and invocations never import ``lambdascope._profiler`` and
    never start a sampler thread; an event asking for a profile then does, for itself only."""
    script = r"""
import json, os, sys, threading, time
import lambdascope
from lambdascope.testing import capture_reports, fake_context
threads = []
tasks = []

@lambdascope.monitor
def handler(event, context):
    end = time.perf_counter() + 0.03
    while time.perf_counter() < end:
        pass
    threads.append(sorted(t.name for t in threading.enumerate()))
    tasks.append(len(os.listdir("/proc/self/task")))  # every OS thread, however started
    return "ok"

imported = ["lambdascope._profiler" in sys.modules]
with capture_reports() as reports:
    for _ in range(20):
        handler({"k": 1}, fake_context())
        imported.append("lambdascope._profiler" in sys.modules)
    handler({"lambdascope-profile": True}, fake_context())
    handler({}, fake_context())
print(json.dumps({"imported": imported, "threads": threads, "tasks": tasks,
                  "profiled": ["profile" in r for r in reports],
                  "after": "lambdascope._profiler" in sys.modules}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDASCOPE_")}
    env["LAMBDASCOPE_SPOOL_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["imported"] == [False] * 21
    for names in seen["threads"][:20]:
        assert "lambdascope-profiler" not in names
    assert "lambdascope-profiler" in seen["threads"][20]
    assert "lambdascope-profiler" not in seen["threads"][21]
    # No thread of any kind came and went while profiling was off; one more while profiled.
    assert len(set(seen["tasks"][1:20])) == 1
    assert seen["tasks"][20] == seen["tasks"][19] + 1
    assert seen["tasks"][21] == seen["tasks"][19]
    assert seen["profiled"] == [False] * 20 + [True, False]
    assert seen["after"] is True


# -- what a profile shows ---------------------------------------------------------------------


def test_a_hot_function_is_on_top_and_the_sampler_ends_with_the_invocation(
    validate_report: Any,
) -> None:
    @lambdascope.monitor(profile=True)
    def handler(event: Any, context: Any) -> str:
        burn(250)
        return "ok"

    with capture_reports() as reports:
        assert handler({}, fake_context()) == "ok"
    profile = profile_of(validate_report(reports[0]))
    assert profile["mode"] == "decorator"
    top = profile["stacks"][0]
    assert top["frames"][0].startswith(f"{HERE}:test_a_hot_function_is_on_top")
    assert top["frames"][-1].startswith(f"{HERE}:burn:")
    assert top["count"] > profile["samples"] / 2
    assert 10 <= profile["samples"] + profile["dropped_samples"] <= 40
    # No sampler is left behind once the report is built.
    time.sleep(0.05)
    assert not any(t.name == "lambdascope-profiler" for t in threading.enumerate())


def test_stop_does_not_wait_for_the_sampler_and_no_sample_follows_it() -> None:
    me = threading.get_ident()
    profiler = Profiler("rate", 5, me, sys._getframe())
    profiler.start()
    burn(60)
    t0 = time.perf_counter()
    profiler.stop()
    stop_s = time.perf_counter() - t0
    samples = profiler.samples
    burn(60)
    result = profiler.result()
    assert stop_s < 0.005  # a lock release, not a join
    assert profiler.samples == samples  # nothing sampled after the stop
    assert result["samples"] >= 1
    assert result["duration_ms"] < 200


def test_an_async_handler_waiting_is_attributed_to_the_awaiting_line(
    validate_report: Any,
) -> None:
    async def wait_here() -> None:
        await asyncio.sleep(0.3)

    async def crunch() -> None:
        burn(150)

    @lambdascope.monitor(profile=True)
    async def handler(event: Any, context: Any) -> str:
        await wait_here()
        await crunch()
        return "ok"

    with capture_reports() as reports:
        assert asyncio.run(handler({}, fake_context())) == "ok"
    profile = profile_of(validate_report(reports[0]))
    waiting = [s for s in profile["stacks"] if any(".wait_here:" in f for f in s["frames"])]
    crunching = [s for s in profile["stacks"] if any(":burn:" in f for f in s["frames"])]
    assert sum(s["count"] for s in waiting) >= 8
    assert sum(s["count"] for s in crunching) >= 3
    for stack in waiting:
        assert stack["frames"][0].startswith(f"{HERE}:test_an_async_handler")
        assert not any(f.startswith(("asyncio/base_events.py", "selectors.py"))
                       for f in stack["frames"]), stack


def test_another_task_running_meanwhile_goes_under_the_awaiting_line(
    validate_report: Any,
) -> None:
    async def busy_child() -> None:
        await asyncio.sleep(0)
        burn(300)

    @lambdascope.monitor(profile=True)
    async def handler(event: Any, context: Any) -> str:
        await asyncio.gather(busy_child())
        return "ok"

    with capture_reports() as reports:
        asyncio.run(handler({}, fake_context()))
    profile = profile_of(validate_report(reports[0]))
    assert profile["stacks"], profile
    top = profile["stacks"][0]
    assert top["frames"][0].startswith(f"{HERE}:test_another_task_running_meanwhile")
    assert any(".busy_child:" in f for f in top["frames"]), top
    assert top["frames"][-1].startswith(f"{HERE}:burn:"), top


# -- frames and bounds --------------------------------------------------------------------------


def test_paths_are_short_and_the_agents_frames_left_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    site = str(tmp_path.parent / "site-packages-x")
    monkeypatch.setattr(sys, "path", [site, *sys.path])
    agent_code = _monitor.begin.__code__
    fmt = _Formatter({id(agent_code): agent_code})
    assert fmt.path(str(tmp_path / "app" / "handler.py")) == os.path.join("app", "handler.py")
    assert fmt.path(os.path.join(site, "botocore", "endpoint.py")) == os.path.join(
        "botocore", "endpoint.py"
    )
    assert fmt.path("/nowhere/known/mod.py") == "mod.py"
    assert fmt.path("<frozen importlib._bootstrap>") == "<frozen importlib._bootstrap>"
    assert fmt.path(_monitor.__file__) is None
    assert fmt.frames((id(agent_code), 3)) == ()  # only the agent's: no stack


def synthetic_code(k: int, name_len: int = 10) -> Any:
    name = f"f{k}_" + "x" * name_len
    return compile(f"def {name}():\n    pass\n", f"/task/gen_{k}.py", "exec").co_consts[0]


def test_thousands_of_distinct_stacks_are_merged_and_the_size_bounded() -> None:
    profiler = Profiler("rate", 10, 0)
    codes = [synthetic_code(k, 200) for k in range(5000)]
    profiler.code_of.update((id(code), code) for code in codes)
    for k in range(len(codes)):
        key: tuple[Any, ...] = ()
        for depth in range(30):  # 30 frames of long names: far past 64 KB for 200 stacks
            key += (id(codes[(k + depth) % len(codes)]), depth + 1)
        profiler.counts[key] = 1 + (k % 7)
        profiler.samples += 1 + (k % 7)
    result = profiler.result()
    stacks = result["stacks"]
    assert len(stacks) <= 201
    assert len(json.dumps(result, ensure_ascii=False).encode()) <= MAX_BYTES
    (other,) = [s for s in stacks if s["frames"] == [OTHER]]
    assert sum(s["count"] for s in stacks) == result["samples"] == profiler.samples
    kept = [s for s in stacks if s is not other]
    assert min(s["count"] for s in kept) >= max(1, min(s["count"] for s in kept))
    assert [s["count"] for s in stacks] == sorted((s["count"] for s in stacks), reverse=True)
    assert other["count"] > 0


def test_fewer_than_200_small_stacks_are_all_kept() -> None:
    profiler = Profiler("rate", 10, 0)
    for k in range(150):
        code = synthetic_code(k)
        profiler.code_of[id(code)] = code
        profiler.counts[(id(code), 2)] = k + 1
        profiler.samples += k + 1
    result = profiler.result()
    assert len(result["stacks"]) == 150
    assert result["stacks"][0]["count"] == 150
    assert result["stacks"][0]["frames"] == ["gen_149.py:f149_xxxxxxxxxx:2"]


def test_distinct_stacks_while_sampling_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_profiler, "MAX_KEYS", 50)

    def fn_for(k: int) -> Any:
        namespace: dict[str, Any] = {"burn": burn}
        exec(compile(f"def g{k}():\n    burn(3)\n", f"g{k}.py", "exec"), namespace)
        return namespace[f"g{k}"]

    functions = [fn_for(k) for k in range(300)]

    @lambdascope.monitor(profile=True, profile_interval_ms=1)
    def handler(event: Any, context: Any) -> None:
        for fn in functions:
            fn()

    with capture_reports() as reports:
        handler({}, fake_context())
    profile = profile_of(reports[0])
    assert len(profile["stacks"]) <= 51
    assert any(s["frames"] == [OTHER] for s in profile["stacks"])


def test_deep_recursion_keeps_the_root_and_the_leaf() -> None:
    def down(n: int) -> int:
        return burn(150) if n == 0 else down(n - 1)

    @lambdascope.monitor(profile=True)
    def handler(event: Any, context: Any) -> int:
        return down(300)

    with capture_reports() as reports:
        handler({}, fake_context())
    profile = profile_of(reports[0])
    frames = profile["stacks"][0]["frames"]
    assert len(frames) == 65
    assert frames[0].startswith(f"{HERE}:test_deep_recursion")
    assert all(".down:" in f for f in frames[1:8])
    assert frames[8] == "(… 239 frames)"  # 303 frames (handler, down x301, burn) - 64
    assert frames[-1].startswith(f"{HERE}:burn:")
    assert profile["truncated_stacks"] >= profile["stacks"][0]["count"]


def test_a_stack_too_deep_to_walk_keeps_its_innermost_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_profiler, "MAX_WALK", 100)

    def down(n: int) -> int:
        return burn(100) if n == 0 else down(n - 1)

    @lambdascope.monitor(profile=True)
    def handler(event: Any, context: Any) -> int:
        return down(200)

    with capture_reports() as reports:
        handler({}, fake_context())
    frames = profile_of(reports[0])["stacks"][0]["frames"]
    assert frames[0] == "(… more frames)"
    assert len(frames) == 57
    assert frames[-1].startswith(f"{HERE}:burn:")


# -- failures never reach the handler ------------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected")


@pytest.mark.faults
@pytest.mark.parametrize("part", ["start", "_sample", "result"])
def test_a_failing_profiler_changes_nothing_for_the_handler(
    monkeypatch: pytest.MonkeyPatch, internal_errors: list[Any], validate_report: Any, part: str
) -> None:
    monkeypatch.setattr(Profiler, part, _boom)
    marker = object()

    @lambdascope.monitor(profile=True)
    def handler(event: Any, context: Any) -> object:
        burn(40)
        return marker

    with capture_reports() as reports:
        assert handler({}, fake_context()) is marker
    report = validate_report(reports[0])
    assert report["invocation"]["status"] == "ok"
    sites = {site for site, _ in internal_errors}
    expected = {"start": "profiler.start", "_sample": "profiler.sample", "result": "profile.report"}
    assert sites == {expected[part]}
    if part == "_sample":
        assert report["profile"]["samples"] == 0
    else:
        assert "profile" not in report


@pytest.mark.faults
def test_a_handler_exception_is_the_same_object_when_profiled() -> None:
    error = ValueError("mine")

    @lambdascope.monitor(profile=True)
    def handler(event: Any, context: Any) -> None:
        burn(30)
        raise error

    with capture_reports() as reports, pytest.raises(ValueError) as caught:
        handler({}, fake_context())
    assert caught.value is error
    assert reports[0]["invocation"]["status"] == "error"
    assert reports[0]["profile"]["samples"] >= 1


def test_a_timeout_report_carries_the_profile_so_far(validate_report: Any) -> None:
    @lambdascope.monitor(profile=True, timeout_warning_ms=300)
    def handler(event: Any, context: Any) -> str:
        burn(500)
        return "ok"

    with capture_reports() as reports:
        handler({}, fake_context(timeout_s=0.6))
    timeout = next(r for r in reports if r["invocation"]["status"] == "timeout")
    final = next(r for r in reports if r["invocation"]["status"] == "ok")
    snapshot = validate_report(timeout)["profile"]
    assert 1 <= snapshot["samples"] < final["profile"]["samples"]
    assert snapshot["stacks"][0]["frames"][-1].startswith(f"{HERE}:burn:")

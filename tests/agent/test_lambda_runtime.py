"""Monitored handlers under the real ``awslambdaric`` runtime interface client.

Each sandbox is one ``python -m awslambdaric`` process talking to the local Runtime API emulator
(:mod:`lambdascope.runner.runtime_api`) exactly as it talks to Lambda: the agent sees a real
``LambdaContext``, real deadlines, real init types and the real SnapStart hooks. Reports come
back through the ``file`` exporter.

The proactive-initialisation test needs a sandbox that idled for more than 10 s: its sandbox is
started with the module and the test runs last, so the idle time overlaps the other tests.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import queue
import re
import threading
import time
from typing import Any

import pytest

from lambdascope.runner.runtime_api import RuntimeAPI, RuntimeInitError

HANDLER_FILE = str(pathlib.Path(__file__).resolve().parent / "handlers" / "monitored.py")
RAISE_LINE = next(
    n
    for n, line in enumerate(pathlib.Path(HANDLER_FILE).read_text().splitlines(), 1)
    if "# RAISE-HERE" in line
)
TRACE_HEADER = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=1$")

PROACTIVE_TEST = "test_proactive_init_after_idle_sandbox"
PROACTIVE_IDLE_S = 10.5  # Lambda's threshold is 10 s between the end of init and the invoke


def metric_names(report: dict[str, Any]) -> list[str]:
    return [m["name"] for m in report["metrics"]]


@pytest.fixture(scope="module", autouse=True)
def _start_idle_sandbox_early(request: pytest.FixtureRequest) -> None:
    """Start the proactive-init test's sandbox as soon as this module starts (when that test is
    selected), so that its > 10 s idle period runs while the other tests do."""
    if any(item.name == PROACTIVE_TEST for item in request.session.items):
        request.getfixturevalue("idle_lambda")


# -- cold and warm -------------------------------------------------------------------------


def test_first_invocation_is_cold_then_warm(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes()
    started_at = lam.sandbox.started_at
    ready_at = lam.api.ready_at
    results = [
        lam.invoke({}, timeout_s=3.0),
        lam.invoke({}, timeout_s=7.5, tenant_id="tenant-42"),
        lam.invoke({}, timeout_s=3.0),
    ]
    assert [r.status for r in results] == ["ok", "ok", "ok"], lam.sandbox.output
    reports = lam.reports(3)
    for report in reports:
        validate_report(report)

    # Request ids are the emulator's, in order.
    assert [r["invocation"]["request_id"] for r in reports] == [r.request_id for r in results]

    cold, warm1, warm2 = (r["invocation"] for r in reports)
    assert cold["cold_start"] is True
    assert cold["init_type"] == "on-demand"
    assert cold["proactive_init"] is False
    assert cold["since_restore_ms"] is None
    # Init ran from the process start to the first invocation: at least until the runtime
    # first asked for an invocation, at most until this invocation started.
    init_ms = cold["init_duration_ms"]
    assert init_ms > 0
    assert init_ms >= (ready_at - started_at) * 1000.0 - 50.0
    assert init_ms <= cold["start_ms"] - started_at * 1000.0 + 20.0
    assert init_ms < 10_000.0
    assert reports[0]["agent"]["overhead"]["init_ms"] is not None

    for inv in (warm1, warm2):
        assert inv["cold_start"] is False
        assert inv["init_duration_ms"] is None
        assert inv["proactive_init"] is False
        assert inv["init_type"] == "on-demand"
    assert reports[1]["agent"]["overhead"]["init_ms"] is None

    # timeout_ms is what the invocation had left when it started: just under the deadline.
    for inv, result, budget_ms in zip((cold, warm1, warm2), results, (3000, 7500, 3000)):
        assert budget_ms - 250 <= inv["timeout_ms"] <= budget_ms
        assert result.deadline_ms is not None
        assert inv["timeout_ms"] == pytest.approx(result.deadline_ms - inv["start_ms"], abs=5)

    assert warm1["tenant_id"] == "tenant-42"
    assert cold["tenant_id"] is None

    # The function, from the environment Lambda sets and the context of each invocation.
    env = lam.sandbox.env
    name, region = env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_REGION"]
    for report in reports:
        function = report["function"]
        assert function["name"] == name
        assert function["version"] == env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
        assert function["arn"] == lam.api.function_arn
        assert function["arn"] == f"arn:aws:lambda:{region}:123456789012:function:{name}"
        assert function["region"] == region
        assert function["memory_limit_mb"] == int(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        assert function["log_group"] == env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
        assert function["log_stream"] == env["AWS_LAMBDA_LOG_STREAM_NAME"]
        assert function["service"] == name
        assert function["architecture"] in ("x86_64", "arm64")


def test_handler_error_reaches_runtime_and_report(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes()
    failed = lam.invoke({"action": "raise", "message": "order 7 is broken"})
    after = lam.invoke({})

    # awslambdaric posted the error to /invocation/{id}/error with the exception's type.
    assert failed.status == "error"
    assert failed.error_type == "ValueError"
    assert failed.payload["errorType"] == "ValueError"
    assert failed.payload["errorMessage"] == "order 7 is broken"
    assert after.status == "ok"

    error_report, after_report = lam.reports(2)
    validate_report(error_report)
    validate_report(after_report)
    inv = error_report["invocation"]
    assert inv["request_id"] == failed.request_id
    assert inv["status"] == "error"
    error = error_report["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "order 7 is broken"
    assert error["stack"], error
    last = error["stack"][-1]
    assert last == {"file": HANDLER_FILE, "line": RAISE_LINE, "function": "fail"}
    # Outermost call first: the handler, then the function that raised.
    assert error["stack"][-2]["function"] == "handler"
    assert error["stack"][-2]["file"] == HANDLER_FILE
    root = error_report["spans"][0]
    assert root["status"] == "error"

    # The cold-start flag was cleared even though the first invocation raised.
    assert after_report["invocation"]["cold_start"] is False
    assert after_report["invocation"]["status"] == "ok"
    assert after_report["error"] is None


def test_first_invocation_that_raises_is_still_cold(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes()
    first = lam.invoke({"action": "raise"})
    second = lam.invoke({"action": "raise"})
    assert (first.status, second.status) == ("error", "error")
    one, two = lam.reports(2)
    validate_report(one)
    validate_report(two)
    assert one["invocation"]["cold_start"] is True
    assert one["invocation"]["init_duration_ms"] > 0
    assert one["invocation"]["status"] == "error"
    assert two["invocation"]["cold_start"] is False
    assert two["invocation"]["init_duration_ms"] is None


# -- init types ------------------------------------------------------------------------------


def test_provisioned_concurrency_is_not_cold(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes(init_type="provisioned-concurrency")
    assert lam.invoke({}).ok
    assert lam.invoke({}).ok
    first, second = lam.reports(2)
    validate_report(first)
    validate_report(second)
    inv = first["invocation"]
    assert inv["init_type"] == "provisioned-concurrency"
    assert inv["cold_start"] is False
    assert inv["proactive_init"] is False
    assert inv["init_duration_ms"] is not None and inv["init_duration_ms"] > 0
    assert second["invocation"]["cold_start"] is False
    assert second["invocation"]["init_duration_ms"] is None


def test_provisioned_concurrency_init_duration_excludes_idle_time(
    sandboxes: Any, validate_report: Any
) -> None:
    lam = sandboxes(init_type="provisioned-concurrency")
    init_s = lam.api.ready_at - lam.sandbox.started_at
    time.sleep(0.6)  # provisioned: the sandbox waits, initialised, for its first request
    assert lam.invoke({}).ok
    (report,) = lam.reports(1)
    validate_report(report)
    assert report["invocation"]["init_duration_ms"] <= init_s * 1000.0 + 50.0


def test_managed_instances_is_not_cold(sandboxes: Any, validate_report: Any) -> None:
    # Lambda Managed Instances: awslambdaric forks AWS_LAMBDA_MAX_CONCURRENCY worker processes,
    # each importing the handler and asking for invocations concurrently.
    lam = sandboxes(init_type="lambda-managed-instances", env={"AWS_LAMBDA_MAX_CONCURRENCY": "2"})
    give_up = time.monotonic() + 10.0
    while lam.api.waiting_runtimes < 2 and time.monotonic() < give_up:
        time.sleep(0.01)  # both workers imported the handler and asked for an invocation
    assert lam.api.waiting_runtimes == 2, lam.sandbox.output
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(lam.invoke({"action": "sleep", "seconds": 0.3}))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status for r in results] == ["ok", "ok"], lam.sandbox.output
    reports = lam.by_request_id(2)
    assert set(reports) == {r.request_id for r in results}
    for report in reports.values():
        validate_report(report)
        inv = report["invocation"]
        # Each worker process had its own first invocation; none is a cold start.
        assert inv["init_type"] == "lambda-managed-instances"
        assert inv["cold_start"] is False
        assert inv["proactive_init"] is False
        assert inv["init_duration_ms"] is not None
    # The two ran at the same time, in two processes.
    a, b = (r["invocation"] for r in reports.values())
    assert a["start_ms"] < b["end_ms"] and b["start_ms"] < a["end_ms"]


def test_snapstart_restore_flow(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes(init_type="snap-start")
    api = lam.api
    # awslambdaric ran the before-snapshot hooks and is parked in /restore/next: the snapshot.
    assert api.snapshot_at is not None
    time.sleep(0.6)
    assert api.ready_at is None, "the runtime asked for an invocation before the restore"
    restored_at = lam.sandbox.restore()
    first = lam.invoke({})
    second = lam.invoke({})
    assert first.ok and second.ok, lam.sandbox.output
    one, two = lam.reports(2)
    validate_report(one)
    validate_report(two)

    inv = one["invocation"]
    assert inv["init_type"] == "snap-start"
    assert inv["cold_start"] is False
    assert inv["proactive_init"] is False
    # Measured from the restore (the agent's after-restore hook), not from the init.
    since = inv["since_restore_ms"]
    assert since is not None and since >= 0
    assert since <= inv["start_ms"] - restored_at * 1000.0 + 5.0
    assert since < 500.0
    # The init measured before the snapshot, not including the time parked at the snapshot.
    assert inv["init_duration_ms"] is not None and inv["init_duration_ms"] > 0
    assert inv["init_duration_ms"] <= (api.snapshot_at - lam.sandbox.started_at) * 1000.0 + 20.0

    assert two["invocation"]["since_restore_ms"] is None
    assert two["invocation"]["init_duration_ms"] is None
    assert two["invocation"]["cold_start"] is False


# -- what the handler records ---------------------------------------------------------------


def test_metrics_labels_spans_and_logs(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes()
    results = [lam.invoke({}), lam.invoke({})]
    assert all(r.ok for r in results)
    first, second = lam.reports(2)
    validate_report(first)
    validate_report(second)

    # Recorded at import time (module level): in the first report only.
    assert metric_names(first) == ["import_metric", "handler_metric"]
    assert metric_names(second) == ["handler_metric"]
    imported = first["metrics"][0]
    assert imported["value"] == 1
    assert imported["unit"] == "Count"
    assert imported["dimensions"] == {"phase": "init"}
    recorded = second["metrics"][0]
    assert recorded["value"] == 2.5
    assert recorded["unit"] == "Milliseconds"
    assert recorded["dimensions"] == {"route": "/orders"}
    assert first["labels"] == ["imported", "from-handler"]
    assert second["labels"] == ["from-handler"]

    for report, result in zip((first, second), results):
        root, *children = report["spans"]
        assert root["span_id"] == report["trace"]["span_id"]
        assert root["attributes"]["faas.invocation_id"] == result.request_id
        work = [s for s in children if s["name"] == "work"]
        assert len(work) == 1
        assert work[0]["parent_span_id"] == root["span_id"]
        assert work[0]["attributes"]["step"] == "one"
        assert work[0]["status"] == "ok"

        logs = [entry for entry in report["logs"] if entry["logger"] == "tests.handler"]
        assert len(logs) == 1
        assert logs[0]["level"] == "WARNING"
        assert logs[0]["message"] == f"working on {result.request_id}"


def test_return_value_reaches_caller_unchanged(sandboxes: Any) -> None:
    lam = sandboxes()
    values = [
        {"statusCode": 200, "body": '{"ok": true}', "headers": {"X-A": "1"}},
        {"nested": {"list": [1, 2.5, None, True, "ünïcødé"]}, "empty": {}},
        ["a", 1, {"b": []}],
        "just a string",
        42,
        None,
    ]
    for value in values:
        result = lam.invoke({"action": "echo", "value": value})
        assert result.status == "ok", lam.sandbox.output
        assert result.payload == value
        assert json.loads(result.body) == value  # exactly what the handler returned
    lam.reports(len(values))


def test_warm_invocations_report_resources(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes()
    assert lam.invoke({}).ok
    for _ in range(3):
        assert lam.invoke({"action": "alloc", "mb": 8}).ok
    reports = lam.reports(4)
    for report in reports:
        validate_report(report)
        res = report["resources"]
        for key in ("rss_start_mb", "rss_end_mb", "rss_peak_mb"):
            assert res[key] is not None and res[key] > 0, (key, res)
        assert res["rss_peak_mb"] >= res["rss_end_mb"] - 0.5
        assert res["memory_used_pct"] is not None and res["memory_used_pct"] > 0
        assert res["cpu_user_ms"] >= 0 and res["cpu_system_ms"] >= 0
        assert res["threads"] is not None and res["threads"] >= 1
        assert res["open_fds"] is not None and res["open_fds"] > 0
        assert isinstance(res["leak_suspected"], bool)

    growth = [r["resources"]["rss_growth_mb"] for r in reports]
    assert all(isinstance(g, (int, float)) for g in growth), growth
    assert growth[0] == 0  # the cold start is the baseline
    # Each warm invocation kept 8 MB more alive: the growth since the cold start shows it.
    assert growth[1] >= 6 and growth[2] >= growth[1] + 6 and growth[3] >= growth[2] + 6, growth


def test_reports_validate_against_schema(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes()
    lam.invoke({})
    lam.invoke({"action": "raise"})
    lam.invoke(
        {"action": "echo", "value": {"ok": True}},
        tenant_id="tenant-1",
        client_context={"custom": {"k": "v"}},
        cognito_identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"},
    )
    lam.invoke({"source": "serverless-plugin-warmup"})
    lam.invoke({"action": "alloc", "mb": 1})
    reports = lam.reports(5)
    for report in reports:
        validate_report(report)
        assert report["schema"] == "lambdascope/1"
    assert [r["invocation"]["status"] for r in reports] == ["ok", "error", "ok", "ok", "ok"]


# -- the emulator itself ---------------------------------------------------------------------


def test_init_error_reaches_the_caller(sandboxes: Any) -> None:
    lam = sandboxes("no_such_module.handler", wait=False)
    with pytest.raises(RuntimeInitError) as caught:
        lam.sandbox.wait_ready(20.0)
    assert caught.value.error_type == "Runtime.ImportModuleError"
    result = lam.invoke({})
    assert result.status == "error"
    assert result.error_type == "Runtime.ImportModuleError"
    assert "no_such_module" in result.payload["errorMessage"]
    lam.sandbox.process.wait(10)  # awslambdaric exits after posting the init error
    assert lam.sandbox.returncode == 1


def test_timeout_and_crash(sandboxes: Any) -> None:
    lam = sandboxes()
    slow = lam.invoke({"action": "sleep", "seconds": 0.6}, timeout_s=0.2)
    assert slow.status == "timeout"
    assert slow.error_type == "Sandbox.Timedout"
    assert slow.duration_ms == pytest.approx(200.0)
    assert "Task timed out after 0.20 seconds" in slow.payload["errorMessage"]
    # The emulator does not reset the sandbox (a runner does): the late answer is dropped
    # and the next invocation runs once the runtime is free.
    assert lam.invoke({}, timeout_s=3.0).ok

    crashed = lam.invoke({"action": "exit", "code": 3})
    assert crashed.status == "error"
    assert crashed.error_type == "Runtime.ExitError"
    assert "exit status 3" in crashed.payload["errorMessage"]
    gone = lam.invoke({})
    assert gone.error_type == "Runtime.ExitError"


def test_internal_extension_gets_every_invocation(
    sandboxes: Any, tmp_path: pathlib.Path, validate_report: Any
) -> None:
    log = tmp_path / "extension.jsonl"
    lam = sandboxes("with_extension.handler", env={"EXTENSION_LOG": str(log)})
    by_name = {e["name"]: e for e in lam.api.extensions}
    # The handler's own extension, and the agent's (it delivers reports after the response).
    assert sorted(by_name) == ["lambdascope", "tests-internal"]
    ext = by_name["tests-internal"]
    assert ext["internal"] is True
    assert ext["events"] == ["INVOKE"]
    assert by_name["lambdascope"]["internal"] is True
    results = [lam.invoke({}) for _ in range(3)]
    assert all(r.ok for r in results), lam.sandbox.output
    assert lam.sandbox.wait_idle(5.0)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["request_id"] for e in entries] == [r.request_id for r in results]
    assert [e["deadline_ms"] for e in entries] == [r.deadline_ms for r in results]
    reports = lam.reports(3)
    for report in reports:
        validate_report(report)
    assert [r["invocation"]["cold_start"] for r in reports] == [True, False, False]


class _Client:
    """Raw HTTP against the emulator, the way a runtime or an extension calls it."""

    def __init__(self, api: RuntimeAPI) -> None:
        self.api = api

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection(self.api.address, timeout=10)
        try:
            data = json.dumps(body) if body is not None else None
            conn.request(method, path, data, headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            parsed = json.loads(raw) if raw else None
            return resp.status, dict(resp.getheaders()), parsed
        finally:
            conn.close()

    def background(self, *args: Any, **kwargs: Any) -> queue.Queue[Any]:
        answer: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=lambda: answer.put(self.call(*args, **kwargs)), daemon=True).start()
        return answer


def test_runtime_and_extensions_api_protocol() -> None:
    with RuntimeAPI(function_name="fn", region="us-west-2", handler="app.handler") as api:
        client = _Client(api)
        ext_path = "/2020-01-01/extension"
        runtime_next = "/2018-06-01/runtime/invocation/next"

        status, _, body = client.call(
            "POST",
            ext_path + "/register",
            {"events": ["INVOKE", "SHUTDOWN"]},
            {"Lambda-Extension-Name": "internal-one"},
        )
        assert (status, body["errorType"]) == (403, "Extension.InvalidEventType")
        status, headers, body = client.call(
            "POST",
            ext_path + "/register",
            {"events": ["INVOKE"]},
            {"Lambda-Extension-Name": "internal-one"},
        )
        assert status == 200
        assert body == {
            "functionName": "fn",
            "functionVersion": "$LATEST",
            "handler": "app.handler",
        }
        ext_headers = {"Lambda-Extension-Identifier": headers["Lambda-Extension-Identifier"]}
        status, _, body = client.call(
            "GET", ext_path + "/event/next", headers={"Lambda-Extension-Identifier": "nope"}
        )
        assert (status, body["errorType"]) == (403, "Extension.UnknownExtensionIdentifier")

        # Init ends once the runtime and the extension both ask for their next event.
        ext_event = client.background("GET", ext_path + "/event/next", headers=ext_headers)
        assert api.wait_ready(0.3) is False
        runtime_event = client.background("GET", runtime_next)
        assert api.wait_ready(5.0) is True
        status, _, body = client.call(
            "POST", ext_path + "/register", {"events": []}, {"Lambda-Extension-Name": "late"}
        )
        assert (status, body["errorType"]) == (403, "Extension.RegistrationClosed")

        answer: queue.Queue[Any] = queue.Queue()
        threading.Thread(
            target=lambda: answer.put(
                api.invoke(
                    {"k": 1}, timeout_s=2.0, tenant_id="t-1", client_context={"custom": {"a": 1}}
                )
            ),
            daemon=True,
        ).start()
        status, headers, event = runtime_event.get(timeout=5)
        assert status == 200 and event == {"k": 1}
        rid = headers["Lambda-Runtime-Aws-Request-Id"]
        assert abs(int(headers["Lambda-Runtime-Deadline-Ms"]) - (time.time() + 2) * 1000) < 500
        assert headers["Lambda-Runtime-Invoked-Function-Arn"] == (
            "arn:aws:lambda:us-west-2:123456789012:function:fn"
        )
        assert TRACE_HEADER.match(headers["Lambda-Runtime-Trace-Id"])
        assert headers["Lambda-Runtime-Aws-Tenant-Id"] == "t-1"
        assert json.loads(headers["Lambda-Runtime-Client-Context"]) == {"custom": {"a": 1}}
        assert "Lambda-Runtime-Cognito-Identity" not in headers

        status, _, invoke_event = ext_event.get(timeout=5)
        assert status == 200
        assert invoke_event["eventType"] == "INVOKE"
        assert invoke_event["requestId"] == rid
        assert invoke_event["deadlineMs"] == int(headers["Lambda-Runtime-Deadline-Ms"])
        assert invoke_event["tracing"]["value"] == headers["Lambda-Runtime-Trace-Id"]

        response_path = f"/2018-06-01/runtime/invocation/{rid}/response"
        status, _, _ = client.call("POST", response_path, {"answer": 42})
        assert status == 202
        result = answer.get(timeout=5)
        assert (result.status, result.payload, result.request_id) == ("ok", {"answer": 42}, rid)
        status, _, body = client.call("POST", response_path, {"again": True})
        assert (status, body["errorType"]) == (400, "InvalidRequestID")

        # The sandbox is idle only when the runtime and the extension both asked again.
        assert api.wait_idle(0.2) is False
        runtime_event = client.background("GET", runtime_next)
        assert api.wait_idle(0.2) is False
        ext_event = client.background("GET", ext_path + "/event/next", headers=ext_headers)
        assert api.wait_idle(5.0) is True

        threading.Thread(
            target=lambda: answer.put(api.invoke({"k": 2}, timeout_s=2.0)), daemon=True
        ).start()
        status, headers, event = runtime_event.get(timeout=5)
        rid = headers["Lambda-Runtime-Aws-Request-Id"]
        assert ext_event.get(timeout=5)[2]["requestId"] == rid
        status, _, _ = client.call(
            "POST",
            f"/2018-06-01/runtime/invocation/{rid}/error",
            {"errorMessage": "bad", "errorType": "KeyError", "stackTrace": []},
            {"Lambda-Runtime-Function-Error-Type": "KeyError"},
        )
        assert status == 202
        result = answer.get(timeout=5)
        assert (result.status, result.error_type, result.payload["errorMessage"]) == (
            "error",
            "KeyError",
            "bad",
        )

        status, _, _ = client.call("GET", "/2018-06-01/runtime/nothing-here")
        assert status == 404


# -- keep last: it waits for the module-scoped idle sandbox ----------------------------------


def test_proactive_init_after_idle_sandbox(idle_lambda: Any, validate_report: Any) -> None:
    """SLEEPS up to 10.5 s (less the time the tests above took): Lambda counts a first
    invocation that arrives more than 10 s after init as a proactive initialisation."""
    ready_at = idle_lambda.api.ready_at
    init_s = ready_at - idle_lambda.sandbox.started_at
    time.sleep(max(0.0, ready_at + PROACTIVE_IDLE_S - time.time()))
    first = idle_lambda.invoke({})
    second = idle_lambda.invoke({})
    assert first.ok and second.ok
    one, two = idle_lambda.reports(2)
    validate_report(one)
    validate_report(two)
    inv = one["invocation"]
    assert inv["start_ms"] - ready_at * 1000.0 > 10_000.0
    assert inv["cold_start"] is False
    assert inv["proactive_init"] is True
    assert inv["init_type"] == "on-demand"
    # init_duration_ms is kept, and is the init, not the idle time after it.
    assert inv["init_duration_ms"] is not None and inv["init_duration_ms"] > 0
    assert inv["init_duration_ms"] <= init_s * 1000.0 + 50.0
    assert two["invocation"]["proactive_init"] is False
    assert two["invocation"]["cold_start"] is False


def test_init_ends_when_the_runtime_asks_for_the_first_event(
    sandboxes: Any, validate_report: Any
) -> None:
    """Code after the decorator (here a 1.2 s sleep) is init too: the end of init is taken
    from the runtime client's first request for an event, not from the decoration."""
    lam = sandboxes("slow_init.handler", env={"SLOW_INIT_S": "1.2"})
    time.sleep(0.5)  # the sandbox idles a little before the request: not init
    assert lam.invoke({}).ok
    (report,) = lam.reports(1)
    validate_report(report)
    inv = report["invocation"]
    assert inv["cold_start"] is True
    init_s = lam.api.ready_at - lam.sandbox.started_at
    assert 1200 <= inv["init_duration_ms"] <= init_s * 1000.0 + 50.0

"""Reports built after the response.

With the after-response flusher running as an internal extension, and the runtime client hooked so
it says when an invocation is over (``Flusher.defers``), ``end()`` only queues a builder: the
report (resource readings included) is built on the extension's thread once the runtime client
asks for its next event, and carries ``agent.overhead.after_response_ms``. After the delivery the
next invocation's starting readings are taken (``prepare_start``, memory peak reset included).
The extension thread sleeps through the invocation (``_wait_told``). The trace context is worked
out on first use, which for a handler that makes no call is when the report is built.

The sandbox tests run ``handlers/deferred_work.py`` under the real ``awslambdaric`` client against
the Runtime API emulator; each invocation answers with what it saw of the agent when it started
(see that module). The last tests drive the same code paths in process, without a sandbox.
"""

from __future__ import annotations

import copy
import http.server
import json
import pathlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import lambdascope
from lambdascope import _state
from lambdascope._extension import Flusher
from lambdascope._monitor import prepare_start
from lambdascope.runner.runtime_api import new_trace_header
from lambdascope.testing import capture_reports, fake_context

HANDLER = "deferred_work.handler"
HANDLER_FILE = str(pathlib.Path(__file__).resolve().parent / "handlers" / "deferred_work.py")
EVENTS = pathlib.Path(__file__).resolve().parents[1] / "events"


def xray_ids(header: str) -> tuple[str, str]:
    """(trace id, parent span id) of an X-Ray header ``Root=1-xxxxxxxx-yyyy…;Parent=…``."""
    fields = dict(part.split("=", 1) for part in header.split(";"))
    _, epoch, rest = fields["Root"].split("-")
    return epoch + rest, fields["Parent"]


def root_span(report: dict[str, Any]) -> dict[str, Any]:
    (root,) = [s for s in report["spans"] if s["span_id"] == report["trace"]["span_id"]]
    return root


class Peer(http.server.ThreadingHTTPServer):
    """A loopback HTTP server recording the headers of each request; ``/hang`` never answers
    in time (for a process that dies during the call)."""

    daemon_threads = True

    def __init__(self) -> None:
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                peer.seen.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.startswith("/hang"):
                    time.sleep(5)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.shutdown()
    server.server_close()


def invoke_all(lam: Any, events: list[Any], **kwargs: Any) -> list[Any]:
    """Invoke one after the other, back to back (each waits only for the previous response)."""
    results = [lam.invoke(event, **kwargs) for event in events]
    assert all(r.ok for r in results), [(r.status, r.payload) for r in results]
    return results


# -- built after the response ---------------------------------------------------------------


def test_reports_built_after_the_response_arrive_in_order_before_the_next_invocation(
    sandboxes: Any, validate_report: Any
) -> None:
    """Six invocations back to back: each starts only once the previous report is written (the
    handler counts the lines of the report file when it starts), the next start's readings were
    taken after that delivery and are the ones used, the extension thread sleeps through every
    invocation, and every report carries ``after_response_ms`` and validates."""
    lam = sandboxes(HANDLER)  # LAMBDASCOPE_FLUSH unset: auto
    results = invoke_all(lam, [{"action": "noop"}] * 6)
    reports = lam.reports(6)
    assert [r["invocation"]["request_id"] for r in reports] == [r.request_id for r in results]
    for k, (result, report) in enumerate(zip(results, reports)):
        seen = result.payload["seen"]
        validate_report(report)
        assert seen["flusher_defers"] is True
        assert seen["reports_written"] == k, f"invocation {k} started before report {k - 1}"
        # The extension thread is asleep until told (or, at most, just back from sending its
        # request for the next event, waiting for the interpreter to return from ``send``): it
        # has not read the INVOKE event, and builds or delivers nothing during the invocation.
        stack = seen["flusher_stack"]
        assert stack is not None and stack[-1] == "_bootstrap", stack
        assert "_wait_told" in stack or "_ask_next" in stack, stack
        assert "_read_event" not in stack and "_deliver_all" not in stack, stack
        if k:
            assert seen["prepared_used"] is True, f"invocation {k} took its own start readings"
            assert seen["reports_when_prepared"] == k  # prepared after the previous delivery
            previous = reports[k - 1]["invocation"]
            assert report["invocation"]["start_ms"] >= previous["end_ms"]
        overhead = report["agent"]["overhead"]
        assert overhead["after_response_ms"] > 0
        assert overhead["invocation_ms"] > 0
        assert report["invocation"]["status"] == "ok"


def test_invocation_ms_is_the_callers_share_only(sandboxes: Any, validate_report: Any) -> None:
    """A batch answer whose ``get`` takes 150 ms: only the report's build calls it (to count the
    failed items), after the response. The caller does not wait for it, ``invocation_ms`` does
    not include it, ``after_response_ms`` does, and the failed count is still right."""
    lam = sandboxes(HANDLER)
    event = json.loads((EVENTS / "sqs.json").read_text())
    records = event["Records"]
    records.append(copy.deepcopy(records[0]))
    records[2]["messageId"] = "third"
    for record, body in zip(records, ["slow", "fail", "ok"]):
        record["body"] = body
    invoke_all(lam, [{"action": "noop"}])  # warm
    (result,) = invoke_all(lam, [event])
    assert result.payload == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}
    assert result.duration_ms < 150, "the caller waited for the report's build"
    report = validate_report(lam.reports(2)[1])
    overhead = report["agent"]["overhead"]
    assert overhead["after_response_ms"] >= 150
    assert overhead["invocation_ms"] < 20
    assert report["invocation"]["batch"] == {"size": 3, "failed": 1}
    assert report["invocation"]["trigger"]["type"] == "sqs"


@pytest.mark.parametrize("failing", [0, 2])
def test_batch_failures_are_counted_by_the_deferred_build(
    sandboxes: Any, validate_report: Any, failing: int
) -> None:
    lam = sandboxes(HANDLER)
    event = json.loads((EVENTS / "sqs.json").read_text())
    records = event["Records"]
    records.append(copy.deepcopy(records[0]))
    records[2]["messageId"] = "third"
    for i, record in enumerate(records):
        record["body"] = "fail" if i < failing else "ok"
    (result,) = invoke_all(lam, [event])
    assert len(result.payload["batchItemFailures"]) == failing
    report = validate_report(lam.reports(1)[0])
    assert "after_response_ms" in report["agent"]["overhead"]
    assert report["invocation"]["batch"] == {"size": 3, "failed": failing}


def test_memory_peak_is_per_invocation(sandboxes: Any, validate_report: Any) -> None:
    """A handler that allocates 30 MB and frees it shows the peak in its own report; the next
    invocation (which allocates nothing) does not inherit it: the peak was reset after the
    previous delivery, by the start readings taken then."""
    lam = sandboxes(HANDLER)
    results = invoke_all(
        lam, [{"action": "noop"}, {"action": "alloc_free", "mb": 30}, {"action": "noop"}]
    )
    _, alloc, after = (validate_report(r)["resources"] for r in lam.reports(3))
    assert 28 <= alloc["rss_peak_mb"] - alloc["rss_start_mb"] <= 45, alloc
    assert alloc["rss_end_mb"] - alloc["rss_start_mb"] < 10, alloc  # freed
    assert after["rss_peak_mb"] - after["rss_start_mb"] < 3, after
    assert after["rss_peak_mb"] < alloc["rss_peak_mb"] - 25
    assert results[1].payload["seen"]["prepared_used"] is True
    assert results[2].payload["seen"]["prepared_used"] is True


def test_cpu_time_is_per_invocation(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes(HANDLER)
    invoke_all(lam, [{"action": "noop"}, {"action": "burn", "ms": 50}, {"action": "noop"}])
    _, burn, idle = (validate_report(r)["resources"] for r in lam.reports(3))
    assert burn["cpu_user_ms"] >= 40, burn
    assert idle["cpu_user_ms"] < 10, idle
    assert idle["cpu_user_ms"] + idle["cpu_system_ms"] < 15, idle


@pytest.mark.parametrize("flush", ["sync", "auto"])
def test_error_stack_is_the_handlers(
    sandboxes: Any, validate_report: Any, flush: str
) -> None:
    """The report of a handler that raised has its stack, from the handler down to the frame
    that raised, whether the report is built before the response or after it."""
    lam = sandboxes(HANDLER, env={"LAMBDASCOPE_FLUSH": flush})
    result = lam.invoke({"action": "raise", "message": "deferred boom"})
    assert result.status == "error" and result.payload["errorType"] == "ValueError"
    report = validate_report(lam.reports(1)[0])
    assert ("after_response_ms" in report["agent"]["overhead"]) is (flush == "auto")
    error = report["error"]
    assert (error["type"], error["message"]) == ("ValueError", "deferred boom")
    raise_line = next(
        n for n, line in enumerate(pathlib.Path(HANDLER_FILE).read_text().splitlines(), 1)
        if "DEFERRED-RAISE-HERE" in line
    )
    assert error["stack"][-1] == {"file": HANDLER_FILE, "line": raise_line,
                                  "function": "inner_call"}
    assert [f["function"] for f in error["stack"]] == ["handler", "outer_call", "inner_call"], (
        "the stack does not start at the handler: " + json.dumps(error["stack"], indent=1)
    )
    assert report["invocation"]["status"] == "error"


def test_sync_flush_builds_before_the_response(sandboxes: Any, validate_report: Any) -> None:
    lam = sandboxes(HANDLER, env={"LAMBDASCOPE_FLUSH": "sync"})
    results = invoke_all(lam, [{"action": "noop"}] * 3)
    reports = lam.reports(3)
    for k, (result, report) in enumerate(zip(results, reports)):
        validate_report(report)
        assert "after_response_ms" not in report["agent"]["overhead"]
        assert report["agent"]["overhead"]["invocation_ms"] > 0
        seen = result.payload["seen"]
        assert seen["flusher_defers"] is False and seen["flusher_stack"] is None
        assert seen["reports_written"] == k
        assert seen["prepared_used"] is False
    assert lam.api.extensions == []


# -- the trace context, worked out after the response --------------------------------------------


def test_a_handler_with_no_call_continues_the_runtimes_xray_trace(
    sandboxes: Any, validate_report: Any
) -> None:
    """Nothing during the invocation needs the trace context, so it is worked out when the
    report is built, after the response: still from the invocation's own X-Ray header (each of
    several invocations in a row keeps its own)."""
    lam = sandboxes(HANDLER)
    headers = [new_trace_header() for _ in range(3)]
    results = [lam.invoke({"action": "noop"}, trace_id=h) for h in headers]
    reports = lam.reports(3)
    for header, result, report in zip(headers, results, reports):
        assert result.ok and result.trace_id == header
        validate_report(report)
        assert result.payload["seen"]["resolved"] is False  # not on the caller's path
        trace_id, parent = xray_ids(header)
        assert report["trace"]["trace_id"] == trace_id
        assert report["trace"]["parent_span_id"] == parent
        root = root_span(report)
        assert root["parent_span_id"] == parent
        assert root["attributes"]["lambdascope.parent.format"] == "xray"


def test_api_gateway_traceparent_is_continued_into_the_outgoing_call(
    sandboxes: Any, validate_report: Any, peer: Peer
) -> None:
    lam = sandboxes(HANDLER)
    event = json.loads((EVENTS / "apigw_http.json").read_text())
    incoming_trace, incoming_parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    event["headers"]["traceparent"] = f"00-{incoming_trace}-{incoming_parent}-01"
    event["action"], event["url"] = "http", peer.url + "/orders"
    header = new_trace_header()
    result = lam.invoke(event, trace_id=header)
    assert result.ok and result.payload["status"] == 200
    report = validate_report(lam.reports(1)[0])
    assert report["invocation"]["trigger"]["type"] == "api_gateway_v2"
    assert report["trace"]["trace_id"] == incoming_trace != xray_ids(header)[0]  # W3C wins
    assert report["trace"]["parent_span_id"] == incoming_parent
    assert root_span(report)["parent_span_id"] == incoming_parent
    _assert_call_carries_the_trace(peer, report)


def test_the_xray_trace_is_continued_into_the_outgoing_call(
    sandboxes: Any, validate_report: Any, peer: Peer
) -> None:
    lam = sandboxes(HANDLER)
    header = new_trace_header()
    result = lam.invoke({"action": "http", "url": peer.url + "/orders"}, trace_id=header)
    assert result.ok
    assert result.payload["seen"]["resolved"] is False  # first used by the call itself
    report = validate_report(lam.reports(1)[0])
    assert (report["trace"]["trace_id"], report["trace"]["parent_span_id"]) == xray_ids(header)
    _assert_call_carries_the_trace(peer, report)


def _assert_call_carries_the_trace(peer: Peer, report: dict[str, Any]) -> None:
    (headers,) = peer.seen
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", headers.get("traceparent", ""))
    assert match, headers
    trace_id, span_id = match.groups()
    assert trace_id == report["trace"]["trace_id"]
    (call,) = [s for s in report["spans"] if s["span_id"] == span_id]
    assert call["kind"] == "client"
    assert call["parent_span_id"] == report["trace"]["span_id"]


# -- crash reports name the call in flight ----------------------------------------------------


def _crash_then_report(
    sandboxes: Any, tmp_path: pathlib.Path, event: dict[str, Any], header: str
) -> tuple[Any, dict[str, Any]]:
    spool = str(tmp_path / "shared-spool")
    first = sandboxes(HANDLER, env={"LAMBDASCOPE_SPOOL_DIR": spool})
    assert first.invoke({"action": "noop"}).ok
    died = first.invoke(event, trace_id=header)
    assert not died.ok and died.error_type == "Runtime.ExitError", died
    first.sandbox.stop()
    assert len(first.reports(1)) == 1
    second = sandboxes(HANDLER, env={"LAMBDASCOPE_SPOOL_DIR": spool})
    assert second.invoke({"action": "noop"}).ok
    crashed = second.by_request_id(2)[died.request_id]
    assert crashed["invocation"]["status"] == "crashed"
    return died, crashed


def test_a_crash_during_a_call_names_the_call_and_keeps_the_trace(
    sandboxes: Any, tmp_path: pathlib.Path, validate_report: Any, peer: Peer
) -> None:
    header = new_trace_header()
    _, crashed = _crash_then_report(
        sandboxes, tmp_path,
        {"action": "crash_in_call", "url": peer.url + "/hang", "after_s": 0.3}, header,
    )
    validate_report(crashed)
    assert "in flight: GET" in crashed["error"]["message"], crashed["error"]
    trace_id, _ = xray_ids(header)
    assert crashed["trace"]["trace_id"] == trace_id
    (headers,) = peer.seen
    assert headers["traceparent"].split("-")[1] == trace_id
    assert crashed["trace"]["span_id"] and len(crashed["trace"]["span_id"]) == 16


def test_a_crash_with_no_span_takes_the_trace_from_the_xray_header(
    sandboxes: Any, tmp_path: pathlib.Path, validate_report: Any
) -> None:
    header = new_trace_header()
    _, crashed = _crash_then_report(sandboxes, tmp_path, {"action": "exit"}, header)
    validate_report(crashed)
    assert "in flight" not in crashed["error"]["message"]
    assert crashed["trace"]["trace_id"] == xray_ids(header)[0]


def test_a_crash_after_a_span_ended_is_not_blamed_on_that_span(
    sandboxes: Any, tmp_path: pathlib.Path, validate_report: Any, peer: Peer
) -> None:
    """The handler makes a call inside ``lambdascope.span("work")``, leaves the span, then dies:
    nothing was in flight, so the crash report must not say ``work`` was."""
    _, crashed = _crash_then_report(
        sandboxes, tmp_path,
        {"action": "http_in_span", "url": peer.url + "/orders", "exit": True}, new_trace_header(),
    )
    validate_report(crashed)
    assert "in flight" not in crashed["error"]["message"], crashed["error"]["message"]


# -- the same paths in process ------------------------------------------------------------------


@pytest.fixture
def deferring() -> Iterator[Flusher]:
    """An extension-mode flusher that defers (as when the runtime client is hooked), with no
    thread: the test runs its deliveries (``_deliver_all``) where the thread would."""
    flusher = Flusher("extension")
    flusher.alive = True
    flusher.runtime_tells = True
    flusher.on_idle = prepare_start
    assert flusher.defers
    _state.S.flusher, _state.S.flusher_chosen = flusher, True
    yield flusher
    _state.S.flusher = None


def test_defers_only_as_a_told_live_extension() -> None:
    for mode in ("extension", "thread"):
        for alive in (False, True):
            for tells in (False, True):
                flusher = Flusher(mode)
                flusher.alive, flusher.runtime_tells = alive, tells
                assert flusher.defers is (mode == "extension" and alive and tells)


def test_end_queues_a_builder_and_the_flusher_builds_it(
    deferring: Flusher, validate_report: Any
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        return "ok"

    with capture_reports() as reports:
        assert handler({}, fake_context()) == "ok"
        assert reports == []  # nothing built or delivered on the caller's path
        (job,) = deferring._jobs
        assert callable(job.reports)
        assert deferring._deliver_all() is not None
        (report,) = reports
    validate_report(report)
    overhead = report["agent"]["overhead"]
    assert overhead["after_response_ms"] > 0 and overhead["invocation_ms"] > 0


def test_the_prepared_start_serves_only_the_very_next_request(deferring: Flusher) -> None:
    """The order of the real thing: the runtime client asks for its next event (the hook counts
    it), the extension thread delivers and then prepares the next start; the next invocation
    uses it only when the runtime client made no other request in between."""
    starts: list[Any] = []
    S = _state.S

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        starts.append(lambdascope.current().res_start)

    def runtime_asks_for_next_then_extension_delivers() -> Any:
        S.runtime_nexts += 1  # (what the hook on wait_next_invocation counts)
        deferring.on_idle(deferring._deliver_all())
        return S.next_start

    with capture_reports() as reports:
        handler({}, fake_context())
        prepared = runtime_asks_for_next_then_extension_delivers()
        assert prepared is not None and prepared[0] == S.runtime_nexts
        handler({}, fake_context())
        assert starts[-1] is prepared[1]
        assert S.next_start is None  # used once

        stale = runtime_asks_for_next_then_extension_delivers()
        S.runtime_nexts += 1  # another request in between (an invocation not monitored)
        handler({}, fake_context())
        assert starts[-1] is not stale[1]
        assert S.next_start is None
        deferring._deliver_all()
    assert len(reports) == 3


def test_the_deferred_stack_is_the_stack_built_in_line(deferring: Flusher) -> None:
    """Built after the exception went on up to the runtime client (here: ``runtime``), the
    report's stack is still the handler's, as when it is built before the response."""

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        raise KeyError("missing")

    def runtime() -> None:
        try:
            handler({}, fake_context())
        except KeyError:
            pass

    with capture_reports() as reports:
        runtime()
        deferring._deliver_all()
        deferring.alive = False  # now in line (no flusher that defers)
        runtime()
    deferred, in_line = (r["error"]["stack"] for r in reports)
    assert [f["function"] for f in in_line] == ["handler"]
    assert deferred == in_line, json.dumps(deferred, indent=1)


@pytest.mark.faults
def test_a_builder_that_fails_is_swallowed_and_the_next_one_delivered(
    deferring: Flusher, internal_errors: list[Any]
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        return "ok"

    def broken() -> list[Any]:
        raise RuntimeError("build broke")

    with capture_reports() as reports:
        assert handler({}, fake_context()) == "ok"
        (job,) = deferring._jobs
        deferring.submit("broken", job.pipeline, broken, None)
        deferring._jobs.rotate(1)  # the broken one first
        deferring._deliver_all()
    assert len(reports) == 1
    assert [site for site, _ in internal_errors] == ["flusher.build"]

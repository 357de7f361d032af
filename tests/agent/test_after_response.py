"""With flushing after the response, the caller does not wait for the report, and the report still
arrives before the next invocation starts."""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class SlowCollector:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.received: list[tuple[float, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":  # big reports are gzipped
                    data = gzip.decompress(data)
                body = json.loads(data)
                time.sleep(outer.delay_s)
                for report in body if isinstance(body, list) else [body]:
                    outer.received.append((time.monotonic(), report))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_collector() -> Any:
    collector = SlowCollector(0.3)
    yield collector
    collector.close()


@pytest.mark.parametrize("flush", ["auto", "after_response"])
def test_caller_does_not_wait_for_the_report(
    sandboxes: Any, slow_collector: SlowCollector, validate_report: Any, flush: str
) -> None:
    lam = sandboxes(env={"LAMBDASCOPE_EXPORTERS": "http",
                         "LAMBDASCOPE_COLLECTOR_URL": slow_collector.url,
                         "LAMBDASCOPE_FLUSH": flush})
    results = []
    for _ in range(3):
        t0 = time.monotonic()
        results.append(lam.invoke({}))
        results[-1].answered_at = time.monotonic()  # type: ignore[attr-defined]
        assert time.monotonic() - t0 < 0.25, "the caller waited for the 300 ms collector"
        assert lam.sandbox.wait_idle(5.0)
    assert all(r.ok for r in results)
    received = {report["invocation"]["request_id"]: at for at, report in slow_collector.received}
    assert list(received) == [r.request_id for r in results]  # each arrived, in order
    for report in (r for _, r in slow_collector.received):
        validate_report(report)


def test_next_invocation_waits_for_the_previous_flush(
    sandboxes: Any, slow_collector: SlowCollector
) -> None:
    """Lambda does not start the next invocation until the extension asked for its next event,
    i.e. until the previous report was delivered."""
    lam = sandboxes(env={"LAMBDASCOPE_EXPORTERS": "http",
                         "LAMBDASCOPE_COLLECTOR_URL": slow_collector.url})
    first = lam.invoke({})
    second = lam.invoke({})  # queued behind the first one's flush
    assert first.ok and second.ok
    assert lam.sandbox.wait_idle(5.0)
    order = [report["invocation"]["request_id"] for _, report in slow_collector.received]
    assert order == [first.request_id, second.request_id]
    first_report = slow_collector.received[0][1]
    second_report = slow_collector.received[1][1]
    # The second invocation started after the first report had been delivered.
    assert second_report["invocation"]["start_ms"] >= first_report["invocation"]["end_ms"] + 250


def test_sync_flush_makes_the_caller_wait(
    sandboxes: Any, slow_collector: SlowCollector
) -> None:
    lam = sandboxes(env={"LAMBDASCOPE_EXPORTERS": "http",
                         "LAMBDASCOPE_COLLECTOR_URL": slow_collector.url,
                         "LAMBDASCOPE_FLUSH": "sync"})
    t0 = time.monotonic()
    assert lam.invoke({}).ok
    assert time.monotonic() - t0 >= 0.3
    assert [e["name"] for e in lam.api.extensions] == []  # no extension registered


def test_an_unmonitored_handler_in_a_monitored_module_is_not_held(sandboxes: Any) -> None:
    """The module decorates one function (so the agent's extension registers), but the function
    Lambda calls is another: the sandbox must be idle right after each response, not at the
    deadline."""
    lam = sandboxes("two_handlers.plain")
    for _ in range(3):
        t0 = time.monotonic()
        assert lam.invoke({}, timeout_s=5.0).ok
        assert lam.sandbox.wait_idle(3.0)
        assert time.monotonic() - t0 < 1.0


def test_a_handler_that_exits_the_process_still_reports(sandboxes: Any) -> None:
    """``sys.exit`` in the handler ends the runtime process after the handler returned control
    to the agent: the report queued for delivery after the response goes out on the way down."""
    fn = sandboxes()
    assert fn.invoke({}).ok
    ended = fn.invoke({"action": "sys_exit"})
    assert not ended.ok
    reports = fn.by_request_id(2)
    report = reports[ended.request_id]
    assert report["invocation"]["status"] == "error"
    assert report["error"]["type"] == "SystemExit"

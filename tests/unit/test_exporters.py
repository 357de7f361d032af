"""Exporters against real local collaborators: an HTTP server on loopback, files, stdout."""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import lambdascope
from lambdascope.testing import fake_context


class Collector:
    """A real HTTP/1.1 collector on loopback that records what it receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.status = 202
        self.delay_s = 0.0
        self.drop_after_response = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if outer.drop_after_response:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reports(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for req in self.requests:
            body = req["body"]
            out.extend(body if isinstance(body, list) else [body])
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def monitored(**options: Any) -> Any:
    @lambdascope.monitor(**options)
    def handler(event: Any, context: Any) -> Any:
        if event.get("big"):
            lambdascope.label(*[f"label-{i}-{'x' * 40}" for i in range(100)])
        return event.get("ret", "ok")

    return handler


class TestHttpExporter:
    def test_reports_posted_with_token_on_one_reused_connection(
        self, collector: Collector, validate_report: Any
    ) -> None:
        handler = monitored(collector_url=collector.url, token="s3cr3t-token")
        for _ in range(5):
            assert handler({}, fake_context()) == "ok"
        assert len(collector.requests) == 5
        assert collector.connections == 1
        first = collector.requests[0]
        assert first["path"] == "/v1/reports"
        assert first["headers"]["Authorization"] == "Bearer s3cr3t-token"
        assert first["headers"]["Content-Type"] == "application/json"
        for report in collector.reports():
            validate_report(report)
            assert "s3cr3t-token" not in json.dumps(report)

    def test_large_bodies_are_gzipped(self, collector: Collector) -> None:
        handler = monitored(collector_url=collector.url)
        handler({}, fake_context())
        handler({"big": True}, fake_context())
        encodings = [r["headers"].get("Content-Encoding") for r in collector.requests]
        assert encodings == [None, "gzip"]
        assert len(collector.reports()[1]["labels"]) == 100

    def test_silently_closed_connection_is_reopened(self, collector: Collector) -> None:
        handler = monitored(collector_url=collector.url)
        # The collector closes each connection after answering, without saying so, as servers
        # and NATs do with idle keep-alive connections: the next send finds a dead socket.
        collector.drop_after_response = True
        for _ in range(3):
            handler({}, fake_context())
        assert len(collector.reports()) == 3
        assert collector.connections == 3

    @pytest.mark.parametrize("status", [400, 401, 413])
    def test_final_refusals_are_not_retried_and_logged_once(
        self, collector: Collector, status: int, caplog: Any
    ) -> None:
        collector.status = status
        handler = monitored(collector_url=collector.url)
        with caplog.at_level(logging.WARNING, logger="lambdascope"):
            handler({}, fake_context())
            handler({}, fake_context())
        assert len(collector.requests) == 2  # each report once, no retries
        refused = [r for r in caplog.records if str(status) in r.getMessage()]
        assert len(refused) == 1
        assert lambdascope.flush() is True

    def test_server_error_keeps_report_for_a_later_flush(self, collector: Collector) -> None:
        collector.status = 503
        handler = monitored(collector_url=collector.url)
        handler({"ret": 1}, fake_context())
        assert lambdascope.flush() is False
        collector.status = 202
        assert lambdascope.flush() is True
        ids = [r["invocation"]["request_id"] for r in collector.reports()]
        assert len(set(ids)) == 1 and len(ids) == 3  # 503, 503 on flush, then accepted

    def test_hanging_collector_bounded_by_flush_timeout(self, collector: Collector) -> None:
        collector.delay_s = 2.0
        handler = monitored(collector_url=collector.url, flush_timeout_ms=200)
        t0 = time.perf_counter()
        assert handler({}, fake_context()) == "ok"
        elapsed = time.perf_counter() - t0
        assert elapsed < 1.0, f"a flush waited {elapsed:.2f}s past its 200 ms budget"

    def test_trickling_collector_cannot_hold_the_invocation(self) -> None:
        """A collector that sends its answer one byte at a time: each read would be quick, but
        the whole delivery must still end with its budget."""
        import socket

        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                try:
                    server.settimeout(0.2)
                    conn, _ = server.accept()
                except OSError:
                    continue
                conn.recv(65536)
                for byte in b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n":
                    if stop.wait(0.05):
                        break
                    try:
                        conn.send(bytes([byte]))
                    except OSError:
                        break
                conn.close()

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            port = server.getsockname()[1]
            handler = monitored(collector_url=f"http://127.0.0.1:{port}", flush_timeout_ms=300)
            t0 = time.perf_counter()
            assert handler({}, fake_context()) == "ok"
            assert time.perf_counter() - t0 < 0.6
        finally:
            stop.set()
            thread.join(2)
            server.close()

    def test_delivery_never_outlasts_the_invocations_deadline(self, collector: Collector) -> None:
        collector.delay_s = 2.0
        handler = monitored(collector_url=collector.url, flush_timeout_ms=5000)
        t0 = time.perf_counter()
        assert handler({}, fake_context(timeout_s=0.4)) == "ok"
        assert time.perf_counter() - t0 < 0.4  # Lambda would have killed it at 0.4 s

    def test_a_hanging_collector_does_not_starve_stdout(
        self, collector: Collector, capsys: Any
    ) -> None:
        collector.delay_s = 1.0
        handler = monitored(exporters="http,stdout", collector_url=collector.url,
                            flush_timeout_ms=200)
        durations = []
        for _ in range(4):
            t0 = time.perf_counter()
            handler({}, fake_context())
            durations.append(time.perf_counter() - t0)
        out = capsys.readouterr().out
        assert out.count('"schema":"lambdascope/1"') == 4  # every report reached stdout
        assert max(durations[1:]) < 0.1  # after one failure the collector is backed off

    def test_collector_down_does_not_break_handler(self) -> None:
        handler = monitored(collector_url="http://127.0.0.1:9", flush_timeout_ms=300)
        assert handler({"ret": {"a": 1}}, fake_context()) == {"a": 1}


def _append_reports(path: str, n: int) -> None:
    os.environ["LAMBDASCOPE_EXPORTERS"] = "file"
    os.environ["LAMBDASCOPE_FILE"] = path
    from lambdascope import testing

    testing.reset()

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        lambdascope.label(*[f"{i}-" + "x" * 190 for i in range(40)])  # lines well past PIPE_BUF

    for _ in range(n):
        handler({}, fake_context())


class TestFileExporter:
    def test_lines_appended_owner_only(self, tmp_path: Any, validate_report: Any) -> None:
        path = tmp_path / "sub" / "reports.jsonl"
        handler = monitored(exporters="file", file=str(path))
        handler({}, fake_context())
        handler({}, fake_context())
        lines = path.read_text().splitlines()
        assert len(lines) == 2
        for line in lines:
            validate_report(json.loads(line))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_many_processes_append_without_interleaving(self, tmp_path: Any) -> None:
        path = str(tmp_path / "reports.jsonl")
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_append_reports, args=(path, 40)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        with open(path) as fh:
            lines = fh.read().splitlines()
        assert len(lines) == 160
        assert min(len(line) for line in lines) > 8192
        ids = {json.loads(line)["invocation"]["request_id"] for line in lines}
        assert len(ids) == 160


class TestStdoutExporter:
    def test_one_json_line_per_report(self, capsys: Any, validate_report: Any) -> None:
        handler = monitored()
        handler({}, fake_context())
        handler({}, fake_context())
        lines = [line for line in capsys.readouterr().out.splitlines() if line]
        assert len(lines) == 2
        for line in lines:
            assert line.startswith('{"schema":"lambdascope/1"')
            validate_report(json.loads(line))

    @pytest.mark.faults
    def test_broken_stdout_does_not_break_handler(self, monkeypatch: Any) -> None:
        class Broken:
            def write(self, data: str) -> int:
                raise OSError("stdout closed")

            def flush(self) -> None:
                pass

        handler = monitored()
        monkeypatch.setattr("sys.stdout", Broken())
        assert handler({"ret": 3}, fake_context()) == 3


def test_exporters_of_report_objects_serialise_only_what_must_wait(
    monkeypatch: Any, tmp_path: Any
) -> None:
    """With only object exporters (emf, otlp), a delivered report is never serialised; one that
    must wait is, and goes to the spool as a line like any other."""
    from lambdascope import _pipeline
    from lambdascope.exporters import ExportResult

    answers = [ExportResult.SUCCESS, ExportResult.RETRY]
    seen: list[tuple[int, int]] = []

    class Objects:
        name = "objects"
        network = False
        wants_lines = False

        def export(self, reports: Any, lines: Any, timeout_s: float) -> Any:
            seen.append((len(reports), len(lines)))
            return answers.pop(0) if answers else ExportResult.SUCCESS

        def reset(self) -> None: ...

        def shutdown(self) -> None: ...

    monkeypatch.setattr(_pipeline, "build", lambda config: [Objects()])
    calls = []
    real = _pipeline.Pipeline.serialise
    monkeypatch.setattr(
        _pipeline.Pipeline, "serialise", lambda self, r: calls.append(1) or real(self, r)
    )
    spool = tmp_path / "spool"

    @lambdascope.monitor(spool_dir=str(spool), flush="sync")
    def handler(event: Any, context: Any) -> int:
        return 1

    assert handler({}, fake_context()) == 1
    assert calls == [] and seen == [(1, 0)]
    assert handler({}, fake_context()) == 1  # refused for now: serialised for the spool
    assert len(calls) == 1
    (lane,) = [p for p in spool.iterdir() if p.name == "objects"]
    (spooled,) = list(lane.iterdir())
    assert json.loads(spooled.read_text())["schema"] == "lambdascope/1"


def test_two_threads_share_the_connection_one_request_at_a_time(collector: Collector) -> None:
    """The timeout watchdog may deliver while the flusher does: requests on the one kept-alive
    connection never interleave, and a thread whose deadline passes while it waits gives up
    (RETRY: the report goes to the spool) instead of holding its invocation."""
    from lambdascope.exporters import ExportResult
    from lambdascope.exporters.http import HttpExporter

    collector.delay_s = 0.2
    exporter = HttpExporter(collector.url)
    results: dict[str, Any] = {}

    def send(name: str, timeout_s: float) -> None:
        line = json.dumps({"who": name})
        results[name] = exporter.export([{}], [line], timeout_s)

    first = threading.Thread(target=send, args=("first", 2.0))
    first.start()
    time.sleep(0.05)  # the first request is in flight
    second = threading.Thread(target=send, args=("second", 2.0))
    hasty = threading.Thread(target=send, args=("hasty", 0.05))
    second.start()
    hasty.start()
    for t in (first, second, hasty):
        t.join(5.0)
    assert results == {
        "first": ExportResult.SUCCESS,
        "second": ExportResult.SUCCESS,
        "hasty": ExportResult.RETRY,
    }
    assert [r["body"]["who"] for r in collector.requests] == ["first", "second"]
    assert collector.connections == 1  # still the one kept-alive connection

"""The spool shared by several processes: every report arrives, once."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lambdascope._spool import Spool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(url: str, spool_dir: str, n: int, go: Any, ready: Any) -> None:
    os.environ["LAMBDASCOPE_COLLECTOR_URL"] = url
    os.environ["LAMBDASCOPE_SPOOL_DIR"] = spool_dir
    os.environ["LAMBDASCOPE_FLUSH_TIMEOUT_MS"] = "300"
    import lambdascope
    from lambdascope import _pipeline, testing

    testing.reset()
    _pipeline.BACKOFF_MIN_S = 0.0

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        return None

    for _ in range(n):
        handler({}, testing.fake_context())  # the collector is down: spooled
    ready.wait()
    go.wait()
    for _ in range(20):  # all the processes drain the one spool at once
        if lambdascope.flush(2000):
            break


def test_processes_sharing_a_spool_deliver_every_report_once(tmp_path: Any) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    spool_dir = str(tmp_path / "spool")
    ctx = multiprocessing.get_context("fork")
    go, ready = ctx.Event(), ctx.Barrier(5)
    procs = [ctx.Process(target=_worker, args=(url, spool_dir, 10, go, ready)) for _ in range(4)]
    for p in procs:
        p.start()
    ready.wait(60)  # every process has spooled its 10 reports
    waiting = Spool(spool_dir, 10).pending()
    assert waiting == 40

    received: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            body = json.loads(raw)
            with lock:
                for report in body if isinstance(body, list) else [body]:
                    received.append(report["invocation"]["request_id"])
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # the collector comes back
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        go.set()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 40
    assert len(set(received)) == 40  # none twice
    assert Spool(spool_dir, 10).pending() == 0


def test_spool_files_are_owner_only_and_never_half_read(tmp_path: Any) -> None:
    spool = Spool(str(tmp_path / "s"), 1)
    spool.put("http", ['{"a":1}', '{"b":2}'])
    (lane,) = os.listdir(tmp_path / "s")
    assert stat.S_IMODE(os.stat(tmp_path / "s" / lane).st_mode) == 0o700
    (name,) = os.listdir(tmp_path / "s" / lane)
    assert stat.S_IMODE(os.stat(tmp_path / "s" / lane / name).st_mode) == 0o600
    claimed, lines = spool.claim("http")
    assert lines == ['{"a":1}', '{"b":2}']
    assert Spool(str(tmp_path / "s"), 1).claim("http") == ([], [])  # claimed: not visible
    spool.release(claimed)
    claimed, lines = Spool(str(tmp_path / "s"), 1).claim("http")
    assert lines == ['{"a":1}', '{"b":2}']
    spool.done(claimed)
    assert spool.pending() == 0


def test_spool_bound_drops_oldest_first(tmp_path: Any) -> None:
    spool = Spool(str(tmp_path / "s"), 0.001)  # about 1 KB
    for i in range(10):
        spool.put("http", [json.dumps({"i": i, "pad": "x" * 200})])
    _, lines = spool.claim("http")
    kept = [json.loads(line)["i"] for line in lines]
    assert kept == sorted(kept) and kept[-1] == 9
    assert spool.dropped + len(kept) == 10


def test_spool_directories_it_creates_are_owner_only(tmp_path: Any) -> None:
    from lambdascope._spool import Spool

    root = tmp_path / "a" / "b" / "spool"
    spool = Spool(str(root), 1)
    spool.put("http", ['{"n": 1}'])
    for path in (tmp_path / "a", tmp_path / "a" / "b", root, root / "http"):
        assert path.stat().st_mode & 0o777 == 0o700, path

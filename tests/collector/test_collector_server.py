"""``lambdascope collector`` as a real subprocess on loopback: reports made by the real agent
under the Runtime API emulator (each stored once, the spool's retries included), tokens,
malformed, oversized and gzip-bomb bodies, SQL-looking filters, concurrent ingestion from
threads and processes, start-up refusals and bad arguments, a clean shutdown on SIGTERM and
SIGINT, retention."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from collector_harness import (  # noqa: E402
    AGENT_HANDLERS,
    Collector,
    gzip_bomb,
    make_report,
    raw_exchange,
    run_server,
)

from lambdascope.collector.store import Store  # noqa: E402
from lambdascope.runner.runtime_api import Sandbox  # noqa: E402

TOKEN = "t0ken-for-tests"
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def collector(tmp_path: Any) -> Iterator[Collector]:
    with Collector(tmp_path / "reports.db", token=TOKEN) as c:
        yield c
        assert c.alive(), c.stderr
    assert c.proc is not None and c.proc.returncode == 0, c.stderr
    assert "Traceback" not in c.stderr, c.stderr


def stored_ids(c: Collector, **params: Any) -> list[str]:
    ids: list[str] = []
    offset = 0
    while True:
        r = c.get("/api/invocations", since="0", limit=1000, offset=offset, **params)
        assert r.status_code == 200, r.text
        page = r.json()
        ids.extend(i["request_id"] for i in page["invocations"])
        if not page["more"]:
            return ids
        offset += 1000


def wait_for(predicate: Any, timeout_s: float = 20.0, every_s: float = 0.1) -> bool:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(every_s)
    return bool(predicate())


# -- start, answer, stop --------------------------------------------------------------------------
def test_it_starts_on_loopback_and_says_where(collector: Collector) -> None:
    assert re.fullmatch(
        r"lambdascope collector listening on http://127\.0\.0\.1:\d+ \(store .*reports\.db, "
        r"token required\)", collector.ready_line), collector.ready_line
    r = collector.get("/api/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert httpx.get(collector.url + "/openapi.json").json()["openapi"].startswith("3.1")


def test_the_cli_starts_the_same_service(tmp_path: Any) -> None:
    c = Collector(tmp_path / "r.db")
    c.argv[1:3] = ["-m", "lambdascope.cli", "collector"]
    with c:
        assert c.post(make_report()).status_code == 202
    assert c.proc is not None and c.proc.returncode == 0
    help_text = subprocess.run([sys.executable, "-m", "lambdascope.cli", "collector", "--help"],
                               capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0
    assert "--retain" in help_text.stdout
    assert "--alerts FILE" in help_text.stdout and "--public-url" in help_text.stdout


def test_api_needs_the_token(collector: Collector) -> None:
    paths = ["/api/health", "/api/functions", "/api/stats", "/api/invocations",
             "/api/invocations/some-id", f"/api/traces/{'a' * 32}", "/api/dependencies",
             "/api/errors", "/api/logs"]
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        for path in paths:
            r = httpx.get(collector.url + path, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
    for path in paths:
        assert collector.get(path).status_code in (200, 404), path


def test_bad_tokens_store_nothing(collector: Collector) -> None:
    report = make_report()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer"},
                    {"Authorization": f"Bearer {TOKEN[:-1]}"}):
        r = httpx.post(collector.url + "/v1/reports", json=report, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert stored_ids(collector) == []
    assert collector.post(report).status_code == 202
    assert stored_ids(collector) == [report["invocation"]["request_id"]]


# -- the real agent ---------------------------------------------------------------------------
def _sandbox(tmp_path: Any, url: str, token: str | None, name: str = "agent") -> Sandbox:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAMBDASCOPE_")}
    env.update({
        "LAMBDASCOPE_EXPORTERS": "http",
        "LAMBDASCOPE_COLLECTOR_URL": url,
        "LAMBDASCOPE_SPOOL_DIR": str(tmp_path / f"spool-{name}"),
    })
    if token:
        env["LAMBDASCOPE_TOKEN"] = token
    sandbox = Sandbox("monitored.handler", AGENT_HANDLERS, env=env,
                      function_name=f"collector-{name}", memory_mb=256, region="eu-west-1")
    sandbox.start()
    if not sandbox.wait_ready(20.0):
        sandbox.stop()
        pytest.fail(f"the sandbox did not finish its init\n{sandbox.output}")
    return sandbox


def _clean(sandbox: Sandbox) -> None:
    output = sandbox.stdout + sandbox.stderr
    assert "lambdascope: internal error" not in output, output


def test_reports_from_the_agent_are_each_stored_once(tmp_path: Any,
                                                     collector: Collector) -> None:
    sandbox = _sandbox(tmp_path, collector.url, TOKEN)
    try:
        expected: dict[str, str] = {}
        for i in range(12):
            event = {"action": "raise", "message": f"bad order {i}"} if i % 4 == 3 else {}
            result = sandbox.invoke(event, 5.0)
            expected[result.request_id] = "error" if i % 4 == 3 else "ok"
        assert wait_for(lambda: len(stored_ids(collector, function="collector-agent"))
                        >= len(expected))
    finally:
        sandbox.stop()
    _clean(sandbox)
    ids = stored_ids(collector, function="collector-agent")
    assert sorted(ids) == sorted(expected)  # each once
    listed = collector.get("/api/invocations", function="collector-agent", since="0",
                           limit=100).json()["invocations"]
    assert {i["request_id"]: i["status"] for i in listed} == expected
    assert sum(i["cold_start"] for i in listed) == 1
    # what the agent sent is the report stored, spans and logs included
    first = next(rid for rid, status in expected.items() if status == "ok")
    shown = collector.get(f"/api/invocations/{first}").json()
    assert shown["invocation"]["invocation"]["request_id"] == first
    assert any(s["name"] == "work" for s in shown["invocation"]["spans"])
    assert any("working on" in line["message"] for line in shown["logs"])
    stats = collector.get("/api/stats", function="collector-agent", since="1h").json()
    entry = stats["functions"][0]
    assert entry["invocations"] == 12
    assert entry["error_rate"] == pytest.approx(3 / 12)
    errors = collector.get("/api/errors", function="collector-agent").json()["errors"]
    assert [e["count"] for e in errors] == [3]
    assert errors[0]["type"] == "ValueError"


class DroppingProxy:
    """A TCP proxy to the collector that, on its first ``drop`` connections, forwards the
    request but not the answer (the connection is closed when the answer starts): the report
    is stored, the agent sees no answer, spools it and sends it again later."""

    def __init__(self, target: str, drop: int) -> None:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.drop = drop
        self.connections = 0
        self.answers: list[bytes] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                drop = self.drop > 0
                self.drop -= 1 if drop else 0
            threading.Thread(target=self._handle, args=(client, drop), daemon=True).start()

    def _handle(self, client: socket.socket, drop: bool) -> None:
        upstream = socket.create_connection(self.target)

        def pump(src: socket.socket, dst: socket.socket, record: bool) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if record:
                        with self._lock:
                            self.answers.append(data)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
        if drop:
            try:
                upstream.recv(1)  # the answer starts: the report is stored
            except OSError:
                pass
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            return
        pump(upstream, client, True)

    def duplicates_answered(self) -> int:
        with self._lock:
            text = b"".join(self.answers).decode("latin-1")
        return sum(int(n) for n in re.findall(r'"duplicates":(\d+)', text))

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def test_the_spools_retries_are_stored_once(tmp_path: Any, collector: Collector) -> None:
    proxy = DroppingProxy(collector.url, drop=2)
    sandbox = _sandbox(tmp_path, proxy.url, TOKEN, name="retry")
    invoked: list[str] = []
    try:
        for _ in range(4):
            invoked.append(sandbox.invoke({}, 5.0).request_id)
            time.sleep(0.2)
        # Later invocations flush what waits in the spool (after the agent's back-off).
        def all_stored() -> bool:
            invoked.append(sandbox.invoke({}, 5.0).request_id)
            return len(stored_ids(collector, function="collector-retry")) >= len(invoked) - 1

        assert wait_for(all_stored, timeout_s=40.0, every_s=1.0)
        wait_for(lambda: len(stored_ids(collector, function="collector-retry"))
                 == len(invoked), timeout_s=10.0)
    finally:
        sandbox.stop()
        proxy.close()
    _clean(sandbox)
    ids = stored_ids(collector, function="collector-retry")
    assert sorted(ids) == sorted(invoked)  # every invocation once
    assert proxy.duplicates_answered() >= 1  # a report did arrive twice


def test_an_agent_with_a_wrong_token_is_refused(tmp_path: Any, collector: Collector) -> None:
    sandbox = _sandbox(tmp_path, collector.url, "not-the-token", name="badtoken")
    try:
        for _ in range(3):
            assert sandbox.invoke({}, 5.0).ok
        assert wait_for(lambda: "401" in sandbox.stderr + sandbox.stdout, timeout_s=10)
    finally:
        sandbox.stop()
    assert stored_ids(collector, function="collector-badtoken") == []


# -- bodies -------------------------------------------------------------------------------------
def test_malformed_and_invalid_bodies_are_400(collector: Collector) -> None:
    for body in (b"{", b"[1,2", b"", b'{"schema": NaN}', b"\xff\xff"):
        r = collector.post(body)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) == {"error"}
    reports = [make_report() for _ in range(4)]
    reports[2]["invocation"]["status"] = "fine"
    r = collector.post(reports)
    assert r.status_code == 400
    assert r.json()["error"].startswith("report 2: data.invocation.status must be one of")
    assert stored_ids(collector) == []


def test_oversized_bodies_are_413_without_reading_them(collector: Collector) -> None:
    auth = f"Authorization: Bearer {TOKEN}".encode()
    started = time.monotonic()
    status, headers, body = raw_exchange(
        collector.url,
        b"POST /v1/reports HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\nContent-Length: 10000000000",
        b"x" * 65536)
    assert status == 413
    assert headers["connection"] == "close"
    assert time.monotonic() - started < 3
    # streamed without a length: cut at the limit
    chunk = b"10000\r\n" + b"[" * 65536 + b"\r\n"
    status, _, body = raw_exchange(
        collector.url,
        b"POST /v1/reports HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\nTransfer-Encoding: chunked",
        chunk * 100)  # 6.5 MB
    assert status == 413
    assert "larger than 5242880 bytes" in json.loads(body)["error"]
    # just over the limit, sent whole
    r = collector.post(b" " * (5 * 1024 * 1024 + 1))
    assert r.status_code == 413
    assert collector.get("/api/health").status_code == 200


def test_a_gzip_bomb_is_413_quickly_and_the_server_stays_up(collector: Collector) -> None:
    psutil = pytest.importorskip("psutil")
    bomb = gzip_bomb(1024)  # 1 GB of zeros in about 1 MB
    assert len(bomb) < 2 * 1024 * 1024
    started = time.monotonic()
    r = collector.post(bomb, headers={"Content-Encoding": "gzip"})
    elapsed = time.monotonic() - started
    assert r.status_code == 413, r.text
    assert "decompresses to more than" in r.json()["error"]
    assert elapsed < 3, elapsed
    assert collector.get("/api/health").status_code == 200
    assert collector.post(make_report()).status_code == 202
    assert collector.proc is not None
    rss_mb = psutil.Process(collector.proc.pid).memory_info().rss / 1e6
    assert rss_mb < 400, rss_mb


def test_sql_looking_filters_are_only_values(collector: Collector) -> None:
    assert collector.post([make_report(function="orders", with_span=True)
                           for _ in range(3)]).status_code == 202
    for value in ("orders' OR '1'='1", "'; DROP TABLE invocations; --",
                  "orders\" OR 1=1 --", "%", "orders) UNION SELECT sqlite_version() --"):
        for path in ("/api/stats", "/api/invocations", "/api/dependencies", "/api/errors",
                     "/api/logs"):
            r = collector.get(path, function=value)
            assert r.status_code == 200, (path, value, r.text)
            assert "orders" not in json.dumps(r.json()).replace(value, ""), (path, value)
        r = collector.get("/api/logs", q=value)
        assert r.status_code == 200
    assert len(stored_ids(collector, function="orders")) == 3


# -- concurrency --------------------------------------------------------------------------------
_POSTER = """
import sys, httpx
sys.path.insert(0, {here!r})
from collector_harness import make_report
url, token, tag, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
stored = 0
with httpx.Client(base_url=url, headers={{"Authorization": "Bearer " + token}},
                  timeout=60) as client:
    for b in range(batches):
        reports = [make_report(f"{{tag}}-{{b}}-{{i}}", function="concurrent")
                   for i in range(100)]
        r = client.post("/v1/reports", json=reports)
        assert r.status_code == 202, r.text
        stored += r.json()["stored"]
print(stored)
"""


def test_concurrent_ingestion_counts_every_report(collector: Collector) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _POSTER.format(here=HERE), collector.url, TOKEN,
             f"proc{n}", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(4)
    ]
    statuses: list[int] = []
    stored = 0

    def single(thread: int) -> int:
        got = 0
        with collector.client() as client:
            for i in range(50):
                r = client.post("/v1/reports", json=make_report(f"thread{thread}-{i}",
                                                                function="concurrent"))
                statuses.append(r.status_code)
                got += r.json()["stored"]
                if i % 10 == 0:  # readers meanwhile
                    assert client.get("/api/stats", params={"function": "concurrent"}
                                      ).status_code == 200
        return got

    with ThreadPoolExecutor(8) as pool:
        stored += sum(pool.map(single, range(8)))
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        stored += int(out.strip())
    assert set(statuses) == {202}
    assert stored == 8 * 50 + 4 * 5 * 100
    ids = stored_ids(collector, function="concurrent")
    assert len(ids) == len(set(ids)) == stored
    entry = collector.get("/api/stats", function="concurrent", since="1h").json()["functions"]
    assert entry[0]["invocations"] == stored


# -- shutdown --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly_with_every_acknowledged_report_kept(
    tmp_path: Any, sig: int
) -> None:
    db = tmp_path / "reports.db"
    c = Collector(db).start()
    accepted: list[int] = []
    stop_now = threading.Event()

    def post_batches() -> None:
        with c.client() as client:
            for b in range(40):
                try:
                    r = client.post("/v1/reports", json=[
                        make_report(f"b{b}-{i}", function="shutdown") for i in range(100)])
                except httpx.HTTPError:
                    return
                if r.status_code != 202:
                    return
                accepted.append(r.json()["stored"])
                if b == 2:
                    stop_now.set()

    poster = threading.Thread(target=post_batches)
    poster.start()
    assert stop_now.wait(30)
    assert c.stop(sig) == 0, c.stderr
    poster.join(30)
    assert "Traceback" not in c.stderr, c.stderr
    assert not os.path.exists(str(db) + "-wal") or os.path.getsize(str(db) + "-wal") == 0
    with Store(db) as store, store.reader() as conn:
        count = conn.execute(
            "SELECT count(*) FROM invocations WHERE function = 'shutdown'").fetchone()[0]
    assert count == sum(accepted) >= 300


# -- start-up refusals and bad arguments ---------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_no_token_no_listening_beyond_loopback(tmp_path: Any, host: str) -> None:
    done = run_server("--host", host, "--port", "0", "--db", str(tmp_path / "r.db"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"refusing to listen on {host} without a token" in lines[0]
    assert not (tmp_path / "r.db").exists()


def test_beyond_loopback_with_a_token_from_the_environment(tmp_path: Any) -> None:
    c = Collector(tmp_path / "r.db", host="0.0.0.0", env={"LAMBDASCOPE_TOKEN": TOKEN})
    with c:
        assert "token required" in c.ready_line
        url = c.url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(url + "/api/health").status_code == 401
        assert httpx.get(url + "/api/health",
                         headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_localhost_needs_no_token(tmp_path: Any) -> None:
    with Collector(tmp_path / "r.db", host="localhost") as c:
        assert "no token" in c.ready_line
        assert c.get("/api/health").status_code == 200


def _bad_args(tmp_path: Any) -> list[list[str]]:
    not_toml = tmp_path / "rules.toml"
    not_toml.write_text("interval = \n[[rules\n")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    db = str(tmp_path / "ok.db")
    return [
        ["--port", "70000", "--db", db],
        ["--port", "http", "--db", db],
        ["--retain", "0m", "--db", db],
        ["--retain", "forever", "--db", db],
        ["--alerts", str(tmp_path / "missing.toml"), "--db", db],
        ["--alerts", str(tmp_path), "--db", db],
        ["--alerts", str(not_toml), "--db", db],
        ["--token", "", "--db", db],
        ["--token", "   ", "--db", db],
        ["--db", str(garbage), "--port", "0"],
        ["--db", "/proc/no-such-dir/r.db", "--port", "0"],
        ["--host", "no-such-host.invalid", "--db", db],
        ["--bogus-flag"],
    ]


def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Any) -> None:
    for args in _bad_args(tmp_path):
        done = run_server(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 or lines[0].startswith("usage:"), (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert "lambdascope collector: error:" in done.stderr, (args, done.stderr)


def test_a_port_in_use_is_one_line(tmp_path: Any, collector: Collector) -> None:
    port = collector.url.rsplit(":", 1)[1]
    done = run_server("--port", port, "--db", str(tmp_path / "other.db"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


# -- retention ------------------------------------------------------------------------------------
def test_retention_deletes_what_is_older(tmp_path: Any) -> None:
    db = tmp_path / "reports.db"
    now = time.time() * 1000.0
    old = [make_report(f"old-{i}", start_ms=now - 3 * 3_600_000 - i) for i in range(5)]
    new = [make_report(f"new-{i}", start_ms=now - 60_000 - i) for i in range(5)]
    with Collector(db) as c:
        assert c.post(old + new).json()["stored"] == 10
        assert len(stored_ids(c)) == 10
    with Collector(db, "--retain", "2h") as c:
        assert "keeping 2h" in c.ready_line
        assert wait_for(lambda: len(stored_ids(c)) == 5, timeout_s=15)
        assert sorted(stored_ids(c)) == sorted(r["invocation"]["request_id"] for r in new)
        # a fresh report is kept
        assert c.post(make_report(f"fresh-{uuid.uuid4()}")).json()["stored"] == 1
        assert len(stored_ids(c)) == 6

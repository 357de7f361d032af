"""Fault injection under the real runtime client: nothing lost, nothing broken, nobody waits.

Every test runs ``handlers/faults_handlers.py`` under ``awslambdaric`` against the Runtime API
emulator, reporting (``http`` exporter) to :class:`FaultCollector`, a local collector the test
switches between behaving (``202``) and failing: down (connections refused), hanging after
accepting the connection, ``500``, answering slowly, ``400``/``401``/``413``.

Each test counts what it sent (one report per invocation) and what arrived: every request id
arrives, is stored once (the collector removes duplicates by request id; delivery is at least
once), and nothing is missing but what the spool bound explains (``dropped_reports``).
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import os
import pathlib
import signal
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lambdascope.runner.runtime_api import InvocationResult, Sandbox

HANDLERS = pathlib.Path(__file__).resolve().parent / "handlers"
HANDLER = "faults_handlers.handler"
INTERNAL_ERROR = "lambdascope: internal error"

FLUSH_TIMEOUT_MS = 400
#: Scheduling slack on a busy 2-core machine, added to the flush timeout in timing bounds.
MARGIN_S = 0.5
#: How long the "slow" collector takes to answer: well past the flush timeout plus the margin,
#: so an unbounded flush could not pass the bound.
SLOW_S = 2.0
VALUE = {"answer": 42, "text": "unchanged ✓", "items": [1, 2.5, None, True], "nested": {"a": []}}


# -- the collector ----------------------------------------------------------------------------


class FaultCollector:
    """A lambdascope collector on the loopback whose behaviour the test switches (``mode``):

    * ``accept``: ``202``; each report is stored (keyed by request id: duplicates collapse);
    * ``hang``: reads the request and never answers (until released);
    * ``slow``: stores the reports, then answers ``202`` after :data:`SLOW_S`;
    * ``500``, ``400``, ``401``, ``413``: that status, nothing stored;
    * :meth:`down`: nothing listens on the port any more (connections refused, kept-alive ones
      closed); :meth:`up` listens on the same port again.

    ``GET`` requests get ``200 pong`` (or hang in ``hang`` mode): the same class serves as an
    upstream the handler calls.
    """

    def __init__(self) -> None:
        self.mode = "accept"
        self.port = 0
        self._lock = threading.Condition()
        self.stored: dict[str, dict[str, Any]] = {}  # request id -> report (duplicates collapse)
        self.deliveries: Counter[str] = Counter()  # request id -> times stored
        self.offered: Counter[str] = Counter()  # request id -> times it reached us, any answer
        self.arrivals: list[dict[str, Any]] = []  # stored reports in arrival order
        self.statuses: Counter[str] = Counter()  # mode -> requests answered (or hung) in it
        self.hung = 0
        self.gets = 0
        self._release = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- switching ----------------------------------------------------------------------------
    def set(self, mode: str) -> None:
        assert mode in ("accept", "hang", "slow", "500", "400", "401", "413"), mode
        self.mode = mode
        if mode != "hang":
            self._release.set()  # hung requests end (unanswered) once the collector moves on

    def up(self) -> None:
        if self._server is not None:
            return
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with collector._lock:
                    collector._conns.add(self.connection)

            def finish(self) -> None:
                with collector._lock:
                    collector._conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def do_GET(self) -> None:  # noqa: N802
                with collector._lock:
                    collector.gets += 1
                if collector.mode == "hang":
                    self._hang()
                    return
                self._answer(200, b"pong")

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw)
                reports = body if isinstance(body, list) else [body]
                mode = collector.mode
                with collector._lock:
                    collector.statuses[mode] += 1
                    for report in reports:
                        collector.offered[report["invocation"]["request_id"]] += 1
                if mode == "hang":
                    self._hang()
                    return
                if mode in ("accept", "slow"):
                    collector._store(reports)
                if mode == "slow":
                    time.sleep(SLOW_S)
                self._answer(202 if mode in ("accept", "slow") else int(mode), b"")

            def _hang(self) -> None:
                with collector._lock:
                    collector.hung += 1
                    collector._lock.notify_all()
                collector._release.wait(30.0)
                self.close_connection = True

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True  # the client gave up (its flush budget)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up mid-request is no error of the collector

        server = Server(("127.0.0.1", self.port), Handler)  # the same port when back
        self.port = server.server_address[1]
        self._release.clear()
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def down(self) -> None:
        """Stop listening and close every open connection: the collector is gone."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._release.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    close = down

    # -- what arrived ---------------------------------------------------------------------
    def _store(self, reports: list[dict[str, Any]]) -> None:
        with self._lock:
            for report in reports:
                rid = report["invocation"]["request_id"]
                self.deliveries[rid] += 1
                if rid not in self.stored:
                    self.stored[rid] = report
                    self.arrivals.append(report)
            self._lock.notify_all()

    def ids(self) -> set[str]:
        with self._lock:
            return set(self.stored)

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        give_up = time.monotonic() + timeout_s
        with self._lock:
            while not condition():
                left = give_up - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._lock.wait(min(left, 0.05))


@pytest.fixture
def collector() -> Iterator[FaultCollector]:
    c = FaultCollector()
    yield c
    c.down()


@pytest.fixture
def upstream() -> Iterator[FaultCollector]:
    """Another local HTTP server, for the handler to call (not excluded from tracing)."""
    c = FaultCollector()
    yield c
    c.down()


# -- sandboxes --------------------------------------------------------------------------------


class Function:
    """One sandbox running :data:`HANDLER`, and the invocations it was sent."""

    def __init__(self, sandbox: Sandbox, directory: pathlib.Path, spool: pathlib.Path) -> None:
        self.sandbox = sandbox
        self.directory = directory
        self.spool = spool
        self.sent: list[str] = []  # request ids of the invocations made

    @property
    def output(self) -> str:
        return self.sandbox.stdout + self.sandbox.stderr

    @property
    def tail(self) -> str:
        """The end of the sandbox's output, for failure messages."""
        return "\n".join(self.output.splitlines()[-40:])

    def invoke(self, event: Any = None, timeout_s: float = 10.0, **kwargs: Any) -> InvocationResult:
        result = self.sandbox.invoke({"value": VALUE} if event is None else event, timeout_s,
                                     **kwargs)
        self.sent.append(result.request_id)
        return result

    def timed(self, event: Any = None) -> tuple[InvocationResult, float]:
        """Invoke, then wait until the sandbox is idle again (the report flushed after the
        response): the result and the time the sandbox was busy, in seconds."""
        t0 = time.monotonic()
        result = self.invoke(event)
        assert self.sandbox.wait_idle(10.0), f"the sandbox stayed busy\n{self.tail}"
        return result, time.monotonic() - t0

    def echo(self) -> tuple[InvocationResult, float]:
        result, busy = self.timed()
        assert result.ok, result.payload
        assert result.payload == VALUE  # the handler's result, exactly
        return result, busy


def spool_files(spool: pathlib.Path) -> list[pathlib.Path]:
    """Report files waiting in the spool (claims and temporary files excluded)."""
    return sorted(
        p for p in spool.rglob("*.jsonl") if p.is_file() and not p.name.startswith(".")
    )


def spooled_ids(spool: pathlib.Path) -> list[str]:
    out = []
    for path in spool_files(spool):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line)["invocation"]["request_id"])
    return out


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def functions(tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: ``functions(collector=..., env=..., spool=...)`` starts a sandbox reporting to
    ``collector`` (``http``), else to a file; stopped at teardown. Unless the test is marked
    ``faults``, the agent must have logged no internal error inside any sandbox."""
    started: list[Function] = []

    def start(
        collector: FaultCollector | None = None,
        env: dict[str, str] | None = None,
        spool: pathlib.Path | None = None,
    ) -> Function:
        directory = tmp_path / f"sandbox-{len(started)}"
        directory.mkdir()
        spool = spool or directory / "spool"
        full_env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(
            "LAMBDASCOPE_")}
        full_env.update({
            "LAMBDASCOPE_EXPORTERS": "http" if collector is not None else "file",
            "LAMBDASCOPE_FILE": str(directory / "reports.jsonl"),
            "LAMBDASCOPE_SPOOL_DIR": str(spool),
            "LAMBDASCOPE_FLUSH_TIMEOUT_MS": str(FLUSH_TIMEOUT_MS),
        })
        if collector is not None:
            full_env["LAMBDASCOPE_COLLECTOR_URL"] = collector.url
        full_env.update(env or {})
        sandbox = Sandbox(HANDLER, HANDLERS, env=full_env, function_name="lambdascope-faults",
                          memory_mb=256, region="eu-west-1")
        fn = Function(sandbox, directory, spool)
        started.append(fn)
        sandbox.start()
        assert sandbox.wait_ready(20.0), f"the sandbox did not finish its init\n{fn.tail}"
        return fn

    yield start
    for fn in started:
        # Idle sandboxes: no need for the SIGTERM grace (on the python3.11 runtime the main
        # thread, blocked in the runtime client, takes the signal only after it anyway).
        fn.sandbox.stop(grace_s=0.05)
    if request.node.get_closest_marker("faults") is None:
        for fn in started:
            assert INTERNAL_ERROR not in fn.output, f"the agent failed in the sandbox:\n{fn.tail}"


def deliver_everything(fn: Function, collector: FaultCollector, timeout_s: float = 8.0) -> None:
    """With the collector accepting again, keep invoking (as a live function would be) until
    every report sent so far has arrived: the back-off ends, the spool drains."""
    give_up = time.monotonic() + timeout_s
    while True:
        fn.echo()
        if set(fn.sent) <= collector.ids():
            return
        if time.monotonic() > give_up:
            missing = set(fn.sent) - collector.ids()
            raise AssertionError(
                f"{len(missing)} of {len(fn.sent)} reports never arrived; spool holds "
                f"{len(spooled_ids(fn.spool))}\n{fn.tail}"
            )
        time.sleep(0.1)  # pace the invocations while the back-off runs


def wait_stored(fn: Function, collector: FaultCollector, timeout_s: float = 2.0) -> None:
    """Wait until every report ``fn`` was sent has been stored; say what is missing if not.
    (The report is flushed before the sandbox is idle again, so little waiting is needed.)"""
    try:
        collector.wait(lambda: set(fn.sent) <= set(collector.stored), timeout_s, "the reports")
    except AssertionError:
        missing = [rid for rid in fn.sent if rid not in collector.ids()]
        errors = [line for line in fn.output.splitlines() if INTERNAL_ERROR in line]
        raise AssertionError(
            f"{len(missing)} of {len(fn.sent)} reports never arrived: {missing}; "
            f"internal errors in the sandbox: {errors}"
        ) from None


def assert_all_arrived_once(fn: Function, collector: FaultCollector) -> None:
    """Every invocation's report is stored, each request id once, nothing else."""
    assert len(set(fn.sent)) == len(fn.sent)
    assert collector.ids() == set(fn.sent)
    assert len(collector.stored) == len(fn.sent)
    assert not spooled_ids(fn.spool), "reports left in the spool after delivery"


# -- 1. a failing collector neither changes the result nor holds the sandbox ----------------------


@pytest.mark.parametrize("fault", ["refused", "hang", "500", "slow"])
def test_failing_collector_bounded_and_result_unchanged(
    functions: Any, collector: FaultCollector, fault: str
) -> None:
    fn = functions(collector)
    fn.echo()  # a healthy invocation first: the exporter holds a kept-alive connection
    if fault == "refused":
        collector.down()
    else:
        collector.set(fault)

    busy, latency = [], []
    for _ in range(4):
        result, seconds = fn.echo()  # result and payload unchanged
        busy.append(seconds)
        latency.append(result.duration_ms)

    # The flush after the response is bounded by LAMBDASCOPE_FLUSH_TIMEOUT_MS, whatever the
    # collector does (a hang or the slow answer would otherwise hold the sandbox for seconds).
    assert max(busy) < FLUSH_TIMEOUT_MS / 1000.0 + MARGIN_S, busy
    # The caller never waits for the flush: a flush in the caller's path would take the whole
    # timeout on the first failure (hang, slow).
    assert max(latency) < FLUSH_TIMEOUT_MS, latency
    assert statistics.median(latency) < 100, latency
    if fault in ("hang", "slow"):
        assert collector.statuses[fault] >= 1  # the collector was really tried

    if fault == "refused":
        collector.up()
    collector.set("accept")
    deliver_everything(fn, collector)
    assert_all_arrived_once(fn, collector)
    if fault != "slow":  # a slow collector stores what it then answers too late: resent
        assert max(collector.deliveries.values()) == 1, collector.deliveries


# -- 2. the collector comes back: what was spooled arrives ---------------------------------------


def test_reports_spooled_while_the_collector_is_down_arrive_when_it_is_back(
    functions: Any, collector: FaultCollector
) -> None:
    fn = functions(collector)
    collector.down()
    for _ in range(5):
        fn.echo()
    down_ids = list(fn.sent)

    # Spooled on disk, each report once, readable only by the owner.
    assert sorted(spooled_ids(fn.spool)) == sorted(down_ids)
    files = spool_files(fn.spool)
    assert files
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
        assert path.parent.stat().st_mode & 0o077 == 0, oct(path.parent.stat().st_mode)
    assert not collector.offered  # nothing got through while it was down

    collector.up()
    deliver_everything(fn, collector)
    assert set(down_ids) <= collector.ids()  # every earlier report
    assert_all_arrived_once(fn, collector)
    assert max(collector.deliveries.values()) == 1
    # Oldest first: the spooled reports arrive in the order they were made.
    order = [r["invocation"]["request_id"] for r in collector.arrivals]
    spooled_order = [rid for rid in order if rid in down_ids]
    assert spooled_order == down_ids


def test_collector_restarted_between_invocations_costs_no_report(
    functions: Any, collector: FaultCollector
) -> None:
    """The kept-alive connection went stale while the sandbox was idle (the collector restarted,
    or the sandbox was frozen): the report goes out on a fresh connection at once, not to the
    spool and not after a back-off."""
    fn = functions(collector)
    fn.echo()
    for _ in range(3):
        collector.down()
        collector.up()
        result, busy = fn.echo()
        assert result.request_id in collector.ids()  # delivered by its own flush
        assert busy < FLUSH_TIMEOUT_MS / 1000.0 + MARGIN_S
        assert not spooled_ids(fn.spool)
    assert_all_arrived_once(fn, collector)
    assert max(collector.deliveries.values()) == 1


def test_processes_sharing_one_spool_deliver_every_report_once(
    functions: Any, collector: FaultCollector, tmp_path: pathlib.Path
) -> None:
    """Several processes share one spool (Lambda Managed Instances: one process per concurrent
    request, one /tmp): while the collector is down they all spool; once it is back they drain
    the spool at the same time, and every report is stored once."""
    spool = tmp_path / "shared-spool"
    fns = [functions(collector, spool=spool) for _ in range(3)]
    collector.down()
    with concurrent.futures.ThreadPoolExecutor(len(fns)) as pool:
        for _ in range(4):  # the processes' invocations overlap
            list(pool.map(lambda f: f.echo(), fns))
        sent = [rid for f in fns for rid in f.sent]
        assert sorted(spooled_ids(spool)) == sorted(sent)

        collector.up()
        give_up = time.monotonic() + 8.0
        while True:
            list(pool.map(lambda f: f.echo(), fns))  # their flushes drain the spool at once
            sent = [rid for f in fns for rid in f.sent]
            if set(sent) <= collector.ids():
                break
            assert time.monotonic() < give_up, f"reports never arrived\n{fns[0].tail}"
            time.sleep(0.1)
    assert len(set(sent)) == len(sent)
    assert collector.ids() == set(sent)
    assert max(collector.deliveries.values()) == 1, "a spooled report was sent twice"
    assert not spooled_ids(spool)


# -- 3. the circuit breaker ------------------------------------------------------------------------


def test_after_a_timeout_invocations_spool_at_once_during_the_back_off(
    functions: Any, collector: FaultCollector
) -> None:
    fn = functions(collector)
    fn.echo()
    collector.set("hang")

    _, first = fn.echo()  # pays the whole flush timeout: the collector never answers
    failed_at = time.monotonic()
    assert first >= 0.9 * FLUSH_TIMEOUT_MS / 1000.0, first
    assert collector.hung == 1

    following = []
    for _ in range(3):
        _, seconds = fn.echo()
        following.append(seconds)
    # Within the back-off (about a second: these took a fraction of it) nobody pays the timeout
    # again, and the collector is not even tried.
    assert time.monotonic() - failed_at < 0.9, "too slow to test the back-off"
    assert max(following) < FLUSH_TIMEOUT_MS / 2000.0, following
    assert collector.hung == 1, "the collector was tried again during the back-off"

    # The breaker probes again later (the back-off starts at about a second).
    while collector.hung < 2:
        assert time.monotonic() - failed_at < 5.0, "the collector was never probed again"
        fn.echo()
        time.sleep(0.05)
    probed_after = time.monotonic() - failed_at
    assert probed_after >= 0.8, probed_after

    collector.set("accept")
    deliver_everything(fn, collector)
    assert_all_arrived_once(fn, collector)
    assert max(collector.deliveries.values()) == 1


# -- 4. final answers ------------------------------------------------------------------------------


REASONS = {"400": "malformed", "401": "bad token", "413": "too large"}


def test_400_401_413_are_not_retried_and_logged_once(
    functions: Any, collector: FaultCollector
) -> None:
    fn = functions(collector)
    rejected: list[str] = []
    for status in ("400", "401", "413"):
        collector.set(status)
        for _ in range(2):
            result, _ = fn.echo()
            rejected.append(result.request_id)
        assert not spooled_ids(fn.spool), f"a report refused with {status} was spooled"
    collector.set("accept")
    for _ in range(2):
        fn.echo()
    accepted = fn.sent[len(rejected):]

    # Each refused report reached the collector exactly once, and was never sent again.
    assert {rid: collector.offered[rid] for rid in rejected} == dict.fromkeys(rejected, 1)
    # Only the reports made after it accepted again are stored (refused ones are gone for good).
    assert collector.ids() == set(accepted)
    assert max(collector.deliveries.values()) == 1
    assert len(fn.sent) == len(rejected) + len(accepted)

    output = fn.output
    for status, reason in REASONS.items():
        lines = [line for line in output.splitlines()
                 if f"refused a report with {status}" in line]
        assert len(lines) == 1, f"{status}: {lines}\n{output}"
        assert reason in lines[0]
    assert INTERNAL_ERROR not in output


# -- 5. killed mid-invocation ------------------------------------------------------------------


def _kill_mid_invocation(
    fn: Function, event: dict[str, Any], under_way: Callable[[], bool]
) -> InvocationResult:
    """Invoke, wait until the handler is under way, then SIGKILL the runtime process."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(fn.invoke, event, 20.0)
        try:
            wait_until(under_way, 5.0, "the handler to be under way")
        finally:
            assert fn.sandbox.pid is not None
            os.kill(fn.sandbox.pid, signal.SIGKILL)
        died = future.result(10.0)
    assert not died.ok and died.error_type == "Runtime.ExitError", died
    assert fn.sandbox.returncode == -signal.SIGKILL
    return died


@pytest.mark.parametrize("doing", ["sleep", "http"])
def test_sigkill_mid_invocation_is_reported_as_crashed_by_the_next_process(
    functions: Any,
    collector: FaultCollector,
    upstream: FaultCollector,
    tmp_path: pathlib.Path,
    validate_report: Any,
    doing: str,
) -> None:
    spool = tmp_path / "shared-spool"  # /tmp outlives a runtime process in the sandbox
    first = functions(collector, spool=spool)
    first.echo()
    if doing == "sleep":
        marker = tmp_path / "sleeping"
        died = _kill_mid_invocation(
            first, {"action": "sleep", "seconds": 15, "marker": str(marker)}, marker.exists
        )
    else:
        upstream.set("hang")  # accepts the call and never answers: a span in flight
        died = _kill_mid_invocation(
            first, {"action": "http", "port": upstream.port}, lambda: upstream.hung >= 1
        )
    first.sandbox.stop(grace_s=0.05)
    assert collector.ids() == {first.sent[0]}  # the dead invocation sent nothing itself

    second = functions(collector, spool=spool)
    second.echo()
    sent = first.sent + second.sent
    collector.wait(lambda: set(sent) <= set(collector.stored), 5.0, "the crashed report")
    assert collector.ids() == set(sent)
    assert max(collector.deliveries.values()) == 1

    crashed = validate_report(collector.stored[died.request_id])
    assert crashed["invocation"]["status"] == "crashed"
    assert crashed["error"]["type"] == "Crashed"
    message = crashed["error"]["message"]
    assert "ended during the invocation" in message, message
    if doing == "http":
        assert "in flight: GET" in message, message
    else:
        assert "in flight" not in message, message
    others = [collector.stored[rid] for rid in sent if rid != died.request_id]
    assert [r["invocation"]["status"] for r in others] == ["ok", "ok"]
    # The crash is told once: a third process finds nothing left to report.
    second.sandbox.stop(grace_s=0.05)
    third = functions(collector, spool=spool)
    third.echo()
    assert [collector.stored[rid]["invocation"]["status"] for rid in third.sent] == ["ok"]
    assert collector.offered[died.request_id] == 1


# -- 6. failures inside the agent -----------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("point", ["spans.start", "spans.finish", "redact_url"])
def test_exception_inside_instrumentation_leaves_the_result_unchanged(
    functions: Any, collector: FaultCollector, upstream: FaultCollector, point: str
) -> None:
    fn = functions(collector, env={"FAULTS_BREAK": point})
    for _ in range(3):
        result, _ = fn.timed({"action": "http", "port": upstream.port})
        assert result.ok, f"the injected fault reached the handler: {result.payload}"
        assert result.payload == {"status": 200, "body": "pong"}
        fn.echo()
    assert upstream.gets == 3
    # Every invocation still reports (the broken part is missing from it, nothing else).
    wait_stored(fn, collector)
    assert_all_arrived_once(fn, collector)
    assert {r["invocation"]["status"] for r in collector.stored.values()} == {"ok"}
    # The failure is logged as an internal error of the agent, once per place it happened.
    logged = [line for line in fn.output.splitlines() if INTERNAL_ERROR in line]
    assert logged, fn.tail
    assert all("injected fault" in line for line in logged), logged
    sites = [line.split(INTERNAL_ERROR, 1)[1].split("(", 1)[0] for line in logged]
    assert len(sites) == len(set(sites)), logged


def test_a_broken_http_exporter_does_not_stop_the_file_exporter(
    functions: Any, collector: FaultCollector
) -> None:
    collector.down()  # http points at a port where nothing listens
    fn = functions(collector, env={"LAMBDASCOPE_EXPORTERS": "http,file"})
    for _ in range(4):
        fn.echo()
    reports_path = fn.directory / "reports.jsonl"
    wait_until(lambda: reports_path.exists() and len(reports_path.read_text().splitlines()) >= 4,
               5.0, "the file exporter's reports")
    written = [json.loads(line)["invocation"]["request_id"]
               for line in reports_path.read_text().splitlines()]
    assert written == fn.sent  # the file exporter got each report, once, in order
    # The http exporter's copies wait in the spool, each once: nothing lost there either.
    assert sorted(spooled_ids(fn.spool)) == sorted(fn.sent)
    assert all(p.parent.name == "http" for p in spool_files(fn.spool))


@pytest.mark.parametrize(
    "broken", ["unwritable", pytest.param("raises", marks=pytest.mark.faults)]
)
def test_a_broken_file_exporter_does_not_stop_the_http_exporter(
    functions: Any, collector: FaultCollector, tmp_path: pathlib.Path, broken: str
) -> None:
    env = {"LAMBDASCOPE_EXPORTERS": "file,http"}
    if broken == "unwritable":
        directory = tmp_path / "a-directory"
        directory.mkdir()
        env["LAMBDASCOPE_FILE"] = str(directory)  # EISDIR: the file exporter cannot write
    else:
        env["FAULTS_BREAK"] = "file.export"
    fn = functions(collector, env=env)
    for _ in range(4):
        fn.echo()
    wait_stored(fn, collector)
    assert collector.ids() == set(fn.sent)
    assert max(collector.deliveries.values()) == 1
    assert not list(fn.spool.glob("http/*.jsonl"))  # the http lane delivered everything
    if broken == "unwritable":  # refused for good: said once, the file exporter is off
        assert fn.output.count("cannot write reports to") == 1, fn.tail
        assert not spool_files(fn.spool)
    else:  # a failure worth retrying: the file exporter's copies wait in the spool
        assert sorted(spooled_ids(fn.spool)) == sorted(fn.sent)
        assert all(p.parent.name == "file" for p in spool_files(fn.spool))


# -- 7. invalid configuration ----------------------------------------------------------------------


INVALID = {
    "LAMBDASCOPE_FLUSH_TIMEOUT_MS": ("abc", "1000"),
    "LAMBDASCOPE_SAMPLE_RATE": ("2", "1.0"),
    "LAMBDASCOPE_SPOOL_MAX_MB": ("-1", "10.0"),
    "LAMBDASCOPE_FLUSH": ("eventually", "auto"),
    "LAMBDASCOPE_MAX_SPANS": ("lots", "500"),
    "LAMBDASCOPE_CAPTURE_LOGS": ("maybe", "true"),
}


def test_invalid_configuration_values_are_named_and_the_function_runs(
    functions: Any, collector: FaultCollector
) -> None:
    env = {name: bad for name, (bad, _) in INVALID.items()}
    fn = functions(collector, env=env)
    for _ in range(3):
        fn.echo()
    wait_stored(fn, collector)
    assert_all_arrived_once(fn, collector)
    for report in collector.stored.values():
        assert report["invocation"]["sampled"] is True  # the default rate (1.0) is in force
        assert report["logs"], "logs are captured by default"

    lines = fn.output.splitlines()
    for name, (bad, used) in INVALID.items():
        named = [line for line in lines if f"{name}=" in line]
        assert len(named) == 1, f"{name}: {named}\n{fn.tail}"
        assert repr(bad) in named[0] and f"using {used}" in named[0], named[0]
        assert "expected" in named[0]
    assert INTERNAL_ERROR not in fn.output


# -- 8. spool full -----------------------------------------------------------------------------


SPOOL_MAX_MB = 0.01  # ~10 KB: room for four reports of this handler


def test_full_spool_stays_bounded_and_the_drops_are_counted(
    functions: Any, collector: FaultCollector
) -> None:
    bound = int(SPOOL_MAX_MB * 1024 * 1024)
    fn = functions(collector, env={"LAMBDASCOPE_SPOOL_MAX_MB": str(SPOOL_MAX_MB)})
    collector.down()

    def spool_bytes() -> int:
        return sum(p.stat().st_size for p in spool_files(fn.spool))

    room = 0  # the most reports the spool held at once
    for _ in range(14):
        fn.echo()
        assert spool_bytes() <= bound
        room = max(room, len(spooled_ids(fn.spool)))
    waiting = spooled_ids(fn.spool)
    assert 0 < len(waiting) < len(fn.sent), "the bound should have dropped some reports"
    assert waiting == fn.sent[-len(waiting):]  # the oldest went first

    # The collector is back: invocations spool (and drop) until the back-off ends; the first
    # one that gets through delivers what the spool kept, and the count of what it dropped.
    collector.up()
    give_up = time.monotonic() + 8.0
    while not collector.stored:
        assert time.monotonic() < give_up, f"nothing arrived once the collector was back\n{fn.tail}"
        time.sleep(0.2)  # pace the invocations while the back-off runs
        fn.echo()
        assert spool_bytes() <= bound
        room = max(room, len(spooled_ids(fn.spool)))
    assert fn.sent[-1] in collector.ids()
    assert not spooled_ids(fn.spool)

    stored = collector.ids()
    assert stored <= set(fn.sent)
    assert max(collector.deliveries.values()) == 1
    lost = len(fn.sent) - len(stored)
    assert len(stored) <= room + 1  # what the spool had room for, and the report of the flush
    told = sum(r.get("dropped_reports", 0) for r in collector.stored.values())
    assert told == lost, f"{lost} reports were dropped but {told} were told"
    assert sum("is full" in line for line in fn.output.splitlines()) == 1, fn.tail
    # Once the drops are told, later reports tell none again.
    fn.echo()
    assert "dropped_reports" not in collector.stored[fn.sent[-1]]

#!/usr/bin/env python3
"""What one instrumented call costs: the overhead of an HTTP or AWS SDK span, per call.

    .venv/bin/python benchmarks/spans.py            # full run, about a minute and a half
    .venv/bin/python benchmarks/spans.py --quick    # fewer samples, about 20 s
    .venv/bin/python benchmarks/spans.py --json     # machine-readable results on stdout

Measured calls, each to a peer in a separate process on loopback:

(1) ``requests``: ``Session.get`` to an HTTP/1.1 keep-alive server answering ``200`` with a
    17-byte body;
(2) ``httpx``: ``Client.get`` to the same server;
(3) ``boto3``: ``sqs.get_queue_url`` against moto in server mode: moto's WSGI application (the
    one ``moto_server`` runs) behind a small HTTP/1.1 keep-alive server, because werkzeug's
    development server closes the connection after every response, which would make every
    call open a new one (a warm function keeps its connections to AWS).

Every call is timed alone (``perf_counter_ns`` and the calling thread's ``thread_time_ns``)
inside warm invocations of a handler wrapped with ``@lambdascope.monitor`` (``stdout`` exporter,
child stdout on /dev/null, a fresh ``lambdascope.testing.fake_context()`` each, a Lambda-like
environment with ``_X_AMZN_TRACE_ID``). An invocation makes N pairs of calls (HTTP: 50 pairs,
AWS: 20), far below ``LAMBDASCOPE_MAX_SPANS``.

Baseline: for each target and round two child processes take turns, one invocation at a time
(the order alternating). One is **instrumented** (what ``@monitor`` applies; each pair is one
plain call, making one span, and one inside
``lambdascope.instrumentation._suppress.suppressed(ALL)``, where the patched layers run but
make no span); the other is **uninstrumented** (``lambdascope.uninstrument()`` called before
its first call: the libraries' original functions, as in a process never instrumented). Half-way
they swap roles (crossover), each with a new session or client (for boto3, one the
instrumentation never registered its ``before-send`` hook on), and warm up again. A phase's
overhead is the instrumented process's calls against the other's calls of the same stretch of
time; the two phases are averaged, so the processes' own speeds cancel out; the figure is the
median over the rounds (6, each with fresh processes; 2 with --quick).
(Re-patching before every call in one process was tried and rejected: it leaves every call with
cold method caches and adds several hundred us to each; comparing with suppressed calls alone
would miss what the patched layers cost when passing through.)

The budgets apply to the calling thread's CPU time: the agent's work all happens in that
thread, and it leaves out the peer's response time (moto's varies by milliseconds), which makes
the wall-clock difference too noisy to resolve tens of us here; the wall figures are printed
beside. Instrumented minus suppressed is the span's own work, suppressed minus uninstrumented
what the patched layers cost when passing through. Each invocation's agent time (invocation
time minus the handler's) with N spans, against the uninstrumented role's, divided by N, is
what a span adds at the end of the invocation (building, redacting and writing the report),
beyond the call. The instrumented role checks that each instrumented call left exactly one
span, and the other calls none.

Bytecode: ``compileall`` is run over src/lambdascope and the venv's site-packages first, and
children run with ``PYTHONDONTWRITEBYTECODE`` unset, as a deployed function has .pyc files.
Standard library only, plus requests, httpx, boto3 and moto[server] (the measured calls' peers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import (  # noqa: E402  (the same environment, reference workload and helpers)
    EVENT,
    child_env,
    compile_bytecode,
    git_state,
    median,
    quantile,
    reference_work,
)

BUDGETS = {
    "requests_median_us": 50.0,
    "httpx_median_us": 50.0,
    "sqs_median_us": 80.0,
}

# (target, label, budget key, span name); run in this order.
TARGETS = (
    ("requests", "requests Session.get, loopback HTTP/1.1", "requests_median_us", "GET"),
    ("httpx", "httpx Client.get, loopback HTTP/1.1", "httpx_median_us", "GET"),
    ("sqs", "boto3 sqs.get_queue_url, moto server", "sqs_median_us", "SQS.GetQueueUrl"),
)
ROLES = ("instrumented", "uninstrumented")

# pairs: call pairs per invocation (HTTP: 100 calls, 50 spans; AWS: 40 calls, 20 spans);
# invocations: recorded invocations per process and round (half before the swap, half after),
# each half after `warmup` unrecorded ones.
FULL = {
    "rounds": 6,
    "pairs": {"requests": 50, "httpx": 50, "sqs": 20},
    "invocations": {"requests": 6, "httpx": 6, "sqs": 14},
    "warmup": 1,
}
QUICK = {
    "rounds": 2,
    "pairs": {"requests": 50, "httpx": 50, "sqs": 20},
    "invocations": {"requests": 4, "httpx": 4, "sqs": 8},
    "warmup": 1,
}

BODY = b'{"status": "ok"}\n'
# As the Lambda runtime sets it for an invocation (AWS calls carry it on, with a new Parent).
XRAY_ENV = ";".join(
    ("Root=1-67a1b2c3-0123456789abcdef01234567", "Parent=53995c3f42cd8ad8", "Sampled=1",
     "Lineage=a87bd80c:0")
)  # fmt: skip
# Fake credentials for the moto clients, passed to the session.
MOTO_KEY_ID = "AKIALAMBDASCOPEBENCH1"
MOTO_SECRET = "lambdascope-fake-secret-access-key-bench"


# -- peers (separate processes) -----------------------------------------------------------


def _read_request(rfile: Any) -> tuple[str, str, list[tuple[str, str]], bytes, bool] | None:
    """One HTTP/1.1 request: (method, target, headers, body, close), None at end of stream."""
    while True:
        line = rfile.readline(65537)
        if not line:
            return None
        if line not in (b"\r\n", b"\n"):
            break
    method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: list[tuple[str, str]] = []
    length, close = 0, False
    while True:
        h = rfile.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        k, v = k.strip(), v.strip()
        headers.append((k, v))
        if k.lower() == "content-length":
            length = int(v)
        elif k.lower() == "connection" and v.lower() == "close":
            close = True
    body = rfile.read(length) if length else b""
    return method, target, headers, body, close


def serve(respond: Any) -> None:
    """A threaded HTTP/1.1 keep-alive server on loopback; prints its port, serves forever.
    ``respond(method, target, headers, body, port) -> bytes`` makes each whole response."""
    import gc
    import socketserver
    import threading

    # The peer is not what is measured: keep its response time steady (its start-up objects,
    # moto's models above all, out of the collector's way).
    gc.collect()
    gc.freeze()

    class Handler(socketserver.StreamRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def handle(self) -> None:
            while True:
                req = _read_request(self.rfile)
                if req is None:
                    return
                method, target, headers, body, close = req
                self.connection.sendall(respond(method, target, headers, body, port))
                if close:
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    def orphaned() -> None:
        """Exit when the benchmark is gone (its end of our stdin closes), however it ended."""
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    srv = Server(("127.0.0.1", 0), Handler)
    port = srv.server_address[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    srv.serve_forever(poll_interval=0.5)


def child_http_server() -> None:
    """Child: answers every request with 200 and a small JSON body."""
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(BODY), BODY)
    )
    serve(lambda *_: response)


def child_moto_server() -> None:
    """Child: moto's server application (as ``moto_server`` runs it), behind a keep-alive
    HTTP/1.1 front instead of werkzeug's development server (which closes every connection)."""
    import io
    import logging
    from urllib.parse import unquote_to_bytes

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = DomainDispatcherApplication(create_backend_app)

    def respond(method: str, target: str, headers: Any, body: bytes, port: int) -> bytes:
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "0",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for k, v in headers:
            key = k.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = v
            elif key != "CONTENT_LENGTH":
                key = "HTTP_" + key
                environ[key] = f"{environ[key]},{v}" if key in environ else v
        started: list[Any] = []

        def start_response(status: str, hdrs: Any, exc_info: Any = None) -> Any:
            started[:] = [status, hdrs]
            return lambda data: None

        result = app(environ, start_response)
        try:
            payload = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        status, hdrs = started
        head = [f"HTTP/1.1 {status}"]
        length = None
        for k, v in hdrs:
            lk = k.lower()
            if lk == "content-length":
                length = v
            elif lk not in ("connection", "transfer-encoding"):
                head.append(f"{k}: {v}")
        if method == "HEAD":
            payload = b""
            if length is not None:
                head.append(f"Content-Length: {length}")
        else:
            head.append(f"Content-Length: {len(payload)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload

    serve(respond)


def pin(pid: int, cpu: int) -> None:
    """Pin a child to one CPU (peers to the last, the measuring children to the first), so the
    measured process and its peer do not compete for a CPU or migrate; nothing with fewer than
    two CPUs."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        try:
            os.sched_setaffinity(pid, {cpus[cpu]})
        except OSError:
            pass


class Peer:
    """A server child started with ``--_child KIND``; it prints its port on one line."""

    def __init__(self, kind: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--_child", kind],
            env=child_env(),
            stdin=subprocess.PIPE,  # never written: closed when the benchmark ends
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/tmp",
        )
        pin(self.proc.pid, -1)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.stop()
            raise RuntimeError(f"the {kind} server did not start")
        self.port = int(line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the measuring children ---------------------------------------------------------------


def make_call(target: str, port: int, name: str) -> tuple[Any, Any]:
    """(one call, cleanup), on a session or client of its own. ``name`` names the AWS resource
    this caller uses. Imports happen here, before lambdascope instruments anything."""
    if target == "requests":
        import requests

        session = requests.Session()
        url = f"http://127.0.0.1:{port}/orders/42?expand=items"

        def call() -> None:
            r = session.get(url, timeout=10)
            if r.status_code != 200 or r.content != BODY:
                raise RuntimeError(f"unexpected response {r.status_code}")

        return call, session.close
    if target == "httpx":
        import httpx

        client = httpx.Client(timeout=10)
        url = f"http://127.0.0.1:{port}/orders/42?expand=items"

        def call() -> None:
            r = client.get(url)
            if r.status_code != 200 or r.content != BODY:
                raise RuntimeError(f"unexpected response {r.status_code}")

        return call, client.close
    import boto3
    from botocore.config import Config

    session = boto3.Session(
        aws_access_key_id=MOTO_KEY_ID, aws_secret_access_key=MOTO_SECRET, region_name="us-east-1"
    )
    client = session.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    client.create_queue(QueueName=name)

    def call() -> None:
        client.get_queue_url(QueueName=name)

    return call, client.close


def child_measure(target: str, tag: str, first: str, port: int, pairs: int, span_name: str) -> None:
    """Child: one warm monitored invocation per command line on stdin (``w`` warm-up, ``r``
    recorded, ``x`` swap roles, ``q`` quit); ``ok`` on the BENCH_FD pipe after each, the results
    at the end. Starts ``instrumented`` or ``uninstrumented`` (``first``), swaps once."""
    import logging

    # One caller per role (for boto3, a client the instrumentation never saw for the
    # uninstrumented role: it registers a before-send hook on the clients it traced).
    callers = [make_call(target, port, f"bench-orders-{tag}{i}") for i in (0, 1)]

    import lambdascope
    from lambdascope.instrumentation import applied
    from lambdascope.instrumentation._suppress import ALL, suppressed
    from lambdascope.testing import fake_context

    class Count(logging.Handler):
        n = 0

        def emit(self, record: logging.LogRecord) -> None:
            Count.n += 1
            sys.stderr.write("lambdascope log: " + record.getMessage() + "\n")

    logging.getLogger("lambdascope").addHandler(Count(logging.WARNING))

    pc, tt = time.perf_counter_ns, time.thread_time_ns
    # mode -> [wall], [cpu]; I: instrumented, S: instrumented but suppressed(ALL), U0/U1: the
    # uninstrumented role's two kinds of calls (the same plain call, the second one inside
    # suppressed(ALL), which then does nothing: a check).
    times: list[dict[str, tuple[list[int], list[int]]]] = [
        {m: ([], []) for m in ("I", "S", "U0", "U1")} for _phase in (0, 1)
    ]
    agent: dict[str, list[int]] = {"instrumented": [], "uninstrumented": []}
    ref: list[int] = []
    state: dict[str, Any] = {"record": False, "n": 0, "inner": 0, "phase": 0, "role": first,
                             "swap": True}  # fmt: skip
    checks: dict[str, Any] = {
        "spans_expected": 0,
        "spans_recorded": 0,
        "spans_dropped": 0,
        "misnamed": 0,
        "stray_spans": 0,
        "applied_instrumented": "-",
        "applied_uninstrumented": "-",
    }

    def handler(event: Any, context: Any) -> Any:
        t_in = pc()
        if state["swap"]:  # a role change, before any call of the new role
            state["swap"] = False
            if state["role"] == "uninstrumented":
                lambdascope.uninstrument()
            else:
                lambdascope.instrument()
            checks["applied_" + state["role"]] = ",".join(applied())
        instrumented = state["role"] == "instrumented"
        call = callers[state["phase"]][0]
        keys = ("I", "S") if instrumented else ("U0", "U1")
        record = state["record"]
        inv = lambdascope.current()
        before = len(inv.spans) if inv is not None else 0
        for i in range(pairs):
            t0 = pc()
            reference_work()
            r = pc() - t0
            for slot in (0, 1) if (i + state["n"]) & 1 else (1, 0):
                if slot:
                    with suppressed(ALL):
                        t0 = pc()
                        c0 = tt()
                        call()
                        c1 = tt()
                        t1 = pc()
                else:
                    t0 = pc()
                    c0 = tt()
                    call()
                    c1 = tt()
                    t1 = pc()
                if record:
                    wall, cpu = times[state["phase"]][keys[slot]]
                    wall.append(t1 - t0)
                    cpu.append(c1 - c0)
            if record:
                ref.append(r)
        state["n"] += 1
        if inv is not None:
            new = inv.spans[before:]
            if instrumented:
                checks["spans_expected"] += pairs
                checks["spans_recorded"] += len(new)
                checks["misnamed"] += sum(1 for s in new if s.name != span_name)
            else:
                checks["stray_spans"] += len(new)
            checks["spans_dropped"] += inv.dropped_spans
        state["inner"] = pc() - t_in
        return {"statusCode": 200, "body": "ok"}

    monitored = lambdascope.monitor(handler)
    out = os.fdopen(int(os.environ["BENCH_FD"]), "w", buffering=1)
    out.write("ready\n")
    for line in sys.stdin:
        command = line.strip()
        if command == "q":
            break
        if command == "x":
            state["phase"] = 1
            state["role"] = "uninstrumented" if state["role"] == "instrumented" else "instrumented"
            state["swap"] = True
            out.write("ok\n")
            continue
        state["record"] = command == "r"
        ctx = fake_context()
        t0 = pc()
        monitored(EVENT, ctx)
        t1 = pc()
        if command == "r":
            agent[state["role"]].append(t1 - t0 - state["inner"])
        out.write("ok\n")
    for _call, close in callers:
        close()
    result: dict[str, Any] = {
        f"{m}_{k}_ns": [times[phase][m][j] for phase in (0, 1)]
        for m in ("I", "S", "U0", "U1")
        for j, k in enumerate(("wall", "cpu"))
    }
    result.update(
        {
            "reference_ns": ref,
            "agent_instrumented_ns": agent["instrumented"],
            "agent_uninstrumented_ns": agent["uninstrumented"],
            "checks": checks,
            "agent_log_records": Count.n,
        }
    )
    out.write(json.dumps(result) + "\n")
    out.close()


class Measurer:
    """A measuring child, driven one invocation at a time."""

    def __init__(
        self, target: str, tag: str, first: str, port: int, pairs: int, span_name: str
    ) -> None:
        r, w = os.pipe()
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
        args = [sys.executable, str(Path(__file__).resolve()), "--_child", "measure", target,
                tag, first, str(port), str(pairs), span_name]  # fmt: skip
        env = child_env(
            {"LAMBDASCOPE_EXPORTERS": "stdout", "_X_AMZN_TRACE_ID": XRAY_ENV, "BENCH_FD": str(w)}
        )
        self.proc = subprocess.Popen(
            args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=self.stderr, pass_fds=(w,), cwd="/tmp",
        )  # fmt: skip
        pin(self.proc.pid, 0)
        os.close(w)
        self.results = os.fdopen(r, "r")
        self.what = f"{target}/{tag}"

    def _expect(self, word: str) -> str:
        line = self.results.readline()
        if not line.startswith(word):
            self.proc.kill()
            self.proc.wait()
            self.stderr.seek(0)
            err = self.stderr.read().decode("utf-8", "replace")
            raise RuntimeError(f"child {self.what} failed:\n{err[-3000:]}")
        return line

    def ready(self) -> None:
        self._expect("ready")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        self._expect("ok")

    def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"q\n")
        self.proc.stdin.close()
        out = json.loads(self._expect("{"))
        self.proc.wait()
        self.stderr.seek(0)
        out["_stderr"] = self.stderr.read().decode("utf-8", "replace")
        self.stderr.close()
        self.results.close()
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- the parent ---------------------------------------------------------------------------


def cell(inst: dict[str, Any], unin: dict[str, Any], phase: int) -> dict[str, float]:
    """One phase of one round: the instrumented process's calls against the uninstrumented
    process's calls made in the same stretch of time (us)."""

    def us(res: dict[str, Any], *modes: str, clock: str) -> list[float]:
        return [x / 1000.0 for m in modes for x in res[f"{m}_{clock}_ns"][phase]]

    out: dict[str, float] = {}
    for clock in ("cpu", "wall"):
        i, sup = us(inst, "I", clock=clock), us(inst, "S", clock=clock)
        u = us(unin, "U0", "U1", clock=clock)
        out[f"{clock}_median"] = median(i) - median(u)
        out[f"{clock}_p90"] = quantile(i, 0.9) - quantile(u, 0.9)
        out[f"{clock}_span_work"] = median(i) - median(sup)
        out[f"{clock}_pass_through"] = median(sup) - median(u)
    return out


def summarise(label: str, rounds: list[list[dict[str, Any]]], pairs: int) -> dict[str, Any]:
    """Crossover estimate: in each round, the two phases' differences averaged (the two
    processes' own speeds cancel out); then the median over the rounds (fresh processes each)."""
    per_round: list[dict[str, float]] = []
    for kids in rounds:
        # kids[0] started instrumented: it is the instrumented one in phase 0.
        cells = [cell(kids[ph], kids[1 - ph], ph) for ph in (0, 1)]
        per_round.append({k: (cells[0][k] + cells[1][k]) / 2 for k in cells[0]})
    est = {k: median([r[k] for r in per_round]) for k in per_round[0]}
    round_refs = [
        median([x / 1000.0 for res in kids for x in res["reference_ns"]]) for kids in rounds
    ]

    def pooled(mode_keys: tuple[str, ...], clock: str) -> list[float]:
        return [
            x / 1000.0
            for kids in rounds
            for res in kids
            for m in mode_keys
            for part in res[f"{m}_{clock}_ns"]
            for x in part
        ]

    ref = median([x / 1000.0 for kids in rounds for res in kids for x in res["reference_ns"]])
    agent_i = median([x / 1000.0 for kids in rounds for res in kids
                      for x in res["agent_instrumented_ns"]])  # fmt: skip
    agent_u = median([x / 1000.0 for kids in rounds for res in kids
                      for x in res["agent_uninstrumented_ns"]])  # fmt: skip
    checks: dict[str, Any] = {"applied_instrumented": [], "applied_uninstrumented": []}
    for kids in rounds:
        for res in kids:
            for k, v in res["checks"].items():
                if k.startswith("applied_"):
                    checks[k].append(v)
                else:
                    checks[k] = checks.get(k, 0) + v
    for k in ("applied_instrumented", "applied_uninstrumented"):
        checks[k] = sorted(set(checks[k]))
    plain_wall, plain_cpu = pooled(("U0", "U1"), "wall"), pooled(("U0", "U1"), "cpu")
    return {
        "label": label,
        "calls_per_mode": len(pooled(("I",), "wall")),
        "calls_per_invocation": 2 * pairs,
        "spans_per_invocation": pairs,
        "rounds": len(rounds),
        "cpu_overhead_median_us": est["cpu_median"],
        "cpu_overhead_p90_us": est["cpu_p90"],
        "cpu_span_work_median_us": est["cpu_span_work"],
        "cpu_pass_through_median_us": est["cpu_pass_through"],
        "cpu_overhead_median_per_round_us": [r["cpu_median"] for r in per_round],
        "overhead_median_us": est["wall_median"],
        "overhead_p90_us": est["wall_p90"],
        "span_work_median_us": est["wall_span_work"],
        "pass_through_median_us": est["wall_pass_through"],
        "overhead_median_per_round_us": [r["wall_median"] for r in per_round],
        "uninstrumented_median_us": median(plain_wall),
        "uninstrumented_p90_us": quantile(plain_wall, 0.9),
        "cpu_uninstrumented_median_us": median(plain_cpu),
        # The uninstrumented role's two kinds of calls are the same plain call: a noise check.
        "noise_check_us": median(pooled(("U1",), "wall")) - median(pooled(("U0",), "wall")),
        "reference_median_us": ref,
        "cpu_overhead_in_reference_units": est["cpu_median"] / ref,
        "reference_per_round_us": round_refs,
        "cpu_overhead_in_reference_units_per_round": [
            r["cpu_median"] / x for r, x in zip(per_round, round_refs)
        ],
        "agent_per_invocation_uninstrumented_us": agent_u,
        "agent_per_invocation_instrumented_us": agent_i,
        "report_cost_per_span_us": (agent_i - agent_u) / pairs,
        "checks": checks,
    }


def run_round(
    target: str, span_name: str, port: int, rnd: int, cfg: dict[str, Any]
) -> list[dict[str, Any]]:
    """Two processes, one starting instrumented and one not, taking turns one invocation at a
    time (the order alternating); half-way both swap roles (then warm up again)."""
    pairs, n, warmup = cfg["pairs"][target], cfg["invocations"][target], cfg["warmup"]
    kids: list[Measurer] = []
    try:
        for k, first in enumerate(ROLES):
            kids.append(Measurer(target, f"{'pq'[k]}{rnd}", first, port, pairs, span_name))
        for kid in kids:
            kid.ready()
        for phase in (0, 1):
            if phase:
                for kid in kids:
                    kid.send("x")
            for step in range(warmup + n // 2):
                command = "w" if step < warmup else "r"
                for kid in kids if (step + phase) & 1 else kids[::-1]:
                    kid.send(command)
        return [kid.finish() for kid in kids]
    finally:
        for kid in kids:
            kid.kill()


def bench(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    log("starting the loopback HTTP server and the moto server ...")
    peers = {"http": Peer("http-server")}
    try:
        peers["moto"] = Peer("moto-server")
    except BaseException:
        peers["http"].stop()
        raise
    data: dict[str, list[list[dict[str, Any]]]] = {t[0]: [] for t in TARGETS}
    log_records = 0
    try:
        for rnd in range(cfg["rounds"]):
            for target, label, _bkey, span_name in TARGETS:
                port = peers["http" if target in ("requests", "httpx") else "moto"].port
                kids = run_round(target, span_name, port, rnd, cfg)
                for res in kids:
                    if res["_stderr"].strip():
                        log(f"  stderr of a {target} child: {res['_stderr'].strip()[:400]}")
                    log_records += res["agent_log_records"]
                data[target].append(kids)
                s = summarise(label, [kids], cfg["pairs"][target])
                log(
                    f"  round {rnd + 1}/{cfg['rounds']} {target}: {s['calls_per_mode']} calls per"
                    f" mode, overhead median {s['cpu_overhead_median_us']:.1f} us CPU, "
                    f"{s['overhead_median_us']:.1f} us wall"
                )
    finally:
        for peer in peers.values():
            peer.stop()
    out: dict[str, Any] = {
        t: summarise(label, data[t], cfg["pairs"][t]) for t, label, _b, _s in TARGETS
    }
    out["agent_log_records"] = log_records
    return out


def spans_ok(checks: dict[str, Any]) -> bool:
    """Each instrumented call left one span of the right name, the other calls none, and the
    uninstrumented role really ran without instrumentation."""
    return (
        checks["spans_recorded"] == checks["spans_expected"] > 0
        and not checks["stray_spans"]
        and not checks["spans_dropped"]
        and not checks["misnamed"]
        and all(a == "" for a in checks["applied_uninstrumented"])
        and all(a not in ("", "-") for a in checks["applied_instrumented"])
    )


def results(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for target, label, bkey, _name in TARGETS:
        s = res["spans"][target]
        budget = BUDGETS[bkey]
        ok = spans_ok(s["checks"])
        value = s["cpu_overhead_median_us"]
        out.append(
            {
                "key": bkey,
                "figure": f"{label}: instrumented - uninstrumented, calling thread's CPU time, "
                "median",
                "value": value,
                "p90": s["cpu_overhead_p90_us"],
                "wall_median": s["overhead_median_us"],
                "wall_p90": s["overhead_p90_us"],
                "unit": "us",
                "budget": budget,
                # A run where the spans were not what they should be measured nothing.
                "result": ("PASS" if value <= budget else "MISS") if ok else "MISS",
                "spans_checked": ok,
            }
        )
    return out


def print_table(res: dict[str, Any]) -> None:
    m = res["meta"]
    print(
        f"lambdascope span overhead  {m['date']}  Python {m['python']}  {m['cpus']} CPUs  "
        f"load {m['loadavg']} -> {m['loadavg_end']}  mode {m['mode']}  source {m['source']}"
    )
    print(f"bytecode: compiled ({m['bytecode']}); children run with PYTHONDONTWRITEBYTECODE unset")
    print(
        "per call: instrumented minus uninstrumented (crossover of two processes taking turns), "
        "single calls inside warm monitored invocations;\nbudgeted: the calling thread's CPU "
        "time (wall clock beside it)\n"
    )
    w0 = max(len(t[1]) for t in TARGETS)
    print(
        f"{'call':<{w0}}  {'CPU median':>10}  {'CPU p90':>9}  {'wall median':>11}  "
        f"{'wall p90':>9}  {'budget':>9}  result"
    )
    print("-" * (w0 + 70))
    for r, t in zip(res["results"], TARGETS):
        print(
            f"{t[1]:<{w0}}  {r['value']:>7.1f} us  {r['p90']:>6.1f} us  {r['wall_median']:>8.1f} us"
            f"  {r['wall_p90']:>6.1f} us  <= {r['budget']:>3g} us  {r['result']}"
            + ("" if r["spans_checked"] else "  (spans not as expected)")
        )
    print()
    print("details (us, per call unless noted)")
    for target, label, _b, _n in TARGETS:
        s = res["spans"][target]
        c = s["checks"]
        print(f"  {label}: {s['calls_per_mode']} calls per mode")
        print(
            f"    CPU: uninstrumented median {s['cpu_uninstrumented_median_us']:.0f}; overhead "
            f"{s['cpu_overhead_median_us']:.1f} = span work {s['cpu_span_work_median_us']:.1f} "
            f"(instrumented - suppressed) + pass-through {s['cpu_pass_through_median_us']:.1f} "
            "(suppressed - uninstrumented); per round: "
            + ", ".join(f"{x:.0f}" for x in s["cpu_overhead_median_per_round_us"])
        )
        print(
            f"    wall: uninstrumented median {s['uninstrumented_median_us']:.0f} p90 "
            f"{s['uninstrumented_p90_us']:.0f}; overhead {s['overhead_median_us']:.1f} = span "
            f"work {s['span_work_median_us']:.1f} + pass-through "
            f"{s['pass_through_median_us']:.1f}; per round: "
            + ", ".join(f"{x:.0f}" for x in s["overhead_median_per_round_us"])
        )
        print(
            f"    CPU reference workload {s['reference_median_us']:.1f} (per round "
            + ", ".join(f"{x:.0f}" for x in s["reference_per_round_us"])
            + f"): CPU overhead = {s['cpu_overhead_in_reference_units']:.2f} x reference (per "
            "round "
            + ", ".join(f"{x:.2f}" for x in s["cpu_overhead_in_reference_units_per_round"])
            + f"); noise check (the same plain call in its two slots, wall): "
            f"{s['noise_check_us']:+.1f}"
        )
        print(
            f"    at the end of the invocation: {s['report_cost_per_span_us']:.1f} more per span "
            f"(agent time per invocation {s['agent_per_invocation_uninstrumented_us']:.0f} "
            f"without spans, {s['agent_per_invocation_instrumented_us']:.0f} with "
            f"{s['spans_per_invocation']}); spans {c['spans_recorded']}/{c['spans_expected']}, "
            f"stray {c['stray_spans']}, dropped {c['spans_dropped']}, misnamed {c['misnamed']}"
        )
    print(f"  agent warnings logged: {res['spans']['agent_log_records']}")
    print(f"\n(run took {m['elapsed_s']:.0f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (about 20 s)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns._child:
        kind = ns._child[0]
        if kind == "measure":
            target, tag, first, port, pairs, span_name = ns._child[1:7]
            child_measure(target, tag, first, int(port), int(pairs), span_name)
        elif kind == "http-server":
            child_http_server()
        elif kind == "moto-server":
            child_moto_server()
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cfg = QUICK if ns.quick else FULL
    started = time.perf_counter()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "mode": "quick" if ns.quick else "full",
        "source": git_state(),
        "config": cfg,
    }
    log("compiling bytecode ...")
    meta["bytecode"] = compile_bytecode()
    spans = bench(cfg, log)
    meta["elapsed_s"] = time.perf_counter() - started
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res: dict[str, Any] = {"meta": meta, "budgets": BUDGETS, "spans": spans}
    res["results"] = results(res)
    if ns.json:
        json.dump(res, sys.stdout, indent=2)
        print()
    else:
        print_table(res)
    return 0 if all(r["result"] != "MISS" for r in res["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())

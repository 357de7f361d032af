"""What a caller sees with delivery after the response, under the Runtime API emulator.

Four sandboxes run the same trivial handler under the real awslambdaric client against
lambdascope's Runtime API emulator (:data:`SANDBOXES`): bare with no extension, bare beside a
plain idle extension, a control whose agent extension is registered but idle, and the handler
under ``@monitor`` (default ``LAMBDASCOPE_FLUSH=auto``: the internal extension delivers after
the response). For each warm invocation, interleaved between the four:

* **caller latency**: from the moment the runtime took the event to the moment it posted the
  result (what the caller waits for, as the emulator measures it);
* **busy time**: from the event taken to the moment the sandbox is idle again (the runtime and
  every extension asked for their next event: when Lambda would freeze it, and the earliest the
  next invocation can start).

Reported: median and p90 of monitored minus each of the others (the budget: minus the
control), per exporter (``stdout`` and ``emf`` to the sandbox's pipe, ``http`` to a loopback
collector, ``otlp`` to a loopback OTLP/HTTP receiver in a process of its own). Budgets (issues
9 and 10): caller latency ≤ 50 µs, busy time ≤ 0.7 ms. Run:
``.venv/bin/python benchmarks/after_response.py [--quick]``.

The agent's own account of each invocation (``agent.overhead`` in its report: time on the
caller's path and after the response) is read back for ``stdout`` and ``http``; ``emf`` and
``otlp`` output carries no ``agent.overhead``, so there is none for them.

:class:`Receiver` (also used by ``overhead.py`` (b)) is a minimal, fast HTTP/1.1 keep-alive
server in a process of its own (``after_response.py --_serve``): it answers ``POST /v1/reports``
with 202 and ``POST /v1/traces|metrics|logs`` with 200 and an empty protobuf body (an
``Export*ServiceResponse`` with nothing rejected), and counts the requests per path.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lambdascope.runner.runtime_api import Sandbox  # noqa: E402

HANDLERS = ROOT / "benchmarks" / "handlers"
SANDBOXES = {
    "bare": "bench_bare.bare",  # never imports lambdascope
    # The same handler unmonitored in a module that decorates another: the agent's extension is
    # registered but idle, so the sandbox costs the emulator what any sandbox with an extension
    # costs it. Monitored minus control is the agent's own share.
    "control": "bench_handlers.unmonitored",
    # The same, beside a plain idle extension that reads each event as it comes.
    "plain_ext": "bench_bare_ext.bare",
    "monitored": "bench_handlers.monitored",
}


class Collector:
    def __init__(self) -> None:
        outer = self
        self.reports: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    doc = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
                    outer.reports.extend(doc if isinstance(doc, list) else [doc])
                except ValueError:
                    pass
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def serve() -> None:
    """Child (``--_serve``): a tiny threaded HTTP/1.1 keep-alive receiver. It reads each
    request's body and answers at once, in one write; ``GET /count`` returns the POSTs
    received per path as JSON. Prints its port on stdout."""
    import socketserver

    received: dict[str, int] = {}
    lock = threading.Lock()
    otlp = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"

    class Handler(socketserver.StreamRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def handle(self) -> None:
            rfile, conn = self.rfile, self.connection
            while True:
                line = rfile.readline(65537)
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    continue
                method, path, _ = line.split(b" ", 2)
                length, close = 0, False
                while True:
                    h = rfile.readline(65537)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        length = int(v)
                    elif k == b"connection" and v.strip().lower() == b"close":
                        close = True
                if length:
                    rfile.read(length)
                path = path.split(b"?", 1)[0]
                if method == b"POST" and (path in OTLP_PATHS or path == b"/v1/reports"):
                    with lock:
                        key = path.decode()
                        received[key] = received.get(key, 0) + 1
                    if path == b"/v1/reports":
                        conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                    else:
                        conn.sendall(otlp)
                elif method == b"GET" and path == b"/count":
                    with lock:
                        body = json.dumps(received).encode()
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                else:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                if close:
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    srv = Server(("127.0.0.1", 0), Handler)
    sys.stdout.write(f"{srv.server_address[1]}\n")
    sys.stdout.flush()
    srv.serve_forever(poll_interval=0.5)


OTLP_PATHS = (b"/v1/traces", b"/v1/metrics", b"/v1/logs")


class Receiver:
    """:func:`serve` in a process of its own (so that it never competes with the caller's
    threads for the GIL): ``url`` is its base URL, :meth:`counts` what it received."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--_serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/tmp",
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            self.close()
            raise RuntimeError("the loopback receiver did not start")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        """POSTs received so far, per path (``/v1/reports``, ``/v1/traces``, ...)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/count")
            return dict(json.loads(conn.getresponse().read()))
        finally:
            conn.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def one(sandbox: Sandbox) -> tuple[float, float]:
    t0 = time.monotonic()
    result = sandbox.invoke({}, 5.0)
    assert result.ok, sandbox.output
    if not sandbox.wait_idle(5.0):
        raise RuntimeError("the sandbox did not become idle")
    busy = (time.monotonic() - t0) * 1000.0
    return float(result.duration_ms or 0.0), busy


EXPORTERS = ("stdout", "http", "emf", "otlp")
WARMUP = 20  # invocations per sandbox before the measured ones


def measure(exporter: str, n: int, collector: Collector | None = None) -> dict[str, Any]:
    """Caller latency and busy time of the four sandboxes with ``LAMBDASCOPE_EXPORTERS`` set to
    ``exporter`` (``stdout``, ``http``, ``emf`` or ``otlp``), ``n`` invocations each after the
    warm-up, interleaved. ``collector`` receives the ``http`` exporter's reports (one is made
    for the call when None); ``otlp`` gets a :class:`Receiver` of its own for the call."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("LAMBDASCOPE_", "OTEL_"))
    }
    env["LAMBDASCOPE_EXPORTERS"] = exporter
    own_collector: Collector | None = None
    receiver: Receiver | None = None
    if exporter == "http":
        if collector is None:
            collector = own_collector = Collector()
        env["LAMBDASCOPE_COLLECTOR_URL"] = collector.url
    elif exporter == "otlp":
        receiver = Receiver()
        env["LAMBDASCOPE_OTLP_ENDPOINT"] = receiver.url
    elif exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}")
    boxes = {
        name: Sandbox(handler, HANDLERS, env=dict(env), function_name="bench")
        for name, handler in SANDBOXES.items()
    }
    delivered: dict[str, Any] = {}
    own: list[dict[str, Any]] = []
    try:
        for box in boxes.values():
            box.start()
            box.wait_ready(30.0)
        # Warm up: the cold start and the first-call set-up (for otlp, importing protobuf at
        # the first export, after the response) are not counted.
        for _ in range(WARMUP):
            for box in boxes.values():
                one(box)
        latency: dict[str, list[float]] = {name: [] for name in SANDBOXES}
        busy: dict[str, list[float]] = {name: [] for name in SANDBOXES}
        names = list(SANDBOXES)
        for i in range(n):
            k = i % len(names)
            order = names[k:] + names[:k]  # each sandbox takes every place in turn
            for name in order:
                lat, b = one(boxes[name])
                latency[name].append(lat)
                busy[name].append(b)
        # What was delivered (every sandbox is idle: delivery after the response is over), and
        # the agent's own account of each measured invocation: its time on the caller's path
        # (agent.overhead.invocation_ms) and after the response (after_response_ms). emf and
        # otlp output carries no agent.overhead: there is no account for them.
        delivered["invocations"] = WARMUP + n
        lines = boxes["monitored"].stdout.splitlines()
        if exporter == "http":
            assert collector is not None
            reports = collector.reports[-n:]
            own = [r["agent"]["overhead"] for r in reports]
        elif exporter == "stdout":
            reports = [json.loads(x) for x in lines if x.startswith('{"schema"')][-n:]
            own = [r["agent"]["overhead"] for r in reports]
        elif exporter == "emf":
            delivered["emf_documents"] = sum(1 for x in lines if '"_aws"' in x)
        else:
            assert receiver is not None
            counts = receiver.counts()
            for signal in ("metrics", "traces", "logs"):
                delivered[f"otlp_{signal}_requests"] = counts.get(f"/v1/{signal}", 0)
    finally:
        for box in boxes.values():
            box.stop()
        if receiver is not None:
            receiver.close()
        if own_collector is not None:
            own_collector.server.shutdown()
            own_collector.server.server_close()

    def q(values: list[float], p: float) -> float:
        return sorted(values)[int(p * (len(values) - 1))]

    out: dict[str, Any] = {}
    for base in ("bare", "control", "plain_ext"):
        out[f"latency_median_ms_vs_{base}"] = statistics.median(
            latency["monitored"]
        ) - statistics.median(latency[base])
        out[f"latency_p90_ms_vs_{base}"] = q(latency["monitored"], 0.9) - q(latency[base], 0.9)
        out[f"busy_median_ms_vs_{base}"] = statistics.median(busy["monitored"]) - statistics.median(
            busy[base]
        )
        out[f"busy_p90_ms_vs_{base}"] = q(busy["monitored"], 0.9) - q(busy[base], 0.9)
    if own:
        out["agent_invocation_ms"] = statistics.median(o["invocation_ms"] for o in own)
        out["agent_after_response_ms"] = statistics.median(
            o.get("after_response_ms", 0.0) for o in own
        )
    else:  # emf, otlp: no report to read it from
        out["agent_invocation_ms"] = out["agent_after_response_ms"] = None
    out["agent_reports"] = len(own)
    out["delivered"] = delivered
    for name in SANDBOXES:
        out[f"{name}_latency_median_ms"] = statistics.median(latency[name])
        out[f"{name}_busy_median_ms"] = statistics.median(busy[name])
    return out


def describe(exporter: str, r: dict[str, Any]) -> list[str]:
    """The agent's own account and what was delivered, as lines of text."""
    d = r["delivered"]
    if r["agent_invocation_ms"] is not None:
        account = (
            f"the agent's own account (median of {r['agent_reports']} reports): "
            f"{r['agent_invocation_ms'] * 1000:.0f} us on the caller's path, "
            f"{r['agent_after_response_ms'] * 1000:.0f} us building the report after the response"
        )
    else:
        account = (
            f"the agent's own account: none (the {exporter} output carries no agent.overhead "
            "to read it from)"
        )
    out = [account]
    if exporter == "emf":
        out.append(
            f"EMF documents on the monitored sandbox's stdout: {d['emf_documents']} for "
            f"{d['invocations']} invocations"
        )
    elif exporter == "otlp":
        out.append(
            f"OTLP requests received for {d['invocations']} invocations: metrics "
            f"{d['otlp_metrics_requests']}, traces {d['otlp_traces_requests']}, logs "
            f"{d['otlp_logs_requests']} (none expected: the handler logs nothing)"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--_serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve:
        serve()
        return 0
    n = 100 if args.quick else 500
    collector = Collector()
    print(f"after-response overhead under the Runtime API emulator, {n} warm invocations each")
    print(
        f"{'exporter':<8} {'against':<9} {'caller latency (median / p90)':>32}"
        f" {'busy time (median / p90)':>28}"
    )
    failed = False
    for exporter in EXPORTERS:
        r = measure(exporter, n, collector)
        for base in ("bare", "plain_ext", "control"):
            lat_us = r[f"latency_median_ms_vs_{base}"] * 1000
            lat90_us = r[f"latency_p90_ms_vs_{base}"] * 1000
            busy_ms, busy90_ms = r[f"busy_median_ms_vs_{base}"], r[f"busy_p90_ms_vs_{base}"]
            lat_ok, busy_ok = lat_us <= 50.0, busy_ms <= 0.7
            if base == "control":  # the budget is the agent's own share
                failed |= not (lat_ok and busy_ok)
            lat_word, busy_word = ("PASS" if lat_ok else "MISS"), ("PASS" if busy_ok else "MISS")
            print(
                f"{exporter:<8} {base:<9} {lat_us:>12.0f} us / {lat90_us:>6.0f} us {lat_word:>6}"
                f" {busy_ms:>10.3f} ms / {busy90_ms:.3f} ms {busy_word:>5}"
            )
        for line in describe(exporter, r):
            print("         " + line)
        print(
            "         medians: "
            + ", ".join(
                f"{name} latency {r[f'{name}_latency_median_ms']:.3f} ms busy "
                f"{r[f'{name}_busy_median_ms']:.3f} ms"
                for name in SANDBOXES
            )
        )
    collector.server.shutdown()
    collector.server.server_close()
    print(
        "budgets: caller latency <= 50 us, busy time <= 0.7 ms (monitored minus the control,\n"
        "medians; 'bare' has no extension at all, so its difference also holds the emulator's\n"
        "own work for serving an extension, which Lambda does outside the sandbox)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

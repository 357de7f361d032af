"""What a caller sees with delivery after the response, under the Runtime API emulator.

Two sandboxes run under the real awslambdaric client against lambdascope's Runtime API
emulator: one with a bare handler, one with the same handler under ``@monitor`` (default
``LAMBDASCOPE_FLUSH=auto``: the internal extension delivers after the response). For each warm
invocation, interleaved between the two:

* **caller latency**: from the moment the runtime took the event to the moment it posted the
  result (what the caller waits for, as the emulator measures it);
* **busy time**: from the event taken to the moment the sandbox is idle again (the runtime and
  every extension asked for their next event: when Lambda would freeze it, and the earliest the
  next invocation can start).

Reported: median and p90 of monitored minus bare, per exporter (``stdout`` to the sandbox's pipe,
``http`` to a loopback collector). Budgets (issue 9): caller latency ≤ 50 µs, busy time
≤ 0.7 ms. Run: ``.venv/bin/python benchmarks/after_response.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


class Collector:
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def one(sandbox: Sandbox) -> tuple[float, float]:
    t0 = time.monotonic()
    result = sandbox.invoke({}, 5.0)
    assert result.ok, sandbox.output
    if not sandbox.wait_idle(5.0):
        raise RuntimeError("the sandbox did not become idle")
    busy = (time.monotonic() - t0) * 1000.0
    return float(result.duration_ms or 0.0), busy


def measure(exporter: str, n: int, collector: Collector) -> dict[str, float]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAMBDASCOPE_")}
    env["LAMBDASCOPE_EXPORTERS"] = exporter
    if exporter == "http":
        env["LAMBDASCOPE_COLLECTOR_URL"] = collector.url
    boxes = {
        name: Sandbox(f"bench_handlers.{name}", HANDLERS, env=dict(env), function_name="bench")
        for name in ("bare", "monitored")
    }
    for box in boxes.values():
        box.start()
        box.wait_ready(30.0)
    try:
        for _ in range(20):  # warm up: the cold start and the first-call set-up are not counted
            for box in boxes.values():
                one(box)
        latency: dict[str, list[float]] = {"bare": [], "monitored": []}
        busy: dict[str, list[float]] = {"bare": [], "monitored": []}
        for i in range(n):
            order = ("bare", "monitored") if i % 2 else ("monitored", "bare")
            for name in order:
                lat, b = one(boxes[name])
                latency[name].append(lat)
                busy[name].append(b)
    finally:
        for box in boxes.values():
            box.stop()

    def q(values: list[float], p: float) -> float:
        return sorted(values)[int(p * (len(values) - 1))]

    return {
        "latency_median_ms": statistics.median(latency["monitored"])
        - statistics.median(latency["bare"]),
        "latency_p90_ms": q(latency["monitored"], 0.9) - q(latency["bare"], 0.9),
        "busy_median_ms": statistics.median(busy["monitored"]) - statistics.median(busy["bare"]),
        "busy_p90_ms": q(busy["monitored"], 0.9) - q(busy["bare"], 0.9),
        "bare_latency_median_ms": statistics.median(latency["bare"]),
        "bare_busy_median_ms": statistics.median(busy["bare"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 100 if args.quick else 500
    collector = Collector()
    print(f"after-response overhead under the Runtime API emulator, {n} warm invocations each")
    print(f"{'exporter':<8} {'caller latency (median / p90)':>32} {'busy time (median / p90)':>28}")
    failed = False
    for exporter in ("stdout", "http"):
        r = measure(exporter, n, collector)
        lat_us, lat90_us = r["latency_median_ms"] * 1000, r["latency_p90_ms"] * 1000
        busy_ms, busy90_ms = r["busy_median_ms"], r["busy_p90_ms"]
        lat_ok, busy_ok = lat_us <= 50.0, busy_ms <= 0.7
        failed |= not (lat_ok and busy_ok)
        lat_word, busy_word = ("PASS" if lat_ok else "MISS"), ("PASS" if busy_ok else "MISS")
        print(
            f"{exporter:<8} {lat_us:>12.0f} us / {lat90_us:>6.0f} us {lat_word:>6}"
            f" {busy_ms:>10.3f} ms / {busy90_ms:.3f} ms {busy_word:>5}"
            f"   (bare: latency {r['bare_latency_median_ms']:.3f} ms, busy "
            f"{r['bare_busy_median_ms']:.3f} ms)"
        )
    print("budgets: caller latency <= 50 us, busy time <= 0.7 ms (monitored minus bare, medians)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What the collector (issue 11) sustains and how fast it answers: ingestion through the real
service, ``stats`` over a million stored invocations, ``show``, and the bytes stored per report.

    .venv/bin/python benchmarks/collector.py            # full run, about 3.5 min (+ a first fill)
    .venv/bin/python benchmarks/collector.py --quick    # smaller, about 1.5 min
    .venv/bin/python benchmarks/collector.py --json     # machine-readable results on stdout

Reports are made by the real agent in this process (``lambdascope.testing.capture_reports``
and ``fake_context``; a handler that makes a DynamoDB, S3 or SQS call through boto3 with a
botocore ``Stubber``, an HTTP call through ``requests`` to a loopback server, logs a line and
records a metric; cold starts by ``lambdascope.testing.reset()``, errors by raising). Those are
the templates: every report sent or stored is a copy with its own request id, trace id and span
ids, its function's name, version, log stream, memory and architecture, durations drawn around
the function's typical duration, and a start time, the reports spread over days in time order.

(1) Ingestion through ``python -m lambdascope.collector.server`` on loopback (uvicorn), one
    service and one fresh store per mode. 4 client processes, each on one kept-alive connection
    with the agent's own HTTP client (``lambdascope.exporters.http.HttpClient``, what the
    ``http`` exporter posts with) and bodies as the agent makes them (``_report.dumps``; an
    array of 100 gzipped like the exporter does for bodies over 4 KB), pre-built before the
    clock starts: (a) one report per POST, (b) 100 per POST. Throughput = reports / (first
    client's start to last client's end); the median of the rounds. At the end every report is
    counted in the store (``COUNT(*)`` of invocations and spans on a read connection) and in the
    ``stored`` of the 202 answers. (c) The same reports through ``Store.add`` in this process
    (4 threads, one report or 100 per call, fresh stores; and 100 per call with start times
    within 10 minutes, as live traffic, whose reports share rollup rows), and per report on one
    thread: the app's ``parse_reports`` (JSON and schema validation), the validation alone,
    ``store.prepare_report`` with and without the report's text, ``Store.add`` of 100; plus the
    collector's and the clients' CPU time per report; to show where the time goes (no budget).
    ``--profile`` adds a cProfile of ``Store.add`` (the calling and the writer thread).
(2) ``stats`` for one function (``orders``, 1,000,000 invocations over 14 days, beside 100,000
    of three other functions) with a window covering all the data: ``queries.stats`` on a read
    connection (the first, cold call apart, then the median of the runs), ``by="version"``
    (5 versions), and ``GET /api/stats`` from a collector on that store (client-side time). The
    store is filled through ``Store.add`` in batches of 2,000 (rows/s is a figure) and CACHED in
    /tmp under a name holding the store's schema version, a digest of the schema a new store
    gets and the row count (``--refill`` makes it again); --quick uses 100,000 invocations and
    says so.
(3) ``show`` for random stored request ids: ``queries.show`` and ``GET /api/invocations/{id}``,
    median and p95.
(4) Bytes stored per report: the store file plus its WAL after the final checkpoint of the
    collector's shutdown, over the invocations stored; the same per span; the share of each
    table (``dbstat``). From the batch ingestion's store (made by this run) and from the filled
    store.

Because the machine is a shared 2-vCPU VM, a fixed CPU workload (a JSON round trip and zlib of a
report) is timed between the phases; each figure is also given in multiples of it.
Exit status 1 when a figure misses its budget.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import http.server
import json
import logging
import math
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# (op, value): ">=" throughput, "<=" latency.
BUDGETS: dict[str, tuple[str, float]] = {
    "ingest_http_single_rps": (">=", 2000.0),
    "ingest_http_batch_rps": (">=", 10000.0),
    "stats_ms": ("<=", 300.0),
    "stats_by_version_ms": ("<=", 300.0),
    "stats_api_ms": ("<=", 300.0),
    "show_ms": ("<=", 50.0),
    "show_api_ms": ("<=", 50.0),
    "page_overview_ms": ("<=", 300.0),
    "page_function_ms": ("<=", 300.0),
    "page_invocation_ms": ("<=", 100.0),
    "page_max_kb": ("<=", 500.0),
}

FULL = {
    "clients": 4,
    "batch_size": 100,
    "rounds": 3,
    "single_n": 8000,  # per round
    "batch_n": 30000,  # per round
    "warmup": 400,
    "breakdown_n": 3000,
    "fill_rows": 1_000_000,
    "stats_runs": 15,
    "show_n": 300,
}
QUICK = {
    "clients": 4,
    "batch_size": 100,
    "rounds": 1,
    "single_n": 4000,
    "batch_n": 15000,
    "warmup": 200,
    "breakdown_n": 1000,
    "fill_rows": 100_000,
    "stats_runs": 7,
    "show_n": 100,
}

#: Bump when the generated data changes, so a cached store made by an older script is not used.
FILL_GENERATION = 1
FILL_DAYS = 14
FILL_VERSIONS = 5
FILL_CHUNK = 2000
#: The filled data ends here (2026-01-05 00:00 UTC), whatever the date of the run.
FILL_END_MS = 1_767_571_200_000.0
INGEST_DAYS = 3
INGEST_END_MS = FILL_END_MS + 30 * 86_400_000.0

# name, memory MB, architecture, typical duration ms, calls made
FUNCTIONS: dict[str, dict[str, Any]] = {
    "orders": {"memory": 512, "arch": "x86_64", "ms": 45.0,
               "calls": ["ddb_get", "sqs_send"]},
    "payments": {"memory": 1024, "arch": "arm64", "ms": 180.0,
                 "calls": ["http_post", "ddb_put"]},
    "emails": {"memory": 256, "arch": "arm64", "ms": 90.0, "calls": ["http_post_mail"]},
    "thumbnails": {"memory": 2048, "arch": "x86_64", "ms": 600.0,
                   "calls": ["s3_head", "s3_put"]},
}
HTTP_HOSTS = {"http_post": ("api.stripe.com", "/v1/charges"),
              "http_post_mail": ("api.sendgrid.com", "/v3/mail/send")}
ID = "\u00a7ID\u00a7"  # placeholder for the order number in messages


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def freeze() -> None:
    """Move what this process holds (hundreds of thousands of report dicts) out of the garbage
    collector's sight, so in-process timings do not pay for traversing it; a collector process
    holds none of it."""
    gc.collect()
    gc.freeze()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the reference workload ------------------------------------------------------------------

_REF: dict[str, Any] = {}


def reference_us(reps: int = 300) -> float:
    """Median time of a fixed workload like the collector's (a JSON round trip of a report and
    zlib level 1 of it), in microseconds."""
    report = _REF["report"]
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        text = json.dumps(report)
        json.loads(text)
        zlib.compress(text.encode(), 1)
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
    return median(samples)


# -- reports made by the agent ---------------------------------------------------------------


class _Loopback(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"id":"ch_3PQx","status":"succeeded"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def make_templates() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Reports from the real agent: per function, a few cold, warm and error invocations."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "ASIABENCHMARKFAKEKEY1")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmarkFakeSecretAccessKey0123456789abcd")
    os.environ.setdefault("AWS_REGION", "eu-west-1")
    import boto3
    import requests
    from botocore.stub import Stubber

    import lambdascope
    from lambdascope.testing import capture_reports, fake_context, reset

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Loopback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    clients = {name: boto3.client(name, region_name="eu-west-1")
               for name in ("dynamodb", "s3", "sqs")}
    stubs = {name: Stubber(c) for name, c in clients.items()}
    for stub in stubs.values():
        stub.activate()
    session = requests.Session()
    app_log = logging.getLogger("app")
    app_log.setLevel(logging.INFO)  # the root logger has no handler: nothing is printed

    def call(kind: str, oid: str) -> None:
        if kind == "ddb_get":
            stubs["dynamodb"].add_response("get_item", {"Item": {"id": {"S": oid}}})
            clients["dynamodb"].get_item(TableName="orders", Key={"id": {"S": oid}})
        elif kind == "ddb_put":
            stubs["dynamodb"].add_response("put_item", {})
            clients["dynamodb"].put_item(TableName="payments", Item={"id": {"S": oid}})
        elif kind == "sqs_send":
            stubs["sqs"].add_response("send_message", {"MessageId": "5fea7756-0ea4-451a",
                                                       "MD5OfMessageBody": "0" * 32})
            clients["sqs"].send_message(
                QueueUrl="https://sqs.eu-west-1.amazonaws.com/123456789012/emails-queue",
                MessageBody=json.dumps({"order": oid}))
        elif kind == "s3_head":
            stubs["s3"].add_response("head_object", {"ContentLength": 184_320})
            clients["s3"].head_object(Bucket="uploads-eu", Key=f"img/{oid}.jpg")
        elif kind == "s3_put":
            stubs["s3"].add_response("put_object", {"ETag": '"9b2cf535f27731c974343645a3985328"'})
            clients["s3"].put_object(Bucket="thumbnails-eu", Key=f"img/{oid}.jpg", Body=b"x")
        else:
            session.post(base + HTTP_HOSTS[kind][1], json={"order": oid})

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        oid = event["id"]
        for kind in event["calls"]:
            call(kind, oid)
        app_log.info("processed order %s", oid)
        lambdascope.metric("items", 3, "Count", channel="web")
        if event.get("fail") == "value":
            raise ValueError(f"order {oid} not found")
        if event.get("fail") == "conn":
            raise ConnectionError("could not connect to the database: connection refused")
        return {"statusCode": 200}

    handler.__qualname__ = "handler"  # as in a handler module
    handler = lambdascope.monitor(handler)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with capture_reports() as reports:
        for name, spec in FUNCTIONS.items():
            kinds: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "error": []}
            plan = ["cold", "warm", "warm", "warm", "error", "cold", "warm", "warm", "error"]
            for n, kind in enumerate(plan):
                if kind == "cold":
                    reset()
                event = {"id": ID, "calls": spec["calls"]}
                if kind == "error":
                    event["fail"] = "value" if n < 5 else "conn"
                ctx = fake_context(function_name=name, memory_limit_in_mb=spec["memory"],
                                   timeout_s=30.0 if name == "thumbnails" else 6.0,
                                   region="eu-west-1")
                reports.clear()
                try:
                    handler(event, ctx)
                except (ValueError, ConnectionError):
                    pass
                if len(reports) != 1:
                    raise SystemExit(f"the agent made {len(reports)} reports, not 1")
                report = reports[0]
                if kind == "cold" and not report["invocation"]["cold_start"]:
                    raise SystemExit("a report after reset() is not a cold start")
                kinds[kind].append(report)
            out[name] = kinds
    reset()
    server.shutdown()
    return out


class Template:
    """One agent report, ready to be copied fast (the parts that vary are rebuilt)."""

    def __init__(self, report: dict[str, Any], fn: str) -> None:
        spec = FUNCTIONS[fn]
        self.report = report
        self.fn = fn
        inv = report["invocation"]
        self.cold = bool(inv["cold_start"])
        self.error = report.get("error")
        root = report["trace"]["span_id"]
        self.spans: list[tuple[dict[str, Any], bool, float, float]] = []
        children = [s for s in report["spans"] if s["span_id"] != root]
        for s in report["spans"]:
            if s["span_id"] == root:
                self.spans.append((s, True, 0.0, 1.0))
        # Each call takes a share of the invocation: the first 5-40 %, the second 45-90 %.
        for n, s in enumerate(children):
            s = dict(s)
            attrs = dict(s["attributes"])
            if "server.address" in attrs:  # the loopback HTTP call: the real-looking host
                host, path = HTTP_HOSTS[spec["calls"][0]]
                for key in ("server.address", "net.peer.name"):
                    attrs[key] = host
                for key in ("server.port", "net.peer.port"):
                    attrs[key] = 443
                for key in ("url.full", "http.url"):
                    attrs[key] = f"https://{host}{path}"
            s["attributes"] = attrs
            s["_vary"] = [k for k, v in attrs.items() if isinstance(v, str) and ID in v]
            if s.get("status") != "ok":
                raise SystemExit(f"a template span failed: {s}")
            self.spans.append((s, False, 0.05 + 0.4 * n, 0.35 + 0.1 * n))
        self.logs = report["logs"]
        self.metrics = report["metrics"]
        self.function = dict(report["function"], architecture=spec["arch"],
                             log_group=f"/aws/lambda/{fn}")
        self.resources = dict(report["resources"], tmp_used_mb=0.6, open_fds=9, threads=2)
        self.base_ms = spec["ms"]


class Generator:
    """Report copies with their own ids, times and figures (seeded: the same data each run)."""

    def __init__(self, templates: dict[str, dict[str, list[dict[str, Any]]]], seed: int) -> None:
        self.rng = random.Random(seed)
        self.t = {fn: {kind: [Template(r, fn) for r in reports]
                       for kind, reports in kinds.items()} for fn, kinds in templates.items()}
        self.streams: dict[tuple[str, str], list[str]] = {}
        self.n = 0

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def uuid(self) -> str:
        h = self._hex(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def stream(self, fn: str, version: str, start_ms: float) -> str:
        pool = self.streams.setdefault((fn, version), [])
        if len(pool) < 12:
            day = datetime.datetime.fromtimestamp(start_ms / 1000.0, datetime.timezone.utc)
            pool.append(f"{day:%Y/%m/%d}/[{version}]{self._hex(128)}")
        return self.rng.choice(pool)

    def kind(self) -> str:
        r = self.rng.random()
        return "cold" if r < 0.02 else "error" if r < 0.035 else "warm"

    def make(self, fn: str, start_ms: float, version: str, kind: str | None = None,
             trace_id: str | None = None, parent_span_id: str | None = None) -> dict[str, Any]:
        rng = self.rng
        self.n += 1
        t = rng.choice(self.t[fn][kind or self.kind()])
        rid = self.uuid()
        oid = str(100_000 + self.n)
        dur = round(t.base_ms * rng.lognormvariate(0.0, 0.35) * (1.6 if t.cold else 1.0), 3)
        start = round(start_ms, 3)
        src = t.report
        inv = dict(src["invocation"])
        inv["request_id"] = rid
        inv["start_ms"] = start
        inv["end_ms"] = round(start + dur, 3)
        inv["duration_ms"] = dur
        if t.cold:
            inv["init_duration_ms"] = round(rng.lognormvariate(math.log(380.0), 0.2), 3)
        root = self._hex(64)
        spans = []
        for s, is_root, at, share in t.spans:
            c = dict(s)
            if is_root:
                c["span_id"] = root
                c["parent_span_id"] = parent_span_id
                c["start_ms"] = start
                c["duration_ms"] = dur
                c["attributes"] = dict(s["attributes"], **{"faas.invocation_id": rid})
            else:
                vary = c.pop("_vary")
                if vary:
                    c["attributes"] = attrs = dict(s["attributes"])
                    for k in vary:
                        attrs[k] = attrs[k].replace(ID, oid)
                c["span_id"] = self._hex(64)
                c["parent_span_id"] = root
                c["start_ms"] = round(start + at * dur, 3)
                c["duration_ms"] = round(share * dur * rng.uniform(0.8, 1.1), 3)
            spans.append(c)
        logs = [dict(line, timestamp_ms=round(start + 0.92 * dur, 3), span_id=root,
                     message=line["message"].replace(ID, oid)) for line in t.logs]
        metrics = [dict(m, timestamp_ms=round(start + 0.95 * dur, 3)) for m in t.metrics]
        peak = round(88.0 + rng.random() * 14.0 + (0.0 if t.cold else 6.0), 2)
        resources = dict(t.resources, rss_start_mb=round(peak - 3.1, 2), rss_end_mb=peak,
                         rss_peak_mb=peak, sandbox_memory_mb=round(peak + 21.5, 2),
                         sandbox_memory_peak_mb=round(peak + 24.0, 2),
                         memory_used_pct=round((peak + 24.0) / t.function["memory_limit_mb"]
                                               * 100.0, 2),
                         cpu_user_ms=round(dur * 0.3, 3), cpu_system_ms=round(dur * 0.04, 3))
        report = dict(src)
        report["agent"] = dict(src["agent"], overhead={
            "init_ms": round(rng.uniform(8.0, 14.0), 3) if t.cold else None,
            "invocation_ms": round(rng.uniform(0.18, 0.45), 3)})
        report["function"] = dict(t.function, version=version,
                                  log_stream=self.stream(fn, version, start))
        report["invocation"] = inv
        report["resources"] = resources
        report["trace"] = {"trace_id": trace_id or self._hex(128), "span_id": root,
                           "parent_span_id": parent_span_id}
        report["spans"] = spans
        report["logs"] = logs
        report["metrics"] = metrics
        if t.error:
            report["error"] = dict(t.error, message=t.error["message"].replace(ID, oid))
        return report

    def mixed(self, n: int, end_ms: float, days: float, versions: int = 3
              ) -> list[dict[str, Any]]:
        """``n`` reports of the four functions in time order over ``days`` before ``end_ms``;
        one orders invocation in ten calls payments (the same trace)."""
        out: list[dict[str, Any]] = []
        span = days * 86_400_000.0
        step = span / n
        t0 = end_ms - span
        names = ["orders", "payments", "emails", "thumbnails"]
        weights = [0.4, 0.2, 0.25, 0.15]
        while len(out) < n:
            start = t0 + len(out) * step + self.rng.random() * step
            fn = self.rng.choices(names, weights)[0]
            version = str(7 + int((start - t0) / span * versions))
            report = self.make(fn, start, version)
            out.append(report)
            if fn == "orders" and self.rng.random() < 0.1 and len(out) < n:
                out.append(self.make("payments", start + 5.0, version,
                                     trace_id=report["trace"]["trace_id"],
                                     parent_span_id=report["spans"][1]["span_id"]))
        return out


# -- the collector service and its clients ---------------------------------------------------


class Service:
    """``python -m lambdascope.collector.server --port 0 --db FILE`` on loopback."""

    def __init__(self, db: str) -> None:
        self.db = db
        env = {k: v for k, v in os.environ.items() if k != "LAMBDASCOPE_TOKEN"}
        env["PYTHONPATH"] = str(ROOT / "src")
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lambdascope.collector.server", "--host", "127.0.0.1",
             "--port", "0", "--db", db],
            stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL, text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            self.stderr.seek(0)
            raise SystemExit(f"the collector did not start: {line!r} "
                             f"{self.stderr.read().decode(errors='replace')[-2000:]}")
        self.url = line[line.index("http://"):].split()[0]
        host, _, port = self.url[len("http://"):].partition(":")
        self.host, self.port = host, int(port)

    def cpu_s(self) -> float:
        """CPU time the service has used (user + system), seconds."""
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.seek(0)
        err = self.stderr.read().decode(errors="replace").strip()
        self.stderr.close()
        if self.proc.returncode != 0 or err:
            log(f"collector on {self.db}: exit status {self.proc.returncode}; stderr: "
                f"{err[-2000:]}")


def write_bodies(path: str, bodies: list[tuple[bytes, int, bool]]) -> None:
    with open(path, "wb") as fh:
        for body, count, gz in bodies:
            fh.write(struct.pack("<IIB", len(body), count, 1 if gz else 0))
            fh.write(body)


def read_bodies(path: str) -> list[tuple[bytes, int, bool]]:
    out = []
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos < len(data):
        length, count, gz = struct.unpack_from("<IIB", data, pos)
        pos += 9
        out.append((data[pos:pos + length], count, bool(gz)))
        pos += length
    return out


def client_main(url: str, path: str) -> None:
    """A client process: load the bodies, connect, say ready, wait for go, post them all on
    one kept-alive connection, print what happened (JSON)."""
    from lambdascope.exporters.http import HttpClient

    bodies = read_bodies(path)
    client = HttpClient(url)
    statuses: dict[str, int] = {}
    stored = sent = 0
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0 = time.process_time()
    t0 = time.time()
    for body, count, gz in bodies:
        r = client.post("/v1/reports", body, "application/json", time.monotonic() + 60,
                        content_encoding="gzip" if gz else None)
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        sent += count
        if r.status == 202:
            stored += json.loads(r.body)["stored"]
    t1 = time.time()
    cpu = time.process_time() - cpu0
    print(json.dumps({"start": t0, "end": t1, "cpu_s": cpu, "requests": len(bodies),
                      "sent": sent, "stored": stored, "statuses": statuses}), flush=True)


def bodies_for(reports: list[dict[str, Any]], batch: int) -> list[tuple[bytes, int, bool]]:
    """Bodies as the agent's http exporter makes them."""
    from lambdascope._report import dumps
    from lambdascope.exporters.http import GZIP_MIN_BYTES, gzip_bytes

    out = []
    for i in range(0, len(reports), batch):
        lines = [dumps(r) for r in reports[i:i + batch]]
        body = (lines[0] if len(lines) == 1 else "[" + ",".join(lines) + "]").encode()
        gz = len(body) >= GZIP_MIN_BYTES
        out.append((gzip_bytes(body) if gz else body, len(lines), gz))
    return out


def run_clients(service: Service, reports: list[dict[str, Any]], batch: int, clients: int,
                workdir: str) -> dict[str, Any]:
    """Post ``reports`` from ``clients`` processes (report i from client i % clients, so
    together they advance in time order); the throughput."""
    files = []
    total_bytes = 0
    for c in range(clients):
        mine = reports[c::clients]
        bodies = bodies_for(mine, batch)
        total_bytes += sum(len(b) for b, _, _ in bodies)
        path = os.path.join(workdir, f"client{c}.bin")
        write_bodies(path, bodies)
        files.append(path)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    procs = [subprocess.Popen([sys.executable, __file__, "--_client", service.url, f],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for f in files]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("a client did not start")
    cpu0 = service.cpu_s()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        assert p.stdout is not None
        outs.append(json.loads(p.stdout.readline()))
        p.wait(30)
    service_cpu = service.cpu_s() - cpu0
    for f in files:
        os.unlink(f)
    start = min(o["start"] for o in outs)
    end = max(o["end"] for o in outs)
    statuses: dict[str, int] = {}
    for o in outs:
        for k, v in o["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    sent = sum(o["sent"] for o in outs)
    return {
        "reports": sent,
        "requests": sum(o["requests"] for o in outs),
        "stored": sum(o["stored"] for o in outs),
        "statuses": statuses,
        "seconds": end - start,
        "rps": sent / (end - start),
        "body_bytes_per_report": total_bytes / sent,
        # CPU per report: the service's (user + system, all its threads) and the clients'.
        "service_cpu_us": service_cpu / sent * 1e6,
        "service_cpu_share": service_cpu / (end - start),
        "clients_cpu_us": sum(o["cpu_s"] for o in outs) / sent * 1e6,
    }


def count_rows(db: str) -> dict[str, int]:
    from lambdascope.collector.store import open_reader

    with open_reader(db) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
                for t in ("invocations", "spans", "logs")}


def spans_in(reports: list[dict[str, Any]]) -> int:
    return sum(len(r["spans"]) - 1 for r in reports)  # the root span is the row itself


def bench_ingest_http(gen: Generator, cfg: dict[str, Any], workdir: str
                      ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    rounds = cfg["rounds"]
    sets: dict[str, list[list[dict[str, Any]]]] = {"single": [], "batch": []}
    warm: dict[str, list[dict[str, Any]]] = {}
    for mode in ("single", "batch"):
        n = cfg[f"{mode}_n"]
        warm[mode] = gen.mixed(cfg["warmup"], INGEST_END_MS - (rounds + 1) * 86_400_000.0, 0.5)
        for r in range(rounds):
            end = INGEST_END_MS - (rounds - r - 1) * INGEST_DAYS * 86_400_000.0
            sets[mode].append(gen.mixed(n, end, INGEST_DAYS))
    freeze()
    out: dict[str, Any] = {}
    services = {}
    try:
        for mode in ("single", "batch"):
            db = os.path.join(workdir, f"ingest-{mode}.db")
            services[mode] = Service(db)
            batch = 1 if mode == "single" else cfg["batch_size"]
            warm_res = run_clients(services[mode], warm[mode], batch, cfg["clients"], workdir)
            out[mode] = {"db": db, "rounds": [], "warmup": warm_res}
        for r in range(rounds):
            for mode in ("single", "batch"):
                batch = 1 if mode == "single" else cfg["batch_size"]
                log(f"(1) HTTP {mode}: round {r + 1}/{rounds}, {len(sets[mode][r])} reports "
                    f"from {cfg['clients']} clients ...")
                res = run_clients(services[mode], sets[mode][r], batch, cfg["clients"], workdir)
                res["reference_us"] = reference_us()
                out[mode]["rounds"].append(res)
                log(f"    {res['rps']:.0f} reports/s ({res['seconds']:.1f} s); "
                    f"statuses {res['statuses']}")
    finally:
        for s in services.values():
            s.stop()
    for mode in ("single", "batch"):
        o = out[mode]
        every = warm[mode] + [x for s in sets[mode] for x in s]
        rows = count_rows(o["db"])
        o["expected"] = {"invocations": len(every), "spans": spans_in(every)}
        o["counted"] = rows
        o["answered_stored"] = o["warmup"]["stored"] + sum(x["stored"] for x in o["rounds"])
        o["all_stored"] = (rows["invocations"] == len(every)
                           and rows["spans"] == o["expected"]["spans"]
                           and o["answered_stored"] == len(every))
        o["rps"] = median([x["rps"] for x in o["rounds"]])
        o["rps_rounds"] = [x["rps"] for x in o["rounds"]]
        o["reports_per_round"] = len(sets[mode][0])
        o["body_bytes_per_report"] = o["rounds"][0]["body_bytes_per_report"]
        o["requests_per_round"] = o["rounds"][0]["requests"]
    return out, {"single": sets["single"][0], "batch": sets["batch"][0]}


# -- Store.add in this process ---------------------------------------------------------------


def bench_ingest_store(sets: dict[str, list[dict[str, Any]]], cfg: dict[str, Any],
                       workdir: str) -> dict[str, Any]:
    from lambdascope.collector.store import Store

    out: dict[str, Any] = {}
    for mode in ("single", "batch", "batch_live"):
        reports = sets[mode]
        db = os.path.join(workdir, f"store-{mode}.db")
        store = Store(db)
        batch = 1 if mode == "single" else cfg["batch_size"]
        slices = [reports[c::cfg["clients"]] for c in range(cfg["clients"])]
        errors: list[BaseException] = []

        def work(mine: list[dict[str, Any]], store: Any = store, batch: int = batch,
                 errors: list[BaseException] = errors) -> None:
            try:
                if batch == 1:
                    for r in mine:
                        store.add(r)
                else:
                    for i in range(0, len(mine), batch):
                        store.add(mine[i:i + batch])
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        log(f"(1c) Store.add {mode}: {len(reports)} reports from {cfg['clients']} threads ...")
        threads = [threading.Thread(target=work, args=(s,)) for s in slices]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        store.close()
        if errors:
            raise errors[0]
        rows = count_rows(db)
        out[mode] = {"reports": len(reports), "seconds": seconds, "rps": len(reports) / seconds,
                     "all_stored": rows["invocations"] == len(reports),
                     "reference_us": reference_us()}
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
    return out


def bench_breakdown(reports: list[dict[str, Any]], workdir: str, reps: int = 3
                    ) -> dict[str, Any]:
    """Per report, on one thread, each step the median of ``reps`` passes: the app's
    ``parse_reports`` (JSON and schema validation) on one-report bodies and on bodies of 100,
    the quick schema check and the full validator alone, ``store.prepare_report`` with the
    report's JSON text as received (what the collector does for single reports and batches)
    and without it (the report is encoded again), and ``Store.add`` of 100 with their texts
    (prepare + the writer's transaction) on a fresh store."""
    from lambdascope._report import dumps
    from lambdascope.collector import app as app_mod
    from lambdascope.collector import store as store_mod

    texts = [dumps(r).encode() for r in reports]
    batches = [b"[" + b",".join(texts[i:i + 100]) + b"]" for i in range(0, len(texts), 100)]
    n = len(texts)
    parse = getattr(app_mod, "parse_reports", None)
    validate = app_mod.report_validator()
    check = getattr(app_mod, "report_check", lambda: None)()
    prepare = getattr(store_mod, "prepare_report", None)
    parsed = [json.loads(t) for t in texts]
    samples: dict[str, list[float]] = {}

    def timed(key: str, fn: Any) -> None:
        t0 = time.perf_counter()
        fn()
        samples.setdefault(key, []).append((time.perf_counter() - t0) / n * 1e6)

    for rep in range(reps):
        if parse is not None:
            timed("parse_single_us", lambda: [parse(t, 1000) for t in texts])
            timed("parse_batch_us", lambda: [parse(b, 1000) for b in batches])
        timed("json_loads_us", lambda: [json.loads(t) for t in texts])
        timed("validate_us", lambda: [validate(r) for r in parsed])
        if check is not None:
            timed("check_us", lambda: [check(r) for r in parsed])
        if prepare is not None:
            timed("prepare_us", lambda: [prepare(r) for r in parsed])
            timed("prepare_raw_us", lambda: [prepare(r, t) for r, t in zip(parsed, texts)])
        db = os.path.join(workdir, f"breakdown{rep}.db")
        store = store_mod.Store(db)
        timed("add_batch_us", lambda store=store: [
            store.add(parsed[i:i + 100], raw=texts[i:i + 100]) for i in range(0, n, 100)])
        store.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
    out: dict[str, Any] = {k: median(v) for k, v in samples.items()}
    for key in ("parse_single_us", "parse_batch_us", "prepare_us", "prepare_raw_us",
                "check_us"):
        out.setdefault(key, None)
    out["writer_us"] = (out["add_batch_us"] - out["prepare_raw_us"]
                        if out["prepare_raw_us"] is not None else None)
    out["reports"] = n
    out["passes"] = reps
    out["json_bytes"] = sum(len(t) for t in texts) / n
    return out


def bench_profile(reports: list[dict[str, Any]], workdir: str, top: int = 18) -> str:
    """cProfile of Store.add in batches of 100: the calling thread and the writer thread."""
    import cProfile
    import io
    import pstats

    from lambdascope.collector.store import Store

    profiles: list[cProfile.Profile] = []
    original = Store._loop

    def profiled(self: Any) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    db = os.path.join(workdir, "profile.db")
    Store._loop = profiled  # type: ignore[method-assign]
    try:
        store = Store(db)
    finally:
        Store._loop = original  # type: ignore[method-assign]
    caller = cProfile.Profile()
    caller.enable()
    for i in range(0, len(reports), 100):
        store.add(reports[i:i + 100])
    caller.disable()
    store.close()
    buf = io.StringIO()
    for name, prof in (("calling thread (Store.add)", caller), ("writer thread", profiles[0])):
        buf.write(f"--- {name}: top {top} by own time\n")
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    return buf.getvalue()


# -- the filled store ------------------------------------------------------------------------


def schema_of(db: str) -> list[tuple[str, str, str, str | None]]:
    """The tables and indexes of a store, as SQLite keeps their definitions."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            " ORDER BY type, name").fetchall()
    finally:
        conn.close()


def fill_path(rows: int) -> str:
    """Where the filled store is cached: keyed by the store's schema version and a digest of
    the schema a new store gets (which can change within a version while it is unreleased),
    the number of rows and FILL_GENERATION."""
    from lambdascope.collector.store import SCHEMA_VERSION, Store

    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "empty.db")
        Store(db).close()
        digest = hashlib.sha256(repr(schema_of(db)).encode()).hexdigest()[:10]
    return os.path.join(tempfile.gettempdir(),
                        f"lambdascope-bench-collector-schema{SCHEMA_VERSION}-{digest}-{rows}"
                        f"-g{FILL_GENERATION}.db")


def fill(gen: Generator, rows: int, path: str) -> dict[str, Any]:
    """``rows`` invocations of orders over FILL_DAYS (FILL_VERSIONS versions in turn), plus
    about a tenth as many of the other three functions (payments called by one orders
    invocation in 30, on its trace), through ``Store.add`` in chunks of FILL_CHUNK."""
    from lambdascope.collector.store import Store

    tmp = f"{path}.filling-{os.getpid()}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(tmp + suffix):
            os.unlink(tmp + suffix)
    store = Store(tmp)
    span = FILL_DAYS * 86_400_000.0
    t0 = FILL_END_MS - span
    step = span / rows
    rng = gen.rng
    add_s = 0.0
    stored = spans = 0
    chunk: list[dict[str, Any]] = []
    started = time.perf_counter()
    last_log = started
    for i in range(rows):
        start = t0 + i * step + rng.random() * step
        frac = (start - t0) / span
        report = gen.make("orders", start, str(1 + int(frac * FILL_VERSIONS)))
        chunk.append(report)
        r = rng.random()
        other_version = str(1 + int(frac * 2))
        if r < 1 / 30:
            chunk.append(gen.make("payments", start + 5.0, other_version,
                                  trace_id=report["trace"]["trace_id"],
                                  parent_span_id=report["spans"][1]["span_id"]))
        elif r < 2 / 30:
            chunk.append(gen.make("emails", start + 1.0, other_version))
        elif r < 3 / 30:
            chunk.append(gen.make("thumbnails", start + 2.0, other_version))
        if len(chunk) >= FILL_CHUNK or i == rows - 1:
            spans += spans_in(chunk)
            a = time.perf_counter()
            result = store.add(chunk)
            add_s += time.perf_counter() - a
            stored += result.stored
            chunk = []
            now = time.perf_counter()
            if now - last_log > 15:
                last_log = now
                log(f"    {i + 1}/{rows} orders invocations, {stored} rows, "
                    f"{stored / add_s:.0f} rows/s in Store.add")
    a = time.perf_counter()
    store.close()
    close_s = time.perf_counter() - a
    wall = time.perf_counter() - started
    os.replace(tmp, path)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(tmp + suffix):
            os.unlink(tmp + suffix)
    info = {"rows": stored, "orders_rows": rows, "spans": spans, "add_s": add_s,
            "close_s": close_s, "wall_s": wall, "rows_per_s": stored / add_s,
            "rows_per_s_wall": stored / wall,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "source": git_state(), "reference_us": reference_us()}
    with open(path + ".json", "w") as fh:
        json.dump(info, fh)
    return info


def bench_queries(path: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from lambdascope.collector import queries
    from lambdascope.collector.store import open_reader

    out: dict[str, Any] = {}
    with open_reader(path) as conn:
        lo, hi = conn.execute(
            "SELECT MIN(start_ms), MAX(start_ms) FROM invocations").fetchone()
        # Whole minutes around all the data: a window of days starts at its first whole minute.
        since = int(lo // 60_000) * 60_000
        until = (int(hi // 60_000) + 1) * 60_000
        orders = conn.execute("SELECT COUNT(*) FROM invocations WHERE function = 'orders'"
                              ).fetchone()[0]
        total = conn.execute("SELECT COUNT(*) FROM invocations").fetchone()[0]
        top = conn.execute("SELECT MAX(rowid) FROM invocations").fetchone()[0]
        rng = random.Random(11)
        ids: list[str] = []
        while len(ids) < 2 * cfg["show_n"]:
            found = conn.execute("SELECT request_id FROM invocations WHERE rowid = ?",
                                 (rng.randint(1, top),)).fetchone()
            if found:
                ids.append(found[0])
        out.update(since_ms=since, until_ms=until, orders_rows=orders, total_rows=total)

        def timed(fn: Any) -> tuple[float, Any]:
            t0 = time.perf_counter()
            result = fn()
            return (time.perf_counter() - t0) * 1000.0, result

        for key, by in (("stats", None), ("stats_by_version", "version")):
            first, result = timed(lambda by=by: queries.stats(
                conn, function="orders", since_ms=since, until_ms=until, by=by))
            runs = [timed(lambda by=by: queries.stats(
                conn, function="orders", since_ms=since, until_ms=until, by=by))[0]
                for _ in range(cfg["stats_runs"])]
            entries = result["functions"]
            out[key] = {"first_ms": first, "median_ms": median(runs), "max_ms": max(runs),
                        "runs": len(runs), "entries": len(entries),
                        "invocations": sum(e["invocations"] for e in entries),
                        "reference_us": reference_us()}
            if by is None:
                e = entries[0]
                out[key]["sample"] = {
                    "invocations": e["invocations"], "error_rate": e["error_rate"],
                    "cold_start_rate": e["cold_start_rate"],
                    "p50_ms": e["duration"]["all"]["p50_ms"],
                    "p99_ms": e["duration"]["all"]["p99_ms"],
                    "dependencies": len(e["dependencies"]), "errors": len(e["errors"]),
                    "per_million_usd": e["cost"]["per_million_usd"]}
            log(f"(2) {key}: first {first:.0f} ms, median {median(runs):.0f} ms "
                f"({len(entries)} entries, {out[key]['invocations']} invocations)")
        show_ids = ids[:cfg["show_n"]]
        times = []
        related = 0
        for rid in show_ids:
            ms, result = timed(lambda rid=rid: queries.show(conn, rid))
            times.append(ms)
            related += bool(result["related"])
        out["show"] = {"n": len(times), "median_ms": median(times),
                       "p95_ms": quantile(times, 0.95), "max_ms": max(times),
                       "with_related": related, "reference_us": reference_us()}
        log(f"(3) show: median {median(times):.2f} ms, p95 {quantile(times, 0.95):.2f} ms")
    # The same through the service.
    import http.client

    service = Service(path)
    try:
        conn_http = http.client.HTTPConnection(service.host, service.port, timeout=60)

        def get(url: str) -> tuple[float, int, bytes]:
            t0 = time.perf_counter()
            conn_http.request("GET", url)
            r = conn_http.getresponse()
            body = r.read()
            return (time.perf_counter() - t0) * 1000.0, r.status, body

        url = f"/api/stats?function=orders&since={since}&until={until}"
        first, status, body = get(url)
        if status != 200:
            raise SystemExit(f"/api/stats answered {status}: {body[:300]!r}")
        api_n = json.loads(body)["functions"][0]["invocations"]
        runs = []
        for _ in range(cfg["stats_runs"]):
            ms, status, body = get(url)
            runs.append(ms)
        out["stats_api"] = {"first_ms": first, "median_ms": median(runs), "max_ms": max(runs),
                            "runs": len(runs), "invocations": api_n,
                            "reference_us": reference_us()}
        log(f"(2) /api/stats: first {first:.0f} ms, median {median(runs):.0f} ms")
        times = []
        bad = 0
        for rid in ids[cfg["show_n"]:]:
            ms, status, body = get(f"/api/invocations/{rid}")
            times.append(ms)
            bad += status != 200
        out["show_api"] = {"n": len(times), "median_ms": median(times),
                           "p95_ms": quantile(times, 0.95), "max_ms": max(times),
                           "not_200": bad, "reference_us": reference_us()}
        log(f"(3) /api/invocations/{{id}}: median {median(times):.2f} ms")
        out["pages"] = bench_pages(get, since, until, ids[cfg["show_n"]:], cfg)
        conn_http.close()
    finally:
        service.stop()
    return out


# -- the dashboard ---------------------------------------------------------------------------
_ASSET = re.compile(rb'<(?:link[^>]*\bhref|script[^>]*\bsrc|img[^>]*\bsrc)="(/[^"]*)"')


def bench_pages(get: Any, since: int, until: int, ids: list[str], cfg: dict[str, Any]
                ) -> dict[str, Any]:
    """The dashboard's pages over the whole filled window: time to serve each (first and
    median of ``stats_runs``) and what a browser transfers for it (the HTML and every
    stylesheet, script and image it links, each counted once per page)."""
    window = f"since={since}&until={until}"
    pages = {
        "overview": f"/?{window}",
        "function": f"/functions/orders?{window}",
        "invocations": f"/invocations?function=orders&{window}",
        "dependencies": f"/dependencies?{window}",
        "logs": f"/logs?function=orders&{window}",
        "map": f"/map?{window}",
    }
    out: dict[str, Any] = {}
    assets: dict[str, int] = {}

    def transferred(body: bytes) -> int:
        total = len(body)
        for ref in dict.fromkeys(m.decode() for m in _ASSET.findall(body)):
            if ref not in assets:
                _, status, data = get(ref)
                if status != 200:
                    raise SystemExit(f"{ref} answered {status}")
                assets[ref] = len(data)
            total += assets[ref]
        return total

    for name, url in pages.items():
        first, status, body = get(url)
        if status != 200:
            raise SystemExit(f"{url} answered {status}: {body[:300]!r}")
        runs = [get(url)[0] for _ in range(cfg["stats_runs"])]
        out[name] = {"url": url, "first_ms": first, "median_ms": median(runs),
                     "max_ms": max(runs), "bytes": transferred(body), "html_bytes": len(body),
                     "reference_us": reference_us()}
        log(f"(5) {name}: first {first:.0f} ms, median {median(runs):.0f} ms, "
            f"{out[name]['bytes'] / 1024:.0f} KB")
    times = []
    sizes = []
    for rid in ids:
        ms, status, body = get(f"/invocations/{rid}")
        if status != 200:
            raise SystemExit(f"/invocations/{rid} answered {status}: {body[:300]!r}")
        times.append(ms)
        sizes.append(transferred(body))
    out["invocation"] = {"n": len(times), "median_ms": median(times),
                         "p95_ms": quantile(times, 0.95), "max_ms": max(times),
                         "bytes": max(sizes), "reference_us": reference_us()}
    out["max_bytes"] = max(x["bytes"] for x in out.values() if isinstance(x, dict))
    out["assets"] = assets
    log(f"(5) invocation pages: median {median(times):.1f} ms over {len(times)}")
    return out


# -- bytes -----------------------------------------------------------------------------------


def measure_bytes(db: str) -> dict[str, Any]:
    """Sizes after the final checkpoint (the store must be closed)."""
    size = os.path.getsize(db)
    wal = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
                for t in ("invocations", "spans", "logs")}
        owner = {name: table for name, table in conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')")}
        tables: dict[str, int] = {}
        try:
            for name, pgsize in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                table = owner.get(name, name)
                tables[table] = tables.get(table, 0) + pgsize
        except sqlite3.Error:
            tables = {}
        blob = conn.execute("SELECT AVG(LENGTH(report)) FROM invocations").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * conn.execute(
            "PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    n = rows["invocations"] or 1
    return {
        "file_bytes": size, "wal_bytes": wal, "free_bytes": free, "rows": rows,
        "per_report": (size + wal) / n,
        "per_span_total": (size + wal) / max(1, rows["spans"]),
        "spans_table_per_span": tables.get("spans", 0) / max(1, rows["spans"]),
        "report_blob_avg": blob,
        "tables_per_report": {t: b / n for t, b in sorted(tables.items(), key=lambda x: -x[1])},
    }


# -- the run ---------------------------------------------------------------------------------


def git_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes (read-only git calls)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head}{' + uncommitted changes in src/' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def verdict(value: float | None, key: str | None) -> str:
    if key is None or value is None:
        return ""
    op, budget = BUDGETS[key]
    ok = value >= budget if op == ">=" else value <= budget
    return "PASS" if ok else "MISS"


# (key, label, unit, number format, value, budget key or None)
Row = tuple[str, str, str, str, "float | None", "str | None"]


def build_rows(res: dict[str, Any]) -> list[Row]:
    h, s, q, b = res["ingest_http"], res["ingest_store"], res["queries"], res["bytes"]
    f = res["fill"]
    rows_n = q["orders_rows"]
    rounds = len(h["single"]["rounds"])
    return [
        ("", f"(1) ingestion, collector on loopback, {res['config']['clients']} client "
             f"processes, median of {rounds} round{'s' * (rounds > 1)}", "", "", None, None),
        ("ingest_http_single_rps", "    (a) one report per POST", "rep/s", ".0f",
         h["single"]["rps"], "ingest_http_single_rps"),
        ("ingest_http_batch_rps", f"    (b) {res['config']['batch_size']} reports per POST",
         "rep/s", ".0f", h["batch"]["rps"], "ingest_http_batch_rps"),
        ("ingest_store_single_rps", "    (c) Store.add in-process, one per call (4 threads)",
         "rep/s", ".0f", s["single"]["rps"], None),
        ("ingest_store_batch_rps", "    (c) Store.add in-process, 100 per call (4 threads)",
         "rep/s", ".0f", s["batch"]["rps"], None),
        ("ingest_store_batch_live_rps", "    (c) the same, starts within 10 minutes (live)",
         "rep/s", ".0f", s["batch_live"]["rps"], None),
        ("fill_rows_per_s", f"    filling: Store.add, {FILL_CHUNK} per call"
                            f"{' (cached fill)' if f.get('cached') else ''}",
         "rows/s", ".0f", f["rows_per_s"], None),
        ("", f"(2) stats, one function, {rows_n:,} invocations"
             f"{' (--quick: not 1,000,000)' if rows_n < 1_000_000 else ''}", "", "", None, None),
        ("stats_ms", "    queries.stats, median", "ms", ".1f", q["stats"]["median_ms"],
         "stats_ms"),
        ("stats_by_version_ms", f"    queries.stats by version ({q['stats_by_version']['entries']}"
                                f" versions), median", "ms", ".1f",
         q["stats_by_version"]["median_ms"], "stats_by_version_ms"),
        ("stats_api_ms", "    GET /api/stats, median", "ms", ".1f", q["stats_api"]["median_ms"],
         "stats_api_ms"),
        ("stats_first_ms", "    queries.stats, first call on a new connection", "ms", ".1f",
         q["stats"]["first_ms"], None),
        ("", f"(3) show, {q['show']['n']} random request ids", "", "", None, None),
        ("show_ms", "    queries.show, median", "ms", ".2f", q["show"]["median_ms"], "show_ms"),
        ("show_p95_ms", "    queries.show, p95", "ms", ".2f", q["show"]["p95_ms"], None),
        ("show_api_ms", "    GET /api/invocations/{id}, median", "ms", ".2f",
         q["show_api"]["median_ms"], "show_api_ms"),
        ("show_api_p95_ms", "    GET /api/invocations/{id}, p95", "ms", ".2f",
         q["show_api"]["p95_ms"], None),
        ("", "(4) bytes stored (file + WAL after checkpoint)", "", "", None, None),
        ("bytes_per_report", "    per report, batch-ingestion store (this run)", "B", ".0f",
         b["ingest"]["per_report"], None),
        ("bytes_per_span", "    spans table + index per span (this run)", "B", ".0f",
         b["ingest"]["spans_table_per_span"], None),
        ("bytes_per_report_filled",
         f"    per report, filled store ({b['filled']['rows']['invocations']:,} rows)", "B",
         ".0f", b["filled"]["per_report"], None),
        *page_rows(q.get("pages")),
    ]


def page_rows(p: dict[str, Any] | None) -> list[Row]:
    if not p:
        return []
    rows: list[Row] = [
        ("", "(5) dashboard pages over the same window, through the service", "", "", None,
         None),
        ("page_overview_ms", "    overview /, median", "ms", ".1f", p["overview"]["median_ms"],
         "page_overview_ms"),
        ("page_function_ms", "    function /functions/orders, median", "ms", ".1f",
         p["function"]["median_ms"], "page_function_ms"),
        ("page_invocation_ms", f"    invocation /invocations/{{id}}, median of "
                               f"{p['invocation']['n']}", "ms", ".1f",
         p["invocation"]["median_ms"], "page_invocation_ms"),
        ("page_invocation_p95_ms", "    invocation, p95", "ms", ".1f",
         p["invocation"]["p95_ms"], None),
    ]
    for name in ("invocations", "dependencies", "logs", "map"):
        rows.append((f"page_{name}_ms", f"    {p[name]['url'].split('?')[0]}, median", "ms",
                     ".1f", p[name]["median_ms"], None))
    rows.append(("page_max_kb", "    largest page transferred (HTML + CSS + JS)", "KB", ".0f",
                 p["max_bytes"] / 1024, "page_max_kb"))
    return rows


def results(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, label, unit, _fmt, value, bkey in build_rows(res):
        if not key:
            continue
        op, budget = BUDGETS[bkey] if bkey else (None, None)
        out.append({"key": key, "figure": label.strip(), "value": value, "unit": unit,
                    "budget": budget, "budget_op": op, "result": verdict(value, bkey) or None})
    return out


def print_table(res: dict[str, Any]) -> None:
    m = res["meta"]
    print(f"lambdascope collector  {m['date']}  Python {m['python']}  {m['cpus']} CPUs  "
          f"load {m['loadavg']} -> {m['loadavg_end']}  mode {m['mode']}  source {m['source']}")
    print(f"reference workload (JSON round trip + zlib of a report): {m['reference_us_start']:.1f}"
          f" us at the start, {m['reference_us_end']:.1f} us at the end\n")
    rows = build_rows(res)
    w0 = max(len(r[1]) for r in rows)
    print(f"{'figure':<{w0}}  {'value':>14}  {'budget':>14}  result")
    print("-" * (w0 + 40))
    for _key, label, unit, fmt, value, bkey in rows:
        val = f"{value:{fmt}} {unit}" if value is not None else ""
        budget = f"{BUDGETS[bkey][0]} {BUDGETS[bkey][1]:g} {unit}" if bkey else ""
        print(f"{label:<{w0}}  {val:>14}  {budget:>14}  {verdict(value, bkey)}")
    print("\ndetails")
    h = res["ingest_http"]
    for mode in ("single", "batch"):
        o = h[mode]
        ref = median([x["reference_us"] for x in o["rounds"]])
        per = 1e6 / o["rps"]
        print(f"  (1{'a' if mode == 'single' else 'b'}) {o['reports_per_round']} reports, "
              f"{o['requests_per_round']} requests per round; rounds: "
              + ", ".join(f"{x:.0f}" for x in o["rps_rounds"]) + " rep/s; "
              f"{per:.0f} us per report = {per / ref:.1f} x reference ({ref:.1f} us); body "
              f"{o['body_bytes_per_report']:.0f} B per report"
              f"{' (gzipped)' if mode == 'batch' else ''}")
        cpu = median([x["service_cpu_us"] for x in o["rounds"]])
        share = median([x["service_cpu_share"] for x in o["rounds"]])
        ccpu = median([x["clients_cpu_us"] for x in o["rounds"]])
        print(f"       collector CPU (all its threads) {cpu:.0f} us per report, busy "
              f"{share:.2f} CPU while the clients sent; the 4 clients {ccpu:.0f} us per report")
        print(f"       counted in the store: {o['counted']['invocations']} invocations, "
              f"{o['counted']['spans']} spans (sent {o['expected']['invocations']} / "
              f"{o['expected']['spans']}, incl. {o['warmup']['reports']} warm-up); 202 answers "
              f"said stored {o['answered_stored']}; every report stored: {o['all_stored']}")
    br = res["breakdown"]
    s = res["ingest_store"]

    def us(key: str) -> str:
        return f"{br[key]:.0f} us" if br.get(key) is not None else "n/a"

    print(f"  (1c) Store.add, 4 threads: one per call {s['single']['rps']:.0f} rep/s, 100 per "
          f"call {s['batch']['rps']:.0f} rep/s (every report stored: "
          f"{all(x['all_stored'] for x in s.values())}); the same, starts within 10 minutes "
          f"(live traffic: reports share rollup rows) {s['batch_live']['rps']:.0f} rep/s")
    print(f"  (1c) one thread, per report ({br['reports']} reports, {br['json_bytes']:.0f} B of "
          f"JSON each; median of {br['passes']} passes): app.parse_reports (JSON + schema) "
          f"{us('parse_single_us')} one per body, {us('parse_batch_us')} 100 per body; of "
          f"which json.loads {us('json_loads_us')}, the quick schema check "
          f"{us('check_us')} (the full validator, run only on a refusal: "
          f"{us('validate_us')})")
    print(f"       store.prepare_report {us('prepare_raw_us')} with the report's text as "
          f"received (what the collector does), {us('prepare_us')} without it (encoded again);"
          f" Store.add of 100 "
          f"{us('add_batch_us')}, of which the writer's transaction ~{us('writer_us')}")
    f = res["fill"]
    print(f"  (2) filled store {res['fill_path']}: {f['rows']:,} rows ({f['orders_rows']:,} "
          f"orders), {f['spans']:,} spans; Store.add {f['add_s']:.0f} s, wall {f['wall_s']:.0f} "
          f"s incl. generating ({f['rows_per_s_wall']:.0f} rows/s), close {f['close_s']:.1f} s;"
          f" filled {f['date']} at {f['source']}{' (cached)' if f.get('cached') else ''}")
    q = res["queries"]
    sm = q["stats"]["sample"]
    print(f"  (2) window {q['since_ms']} .. {q['until_ms']} ({FILL_DAYS} days); orders: "
          f"{sm['invocations']:,} invocations, error rate {sm['error_rate']:.4f}, cold "
          f"{sm['cold_start_rate']:.4f}, p50 {sm['p50_ms']} ms, p99 {sm['p99_ms']} ms, "
          f"{sm['dependencies']} dependencies, {sm['errors']} error groups, "
          f"${sm['per_million_usd']} per million")
    for key in ("stats", "stats_by_version", "stats_api"):
        x = q[key]
        print(f"  (2) {key}: first {x['first_ms']:.1f} ms, median {x['median_ms']:.1f} ms, max "
              f"{x['max_ms']:.1f} ms over {x['runs']} runs = "
              f"{x['median_ms'] * 1000 / x['reference_us']:.0f} x reference; invocations "
              f"counted {x['invocations']:,}")
    for key in ("show", "show_api"):
        x = q[key]
        print(f"  (3) {key}: median {x['median_ms']:.2f} ms, p95 {x['p95_ms']:.2f} ms, max "
              f"{x['max_ms']:.2f} ms = {x['median_ms'] * 1000 / x['reference_us']:.0f} x "
              f"reference" + (f"; {x['with_related']} of {x['n']} had related invocations"
                              if key == "show" else f"; answers other than 200: {x['not_200']}"))
    for name, b in res["bytes"].items():
        r = b["rows"]
        print(f"  (4) {name}: {b['file_bytes'] / 1e6:.1f} MB + WAL {b['wal_bytes']} B for "
              f"{r['invocations']:,} invocations, {r['spans']:,} spans, {r['logs']:,} log "
              f"lines: {b['per_report']:.0f} B per report, {b['per_span_total']:.0f} B of the "
              f"whole per span, the spans table {b['spans_table_per_span']:.0f} B per span; "
              f"stored report blob {b['report_blob_avg']:.0f} B on average")
        print("       per report by table: " + ", ".join(
            f"{t} {v:.0f}" for t, v in b["tables_per_report"].items() if v >= 1))
    if res.get("profile"):
        print("\nprofile of Store.add (100 per call)\n" + res["profile"])
    print(f"\n(run took {m['elapsed_s']:.0f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer reports, 100,000 stored invocations (about 1.5 min)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--refill", action="store_true",
                    help="fill the store for (2)-(4) again even if a cached one exists")
    ap.add_argument("--profile", action="store_true",
                    help="also profile Store.add (calling and writer threads)")
    ap.add_argument("--_client", nargs=2, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns._client:
        client_main(*ns._client)
        return 0
    cfg = QUICK if ns.quick else FULL
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="lambdascope-bench-collector-")
    spool = tempfile.mkdtemp(prefix="lambdascope-bench-spool-")
    os.environ["LAMBDASCOPE_SPOOL_DIR"] = spool
    try:
        return run(ns, cfg, started, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)


def run(ns: argparse.Namespace, cfg: dict[str, Any], started: float, workdir: str) -> int:
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "mode": "quick" if ns.quick else "full",
        "source": git_state(),
    }
    log("making report templates with the agent ...")
    templates = make_templates()
    _REF["report"] = templates["orders"]["warm"][0]
    meta["reference_us_start"] = reference_us(1000)
    gen = Generator(templates, seed=1)
    log("(1) building the reports ...")
    http_res, sets = bench_ingest_http(gen, cfg, workdir)
    # The same number of reports as live traffic: start times within the last 10 minutes, so
    # they share their rollup rows (spread over days, nearly every report has its own).
    sets["batch_live"] = gen.mixed(len(sets["batch"]), time.time() * 1000.0, 10 / 1440)
    freeze()
    store_res = bench_ingest_store(sets, cfg, workdir)
    breakdown = bench_breakdown(sets["batch"][:cfg["breakdown_n"]], workdir)
    profile = bench_profile(sets["batch"], workdir) if ns.profile else None
    ingest_bytes = measure_bytes(http_res["batch"]["db"])
    path = fill_path(cfg["fill_rows"])
    if os.path.exists(path) and os.path.exists(path + ".json") and not ns.refill:
        with open(path + ".json") as fh:
            fill_info = json.load(fh)
        fill_info["cached"] = True
        log(f"(2) using the cached store {path} (filled {fill_info['date']}; --refill to redo)")
    else:
        log(f"(2) filling {path} with {cfg['fill_rows']:,} orders invocations (cached for the "
            "next runs) ...")
        fill_info = fill(Generator(templates, seed=2), cfg["fill_rows"], path)
        fill_info["cached"] = False
        log(f"    {fill_info['rows']:,} rows in {fill_info['wall_s']:.0f} s")
    queries_res = bench_queries(path, cfg)
    filled_bytes = measure_bytes(path)
    meta["reference_us_end"] = reference_us(1000)
    meta["elapsed_s"] = time.perf_counter() - started
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res = {
        "meta": meta,
        "config": cfg,
        "budgets": {k: {"op": op, "value": v} for k, (op, v) in BUDGETS.items()},
        "ingest_http": http_res,
        "ingest_store": store_res,
        "breakdown": breakdown,
        "fill_path": path,
        "fill": fill_info,
        "queries": queries_res,
        "bytes": {"ingest": ingest_bytes, "filled": filled_bytes},
        "profile": profile,
    }
    res["results"] = results(res)
    ok = all(r["result"] != "MISS" for r in res["results"])
    checks = (http_res["single"]["all_stored"] and http_res["batch"]["all_stored"]
              and all(x["all_stored"] for x in store_res.values())
              and queries_res["show_api"]["not_200"] == 0)
    res["checks_ok"] = checks
    if ns.json:
        json.dump(res, sys.stdout, indent=2)
        print()
    else:
        print_table(res)
        if not checks:
            print("\nCHECK FAILED: not every report was stored, or a show answered other than 200")
    return 0 if ok and checks else 1


if __name__ == "__main__":
    sys.exit(main())

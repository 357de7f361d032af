#!/usr/bin/env python3
"""What lambdascope costs a Lambda handler: cold start, warm invocation, memory, and (issue 9)
the caller's latency and busy time with delivery after the response, the timeout watchdog and
the crash breadcrumb; (issue 10) the ``emf`` and ``otlp`` exporters, warm and after the
response.

    .venv/bin/python benchmarks/overhead.py            # full run, about 2.5 min
    .venv/bin/python benchmarks/overhead.py --quick    # fewer samples, about 30 s
    .venv/bin/python benchmarks/overhead.py --json     # machine-readable results on stdout

Every figure is a difference against a baseline measured in the same run, the two interleaved
(the machine may be shared and noisy), reported as medians (and p99 where it matters), never as
one absolute timing: (a)-(c) against the same bare handler, (d) against a control sandbox, (e)
against the same handler with the watchdog off. (f) times the breadcrumb calls themselves.

(a) cold start: fresh child processes whose handler module imports boto3 and requests, then
    (monitored only) ``import lambdascope`` and ``@monitor``; the first invocation of the
    monitored handler (default ``stdout`` exporter, child stdout to /dev/null) is compared with
    the first invocation of the bare handler. Plus ``python -X importtime`` for
    ``import lambdascope`` on top of boto3 and requests.
(b) warm invocation: one child process per exporter and round (``stdout`` and ``emf`` to
    /dev/null, ``http`` to a loopback collector and ``otlp`` to a loopback OTLP/HTTP receiver,
    both ``after_response.Receiver``: a keep-alive HTTP/1.1 server in another process), bare
    and monitored calls interleaved. The children run outside Lambda, so the agent flushes
    synchronously, before the monitored call returns (``otlp`` sets ``LAMBDASCOPE_FLUSH=sync``
    explicitly: its budget is for that mode). The warm-up holds the first ``otlp`` export, which
    imports protobuf. The receiver's counts are checked against the invocations made.
(c) RSS added: VmRSS after the first invocation, monitored vs bare (from the (a) children).
(d) after the response, under the Runtime API emulator (what a caller sees):
    ``after_response.measure`` from the sibling script, per exporter (``stdout``, ``http`` to a
    loopback collector, ``emf``, ``otlp`` to a loopback OTLP/HTTP receiver in another process):
    four sandboxes under the real awslambdaric client, invocations
    interleaved (bare handler with no extension, bare beside a plain idle extension, the control
    -- an unmonitored handler in a module that decorates another, so the agent's extension is
    registered but idle -- and the monitored handler, default ``LAMBDASCOPE_FLUSH=auto``).
    Caller latency (event taken to result posted) and busy time (event taken to the runtime and
    every extension asking for the next event), monitored minus control (the budgets), and
    monitored minus the bare sandbox (printed, no budget: it also holds the emulator's work for
    serving an extension, which Lambda does outside the sandbox).
(e) timeout watchdog: in a child, one trivial handler decorated with the default
    ``timeout_warning_ms`` (200) and another with ``timeout_warning_ms=0``, called interleaved
    (alternating order) with a context that has 3 s left; ``LAMBDASCOPE_FLUSH=sync``, ``stdout``
    to /dev/null. Figure: median(armed) - median(off). The child checks that only the armed one
    arms the watchdog.
(f) crash breadcrumb: ``Breadcrumbs.enter`` + ``leave`` on the agent's live breadcrumb with a
    real invocation object, timed in a tight loop, once after each monitored invocation (the
    budget: caches as cold as in real use), and, as a cross-check, the agent's own calls timed
    where it makes them through a forwarding stand-in.

Children get a spool directory of their own for the run (``LAMBDASCOPE_SPOOL_DIR``, removed at
the end), so no child finds the crash breadcrumbs of processes outside the benchmark. The (d)
sandboxes use the default spool (``after_response.measure`` clears every ``LAMBDASCOPE_*`` and
``OTEL_*`` variable).

Bytecode: ``compileall`` is run over src/lambdascope and the venv's site-packages first, and
children run with ``PYTHONDONTWRITEBYTECODE`` unset, as a deployed function has .pyc files.
Standard library only (plus boto3 and requests, which the measured handler imports, and
awslambdaric for (d)).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC_PKG = ROOT / "src" / "lambdascope"

BUDGETS = {
    "cold_total_ms": 35.0,
    "warm_stdout_median_us": 150.0,
    "warm_stdout_p99_us": 400.0,
    "warm_http_median_ms": 0.7,
    # issue 10: emf to /dev/null; otlp to a loopback receiver, flushing synchronously.
    "warm_emf_median_us": 100.0,
    "warm_otlp_median_ms": 1.5,
    "rss_added_mb": 5.0,
    # issue 9: after the response, under the Runtime API emulator (monitored minus the control).
    "after_stdout_latency_median_us": 50.0,
    "after_stdout_busy_median_ms": 0.7,
    "after_http_latency_median_us": 50.0,
    "after_http_busy_median_ms": 0.7,
    # issue 10: the same for emf and otlp ("within the after-response budget").
    "after_emf_latency_median_us": 50.0,
    "after_emf_busy_median_ms": 0.7,
    "after_otlp_latency_median_us": 50.0,
    "after_otlp_busy_median_ms": 0.7,
    "watchdog_added_median_us": 10.0,
    "breadcrumb_interleaved_median_us": 10.0,
}

FULL = {
    "cold_pairs": 40,
    "importtime_runs": 7,
    "warm_rounds": 5,
    "stdout_n": 10000,
    "http_n": 4000,
    "emf_n": 10000,
    "otlp_n": 2000,
    "warmup": 300,
    "after_n": 500,
    "watchdog_rounds": 2,
    "watchdog_n": 8000,
    "breadcrumb_isolated_n": 50000,
    "breadcrumb_interleaved_n": 5000,
}
QUICK = {
    "cold_pairs": 12,
    "importtime_runs": 3,
    "warm_rounds": 1,
    "stdout_n": 5000,
    "http_n": 2000,
    "emf_n": 5000,
    "otlp_n": 1000,
    "warmup": 200,
    "after_n": 150,
    "watchdog_rounds": 1,
    "watchdog_n": 4000,
    "breadcrumb_isolated_n": 20000,
    "breadcrumb_interleaved_n": 2000,
}

# A small API Gateway HTTP API (v2) event: the trigger detection and HTTP attributes run.
EVENT = {
    "version": "2.0",
    "routeKey": "GET /orders/{id}",
    "rawPath": "/orders/42",
    "rawQueryString": "expand=items",
    "headers": {"accept": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com",
                "user-agent": "curl/8.5.0", "x-forwarded-for": "203.0.113.7"},
    "queryStringParameters": {"expand": "items"},
    "pathParameters": {"id": "42"},
    "requestContext": {
        "accountId": "123456789012", "apiId": "abc123", "domainName":
        "abc123.execute-api.us-east-1.amazonaws.com", "domainPrefix": "abc123",
        "http": {"method": "GET", "path": "/orders/42", "protocol": "HTTP/1.1",
                 "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        "requestId": "JKJaXmPLvHcESHA=", "routeKey": "GET /orders/{id}", "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000,
    },
    "isBase64Encoded": False,
}  # fmt: skip


def reference_work() -> None:
    """A fixed pure-Python + C workload (25-50 us here), timed interleaved with the handlers:
    it shows how fast the (shared) CPU was during a run, so runs can be compared."""
    total = 0
    for i in range(300):
        total += i * i
    json.dumps(EVENT)


# -- environment --------------------------------------------------------------------------

SPOOL_DIR: list[str] = []  # a temporary directory made by main() for the children's spool


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A Lambda-like environment: the variables the runtime sets (minus the runtime API, so the
    agent runs in its outside-Lambda mode with synchronous flush), fake credentials for the
    redactor to look for, no LAMBDASCOPE_* from the caller, and bytecode writing allowed."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV")
    }
    env.update(
        {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": "bench-orders",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench-orders",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
            "AWS_ACCESS_KEY_ID": "ASIABENCHMARKFAKEKEY1",
            "AWS_SECRET_ACCESS_KEY": "benchmarkFakeSecretAccessKey0123456789abcd",
            "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEBenchmarkFakeSessionToken" * 8,
        }
    )
    if SPOOL_DIR:  # this run's own spool: never another process's crash breadcrumbs
        env["LAMBDASCOPE_SPOOL_DIR"] = SPOOL_DIR[0]
    if extra:
        env.update(extra)
    return env


def compile_bytecode() -> str:
    site = sysconfig.get_paths()["purelib"]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    rc = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(SRC_PKG), site],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode
    return f"compileall over {SRC_PKG.relative_to(ROOT)} and {site} (rc={rc})"


def run_child(args: list[str], env: dict[str, str], stdout: Any = subprocess.DEVNULL) -> Any:
    """Run a child that writes one JSON document to the fd named by BENCH_FD; return it."""
    r, w = os.pipe()
    env = dict(env, BENCH_FD=str(w))
    proc = subprocess.Popen(
        args, env=env, stdout=stdout, stderr=subprocess.PIPE, pass_fds=(w,), cwd="/tmp"
    )
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as fh:
        while True:
            chunk = fh.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    rc = proc.wait()
    if rc != 0 or not chunks:
        raise RuntimeError(f"child {args[1:3]} failed (rc={rc}):\n{err[-3000:]}")
    out = json.loads(b"".join(chunks))
    out["_stderr"] = err
    return out


# -- statistics ---------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- (a) cold start -----------------------------------------------------------------------

# Run as ``python -c COLD_CHILD bare|monitored``. Only what a handler module would do runs
# before the measurements: no benchmark imports. The context is a plain object like the
# runtime's (lambdascope.testing would import lambdascope into the bare child).
COLD_CHILD = r"""
import time
_pc = time.perf_counter
t_proc = _pc()
import os, sys
import boto3, requests
t_deps = _pc()
mode = sys.argv[1]

class Context:
    function_name = "bench-orders"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-orders"
    memory_limit_in_mb = "1024"
    aws_request_id = "8f0a5a3e-8c6a-4c55-9a53-0d3c2b7c9e11"
    log_group_name = "/aws/lambda/bench-orders"
    log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef"
    def __init__(self):
        self._deadline = time.monotonic() + 30.0
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

def handler(event, context):
    return {"statusCode": 200, "body": "ok"}

EVENT = __EVENT__
import_ms = decorate_ms = 0.0
if mode == "monitored":
    t0 = _pc()
    import lambdascope
    t1 = _pc()
    fn = lambdascope.monitor(handler)
    t2 = _pc()
    import_ms, decorate_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
else:
    fn = handler
ctx = Context()
t3 = _pc()
fn(EVENT, ctx)
t4 = _pc()
first_ms = (t4 - t3) * 1e3

def status(key):
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1])
rss_kb = status(b"VmRSS:")
threads = status(b"Threads:")
fds = len(os.listdir("/proc/self/fd")) - 1
out = {"mode": mode, "import_ms": import_ms, "decorate_ms": decorate_ms, "first_ms": first_ms,
       "rss_kb": rss_kb, "threads": threads, "fds": fds, "to_first_end_ms": (t4 - t_proc) * 1e3,
       "deps_ms": (t_deps - t_proc) * 1e3,
       "modules": len(sys.modules)}
with os.fdopen(int(os.environ["BENCH_FD"]), "w") as fh:
    fh.write(__import__("json").dumps(out))
""".replace("__EVENT__", repr(EVENT))


def bench_cold(pairs: int, log: Any) -> dict[str, Any]:
    env = child_env()
    args = {m: [sys.executable, "-c", COLD_CHILD, m] for m in ("bare", "monitored")}
    # One untimed pair warms the page cache.
    for m in ("bare", "monitored"):
        run_child(args[m], env)
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "monitored": []}
    wall: dict[str, list[float]] = {"bare": [], "monitored": []}
    for i in range(pairs):
        order = ("bare", "monitored") if i % 2 == 0 else ("monitored", "bare")
        for m in order:
            t0 = time.perf_counter()
            res = run_child(args[m], env)
            wall[m].append((time.perf_counter() - t0) * 1e3)
            if res["_stderr"].strip():
                log(f"  stderr of a {m} child: {res['_stderr'].strip()[:300]}")
            runs[m].append(res)
        if (i + 1) % 10 == 0:
            log(f"  cold start: {i + 1}/{pairs} pairs")
    bare, mon = runs["bare"], runs["monitored"]
    bare_first = median([r["first_ms"] for r in bare])
    totals = [r["import_ms"] + r["decorate_ms"] + r["first_ms"] - bare_first for r in mon]
    return {
        "pairs": pairs,
        "import_ms": median([r["import_ms"] for r in mon]),
        "decorate_ms": median([r["decorate_ms"] for r in mon]),
        "first_invocation_bare_ms": bare_first,
        "first_invocation_monitored_ms": median([r["first_ms"] for r in mon]),
        "first_invocation_extra_ms": median([r["first_ms"] for r in mon]) - bare_first,
        "total_ms": median(totals),
        "total_p90_ms": quantile(totals, 0.9),
        # Cross-checks (noisy: they include interpreter start, boto3 import, teardown).
        "to_first_end_diff_ms": median([r["to_first_end_ms"] for r in mon])
        - median([r["to_first_end_ms"] for r in bare]),
        "process_wall_diff_ms": median(wall["monitored"]) - median(wall["bare"]),
        "process_wall_bare_ms": median(wall["bare"]),
        "process_wall_bare_iqr_ms": quantile(wall["bare"], 0.75) - quantile(wall["bare"], 0.25),
        "boto3_requests_import_bare_ms": median([r["deps_ms"] for r in bare]),
        # (c) from the same children.
        "rss_bare_mb": median([r["rss_kb"] for r in bare]) / 1024.0,
        "rss_monitored_mb": median([r["rss_kb"] for r in mon]) / 1024.0,
        "rss_added_mb": (median([r["rss_kb"] for r in mon]) - median([r["rss_kb"] for r in bare]))
        / 1024.0,
        "threads_added": median([r["threads"] for r in mon]) - median([r["threads"] for r in bare]),
        "fds_added": median([r["fds"] for r in mon]) - median([r["fds"] for r in bare]),
        "modules_added": median([r["modules"] for r in mon]) - median([r["modules"] for r in bare]),
    }


def bench_importtime(
    runs: int, code: str = "import boto3, requests; import lambdascope"
) -> dict[str, Any]:
    """``-X importtime`` of ``import lambdascope`` (by default after boto3 and requests): the
    subtree of the top-level ``lambdascope`` entry, median over runs."""
    env = child_env()
    per_mod: dict[str, dict[str, list[float]]] = {}
    cumulative: list[float] = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd="/tmp",
        )
        rows = []  # (self us, cumulative us, depth, name)
        for line in proc.stderr.decode().splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cum_us, field = line.split(":", 1)[1].split("|")
            name = field.strip()
            depth = (len(field.rstrip()) - len(name) - 1) // 2
            rows.append((int(self_us), int(cum_us), depth, name))
        # importtime prints children (deeper) before their parent.
        top = max(i for i, r in enumerate(rows) if r[3] == "lambdascope" and r[2] == 0)
        j = top - 1
        while j >= 0 and rows[j][2] > 0:
            j -= 1
        cumulative.append(rows[top][1] / 1000.0)
        for self_us, cum_us, _depth, name in rows[j + 1 : top + 1]:
            d = per_mod.setdefault(name, {"self": [], "cum": []})
            d["self"].append(self_us / 1000.0)
            d["cum"].append(cum_us / 1000.0)
    mods = [
        {
            "module": k,
            "self_ms": median(v["self"]),
            "cumulative_ms": median(v["cum"]),
            "seen": len(v["self"]),
        }
        for k, v in per_mod.items()
    ]
    mods.sort(key=lambda m: m["self_ms"], reverse=True)
    return {"runs": runs, "cumulative_ms": median(cumulative), "modules": mods}


# -- (b) warm invocations -----------------------------------------------------------------


def child_warm(n: int, warmup: int) -> None:
    """Child: bare and monitored invocations interleaved; per-invocation times in ns."""
    import logging

    import lambdascope
    from lambdascope.testing import fake_context

    class Count(logging.Handler):
        n = 0

        def emit(self, record: logging.LogRecord) -> None:
            Count.n += 1
            sys.stderr.write("lambdascope log: " + record.getMessage() + "\n")

    logging.getLogger("lambdascope").addHandler(Count(logging.WARNING))

    def handler(event: Any, context: Any) -> Any:
        return {"statusCode": 200, "body": "ok"}

    monitored = lambdascope.monitor(handler)
    pc = time.perf_counter_ns
    event = EVENT
    for _ in range(warmup):
        monitored(event, fake_context())
        handler(event, fake_context())
    bare = [0] * n
    mon = [0] * n
    ref = [0] * n
    for i in range(n):
        c1, c2 = fake_context(), fake_context()
        t0 = pc()
        reference_work()
        ref[i] = pc() - t0
        if i & 1:
            t0 = pc()
            handler(event, c1)
            t1 = pc()
            monitored(event, c2)
            t2 = pc()
            bare[i], mon[i] = t1 - t0, t2 - t1
        else:
            t0 = pc()
            monitored(event, c2)
            t1 = pc()
            handler(event, c1)
            t2 = pc()
            mon[i], bare[i] = t1 - t0, t2 - t1
    with os.fdopen(int(os.environ["BENCH_FD"]), "w") as fh:
        json.dump(
            {
                "bare_ns": bare,
                "monitored_ns": mon,
                "reference_ns": ref,
                "agent_log_records": Count.n,
                "invocations": warmup + n,
            },
            fh,
        )


def summarise_warm(
    bare_ns: list[int], mon_ns: list[int], ref_ns: list[int], rounds: list[float]
) -> dict[str, Any]:
    b = [x / 1000.0 for x in bare_ns]
    m = [x / 1000.0 for x in mon_ns]
    diffs = [y - x for x, y in zip(b, m)]
    ref = median([x / 1000.0 for x in ref_ns])
    return {
        "invocations": len(m),
        "round_overhead_medians_us": rounds,
        "reference_median_us": ref,
        "overhead_in_reference_units": (median(m) - median(b)) / ref,
        "bare_median_us": median(b),
        "bare_p99_us": quantile(b, 0.99),
        "monitored_median_us": median(m),
        "monitored_p99_us": quantile(m, 0.99),
        "overhead_median_us": median(m) - median(b),
        "overhead_p99_us": quantile(m, 0.99) - quantile(b, 0.99),
        "paired_diff_median_us": median(diffs),
        "paired_diff_p99_us": quantile(diffs, 0.99),
    }


WARM_EXPORTERS = ("stdout", "http", "emf", "otlp")
OTLP_SIGNALS = ("metrics", "traces", "logs")


def sibling_after_response() -> Any:
    """benchmarks/after_response.py, imported (benchmarks/ is not a package)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import after_response

    return after_response


def bench_warm(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    # One receiver for http (POST /v1/reports) and otlp (POST /v1/traces|metrics|logs).
    receiver = sibling_after_response().Receiver(child_env())
    try:
        url = receiver.url
        data: dict[str, dict[str, list[Any]]] = {
            e: {"bare": [], "mon": [], "ref": [], "rounds": []} for e in WARM_EXPORTERS
        }
        log_records = 0
        expected = {e: 0 for e in WARM_EXPORTERS}  # monitored invocations, warm-up included
        for rnd in range(cfg["warm_rounds"]):
            for exporter in WARM_EXPORTERS:
                n = cfg[f"{exporter}_n"]
                extra = {"LAMBDASCOPE_EXPORTERS": exporter}
                if exporter == "http":
                    extra["LAMBDASCOPE_COLLECTOR_URL"] = url
                elif exporter == "otlp":
                    extra["LAMBDASCOPE_OTLP_ENDPOINT"] = url
                    extra["LAMBDASCOPE_FLUSH"] = "sync"
                expected[exporter] += cfg["warmup"] + n
                res = run_child(
                    [sys.executable, me, "--_child", "warm", str(n), str(cfg["warmup"])],
                    child_env(extra),
                )
                if res["_stderr"].strip():
                    log(f"  stderr of the {exporter} child: {res['_stderr'].strip()[:300]}")
                log_records += res["agent_log_records"]
                data[exporter]["bare"] += res["bare_ns"]
                data[exporter]["mon"] += res["monitored_ns"]
                data[exporter]["ref"] += res["reference_ns"]
                data[exporter]["rounds"].append(
                    (median(res["monitored_ns"]) - median(res["bare_ns"])) / 1000.0
                )
                log(f"  warm: round {rnd + 1}/{cfg['warm_rounds']} {exporter} done")
        received = receiver.counts()
    finally:
        receiver.close()
    out: dict[str, Any] = {
        e: summarise_warm(d["bare"], d["mon"], d["ref"], d["rounds"]) for e, d in data.items()
    }
    out["agent_log_records"] = log_records
    out["http_reports_expected"] = expected["http"]
    out["http_reports_received"] = received.get("/v1/reports", 0)
    out["otlp_invocations"] = expected["otlp"]
    for signal in OTLP_SIGNALS:
        out[f"otlp_{signal}_received"] = received.get(f"/v1/{signal}", 0)
    missing = [
        signal
        for signal in ("metrics", "traces")
        if out[f"otlp_{signal}_received"] != expected["otlp"]
    ]
    if out["http_reports_received"] != expected["http"] or missing:
        log(f"  warm: the receiver's counts differ from the invocations made: {received}")
    return out


# -- (d) after the response, under the Runtime API emulator -------------------------------


def bench_after_response(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    """(d): benchmarks/after_response.py's measurement (four sandboxes under awslambdaric and
    the Runtime API emulator: bare, idle plain extension, the agent's idle extension as the
    control, monitored), per exporter."""
    after_response = sibling_after_response()
    collector = after_response.Collector()
    out: dict[str, Any] = {
        "invocations": cfg["after_n"],
        "sandboxes": list(after_response.SANDBOXES),
        "exporters": list(after_response.EXPORTERS),
    }
    try:
        for exporter in after_response.EXPORTERS:
            t0 = time.perf_counter()
            out[exporter] = after_response.measure(exporter, cfg["after_n"], collector)
            log(f"  after the response: {exporter} done ({time.perf_counter() - t0:.0f} s)")
    finally:
        collector.server.shutdown()
        collector.server.server_close()
    return out


# -- (e) timeout watchdog, (f) crash breadcrumb -------------------------------------------


def _agent_log_counter() -> Any:
    """Count (and pass to stderr) the agent's own warnings in a child."""
    import logging

    class Count(logging.Handler):
        n = 0

        def emit(self, record: logging.LogRecord) -> None:
            Count.n += 1
            sys.stderr.write("lambdascope log: " + record.getMessage() + "\n")

    logging.getLogger("lambdascope").addHandler(Count(logging.WARNING))
    return Count


def _write_result(out: dict[str, Any]) -> None:
    with os.fdopen(int(os.environ["BENCH_FD"]), "w") as fh:
        json.dump(out, fh)


def timer_overhead_ns(pc: Any, n: int = 20000) -> float:
    """Median of an empty ``perf_counter_ns`` pair: what each timed sample carries on top."""
    samples = [0] * n
    for i in range(n):
        t0 = pc()
        samples[i] = pc() - t0
    return float(median(samples))


def child_watchdog(n: int, warmup: int) -> None:
    """Child: the same trivial handler with the timeout watchdog armed (the default
    ``timeout_warning_ms`` of 200 ms, a context with 3 s left) and with it off
    (``timeout_warning_ms=0``), calls interleaved, alternating which goes first."""
    import lambdascope
    from lambdascope import _state
    from lambdascope.testing import fake_context

    count = _agent_log_counter()

    def handler(event: Any, context: Any) -> Any:
        return {"statusCode": 200, "body": "ok"}

    def handler2(event: Any, context: Any) -> Any:
        return {"statusCode": 200, "body": "ok"}

    armed = lambdascope.monitor(handler)
    off = lambdascope.monitor(timeout_warning_ms=0)(handler2)
    cfg_on = armed.__lambdascope_config__
    cfg_off = off.__lambdascope_config__
    pc = time.perf_counter_ns
    event = EVENT

    # Check that the two really differ only by the watchdog: "off" never arms it, "armed" does.
    checks: dict[str, Any] = {
        "timeout_warning_ms_armed": cfg_on.timeout_warning_ms,
        "timeout_warning_ms_off": cfg_off.timeout_warning_ms,
        "context_remaining_ms": fake_context(timeout_s=3.0).get_remaining_time_in_millis(),
    }
    off(event, fake_context(timeout_s=3.0))
    checks["watchdog_after_off_call"] = _state.S.watchdog is not None
    armed(event, fake_context(timeout_s=3.0))
    wd = _state.S.watchdog
    checks["watchdog_after_armed_call"] = wd is not None and wd._thread.is_alive()
    arms_on = arms_off = 0
    for _ in range(5):
        before = getattr(wd, "_last_fire_at", None)
        armed(event, fake_context(timeout_s=3.0))
        arms_on += getattr(wd, "_last_fire_at", None) != before
        before = getattr(wd, "_last_fire_at", None)
        off(event, fake_context(timeout_s=3.0))
        arms_off += getattr(wd, "_last_fire_at", None) != before
    checks["armed_calls_that_armed"] = f"{arms_on}/5"
    checks["off_calls_that_armed"] = f"{arms_off}/5"
    for _ in range(warmup):
        armed(event, fake_context(timeout_s=3.0))
        off(event, fake_context(timeout_s=3.0))
    on_ns = [0] * n
    off_ns = [0] * n
    for i in range(n):
        c1, c2 = fake_context(timeout_s=3.0), fake_context(timeout_s=3.0)
        if i & 1:
            t0 = pc()
            off(event, c1)
            t1 = pc()
            armed(event, c2)
            t2 = pc()
            off_ns[i], on_ns[i] = t1 - t0, t2 - t1
        else:
            t0 = pc()
            armed(event, c2)
            t1 = pc()
            off(event, c1)
            t2 = pc()
            on_ns[i], off_ns[i] = t1 - t0, t2 - t1
    checks["watchdog_thread_alive_at_end"] = wd is not None and wd._thread.is_alive()
    _write_result(
        {
            "armed_ns": on_ns,
            "off_ns": off_ns,
            "checks": checks,
            "agent_log_records": count.n,
            "timer_ns": timer_overhead_ns(pc),
        }
    )


def child_breadcrumb(n_isolated: int, n_interleaved: int, warmup: int) -> None:
    """Child: ``Breadcrumbs.enter`` + ``leave`` on the live breadcrumb of a monitored handler,
    timed in a tight loop and one pair after each real monitored invocation."""
    import lambdascope
    from lambdascope import _state
    from lambdascope._invocation import CURRENT
    from lambdascope.testing import fake_context

    count = _agent_log_counter()
    last: list[Any] = [None]

    def handler(event: Any, context: Any) -> Any:
        last[0] = CURRENT.get()  # the invocation object, for the timed pairs below
        return {"statusCode": 200, "body": "ok"}

    monitored = lambdascope.monitor(handler)
    pc = time.perf_counter_ns
    event = EVENT
    for _ in range(warmup):
        monitored(event, fake_context())
    bc = _state.S.breadcrumbs
    if not bc:
        raise RuntimeError("the agent has no breadcrumb in this process")
    inv = last[0]
    rss_kb, limit = inv.res_start.rss_kb, inv.pipeline.memory_limit_mb

    # Check that a pair really writes the breadcrumb where a new process finds it (the file),
    # and puts it back as the agent left it after the last invocation.
    def contents() -> bytes:
        with open(bc.path, "rb") as fh:
            return fh.read()

    idle = contents()
    bc.enter(inv, rss_kb, limit)
    written = contents()
    bc.leave()
    checks = {
        "mapped": getattr(bc, "_map", None) is not None,
        "written_has_request_id": written != idle and inv.request_id.encode() in written,
        "written_has_trace": b"Root=" in written,
        "cleared": contents() == idle,
        "path": bc.path,
    }

    iso = [0] * n_isolated
    for i in range(n_isolated):
        t0 = pc()
        bc.enter(inv, rss_kb, limit)
        bc.leave()
        iso[i] = pc() - t0
    inter = [0] * n_interleaved
    for i in range(n_interleaved):
        ctx = fake_context()
        monitored(event, ctx)
        inv = last[0]
        live = _state.S.breadcrumbs
        t0 = pc()
        live.enter(inv, inv.res_start.rss_kb, inv.pipeline.memory_limit_mb)
        live.leave()
        inter[i] = pc() - t0

    # A cross-check: the agent's own calls, timed where it makes them (enter in the middle of
    # opening the invocation, leave right after the handler) through a stand-in that forwards
    # to the live breadcrumb.
    class Timed:
        def __init__(self, real: Any) -> None:
            self.real = real
            self.enter_ns: list[int] = []
            self.leave_ns: list[int] = []

        def enter(self, inv: Any, rss_kb: Any, limit_mb: Any) -> None:
            t0 = pc()
            self.real.enter(inv, rss_kb, limit_mb)
            self.enter_ns.append(pc() - t0)

        def leave(self) -> None:
            t0 = pc()
            self.real.leave()
            self.leave_ns.append(pc() - t0)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    timed = Timed(bc)
    _state.S.breadcrumbs = timed
    try:
        for _ in range(n_interleaved):
            monitored(event, fake_context())
    finally:
        _state.S.breadcrumbs = bc
    in_place = [a + b for a, b in zip(timed.enter_ns, timed.leave_ns)]
    checks["in_place_calls"] = f"{len(timed.enter_ns)} enter, {len(timed.leave_ns)} leave"
    _write_result(
        {
            "isolated_ns": iso,
            "interleaved_ns": inter,
            "in_place_ns": in_place,
            "checks": checks,
            "agent_log_records": count.n,
            "timer_ns": timer_overhead_ns(pc),
        }
    )


def bench_watchdog(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    """(e): median(armed) - median(off) over interleaved calls in one child per round."""
    me = str(Path(__file__).resolve())
    env = child_env({"LAMBDASCOPE_FLUSH": "sync", "LAMBDASCOPE_EXPORTERS": "stdout"})
    on: list[float] = []
    off: list[float] = []
    rounds: list[float] = []
    checks: list[dict[str, Any]] = []
    log_records = 0
    timer: list[float] = []
    for rnd in range(cfg["watchdog_rounds"]):
        res = run_child(
            [sys.executable, me, "--_child", "watchdog", str(cfg["watchdog_n"]),
             str(cfg["warmup"])],
            env,
        )  # fmt: skip
        if res["_stderr"].strip():
            log(f"  stderr of the watchdog child: {res['_stderr'].strip()[:300]}")
        a = [x / 1000.0 for x in res["armed_ns"]]
        b = [x / 1000.0 for x in res["off_ns"]]
        on += a
        off += b
        rounds.append(median(a) - median(b))
        checks.append(res["checks"])
        log_records += res["agent_log_records"]
        timer.append(res["timer_ns"])
        log(f"  watchdog: round {rnd + 1}/{cfg['watchdog_rounds']} done")
    diffs = [x - y for x, y in zip(on, off)]
    return {
        "invocations": len(on),
        "armed_median_us": median(on),
        "off_median_us": median(off),
        "added_median_us": median(on) - median(off),
        "added_p99_us": quantile(on, 0.99) - quantile(off, 0.99),
        "paired_diff_median_us": median(diffs),
        "round_added_medians_us": rounds,
        "checks": checks,
        "agent_log_records": log_records,
        "timer_overhead_ns": median(timer),
    }


def bench_breadcrumb(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    """(f): enter + leave, alone in a tight loop and one pair after each monitored call."""
    me = str(Path(__file__).resolve())
    # The trace header the runtime client sets for each invocation: the breadcrumb carries it.
    env = child_env(
        {
            "LAMBDASCOPE_FLUSH": "sync",
            "LAMBDASCOPE_EXPORTERS": "stdout",
            "_X_AMZN_TRACE_ID": "Root=1-6755f1a0-3c6a1e5b9d2f4a7e8b0c1d2e;"
            "Parent=53995c3f42cd8ad8;Sampled=1",
        }
    )
    res = run_child(
        [sys.executable, me, "--_child", "breadcrumb", str(cfg["breadcrumb_isolated_n"]),
         str(cfg["breadcrumb_interleaved_n"]), str(cfg["warmup"])],
        env,
    )  # fmt: skip
    if res["_stderr"].strip():
        log(f"  stderr of the breadcrumb child: {res['_stderr'].strip()[:300]}")
    iso = [x / 1000.0 for x in res["isolated_ns"]]
    inter = [x / 1000.0 for x in res["interleaved_ns"]]
    in_place = [x / 1000.0 for x in res["in_place_ns"]]
    return {
        "isolated_n": len(iso),
        "interleaved_n": len(inter),
        "isolated_median_us": median(iso),
        "isolated_p99_us": quantile(iso, 0.99),
        "interleaved_median_us": median(inter),
        "interleaved_p90_us": quantile(inter, 0.9),
        "interleaved_p99_us": quantile(inter, 0.99),
        "in_place_n": len(in_place),
        "in_place_median_us": median(in_place),
        "in_place_p99_us": quantile(in_place, 0.99),
        "timer_overhead_ns": res["timer_ns"],
        "checks": res["checks"],
        "agent_log_records": res["agent_log_records"],
    }


def git_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{head}{' + uncommitted changes in src/' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- report -------------------------------------------------------------------------------


def verdict(value: float, budget: float) -> str:
    return "PASS" if value <= budget else "MISS"


# (key, label, unit, number format, value, budget key or None)
Row = tuple[str, str, str, str, "float | None", "str | None"]


def build_rows(res: dict[str, Any]) -> list[Row]:
    c, w = res["cold_start"], res["warm"]
    s, h, emf, otlp = w["stdout"], w["http"], w["emf"], w["otlp"]
    return [
        ("", f"(a) cold start, median of {c['pairs']} fresh processes each", "", "", None, None),
        ("cold_import_ms", "    import lambdascope", "ms", ".2f", c["import_ms"], None),
        ("cold_decorate_ms", "    @monitor (decorating)", "ms", ".2f", c["decorate_ms"], None),
        (
            "cold_first_extra_ms",
            "    first invocation, extra vs bare first",
            "ms",
            ".2f",
            c["first_invocation_extra_ms"],
            None,
        ),
        (
            "cold_total_ms",
            "    total (import + decorate + first extra)",
            "ms",
            ".2f",
            c["total_ms"],
            "cold_total_ms",
        ),
        ("", "(b) warm invocation, monitored - bare", "", "", None, None),
        (
            "warm_stdout_median_us",
            "    stdout exporter, median",
            "us",
            ".0f",
            s["overhead_median_us"],
            "warm_stdout_median_us",
        ),
        (
            "warm_stdout_p99_us",
            "    stdout exporter, p99",
            "us",
            ".0f",
            s["overhead_p99_us"],
            "warm_stdout_p99_us",
        ),
        (
            "warm_http_median_ms",
            "    http exporter (loopback collector), median",
            "ms",
            ".3f",
            h["overhead_median_us"] / 1000.0,
            "warm_http_median_ms",
        ),
        (
            "warm_http_p99_ms",
            "    http exporter, p99 (no budget)",
            "ms",
            ".3f",
            h["overhead_p99_us"] / 1000.0,
            None,
        ),
        (
            "warm_emf_median_us",
            "    emf exporter, median",
            "us",
            ".0f",
            emf["overhead_median_us"],
            "warm_emf_median_us",
        ),
        (
            "warm_emf_p99_us",
            "    emf exporter, p99 (no budget)",
            "us",
            ".0f",
            emf["overhead_p99_us"],
            None,
        ),
        (
            "warm_otlp_median_ms",
            "    otlp exporter (loopback receiver, sync flush), median",
            "ms",
            ".3f",
            otlp["overhead_median_us"] / 1000.0,
            "warm_otlp_median_ms",
        ),
        (
            "warm_otlp_p99_ms",
            "    otlp exporter, p99 (no budget)",
            "ms",
            ".3f",
            otlp["overhead_p99_us"] / 1000.0,
            None,
        ),
        (
            "rss_added_mb",
            "(c) RSS added after the first invocation",
            "MB",
            ".2f",
            c["rss_added_mb"],
            "rss_added_mb",
        ),
        *after_rows(res["after_response"]),
        (
            "",
            f"(e) timeout watchdog armed - off, {res['watchdog']['invocations']} calls each",
            "",
            "",
            None,
            None,
        ),
        (
            "watchdog_added_median_us",
            "    added to an invocation that ends in time, median",
            "us",
            ".1f",
            res["watchdog"]["added_median_us"],
            "watchdog_added_median_us",
        ),
        ("", "(f) crash breadcrumb, Breadcrumbs.enter + leave", "", "", None, None),
        (
            "breadcrumb_isolated_median_us",
            "    alone in a tight loop, median (no budget)",
            "us",
            ".2f",
            res["breadcrumb"]["isolated_median_us"],
            None,
        ),
        (
            "breadcrumb_interleaved_median_us",
            "    after each monitored invocation, median",
            "us",
            ".2f",
            res["breadcrumb"]["interleaved_median_us"],
            "breadcrumb_interleaved_median_us",
        ),
        (
            "breadcrumb_in_place_median_us",
            "    the agent's own calls, timed in place (no budget)",
            "us",
            ".2f",
            res["breadcrumb"]["in_place_median_us"],
            None,
        ),
    ]


def after_rows(a: dict[str, Any]) -> list[Row]:
    """(d): against the control (the agent's extension registered but idle: the budget), and
    against the bare sandbox with no extension at all (no budget: it also holds the emulator's
    work for serving an extension, which Lambda does outside the sandbox)."""
    rows: list[Row] = [
        (
            "",
            f"(d) after the response, Runtime API emulator, median of {a['invocations']}",
            "",
            "",
            None,
            None,
        ),
    ]
    for e in a["exporters"]:
        r = a[e]
        rows += [
            (
                f"after_{e}_latency_median_us",
                f"    {e}: caller latency, monitored - control",
                "us",
                ".0f",
                r["latency_median_ms_vs_control"] * 1000.0,
                f"after_{e}_latency_median_us",
            ),
            (
                f"after_{e}_busy_median_ms",
                f"    {e}: busy time, monitored - control",
                "ms",
                ".3f",
                r["busy_median_ms_vs_control"],
                f"after_{e}_busy_median_ms",
            ),
            (
                f"after_{e}_latency_vs_bare_median_us",
                f"    {e}: caller latency, monitored - bare (no ext.)",
                "us",
                ".0f",
                r["latency_median_ms_vs_bare"] * 1000.0,
                None,
            ),
            (
                f"after_{e}_busy_vs_bare_median_ms",
                f"    {e}: busy time, monitored - bare (no ext.)",
                "ms",
                ".3f",
                r["busy_median_ms_vs_bare"],
                None,
            ),
        ]
    return rows


def results(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, label, unit, _fmt, value, bkey in build_rows(res):
        if not key:
            continue
        budget = BUDGETS[bkey] if bkey else None
        out.append(
            {
                "key": key,
                "figure": label.strip(),
                "value": value,
                "unit": unit,
                "budget": budget,
                "result": verdict(value, budget)
                if budget is not None and value is not None
                else None,
            }
        )
    return out


def print_table(res: dict[str, Any]) -> None:
    m = res["meta"]
    c, w, it = res["cold_start"], res["warm"], res["importtime"]
    print(
        f"lambdascope overhead  {m['date']}  Python {m['python']}  {m['cpus']} CPUs  "
        f"load {m['loadavg']} -> {m['loadavg_end']}  mode {m['mode']}  source {m['source']}"
    )
    print(f"bytecode: compiled ({m['bytecode']}); children run with PYTHONDONTWRITEBYTECODE unset")
    print(
        "(a)-(c): monitored minus bare handler; (d): monitored minus control sandbox; (e): "
        "watchdog armed\nminus off; (f): time of the calls; interleaved runs, medians\n"
    )
    rows = build_rows(res)
    w0 = max(len(r[1]) for r in rows)
    print(f"{'figure':<{w0}}  {'value':>10}  {'budget':>10}  result")
    print("-" * (w0 + 32))
    for _key, label, unit, fmt, value, bkey in rows:
        val = f"{value:{fmt}} {unit}" if value is not None else ""
        budget = f"<= {BUDGETS[bkey]:g} {unit}" if bkey else ""
        ok = verdict(value, BUDGETS[bkey]) if bkey and value is not None else ""
        print(f"{label:<{w0}}  {val:>10}  {budget:>10}  {ok}")
    print()
    print("details")
    print(
        f"  (a) first invocation: bare {c['first_invocation_bare_ms'] * 1000:.0f} us, "
        f"monitored {c['first_invocation_monitored_ms']:.2f} ms; total p90 "
        f"{c['total_p90_ms']:.2f} ms"
    )
    print(
        f"  (a) cross-checks, too noisy to resolve a few ms: process start -> end of first "
        f"invocation {c['to_first_end_diff_ms']:+.1f} ms; whole child wall "
        f"{c['process_wall_diff_ms']:+.1f} ms (bare child median {c['process_wall_bare_ms']:.0f}"
        f" ms, IQR {c['process_wall_bare_iqr_ms']:.0f} ms; its boto3+requests import "
        f"{c['boto3_requests_import_bare_ms']:.0f} ms)"
    )
    print(
        f"  (a) modules added {c['modules_added']:.0f}, threads added {c['threads_added']:.0f},"
        f" fds kept open {c['fds_added']:.0f}"
    )
    print(f"  (c) RSS bare {c['rss_bare_mb']:.1f} MB, monitored {c['rss_monitored_mb']:.1f} MB")
    for e in WARM_EXPORTERS:
        s = w[e]
        print(
            f"  (b) {e:6}: {s['invocations']} invocations each; bare median "
            f"{s['bare_median_us']:.2f} us p99 {s['bare_p99_us']:.2f} us; monitored median "
            f"{s['monitored_median_us']:.1f} us p99 {s['monitored_p99_us']:.1f} us; "
            f"paired diff median {s['paired_diff_median_us']:.1f} us p99 "
            f"{s['paired_diff_p99_us']:.1f} us"
        )
        print(
            f"  (b) {e:6}: overhead median per round (us): "
            + ", ".join(f"{x:.0f}" for x in s["round_overhead_medians_us"])
            + f"; CPU reference workload median {s['reference_median_us']:.1f} us, overhead ="
            f" {s['overhead_in_reference_units']:.2f} x reference"
        )
    print(
        f"  (b) http reports received by the collector {w['http_reports_received']}/"
        f"{w['http_reports_expected']}; otlp requests received by the receiver for "
        f"{w['otlp_invocations']} monitored invocations: metrics {w['otlp_metrics_received']}, "
        f"traces {w['otlp_traces_received']}, logs {w['otlp_logs_received']} (none expected: "
        f"the handler logs nothing); agent warnings logged {w['agent_log_records']}"
    )
    a = res["after_response"]
    describe_after = sibling_after_response().describe  # the agent's account, what was delivered
    for e in a["exporters"]:
        r = a[e]
        print(
            f"  (d) {e:6}: medians, caller latency / busy (ms): "
            + ", ".join(
                f"{name} {r[f'{name}_latency_median_ms']:.3f} / {r[f'{name}_busy_median_ms']:.3f}"
                for name in a["sandboxes"]
            )
        )
        print(
            f"  (d) {e:6}: p90 monitored - control: latency "
            f"{r['latency_p90_ms_vs_control'] * 1000:.0f} us, busy "
            f"{r['busy_p90_ms_vs_control']:.3f} ms; median monitored - plain idle extension: "
            f"latency {r['latency_median_ms_vs_plain_ext'] * 1000:.0f} us, busy "
            f"{r['busy_median_ms_vs_plain_ext']:.3f} ms"
        )
        for line in describe_after(e, r):
            print(f"  (d) {e:6}: {line}")
    wd = res["watchdog"]
    ck = wd["checks"][0]
    print(
        f"  (e) armed median {wd['armed_median_us']:.1f} us, off {wd['off_median_us']:.1f} us "
        f"(LAMBDASCOPE_FLUSH=sync, stdout exporter); paired diff median "
        f"{wd['paired_diff_median_us']:.1f} us; p99 armed - off {wd['added_p99_us']:.1f} us; "
        "per round (us): " + ", ".join(f"{x:.1f}" for x in wd["round_added_medians_us"])
    )
    print(
        f"  (e) checks: timeout_warning_ms {ck['timeout_warning_ms_armed']} vs "
        f"{ck['timeout_warning_ms_off']}, context {ck['context_remaining_ms']} ms left; "
        f"watchdog thread after an 'off' call {ck['watchdog_after_off_call']}, after an "
        f"'armed' call {ck['watchdog_after_armed_call']}; calls that armed it: armed "
        f"{ck['armed_calls_that_armed']}, off {ck['off_calls_that_armed']}; agent warnings "
        f"{wd['agent_log_records']}"
    )
    bc = res["breadcrumb"]
    bk = bc["checks"]
    print(
        f"  (f) alone: {bc['isolated_n']} pairs, median {bc['isolated_median_us']:.2f} us p99 "
        f"{bc['isolated_p99_us']:.2f} us; after each monitored invocation: "
        f"{bc['interleaved_n']} pairs, median {bc['interleaved_median_us']:.2f} us p90 "
        f"{bc['interleaved_p90_us']:.2f} us p99 {bc['interleaved_p99_us']:.2f} us"
    )
    print(
        f"  (f) in place (enter timed inside the agent's begin, leave inside its end, through a "
        f"forwarding stand-in): {bc['in_place_n']} invocations, median "
        f"{bc['in_place_median_us']:.2f} us p99 {bc['in_place_p99_us']:.2f} us; the timer's own "
        f"cost, {bc['timer_overhead_ns']:.0f} ns a sample, is included (twice in place)"
    )
    print(
        f"  (f) checks: file mapped {bk['mapped']}; a pair wrote the request id "
        f"{bk['written_has_request_id']} and the X-Ray header {bk['written_has_trace']} to the "
        f"file and left it as the agent had {bk['cleared']}; in place: {bk['in_place_calls']};"
        f" agent warnings {bc['agent_log_records']}"
    )
    print()
    print(
        f"python -X importtime: import lambdascope after boto3+requests, cumulative "
        f"{it['cumulative_ms']:.2f} ms (median of {it['runs']} runs); top by self time:"
    )
    print(f"  {'module':<34} {'self ms':>8} {'cumul ms':>9}")
    for mod in it["modules"][:12]:
        print(f"  {mod['module']:<34} {mod['self_ms']:>8.2f} {mod['cumulative_ms']:>9.2f}")
    others = [x["module"] for x in it["modules"] if not x["module"].startswith("lambdascope")]
    print(f"  modules outside lambdascope imported by it here: {', '.join(others) or 'none'}")
    alone = sorted(it["alone_modules"], key=lambda x: -x["self_ms"])
    print(
        f"  without boto3/requests (after {it['alone_after']} only): cumulative "
        f"{it['alone_cumulative_ms']:.2f} ms; largest self times (ms): "
        + ", ".join(f"{x['module']} {x['self_ms']:.2f}" for x in alone[:6])
    )
    print(f"\n(run took {m['elapsed_s']:.0f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (about 30 s)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns._child:
        kind = ns._child[0]
        if kind == "warm":
            child_warm(int(ns._child[1]), int(ns._child[2]))
        elif kind == "watchdog":
            child_watchdog(int(ns._child[1]), int(ns._child[2]))
        elif kind == "breadcrumb":
            child_breadcrumb(int(ns._child[1]), int(ns._child[2]), int(ns._child[3]))
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cfg = QUICK if ns.quick else FULL
    started = time.perf_counter()
    SPOOL_DIR.append(tempfile.mkdtemp(prefix="lambdascope-bench-spool-"))
    try:
        return run(ns, cfg, started, log)
    finally:
        shutil.rmtree(SPOOL_DIR.pop(), ignore_errors=True)


def run(ns: argparse.Namespace, cfg: dict[str, Any], started: float, log: Any) -> int:
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
    log(f"(a) cold start: {cfg['cold_pairs']} pairs of fresh processes ...")
    cold = bench_cold(cfg["cold_pairs"], log)
    log("(a) -X importtime ...")
    imp = bench_importtime(cfg["importtime_runs"])
    # A handler that imports nothing itself: only the runtime's bootstrap is loaded before it
    # (awslambdaric, the open-source runtime interface client, stands in for it when installed).
    try:
        import importlib.util

        found = importlib.util.find_spec("awslambdaric") is not None
    except (ImportError, ValueError):
        found = False
    base = "import awslambdaric.bootstrap; " if found else ""
    imp_alone = bench_importtime(cfg["importtime_runs"], base + "import lambdascope")
    imp["alone_after"] = base.replace("import ", "").strip("; ") or "nothing (bare interpreter)"
    imp["alone_cumulative_ms"] = imp_alone["cumulative_ms"]
    imp["alone_other_modules"] = [
        m for m in imp_alone["modules"] if not m["module"].startswith("lambdascope")
    ]
    imp["alone_modules"] = imp_alone["modules"]
    log("(b) warm invocations ...")
    warm = bench_warm(cfg, log)
    log(f"(d) after the response, under the Runtime API emulator: {cfg['after_n']} invocations ...")
    after = bench_after_response(cfg, log)
    log("(e) timeout watchdog ...")
    watchdog = bench_watchdog(cfg, log)
    log("(f) crash breadcrumb ...")
    breadcrumb = bench_breadcrumb(cfg, log)
    meta["elapsed_s"] = time.perf_counter() - started
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res = {
        "meta": meta,
        "budgets": BUDGETS,
        "cold_start": cold,
        "importtime": imp,
        "warm": warm,
        "after_response": after,
        "watchdog": watchdog,
        "breadcrumb": breadcrumb,
    }
    res["results"] = results(res)
    if ns.json:
        json.dump(res, sys.stdout, indent=2)
        print()
    else:
        print_table(res)
    return 0 if all(r["result"] != "MISS" for r in res["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())

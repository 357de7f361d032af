"""What the sampling profiler and the cold-start diagnostics cost (issue 14).

**(p) Profiler overhead.** One sandbox under the real awslambdaric client and the Runtime API
emulator (delivery after the response, as on Lambda) runs one monitored handler. Invocations
alternate between profiled (the event asks for it: ``"lambdascope-profile": true``, the same
code path as ``LAMBDASCOPE_PROFILE_RATE``) and not, for each workload in turn:

* ``cpu``: a fixed amount of pure-Python work (about 200 ms on a quiet host);
* ``io``: 200 ms waiting in ``select`` (the sampler wakes while the handler waits);
* ``mixed``: ten rounds of 10 ms of work and 10 ms of waiting;
* ``short``: 20 ms of work (the sampler's start and stop weigh most here).

Per workload: the caller's latency as the emulator measures it (from the runtime taking the
event to its answer) and the handler's own time for its work (``perf_counter`` inside it), as
medians over the profiled and the unprofiled invocations, and the overhead ``profiled / not - 1``
from the medians and as the median of the paired ratios. Budget: ≤ 3 % at the default 10 ms
interval. The time to turn the samples into the report's ``profile`` (after the response on
Lambda) is read from the reports (``after_response_ms`` profiled minus not).

**(d) Diagnostics cost.** Fresh processes in a Lambda-like environment, alternating import
timing on (the default inside Lambda) and off (``LAMBDASCOPE_DIAGNOSTICS=0``): each times
``import lambdascope``, then ``import boto3`` (about 600 modules, with the finder in front of
every one), then its first invocation (synchronous delivery to /dev/null: the report with its
diagnostics is built before the response here). Reported: the finder's total on boto3 and per
module imported, the install's share of ``import lambdascope``, and the first invocation's
extra. One more process times ``_diagnostics.gather`` after the response (the full scan of
installed distributions, on this venv's site-packages), and under Python 3.12+ (when found) a
first invocation that runs 2,000 distinct functions is timed with and without the
``sys.monitoring`` watch that tells unused imports.

Run from the repository root: ``.venv/bin/python benchmarks/profiler.py [--quick] [--json]
[--only p|d]``. Exit status 1 when the profiler's overhead misses its budget.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

from lambdascope.runner.runtime_api import Sandbox  # noqa: E402

BUDGET = 0.03

HANDLER = '''
import select
import socket
import time

import lambdascope


def crunch(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def wait(ms):
    a, b = socket.socketpair()
    try:
        select.select([a], [], [], ms / 1000.0)
    finally:
        a.close()
        b.close()


@lambdascope.monitor
def handler(event, context):
    t0 = time.perf_counter()
    p0, c0 = time.process_time(), time.thread_time()
    work = event["work"]
    if work == "cpu":
        crunch(event["n"])
    elif work == "io":
        wait(200)
    elif work == "mixed":
        for _ in range(10):
            crunch(event["n"] // 20)
            wait(10)
    elif work == "short":
        crunch(event["n"] // 10)
    other = (time.process_time() - p0) - (time.thread_time() - c0)  # the other threads' CPU
    return {"work_ms": (time.perf_counter() - t0) * 1000.0, "other_cpu_ms": other * 1000.0}
'''


def calibrate() -> int:
    """Iterations of the ``crunch`` loop that take about 200 ms here."""
    namespace: dict[str, Any] = {}
    exec(HANDLER.split("@lambdascope.monitor")[0].replace("import lambdascope", ""), namespace)
    crunch = namespace["crunch"]
    n = 100_000
    while True:
        t0 = time.perf_counter()
        crunch(n)
        elapsed = time.perf_counter() - t0
        if elapsed > 0.05:
            return int(n * 0.2 / elapsed)
        n *= 2


def read_reports(path: Path, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    give_up = time.monotonic() + timeout_s
    lines: list[str] = []
    while time.monotonic() < give_up:
        if path.exists():
            text = path.read_text()
            lines = [line for line in text.splitlines() if line.strip()]
            if len(lines) >= count and text.endswith("\n"):
                break
        time.sleep(0.02)
    return [json.loads(line) for line in lines]


def profiler_overhead(pairs: int, pin: bool) -> dict[str, Any]:
    n = calibrate()
    with tempfile.TemporaryDirectory(prefix="lambdascope-bench-prof-") as tmp:
        task = Path(tmp) / "task"
        task.mkdir()
        (task / "bench_prof.py").write_text(HANDLER)
        reports_path = Path(tmp) / "reports.jsonl"
        env = {k: None for k in os.environ if k.startswith("LAMBDASCOPE_")}
        env.update({
            "LAMBDASCOPE_EXPORTERS": "file",
            "LAMBDASCOPE_FILE": str(reports_path),
            "LAMBDASCOPE_SPOOL_DIR": str(Path(tmp) / "spool"),
            "LAMBDASCOPE_INSTRUMENT": "none",
        })
        sandbox = Sandbox("bench_prof.handler", task, env=env, memory_mb=1024)
        sandbox.start()
        if not sandbox.wait_ready(30.0):
            raise SystemExit(f"the sandbox did not start:\n{sandbox.output}")
        cpu = None
        if pin and sandbox.process is not None and hasattr(os, "sched_setaffinity"):
            # The handler's thread on one CPU, and the samplers it starts with it (a thread
            # inherits its creator's CPUs): as in a sandbox with one vCPU, the hand-overs of the
            # interpreter lock do not wait for another core that other processes keep busy.
            cpu = max(os.sched_getaffinity(0))
            os.sched_setaffinity(sandbox.process.pid, {cpu})
        # workload, profiled, latency, work, CPU of the process's other threads meanwhile
        rows: list[tuple[str, bool, float, float, float]] = []
        try:
            workloads = ("cpu", "io", "mixed", "short")
            for _ in range(3):  # warm-up: imports, the profiler's first start
                for work in workloads:
                    for profiled in (False, True):
                        sandbox.invoke(event(work, n, profiled), 30.0)
            for k in range(pairs):
                for work in workloads:
                    order = (False, True) if k % 2 == 0 else (True, False)
                    for profiled in order:
                        result = sandbox.invoke(event(work, n, profiled), 30.0)
                        if not result.ok:
                            raise SystemExit(f"invocation failed: {result.payload}")
                        rows.append(
                            (work, profiled, float(result.duration_ms or 0.0),
                             float(result.payload["work_ms"]),
                             float(result.payload["other_cpu_ms"]))
                        )
            expected = 3 * 4 * 2 + pairs * 4 * 2
            reports = read_reports(reports_path, expected)
        finally:
            sandbox.stop()
    reports = reports[3 * 4 * 2 :]
    out: dict[str, Any] = {"iterations": n, "pairs": pairs, "pinned_cpu": cpu, "workloads": {}}
    for work in ("cpu", "io", "mixed", "short"):
        mine = [r for r in rows if r[0] == work]
        latency = {p: [r[2] for r in mine if r[1] is p] for p in (False, True)}
        inner = {p: [r[3] for r in mine if r[1] is p] for p in (False, True)}
        paired = [
            b[2] / a[2] - 1.0
            for a, b in zip([r for r in mine if not r[1]], [r for r in mine if r[1]])
        ]
        out["workloads"][work] = {
            "latency_ms": {"off": statistics.median(latency[False]),
                           "on": statistics.median(latency[True])},
            "work_ms": {"off": statistics.median(inner[False]),
                        "on": statistics.median(inner[True])},
            "overhead_median_ratio": statistics.median(latency[True])
            / statistics.median(latency[False]) - 1.0,
            "overhead_paired_median": statistics.median(paired),
            "work_overhead": statistics.median(inner[True]) / statistics.median(inner[False])
            - 1.0,
            # The sampler's own CPU time, as a share of the work's wall time.
            "sampler_cpu_share": statistics.median(
                (r[4] - o[4]) / r[3]
                for o, r in zip([r for r in mine if not r[1]], [r for r in mine if r[1]])
            ),
        }
    on = [r for r in reports if "profile" in r]
    off = [r for r in reports if "profile" not in r]
    out["samples_per_100ms"] = statistics.median(
        100.0 * (r["profile"]["samples"] + r["profile"]["dropped_samples"])
        / max(1.0, r["profile"]["duration_ms"]) for r in on
    )
    out["dropped_share"] = statistics.median(
        r["profile"]["dropped_samples"] / max(1, r["profile"]["samples"]
                                              + r["profile"]["dropped_samples"]) for r in on
    )
    out["after_response_ms"] = {
        "off": statistics.median(r["agent"]["overhead"]["after_response_ms"] for r in off),
        "on": statistics.median(r["agent"]["overhead"]["after_response_ms"] for r in on),
    }
    out["caller_path_ms"] = {
        "off": statistics.median(r["agent"]["overhead"]["invocation_ms"] for r in off),
        "on": statistics.median(r["agent"]["overhead"]["invocation_ms"] for r in on),
    }
    return out


def event(work: str, n: int, profiled: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"work": work, "n": n}
    if profiled:
        doc["lambdascope-profile"] = True
    return doc


# -- (d) diagnostics ---------------------------------------------------------------------------

CHILD = r'''
import json, os, sys, time
t0 = time.perf_counter()
import lambdascope
t1 = time.perf_counter()
before = len(sys.modules)
import boto3
t2 = time.perf_counter()
imported = len(sys.modules) - before

@lambdascope.monitor
def handler(event, context):
    return "ok"

from lambdascope.testing import fake_context
ctx = fake_context()
t3 = time.perf_counter()
handler({}, ctx)
t4 = time.perf_counter()
warm = []
for _ in range(50):
    ctx = fake_context()
    t5 = time.perf_counter()
    handler({}, ctx)
    warm.append(time.perf_counter() - t5)
warm.sort()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "boto3_ms": (t2 - t1) * 1e3,
                  "modules": imported, "first_ms": (t4 - t3) * 1e3,
                  "second_ms": warm[25] * 1e3,
                  "finder": "lambdascope._importtime" in sys.modules}))
'''

GATHER = r'''
import json, sys, time
import lambdascope
import boto3
from lambdascope import _diagnostics, _importtime, _monitor, _state
_importtime.stop(time.time())
t0 = time.perf_counter()
diag = _diagnostics.gather(100.0, after_response=True)
t1 = time.perf_counter()
diag2 = _diagnostics.gather(100.0, after_response=True)
t2 = time.perf_counter()
own = _diagnostics.gather(100.0, after_response=False)
t3 = time.perf_counter()
print(json.dumps({"gather_ms": (t1 - t0) * 1e3, "gather_again_ms": (t2 - t1) * 1e3,
                  "gather_sync_ms": (t3 - t2) * 1e3,
                  "distributions": len(diag["distributions"]),
                  "timed": diag["imports_timed"],
                  "bytes": len(json.dumps(diag)),
                  "top": diag["slowest_imports"][:3]}))
'''

REIMPORT = r'''
import gc, json, statistics, sys, time
import lambdascope
from lambdascope import _importtime
baseline = set(sys.modules)
rounds = int(sys.argv[1])
wall = {True: [], False: []}
cpu = {True: [], False: []}
modules = []
for k in range(rounds + 1):
    for on in ((True, False) if k % 2 == 0 else (False, True)):
        if on:
            _importtime.RECORDER = None
            _importtime.install(0.0)
        c0, t0 = time.thread_time(), time.perf_counter()
        import boto3
        elapsed, used = time.perf_counter() - t0, time.thread_time() - c0
        if on:
            modules.append(_importtime.RECORDER.count)
            _importtime.stop(None)
        if k:  # the first round warms the file system cache
            wall[on].append(elapsed * 1e3)
            cpu[on].append(used * 1e3)
        for name in set(sys.modules) - baseline:
            del sys.modules[name]
        del boto3
        gc.collect()  # the forgotten modules' garbage, outside the timing
med = statistics.median
print(json.dumps({"on_ms": med(wall[True]), "off_ms": med(wall[False]),
                  "paired_ms": med(a - b for a, b in zip(wall[True], wall[False])),
                  "cpu_on_ms": med(cpu[True]), "cpu_off_ms": med(cpu[False]),
                  "cpu_paired_ms": med(a - b for a, b in zip(cpu[True], cpu[False])),
                  "modules": med(modules)}))
'''

TINY = r'''
import gc, importlib, json, statistics, sys, time
import lambdascope
from lambdascope import _importtime
sys.path.insert(0, sys.argv[2])
names = [f"bench_tiny_{k}" for k in range(400)]
rounds = int(sys.argv[1])
cpu = {True: [], False: []}
for k in range(rounds + 1):
    for on in ((True, False) if k % 2 == 0 else (False, True)):
        if on:
            _importtime.RECORDER = None
            _importtime.install(0.0)
        c0 = time.thread_time()
        for name in names:
            importlib.import_module(name)
        used = time.thread_time() - c0
        if on:
            _importtime.stop(None)
        for name in names:
            del sys.modules[name]
        gc.collect()
        if k:
            cpu[on].append(used / len(names) * 1e6)
med = statistics.median
print(json.dumps({"on_us": med(cpu[True]), "off_us": med(cpu[False]),
                  "paired_us": med(a - b for a, b in zip(cpu[True], cpu[False]))}))
'''

WATCH = r'''
import json, os, sys, time
import lambdascope
from lambdascope.testing import fake_context
namespace = {}
src = "\n".join(f"def f{k}(x):\n    return x + {k}\n" for k in range(2000))
exec(compile(src, "/tmp/generated_funcs.py", "exec"), namespace)
funcs = [namespace[f"f{k}"] for k in range(2000)]

@lambdascope.monitor
def handler(event, context):
    t0 = time.perf_counter()
    for _ in range(int(event["rounds"])):
        for f in funcs:
            f(1)
    return (time.perf_counter() - t0) * 1e3

first = handler({"rounds": 5}, fake_context())
second = handler({"rounds": 5}, fake_context())
print(json.dumps({"first_ms": first, "second_ms": second}))
'''


def lambda_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LAMBDASCOPE_", "AWS_LAMBDA_", "PYTHONDONTWRITEBYTECODE"))}
    env.update({
        "PYTHONPATH": str(SRC),
        "AWS_LAMBDA_FUNCTION_NAME": "bench-diagnostics",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]bench",
        "LAMBDASCOPE_EXPORTERS": "stdout",
        "LAMBDASCOPE_INSTRUMENT": "none",
        "LAMBDASCOPE_FLUSH": "sync",
        "LAMBDASCOPE_SPOOL_DIR": tempfile.mkdtemp(prefix="lambdascope-bench-spool-"),
    })
    env.update(extra)
    return env


def run_child(
    python: str, code: str, env: dict[str, str], args: list[str] | None = None
) -> dict[str, Any]:
    done = subprocess.run([python, "-c", code, *(args or [])], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def diagnostics_cost(rounds: int) -> dict[str, Any]:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(SRC / "lambdascope"), site],
                   capture_output=True, check=False)
    samples: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for k in range(rounds):
        for on in ((True, False) if k % 2 == 0 else (False, True)):
            env = lambda_env({} if on else {"LAMBDASCOPE_DIAGNOSTICS": "0"})
            seen = run_child(sys.executable, CHILD, env)
            assert seen["finder"] is on
            samples[on].append(seen)

    def med(on: bool, key: str) -> float:
        return statistics.median(s[key] for s in samples[on])

    modules = statistics.median(s["modules"] for s in samples[True])
    out: dict[str, Any] = {
        "rounds": rounds,
        "modules": modules,
        "import_lambdascope_ms": {"on": med(True, "import_ms"), "off": med(False, "import_ms")},
        "boto3_ms": {"on": med(True, "boto3_ms"), "off": med(False, "boto3_ms")},
        "first_invocation_ms": {"on": med(True, "first_ms"), "off": med(False, "first_ms")},
        "warm_invocation_ms": {"on": med(True, "second_ms"), "off": med(False, "second_ms")},
    }
    out["finder_total_ms"] = out["boto3_ms"]["on"] - out["boto3_ms"]["off"]
    out["finder_per_module_us"] = out["finder_total_ms"] * 1000.0 / max(1.0, modules)
    # The same import, again and again in one process (its modules forgotten between rounds),
    # timed and not, alternating: the finder's cost without the noise of process start-up.
    again = run_child(sys.executable, REIMPORT, lambda_env({"LAMBDASCOPE_DIAGNOSTICS": "0"}),
                      args=[str(rounds * 2)])
    again["per_module_us"] = again["paired_ms"] * 1000.0 / max(1.0, again["modules"])
    again["cpu_per_module_us"] = again["cpu_paired_ms"] * 1000.0 / max(1.0, again["modules"])
    out["reimport"] = again
    with tempfile.TemporaryDirectory(prefix="lambdascope-bench-tiny-") as tiny:
        for k in range(400):
            Path(tiny, f"bench_tiny_{k}.py").write_text(f"VALUE = {k}\n")
        subprocess.run([sys.executable, "-m", "compileall", "-q", tiny], check=False,
                       capture_output=True)
        out["tiny"] = run_child(sys.executable, TINY, lambda_env({"LAMBDASCOPE_DIAGNOSTICS": "0"}),
                                args=[str(rounds * 2), tiny])
    out["gather"] = run_child(sys.executable, GATHER, lambda_env({}))
    pythons = sorted(glob.glob("/root/.pyenv/versions/3.1[2-9]*/bin/python"))
    if pythons:
        python = pythons[0]
        watch: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for k in range(rounds):
            for on in ((True, False) if k % 2 == 0 else (False, True)):
                env = lambda_env({} if on else {"LAMBDASCOPE_DIAGNOSTICS": "0"})
                watch[on].append(run_child(python, WATCH, env))
        out["watch"] = {
            "python": python,
            "first_ms": {p: statistics.median(s["first_ms"] for s in watch[p]) for p in watch},
            "second_ms": {p: statistics.median(s["second_ms"] for s in watch[p]) for p in watch},
        }
        extra = out["watch"]["first_ms"][True] - out["watch"]["first_ms"][False]
        out["watch"]["per_code_object_us"] = extra * 1000.0 / 2000
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--json", action="store_true", help="machine-readable results")
    ap.add_argument("--only", choices=("p", "d"), help="only the profiler (p) or diagnostics (d)")
    ap.add_argument("--no-pin", action="store_true",
                    help="(p): leave the sandbox's handler thread on every CPU")
    ns = ap.parse_args()
    started = time.time()
    results: dict[str, Any] = {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "mode": "quick" if ns.quick else "full",
    }
    if ns.only in (None, "p"):
        print("(p) profiler overhead under the Runtime API emulator ...", file=sys.stderr)
        results["profiler"] = profiler_overhead(12 if ns.quick else 40, not ns.no_pin)
    if ns.only in (None, "d"):
        print("(d) diagnostics cost in fresh processes ...", file=sys.stderr)
        results["diagnostics"] = diagnostics_cost(6 if ns.quick else 20)
    results["seconds"] = round(time.time() - started, 1)
    failed = False
    if "profiler" in results:
        worst = max(
            w["overhead_paired_median"] for w in results["profiler"]["workloads"].values()
        )
        failed = worst > BUDGET
        results["profiler"]["worst_overhead"] = worst
        results["profiler"]["budget"] = BUDGET
        results["profiler"]["result"] = "MISS" if failed else "PASS"
    if ns.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 1 if failed else 0


def report(r: dict[str, Any]) -> None:
    print(f"lambdascope profiler and diagnostics  Python {r['python']}  {r['cpus']} CPUs  "
          f"load {' '.join('%.2f' % x for x in r['load'])}  mode {r['mode']}")
    p = r.get("profiler")
    if p:
        where = (f"handler thread pinned to CPU {p['pinned_cpu']}" if p["pinned_cpu"] is not None
                 else "not pinned")
        print(f"\n(p) profiler at the default 10 ms interval, {p['pairs']} pairs per workload, "
              f"{where}")
        print("    workload   latency off -> on (ms)    overhead (medians / paired)"
              "   work off -> on (ms)   sampler CPU")
        for name, w in p["workloads"].items():
            print(f"    {name:<9} {w['latency_ms']['off']:9.2f} -> {w['latency_ms']['on']:8.2f}"
                  f"      {w['overhead_median_ratio'] * 100:+6.2f} % / "
                  f"{w['overhead_paired_median'] * 100:+6.2f} %"
                  f"        {w['work_ms']['off']:8.2f} -> {w['work_ms']['on']:8.2f}"
                  f"      {w['sampler_cpu_share'] * 100:5.2f} %")
        print(f"    worst paired overhead {p['worst_overhead'] * 100:+.2f} % "
              f"(budget <= {p['budget'] * 100:.0f} %): {p['result']}")
        print(f"    sampling: {p['samples_per_100ms']:.1f} ticks per 100 ms, "
              f"{p['dropped_share'] * 100:.1f} % of them dropped (late)")
        print(f"    agent on the caller's path (ms, median): off {p['caller_path_ms']['off']:.3f}"
              f", on {p['caller_path_ms']['on']:.3f}; after the response: "
              f"off {p['after_response_ms']['off']:.3f}, on {p['after_response_ms']['on']:.3f}")
    d = r.get("diagnostics")
    if d:
        print(f"\n(d) diagnostics, {d['rounds']} fresh processes each way (import timing on/off)")
        print(f"    import lambdascope: on {d['import_lambdascope_ms']['on']:.2f} ms, "
              f"off {d['import_lambdascope_ms']['off']:.2f} ms")
        print(f"    import boto3 ({d['modules']:.0f} modules): on {d['boto3_ms']['on']:.1f} ms, "
              f"off {d['boto3_ms']['off']:.1f} ms -> finder {d['finder_total_ms']:+.1f} ms, "
              f"{d['finder_per_module_us']:+.1f} us per module")
        a = d["reimport"]
        print(f"    the same in one process, boto3 imported {d['rounds'] * 2} times each way "
              f"(wall / the thread's CPU): on {a['on_ms']:.1f} / {a['cpu_on_ms']:.1f} ms, off "
              f"{a['off_ms']:.1f} / {a['cpu_off_ms']:.1f} ms, paired {a['paired_ms']:+.2f} / "
              f"{a['cpu_paired_ms']:+.2f} ms -> {a['per_module_us']:+.1f} / "
              f"{a['cpu_per_module_us']:+.1f} us per module")
        t = d["tiny"]
        print(f"    400 one-line modules imported {d['rounds'] * 2} times each way (the "
              f"thread's CPU per module): on {t['on_us']:.1f} us, off {t['off_us']:.1f} us, paired "
              f"{t['paired_us']:+.1f} us")
        print(f"    first invocation (sync delivery, diagnostics built before the response): "
              f"on {d['first_invocation_ms']['on']:.2f} ms, off "
              f"{d['first_invocation_ms']['off']:.2f} ms")
        print(f"    warm invocation (median of 50 per process): "
              f"on {d['warm_invocation_ms']['on']:.3f} ms, off "
              f"{d['warm_invocation_ms']['off']:.3f} ms")
        g = d["gather"]
        print(f"    gather after the response: {g['gather_ms']:.1f} ms (again "
              f"{g['gather_again_ms']:.1f} ms; deployment package and layers only "
              f"{g['gather_sync_ms']:.1f} ms); {g['distributions']} distributions, "
              f"{g['timed']} modules timed, {g['bytes']} bytes")
        w = d.get("watch")
        if w:
            print(f"    sys.monitoring watch ({w['python']}), first invocation calling 2,000 "
                  f"functions 5 times: on {w['first_ms'][True]:.2f} ms, off "
                  f"{w['first_ms'][False]:.2f} ms -> {w['per_code_object_us']:+.2f} us per "
                  f"code object; second invocation on {w['second_ms'][True]:.2f} ms, off "
                  f"{w['second_ms'][False]:.2f} ms")
    print(f"\n(run took {r['seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())

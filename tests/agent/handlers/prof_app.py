"""Handlers for the profiler's sandbox tests (``tests/agent/test_profiler_in_lambda.py``), run by
awslambdaric in its own process.

``handler`` (sync), ``run_async`` (an ``async def`` handler under ``@monitor``, run by
``asyncio.run`` as a Lambda entry point must) and ``always`` (``@monitor(profile=True)``). The
event's ``action`` picks the work:

* ``hot``: ``event["ms"]`` ms of pure-Python CPU in :func:`burn_cpu` (the known hot function);
* ``io``: waits ``event["ms"]`` ms in :func:`wait_io` (a ``select`` on a socket nobody writes);
* ``deep``: recursion ``event["depth"]`` deep in :func:`descend`, burning CPU at the bottom;
* ``many``: ``event["n"]`` distinct stacks (generated functions, each burning a few ms);
* ``noop`` (default): nothing.

Every answer says what the agent looked like from inside the invocation: whether the profiler's
module was imported and which lambdascope threads existed (``seen``).

``PROF_FAULT`` (read at import) breaks the profiler inside this process: ``sample`` (the sampler's
sample raises), ``start`` (starting the sampler raises), ``result`` (turning the samples into the
report's ``profile`` raises).
"""

import asyncio
import os
import select
import socket
import sys
import threading
import time

import lambdascope

FAULT = os.environ.get("PROF_FAULT", "")


def _boom(*args, **kwargs):
    raise RuntimeError(f"injected profiler fault: {FAULT}")


if FAULT:
    from lambdascope import _profiler

    if FAULT == "sample":
        _profiler.Profiler._sample = _boom
    elif FAULT == "start":
        _profiler.Profiler.start = _boom
    elif FAULT == "result":
        _profiler.Profiler.result = _boom
    else:
        raise RuntimeError(f"unknown PROF_FAULT {FAULT!r}")


def burn_cpu(ms):
    """The hot function: pure-Python arithmetic for ``ms`` milliseconds."""
    end = time.perf_counter() + ms / 1000.0
    total = 0
    while time.perf_counter() < end:
        for i in range(200):
            total += i * i
    return total


def wait_io(ms):
    a, b = socket.socketpair()
    try:
        select.select([a], [], [], ms / 1000.0)
    finally:
        a.close()
        b.close()


def descend(depth, ms):
    if depth <= 0:
        return burn_cpu(ms)
    return descend(depth - 1, ms)


_GENERATED = {}


def generated(k):
    """A function of its own for each ``k`` (so each makes a distinct stack)."""
    fn = _GENERATED.get(k)
    if fn is None:
        namespace = {"burn_cpu": burn_cpu}
        exec(compile(f"def stack_{k}(ms):\n    return burn_cpu(ms)\n", f"gen_{k}.py", "exec"),
             namespace)
        fn = _GENERATED[k] = namespace[f"stack_{k}"]
    return fn


def seen():
    return {
        "profiler_imported": "lambdascope._profiler" in sys.modules,
        "threads": sorted(
            t.name for t in threading.enumerate() if t.name.startswith("lambdascope")
        ),
    }


def work(event):
    action = event.get("action", "noop") if isinstance(event, dict) else "noop"
    if action == "hot":
        burn_cpu(float(event.get("ms", 300)))
    elif action == "io":
        wait_io(float(event.get("ms", 300)))
    elif action == "deep":
        descend(int(event.get("depth", 200)), float(event.get("ms", 200)))
    elif action == "many":
        for k in range(int(event.get("n", 100))):
            generated(k)(float(event.get("ms", 2)))
    return {"seen": seen()}


@lambdascope.monitor
def handler(event, context):
    return work(event)


@lambdascope.monitor(profile=True)
def always(event, context):
    return work(event)


async def wait_async_io(ms):
    await asyncio.sleep(ms / 1000.0)  # AWAIT-LINE


async def crunch(ms):
    burn_cpu(ms)


@lambdascope.monitor
async def async_handler(event, context):
    await wait_async_io(float(event.get("io_ms", 300)))
    await crunch(float(event.get("cpu_ms", 100)))
    return {"seen": seen()}


def run_async(event, context):
    return asyncio.run(async_handler(event, context))

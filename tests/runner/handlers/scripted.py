"""A monitored handler for the runner tests whose behaviour follows a script shared by every
sandbox process: the Nth call (counted in a file under ``SCRIPT_DIR``, across processes) does
``event["script"][N - 1]`` (the last step once the script is done):

* ``ok``: returns at once;
* ``sleep:S``: sleeps S seconds (past the deadline: a timeout);
* ``alloc:MB``: allocates MB megabytes, 10 MB at a time (past the memory size: killed);
* ``raise``: raises ``ValueError``.

It returns the process id, this process's call count and its start and end times.
"""

import fcntl
import os
import time

import lambdascope

_calls_here = 0
_kept = []


def _next_step(script):
    path = os.path.join(os.environ["SCRIPT_DIR"], "calls")
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        n = len(fh.read())
        fh.write("x")
    return script[min(n, len(script) - 1)]


@lambdascope.monitor
def handler(event, context):
    global _calls_here
    _calls_here += 1
    started = time.time()
    step = _next_step(event.get("script") or ["ok"])
    kind, _, arg = step.partition(":")
    if kind == "sleep":
        time.sleep(float(arg))
    elif kind == "alloc":
        for _ in range(int(arg) // 10):
            _kept.append(bytearray(10 * 1024 * 1024))
            time.sleep(0.005)
    elif kind == "raise":
        raise ValueError("scripted failure")
    return {
        "pid": os.getpid(),
        "calls_here": _calls_here,
        "step": step,
        "started": started,
        "ended": time.time(),
        "event": event,
    }

"""The timeout watchdog: a report with ``status: "timeout"`` before Lambda kills the invocation.

One thread per process sleeps until the moment ``LAMBDASCOPE_TIMEOUT_WARNING_MS`` before the
deadline of the invocation in flight. Arming it for a new invocation is an attribute write: the
thread is woken only when it is idle or asleep for a later moment, so an invocation that finishes
in time costs a few hundred nanoseconds. When it fires, it checks that the very invocation it was
armed for is still running (it can never fire into the next one), takes a snapshot — spans
finished and in flight, metrics, logs, memory, and the stack of the handler's thread at that
moment — and delivers it itself. It never raises into the handler and uses no signal.
"""

from __future__ import annotations

import sys
import threading
import time

from ._guard import internal_error
from .instrumentation._suppress import ALL
from .instrumentation._suppress import LEVEL as SUPPRESS

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

_WRAPPERS = frozenset(("monitored", "async_monitored"))


class Watchdog:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._armed: Any = None
        self._last_fire_at: float | None = None
        self._sleeping_until: float | None = None
        self._thread = threading.Thread(target=self._run, name="lambdascope-timeout", daemon=True)
        self._thread.start()

    def arm(self, inv: Any, fire_at: float) -> None:
        inv.fire_at = fire_at
        self._armed = inv
        self._last_fire_at = fire_at
        until = self._sleeping_until
        if until is None or fire_at < until:
            self._event.set()

    def disarm(self, inv: Any) -> None:
        if self._armed is inv:
            self._armed = None

    def _run(self) -> None:
        SUPPRESS.set(ALL)  # the watchdog's own delivery is never traced
        while True:
            inv = self._armed
            # With nothing armed, sleep until the last armed moment anyway: the next invocation
            # almost always fires later, so arming it needs no wake-up (a wake-up per invocation
            # would cost far more than the watchdog itself).
            target = inv.fire_at if inv is not None else self._last_fire_at
            if target is None:
                self._sleeping_until = None
                self._event.wait()
                self._event.clear()
                continue
            delay = target - time.monotonic()
            if delay > 0:
                self._sleeping_until = target
                if self._event.wait(delay):
                    self._event.clear()
                continue  # look again: re-armed, disarmed, or time is up
            if inv is None:
                if self._last_fire_at == target:
                    self._last_fire_at = None
                continue
            if self._armed is inv and not inv.ended:
                self._armed = None
                try:
                    fire(inv)
                except Exception as exc:
                    internal_error("watchdog.fire", exc)
            elif self._armed is inv:
                self._armed = None


def handler_stack(thread_id: int | None) -> list[dict[str, Any]]:
    """Where the handler's thread is now: outermost call first, from the handler down."""
    if thread_id is None:
        return []
    frame = sys._current_frames().get(thread_id)
    frames: list[Any] = []
    while frame is not None:
        if frame.f_code.co_name in _WRAPPERS and frame.f_code.co_filename.endswith("_decorator.py"):
            break  # the agent's wrapper: what is above it is the runtime's
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return [
        {"file": f.f_code.co_filename, "line": f.f_lineno, "function": f.f_code.co_name}
        for f in frames[-64:]
    ]


def fire(inv: Any) -> None:
    from ._monitor import build_report

    inv.timed_out = True
    now = time.time()
    remaining = inv.remaining_ms
    report = build_report(
        inv, None, None, now, (time.perf_counter() - inv.start_perf) * 1000.0,
        status="timeout", snapshot=True,
    )
    report["error"] = {
        "type": "Timeout",
        "message": (
            f"the invocation was still running {remaining:.0f} ms before its deadline"
            if remaining is not None
            else "the invocation was about to reach its deadline"
        ),
        "stack": handler_stack(inv.thread_id),
    }
    inv.pipeline.deliver([report], remaining_ms=remaining)
    # Delivered or spooled: a kill at the deadline is no longer a crash to report.
    from ._state import S

    if S.breadcrumbs:
        try:
            S.breadcrumbs.timeout_reported()
        except Exception as exc:
            from ._guard import internal_error

            internal_error("breadcrumbs.timeout_reported", exc)

"""The one home of process-wide mutable state.

Per-invocation data lives in :mod:`lambdascope._invocation` (a ContextVar); everything that
outlives one invocation lives here, so tests and the SnapStart restore hook reset it in one place.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

# Set by lambdascope/__init__.py around its own import.
import_ms: float = 0.0


def _process_start_wall() -> float | None:
    """Wall-clock time (epoch seconds) at which this process started, on Linux.

    ``/proc/self/stat`` gives the start in clock ticks since boot; the boot-time clock gives
    "now" since boot with nanosecond resolution, so the age needs no wall-clock boot time
    (whose one-second resolution would swamp an init of a few hundred milliseconds).
    """
    try:
        with open("/proc/self/stat", "rb") as fh:
            raw = fh.read()
        fields = raw[raw.rindex(b")") + 2 :].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after "pid (comm)"
        hz = os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / hz
        return time.time() - age
    except Exception:
        return None


class State:
    """Process-wide agent state. One instance, replaced by :func:`reset`."""

    def __init__(self) -> None:
        now = time.time()
        self.pid = os.getpid()
        self.first_invocation = True
        # Init clocks (epoch seconds). process_start is computed lazily at the first call.
        self.process_start: float | None = None
        self.process_start_known = False
        self.init_end: float = now  # moved forward by each decoration (the end of init we see)
        self.init_end_exact = False  # True once the runtime client's first wait was seen
        self.init_end_hooked = False
        self.restored_at: float | None = None  # SnapStart restore time
        self.snapshot_init_ms: float | None = None  # init measured before the snapshot
        self.decorate_ms = 0.0
        self.setup_ms = 0.0
        # Import-time data, attached to the next report.
        self.pending_metrics: list[dict[str, Any]] = []
        self.pending_labels: list[str] = []
        # Memory across warm invocations.
        self.rss_baseline_mb: float | None = None
        self.rss_history: list[float] = []
        # Built lazily at the first call: Config id -> Pipeline.
        self.pipelines: dict[tuple[Any, ...], Any] = {}
        self.sampler: Any = None
        # The configuration of the last invocation and its pipeline (skips hashing the key).
        self.last_config: Any = None
        self.last_pipeline: Any = None
        self.log_handler: Any = None
        self.otel_bridge: Any = None
        self.otel_checked = False
        # Invocations in flight, by trace id (OpenTelemetry spans ended on other threads).
        self.active: dict[str, Any] = {}
        self.snapstart_hooked = False
        # The after-response flusher (an internal extension or a thread), chosen during init.
        self.flusher: Any = None
        self.watchdog: Any = None  # the timeout watchdog thread, started on first use
        self.breadcrumbs: Any = None  # None: not set up yet; False: not available
        self.crashed: list[Any] = []  # reports of invocations of dead earlier processes
        self.flusher_chosen = False
        # How many times the runtime client asked for an event (counted by the agent's hook), and
        # the next invocation's starting resource readings taken after the previous delivery.
        self.runtime_nexts = 0
        self.next_start: tuple[int, Any] | None = None

    def init_start(self) -> float:
        if not self.process_start_known:
            self.process_start_known = True
            self.process_start = _process_start_wall()
        return self.process_start if self.process_start is not None else self.init_end


S = State()


def reset() -> State:
    """Forget everything process-wide, as if the process had just started (tests, restore)."""
    global S
    old = S
    S = State()
    # Keep things that belong to the process rather than to one agent life.
    S.log_handler = old.log_handler
    S.otel_bridge = old.otel_bridge
    S.snapstart_hooked = old.snapstart_hooked
    S.init_end_hooked = old.init_end_hooked
    S.flusher = old.flusher
    S.watchdog = old.watchdog
    S.flusher_chosen = old.flusher_chosen
    return S

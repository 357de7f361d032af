"""``lambdascope invoke``: run a handler the way Lambda does, on this machine.

:class:`Runner` drives :class:`~lambdascope.runner.runtime_api.Sandbox` processes (the real
``awslambdaric`` runtime interface client, one process per sandbox) with Lambda's rules:

* **Sandboxes.** ``times`` invocations are spread over ``containers`` sandboxes, ``concurrency``
  at once; a sandbox runs one invocation at a time (Lambda Managed Instances: up to its
  ``AWS_LAMBDA_MAX_CONCURRENCY``) and the invocation goes to the free sandbox that served the
  fewest so far, so ``containers`` sandboxes give ``containers`` cold starts. An on-demand
  sandbox starts when its first invocation arrives (a cold start: the caller waits for the
  init); a provisioned-concurrency, SnapStart or managed-instances sandbox is initialised ahead
  (SnapStart: up to the snapshot, restored when its first invocation arrives).
* **Freeze.** Once the runtime *and* every extension have asked for their next event, the
  sandbox's process group is stopped (``SIGSTOP``) until its next invocation (``SIGCONT``), as
  Lambda freezes an idle sandbox; work after the response (the agent's delivery) happens before
  that, because the agent's extension asks for its next event only when it is done. Managed
  instances are never frozen.
* **Deadline.** At ``timeout_s`` after the runtime took the event the sandbox is killed
  (``SIGKILL`` to its process group) and the invocation counts as a timeout; the agent sent
  its timeout report just before (``LAMBDASCOPE_TIMEOUT_WARNING_MS``).
* **Memory.** The resident memory of the sandbox's process tree is sampled every
  ``poll_interval_s``; past ``memory_mb`` the sandbox is killed and the invocation fails with
  ``Runtime.OutOfMemory``, as Lambda reports it. The same figure is what the agent reports as
  the sandbox's memory (through ``LAMBDASCOPE_SANDBOX_CGROUP``).
* **After a kill** (timeout, out of memory, the runtime exited, a failed init) the slot gets a new
  process: cold for on-demand, initialised ahead for the other init types. Each slot keeps its own
  temporary directory (``TMPDIR``, and the agent's spool), as a sandbox keeps its ``/tmp`` across
  runtime restarts, so the agent's breadcrumb of an invocation whose process was killed is
  found and reported (``status: "crashed"``) by the slot's next process.
* **Reports.** Unless a collector URL is given, the sandboxes report to a loopback receiver
  (:class:`~lambdascope.runner.receiver.ReportReceiver`) that stores into the embedded store.
  At the end the sandboxes are stopped (``SIGTERM``, the agent's last flush), the reports still
  expected are waited for (bounded), and the runner adds what Lambda's own ``REPORT`` line would
  say of each invocation (:meth:`Store.add_platform`), so an invocation whose process died, or a
  handler without the agent, is in the store too.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .runtime_api import (
    LAMBDA_MANAGED_INSTANCES,
    ON_DEMAND,
    PROVISIONED_CONCURRENCY,
    SNAP_START,
    InvocationResult,
    RuntimeInitError,
    Sandbox,
)
from .target import HandlerRef

__all__ = [
    "INIT_TYPES",
    "InvocationRecord",
    "InvokeOptions",
    "RunResult",
    "Runner",
]

INIT_TYPES = (ON_DEMAND, PROVISIONED_CONCURRENCY, SNAP_START, LAMBDA_MANAGED_INSTANCES)
#: Lambda's limits: timeout 1 s … 15 min, memory 128 MB … 10,240 MB.
MAX_TIMEOUT_S = 900.0
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10240

_MB = 1024.0 * 1024.0
#: The name the agent's internal extension registers with.
AGENT_EXTENSION = "lambdascope"
_START_KIND = {
    ON_DEMAND: "cold",
    PROVISIONED_CONCURRENCY: "provisioned",
    SNAP_START: "restored",
    LAMBDA_MANAGED_INSTANCES: "managed",
}


@dataclass
class InvokeOptions:
    """What ``lambdascope invoke`` was asked for (see :meth:`check`)."""

    times: int = 1
    containers: int | None = None  # default: concurrency (managed instances: 1)
    concurrency: int = 1
    timeout_s: float = 3.0
    memory_mb: int = 128
    interval_s: float = 0.0
    init_type: str = ON_DEMAND
    function_name: str | None = None
    region: str | None = None
    #: Added to (or, with ``None``, removed from) every sandbox's environment.
    env: Mapping[str, str | None] = field(default_factory=dict)
    #: How often the sandboxes' memory is sampled.
    poll_interval_s: float = 0.025
    #: The longest wait, after the last invocation, for reports still expected.
    report_wait_s: float = 3.0
    #: ``SIGTERM`` to ``SIGKILL`` when a sandbox is stopped (Lambda gives 500 ms).
    stop_grace_s: float = 0.5

    def check(self) -> None:
        """Raise ``ValueError`` (one line) for values Lambda or the runner cannot take."""
        if self.times < 1:
            raise ValueError(f"--times {self.times}: must be 1 or more")
        if self.concurrency < 1:
            raise ValueError(f"--concurrency {self.concurrency}: must be 1 or more")
        if self.containers is not None and self.containers < 1:
            raise ValueError(f"--containers {self.containers}: must be 1 or more")
        if not (math.isfinite(self.timeout_s) and 0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise ValueError(
                f"--timeout {self.timeout_s:g}: must be more than 0 and at most "
                f"{MAX_TIMEOUT_S:g} seconds (Lambda's limit)"
            )
        if not MIN_MEMORY_MB <= self.memory_mb <= MAX_MEMORY_MB:
            raise ValueError(
                f"--memory {self.memory_mb}: Lambda takes {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MB"
            )
        if not (math.isfinite(self.interval_s) and self.interval_s >= 0):
            raise ValueError(f"--interval {self.interval_s:g}: must be 0 or more seconds")
        if self.init_type not in INIT_TYPES:
            raise ValueError(
                f"--init-type {self.init_type}: one of {', '.join(INIT_TYPES)}"
            )
        if (
            self.init_type != LAMBDA_MANAGED_INSTANCES
            and self.containers is not None
            and self.concurrency > self.containers
        ):
            raise ValueError(
                f"--concurrency {self.concurrency} needs --containers {self.concurrency} or "
                f"more: a sandbox runs one invocation at a time"
            )

    @property
    def sandboxes(self) -> int:
        if self.containers is not None:
            return self.containers
        return 1 if self.init_type == LAMBDA_MANAGED_INSTANCES else self.concurrency

    @property
    def per_sandbox(self) -> int:
        """How many invocations one sandbox takes at once."""
        if self.init_type != LAMBDA_MANAGED_INSTANCES:
            return 1
        return max(1, math.ceil(self.concurrency / self.sandboxes))


@dataclass
class InvocationRecord:
    """One invocation as the runner (the platform) saw it."""

    index: int  # 1-based, in the order they were sent
    request_id: str
    sandbox: int  # 1-based slot number
    process: int  # 1 for the slot's first process, 2 after its first replacement, …
    start: str  # cold | warm | provisioned | restored | managed
    cold_start: bool
    status: str = "ok"  # ok | error | timeout | crashed
    error_type: str | None = None
    error_message: str | None = None
    start_ms: float = 0.0  # when the runtime took the event (epoch ms)
    end_ms: float = 0.0
    duration_ms: float | None = None
    init_ms: float | None = None  # the init of this process, on its first invocation
    restore_ms: float | None = None  # SnapStart: the restore, on the first invocation
    max_memory_mb: float | None = None  # the sandbox's peak during the invocation
    payload: Any = None  # the response, or the error document
    log_stream: str = ""
    pid: int | None = None
    reported: bool = False  # a report of it reached the store (embedded store only)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "request_id": self.request_id,
            "sandbox": self.sandbox,
            "process": self.process,
            "start": self.start,
            "cold_start": self.cold_start,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "start_ms": round(self.start_ms, 3),
            "end_ms": round(self.end_ms, 3),
            "duration_ms": self.duration_ms,
            "init_ms": self.init_ms,
            "restore_ms": self.restore_ms,
            "max_memory_mb": self.max_memory_mb,
            "reported": self.reported,
            "response": self.payload if self.status == "ok" else None,
            "error": self.payload if self.status != "ok" else None,
        }


@dataclass
class RunResult:
    function_name: str
    handler: str
    options: InvokeOptions
    invocations: list[InvocationRecord]
    since_ms: float
    until_ms: float
    db_path: str | None
    collector_url: str | None
    sandboxes_started: int
    reports_received: int
    reports_missing: list[str]
    notes: list[str]
    #: The agent ran in a sandbox (its extension registered, or a report arrived).
    agent_seen: bool = False

    def counts(self) -> dict[str, int]:
        out = {"invocations": len(self.invocations)}
        for key in ("cold", "warm", "provisioned", "restored", "managed"):
            out[key] = sum(1 for r in self.invocations if r.start == key)
        for key in ("ok", "error", "timeout", "crashed"):
            out[key] = sum(1 for r in self.invocations if r.status == key)
        out["out_of_memory"] = sum(
            1 for r in self.invocations if r.error_type == "Runtime.OutOfMemory"
        )
        return out


# -- memory ---------------------------------------------------------------------------------

class _MemoryFile:
    """A number of bytes in a file the agent keeps open and re-reads (``pread`` at 0): written
    in place, fixed width, so a reader never sees half a number."""

    WIDTH = 24

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.value = -1
        self.write(0)

    def write(self, value: int) -> None:
        if value != self.value:
            self.value = value
            try:
                os.pwrite(self.fd, f"{value:<{self.WIDTH - 1}d}\n".encode(), 0)
            except OSError:
                pass

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class _MemoryWatch:
    """Samples the resident memory of one sandbox's process tree (RSS of a lone process, the
    sum of proportional set sizes of several); kills the sandbox past its limit. Keeps the
    figures the agent reads as the sandbox's memory (``memory.current``, ``memory.peak`` in
    the slot's cgroup-like directory)."""

    CHILDREN_EVERY = 8  # rescan the process tree every this many samples

    def __init__(self, sandbox: Sandbox, limit_mb: int, cgroup_dir: str, interval_s: float,
                 on_exceeded: Callable[[float], None]) -> None:
        self.sandbox = sandbox
        self.limit_bytes = int(limit_mb * _MB)
        self.interval_s = interval_s
        self.on_exceeded = on_exceeded
        self.current = _MemoryFile(os.path.join(cgroup_dir, "memory.current"))
        self.peak_file = _MemoryFile(os.path.join(cgroup_dir, "memory.peak"))
        self.peak = 0
        self.window_peak = 0
        self.exceeded_mb: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lambdascope-invoke-memory",
                                        daemon=True)
        self._thread.start()

    def begin(self) -> None:
        with self._lock:
            self.window_peak = max(0, self.current.value)

    def window_peak_mb(self) -> float | None:
        with self._lock:
            return round(self.window_peak / _MB, 2) if self.window_peak else None

    def _run(self) -> None:
        import psutil

        pid = self.sandbox.pid
        if pid is None:
            return
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        tree: list[Any] = [root]
        n = 0
        while not self._stop.is_set() and self.sandbox.alive:
            if not self.sandbox.frozen:  # a stopped process cannot grow
                if n % self.CHILDREN_EVERY == 0:
                    try:
                        tree = [root, *root.children(recursive=True)]
                    except psutil.Error:
                        tree = [root]
                n += 1
                total = 0
                for proc in tree:
                    try:
                        # One process: its RSS (one cheap read). Several (forked workers share
                        # pages): each one's proportional share, so nothing counts twice.
                        total += (proc.memory_info().rss if len(tree) == 1
                                  else proc.memory_full_info().pss)
                    except (psutil.Error, AttributeError):
                        continue
                with self._lock:
                    self.current.write(total)
                    self.window_peak = max(self.window_peak, total)
                    if total > self.peak:
                        self.peak = total
                        self.peak_file.write(total)
                if total > self.limit_bytes:
                    self.exceeded_mb = round(total / _MB, 2)
                    self.sandbox.kill()
                    self.on_exceeded(self.exceeded_mb)
                    return
            self._stop.wait(self.interval_s)

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        self.current.close()
        self.peak_file.close()


# -- slots ----------------------------------------------------------------------------------

class _Slot:
    """One sandbox position: the process serving it now, and what outlives its processes (its
    temporary directory, its counts)."""

    def __init__(self, number: int, root: str, capacity: int) -> None:
        self.number = number
        self.dir = os.path.join(root, f"sandbox-{number}")
        self.tmp = os.path.join(self.dir, "tmp")
        self.cgroup = os.path.join(self.dir, "cgroup")
        for path in (self.tmp, self.cgroup):
            os.makedirs(path, exist_ok=True)
        self.capacity = capacity
        self.busy = 0
        self.total = 0  # invocations sent to this slot, over all its processes
        self.served = 0  # invocations taken by the current process
        self.generation = 0
        self.sandbox: Sandbox | None = None
        self.watch: _MemoryWatch | None = None
        self.lock = threading.Lock()  # held while a process is started or replaced
        self.ready: threading.Event | None = None  # set once an ahead-of-time init finished


class Runner:
    """Runs one handler's invocations; see the module documentation.

    ``collector_url``: where the sandboxes report (no embedded store); otherwise reports go to
    the store file ``db_path`` through a loopback receiver. ``on_progress(done, total, record)``
    is called after each invocation, ``on_output(sandbox, stream, line)`` for each line the
    sandboxes print, ``on_event(name, info)`` at lifecycle points (``started``, ``frozen``,
    ``thawed``, ``killed``, ``stopped``) — all from worker threads.
    """

    def __init__(
        self,
        ref: HandlerRef,
        options: InvokeOptions,
        *,
        db_path: str | None = None,
        collector_url: str | None = None,
        on_progress: Callable[[int, int, InvocationRecord], None] | None = None,
        on_output: Callable[[int, str, str], None] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        options.check()
        if (db_path is None) == (collector_url is None):
            raise ValueError("give db_path or collector_url")
        self.ref = ref
        self.options = options
        self.function_name = options.function_name or ref.default_function_name
        self.region = (options.region or os.environ.get("AWS_REGION")
                       or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        self.db_path = db_path
        self.collector_url = collector_url
        self.on_progress = on_progress
        self.on_output = on_output
        self.on_event = on_event
        self.records: list[InvocationRecord] = []
        self.notes: list[str] = []
        self.sandboxes_started = 0
        self._cond = threading.Condition()
        self._in_flight = 0
        self._done = 0
        self._closing = False
        self._slots: list[_Slot] = []
        self._root = ""
        self._store: Any = None
        self._receiver: Any = None
        self._background: list[threading.Thread] = []
        self._agent_seen = False  # the agent's extension registered in a sandbox

    # -- the run ------------------------------------------------------------------------------
    def run(self, event: Any) -> RunResult:
        opts = self.options
        self._root = tempfile.mkdtemp(prefix="lambdascope-invoke-")
        pool: ThreadPoolExecutor | None = None
        futures: list[Future[InvocationRecord]] = []
        finished = False
        since_ms = time.time() * 1000.0
        try:
            self._open_reports()
            self._slots = [_Slot(n + 1, self._root, opts.per_sandbox)
                           for n in range(opts.sandboxes)]
            if opts.init_type != ON_DEMAND:
                self._init_ahead(self._slots)
            since_ms = time.time() * 1000.0
            pool = ThreadPoolExecutor(max_workers=opts.concurrency,
                                      thread_name_prefix="lambdascope-invoke")
            for index in range(1, opts.times + 1):
                slot = self._acquire()
                if index > 1 and opts.interval_s > 0:
                    time.sleep(opts.interval_s)
                futures.append(pool.submit(self._invoke, slot, index, event))
            for future in futures:
                future.result()
            # Reports delivered in the background (managed instances) must get out before the
            # sandboxes are stopped.
            self._await_reports(self.options.report_wait_s)
            finished = True
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._stop_all()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            for thread in self._background:
                thread.join(timeout=15.0)
            self._stop_all()  # replacements started ahead while the last invocations ended
            if not finished:  # interrupted, or the store could not be opened
                self._close_reports()
                shutil.rmtree(self._root, ignore_errors=True)
        try:
            records = sorted(self.records, key=lambda r: r.index)
            missing = self._finish_reports(records)
            until_ms = time.time() * 1000.0 + 1.0
            received = len(self._receiver.received()) if self._receiver is not None else 0
        finally:
            self._close_reports()
            shutil.rmtree(self._root, ignore_errors=True)
        return RunResult(
            function_name=self.function_name,
            handler=self.ref.reference,
            options=opts,
            invocations=records,
            since_ms=since_ms,
            until_ms=until_ms,
            db_path=self.db_path,
            collector_url=self.collector_url,
            sandboxes_started=self.sandboxes_started,
            reports_received=received,
            reports_missing=missing,
            notes=self.notes,
            agent_seen=self._agent_seen or received > 0,
        )

    def _emit(self, name: str, **info: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(name, info)
            except Exception:
                pass

    # -- scheduling ---------------------------------------------------------------------------
    def _acquire(self) -> _Slot:
        """A slot with room for one more invocation, once fewer than ``concurrency`` run."""
        with self._cond:
            while True:
                if self._in_flight < self.options.concurrency:
                    free = [s for s in self._slots if s.busy < s.capacity]
                    if free:
                        slot = min(free, key=lambda s: (s.total, s.number))
                        slot.busy += 1
                        slot.total += 1
                        self._in_flight += 1
                        return slot
                self._cond.wait(0.5)

    def _release(self, slot: _Slot, record: InvocationRecord) -> None:
        with self._cond:
            slot.busy -= 1
            self._in_flight -= 1
            self._done += 1
            self.records.append(record)
            done = self._done
            self._cond.notify_all()
        if self.on_progress is not None:
            try:
                self.on_progress(done, self.options.times, record)
            except Exception:
                pass

    # -- sandboxes ----------------------------------------------------------------------------
    def _env(self, slot: _Slot) -> dict[str, str | None]:
        env: dict[str, str | None] = {}
        url = self.collector_url or (self._receiver.url if self._receiver is not None else None)
        if url:
            env["LAMBDASCOPE_COLLECTOR_URL"] = url
        exporters = os.environ.get("LAMBDASCOPE_EXPORTERS")
        if exporters and "http" not in [e.strip() for e in exporters.split(",")]:
            env["LAMBDASCOPE_EXPORTERS"] = f"{exporters},http"
        env.update(
            {
                "TMPDIR": slot.tmp,
                "LAMBDASCOPE_SPOOL_DIR": os.path.join(slot.tmp, "lambdascope", "spool"),
                "LAMBDASCOPE_SANDBOX_CGROUP": slot.cgroup,
            }
        )
        if self.options.init_type == LAMBDA_MANAGED_INSTANCES:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(slot.capacity)
        env.update(self.options.env)
        return env

    def _start(self, slot: _Slot) -> Sandbox:
        """Start a new process for ``slot`` (its previous one, if any, is gone)."""
        opts = self.options

        def output(stream: str, line: str, number: int = slot.number) -> None:
            if self.on_output is not None:
                self.on_output(number, stream, line)

        if self._closing:
            raise RuntimeError("the run is being stopped")
        slot.generation += 1
        slot.served = 0
        sandbox = Sandbox(
            self.ref.handler,
            self.ref.task_root,
            env=self._env(slot),
            init_type=opts.init_type,
            function_name=self.function_name,
            memory_mb=opts.memory_mb,
            region=self.region,
            on_output=output,
            stop_grace_s=opts.stop_grace_s,
        )
        sandbox.start()
        slot.sandbox = sandbox
        self.sandboxes_started += 1

        def exceeded(mb: float, number: int = slot.number, pid: Any = sandbox.pid) -> None:
            self._emit("killed", sandbox=number, pid=pid, reason="out of memory",
                       memory_mb=mb)

        slot.watch = _MemoryWatch(sandbox, opts.memory_mb, slot.cgroup, opts.poll_interval_s,
                                  exceeded)
        self._emit("started", sandbox=slot.number, pid=sandbox.pid, process=slot.generation)
        return sandbox

    def _init_ahead(self, slots: list[_Slot]) -> None:
        """Start ``slots``' processes and wait for their inits (to the snapshot for SnapStart),
        then freeze them: provisioned concurrency, SnapStart, managed instances."""
        for slot in slots:
            with slot.lock:
                self._start(slot)
                slot.ready = threading.Event()
        for slot in slots:
            self._await_init(slot)

    def _await_init(self, slot: _Slot) -> None:
        sandbox = slot.sandbox
        assert sandbox is not None and slot.ready is not None
        try:
            if not sandbox.wait_ready(sandbox.api.init_timeout_s):
                self.notes.append(f"sandbox {slot.number}: the init did not finish within "
                                  f"{sandbox.api.init_timeout_s:g} s")
            elif self.options.init_type != LAMBDA_MANAGED_INSTANCES and sandbox.freeze():
                self._emit("frozen", sandbox=slot.number, pid=sandbox.pid)
        except RuntimeInitError:
            pass  # the invocation that comes answers the init error, as Lambda does
        finally:
            slot.ready.set()

    def _replace_ahead(self, slot: _Slot) -> None:
        """After a kill: a new process initialised ahead (not on-demand)."""
        ready = slot.ready
        with slot.lock:
            if self._closing:
                if ready is not None:
                    ready.set()
                return
            self._start(slot)
        self._await_init(slot)

    def _retire(self, slot: _Slot, sandbox: Sandbox) -> None:
        """The slot's process is done for (killed, exited, stuck): clean it up and, unless the
        slot starts processes on demand, start its replacement now."""
        ahead = self.options.init_type != ON_DEMAND
        with slot.lock:
            if slot.sandbox is sandbox:
                slot.sandbox = None
                watch, slot.watch = slot.watch, None
            else:
                watch = None
            if ahead and not self._closing:
                # The slot's next invocation waits for the replacement's init.
                slot.ready = threading.Event()
            else:
                ahead = False
        sandbox.kill()
        sandbox.stop(grace_s=0)
        if watch is not None:
            watch.close()
        self._emit("stopped", sandbox=slot.number, pid=sandbox.pid)
        if ahead:
            thread = threading.Thread(target=self._replace_ahead, args=(slot,),
                                      name="lambdascope-invoke-replace", daemon=True)
            self._background.append(thread)
            thread.start()

    def _stop_all(self) -> None:
        threads = []
        for slot in self._slots:
            with slot.lock:
                sandbox, slot.sandbox = slot.sandbox, None
                watch, slot.watch = slot.watch, None
            if sandbox is None:
                continue

            def stop(sb: Sandbox = sandbox, w: _MemoryWatch | None = watch,
                     number: int = slot.number) -> None:
                sb.stop()  # thaws, SHUTDOWN to extensions, SIGTERM, SIGKILL after the grace
                if w is not None:
                    w.close()
                self._emit("stopped", sandbox=number, pid=sb.pid)

            thread = threading.Thread(target=stop, name="lambdascope-invoke-stop", daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(timeout=30.0)

    # -- one invocation -----------------------------------------------------------------------
    def _invoke(self, slot: _Slot, index: int, event: Any) -> InvocationRecord:
        rid = str(uuid.uuid4())
        record = InvocationRecord(index=index, request_id=rid, sandbox=slot.number, process=0,
                                  start="warm", cold_start=False)
        try:
            self._invoke_on(slot, record, event)
        except Exception as exc:  # the runner's own failure: say so on the record
            record.status = "error"
            record.error_type = "Runner.Error"
            record.error_message = f"{type(exc).__name__}: {exc}"
            now = time.time() * 1000.0
            record.start_ms = record.start_ms or now
            record.end_ms = record.end_ms or now
        finally:
            self._release(slot, record)
        return record

    def _invoke_on(self, slot: _Slot, record: InvocationRecord, event: Any) -> None:
        opts = self.options
        managed = opts.init_type == LAMBDA_MANAGED_INSTANCES
        ready = slot.ready
        if ready is not None:
            ready.wait(60.0)
        with slot.lock:
            sandbox = slot.sandbox
            if sandbox is None or not sandbox.alive:
                if sandbox is not None:  # died while idle (it cannot while frozen)
                    self.notes.append(f"sandbox {slot.number}: process {slot.generation} "
                                      f"exited while idle (status {sandbox.returncode})")
                    sandbox.stop(grace_s=0)
                    if slot.watch is not None:
                        slot.watch.close()
                sandbox = self._start(slot)
            # The first invocation of a process is cold only on demand (as the agent says).
            kind = _START_KIND[opts.init_type] if slot.served == 0 else "warm"
            first = slot.served == 0
            slot.served += 1
            watch = slot.watch
            record.process = slot.generation
            record.pid = sandbox.pid
            record.log_stream = sandbox.log_stream_name
        record.start = kind
        record.cold_start = kind == "cold"
        if sandbox.frozen:
            sandbox.thaw()
            self._emit("thawed", sandbox=slot.number, pid=sandbox.pid)
        if watch is not None:
            watch.begin()
        sent = time.time()
        result = sandbox.invoke(event, opts.timeout_s, request_id=record.request_id)
        ended = time.time()
        if not self._agent_seen and any(e["name"] == AGENT_EXTENSION
                                        for e in sandbox.api.extensions):
            self._agent_seen = True
        self._settle(record, result, sent, ended)
        if first:
            api = sandbox.api
            if api.init_done_at is not None and sandbox.started_at is not None:
                init_end = api.snapshot_at or api.init_done_at
                record.init_ms = round((init_end - sandbox.started_at) * 1000.0, 3)
            if api.restored_at is not None and api.ready_at is not None:
                record.restore_ms = round(max(0.0, api.ready_at - api.restored_at) * 1000.0, 3)
        if watch is not None:
            record.max_memory_mb = watch.window_peak_mb()
            if watch.exceeded_mb is not None and record.status != "ok":
                record.status = "crashed"
                record.error_type = "Runtime.OutOfMemory"
                record.error_message = (f"RequestId: {record.request_id} Error: Runtime exited "
                                        f"with error: signal: killed (the sandbox used "
                                        f"{watch.exceeded_mb:g} MB of {opts.memory_mb} MB)")
                record.payload = {"errorType": record.error_type,
                                  "errorMessage": record.error_message}
                record.max_memory_mb = watch.exceeded_mb
        if record.status == "timeout":
            self._emit("killed", sandbox=slot.number, pid=sandbox.pid, reason="timeout")
            self._retire(slot, sandbox)
            return
        if not sandbox.alive or sandbox.api.init_error is not None:
            self._retire(slot, sandbox)
            return
        if managed:
            return
        # Lambda freezes the sandbox once the runtime and every extension wait for their next
        # event; work after the response counts towards the deadline.
        deadline = (result.deadline_ms / 1000.0) if result.deadline_ms else ended + opts.timeout_s
        if sandbox.wait_idle(max(0.5, deadline - time.time())):
            if sandbox.freeze():
                self._emit("frozen", sandbox=slot.number, pid=sandbox.pid)
        elif sandbox.alive:
            self.notes.append(
                f"sandbox {slot.number}: still busy at the deadline of {record.request_id} "
                f"(an extension did not ask for its next event): reset"
            )
            self._retire(slot, sandbox)

    def _settle(self, record: InvocationRecord, result: InvocationResult, sent: float,
                ended: float) -> None:
        opts = self.options
        record.payload = result.payload
        record.duration_ms = result.duration_ms
        if result.deadline_ms is not None:  # the runtime took it: Lambda's clock starts there
            record.start_ms = result.deadline_ms - opts.timeout_s * 1000.0
        else:
            record.start_ms = sent * 1000.0
        record.end_ms = (record.start_ms + result.duration_ms if result.duration_ms is not None
                         else ended * 1000.0)
        doc = result.payload if isinstance(result.payload, dict) else {}
        message = doc.get("errorMessage")
        if result.status == "ok":
            record.status = "ok"
        elif result.status == "timeout":
            record.status = "timeout"
            record.error_type = "Sandbox.Timedout"
            record.error_message = str(message or f"Task timed out after {opts.timeout_s:.2f} "
                                                  f"seconds")
        else:
            record.error_type = result.error_type or str(doc.get("errorType") or "Unhandled")
            record.error_message = str(message) if message is not None else None
            record.status = "crashed" if record.error_type == "Runtime.ExitError" else "error"

    # -- reports ------------------------------------------------------------------------------
    def _open_reports(self) -> None:
        if self.db_path is None:
            return
        from ..collector.store import Store
        from .receiver import ReportReceiver

        self._store = Store(self.db_path)
        try:
            self._receiver = ReportReceiver(self._store)
        except BaseException:
            self._store.close()
            self._store = None
            raise

    def _await_reports(self, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, for a report of every invocation the runtime took
        (unless its process died: a later process of the slot may report it as crashed). When
        nothing shows the agent is there (no report, no ``lambdascope`` extension), the wait
        is short: managed instances only, whose agent delivers from a background thread."""
        if self._receiver is None:
            if self.options.init_type == LAMBDA_MANAGED_INSTANCES:
                time.sleep(min(timeout_s, 0.5))  # uncounted: give the background delivery time
            return
        with self._cond:
            expected = [r.request_id for r in self.records
                        if r.status in ("ok", "error", "timeout") and r.duration_ms is not None]
        if not expected:
            return
        if not (self._agent_seen or self._receiver.received()):
            if self.options.init_type != LAMBDA_MANAGED_INSTANCES:
                return
            timeout_s = min(timeout_s, 1.0)
        self._receiver.wait_for(expected, timeout_s)

    def _finish_reports(self, records: list[InvocationRecord]) -> list[str]:
        """Wait (bounded) for the reports still expected (the last flush when the sandboxes
        stopped), record which arrived, and add what Lambda's REPORT line says of each
        invocation. Returns the request ids without a report."""
        if self._receiver is None:
            return []
        receiver = self._receiver
        self._await_reports(min(1.0, self.options.report_wait_s))
        received = receiver.received()
        for r in records:
            r.reported = r.request_id in received
        # (A failure of the runner itself is no invocation Lambda would report.)
        platform = [self._platform_record(r) for r in records if r.error_type != "Runner.Error"]
        try:
            self._store.add_platform(platform)
        except Exception as exc:
            self.notes.append(f"the runner's own records of the invocations were not stored: "
                              f"{exc}")
        return [r.request_id for r in records if not r.reported]

    def _platform_record(self, r: InvocationRecord) -> dict[str, Any]:
        """What Lambda's REPORT line would say of ``r``."""
        status = {"ok": "success", "error": "error", "timeout": "timeout",
                  "crashed": "failure"}[r.status]
        return {
            "request_id": r.request_id,
            "function": self.function_name,
            "log_stream": r.log_stream,
            "start_ms": r.start_ms,
            "duration_ms": r.duration_ms if r.duration_ms is not None else 0.0,
            "memory_mb": self.options.memory_mb,
            "max_memory_mb": r.max_memory_mb,
            # Lambda's REPORT line has an Init Duration for on-demand cold starts only.
            "init_ms": r.init_ms if r.cold_start else None,
            "status": status,
            "error_type": r.error_type if r.status != "ok" else None,
        }

    def _close_reports(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
        if self._store is not None:
            self._store.close()
            self._store = None

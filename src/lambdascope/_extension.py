"""Flushing after the response: the caller never waits for the report.

Lambda lets code in the runtime's own process register, during init, as an *internal extension*
subscribed to ``INVOKE`` events. The sandbox is not frozen until the runtime and every extension
have asked for their next event. The agent registers one such extension and runs it on a small
thread: when an invocation's handler returns, the report is handed to that thread, the runtime
posts the handler's result to the caller at once, and the thread delivers the report (and
anything still waiting) before it asks for the next event.

On Lambda Managed Instances the environment is never frozen and internal extensions may
subscribe to no event: a plain background thread delivers there instead. Where neither is possible
(no Runtime API, registration refused, ``LAMBDASCOPE_FLUSH=sync``) delivery stays synchronous.

The time spent delivering after the response still belongs to the invocation (the sandbox is busy
and billed until the extension asks for its next event, and it counts towards the function's
timeout), so it is bounded by ``LAMBDASCOPE_FLUSH_TIMEOUT_MS`` and by the invocation's deadline.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ._guard import internal_error, log_once
from .instrumentation._suppress import ALL
from .instrumentation._suppress import LEVEL as SUPPRESS

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

EXTENSION_NAME = "lambdascope"
DEADLINE_MARGIN_MS = 50.0


class _Job:
    __slots__ = ("deadline_ms", "pipeline", "reports", "request_id")

    def __init__(
        self,
        request_id: str | None,
        pipeline: Any,
        reports: list[Any] | Callable[[], list[Any]],
        deadline_ms: float | None,
    ) -> None:
        self.request_id = request_id
        self.pipeline = pipeline
        self.reports = reports
        self.deadline_ms = deadline_ms


class Flusher:
    """Delivers reports off the caller's path (an internal extension, or a plain thread)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode  # "extension" or "thread"
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._done: set[str] = set()  # request ids whose handler has returned
        self._thread: threading.Thread | None = None
        self._api = ""
        self._id = ""
        self.alive = False
        #: The runtime client tells when it asks for its next event (the agent hooks it): the
        #: report is then delivered only once the response is posted, so the delivery thread
        #: never competes with the runtime for the interpreter while the caller waits.
        self.runtime_tells = False
        #: Run on the flusher's thread once an invocation's reports are delivered, before the
        #: extension asks for the next event (the sandbox cannot run another invocation then):
        #: the agent takes the next invocation's starting resource readings there.
        self.on_idle: Callable[[Any], None] | None = None

    @property
    def defers(self) -> bool:
        """Whether reports may be built after the response: only when nothing can run in
        between, i.e. an internal extension whose next event waits for the delivery, and
        which hears from the runtime client when the response has been posted."""
        return self.alive and self.mode == "extension" and self.runtime_tells

    # -- set-up ---------------------------------------------------------------------------
    def start_extension(self, api: str) -> bool:
        """Register with the Extensions API (only possible during init) and start the thread."""
        import http.client

        self._api = api
        conn = http.client.HTTPConnection(api, timeout=2.0)
        try:
            conn.request(
                "POST",
                "/2020-01-01/extension/register",
                b'{"events":["INVOKE"]}',  # (no json import for a constant body)
                {"Lambda-Extension-Name": EXTENSION_NAME, "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            resp.read()
            ext_id = resp.getheader("Lambda-Extension-Identifier")
        finally:
            conn.close()
        if resp.status != 200 or not ext_id:
            log_once(
                "extension-register",
                "lambdascope: the Extensions API refused the agent's extension (%s); reports are "
                "delivered before each response instead",
                resp.status,
            )
            return False
        self._id = ext_id
        self._start(self._run_extension)
        return True

    def start_thread(self) -> None:
        self._start(self._run_thread)

    def _start(self, target: Any) -> None:
        self.alive = True
        self._thread = threading.Thread(target=target, name="lambdascope-flush", daemon=True)
        self._thread.start()
        import atexit

        # The process ends on purpose (a handler called sys.exit, the runtime stops): what is
        # queued is delivered first, each delivery bounded by the flush timeout.
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        try:
            self._deliver_all()
        except Exception as exc:
            internal_error("flusher.at_exit", exc)

    # -- called by the invocation (the handler's thread) ---------------------------------------
    def submit(
        self,
        request_id: str | None,
        pipeline: Any,
        reports: list[Any] | Callable[[], list[Any]],
        deadline_ms: float | None,
    ) -> None:
        """Queue an invocation's reports, or (``reports`` callable, where :attr:`defers`) the
        function that builds them on the flusher's thread."""
        with self._cond:
            self._jobs.append(_Job(request_id, pipeline, reports, deadline_ms))
            if request_id and not self.runtime_tells:
                if len(self._done) > 256:
                    self._done.clear()
                self._done.add(request_id)
                self._cond.notify()

    def finished(self, request_id: str | None) -> None:
        """An invocation is over (the runtime asks for the next event, or it ran unmonitored):
        stop waiting for its report."""
        if request_id:
            with self._cond:
                if len(self._done) > 256:  # ids told after their INVOKE was handled linger
                    self._done.clear()
                self._done.add(request_id)
                self._cond.notify()

    # -- the flusher's thread ---------------------------------------------------------------
    def _deliver_all(self) -> Any:
        """Build and deliver every queued job; returns the pipeline of the last one (or None)."""
        last = None
        while True:
            with self._cond:
                if not self._jobs:
                    return last
                job = self._jobs.popleft()
            try:
                reports = job.reports() if callable(job.reports) else job.reports
            except Exception as exc:
                internal_error("flusher.build", exc)
                continue
            remaining = None
            if job.deadline_ms is not None:
                remaining = job.deadline_ms - time.time() * 1000.0
            try:
                job.pipeline.deliver(reports, remaining_ms=remaining)
            except Exception as exc:  # deliver() never raises; belt and braces
                internal_error("flusher.deliver", exc)
            last = job.pipeline

    def _run_thread(self) -> None:
        SUPPRESS.set(ALL)
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
            self._deliver_all()

    def _ask_next(self, conn: Any) -> None:
        conn.request(
            "GET",
            "/2020-01-01/extension/event/next",
            headers={"Lambda-Extension-Identifier": self._id},
        )

    def _read_event(self, conn: Any) -> dict[str, Any] | None:
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"extension next answered {resp.status}")
        import json  # Lambda only, where the runtime client has imported it already

        event = json.loads(body or b"{}")
        return event if isinstance(event, dict) else None

    def _wait_told(self) -> None:
        """Block (without the interpreter lock) until the runtime client has finished an
        invocation: the event that started it then sits unread in the socket's buffer. Reading
        it only now keeps this thread asleep for the whole invocation, so it never competes with
        the handler or with posting the response."""
        with self._cond:
            while not self._done:
                self._cond.wait()

    def _run_extension(self) -> None:
        import http.client

        SUPPRESS.set(ALL)  # the thread's own calls are never traced
        conn = http.client.HTTPConnection(self._api)  # no timeout: next blocks until an event
        failures = 0
        while True:
            try:
                self._ask_next(conn)
                if self.runtime_tells:
                    self._wait_told()
                event = self._read_event(conn)
                failures = 0
            except Exception as exc:
                conn.close()
                failures += 1
                if failures >= 3:
                    internal_error("extension.next", exc)
                    self.alive = False  # invocations deliver synchronously from now on
                    self._deliver_all()
                    return
                time.sleep(0.05 * failures)
                continue
            if event is None:
                continue
            if event.get("eventType") == "SHUTDOWN":
                self._deliver_all()
                return
            request_id = event.get("requestId")
            deadline_ms = event.get("deadlineMs")
            # Wait for this invocation's handler to return (its report is then queued), never
            # past the invocation's deadline.
            with self._cond:
                while request_id not in self._done:
                    left = (
                        (float(deadline_ms) - time.time() * 1000.0) / 1000.0
                        if deadline_ms is not None
                        else 900.0
                    )
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self.runtime_tells:
                    # Nothing can run before this thread asks for the next event: every id told
                    # so far belongs to an invocation that is over.
                    self._done.clear()
                else:
                    self._done.discard(request_id)
            pipeline = self._deliver_all()
            if pipeline is not None and self.on_idle is not None:
                try:
                    self.on_idle(pipeline)
                except Exception as exc:
                    internal_error("flusher.idle", exc)


SIGTERM_BUDGET_MS = 400.0  # Lambda gives about 500 ms between SIGTERM and the kill


def install_sigterm(flusher: Flusher) -> None:
    """When a sandbox with an extension is stopped, its runtime process gets ``SIGTERM`` and
    about 500 ms: deliver what is left then. A handler the user set stays in charge (called
    after ours); with none, the default action follows. Python runs signal handlers on the main
    thread, which awslambdaric leaves free on the python3.12 and later runtimes (it polls for
    events from a thread there); on older ones the signal waits for the next event."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        return  # the user chose to ignore it: so do we

    def on_sigterm(signum: int, frame: Any) -> None:
        try:
            flusher._deliver_all()
            from ._flush import flush

            flush(SIGTERM_BUDGET_MS)
        except Exception as exc:
            internal_error("sigterm.flush", exc)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            import os

            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def choose(
    config: Any,
    environ: Any,
    runtime_tells: bool = False,
    on_idle: Callable[[Any], None] | None = None,
) -> Flusher | None:
    """The after-response flusher this sandbox allows, started; ``None`` to deliver in line.

    ``runtime_tells``: the agent hooks the runtime client's request for its next event (see
    :attr:`Flusher.runtime_tells`); ``on_idle``: see :attr:`Flusher.on_idle`."""
    if config.flush == "sync":
        return None
    api = environ.get("AWS_LAMBDA_RUNTIME_API")
    init_type = (environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") or "").strip().lower()
    if init_type == "lambda-managed-instances":
        flusher = Flusher("thread")
        flusher.start_thread()
        return flusher
    if not api:
        if config.flush == "after_response":
            log_once(
                "flush-no-runtime-api",
                "lambdascope: LAMBDASCOPE_FLUSH=after_response needs the Lambda Runtime API "
                "(AWS_LAMBDA_RUNTIME_API); reports are delivered before each response instead",
            )
        return None
    flusher = Flusher("extension")
    flusher.runtime_tells = runtime_tells
    flusher.on_idle = on_idle
    try:
        if flusher.start_extension(api):
            try:
                install_sigterm(flusher)
            except Exception as exc:
                internal_error("sigterm.install", exc)
            return flusher
    except Exception as exc:
        internal_error("extension.register", exc)
    return None

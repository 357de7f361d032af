"""A local AWS Lambda Runtime API, and sandboxes that run a handler under it.

:class:`RuntimeAPI` speaks the Lambda Runtime API (``2018-06-01``) the way Lambda's own RAPID
speaks it to a runtime interface client such as ``awslambdaric``, plus a minimal Extensions API
(``2020-01-01``) for internal extensions. :class:`Sandbox` starts one process,
``python -m awslambdaric module.function``, against its own :class:`RuntimeAPI`, with the
environment Lambda gives a function.

The lifecycle follows Lambda's:

* **Init** ends when the runtime first asks for an invocation (``GET .../invocation/next``), or,
  in a SnapStart sandbox, parks on ``GET .../restore/next``, *and* every registered extension has
  called ``GET /2020-01-01/extension/event/next``. Extensions can register only before that.
  ``POST .../init/error`` fails the init: pending and later invocations answer its error.
* **Invoke**: :meth:`RuntimeAPI.invoke` queues an event and blocks. It is handed to the runtime
  with a deadline of ``timeout_s`` from that moment (init time does not count, as in Lambda) and,
  as an ``INVOKE`` event, to every extension registered for ``INVOKE``. The caller gets the
  runtime's response or error as soon as it is posted; the sandbox takes its next invocation
  only once the runtime *and* every extension have asked for their next event (an extension's
  work after the response, such as flushing telemetry, delays the next invocation, not the
  caller). Past the deadline the caller gets ``status="timeout"``; Lambda would then reset the
  sandbox, which is the caller's job here (:meth:`Sandbox.stop`).
* **SnapStart**: with ``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``, ``awslambdaric`` runs the
  before-snapshot hooks and calls ``GET .../restore/next``, which is held (the "snapshot") until
  :meth:`RuntimeAPI.restore` (or the first :meth:`RuntimeAPI.invoke`, as Lambda restores on
  demand) releases it; the runtime then runs the after-restore hooks and asks for an invocation.
* **Freeze**: :meth:`Sandbox.freeze` stops the sandbox's process group (``SIGSTOP``) once it is
  idle (:meth:`RuntimeAPI.wait_idle`), as Lambda freezes a sandbox between invocations, and
  :meth:`Sandbox.thaw` continues it (``SIGCONT``); :meth:`Sandbox.kill` is Lambda's reset of a
  sandbox that ran past its deadline or out of memory. ``lambdascope invoke``
  (:mod:`lambdascope.runner.invoke`) drives sandboxes with these rules.
* **Shutdown**: :meth:`Sandbox.stop` thaws a frozen sandbox, sends ``SHUTDOWN`` to the extensions
  registered for it (external ones only: Lambda refuses ``SHUTDOWN`` to internal extensions),
  then ``SIGTERM``, then ``SIGKILL`` after a grace period.

Standard library only. The server binds 127.0.0.1 on a free port and runs in a daemon thread;
every public method is thread-safe.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import os
import secrets
import signal
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "LAMBDA_MANAGED_INSTANCES",
    "ON_DEMAND",
    "PROVISIONED_CONCURRENCY",
    "SNAP_START",
    "InvocationResult",
    "RuntimeAPI",
    "RuntimeInitError",
    "Sandbox",
    "new_trace_header",
]

RUNTIME_PREFIX = "/2018-06-01/runtime"
EXTENSION_PREFIX = "/2020-01-01/extension"

#: Largest synchronous invocation request or response Lambda accepts.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
#: Lambda's limit on the init phase of an on-demand sandbox.
INIT_TIMEOUT_S = 10.0
#: Lambda's limit on extensions per function.
MAX_EXTENSIONS = 10

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
EXTENSION_ERROR_TYPE_HEADER = "Lambda-Extension-Function-Error-Type"
EXTENSION_NAME_HEADER = "Lambda-Extension-Name"
EXTENSION_ID_HEADER = "Lambda-Extension-Identifier"

ON_DEMAND = "on-demand"
PROVISIONED_CONCURRENCY = "provisioned-concurrency"
SNAP_START = "snap-start"
LAMBDA_MANAGED_INSTANCES = "lambda-managed-instances"

_JSON = "application/json"


def new_trace_header(sampled: bool = True) -> str:
    """A fresh X-Ray trace header, as Lambda passes in ``Lambda-Runtime-Trace-Id``."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled={1 if sampled else 0}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _json_header(value: Mapping[str, Any] | str | None) -> str | None:
    """A JSON header value (client context, Cognito identity): mappings are serialised."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _parse(body: bytes) -> Any:
    """The body as JSON, else as text (``None`` when empty)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


@dataclass
class InvocationResult:
    """What the caller of one invocation gets back."""

    request_id: str
    #: ``ok``, ``error`` (the function, its init or the runtime failed) or ``timeout``.
    status: str
    #: The response (or error document) parsed as JSON; text when it is not JSON.
    payload: Any = None
    #: The response exactly as the runtime posted it.
    body: bytes = b""
    #: ``Lambda-Runtime-Function-Error-Type`` of an error (``Sandbox.Timedout`` for a timeout,
    #: ``Runtime.ExitError`` when the runtime died, the init error's type after a failed init).
    error_type: str | None = None
    #: From the moment the runtime took the invocation to its answer (or to the deadline).
    duration_ms: float | None = None
    #: The X-Ray header the runtime got in ``Lambda-Runtime-Trace-Id``.
    trace_id: str = ""
    #: The deadline the runtime got (epoch milliseconds); ``None`` if it never took the event.
    deadline_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class RuntimeInitError(RuntimeError):
    """The sandbox failed to initialise (init error posted, or the runtime exited)."""

    def __init__(self, error_type: str, payload: Any = None) -> None:
        message = payload.get("errorMessage") if isinstance(payload, dict) else None
        super().__init__(f"{error_type}: {message}" if message else error_type)
        self.error_type = error_type
        self.payload = payload


class _Invocation:
    __slots__ = (
        "abandoned",
        "answered",
        "answered_mono",
        "body",
        "client_context",
        "cognito_identity",
        "content_type",
        "deadline_ms",
        "dispatched",
        "dispatched_mono",
        "error_type",
        "request_id",
        "response",
        "status",
        "tenant_id",
        "timeout_s",
        "trace_id",
    )

    def __init__(
        self,
        request_id: str,
        body: bytes,
        timeout_s: float,
        trace_id: str,
        client_context: str | None,
        cognito_identity: str | None,
        tenant_id: str | None,
        content_type: str,
    ) -> None:
        self.request_id = request_id
        self.body = body
        self.timeout_s = timeout_s
        self.trace_id = trace_id
        self.client_context = client_context
        self.cognito_identity = cognito_identity
        self.tenant_id = tenant_id
        self.content_type = content_type
        self.dispatched = False
        self.dispatched_mono = 0.0
        self.deadline_ms: int | None = None
        self.answered = False
        self.answered_mono = 0.0
        self.status = ""
        self.response = b""
        self.error_type: str | None = None
        self.abandoned = False  # the caller stopped waiting (timeout): a late answer is dropped


class _Extension:
    __slots__ = ("error_type", "events", "exited", "id", "internal", "name", "queue", "waiting")

    def __init__(self, name: str, events: Iterable[str], internal: bool) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.events = frozenset(events)
        self.internal = internal
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.waiting = 0  # requests parked in /event/next
        self.exited = False
        self.error_type: str | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many runtime workers may connect at once (managed instances)
    api: RuntimeAPI

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A runtime killed mid-request resets its connections: that is no error of ours.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the runtime client expects
    server_version = "lambdascope-runtime-api"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.server.api._route(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.api._route(self, "POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.server.api._route(self, "PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self.server.api._route(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class RuntimeAPI:
    """A Lambda Runtime API for one sandbox, on ``127.0.0.1`` at a free port.

    The runtime finds it through ``AWS_LAMBDA_RUNTIME_API`` (:attr:`address`). Names of
    ``external_extensions`` are treated as external extensions (they may subscribe to
    ``SHUTDOWN``); any other name registers as an internal extension.
    """

    def __init__(
        self,
        *,
        function_name: str = "test-function",
        function_version: str = "$LATEST",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        handler: str = "",
        external_extensions: Iterable[str] = (),
        init_timeout_s: float = INIT_TIMEOUT_S,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.region = region
        self.account_id = account_id
        self.handler = handler
        self.function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.external_extensions = frozenset(external_extensions)
        self.init_timeout_s = init_timeout_s

        #: Epoch seconds: init finished (first ``/next``, or the SnapStart snapshot point).
        self.init_done_at: float | None = None
        #: Epoch seconds: the runtime parked on ``/restore/next`` (SnapStart only).
        self.snapshot_at: float | None = None
        #: Epoch seconds: :meth:`restore` released the runtime.
        self.restored_at: float | None = None
        #: Epoch seconds: the runtime first asked for an invocation, every extension ready.
        self.ready_at: float | None = None
        #: The init error the runtime (or an extension) posted, with its ``errorType``.
        self.init_error: dict[str, Any] | None = None
        #: The after-restore error the runtime posted (SnapStart).
        self.restore_error: dict[str, Any] | None = None
        #: The runtime process's exit status, once :meth:`mark_exited` was told.
        self.exit_code: int | None = None

        self._cond = threading.Condition()
        self._queue: collections.deque[_Invocation] = collections.deque()
        self._invocations: dict[str, _Invocation] = {}
        self._in_flight: set[str] = set()
        self._runtime_waiting = 0
        self._snapshot_waiting = 0
        self._restored = False
        self._extensions: dict[str, _Extension] = {}
        self._init_done = False
        self._exited = False
        self._shutting_down = False
        self._closed = False

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="lambdascope-runtime-api",
            daemon=True,
        )
        self._thread.start()

    # -- public API ----------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """``host:port``, the value of ``AWS_LAMBDA_RUNTIME_API``."""
        return f"{self.host}:{self.port}"

    @property
    def extensions(self) -> list[dict[str, Any]]:
        """The registered extensions: ``name``, ``id``, ``events``, ``internal``, ``exited``."""
        with self._cond:
            return [
                {
                    "name": e.name,
                    "id": e.id,
                    "events": sorted(e.events),
                    "internal": e.internal,
                    "exited": e.exited,
                }
                for e in self._extensions.values()
            ]

    @property
    def waiting_runtimes(self) -> int:
        """How many runtime requests are parked in ``/invocation/next`` right now (more than
        one when awslambdaric runs several workers, on Lambda Managed Instances)."""
        with self._cond:
            return self._runtime_waiting

    def invoke(
        self,
        event: Any = None,
        timeout_s: float = 3.0,
        request_id: str | None = None,
        tenant_id: str | None = None,
        *,
        client_context: Mapping[str, Any] | str | None = None,
        cognito_identity: Mapping[str, Any] | str | None = None,
        trace_id: str | None = None,
        content_type: str = _JSON,
        wait_s: float | None = None,
    ) -> InvocationResult:
        """Invoke the function with ``event`` (JSON-serialisable, or ``bytes`` sent as is) and
        block until the runtime answers or ``timeout_s`` has passed since it took the event.

        ``wait_s`` bounds the wait for the sandbox to take the event (init included; default
        ``init_timeout_s``): past it the result is a ``timeout`` that never reached the runtime.
        A sandbox parked at its SnapStart snapshot is restored first, as Lambda does.
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        body = bytes(event) if isinstance(event, (bytes, bytearray)) else _dumps(event)
        rid = request_id or str(uuid.uuid4())
        trace = trace_id or new_trace_header()
        inv = _Invocation(
            rid,
            body,
            float(timeout_s),
            trace,
            _json_header(client_context),
            _json_header(cognito_identity),
            tenant_id,
            content_type,
        )
        if len(body) > MAX_PAYLOAD_BYTES:
            return self._failed(
                inv,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the "
                "InvokeFunction operation",
            )
        wait = self.init_timeout_s if wait_s is None else float(wait_s)
        with self._cond:
            if self._closed:
                raise RuntimeError("the Runtime API is closed")
            if rid in self._invocations:
                raise ValueError(f"request id {rid!r} is already in use")
            self._invocations[rid] = inv
            self._queue.append(inv)
            self._cond.notify_all()

            give_up = time.monotonic() + wait
            while not inv.dispatched:
                failure = self._failure(rid)
                if failure is None and self.snapshot_at is not None and not self._restored:
                    self._restore_locked()
                remaining = give_up - time.monotonic()
                if failure is not None or remaining <= 0:
                    self._queue.remove(inv)
                    del self._invocations[rid]
                    if failure is not None:
                        return self._failed(inv, failure[0], payload=failure[1])
                    return self._failed(
                        inv,
                        "Sandbox.Timedout",
                        f"the sandbox did not take the invocation within {wait:.2f} seconds",
                        status="timeout",
                    )
                self._cond.wait(remaining)

            while not inv.answered:
                remaining = inv.dispatched_mono + inv.timeout_s - time.monotonic()
                if self._exited or self._closed:
                    self._in_flight.discard(rid)
                    del self._invocations[rid]
                    error_type, payload = self._failure(rid) or ("Runtime.ExitError", None)
                    result = self._failed(inv, error_type, payload=payload)
                    result.duration_ms = round((time.monotonic() - inv.dispatched_mono) * 1e3, 3)
                    return result
                if remaining <= 0:
                    inv.abandoned = True  # stays in flight until the runtime answers
                    result = self._failed(
                        inv,
                        "Sandbox.Timedout",
                        f"{rid} Task timed out after {inv.timeout_s:.2f} seconds",
                        status="timeout",
                    )
                    result.duration_ms = round(inv.timeout_s * 1000.0, 3)
                    return result
                self._cond.wait(remaining)

            del self._invocations[rid]
            return InvocationResult(
                request_id=rid,
                status=inv.status,
                payload=_parse(inv.response),
                body=inv.response,
                error_type=inv.error_type,
                duration_ms=round((inv.answered_mono - inv.dispatched_mono) * 1000.0, 3),
                trace_id=inv.trace_id,
                deadline_ms=inv.deadline_ms,
            )

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait for the end of init (the runtime asks for an invocation, or parks at its
        SnapStart snapshot, with every extension ready). ``False`` on timeout.

        Raises :class:`RuntimeInitError` when the init failed or the runtime exited first.
        """
        give_up = time.monotonic() + (self.init_timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            while not self._init_done:
                failure = self._failure(None)
                if failure is not None:
                    raise RuntimeInitError(*failure)
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def restore(self, timeout_s: float | None = None) -> float:
        """Restore a SnapStart sandbox: wait until the runtime is parked at the snapshot
        (``/restore/next``), then release it. Returns the restore time (epoch seconds)."""
        give_up = time.monotonic() + (self.init_timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            while self.snapshot_at is None:
                failure = self._failure(None)
                if failure is not None:
                    raise RuntimeInitError(*failure)
                if self.ready_at is not None:
                    raise RuntimeError(
                        "the runtime asked for an invocation without a snapshot: is "
                        "AWS_LAMBDA_INITIALIZATION_TYPE=snap-start set?"
                    )
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the runtime reached no snapshot within {timeout_s} s")
                self._cond.wait(remaining)
            if not self._restored:
                self._restore_locked()
            assert self.restored_at is not None
            return self.restored_at

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until nothing is queued or in flight and the runtime and every extension are
        waiting for their next event (the point where Lambda freezes the sandbox)."""
        give_up = time.monotonic() + timeout_s
        with self._cond:
            while not (
                not self._queue
                and not self._in_flight
                and self._extensions_settled()
                and (self._runtime_waiting > 0 or self._exited)
            ):
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def shutdown(self, reason: str = "spindown", timeout_s: float = 2.0) -> bool:
        """Send ``SHUTDOWN`` to the extensions registered for it and wait (at most
        ``timeout_s``) until each has asked for its next event or exited. Further invocations
        are refused. ``True`` when every extension finished in time."""
        with self._cond:
            if self._shutting_down:
                return True
            self._shutting_down = True
            deadline_ms = int((time.time() + timeout_s) * 1000)
            targets = [
                e for e in self._extensions.values() if not e.exited and "SHUTDOWN" in e.events
            ]
            for ext in targets:
                ext.queue.append(
                    {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
                )
            self._cond.notify_all()
            give_up = time.monotonic() + timeout_s
            while any(not e.exited and (e.queue or e.waiting == 0) for e in targets):
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def shutdown_subscribers(self) -> int:
        """How many live extensions are registered for ``SHUTDOWN``."""
        with self._cond:
            return sum(
                1 for e in self._extensions.values() if not e.exited and "SHUTDOWN" in e.events
            )

    def mark_exited(self, returncode: int | None) -> None:
        """Tell the API that the runtime process ended: waiting callers get
        ``Runtime.ExitError`` at once instead of waiting for their deadline."""
        with self._cond:
            self._exited = True
            self.exit_code = returncode
            self._cond.notify_all()

    def close(self) -> None:
        """Stop serving. Parked requests are answered with an error. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> RuntimeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RuntimeAPI {self.address} function={self.function_name!r}>"

    # -- state (call with self._cond held) -----------------------------------------------
    def _extensions_settled(self) -> bool:
        """Every live extension is parked in ``/event/next`` with nothing left to take."""
        return all(e.exited or (e.waiting > 0 and not e.queue) for e in self._extensions.values())

    def _changed(self) -> None:
        if self._extensions_settled():
            now = time.time()
            if self._snapshot_waiting and self.snapshot_at is None:
                self.snapshot_at = now
            if self._runtime_waiting and self.ready_at is None:
                self.ready_at = now
            if not self._init_done and (self.snapshot_at or self.ready_at):
                self._init_done = True
                self.init_done_at = now
        self._cond.notify_all()

    def _can_dispatch(self) -> bool:
        if not self._queue or self._runtime_waiting <= 0 or self._shutting_down:
            return False
        if any(not e.exited for e in self._extensions.values()):
            # With extensions the sandbox runs one invocation at a time, and the next one
            # waits until every extension is done with the previous.
            return not self._in_flight and self._extensions_settled()
        return True

    def _dispatch(self) -> _Invocation:
        inv = self._queue.popleft()
        inv.dispatched = True
        inv.dispatched_mono = time.monotonic()
        inv.deadline_ms = int((time.time() + inv.timeout_s) * 1000)
        self._in_flight.add(inv.request_id)
        event = {
            "eventType": "INVOKE",
            "deadlineMs": inv.deadline_ms,
            "requestId": inv.request_id,
            "invokedFunctionArn": self.function_arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": inv.trace_id},
        }
        for ext in self._extensions.values():
            if not ext.exited and "INVOKE" in ext.events:
                ext.queue.append(event)
        self._cond.notify_all()
        return inv

    def _restore_locked(self) -> None:
        self._restored = True
        self.restored_at = time.time()
        self._cond.notify_all()

    def _exit_message(self, rid: str | None) -> str:
        code = self.exit_code
        if code is None:
            how = "Runtime exited"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            how = f"Runtime exited with error: signal: {name}"
        elif code == 0:
            how = "Runtime exited without providing a reason"
        else:
            how = f"Runtime exited with error: exit status {code}"
        return f"RequestId: {rid} Error: {how}" if rid else how

    def _failure(self, rid: str | None) -> tuple[str, dict[str, Any]] | None:
        """Why the sandbox cannot run invocations, as (error type, error document)."""
        for doc in (self.init_error, self.restore_error):
            if doc is not None:
                return str(doc.get("errorType") or "Runtime.Unknown"), doc
        if self._exited:
            return "Runtime.ExitError", {
                "errorType": "Runtime.ExitError",
                "errorMessage": self._exit_message(rid),
            }
        if self._closed or self._shutting_down:
            return "Runtime.Unavailable", {
                "errorType": "Runtime.Unavailable",
                "errorMessage": "the sandbox is shutting down",
            }
        return None

    def _failed(
        self,
        inv: _Invocation,
        error_type: str,
        message: str | None = None,
        *,
        payload: Any = None,
        status: str = "error",
    ) -> InvocationResult:
        if payload is None:
            payload = {"errorType": error_type, "errorMessage": message or error_type}
        return InvocationResult(
            request_id=inv.request_id,
            status=status,
            payload=payload,
            body=_dumps(payload),
            error_type=error_type,
            trace_id=inv.trace_id,
            deadline_ms=inv.deadline_ms,
        )

    # -- HTTP ----------------------------------------------------------------------------
    def _route(self, req: _Handler, method: str) -> None:
        path = req.path.split("?", 1)[0]
        try:
            if method == "GET":
                if path == RUNTIME_PREFIX + "/invocation/next":
                    return self._runtime_next(req)
                if path == RUNTIME_PREFIX + "/restore/next":
                    return self._restore_next(req)
                if path == EXTENSION_PREFIX + "/event/next":
                    return self._extension_next(req)
            elif method == "POST":
                if path.startswith(RUNTIME_PREFIX + "/invocation/"):
                    rid, _, what = path[len(RUNTIME_PREFIX + "/invocation/") :].rpartition("/")
                    if rid and what in ("response", "error"):
                        return self._runtime_answer(req, rid, what)
                if path == RUNTIME_PREFIX + "/init/error":
                    return self._runtime_init_error(req)
                if path == RUNTIME_PREFIX + "/restore/error":
                    return self._runtime_restore_error(req)
                if path == EXTENSION_PREFIX + "/register":
                    return self._extension_register(req)
                if path in (EXTENSION_PREFIX + "/init/error", EXTENSION_PREFIX + "/exit/error"):
                    return self._extension_error(req, path.rsplit("/", 2)[-2])
            if method == "POST":
                self._read_body(req)
            self._error(req, 404, "NotFound", f"no route for {method} {path}")
        except (ConnectionError, TimeoutError):
            req.close_connection = True

    @staticmethod
    def _read_body(req: _Handler, limit: int = MAX_PAYLOAD_BYTES) -> bytes | None:
        """The request body; ``None`` (and the connection closed) when it exceeds ``limit``."""
        if "chunked" in req.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                line = req.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while req.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > limit:
                    req.close_connection = True
                    return None
                parts.append(req.rfile.read(size))
                req.rfile.readline()
            return b"".join(parts)
        try:
            length = int(req.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > limit:
            req.close_connection = True
            return None
        return req.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _send(
        req: _Handler,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        content_type: str | None = _JSON,
    ) -> None:
        try:
            req.send_response(status)
            for key, value in (headers or {}).items():
                req.send_header(key, value)
            if content_type:
                req.send_header("Content-Type", content_type)
            req.send_header("Content-Length", str(len(body)))
            if req.close_connection:
                req.send_header("Connection", "close")
            req.end_headers()
            if body:
                req.wfile.write(body)
            req.wfile.flush()
        except OSError:
            req.close_connection = True

    def _error(self, req: _Handler, status: int, error_type: str, message: str) -> None:
        self._send(req, status, _dumps({"errorMessage": message, "errorType": error_type}))

    def _accepted(self, req: _Handler) -> None:
        self._send(req, 202, _dumps({"status": "OK"}))

    # runtime ------------------------------------------------------------------------------
    def _runtime_next(self, req: _Handler) -> None:
        inv: _Invocation | None = None
        with self._cond:
            self._runtime_waiting += 1
            self._changed()
            try:
                while not (self._closed or self._exited):
                    if self._can_dispatch():
                        inv = self._dispatch()
                        break
                    self._cond.wait(1.0)
            finally:
                self._runtime_waiting -= 1
        if inv is None:
            self._error(req, 500, "Runtime.Unavailable", "the sandbox is shutting down")
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
            "Lambda-Runtime-Trace-Id": inv.trace_id,
        }
        if inv.client_context:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        if inv.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = inv.cognito_identity
        if inv.tenant_id:
            headers["Lambda-Runtime-Aws-Tenant-Id"] = inv.tenant_id
        self._send(req, 200, inv.body, headers, content_type=inv.content_type or _JSON)

    def _runtime_answer(self, req: _Handler, rid: str, what: str) -> None:
        body = self._read_body(req)
        header_type = req.headers.get(ERROR_TYPE_HEADER)
        with self._cond:
            inv = self._invocations.get(rid)
            if inv is None or not inv.dispatched or inv.answered:
                invalid = True
            else:
                invalid = False
                inv.answered = True
                inv.answered_mono = time.monotonic()
                if body is None:
                    inv.status = "error"
                    inv.error_type = "Function.ResponseSizeTooLarge"
                    inv.response = _dumps(
                        {
                            "errorMessage": "Response payload size exceeded maximum allowed "
                            f"payload size ({MAX_PAYLOAD_BYTES} bytes).",
                            "errorType": inv.error_type,
                        }
                    )
                elif what == "response":
                    inv.status = "ok"
                    inv.response = body
                else:
                    inv.status = "error"
                    inv.response = body
                    doc = _parse(body)
                    doc_type = doc.get("errorType") if isinstance(doc, dict) else None
                    inv.error_type = header_type or doc_type or "Unhandled"
                self._in_flight.discard(rid)
                if inv.abandoned:  # nobody waits for it any more
                    self._invocations.pop(rid, None)
                self._cond.notify_all()
        if invalid:
            self._error(req, 400, "InvalidRequestID", "Invalid request ID")
        elif body is None:
            self._error(
                req,
                413,
                "RequestEntityTooLarge",
                f"Exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes).",
            )
        else:
            self._accepted(req)

    def _error_doc(self, req: _Handler, header: str, default: str) -> dict[str, Any] | None:
        body = self._read_body(req)
        doc = _parse(body) if body is not None else None
        if not isinstance(doc, dict):
            doc = {"errorMessage": doc if isinstance(doc, str) else ""}
        doc["errorType"] = req.headers.get(header) or doc.get("errorType") or default
        return doc

    def _runtime_init_error(self, req: _Handler) -> None:
        doc = self._error_doc(req, ERROR_TYPE_HEADER, "Runtime.Unknown")
        with self._cond:
            refused = self._init_done and self.snapshot_at is None
            if not refused and self.init_error is None:
                self.init_error = doc
                self._cond.notify_all()
        if refused:
            self._error(req, 403, "InvalidStateTransition", "init is already complete")
        else:
            self._accepted(req)

    def _restore_next(self, req: _Handler) -> None:
        with self._cond:
            self._snapshot_waiting += 1
            self._changed()
            try:
                while not (self._restored or self._closed or self._exited):
                    self._cond.wait(1.0)
                restored = self._restored
            finally:
                self._snapshot_waiting -= 1
        if restored:
            self._send(req, 200, b"", content_type=None)
        else:
            self._error(req, 500, "Runtime.Unavailable", "the sandbox is shutting down")

    def _runtime_restore_error(self, req: _Handler) -> None:
        doc = self._error_doc(req, ERROR_TYPE_HEADER, "Runtime.AfterRestoreError")
        with self._cond:
            if self.restore_error is None:
                self.restore_error = doc
            self._cond.notify_all()
        self._accepted(req)

    # extensions ---------------------------------------------------------------------------
    def _extension_register(self, req: _Handler) -> None:
        body = self._read_body(req)
        name = (req.headers.get(EXTENSION_NAME_HEADER) or "").strip()
        if not name:
            return self._error(req, 403, "Extension.InvalidExtensionName", "Empty extension name")
        doc = _parse(body) if body else None
        events = doc.get("events") if isinstance(doc, dict) else None
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            return self._error(
                req, 403, "InvalidRequestFormat", 'expected a JSON body {"events": [...]}'
            )
        internal = name not in self.external_extensions
        allowed = ("INVOKE",) if internal else ("INVOKE", "SHUTDOWN")
        for event in events:
            if event not in allowed:
                why = (
                    "internal extensions cannot register for SHUTDOWN"
                    if event == "SHUTDOWN"
                    else "unknown event type"
                )
                return self._error(req, 403, "Extension.InvalidEventType", f"{event}: {why}")
        with self._cond:
            if self._init_done or self._closed:
                error: tuple[str, str] | None = (
                    "Extension.RegistrationClosed",
                    "Extension registration closed already",
                )
            elif any(e.name == name for e in self._extensions.values()):
                error = (
                    "Extension.InvalidExtensionState",
                    "Extension with this name already registered",
                )
            elif len(self._extensions) >= MAX_EXTENSIONS:
                error = (
                    "Extension.TooManyExtensions",
                    f"Extension limit ({MAX_EXTENSIONS}) reached",
                )
            else:
                error = None
                ext = _Extension(name, events, internal)
                self._extensions[ext.id] = ext
                self._cond.notify_all()
        if error is not None:
            return self._error(req, 403, *error)
        answer: dict[str, Any] = {
            "functionName": self.function_name,
            "functionVersion": self.function_version,
            "handler": self.handler,
        }
        if "accountId" in (req.headers.get("Lambda-Extension-Accept-Feature") or ""):
            answer["accountId"] = self.account_id
        self._send(req, 200, _dumps(answer), {EXTENSION_ID_HEADER: ext.id})

    def _find_extension(self, req: _Handler) -> _Extension | None:
        ext_id = req.headers.get(EXTENSION_ID_HEADER)
        if not ext_id:
            self._error(req, 403, "Extension.MissingExtensionIdentifier", "Missing header")
            return None
        with self._cond:
            ext = self._extensions.get(ext_id)
        if ext is None:
            self._error(req, 403, "Extension.UnknownExtensionIdentifier", f"Unknown {ext_id}")
        return ext

    def _extension_next(self, req: _Handler) -> None:
        ext = self._find_extension(req)
        if ext is None:
            return
        event: dict[str, Any] | None = None
        with self._cond:
            ext.waiting += 1
            self._changed()
            try:
                while not ext.queue and not self._closed:
                    self._cond.wait(1.0)
                if ext.queue:
                    event = ext.queue.popleft()
            finally:
                ext.waiting -= 1
                self._cond.notify_all()
        if event is None:
            self._error(req, 500, "Runtime.Unavailable", "the sandbox is shutting down")
            return
        headers = {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())}
        self._send(req, 200, _dumps(event), headers)

    def _extension_error(self, req: _Handler, kind: str) -> None:
        body_doc = self._error_doc(req, EXTENSION_ERROR_TYPE_HEADER, "Extension.Unknown")
        ext = self._find_extension(req)
        if ext is None:
            return
        with self._cond:
            ext.exited = True
            ext.error_type = body_doc.get("errorType") if body_doc else None
            if kind == "init" and self.init_error is None and not self._init_done:
                self.init_error = body_doc
            self._changed()
        self._accepted(req)


# -- sandboxes ------------------------------------------------------------------------------

_RESERVED_EXACT = frozenset(
    (
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_EXECUTION_ENV",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    )
)
_RESERVED_PREFIXES = ("AWS_LAMBDA_", "_LAMBDA_", "_AWS_XRAY_", "AWS_XRAY_")
_OUTPUT_CAP = 8 * 1024 * 1024  # characters kept per stream


def _reserved(name: str) -> bool:
    return name in _RESERVED_EXACT or name.startswith(_RESERVED_PREFIXES)


def _agent_path() -> str | None:
    """The directory lambdascope is imported from, unless it is a site-packages directory
    (the sandbox's interpreter finds it there on its own)."""
    import lambdascope

    root = os.path.dirname(os.path.dirname(os.path.abspath(lambdascope.__file__)))
    if os.path.basename(root) in ("site-packages", "dist-packages"):
        return None
    return root


class Sandbox:
    """One Lambda sandbox: a ``python -m awslambdaric module.function`` process with the
    environment Lambda gives a function, served by its own :class:`RuntimeAPI`.

    ``handler`` is ``module.function`` relative to ``task_root`` (the working directory and
    first ``PYTHONPATH`` entry, like ``/var/task``). ``env`` adds to or overrides the
    environment (``None`` removes a variable); the caller's environment is inherited unless
    ``inherit_env`` is false, minus the variables Lambda reserves. The process's output is
    collected (:attr:`stdout`, :attr:`stderr`) and passed line by line to ``on_output(stream,
    line)`` when given. Use as a context manager, or :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        handler: str,
        task_root: str | os.PathLike[str],
        *,
        env: Mapping[str, str | None] | None = None,
        init_type: str = ON_DEMAND,
        function_name: str = "test-function",
        function_version: str = "$LATEST",
        memory_mb: int = 128,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        python: str | None = None,
        api: RuntimeAPI | None = None,
        inherit_env: bool = True,
        on_output: Callable[[str, str], None] | None = None,
        stop_grace_s: float = 0.5,
    ) -> None:
        self.handler = handler
        self.task_root = os.path.abspath(os.fspath(task_root))
        self.init_type = init_type
        self.function_name = function_name
        self.python = python or sys.executable
        self.stop_grace_s = stop_grace_s
        self._owns_api = api is None
        self.api = api or RuntimeAPI(
            function_name=function_name,
            function_version=function_version,
            region=region,
            account_id=account_id,
            handler=handler,
        )
        self.log_stream_name = (
            f"{datetime.datetime.now(datetime.timezone.utc):%Y/%m/%d}/"
            f"[{function_version}]{uuid.uuid4().hex}"
        )
        self.env = self._build_env(env, function_version, memory_mb, region, inherit_env)
        self.process: subprocess.Popen[bytes] | None = None
        #: Epoch seconds just before the process was started.
        self.started_at: float | None = None
        self._on_output = on_output
        self._out_lock = threading.Lock()
        self._out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._out_size = {"stdout": 0, "stderr": 0}
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._frozen = False
        self._freeze_lock = threading.Lock()

    def _build_env(
        self,
        extra: Mapping[str, str | None] | None,
        function_version: str,
        memory_mb: int,
        region: str,
        inherit_env: bool,
    ) -> dict[str, str]:
        if inherit_env:
            env = {k: v for k, v in os.environ.items() if not _reserved(k)}
        else:
            env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        paths = [self.task_root]
        agent = _agent_path()
        if agent and agent not in paths:
            paths.append(agent)
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env.update(
            {
                "_HANDLER": self.handler,
                "LAMBDA_TASK_ROOT": self.task_root,
                "PYTHONPATH": os.pathsep.join(paths),
                "PYTHONUNBUFFERED": "1",
                "TZ": ":UTC",
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": function_version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream_name,
                "AWS_LAMBDA_INITIALIZATION_TYPE": self.init_type,
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
            }
        )
        if self.python == sys.executable:
            env["AWS_EXECUTION_ENV"] = "AWS_Lambda_python%d.%d" % sys.version_info[:2]
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    # -- process ---------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Start the runtime process (returns at once; see :meth:`wait_ready`)."""
        if self.process is not None:
            raise RuntimeError("the sandbox was already started")
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [self.python, "-m", "awslambdaric", self.handler],
            cwd=self.task_root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: stop() reaches any children
        )
        for name, pipe in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            thread = threading.Thread(
                target=self._pump, args=(name, pipe), name=f"sandbox-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        watcher = threading.Thread(target=self._watch, name="sandbox-watch", daemon=True)
        watcher.start()
        self._threads.append(watcher)
        return self

    def _pump(self, name: str, pipe: Any) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._out_lock:
                    if self._out_size[name] < _OUTPUT_CAP:
                        self._out[name].append(line)
                        self._out_size[name] += len(line)
                if self._on_output is not None:
                    try:
                        self._on_output(name, line)
                    except Exception:
                        pass
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    def _watch(self) -> None:
        assert self.process is not None
        code = self.process.wait()
        self.api.mark_exited(code)

    def _signal(self, sig: int) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def freeze(self) -> bool:
        """Freeze the sandbox as Lambda does between invocations: ``SIGSTOP`` to its process
        group, so no thread of it (nor any child) runs until :meth:`thaw`. ``False`` when the
        process is not running. Call it once the sandbox is idle (:meth:`wait_idle`)."""
        with self._freeze_lock:
            if not self.alive:
                return False
            if not self._frozen:
                self._signal(signal.SIGSTOP)
                self._frozen = True
            return True

    def thaw(self) -> None:
        """Undo :meth:`freeze` (``SIGCONT`` to the process group). Idempotent."""
        with self._freeze_lock:
            if self._frozen:
                self._frozen = False
                self._signal(signal.SIGCONT)

    @property
    def frozen(self) -> bool:
        return self._frozen

    def kill(self) -> None:
        """``SIGKILL`` to the process group at once (what Lambda does to a sandbox that ran
        past its deadline or out of memory); :meth:`stop` still cleans up afterwards."""
        self._signal(signal.SIGKILL)
        self.thaw()

    def stop(self, grace_s: float | None = None) -> int | None:
        """Shut the sandbox down: ``SHUTDOWN`` to extensions registered for it, ``SIGTERM``,
        then ``SIGKILL`` after ``grace_s``. Returns the exit status. Idempotent. A frozen
        sandbox is thawed first (a stopped process would not act on ``SIGTERM``)."""
        proc = self.process
        if not self._stopped:
            self._stopped = True
            grace = self.stop_grace_s if grace_s is None else grace_s
            self.thaw()
            if proc is not None and proc.poll() is None:
                if self.api.shutdown_subscribers:
                    self.api.shutdown(timeout_s=2.0)
                self._signal(signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5.0)
            for thread in self._threads:
                thread.join(timeout=2.0)
            if self._owns_api:
                self.api.close()
        return proc.returncode if proc is not None else None

    def __enter__(self) -> Sandbox:
        if self.process is None:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state and output ------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def stdout(self) -> str:
        with self._out_lock:
            return "".join(self._out["stdout"])

    @property
    def stderr(self) -> str:
        with self._out_lock:
            return "".join(self._out["stderr"])

    @property
    def output(self) -> str:
        """stdout then stderr, for failure messages."""
        return f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"

    # -- the API, for convenience ------------------------------------------------------------
    def invoke(self, event: Any = None, timeout_s: float = 3.0, **kwargs: Any) -> InvocationResult:
        """:meth:`RuntimeAPI.invoke` on this sandbox."""
        return self.api.invoke(event, timeout_s, **kwargs)

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """:meth:`RuntimeAPI.wait_ready` on this sandbox."""
        return self.api.wait_ready(timeout_s)

    def restore(self, timeout_s: float | None = None) -> float:
        """:meth:`RuntimeAPI.restore` on this sandbox."""
        return self.api.restore(timeout_s)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """:meth:`RuntimeAPI.wait_idle` on this sandbox."""
        return self.api.wait_idle(timeout_s)

    def __repr__(self) -> str:
        return f"<Sandbox {self.handler} pid={self.pid} api={self.api.address}>"

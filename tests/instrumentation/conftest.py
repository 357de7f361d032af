"""Real peers for the HTTP client instrumentation tests.

* ``server`` / ``collector`` / ``runtime_server``: loopback HTTP/1.1 (keep-alive) servers that
  record the method, target, headers and client address of every request. By path: ``/404`` and
  ``/500`` answer with that status, ``/slow`` waits ``SLOW_S`` before answering, ``/drop`` closes
  the connection without answering, anything else is ``200``.
* ``https_server``: the same over TLS, with a self-signed certificate made by the ``openssl``
  command at test time (tests using it are skipped when ``openssl`` is missing).
* ``refused_url``: a port that is bound but not listening (connecting is refused).
* ``client`` (parametrized) / ``make_client``: one driver per client library and usage, each
  making real calls with ``call(method, url, headers)`` and answering the response status.
* ``originals`` / ``patched()``: every attribute of the instrumented libraries' modules and
  classes as it was when this file was imported (at collection, before any test ran);
  ``patched()`` lists those that are not that very object any more.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import inspect
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import requests.adapters
import requests.sessions
import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.poolmanager

SLOW_S = 0.05
TIMEOUT_S = 5.0

# -- what the libraries looked like before anything was instrumented ----------------------------

_PATCHABLE_MODULES = (
    socket,
    ssl,
    http.client,
    urllib3.connection,
    urllib3.connectionpool,
    urllib3.poolmanager,
    requests.sessions,
    requests.adapters,
    httpx,
    httpx._client,
)


def _owners() -> list[Any]:
    """The modules above and every class they define."""
    owners: list[Any] = []
    for module in _PATCHABLE_MODULES:
        owners.append(module)
        for value in vars(module).values():
            is_own_class = inspect.isclass(value) and value.__module__ == module.__name__
            if is_own_class and value not in owners:
                owners.append(value)
    return owners


def snapshot() -> dict[Any, dict[str, Any]]:
    return {owner: dict(vars(owner)) for owner in _owners()}


_ORIGINALS = snapshot()


def differences(before: dict[Any, dict[str, Any]]) -> list[str]:
    """Attributes that are not the very object they were in ``before`` (or were added)."""
    out: list[str] = []
    for owner, attrs in before.items():
        now = vars(owner)
        label = getattr(owner, "__qualname__", None) or owner.__name__
        for name, value in attrs.items():
            if name in ("__slotnames__",):
                continue
            if name not in now:
                out.append(f"{label}.{name} removed")
            elif now[name] is not value:
                out.append(f"{label}.{name} replaced")
        for name in now:
            if name not in attrs and not (name.startswith("__") and name.endswith("__")):
                out.append(f"{label}.{name} added")
    return out


@pytest.fixture(scope="session")
def originals() -> dict[Any, dict[str, Any]]:
    """``originals[owner][name]``: an attribute as it was before any test ran."""
    return _ORIGINALS


@pytest.fixture(scope="session")
def patched() -> Callable[[], list[str]]:
    """``patched()``: what differs now from the libraries as they were before any test ran."""
    return lambda: differences(_ORIGINALS)


# -- servers -------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    peer: tuple[str, int]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.record(
            Seen(self.command, self.path, list(self.headers.items()), self.client_address[:2])
        )
        path = urlsplit(self.path).path
        if path == "/drop":  # no answer at all: the connection is just closed
            self.close_connection = True
            return
        if path == "/slow":
            time.sleep(SLOW_S)
        status = {"/404": 404, "/500": 500}.get(path, 200)
        body = f"{status} {self.command} {path}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer


class RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.port: int = self.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self.base = f"{self.scheme}://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, target: str = "/ok") -> str:
        return self.base + target

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(TIMEOUT_S)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        conn = self.tls.wrap_socket(request, server_side=True)  # the handshake, in this thread
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that went away, failed handshakes: nothing to report

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="session")
def _http_server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def _collector_server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def _runtime_server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    yield srv
    srv.stop()


@pytest.fixture
def server(_http_server: RecordingServer) -> RecordingServer:
    _http_server.clear()
    return _http_server


@pytest.fixture
def collector(_collector_server: RecordingServer) -> RecordingServer:
    _collector_server.clear()
    return _collector_server


@pytest.fixture
def runtime_server(_runtime_server: RecordingServer) -> RecordingServer:
    _runtime_server.clear()
    return _runtime_server


@dataclass
class Certificate:
    cert: str
    key: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate | None:
    """A self-signed certificate for 127.0.0.1, or None without the ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return Certificate(str(cert), str(key))


@pytest.fixture(scope="session")
def _https_server(certificate: Certificate | None) -> Iterator[RecordingServer | None]:
    if certificate is None:
        yield None
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certificate.cert, certificate.key)
    srv = RecordingServer(tls=ctx)
    yield srv
    srv.stop()


@pytest.fixture
def https_server(_https_server: RecordingServer | None) -> RecordingServer:
    if _https_server is None:
        pytest.skip("the openssl command is not available to make a certificate")
    _https_server.clear()
    return _https_server


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: connecting is refused (and nothing else can
    take the port while the test runs)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}/ok"
    sock.close()


# -- client drivers ------------------------------------------------------------------------------


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class Driver:
    """Real calls through one client library. ``keeps_alive``: a second call to the same server
    reuses the first call's connection."""

    name = ""
    keeps_alive = True

    def __init__(self, certificate: Certificate | None) -> None:
        self.certificate = certificate
        self.ssl_context = certificate.client_context() if certificate else None
        self.ca_file = certificate.cert if certificate else None

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class HttpClientDriver(Driver):
    """``http.client.HTTPConnection`` / ``HTTPSConnection``, one per server, reused."""

    name = "http.client"

    def __init__(self, certificate: Certificate | None) -> None:
        super().__init__(certificate)
        self.conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        key = (parts.scheme, host, port)
        conn = self.conns.get(key)
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=TIMEOUT_S, context=self.ssl_context
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
            self.conns[key] = conn
        try:
            conn.request(method, _target(url), headers=dict(headers or {}))
            response = conn.getresponse()
            response.read()
        except Exception:
            conn.close()
            del self.conns[key]
            raise
        return response.status

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


class PoolManagerDriver(Driver):
    name = "urllib3.PoolManager"

    def __init__(self, certificate: Certificate | None) -> None:
        super().__init__(certificate)
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": self.ca_file}
        self.pm = urllib3.PoolManager(timeout=TIMEOUT_S, **(tls if certificate else {}))

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        return self.pm.request(method, url, headers=dict(headers or {})).status

    def close(self) -> None:
        self.pm.clear()


class ConnectionPoolDriver(Driver):
    """``urllib3.HTTPConnectionPool`` / ``HTTPSConnectionPool``, one per server."""

    name = "urllib3.HTTPConnectionPool"

    def __init__(self, certificate: Certificate | None) -> None:
        super().__init__(certificate)
        self.pools: dict[tuple[str, str, int], urllib3.HTTPConnectionPool] = {}

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        key = (parts.scheme, host, port)
        pool = self.pools.get(key)
        if pool is None:
            if parts.scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    host, port, timeout=TIMEOUT_S, maxsize=1,
                    cert_reqs="CERT_REQUIRED", ca_certs=self.ca_file,
                )  # fmt: skip
            else:
                pool = urllib3.HTTPConnectionPool(host, port, timeout=TIMEOUT_S, maxsize=1)
            self.pools[key] = pool
        return pool.request(method, _target(url), headers=dict(headers or {})).status

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


class RequestsDriver(Driver):
    """``requests.request`` (``requests.get`` and friends): a new session, so a new connection,
    every call."""

    name = "requests.get"
    keeps_alive = False

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        verify: Any = self.ca_file or True
        response = requests.request(method, url, headers=headers, timeout=TIMEOUT_S, verify=verify)
        return response.status_code


class SessionDriver(Driver):
    name = "requests.Session"

    def __init__(self, certificate: Certificate | None) -> None:
        super().__init__(certificate)
        self.session = requests.Session()

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        # verify per call: REQUESTS_CA_BUNDLE in the environment would beat session.verify
        verify: Any = self.ca_file or True
        response = self.session.request(
            method, url, headers=headers, timeout=TIMEOUT_S, verify=verify
        )
        return response.status_code

    def close(self) -> None:
        self.session.close()


class HttpxDriver(Driver):
    name = "httpx.Client"

    def __init__(self, certificate: Certificate | None) -> None:
        super().__init__(certificate)
        self.client = httpx.Client(verify=self.ssl_context or True, timeout=TIMEOUT_S)

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        return self.client.request(method, url, headers=headers).status_code

    def close(self) -> None:
        self.client.close()


class AsyncHttpxDriver(Driver):
    """``httpx.AsyncClient`` on an event loop of its own (so its connections outlive a call)."""

    name = "httpx.AsyncClient"

    def __init__(self, certificate: Certificate | None) -> None:
        super().__init__(certificate)
        self.loop = asyncio.new_event_loop()
        self.client: httpx.AsyncClient | None = None

    async def _call(self, method: str, url: str, headers: dict[str, str] | None) -> int:
        if self.client is None:
            self.client = httpx.AsyncClient(verify=self.ssl_context or True, timeout=TIMEOUT_S)
        response = await self.client.request(method, url, headers=headers)
        return response.status_code

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> int:
        return self.loop.run_until_complete(self._call(method, url, headers))

    def close(self) -> None:
        if self.client is not None:
            self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


DRIVERS: dict[str, type[Driver]] = {
    d.name: d
    for d in (
        HttpClientDriver,
        PoolManagerDriver,
        ConnectionPoolDriver,
        RequestsDriver,
        SessionDriver,
        HttpxDriver,
        AsyncHttpxDriver,
    )
}


@pytest.fixture
def make_client(certificate: Certificate | None) -> Iterator[Callable[[str], Driver]]:
    """``make_client(name)``: a fresh driver (closed at teardown)."""
    made: list[Driver] = []

    def make(name: str) -> Driver:
        driver = DRIVERS[name](certificate)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


@pytest.fixture(params=list(DRIVERS))
def client(request: pytest.FixtureRequest, make_client: Callable[[str], Driver]) -> Driver:
    """Each test using it runs once per client library and usage."""
    return make_client(request.param)

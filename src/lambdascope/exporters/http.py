"""``http``: reports to a lambdascope collector (``POST {url}/v1/reports``, contract section 6).

Built on :class:`HttpClient`, a small HTTP/1.1 client of our own (the ``otlp`` exporter uses it
too), on one kept-alive connection reused across warm invocations: the request goes out in a
single ``sendall`` and only the status line, the headers and a bounded body of the answer are
read, which costs a fraction of ``http.client`` or ``requests``. Every socket operation gets the
time left until the delivery's deadline, so a collector that trickles its answer cannot hold the
invocation past its budget; the host name is resolved once and cached (a lookup cannot be
bounded by a socket timeout), and resolved again after a connection failure. Bodies over
``GZIP_MIN_BYTES`` are gzipped. ``400``, ``401`` and ``413`` are final answers (logged once, not
retried); anything else, or no answer in time, is worth another try.
"""

from __future__ import annotations

import socket
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .._guard import log_once
from . import ExportResult

GZIP_MIN_BYTES = 4096
MAX_HEADER_BYTES = 65536
#: Answer bodies are read up to this size; a longer one is left unread and its connection closed.
MAX_BODY_BYTES = 65536
FINAL_STATUSES = {400: "malformed", 401: "bad token", 413: "too large"}


class DeliveryError(Exception):
    """The exchange failed (connection, timeout, protocol); ``answered`` tells whether any byte
    of the answer arrived (if none did on a reused connection, a stale keep-alive is likely)."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class BudgetSpent(DeliveryError):
    """The deadline had passed before the request could be sent (nothing went out)."""


class Response:
    """An answer: its status, its headers (names lower-cased) and its body (at most
    ``MAX_BODY_BYTES``; ``truncated`` when more was announced)."""

    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(
        self, status: int, headers: dict[str, str], body: bytes, truncated: bool = False
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.truncated = truncated

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} bytes)"


def gzip_bytes(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    return comp.compress(data) + comp.flush()


def header_lines(headers: Mapping[str, str] | None) -> bytes:
    """``headers`` as ``\\r\\nName: value`` lines (the request head's separator first)."""
    if not headers:
        return b""
    return "".join(f"\r\n{name}: {value}" for name, value in headers.items()).encode(
        "latin-1", "replace"
    )


class HttpClient:
    """POSTs to one origin (scheme, host, port) on one kept-alive connection.

    ``url`` may carry a base path (``base_path``); ``headers`` go with every request. One
    request at a time: a second thread (the timeout watchdog delivering while the flusher does)
    waits for the connection, never past its own deadline.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        user_agent: str | None = None,
    ) -> None:
        from .. import __version__

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.base_path = parts.path.rstrip("/")
        default_port = 443 if self.https else 80
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != default_port:
            host_header += f":{self.port}"
        fixed = {"Host": host_header, "User-Agent": user_agent or f"lambdascope/{__version__}"}
        fixed.update(headers or {})
        self._fixed = header_lines(fixed)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._addr: tuple[Any, ...] | None = None
        self._ssl: Any = None

    @property
    def origin(self) -> tuple[str, str, int]:
        return ("https" if self.https else "http", self.host, self.port)

    # -- connection ---------------------------------------------------------------------
    def _connect(self, deadline: float) -> socket.socket:
        if self._addr is None:
            infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
            self._addr = infos[0]
        family, kind, proto, _, address = self._addr
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.https:
                if self._ssl is None:
                    import ssl

                    self._ssl = ssl.create_default_context()
                sock.settimeout(_left(deadline))
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            self._addr = None  # resolve again next time
            raise
        return sock

    def _recv(self, sock: socket.socket, deadline: float, what: str) -> bytes:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(65536)
        if not chunk:
            raise DeliveryError(f"connection closed {what}", answered=True)
        return chunk

    def _exchange(
        self, sock: socket.socket, request: bytes, deadline: float
    ) -> tuple[Response, bool]:
        """Send ``request`` and read the answer. Returns (response, keep_alive)."""
        sock.settimeout(_left(deadline))
        sock.sendall(request)
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > MAX_HEADER_BYTES:
                raise DeliveryError("answer headers too large", answered=True)
            sock.settimeout(_left(deadline))
            chunk = sock.recv(65536)
            if not chunk:
                raise DeliveryError("connection closed before an answer", answered=bool(buf))
            buf += chunk
        head = buf[:end].decode("latin-1").split("\r\n")
        status_line = head[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
            raise DeliveryError(f"not an HTTP answer: {head[0][:80]!r}", answered=True)
        status = int(status_line[1])
        keep_alive = status_line[0] != "HTTP/1.0"
        headers: dict[str, str] = {}
        length: int | None = None
        chunked = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = value
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection":
                keep_alive = value.lower() != "close"
        body = buf[end + 4 :]
        truncated = False
        if chunked:
            while not body.endswith(b"0\r\n\r\n"):
                if len(body) > MAX_BODY_BYTES:
                    truncated, keep_alive = True, False
                    break
                body += self._recv(sock, deadline, "in the answer")
            body = _dechunk(body)
        elif length is not None:
            if length > MAX_BODY_BYTES:
                truncated, keep_alive = True, False
            else:
                while len(body) < length:
                    body += self._recv(sock, deadline, "in the answer")
                body = body[:length]
        elif status not in (204, 304) and not 100 <= status < 200:
            keep_alive = False  # body delimited by the end of the connection: not worth reading
            truncated = True
        return Response(status, headers, body, truncated), keep_alive

    # -- request ------------------------------------------------------------------------
    def post(
        self,
        path: str,
        body: bytes,
        content_type: str,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        content_encoding: str | None = None,
    ) -> Response:
        """POST ``body`` to ``path`` (a full request path) before ``deadline`` (a
        ``time.monotonic()`` value) and return the answer, whatever its status. Raises
        :class:`DeliveryError` when no complete answer arrived in time (:class:`BudgetSpent`
        when nothing could be sent)."""
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise BudgetSpent("the connection stayed busy until the deadline")
        try:
            return self._post(path, body, content_type, deadline, headers, content_encoding)
        finally:
            self._lock.release()

    def _post(
        self,
        path: str,
        body: bytes,
        content_type: str,
        deadline: float,
        headers: Mapping[str, str] | None,
        content_encoding: str | None,
    ) -> Response:
        request = b"".join(
            (
                b"POST ",
                (path or "/").encode("latin-1", "replace"),
                b" HTTP/1.1",
                self._fixed,
                b"\r\nContent-Type: ",
                content_type.encode("latin-1", "replace"),
                header_lines(headers),
                b"\r\nContent-Encoding: " + content_encoding.encode() if content_encoding else b"",
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )
        for attempt in (0, 1):
            if deadline - time.monotonic() <= 0:
                raise BudgetSpent("flush budget spent")
            reused = self._sock is not None
            try:
                if self._sock is None:
                    self._sock = self._connect(deadline)
                response, keep_alive = self._exchange(self._sock, request, deadline)
            except (OSError, ValueError, DeliveryError) as exc:
                self.reset()
                # A kept-alive connection the server closed while we were idle (or frozen)
                # fails on first use: one more try on a fresh connection, within the budget.
                answered = getattr(exc, "answered", False)
                if reused and attempt == 0 and not answered:
                    continue
                if isinstance(exc, DeliveryError):
                    raise
                raise DeliveryError(str(exc) or type(exc).__name__, answered) from exc
            if not keep_alive:
                self.reset()
            return response
        raise DeliveryError("no answer")  # pragma: no cover

    def reset(self) -> None:
        """Close the connection (the next request opens a new one)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except Exception:
                pass

    close = reset


class HttpExporter:
    name = "http"
    network = True

    def __init__(
        self, base_url: str, token: str | None = None, user_agent: str | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.client = HttpClient(base_url, headers, user_agent)
        self.host = self.client.host
        self.port = self.client.port
        self.path = self.client.base_path + "/v1/reports"
        self.last_status: int | None = None

    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        if not lines:
            return ExportResult.SUCCESS
        body = (lines[0] if len(lines) == 1 else "[" + ",".join(lines) + "]").encode(
            "utf-8", "replace"
        )
        encoding = None
        if len(body) >= GZIP_MIN_BYTES:
            body = gzip_bytes(body)
            encoding = "gzip"
        deadline = time.monotonic() + max(0.001, timeout_s)
        try:
            response = self.client.post(
                self.path, body, "application/json", deadline, content_encoding=encoding
            )
        except BudgetSpent:
            return ExportResult.RETRY
        except DeliveryError as exc:
            log_once(
                "http-exporter-unreachable",
                "lambdascope: could not deliver to the collector at %s:%s (%s); reports "
                "are kept and sent again later",
                self.host,
                self.port,
                exc,
            )
            return ExportResult.RETRY
        status = self.last_status = response.status
        if 200 <= status < 300:
            return ExportResult.SUCCESS
        if status in FINAL_STATUSES:
            log_once(
                f"http-exporter-{status}",
                "lambdascope: the collector refused a report with %d (%s); it is not retried",
                status,
                FINAL_STATUSES[status],
            )
            return ExportResult.REJECTED
        log_once(
            "http-exporter-status",
            "lambdascope: the collector answered %d; reports are kept and sent again later",
            status,
        )
        return ExportResult.RETRY

    def reset(self) -> None:
        self.client.reset()

    shutdown = reset


def _dechunk(data: bytes) -> bytes:
    """The payload of a chunked body (trailers ignored; a malformed body gives what parsed)."""
    out = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        try:
            size = int(data[pos:eol].split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        start = eol + 2
        out.append(data[start : start + size])
        pos = start + size + 2
    return b"".join(out)


def _left(deadline: float, floor: float = 0.001) -> float:
    """Seconds until ``deadline``; raises ``TimeoutError`` once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0 and floor > 0:
        raise TimeoutError("flush budget spent")
    return max(left, floor) if floor > 0 else left

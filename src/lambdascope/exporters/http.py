"""``http``: reports to a lambdascope collector (``POST {url}/v1/reports``, contract section 6).

A small HTTP/1.1 client of its own, on one kept-alive connection reused across warm invocations:
the request goes out in a single ``sendall`` and only the status line and the framing headers of
the answer are read, which costs a fraction of ``http.client`` or ``requests``. Every socket
operation gets the time left until the delivery's deadline, so a collector that trickles its
answer cannot hold the invocation past its budget; the host name is resolved once and cached (a
lookup cannot be bounded by a socket timeout), and resolved again after a connection failure.
Bodies over ``GZIP_MIN_BYTES`` are gzipped. ``400``, ``401`` and ``413`` are final answers
(logged once, not retried); anything else, or no answer in time, is worth another try.
"""

from __future__ import annotations

import socket
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

from .._guard import log_once
from . import ExportResult

GZIP_MIN_BYTES = 4096
MAX_HEADER_BYTES = 65536
FINAL_STATUSES = {400: "malformed", 401: "bad token", 413: "too large"}


class DeliveryError(Exception):
    """The exchange failed (connection, timeout, protocol); ``sent`` tells whether any byte of
    the answer arrived (if none did on a reused connection, a stale keep-alive is likely)."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


def _gzip(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    return comp.compress(data) + comp.flush()


class HttpExporter:
    name = "http"
    network = True

    def __init__(
        self, base_url: str, token: str | None = None, user_agent: str | None = None
    ) -> None:
        from .. import __version__

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {base_url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path.rstrip("/") or "") + "/v1/reports"
        default_port = 443 if self.https else 80
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != default_port:
            host_header += f":{self.port}"
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {host_header}",
            "Content-Type: application/json",
            f"User-Agent: {user_agent or f'lambdascope/{__version__}'}",
        ]
        if token:
            head.append(f"Authorization: Bearer {token}")
        self._head = "\r\n".join(head).encode("latin-1", "replace")
        self._sock: socket.socket | None = None
        self._addr: tuple[Any, ...] | None = None
        self._ssl: Any = None
        self.last_status: int | None = None

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

    def _exchange(self, sock: socket.socket, request: bytes, deadline: float) -> tuple[int, bool]:
        """Send ``request`` and read the answer. Returns (status, keep_alive)."""
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
        length: int | None = None
        chunked = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection":
                keep_alive = value.strip().lower() != "close"
        body = buf[end + 4 :]
        if chunked:
            while not body.endswith(b"0\r\n\r\n"):
                sock.settimeout(_left(deadline))
                chunk = sock.recv(65536)
                if not chunk:
                    raise DeliveryError("connection closed in the answer", answered=True)
                body += chunk
        elif length is not None:
            while len(body) < length:
                sock.settimeout(_left(deadline))
                chunk = sock.recv(65536)
                if not chunk:
                    raise DeliveryError("connection closed in the answer", answered=True)
                body += chunk
        elif status not in (204, 304) and not 100 <= status < 200:
            keep_alive = False  # body delimited by the end of the connection: not worth reading
        return status, keep_alive

    # -- export -------------------------------------------------------------------------
    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        if not lines:
            return ExportResult.SUCCESS
        body = (lines[0] if len(lines) == 1 else "[" + ",".join(lines) + "]").encode(
            "utf-8", "replace"
        )
        extra = b""
        if len(body) >= GZIP_MIN_BYTES:
            body = _gzip(body)
            extra = b"\r\nContent-Encoding: gzip"
        request = (
            self._head + extra + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body
        )
        deadline = time.monotonic() + max(0.001, timeout_s)
        for attempt in (0, 1):
            if _left(deadline, 0.0) <= 0:
                return ExportResult.RETRY
            reused = self._sock is not None
            try:
                if self._sock is None:
                    self._sock = self._connect(deadline)
                status, keep_alive = self._exchange(self._sock, request, deadline)
            except (OSError, ValueError, DeliveryError) as exc:
                self.reset()
                # A kept-alive connection the collector closed while we were idle (or frozen)
                # fails on first use: one more try on a fresh connection, within the budget.
                if reused and attempt == 0 and not getattr(exc, "answered", False):
                    continue
                log_once(
                    "http-exporter-unreachable",
                    "lambdascope: could not deliver to the collector at %s:%s (%s); reports "
                    "are kept and sent again later",
                    self.host,
                    self.port,
                    exc,
                )
                return ExportResult.RETRY
            if not keep_alive:
                self.reset()
            self.last_status = status
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
        return ExportResult.RETRY  # pragma: no cover

    def reset(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except Exception:
                pass

    shutdown = reset


def _left(deadline: float, floor: float = 0.001) -> float:
    """Seconds until ``deadline``; raises ``socket.timeout`` once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0 and floor > 0:
        raise TimeoutError("flush budget spent")
    return max(left, floor) if floor > 0 else left

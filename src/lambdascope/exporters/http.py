"""``http``: reports to a lambdascope collector (``POST {url}/v1/reports``, contract section 6).

One kept-alive ``http.client`` connection is reused across warm invocations (a ``requests``
session costs about four times as much per call). Bodies over ``GZIP_MIN_BYTES`` are gzipped. The
whole delivery, reconnects included, is bounded by the flush timeout it is given. ``400``, ``401``
and ``413`` are final answers (logged once, not retried); anything else is worth another try.
"""

from __future__ import annotations

import http.client
import socket
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

from .._guard import log_once
from . import ExportResult

GZIP_MIN_BYTES = 4096
FINAL_STATUSES = {400: "malformed", 401: "bad token", 413: "too large"}


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
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path.rstrip("/") or "") + "/v1/reports"
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent or f"lambdascope/{__version__}",
        }
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None
        self.last_status: int | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            conn.connect()
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        if not lines:
            return ExportResult.SUCCESS
        body = (lines[0] if len(lines) == 1 else "[" + ",".join(lines) + "]").encode(
            "utf-8", "replace"
        )
        headers = dict(self.headers)
        if len(body) >= GZIP_MIN_BYTES:
            body = _gzip(body)
            headers["Content-Encoding"] = "gzip"
        deadline = time.monotonic() + max(0.001, timeout_s)
        for attempt in (0, 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ExportResult.RETRY
            reused = self._conn is not None
            try:
                conn = self._connection(remaining)
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    self.reset()
            except (OSError, http.client.HTTPException):
                self.reset()
                # A kept-alive connection the collector closed while we were idle (or frozen)
                # fails on first use: one more try on a fresh connection, within the budget.
                if reused and attempt == 0:
                    continue
                return ExportResult.RETRY
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
            return ExportResult.RETRY
        return ExportResult.RETRY  # pragma: no cover

    def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    shutdown = reset

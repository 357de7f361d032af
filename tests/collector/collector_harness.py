"""What the collector service tests share: schema-valid reports, the service as a real
subprocess on loopback, a gzip bomb.

``Collector`` runs ``python -m lambdascope.collector.server --port 0 ...`` and reads the URL
from the one line the service prints when it is ready.
"""

from __future__ import annotations

import copy
import os
import pathlib
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from typing import Any

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[2]
AGENT_HANDLERS = ROOT / "tests" / "agent" / "handlers"

_TEMPLATE: dict[str, Any] = {
    "schema": "lambdascope/1",
    "agent": {"name": "lambdascope", "version": "0.1.0", "python": "3.11.7",
              "overhead": {"init_ms": None, "invocation_ms": 0.4}},
    "function": {"name": "orders", "version": "$LATEST",
                 "arn": "arn:aws:lambda:eu-west-1:123456789012:function:orders",
                 "region": "eu-west-1", "architecture": "x86_64", "memory_limit_mb": 256,
                 "log_group": "/aws/lambda/orders",
                 "log_stream": "2026/11/30/[$LATEST]0123456789abcdef0123456789abcdef",
                 "service": "orders"},
    "invocation": {"request_id": "", "start_ms": 0.0, "end_ms": 0.0, "duration_ms": 12.5,
                   "timeout_ms": 3000.0, "cold_start": False, "init_duration_ms": None,
                   "init_type": "on-demand", "proactive_init": False, "since_restore_ms": None,
                   "status": "ok", "sampled": True, "trigger": {"type": "direct", "source": None},
                   "batch": None, "tenant_id": None},
    "error": None,
    "resources": {"rss_start_mb": 40.0, "rss_end_mb": 41.0, "rss_peak_mb": 41.5,
                  "memory_used_pct": 16.2, "cpu_user_ms": 5.0, "cpu_system_ms": 1.0,
                  "net_rx_bytes": 100, "net_tx_bytes": 200, "tmp_used_mb": 1.0, "open_fds": 12,
                  "threads": 2, "rss_growth_mb": 0.0, "leak_suspected": False,
                  "sandbox_memory_mb": 60.0},
    "metrics": [],
    "labels": [],
    "trace": {"trace_id": "", "span_id": "aa5eff01350f6c6c", "parent_span_id": None},
    "spans": [],
    "dropped_spans": 0,
    "logs": [],
}


def make_report(
    request_id: str | None = None,
    *,
    function: str = "orders",
    status: str = "ok",
    start_ms: float | None = None,
    duration_ms: float = 12.5,
    cold: bool = False,
    version: str = "$LATEST",
    trace_id: str | None = None,
    with_span: bool = False,
    error: bool | None = None,
) -> dict[str, Any]:
    """A schema-valid report (checked against the shipped schema by the tests that use it)."""
    report = copy.deepcopy(_TEMPLATE)
    rid = request_id or str(uuid.uuid4())
    start = time.time() * 1000.0 - 5_000.0 if start_ms is None else start_ms
    inv = report["invocation"]
    inv.update(request_id=rid, start_ms=start, end_ms=start + duration_ms,
               duration_ms=duration_ms, status=status, cold_start=cold)
    if cold:
        inv["init_duration_ms"] = 250.0
        report["agent"]["overhead"]["init_ms"] = 20.0
    report["function"].update(name=function, service=function, version=version)
    report["trace"]["trace_id"] = trace_id or uuid.uuid4().hex
    if error or (error is None and status in ("error", "crashed")):
        report["error"] = {
            "type": "ValueError", "message": f"order {rid[:8]} not found",
            "stack": [{"file": "/var/task/app.py", "line": 10, "function": "handler"},
                      {"file": "/var/task/app.py", "line": 42, "function": "load"}],
        }
    if with_span:
        report["spans"] = [
            {"span_id": "aa5eff01350f6c6c", "parent_span_id": None, "name": "handler",
             "kind": "server", "start_ms": start, "duration_ms": duration_ms, "status": "ok",
             "attributes": {}},
            {"span_id": "bb5eff01350f6c6c", "parent_span_id": "aa5eff01350f6c6c",
             "name": "S3.GetObject", "kind": "client", "start_ms": start + 1,
             "duration_ms": duration_ms / 2, "status": "ok",
             "attributes": {"rpc.system": "aws-api", "rpc.service": "S3",
                            "rpc.method": "GetObject", "aws.s3.bucket": "my-bucket"}},
        ]
        report["logs"] = [{"timestamp_ms": start + 2, "level": "INFO", "logger": "app",
                           "message": f"loading order {rid}"}]
    return report


def gzip_bomb(decompressed_mb: int = 1024) -> bytes:
    """A valid gzip stream of ``decompressed_mb`` MB of zeros, about 1 KB per MB (made in a
    fraction of a second: one full-flushed deflate block of 1 MB of zeros, repeated)."""
    chunk = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    end = comp.flush()
    crc = 0
    for _ in range(decompressed_mb):
        crc = zlib.crc32(chunk, crc)
    size = (decompressed_mb << 20) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + block * decompressed_mb + end + struct.pack("<II", crc, size)


class Collector:
    """``lambdascope collector`` as a subprocess on a free loopback port."""

    def __init__(
        self,
        db: str | os.PathLike[str],
        *args: str,
        token: str | None = None,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.db = str(db)
        self.token = token
        self.argv = [sys.executable, "-m", "lambdascope.collector.server", "--host", host,
                     "--port", "0", "--db", self.db, *args]
        if token is not None:
            self.argv += ["--token", token]
        self.env = {k: v for k, v in os.environ.items() if k != "LAMBDASCOPE_TOKEN"}
        self.env.update(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.ready_line = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def start(self, timeout_s: float = 30.0) -> Collector:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=self.env,
        )
        threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, False),
                         daemon=True).start()
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            line = None
        if not line or "http://" not in line:
            self.kill()
            raise AssertionError(
                f"the collector did not start: {line!r}\nstderr: {self.stderr}"
            )
        self.ready_line = line.strip()
        self.url = line[line.index("http://"):].split()[0]
        return self

    def _read(self, stream: Any, is_stdout: bool) -> None:
        for line in stream:
            if is_stdout:
                self._lines.put(line)
            else:
                self._stderr.append(line)
        if is_stdout:
            self._lines.put(None)

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        with self.client() as client:
            if isinstance(body, (bytes, str)):
                return client.post("/v1/reports", content=body, **kwargs)
            return client.post("/v1/reports", json=body, **kwargs)

    def get(self, path: str, **params: Any) -> httpx.Response:
        with self.client() as client:
            return client.get(path, params=params)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"the collector did not stop on {sig}") from None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def run_server(*args: str, env: dict[str, str] | None = None,
               timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``python -m lambdascope.collector.server ARGS`` expected to end by itself."""
    full_env = {k: v for k, v in os.environ.items() if k != "LAMBDASCOPE_TOKEN"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lambdascope.collector.server", *args],
        capture_output=True, text=True, timeout=timeout_s, env=full_env,
        stdin=subprocess.DEVNULL,
    )


class InProcess:
    """An application served by uvicorn in a thread of this process, on a free loopback port
    (real HTTP, so streaming bodies and connection handling are the service's own)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> InProcess:
        import socket

        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, access_log=False, log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        give_up = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > give_up or not self._thread.is_alive():
                raise AssertionError("the in-process server did not start")
            time.sleep(0.01)
        self._sock = sock
        return self

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        assert self._thread is not None
        self._thread.join(10)
        self._sock.close()
        close = getattr(self.app.state, "close_readers", None)
        if close is not None:
            close()


def raw_exchange(url: str, head: bytes, body: bytes = b"", timeout_s: float = 10.0
                 ) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers, without the blank line) and ``body`` as they
    are, on a socket of its own, and read the answer until the server closes or the declared
    length has arrived. A server that answers before reading the whole body may reset the
    connection while the body is being sent: the answer is read anyway."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        try:
            sock.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            pass
        data = b""
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                headers = _headers(data[:end])
                length = int(headers.get("content-length", "-1"))
                if length >= 0 and len(data) - end - 4 >= length:
                    break
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise AssertionError(f"no answer: {data[:200]!r}")
    status = int(data.split(b" ", 2)[1])
    return status, _headers(data[:end]), data[end + 4:]


def _headers(head: bytes) -> dict[str, str]:
    out = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return out

"""What the example tests share.

Each example function runs as Lambda runs it: the real runtime interface client
(``awslambdaric``) in its own process, against the Runtime API emulator
(:class:`lambdascope.runner.runtime_api.Sandbox`), with the real agent, whose ``file`` exporter
writes one report per line (or, in the tests that go through the runner, ``lambdascope
invoke`` into a store). AWS is moto in server mode and the payment provider a local HTTP server,
both on loopback: ``examples/devstack.py``, the stack the demo starts, in a process of its own
(:class:`Stack`; moto keeps its state in module globals, so a moto inside the test process would
share its buckets and tables with the other tests' moto servers). Each function gets a ``/tmp``
of its own (``TMPDIR``), as each Lambda sandbox has.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
import urllib.request
from typing import Any

from lambdascope.runner.runtime_api import InvocationResult, Sandbox

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from devstack import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY  # noqa: E402

#: What the agent logs when it swallows one of its own errors (lambdascope._guard).
INTERNAL_ERROR = "lambdascope: internal error"


class Stack:
    """``python examples/devstack.py`` in a process of its own: moto and the payment service
    with the examples' resources; :attr:`env` is what it wrote to its environment file."""

    def __init__(self, workdir: pathlib.Path, slow_payment_s: float) -> None:
        self.workdir = workdir
        self.env_file = workdir / "devstack.env"
        self.log = workdir / "devstack.log"
        self.argv = [sys.executable, str(EXAMPLES / "devstack.py"), "--env-file",
                     str(self.env_file), "--payment-port", "0", "--huge-image-mb", "0",
                     "--slow-payment-s", str(slow_payment_s)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout_s: float = 60.0) -> Stack:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        give_up = time.monotonic() + timeout_s
        while not self.env_file.exists():
            if self.proc.poll() is not None or time.monotonic() > give_up:
                self.stop()
                raise AssertionError(f"devstack did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        for line in self.env_file.read_text().splitlines():
            words = shlex.split(line)
            if words[:1] == ["export"]:
                name, _, value = words[1].partition("=")
                self.env[name] = value
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    @property
    def queue_url(self) -> str:
        return self.env["QUEUE_URL"]

    @property
    def payment_url(self) -> str:
        return self.env["PAYMENT_URL"]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        ).client(service, endpoint_url=self.endpoint)

    def charges(self) -> list[dict[str, Any]]:
        """What the payment service received (``GET /charges``)."""
        with urllib.request.urlopen(f"{self.payment_url}/charges", timeout=10) as answer:
            found: list[dict[str, Any]] = json.load(answer)["charges"]
        return found


def load_event(example: str, name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / example / "events" / name).read_text())


class Function:
    """One example function: sandboxes started on demand (the first invocation of each is a
    cold start), every report of every sandbox in ``reports.jsonl``."""

    def __init__(self, stack: Stack, example: str, handler: str, name: str,
                 workdir: pathlib.Path, memory_mb: int = 256,
                 env: dict[str, str] | None = None) -> None:
        self.task_root = EXAMPLES / example
        self.handler = handler
        self.name = name
        self.memory_mb = memory_mb
        self.workdir = workdir
        self.tmp = workdir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.reports_path = workdir / "reports.jsonl"
        self.env: dict[str, str | None] = {k: None for k in os.environ
                                           if k.startswith("LAMBDASCOPE_")}
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
                     "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            self.env[name] = None  # only the stack's fake credentials, never a real one
        self.env.update(stack.env)
        self.env.update({
            "LAMBDASCOPE_EXPORTERS": "file",
            "LAMBDASCOPE_FILE": str(self.reports_path),
            "LAMBDASCOPE_SPOOL_DIR": str(workdir / "spool"),
            "TMPDIR": str(self.tmp),
            "OTEL_PROPAGATORS": None,
        })
        self.env.update(env or {})
        self.sandboxes: list[Sandbox] = []

    @property
    def sandbox(self) -> Sandbox:
        """The current sandbox, started (and its init waited for) if there is none alive."""
        if not self.sandboxes or not self.sandboxes[-1].alive:
            self.new_sandbox()
        return self.sandboxes[-1]

    def new_sandbox(self) -> Sandbox:
        """A fresh sandbox (the next invocation is cold); the previous one is stopped."""
        if self.sandboxes:
            self.sandboxes[-1].stop()
        sandbox = Sandbox(self.handler, self.task_root, env=self.env, function_name=self.name,
                          memory_mb=self.memory_mb, region=REGION)
        self.sandboxes.append(sandbox)
        sandbox.start()
        if not sandbox.wait_ready(30.0):
            sandbox.stop()
            raise AssertionError(f"{self.name} did not finish its init\n{sandbox.output}")
        return sandbox

    def invoke(self, event: dict[str, Any], timeout_s: float = 15.0) -> InvocationResult:
        return self.sandbox.invoke(event, timeout_s)

    def reports(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Exactly ``count`` reports (they may be written just after the response)."""
        give_up = time.monotonic() + timeout_s
        lines: list[str] = []
        while True:
            if self.reports_path.exists():
                text = self.reports_path.read_text()
                lines = [line for line in text.splitlines() if line.strip()]
                if len(lines) >= count and text.endswith("\n"):
                    break
            if time.monotonic() > give_up:
                break
            time.sleep(0.02)
        assert len(lines) == count, f"{count} reports expected, {len(lines)} written\n{self.output}"
        return [json.loads(line) for line in lines]

    def report_of(self, request_id: str, count: int) -> dict[str, Any]:
        (found,) = [r for r in self.reports(count)
                    if r["invocation"]["request_id"] == request_id]
        return found

    @property
    def output(self) -> str:
        return "\n".join(s.output for s in self.sandboxes)

    def stop(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.stop()
        output = self.output
        assert INTERNAL_ERROR not in output, f"the agent failed inside {self.name}:\n{output}"


def body_of(result: InvocationResult) -> tuple[int, dict[str, Any]]:
    """An API Gateway proxy response's status and JSON body."""
    assert result.ok, (result.status, result.payload)
    payload = result.payload
    return payload["statusCode"], json.loads(payload["body"])


def spans_named(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in report["spans"] if s["name"] == name]


def one_span(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = spans_named(report, name)
    assert len(found) == 1, (name, [s["name"] for s in report["spans"]])
    return found[0]


def root_span(report: dict[str, Any]) -> dict[str, Any]:
    (root,) = [s for s in report["spans"] if s["span_id"] == report["trace"]["span_id"]]
    return root


def metrics_of(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for metric in report["metrics"]:
        out.setdefault(metric["name"], []).append(metric)
    return out


def lambdascope_cli(*args: str, timeout_s: float = 60.0, cwd: pathlib.Path | None = None,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``lambdascope ARGS`` (``python -m lambdascope.cli``), its output as text."""
    return subprocess.run([sys.executable, "-m", "lambdascope.cli", *args],
                          capture_output=True, text=True, timeout=timeout_s, cwd=cwd,
                          env=env, stdin=subprocess.DEVNULL)


def ingest(db: pathlib.Path, *files: pathlib.Path) -> None:
    """The reports of ``files`` (the file exporter's lines) into the store ``db``."""
    done = lambdascope_cli("ingest", "--quiet", "--db", str(db), *map(str, files))
    assert done.returncode == 0, done.stderr


def function_env(stack: Stack) -> dict[str, str]:
    """This process's environment for a ``lambdascope`` command that runs example functions:
    the stack's endpoints and fake credentials, no lambdascope settings, no real credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDASCOPE_")}
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "OTEL_PROPAGATORS"):
        env.pop(name, None)
    env.update(stack.env)
    return env


def invoke_cli(stack: Stack, reference: str, *args: str, db: pathlib.Path
               ) -> dict[str, Any]:
    """``lambdascope invoke examples/REFERENCE ARGS --db DB --json``: the run, as JSON."""
    done = lambdascope_cli("invoke", str(EXAMPLES / reference), *args, "--db", str(db),
                           "--quiet", "--json", env=function_env(stack), timeout_s=120.0)
    assert done.returncode == 0, done.stderr
    run: dict[str, Any] = json.loads(done.stdout)
    return run


def stored(db: pathlib.Path, request_id: str) -> dict[str, Any]:
    """The report the store keeps for ``request_id``."""
    from lambdascope.collector import queries
    from lambdascope.collector.store import open_reader

    with open_reader(db) as conn:
        found = queries.show(conn, request_id)
    assert found is not None, f"{request_id} is not in {db}"
    report: dict[str, Any] = found["invocation"]
    return report

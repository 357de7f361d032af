"""Fixtures for the sandbox tests: monitored handlers (``tests/agent/handlers``) run by the real
``awslambdaric`` runtime interface client, one process per sandbox, against the local Runtime
API emulator (:mod:`lambdascope.runner.runtime_api`). Each sandbox writes its reports with the
``file`` exporter; the tests read them back, one JSON report per line.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lambdascope.runner.runtime_api import InvocationResult, RuntimeAPI, Sandbox

HANDLERS = pathlib.Path(__file__).resolve().parent / "handlers"
FUNCTION_NAME = "lambdascope-test"
REGION = "eu-west-1"
MEMORY_MB = 256

# What the agent logs when it swallows one of its own errors (lambdascope._guard).
INTERNAL_ERROR = "lambdascope: internal error"


class Lambda:
    """One sandbox, and the reports its ``file`` exporter writes."""

    def __init__(self, sandbox: Sandbox, reports_path: pathlib.Path) -> None:
        self.sandbox = sandbox
        self.reports_path = reports_path

    @property
    def api(self) -> RuntimeAPI:
        return self.sandbox.api

    def invoke(self, event: Any = None, timeout_s: float = 3.0, **kwargs: Any) -> InvocationResult:
        return self.sandbox.invoke({} if event is None else event, timeout_s, **kwargs)

    def reports(self, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Exactly ``count`` reports, waiting (at most ``timeout_s``) for them to be written:
        a report may be flushed after the response reaches the caller."""
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
            time.sleep(0.01)
        assert len(lines) == count, (
            f"expected {count} reports, found {len(lines)}\n{self.sandbox.output}"
        )
        return [json.loads(line) for line in lines]

    def by_request_id(self, count: int) -> dict[str, dict[str, Any]]:
        return {r["invocation"]["request_id"]: r for r in self.reports(count)}


def start_lambda(
    directory: pathlib.Path,
    handler: str = "monitored.handler",
    *,
    init_type: str = "on-demand",
    env: dict[str, str] | None = None,
    wait: bool = True,
    **kwargs: Any,
) -> Lambda:
    """Start a sandbox for ``handler`` whose reports go to ``directory/reports.jsonl``."""
    directory.mkdir(parents=True, exist_ok=True)
    reports = directory / "reports.jsonl"
    full_env: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith("LAMBDASCOPE_")
    }
    full_env.update(
        {
            "LAMBDASCOPE_EXPORTERS": "file",
            "LAMBDASCOPE_FILE": str(reports),
            "LAMBDASCOPE_SPOOL_DIR": str(directory / "spool"),
        }
    )
    full_env.update(env or {})
    sandbox = Sandbox(
        handler,
        HANDLERS,
        env=full_env,
        init_type=init_type,
        function_name=FUNCTION_NAME,
        memory_mb=MEMORY_MB,
        region=REGION,
        **kwargs,
    )
    sandbox.start()
    lam = Lambda(sandbox, reports)
    if wait:
        try:
            ready = sandbox.wait_ready(20.0)
        except Exception:
            sandbox.stop()
            raise
        if not ready:
            sandbox.stop()
            pytest.fail(f"the sandbox did not finish its init\n{sandbox.output}")
    return lam


def check_clean(lam: Lambda) -> None:
    """The agent swallowed none of its own errors in the sandbox."""
    output = lam.sandbox.stdout + lam.sandbox.stderr
    assert INTERNAL_ERROR not in output, f"the agent failed inside the sandbox:\n{output}"


@pytest.fixture(scope="module")
def idle_lambda(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lambda]:
    """A sandbox started once per module and left idle until a test invokes it."""
    lam = start_lambda(tmp_path_factory.mktemp("idle"))
    yield lam
    lam.sandbox.stop()
    check_clean(lam)


@pytest.fixture
def sandboxes(tmp_path: pathlib.Path) -> Iterator[Any]:
    """Factory: ``sandboxes(handler="monitored.handler", init_type=..., env=..., wait=True)``
    starts a sandbox and waits for its init; every sandbox is stopped at teardown."""
    started: list[Lambda] = []

    def start(handler: str = "monitored.handler", **kwargs: Any) -> Lambda:
        lam = start_lambda(tmp_path / f"sandbox-{len(started)}", handler, **kwargs)
        started.append(lam)
        return lam

    yield start
    for lam in started:
        lam.sandbox.stop()
    for lam in started:
        check_clean(lam)

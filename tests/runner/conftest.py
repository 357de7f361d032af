"""Fixtures for the runner tests: handlers in ``tests/runner/handlers`` run by
:class:`lambdascope.runner.invoke.Runner` (real ``awslambdaric`` processes, loopback HTTP), and
the embedded store they report to, read back row by row."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from runner_harness import HANDLERS

from lambdascope.runner.invoke import InvokeOptions, Runner, RunResult
from lambdascope.runner.target import resolve


@pytest.fixture
def run_handler(tmp_path: pathlib.Path) -> Callable[..., RunResult]:
    """``run_handler("scripted.py:handler", event, times=…, …)``: one run of the runner into
    ``tmp_path/reports.db``; ``SCRIPT_DIR`` (and ``EXTENSION_LOG``) point into ``tmp_path``."""

    def run(reference: str, event: Any = None, *, on_event: Any = None, **options: Any
            ) -> RunResult:
        env = {"SCRIPT_DIR": str(tmp_path), "EXTENSION_LOG": str(tmp_path / "extension.log")}
        env.update(options.pop("env", {}))
        opts = InvokeOptions(env=env, **options)
        ref = resolve(str(HANDLERS / reference.split(":")[0]) + ":" + reference.split(":")[1])
        runner = Runner(ref, opts, db_path=str(tmp_path / "reports.db"), on_event=on_event)
        return runner.run({} if event is None else event)

    return run

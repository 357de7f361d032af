"""Everything built once per configuration: exporters, redactor, static function facts, and
delivery of reports within the flush budget."""

from __future__ import annotations

import os
import time
from typing import Any

from . import _coldstart
from ._config import DEFAULT_REDACT, Config
from ._guard import internal_error
from ._redact import Redactor
from ._report import dumps, function_info
from .exporters import ExportResult, build
from .instrumentation._suppress import ALL
from .instrumentation._suppress import LEVEL as SUPPRESS

MAX_RETRY_QUEUE = 100


class Pipeline:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.exporters = build(config)
        # No exporter of ours uses the network between invocations: the end-of-invocation
        # network reading can serve as the next start.
        self.reuse_net = not any(getattr(e, "network", True) for e in self.exporters)
        self.redactor = Redactor(DEFAULT_REDACT + tuple(config.redact))
        self.function = function_info(config.service)
        self.memory_limit_mb = self.function["memory_limit_mb"]
        self.init_type = _coldstart.normalise_init_type(
            os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
        )
        # Reports an exporter could not deliver, with that exporter, oldest first.
        self.retry: list[tuple[Any, dict[str, Any], str]] = []
        self.dropped_reports = 0
        self.last_flush_ms = 0.0

    def serialise(self, report: dict[str, Any]) -> str:
        return self.redactor.text(dumps(report))

    def deliver(self, reports: list[dict[str, Any]], timeout_ms: float | None = None) -> bool:
        """Send ``reports`` (and earlier undelivered ones) to every exporter within the flush
        budget. Returns True when everything was delivered. Never raises."""
        t0 = time.perf_counter()
        budget_s = (timeout_ms if timeout_ms is not None else self.config.flush_timeout_ms) / 1000.0
        deadline = time.monotonic() + budget_s
        ok = True
        token = SUPPRESS.set(ALL)  # the agent's own calls are never traced
        try:
            lines = [self.serialise(r) for r in reports]
            pending = self.retry
            self.retry = []
            for exporter, report, line in pending:
                if not self._send(exporter, [report], [line], deadline):
                    ok = False
            for exporter in self.exporters:
                if not self._send(exporter, reports, lines, deadline):
                    ok = False
        except Exception as exc:
            internal_error("deliver", exc)
            ok = False
        finally:
            SUPPRESS.reset(token)
        self.last_flush_ms = (time.perf_counter() - t0) * 1000.0
        return ok

    def _send(
        self, exporter: Any, reports: list[dict[str, Any]], lines: list[str], deadline: float
    ) -> bool:
        if not lines:
            return True
        remaining = deadline - time.monotonic()
        result = ExportResult.RETRY
        if remaining > 0:
            try:
                result = exporter.export(reports, lines, remaining)
            except Exception as exc:
                internal_error(f"exporter.{exporter.name}", exc)
                result = ExportResult.RETRY
        if result is ExportResult.RETRY:
            for report, line in zip(reports, lines):
                self.retry.append((exporter, report, line))
            overflow = len(self.retry) - MAX_RETRY_QUEUE
            if overflow > 0:  # drop the oldest first, and count them
                del self.retry[:overflow]
                self.dropped_reports += overflow
            return False
        return True

    def reset_connections(self) -> None:
        for exporter in self.exporters:
            try:
                exporter.reset()
            except Exception as exc:
                internal_error(f"exporter.{exporter.name}.reset", exc)

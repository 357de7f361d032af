"""``memory``: keeps reports in a list (tests and :func:`lambdascope.testing.capture_reports`).

Reports are kept as they would reach a collector: serialised, redacted and parsed back.
"""

from __future__ import annotations

import json
from typing import Any

from . import ExportResult


class MemoryExporter:
    name = "memory"
    network = False

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        for line in lines:
            self.lines.append(line)
            self.reports.append(json.loads(line))
        return ExportResult.SUCCESS

    def reset(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

"""``stdout``: one JSON line per report, easy to find in CloudWatch Logs.

Each line is a JSON object whose first key is ``"schema":"lambdascope/1"``, so a CloudWatch
Logs filter ``{ $.schema = "lambdascope/1" }`` finds it, whether the function logs as text or
with ``AWS_LAMBDA_LOG_FORMAT=JSON`` (the runtime passes lines written to stdout through as they
are). The line goes out in one write.
"""

from __future__ import annotations

import sys
from typing import Any

from . import ExportResult


class StdoutExporter:
    name = "stdout"
    network = False

    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        stream = sys.stdout
        if stream is None:  # pythonw / closed
            return ExportResult.REJECTED
        stream.write("".join(line + "\n" for line in lines))
        flush = getattr(stream, "flush", None)
        if flush is not None:
            flush()
        return ExportResult.SUCCESS

    def reset(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

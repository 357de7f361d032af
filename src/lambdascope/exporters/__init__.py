"""Where reports go. One module per destination; each exporter takes serialised reports and a
deadline, and answers with an :class:`ExportResult`. Exporters never raise."""

from __future__ import annotations

import enum
from typing import Any, Protocol


class ExportResult(enum.Enum):
    SUCCESS = "success"
    #: Not delivered, worth trying again later (collector down, 5xx, timeout).
    RETRY = "retry"
    #: Refused for good (400/401/413): retrying would not help.
    REJECTED = "rejected"


class Exporter(Protocol):
    name: str
    #: Whether exporting uses the network (it then shows in the sandbox's traffic).
    network: bool

    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        """Deliver ``reports`` (``lines`` holds each one serialised) within ``timeout_s``."""
        ...

    def reset(self) -> None:
        """Drop connections and handles (after a SnapStart restore or a fork)."""
        ...

    def shutdown(self) -> None: ...


def build(config: Any) -> list[Exporter]:
    """The exporters the configuration names, in order. Unknown or unavailable ones are logged."""
    from .._guard import log_once

    out: list[Exporter] = []
    if muted:
        return list(extra)
    for name in config.exporters:
        try:
            if name == "stdout":
                from .stdout import StdoutExporter

                out.append(StdoutExporter())
            elif name == "file":
                from .file import FileExporter

                out.append(FileExporter(config.file))
            elif name == "http":
                from .http import HttpExporter

                out.append(HttpExporter(config.collector_url, config.token))
            elif name == "otlp":
                from .otlp import OtlpExporter  # its protobuf modules load at the first export

                out.append(OtlpExporter(config.otlp_endpoint))
            elif name == "emf":
                import os

                from .emf import EmfExporter

                # An exporter's own setting (like the OTEL_* variables of otlp), not a core one.
                namespace = os.environ.get("LAMBDASCOPE_EMF_NAMESPACE") or None
                out.append(EmfExporter(namespace=namespace))
            else:
                log_once(
                    "exporter-unavailable:" + name,
                    "lambdascope: the %r exporter is not available in this version; "
                    "reports go to the other exporters",
                    name,
                )
        except Exception as exc:  # one exporter that cannot be built never stops the others
            log_once(
                "exporter-build:" + name,
                "lambdascope: the %r exporter cannot be used (%s); reports go to the others",
                name,
                exc,
            )
    if not out:
        from .stdout import StdoutExporter

        out.append(StdoutExporter())
    return out + extra


#: Exporters added to every pipeline (``lambdascope.testing.capture_reports``).
extra: list[Exporter] = []
#: While non-zero, pipelines built get only the ``extra`` exporters.
muted = 0

"""OpenTelemetry both ways: spans made through the OpenTelemetry API land in the report.

The global tracer provider can be set once per process, so each case runs in a fresh
interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

PRELUDE = """
import json, sys
import lambdascope
from lambdascope.testing import capture_reports, fake_context
"""


def run(code: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["spans"]}


def test_library_spans_without_a_configured_provider() -> None:
    out = run(
        """
        from opentelemetry import trace
        tracer = trace.get_tracer("somelib")

        @lambdascope.monitor
        def handler(event, context):
            with tracer.start_as_current_span("lib.query", attributes={"db.system": "redis"}):
                with lambdascope.span("ours.inner"):
                    pass
            with lambdascope.span("ours.outer"):
                with tracer.start_as_current_span("lib.nested") as s:
                    s.set_attribute("n", 1)
            return "ok"

        with capture_reports() as reports:
            handler({}, fake_context())
            handler({}, fake_context())
        print(json.dumps({"reports": reports,
                          "provider": type(trace.get_tracer_provider()).__module__}))
        """
    )
    for report in out["reports"]:
        spans = by_name(report)
        root = report["spans"][0]
        assert spans["lib.query"]["parent_span_id"] == root["span_id"]
        assert spans["lib.query"]["attributes"]["db.system"] == "redis"
        assert spans["lib.query"]["attributes"]["otel.scope.name"] == "somelib"
        assert spans["ours.inner"]["parent_span_id"] == spans["lib.query"]["span_id"]
        assert spans["lib.nested"]["parent_span_id"] == spans["ours.outer"]["span_id"]
        assert spans["lib.nested"]["attributes"]["n"] == 1
    assert out["provider"] == "lambdascope._otel"


def test_user_sdk_provider_stays_theirs_and_spans_reach_both() -> None:
    out = run(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("userlib")

        @lambdascope.monitor
        def handler(event, context):
            with lambdascope.span("ours"):
                with tracer.start_as_current_span("theirs") as s:
                    s.set_status(trace.Status(trace.StatusCode.ERROR))
            return 1

        with capture_reports() as reports:
            handler({}, fake_context())
        theirs = exporter.get_finished_spans()
        print(json.dumps({
            "report": reports[0],
            "same_provider": trace.get_tracer_provider() is provider,
            "their_spans": [(s.name, format(s.context.trace_id, "032x")) for s in theirs],
        }))
        """
    )
    report = out["report"]
    spans = by_name(report)
    assert out["same_provider"] is True
    assert spans["theirs"]["parent_span_id"] == spans["ours"]["span_id"]
    assert spans["theirs"]["status"] == "error"
    assert out["their_spans"] == [["theirs", report["trace"]["trace_id"]]]


def test_spans_outside_an_invocation_are_not_recorded() -> None:
    out = run(
        """
        from opentelemetry import trace
        tracer = trace.get_tracer("lib")

        @lambdascope.monitor
        def handler(event, context):
            return None

        with capture_reports() as reports:
            handler({}, fake_context())
            with tracer.start_as_current_span("between"):
                pass
            handler({}, fake_context())
        print(json.dumps([r["spans"] for r in reports]))
        """
    )
    assert all(len(spans) == 1 for spans in out)


def test_import_pulls_in_no_heavy_module() -> None:
    out = run(
        """
        heavy = ("opentelemetry", "wrapt", "psutil", "asyncio", "boto3", "botocore", "requests",
                 "urllib3", "sqlite3", "jsonschema", "concurrent.futures", "snapshot_restore_py")
        print(json.dumps(sorted(m for m in sys.modules
                                if m in heavy or m.startswith("opentelemetry"))))
        """.replace("import lambdascope\n", "")
    )
    assert out == []

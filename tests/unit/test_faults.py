"""Fault injection: whatever breaks inside the agent, the handler's outcome is unchanged and the
failure is logged once on the ``lambdascope`` logger."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import lambdascope
from lambdascope import _resources, _state
from lambdascope.exporters import ExportResult
from lambdascope.testing import capture_reports, fake_context

pytestmark = pytest.mark.faults

BOOM = RuntimeError("injected fault")


def handlers() -> tuple[Any, Any, ValueError]:
    err = ValueError("the user's own error")

    @lambdascope.monitor
    def ok(event: Any, context: Any) -> dict:
        with lambdascope.span("work"):
            lambdascope.metric("m", 1)
        return {"same": "object"}

    @lambdascope.monitor
    def bad(event: Any, context: Any) -> None:
        raise err

    return ok, bad, err


def exercise(caplog: Any) -> list[logging.LogRecord]:
    ok, bad, err = handlers()
    with caplog.at_level(logging.DEBUG, logger="lambdascope"):
        for _ in range(3):
            assert ok({}, fake_context()) == {"same": "object"}
            with pytest.raises(ValueError) as info:
                bad({}, fake_context())
            assert info.value is err
            assert lambdascope.current() is None
    return [r for r in caplog.records if r.name == "lambdascope" and r.levelno >= logging.WARNING]


def raising(*args: Any, **kwargs: Any) -> Any:
    raise BOOM


def test_resource_sampler_start_fails(monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setattr(_resources.Sampler, "start", raising)
    warnings = exercise(caplog)
    assert len(warnings) == 1 and "begin" in warnings[0].getMessage()


def test_resource_sampler_end_fails(monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setattr(_resources.Sampler, "end", raising)
    warnings = exercise(caplog)
    assert len(warnings) == 1 and "end" in warnings[0].getMessage()


def test_proc_files_unreadable(monkeypatch: Any, caplog: Any) -> None:
    """No /proc at all: the report still goes out, with what could be read."""
    real_open = _resources._open
    monkeypatch.setattr(_resources, "_open", lambda path, flags=0: None)
    with capture_reports() as reports:
        warnings = exercise(caplog)
    monkeypatch.setattr(_resources, "_open", real_open)
    assert warnings == []
    assert len(reports) == 6
    assert reports[0]["resources"]["rss_end_mb"] is not None  # psutil fallback


def test_exporter_raises(monkeypatch: Any, caplog: Any) -> None:
    from lambdascope.exporters.stdout import StdoutExporter

    monkeypatch.setattr(StdoutExporter, "export", raising)
    warnings = exercise(caplog)
    assert len(warnings) == 1 and "exporter.stdout" in warnings[0].getMessage()


def test_one_exporter_failing_does_not_stop_the_others(
    monkeypatch: Any, caplog: Any, tmp_path: Any
) -> None:
    from lambdascope.exporters.stdout import StdoutExporter

    monkeypatch.setattr(StdoutExporter, "export", raising)
    path = tmp_path / "r.jsonl"

    @lambdascope.monitor(exporters="stdout,file", file=str(path))
    def handler(event: Any, context: Any) -> int:
        return 1

    assert handler({}, fake_context()) == 1
    assert handler({}, fake_context()) == 1
    assert len(path.read_text().splitlines()) == 2


def test_exporter_answers_retry_forever(monkeypatch: Any, caplog: Any, tmp_path: Any) -> None:
    """The spool is bounded: the oldest reports go first, and the count travels in the next
    report that gets through."""
    from lambdascope import _pipeline
    from lambdascope.exporters.memory import MemoryExporter

    monkeypatch.setattr(_pipeline, "BACKOFF_MIN_S", 0.0)
    real_export = MemoryExporter.export
    failing = {"on": True}

    def flaky(self: Any, reports: Any, lines: Any, timeout_s: float) -> Any:
        return ExportResult.RETRY if failing["on"] else real_export(self, reports, lines, timeout_s)

    monkeypatch.setattr(MemoryExporter, "export", flaky)

    @lambdascope.monitor(spool_dir=str(tmp_path / "spool"), spool_max_mb=0.006)
    def handler(event: Any, context: Any) -> int:
        lambdascope.label(f"n{event['n']:02d}")
        return event["n"]

    with capture_reports() as reports, caplog.at_level(logging.WARNING, logger="lambdascope"):
        for n in range(8):
            assert handler({"n": n}, fake_context()) == n
        failing["on"] = False
        assert handler({"n": 99}, fake_context()) == 99
    said = [r for r in caplog.records if "spool" in r.getMessage() and "full" in r.getMessage()]
    assert len(said) == 1  # said once, not once per report
    fresh, *drained = reports
    assert fresh["dropped_reports"] > 0
    # Delivered: the fresh report, then what the bounded spool kept, oldest first.
    kept = [r["labels"][0] for r in drained]
    told = sum(r.get("dropped_reports", 0) for r in reports)
    assert len(reports) + told == 9  # nothing lost but what the bound explains, and told
    assert kept and kept == sorted(kept)  # the oldest were dropped, the rest came in order
    assert kept[-1] == "n07"


def test_report_serialisation_fails(monkeypatch: Any, caplog: Any) -> None:
    from lambdascope import _pipeline

    monkeypatch.setattr(_pipeline, "dumps", raising)
    warnings = exercise(caplog)
    assert len(warnings) == 1 and "deliver" in warnings[0].getMessage()


def test_trigger_detection_fails(monkeypatch: Any, caplog: Any) -> None:
    from lambdascope import _monitor

    monkeypatch.setattr(_monitor, "detect", raising)
    warnings = exercise(caplog)
    assert len(warnings) == 1


def test_context_object_misbehaves(caplog: Any) -> None:
    class EvilContext:
        @property
        def aws_request_id(self) -> str:
            raise BOOM

        def get_remaining_time_in_millis(self) -> int:
            raise BOOM

    ok, _, _ = handlers()
    with capture_reports() as reports:
        assert ok({}, EvilContext()) == {"same": "object"}
    # The request id could not be read: the handler still ran (monitored or not).
    assert len(reports) <= 1


def test_log_capture_fails(monkeypatch: Any, caplog: Any) -> None:
    from lambdascope import _logs

    class BrokenVar:
        def get(self) -> Any:
            raise BOOM

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> int:
        logging.getLogger("user").warning("hello")
        return 4

    with capture_reports() as reports:
        handler({}, fake_context())  # sets the pipeline up, installs the capture handler
        monkeypatch.setattr(_logs, "CURRENT", BrokenVar())
        with caplog.at_level(logging.WARNING, logger="lambdascope"):
            assert handler({}, fake_context()) == 4
    assert reports[0]["logs"][0]["message"] == "hello"
    assert reports[1]["logs"] == []
    assert any("logs.capture" in r.getMessage() for r in caplog.records)


def test_snapstart_hook_never_raises(monkeypatch: Any) -> None:
    from lambdascope import _monitor

    monkeypatch.setattr(_monitor._ids, "reseed", raising)
    _monitor.after_restore()  # must not raise into the runtime


def test_event_and_context_of_odd_shapes_still_report(caplog: Any) -> None:
    class Context:
        aws_request_id = "odd-1"

        @property
        def invoked_function_arn(self) -> str:
            raise RuntimeError("no arn here")

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        return "ok"

    event = {"version": "2.0", "requestContext": {"http": "not-a-dict"}, "rawPath": "/x"}
    with capture_reports() as reports:
        assert handler(event, Context()) == "ok"
    assert len(reports) == 1
    assert reports[0]["function"]["arn"] is None


def test_bad_collector_url_is_a_config_error_not_a_silent_loss(caplog: Any) -> None:
    @lambdascope.monitor(collector_url="http://:8080/x")
    def handler(event: Any, context: Any) -> int:
        return 1

    with caplog.at_level(logging.WARNING, logger="lambdascope"):
        assert handler({}, fake_context()) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "lambdascope"]
    assert any("collector_url" in line and "with a host" in line for line in lines), lines


def test_unwritable_report_file_is_said_once_and_not_retried(
    tmp_path: Any, caplog: Any, capsys: Any
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    @lambdascope.monitor(exporters="file,stdout", file=str(blocker / "reports.jsonl"))
    def handler(event: Any, context: Any) -> int:
        return 1

    with caplog.at_level(logging.WARNING, logger="lambdascope"):
        for _ in range(3):
            assert handler({}, fake_context()) == 1
    said = [r for r in caplog.records if "cannot write reports" in r.getMessage()]
    assert len(said) == 1
    (pipeline,) = _state.S.pipelines.values()
    assert pipeline.retry == []  # nothing piles up to be retried on every invocation
    assert capsys.readouterr().out.count('"schema":"lambdascope/1"') == 3


def test_max_spans_zero_keeps_no_span(validate_report: Any) -> None:
    @lambdascope.monitor(max_spans=0)
    def handler(event: Any, context: Any) -> None:
        with lambdascope.span("x"):
            pass

    with capture_reports() as reports:
        handler({}, fake_context())
    report = validate_report(reports[0])
    assert report["spans"] == [] and report["dropped_spans"] == 2


def test_report_building_fails_and_a_bare_report_still_goes_out(
    monkeypatch: Any, caplog: Any, validate_report: Any
) -> None:
    from lambdascope import _monitor

    monkeypatch.setattr(_monitor, "build_report", raising)
    with capture_reports() as reports:
        warnings = exercise(caplog)
    assert len(warnings) == 1 and "report.build" in warnings[0].getMessage()
    assert len(reports) == 6  # nothing lost: one (bare) report per invocation
    for report in reports:
        validate_report(report)
        assert report["agent"]["report_failed"] is True
        assert report["spans"] == [] and report["logs"] == []
    statuses = sorted(r["invocation"]["status"] for r in reports)
    assert statuses == ["error"] * 3 + ["ok"] * 3
    errors = [r["error"] for r in reports if r["error"] is not None]
    assert all(e["type"] == "ValueError" and e["message"] == "" and e["stack"] for e in errors)


def test_attribute_redaction_fails_and_drops_the_attributes_not_the_report(
    monkeypatch: Any, caplog: Any, validate_report: Any
) -> None:
    from lambdascope import _redact

    monkeypatch.setattr(_redact.Redactor, "attributes", raising)
    with capture_reports() as reports:
        warnings = exercise(caplog)
    assert len(warnings) == 1 and "redact.attributes" in warnings[0].getMessage()
    assert len(reports) == 6
    for report in reports:
        validate_report(report)
    spans = [s for r in reports for s in r["spans"] if s["name"] == "work"]
    assert len(spans) == 3
    assert all(s["attributes"] == {"lambdascope.attributes_dropped": True} for s in spans)

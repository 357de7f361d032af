"""The public API: @monitor, metric, label, span, current, flush."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from typing import Any

import pytest

import lambdascope
from lambdascope.testing import capture_reports, fake_context


def one(reports: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(reports) == 1, reports
    return reports[0]


class TestMonitorDecorator:
    def test_bare_decorator_keeps_name_signature_and_doc(self) -> None:
        def handler(event: dict, context: Any) -> dict:
            """Handle orders."""
            return {}

        wrapped = lambdascope.monitor(handler)
        assert wrapped.__name__ == "handler"
        assert wrapped.__doc__ == "Handle orders."
        assert inspect.signature(wrapped) == inspect.signature(handler)

    def test_decorator_with_options(self, validate_report: Any) -> None:
        @lambdascope.monitor(service="orders", sample_rate=1.0)
        def handler(event: Any, context: Any) -> str:
            return "done"

        with capture_reports() as reports:
            assert handler({}, fake_context()) == "done"
        report = validate_report(one(reports))
        assert report["function"]["service"] == "orders"

    def test_returns_exactly_the_handlers_object(self) -> None:
        sentinel = {"statusCode": 200, "body": "x"}

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> dict:
            return sentinel

        with capture_reports():
            result = handler({}, fake_context())
        assert result is sentinel
        assert result == {"statusCode": 200, "body": "x"}

    def test_reraises_the_same_exception_object(self, validate_report: Any) -> None:
        boom = KeyError("missing")

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            raise boom

        with capture_reports() as reports, pytest.raises(KeyError) as info:
            handler({}, fake_context())
        assert info.value is boom
        report = validate_report(one(reports))
        assert report["invocation"]["status"] == "error"
        assert report["error"]["type"] == "KeyError"
        assert report["error"]["message"] == "'missing'"
        last = report["error"]["stack"][-1]
        assert last["function"] == "handler" and last["file"] == __file__

    def test_error_stack_is_outermost_first(self) -> None:
        def inner() -> None:
            raise ValueError("deep")

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            inner()

        with capture_reports() as reports, pytest.raises(ValueError):
            handler({}, fake_context())
        names = [f["function"] for f in one(reports)["error"]["stack"]]
        assert names == ["handler", "inner"]

    def test_async_handler(self, validate_report: Any) -> None:
        @lambdascope.monitor
        async def handler(event: Any, context: Any) -> int:
            await asyncio.sleep(0)
            with lambdascope.span("inside"):
                await asyncio.sleep(0)
            return 7

        assert inspect.iscoroutinefunction(handler)
        with capture_reports() as reports:
            assert asyncio.run(handler({}, fake_context())) == 7
        report = validate_report(one(reports))
        assert [s["name"] for s in report["spans"]][1:] == ["inside"]

    def test_async_handler_error_propagates(self) -> None:
        class Boom(Exception):
            pass

        err = Boom()

        @lambdascope.monitor
        async def handler(event: Any, context: Any) -> None:
            raise err

        with capture_reports() as reports, pytest.raises(Boom) as info:
            asyncio.run(handler({}, fake_context()))
        assert info.value is err
        assert one(reports)["invocation"]["status"] == "error"

    def test_decorating_twice_monitors_once(self) -> None:
        @lambdascope.monitor
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> int:
            return 1

        with capture_reports() as reports:
            handler({}, fake_context())
        assert len(reports) == 1

    @pytest.mark.parametrize("order", ["ours-outside", "ours-inside"])
    def test_stacks_with_other_decorators(self, order: str) -> None:
        calls: list[str] = []

        def other(fn: Any) -> Any:  # shaped like Powertools / Sentry wrappers
            @functools.wraps(fn)
            def wrapper(event: Any, context: Any) -> Any:
                calls.append("other")
                return fn(event, context)

            return wrapper

        def handler(event: Any, context: Any) -> str:
            return "ok"

        wrapped = (
            lambdascope.monitor(other(handler))
            if order == "ours-outside"
            else other(lambdascope.monitor(handler))
        )
        with capture_reports() as reports:
            assert wrapped({}, fake_context()) == "ok"
        assert calls == ["other"]
        assert len(reports) == 1

    def test_hidden_double_monitoring_still_reports_once(self) -> None:
        inner = lambdascope.monitor(lambda event, context: "x")

        def opaque(event: Any, context: Any) -> Any:  # no __wrapped__: the marker is hidden
            return inner(event, context)

        outer = lambdascope.monitor(opaque)
        with capture_reports() as reports:
            assert outer({}, fake_context()) == "x"
        assert len(reports) == 1

    def test_disabled_returns_the_handler_itself(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LAMBDASCOPE_DISABLED", "true")

        def handler(event: Any, context: Any) -> int:
            return 1

        assert lambdascope.monitor(handler) is handler

    def test_context_may_be_keyword_or_missing(self) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any = None) -> int:
            return 2

        with capture_reports() as reports:
            assert handler(event={}, context=fake_context()) == 2
            assert handler({}) == 2
        assert len(reports) == 2
        assert reports[1]["invocation"]["request_id"]

    @pytest.mark.faults
    def test_agent_setup_failure_runs_handler_unmonitored(
        self, monkeypatch: pytest.MonkeyPatch, internal_errors: list
    ) -> None:
        from lambdascope import _monitor

        def broken(config: Any) -> Any:
            raise RuntimeError("setup exploded")

        monkeypatch.setattr(_monitor, "setup", broken)

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> str:
            return "still works"

        with capture_reports() as reports:
            assert handler({}, fake_context()) == "still works"
        assert reports == []
        assert internal_errors and internal_errors[0][0] == "begin"

    @pytest.mark.faults
    def test_report_failure_does_not_change_outcome(
        self, monkeypatch: pytest.MonkeyPatch, internal_errors: list, caplog: Any
    ) -> None:
        from lambdascope import _monitor

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("report exploded")

        monkeypatch.setattr(_monitor, "build_report", broken)
        boom = ValueError("user error")

        @lambdascope.monitor
        def ok_handler(event: Any, context: Any) -> int:
            return 5

        @lambdascope.monitor
        def bad_handler(event: Any, context: Any) -> int:
            raise boom

        with caplog.at_level(logging.WARNING, logger="lambdascope"), capture_reports():
            assert ok_handler({}, fake_context()) == 5
            with pytest.raises(ValueError) as info:
                bad_handler({}, fake_context())
            assert ok_handler({}, fake_context()) == 5
        assert info.value is boom
        assert lambdascope.current() is None
        logged = [r for r in caplog.records if r.name == "lambdascope"]
        assert len(logged) == 1, "an internal error is logged once per site"


class TestColdStart:
    def test_first_invocation_cold_then_warm(self, validate_report: Any) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            return None

        with capture_reports() as reports:
            for _ in range(3):
                handler({}, fake_context())
        flags = [r["invocation"]["cold_start"] for r in reports]
        assert flags == [True, False, False]
        first = validate_report(reports[0])
        assert first["invocation"]["init_duration_ms"] > 0
        assert first["agent"]["overhead"]["init_ms"] is not None
        assert all(r["invocation"]["init_duration_ms"] is None for r in reports[1:])
        assert all(r["agent"]["overhead"]["init_ms"] is None for r in reports[1:])

    def test_flag_cleared_when_first_invocation_raises(self) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            if event.get("fail"):
                raise RuntimeError("first fails")

        with capture_reports() as reports:
            with pytest.raises(RuntimeError):
                handler({"fail": True}, fake_context())
            handler({}, fake_context())
        assert [r["invocation"]["cold_start"] for r in reports] == [True, False]

    @pytest.mark.parametrize(
        "init_type", ["provisioned-concurrency", "snap-start", "lambda-managed-instances"]
    )
    def test_non_on_demand_first_invocation_is_not_cold(
        self, monkeypatch: pytest.MonkeyPatch, init_type: str
    ) -> None:
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", init_type)

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            return None

        with capture_reports() as reports:
            handler({}, fake_context())
        inv = reports[0]["invocation"]
        assert inv["cold_start"] is False
        assert inv["init_type"] == init_type
        assert inv["init_duration_ms"] is not None

    def test_first_invocation_long_after_init_is_proactive(self) -> None:
        from lambdascope import _state

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            return None

        _state.S.init_end -= 30.0  # init ended 30 s before the first request arrives
        with capture_reports() as reports:
            handler({}, fake_context())
        inv = reports[0]["invocation"]
        assert inv["cold_start"] is False
        assert inv["proactive_init"] is True
        assert inv["init_duration_ms"] is not None


class TestMetricsAndLabels:
    def test_metric_recorded_with_unit_and_dimensions(self, validate_report: Any) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            lambdascope.metric("orders", 3, "Count", region="eu", tier=2)

        with capture_reports() as reports:
            handler({}, fake_context())
        metric = validate_report(one(reports))["metrics"][0]
        assert metric["name"] == "orders" and metric["value"] == 3
        assert metric["unit"] == "Count"
        assert metric["dimensions"] == {"region": "eu", "tier": "2"}
        assert metric["timestamp_ms"] > 0

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (("", 1), "name"),
            (("m", "12"), "number"),
            (("m", None), "number"),
            (("m", True), "bool"),
            (("m", float("nan")), "finite"),
            (("m", float("inf")), "finite"),
            (("m", 10**400), "number"),
        ],
    )
    def test_bad_metric_input_raises_value_error(self, args: tuple, fragment: str) -> None:
        with pytest.raises(ValueError, match=fragment):
            lambdascope.metric(*args)

    def test_metric_at_import_time_goes_to_the_first_report_only(self) -> None:
        lambdascope.metric("loaded", 1, "Count")
        lambdascope.label("canary")

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            return None

        with capture_reports() as reports:
            handler({}, fake_context())
            handler({}, fake_context())
        assert [m["name"] for m in reports[0]["metrics"]] == ["loaded"]
        assert reports[0]["labels"] == ["canary"]
        assert reports[1]["metrics"] == [] and reports[1]["labels"] == []

    def test_labels_are_deduplicated_in_order(self) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            lambdascope.label("beta-user", "eu")
            lambdascope.label("beta-user")

        with capture_reports() as reports:
            handler({}, fake_context())
        assert one(reports)["labels"] == ["beta-user", "eu"]

    def test_unit_spellings_understood_and_unknown_units_never_raise(self, caplog: Any) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            lambdascope.metric("a", 1, "ms")
            lambdascope.metric("b", 1, "count")
            lambdascope.metric("c", 1, "Parsecs")
            lambdascope.metric("d", 1, "Parsecs")

        with caplog.at_level(logging.WARNING, logger="lambdascope"), capture_reports() as reports:
            handler({}, fake_context())
        units = [m["unit"] for m in one(reports)["metrics"]]
        assert units == ["Milliseconds", "Count", "None", "None"]
        assert len([r for r in caplog.records if "Parsecs" in r.getMessage()]) == 1

    def test_value_whose_float_conversion_fails_is_a_value_error(self) -> None:
        class Odd:
            def __float__(self) -> float:
                raise RuntimeError("no")

        with pytest.raises(ValueError, match="number"):
            lambdascope.metric("m", Odd())

    def test_metrics_from_a_worker_thread_reach_the_invocation(self) -> None:
        import threading

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            t = threading.Thread(target=lambda: (lambdascope.metric("from_thread", 1),
                                                 lambdascope.label("threaded")))
            t.start()
            t.join()

        with capture_reports() as reports:
            handler({}, fake_context())
            handler({}, fake_context())
        assert [m["name"] for m in reports[0]["metrics"]] == ["from_thread"]
        assert reports[0]["labels"] == ["threaded"]
        assert [m["name"] for m in reports[1]["metrics"]] == ["from_thread"]

    def test_long_labels_are_cut_then_deduplicated(self, validate_report: Any) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            lambdascope.label("x" * 300, "x" * 250)

        with capture_reports() as reports:
            handler({}, fake_context())
        assert validate_report(one(reports))["labels"] == ["x" * 200]

    def test_decimal_value_accepted(self) -> None:
        from decimal import Decimal

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            lambdascope.metric("price", Decimal("2.5"), "None")

        with capture_reports() as reports:
            handler({}, fake_context())
        assert one(reports)["metrics"][0]["value"] == 2.5


class TestSpans:
    def test_nested_spans_are_parented(self, validate_report: Any) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            with lambdascope.span("outer", step=1):
                with lambdascope.span("inner") as inner:
                    inner.set_attribute("rows", 10)

        with capture_reports() as reports:
            handler({}, fake_context())
        report = validate_report(one(reports))
        root, outer, inner = report["spans"]
        assert root["span_id"] == report["trace"]["span_id"]
        assert outer["parent_span_id"] == root["span_id"]
        assert inner["parent_span_id"] == outer["span_id"]
        assert outer["attributes"] == {"step": 1}
        assert inner["attributes"] == {"rows": 10}

    def test_span_as_decorator_records_error_and_propagates(self) -> None:
        @lambdascope.span("parse")
        def parse(text: str) -> int:
            return int(text)

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> int:
            parse("1")
            try:
                parse("x")
            except ValueError:
                return 0
            return 1

        with capture_reports() as reports:
            assert handler({}, fake_context()) == 0
        spans = one(reports)["spans"][1:]
        assert [s["status"] for s in spans] == ["ok", "error"]
        assert spans[1]["attributes"]["exception.type"] == "ValueError"
        assert parse.__name__ == "parse"

    def test_span_outside_an_invocation_is_harmless(self) -> None:
        with lambdascope.span("nothing") as s:
            pass
        assert s.span_id is None

    def test_span_cap_counts_dropped(self) -> None:
        @lambdascope.monitor(max_spans=5)
        def handler(event: Any, context: Any) -> None:
            for i in range(10):
                with lambdascope.span(f"s{i}"):
                    pass

        with capture_reports() as reports:
            handler({}, fake_context())
        report = one(reports)
        assert len(report["spans"]) == 5
        assert report["dropped_spans"] == 6

    def test_unsampled_invocation_has_no_spans_but_reports(self) -> None:
        @lambdascope.monitor(sample_rate=0)
        def handler(event: Any, context: Any) -> None:
            with lambdascope.span("x"):
                lambdascope.metric("m", 1)

        with capture_reports() as reports:
            handler({}, fake_context())
        report = one(reports)
        assert report["invocation"]["sampled"] is False
        assert report["spans"] == []
        assert [m["name"] for m in report["metrics"]] == ["m"]


class TestCurrent:
    def test_current_inside_and_outside(self) -> None:
        seen: dict[str, Any] = {}

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            inv = lambdascope.current()
            assert inv is not None
            seen.update(
                request_id=inv.request_id, cold=inv.cold_start, trace=inv.trace_id,
                elapsed=inv.elapsed_ms, remaining=inv.remaining_ms,
            )

        ctx = fake_context(timeout_s=5)
        with capture_reports() as reports:
            handler({}, ctx)
        assert lambdascope.current() is None
        assert seen["request_id"] == ctx.aws_request_id == reports[0]["invocation"]["request_id"]
        assert seen["cold"] is True
        assert seen["trace"] == reports[0]["trace"]["trace_id"]
        assert seen["elapsed"] >= 0
        assert 0 < seen["remaining"] <= 5000


class TestLogs:
    def test_log_records_attached(self) -> None:
        log = logging.getLogger("orders")

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            log.warning("charged %s", 42)

        with capture_reports() as reports:
            handler({}, fake_context())
        entry = one(reports)["logs"][0]
        assert entry["level"] == "WARNING" and entry["logger"] == "orders"
        assert entry["message"] == "charged 42"

    def test_logs_off(self) -> None:
        @lambdascope.monitor(capture_logs=False)
        def handler(event: Any, context: Any) -> None:
            logging.getLogger("orders").warning("x")

        with capture_reports() as reports:
            handler({}, fake_context())
        assert one(reports)["logs"] == []


class TestReportContent:
    def test_unserialisable_attribute_is_stringified(self) -> None:
        class Thing:
            def __str__(self) -> str:
                return "thing!"

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            with lambdascope.span("x", obj=Thing(), bad=float("nan")):
                pass

        with capture_reports() as reports:
            handler({}, fake_context())
        attrs = one(reports)["spans"][1]["attributes"]
        assert attrs == {"obj": "thing!", "bad": "nan"}

    def test_no_secret_from_environment_leaves(self, monkeypatch: pytest.MonkeyPatch) -> None:
        secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEXAMPLETOKEN")

        @lambdascope.monitor(capture_event=True)
        def handler(event: Any, context: Any) -> None:
            logging.getLogger("leaky").warning("key is %s", secret)
            with lambdascope.span("call", authorization="Bearer abc", url_full="x"):
                pass
            raise RuntimeError(f"failed with {secret}")

        event = {"headers": {"Authorization": "Bearer top", "Cookie": "sid=1"}, "password": "pw"}
        with capture_reports() as reports, pytest.raises(RuntimeError):
            handler(event, fake_context())
        text = str(reports)
        for leaked in (secret, "IQoJb3JpZ2luX2VjEXAMPLETOKEN", "Bearer top", "sid=1", "Bearer abc"):
            assert leaked not in text
        assert one(reports)["event"]["headers"]["Authorization"] == "[REDACTED]"

    def test_sqs_batch_failures_counted(self) -> None:
        event = {
            "Records": [
                {"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
                 "messageId": str(i)}
                for i in range(3)
            ]
        }

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> dict:
            return {"batchItemFailures": [{"itemIdentifier": "1"}]}

        with capture_reports() as reports:
            result = handler(event, fake_context())
        assert result == {"batchItemFailures": [{"itemIdentifier": "1"}]}
        inv = one(reports)["invocation"]
        assert inv["trigger"] == {"type": "sqs", "source": "arn:aws:sqs:us-east-1:1:q"}
        assert inv["batch"] == {"size": 3, "failed": 1}
        assert one(reports)["spans"][0]["kind"] == "consumer"

    def test_context_fields(self) -> None:
        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            return None

        ctx = fake_context(function_name="orders", region="eu-west-1", tenant_id="t-1",
                           timeout_s=2)
        with capture_reports() as reports:
            handler({}, ctx)
        report = one(reports)
        assert report["function"]["arn"] == ctx.invoked_function_arn
        assert report["function"]["region"] == "eu-west-1"
        assert report["invocation"]["tenant_id"] == "t-1"
        assert 0 < report["invocation"]["timeout_ms"] <= 2000


class TestFlush:
    def test_flush_with_nothing_pending(self) -> None:
        assert lambdascope.flush() is True


class TestSecretsInFreeText:
    def test_log_lines_error_messages_and_events_are_scrubbed(
        self, monkeypatch: pytest.MonkeyPatch, validate_report: Any
    ) -> None:
        monkeypatch.setenv("STRIPE_KEY", "sk_live_51HxYzAbCdEfGh")
        monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2")
        log = logging.getLogger("app")

        @lambdascope.monitor(capture_event=True)
        def handler(event: Any, context: Any) -> None:
            log.warning("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAX")
            log.warning("connecting to postgres://admin:pw-in-url@db:5432/app")
            log.warning("headers: Authorization: Bearer eyJ.secret.jwt, password=pw-in-text")
            log.warning("x" * 2040 + "hunter2hunter2")  # a secret across the length cut
            raise RuntimeError("charge failed with key sk_live_51HxYzAbCdEfGh")

        event = {
            "rawQueryString": "code=oauth-code-123&state=s",
            "queryStringParameters": {"code": "oauth-code-123"},
            "body": '{"user": "bob", "password": "pw-in-body"}',
        }
        with capture_reports() as reports, pytest.raises(RuntimeError):
            handler(event, fake_context())
        report = validate_report(one(reports))
        text = json.dumps(report)
        for leaked in ("deadbeef", "AKIAX", "pw-in-url", "eyJ.secret.jwt", "pw-in-text",
                       "hunter2", "sk_live_51HxYzAbCdEfGh", "oauth-code-123", "pw-in-body"):
            assert leaked not in text, leaked
        assert "bob" in report["event"]["body"]  # only the secret goes

    def test_a_secret_reference_does_not_blank_out_the_report(
        self, monkeypatch: pytest.MonkeyPatch, validate_report: Any
    ) -> None:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
        monkeypatch.setenv("DB_SECRET_NAME", "orders-api")  # names a secret, is not one
        monkeypatch.setenv("SESSION_TABLE", "direct")

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            return None

        with capture_reports() as reports:
            handler({}, fake_context(function_name="orders-api"))
        report = validate_report(one(reports))
        assert report["function"]["name"] == "orders-api"
        assert report["invocation"]["trigger"]["type"] == "direct"

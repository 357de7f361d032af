"""Trace propagation in (SPEC section 5): the invocation continues the trace its event carries.

Realistic sample events (tests/events/propagation_*.json) go through a monitored handler; the
report's ``trace`` and invocation span say which trace it continued and which span called it.
The X-Ray helpers (``parse_xray`` / ``xray_header``) are checked as pure functions.
"""

from __future__ import annotations

import copy
import json
import pathlib
import time
from typing import Any

import pytest

import lambdascope
from lambdascope._propagation import extract, parse_traceparent, parse_xray, xray_header
from lambdascope.testing import capture_reports, fake_context

EVENTS = pathlib.Path(__file__).resolve().parents[1] / "events"

ENV_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
ENV_HEADER = f"Root={ENV_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
ENV_TRACE_ID = "5759e988bd862e3fe1be46a994272793"


def load(name: str) -> Any:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _no_runtime_trace_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside Lambda there is no ``_X_AMZN_TRACE_ID`` unless a test sets one."""
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)


def invoke(event: Any, validate: Any) -> dict[str, Any]:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        return None

    with capture_reports() as reports:
        handler(event, fake_context())
    assert len(reports) == 1, reports
    return validate(reports[0])


def root_span(report: dict[str, Any]) -> dict[str, Any]:
    (root,) = [s for s in report["spans"] if s["span_id"] == report["trace"]["span_id"]]
    return root


def assert_continues(report: dict[str, Any], trace_id: str, parent_span_id: str | None) -> None:
    assert report["trace"]["trace_id"] == trace_id, report["trace"]
    assert report["trace"]["parent_span_id"] == parent_span_id, report["trace"]
    root = root_span(report)
    assert root["parent_span_id"] == parent_span_id, root
    assert report["invocation"]["sampled"] is True


def sqs_message_attribute(value: str) -> dict[str, Any]:
    return {"stringValue": value, "stringListValues": [], "binaryListValues": [],
            "dataType": "String"}  # fmt: skip


# -- W3C traceparent in HTTP headers --------------------------------------------------------


def test_api_gateway_v1_headers_traceparent_is_continued(validate_report: Any) -> None:
    report = invoke(load("propagation_apigw_rest"), validate_report)
    assert_continues(report, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert root_span(report)["attributes"]["lambdascope.parent.format"] == "w3c"


def test_api_gateway_v1_multi_value_headers_traceparent_is_continued(
    validate_report: Any,
) -> None:
    # An API Gateway REST proxy event where only multiValueHeaders carries the header (as with an
    # ALB target group that has multi-value headers turned on, "headers" is then absent).
    event = load("propagation_apigw_rest")
    event["headers"] = None
    report = invoke(event, validate_report)
    assert_continues(report, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")


def test_api_gateway_v2_traceparent_is_continued(validate_report: Any) -> None:
    report = invoke(load("propagation_apigw_http"), validate_report)
    assert_continues(report, "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")


def test_alb_traceparent_is_continued(validate_report: Any) -> None:
    report = invoke(load("propagation_alb"), validate_report)
    assert_continues(report, "a3ce929d0e0e47364bf92f3577b34da6", "53995c3f42cd8ad8")


def test_function_url_traceparent_is_continued(validate_report: Any) -> None:
    report = invoke(load("propagation_function_url"), validate_report)
    assert_continues(report, "e1c9a7f3b5d2460880a1b2c3d4e5f607", "1f2e3d4c5b6a7980")


@pytest.mark.parametrize("name", ["traceparent", "Traceparent", "TRACEPARENT", "TraceParent"])
def test_traceparent_header_name_is_case_insensitive(name: str, validate_report: Any) -> None:
    event = load("propagation_function_url")
    value = event["headers"].pop("traceparent")
    event["headers"][name] = value
    report = invoke(event, validate_report)
    assert_continues(report, "e1c9a7f3b5d2460880a1b2c3d4e5f607", "1f2e3d4c5b6a7980")


# -- message attributes -----------------------------------------------------------------------


def test_sqs_message_attribute_traceparent_is_continued(validate_report: Any) -> None:
    report = invoke(load("propagation_sqs"), validate_report)
    assert_continues(report, "7c2e5d1f9a8b4c3d2e1f0a9b8c7d6e5f", "a1b2c3d4e5f60718")


def test_sns_message_attribute_traceparent_is_continued(validate_report: Any) -> None:
    report = invoke(load("propagation_sns"), validate_report)
    assert_continues(report, "5d4c3b2a19087f6e5d4c3b2a19087f6e", "9f8e7d6c5b4a3921")


def test_sns_delivered_through_sqs_is_continued(validate_report: Any) -> None:
    # The SQS body is SNS's JSON notification; its MessageAttributes carry the traceparent.
    report = invoke(load("propagation_sns_in_sqs"), validate_report)
    assert_continues(report, "6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b", "0f1e2d3c4b5a6978")


# -- X-Ray ------------------------------------------------------------------------------------


def test_sqs_aws_trace_header_is_continued(validate_report: Any) -> None:
    report = invoke(load("propagation_sqs_xray"), validate_report)
    assert_continues(report, ENV_TRACE_ID, "53995c3f42cd8ad8")
    assert root_span(report)["attributes"]["lambdascope.parent.format"] == "xray"


def test_lambda_runtime_trace_header_is_continued(
    monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ENV_ROOT};Parent=0123456789abcdef;Sampled=1")
    report = invoke(load("direct"), validate_report)
    # The X-Ray root without its dashes is the W3C trace id.
    assert_continues(report, ENV_TRACE_ID, "0123456789abcdef")


@pytest.mark.parametrize(
    ("event_file", "trace_id"),
    [
        ("propagation_apigw_rest", "0af7651916cd43dd8448eb211c80319c"),
        ("propagation_apigw_http", "5b8efff798038103d269b633813fc60c"),
        ("propagation_alb", "a3ce929d0e0e47364bf92f3577b34da6"),
        ("propagation_function_url", "e1c9a7f3b5d2460880a1b2c3d4e5f607"),
        ("propagation_sqs", "7c2e5d1f9a8b4c3d2e1f0a9b8c7d6e5f"),
        ("propagation_sns", "5d4c3b2a19087f6e5d4c3b2a19087f6e"),
    ],
)
def test_w3c_wins_over_xray(
    event_file: str, trace_id: str, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    # Lambda always sets _X_AMZN_TRACE_ID; HTTP events also carry X-Amzn-Trace-Id and the SQS
    # record an AWSTraceHeader of yet another trace.
    monkeypatch.setenv("_X_AMZN_TRACE_ID", ENV_HEADER)
    report = invoke(load(event_file), validate_report)
    assert report["trace"]["trace_id"] == trace_id
    assert root_span(report)["attributes"]["lambdascope.parent.format"] == "w3c"


# -- invalid and unsampled -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # v00 is 55 chars
        "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",  # not hex
        "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",  # trace id too short
        "garbage",
        "",
    ],
)
def test_invalid_traceparent_is_ignored(value: str, validate_report: Any) -> None:
    assert parse_traceparent(value) is None
    event = load("propagation_function_url")
    event["headers"]["traceparent"] = value
    report = invoke(event, validate_report)
    assert report["trace"]["trace_id"] != "0af7651916cd43dd8448eb211c80319c"
    assert report["trace"]["trace_id"] != "0" * 32
    assert report["trace"]["parent_span_id"] is None
    assert root_span(report)["parent_span_id"] is None
    assert "lambdascope.parent.format" not in root_span(report)["attributes"]


def test_invalid_traceparent_falls_back_to_xray(
    monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", ENV_HEADER)
    event = load("propagation_function_url")
    event["headers"]["traceparent"] = "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    report = invoke(event, validate_report)
    assert_continues(report, ENV_TRACE_ID, "53995c3f42cd8ad8")


def test_unsampled_traceparent_makes_an_unsampled_invocation(validate_report: Any) -> None:
    event = load("propagation_apigw_http")
    event["headers"]["traceparent"] = "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-00"

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        with lambdascope.span("work"):
            pass

    with capture_reports() as reports:
        handler(event, fake_context())
    (report,) = reports
    validate_report(report)
    assert report["invocation"]["sampled"] is False
    assert report["spans"] == []
    # Still the caller's trace: logs and errors of this invocation belong to it.
    assert report["trace"]["trace_id"] == "5b8efff798038103d269b633813fc60c"


# -- batches -----------------------------------------------------------------------------------


def _with_ages(event: dict[str, Any], ages_ms: list[float]) -> dict[str, Any]:
    """The batch with each record sent ``age`` ms ago."""
    event = copy.deepcopy(event)
    now_ms = time.time() * 1000.0
    for record, age in zip(event["Records"], ages_ms, strict=True):
        record["attributes"]["SentTimestamp"] = str(int(now_ms - age))
    return event


def test_batch_from_three_traces_links_every_record(validate_report: Any) -> None:
    ages = [5000.0, 3000.0, 1000.0]
    event = _with_ages(load("propagation_sqs_batch"), ages)
    report = invoke(event, validate_report)
    producers = [
        (r["messageId"], r["messageAttributes"]["traceparent"]["stringValue"].split("-"))
        for r in event["Records"]
    ]
    # A new trace: none of the producers' (they disagree), and no parent.
    assert report["trace"]["trace_id"] not in {p[1][1] for p in producers}
    assert report["trace"]["parent_span_id"] is None
    root = root_span(report)
    assert root["parent_span_id"] is None
    links = root.get("links")
    assert links is not None and len(links) == 3, links
    for link, (message_id, parts), age in zip(links, producers, ages, strict=True):
        assert link["trace_id"] == parts[1]
        assert link["span_id"] == parts[2]
        assert link["attributes"]["messaging.message.id"] == message_id
        measured = link["attributes"]["lambdascope.message.age_ms"]
        assert age - 5.0 <= measured <= age + 2000.0, (age, measured)
    oldest = root["attributes"]["lambdascope.batch.oldest_age_ms"]
    assert 5000.0 - 5.0 <= oldest <= 7000.0
    assert root["attributes"]["messaging.batch.message_count"] == 3


def test_batch_from_one_trace_continues_it(validate_report: Any) -> None:
    event = _with_ages(load("propagation_sqs_batch_one_trace"), [3000.0, 2000.0, 1000.0])
    report = invoke(event, validate_report)
    span_ids = [
        r["messageAttributes"]["traceparent"]["stringValue"].split("-")[2] for r in event["Records"]
    ]
    assert report["trace"]["trace_id"] == "44444444444444444444444444444444"
    assert report["trace"]["parent_span_id"] in span_ids
    root = root_span(report)
    assert root["parent_span_id"] == report["trace"]["parent_span_id"]
    # Still one link per record, never only the first's.
    assert [link["span_id"] for link in root["links"]] == span_ids


def test_batch_records_without_context_are_not_linked(validate_report: Any) -> None:
    event = load("propagation_sqs_batch")
    event["Records"][1]["messageAttributes"] = {}
    event = _with_ages(event, [300.0, 200.0, 100.0])
    report = invoke(event, validate_report)
    links = root_span(report)["links"]
    assert [link["trace_id"] for link in links] == ["1" * 32, "3" * 32]


def test_batch_links_stop_at_the_schema_maximum(validate_report: Any) -> None:
    template = load("propagation_sqs_batch")["Records"][0]
    records = []
    for i in range(120):
        record = copy.deepcopy(template)
        record["messageId"] = f"msg-{i}"
        record["messageAttributes"]["traceparent"] = sqs_message_attribute(
            f"00-{i + 1:032x}-{i + 1:016x}-01"
        )
        records.append(record)
    report = invoke({"Records": records}, validate_report)
    assert len(root_span(report)["links"]) == 100


def test_extract_links_use_the_given_clock() -> None:
    event = load("propagation_sqs_batch")
    sent = [int(r["attributes"]["SentTimestamp"]) for r in event["Records"]]
    now_ms = float(sent[-1] + 250)
    found, links, oldest = extract(event, environ={}, now_ms=now_ms)
    assert found is None
    assert [link["attributes"]["lambdascope.message.age_ms"] for link in links] == [
        now_ms - s for s in sent
    ]
    assert oldest == now_ms - sent[0]


# -- X-Ray helpers -----------------------------------------------------------------------------


def test_parse_xray_reads_root_parent_and_sampled() -> None:
    ctx = parse_xray(ENV_HEADER)
    assert ctx is not None
    assert (ctx.trace_id, ctx.span_id, ctx.sampled, ctx.source) == (
        ENV_TRACE_ID,
        "53995c3f42cd8ad8",
        True,
        "xray",
    )
    lone = parse_xray(f"Root={ENV_ROOT}")
    assert lone is not None and (lone.span_id, lone.sampled) == (None, None)
    for bad in (
        None,
        "",
        "Parent=53995c3f42cd8ad8",
        "Root=2-5759e988-bd862e3fe1be46a994272793",
        "Root=1-5759e988-bd862e3f",
        "Root=1-zzzzzzzz-bd862e3fe1be46a994272793",
    ):
        assert parse_xray(bad) is None, bad


def test_xray_header_round_trips_without_a_runtime_header() -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    for sampled in (True, False):
        header = xray_header(None, trace_id, span_id, sampled)
        assert header == (
            f"Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent={span_id};Sampled={int(sampled)}"
        )
        ctx = parse_xray(header)
        assert ctx is not None
        assert (ctx.trace_id, ctx.span_id, ctx.sampled) == (trace_id, span_id, sampled)


def _fields(header: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) for part in header.split(";")]  # type: ignore[misc]


def test_xray_header_keeps_root_and_lineage_and_replaces_parent() -> None:
    runtime = f"Root={ENV_ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1"
    header = xray_header(runtime, "ffffffffffffffffffffffffffffffff", "1234567890abcdef", False)
    assert header is not None
    fields = _fields(header)
    names = [name for name, _ in fields]
    assert sorted(names) == ["Lineage", "Parent", "Root", "Sampled"], header
    values = dict(fields)
    assert values["Root"] == ENV_ROOT  # the runtime's root, not the span's trace id
    assert values["Lineage"] == "a87bd80c:1"
    assert values["Parent"] == "1234567890abcdef"
    assert values["Sampled"] == "1"  # the runtime's decision stands
    ctx = parse_xray(header)
    assert ctx is not None and (ctx.trace_id, ctx.span_id) == (ENV_TRACE_ID, "1234567890abcdef")


def test_xray_header_adds_parent_when_the_runtime_header_has_none() -> None:
    runtime = f"Root={ENV_ROOT};Sampled=0;Lineage=a87bd80c:2"
    header = xray_header(runtime, ENV_TRACE_ID, "1234567890abcdef", True)
    assert header is not None
    values = dict(_fields(header))
    assert values == {"Root": ENV_ROOT, "Parent": "1234567890abcdef", "Sampled": "0",
                      "Lineage": "a87bd80c:2"}  # fmt: skip

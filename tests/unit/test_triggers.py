"""_triggers: what invoked the function, from the shape of real sample events (tests/events/)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from lambdascope._triggers import Trigger, batch_failures, detect

EVENTS = pathlib.Path(__file__).resolve().parents[1] / "events"


def load(name: str) -> Any:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("event_file", "expected"),
    [
        ("apigw_rest", Trigger("api_gateway", "GET /orders/{id}", None)),
        ("apigw_http", Trigger("api_gateway_v2", "POST /orders", None)),
        (
            "alb",
            Trigger(
                "alb",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                "targetgroup/orders-tg/6d0ecf831eec9f09",
                None,
            ),
        ),
        ("function_url", Trigger("function_url", "abcdefghijklmnopqrstuvwxyz0123", None)),
        ("sqs", Trigger("sqs", "arn:aws:sqs:us-east-1:123456789012:orders-queue", 2)),
        ("sns", Trigger("sns", "arn:aws:sns:us-east-1:123456789012:order-events", 1)),
        ("s3_put", Trigger("s3", "arn:aws:s3:::acme-uploads", 1)),
        (
            "dynamodb_stream",
            Trigger(
                "dynamodb",
                "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/"
                "2026-03-01T00:00:00.000",
                3,
            ),
        ),
        (
            "kinesis",
            Trigger("kinesis", "arn:aws:kinesis:us-east-1:123456789012:stream/telemetry", 1),
        ),
        ("eventbridge", Trigger("eventbridge", "com.acme.orders", None)),
        (
            "schedule",
            Trigger("schedule", "arn:aws:events:us-east-1:123456789012:rule/nightly-cleanup", None),
        ),
        ("cloudwatch_logs", Trigger("cloudwatch_logs", None, None)),
        ("warmup", Trigger("warmup", "serverless-plugin-warmup", None)),
        ("direct", Trigger("direct", None, None)),
    ],
)
def test_detect_classifies_sample_event(event_file: str, expected: Trigger) -> None:
    """GIVEN a realistic AWS event WHEN detected THEN its type, source and batch size are known."""
    assert detect(load(event_file)) == expected


def test_every_sample_event_is_covered() -> None:
    """The 14 trigger types of the contract each have a sample event."""
    types = {detect(json.loads(p.read_text())).type for p in EVENTS.glob("*.json")}
    assert types == {
        "api_gateway", "api_gateway_v2", "alb", "function_url", "sqs", "sns", "s3",
        "dynamodb", "kinesis", "eventbridge", "schedule", "cloudwatch_logs", "warmup", "direct",
    }  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [None, [], [1, 2, 3], "hello", 42, b"raw", {}, {"Records": []}, {"Records": ["x"]}],
    ids=[
        "none",
        "empty-list",
        "list",
        "str",
        "int",
        "bytes",
        "empty-dict",
        "no-records",
        "non-dict-record",
    ],
)
def test_non_aws_payloads_are_direct(event: Any) -> None:
    """Anything that is not an AWS event shape is a direct invocation."""
    assert detect(event) == Trigger("direct", None, None)


def test_unknown_record_source_is_direct() -> None:
    event = {"Records": [{"eventSource": "aws:mq", "eventSourceARN": "arn:aws:mq:..."}]}
    assert detect(event).type == "direct"


def test_s3_bucket_arn_derived_from_name_when_missing() -> None:
    event = load("s3_put")
    del event["Records"][0]["s3"]["bucket"]["arn"]
    assert detect(event).source == "arn:aws:s3:::acme-uploads"


def test_sns_source_falls_back_to_subscription_arn() -> None:
    event = load("sns")
    del event["Records"][0]["Sns"]["TopicArn"]
    assert detect(event).source.startswith("arn:aws:sns:us-east-1:123456789012:order-events:")


def test_apigw_v1_payload_of_http_api_is_api_gateway() -> None:
    """An HTTP API with payload format 1.0 sends the REST shape (version "1.0")."""
    event = load("apigw_rest")
    event["version"] = "1.0"
    assert detect(event).type == "api_gateway"


def test_eventbridge_event_from_aws_service_is_eventbridge_not_schedule() -> None:
    event = load("eventbridge")
    event["source"], event["detail-type"] = "aws.ec2", "EC2 Instance State-change Notification"
    assert detect(event) == Trigger("eventbridge", "aws.ec2", None)


@pytest.mark.parametrize(
    ("event", "source"),
    [
        ({"source": "serverless-plugin-warmup"}, "serverless-plugin-warmup"),
        ({"source": "lambda-warmer"}, "lambda-warmer"),
        ({"warmer": True, "concurrency": 3}, None),
    ],
)
def test_warmup_pings(event: dict[str, Any], source: str | None) -> None:
    assert detect(event) == Trigger("warmup", source, None)


def test_direct_payload_with_a_source_key_is_not_warmup() -> None:
    assert detect({"source": "backoffice", "order_id": 1}).type == "direct"


def test_detect_does_not_modify_the_event() -> None:
    event = load("sqs")
    before = json.dumps(event, sort_keys=True)
    detect(event)
    assert json.dumps(event, sort_keys=True) == before


# -- batch_failures ---------------------------------------------------------------------------

FAILURES = {"batchItemFailures": [{"itemIdentifier": "059f36b4"}, {"itemIdentifier": "2e1424d4"}]}


@pytest.mark.parametrize(
    ("trigger_type", "result", "expected"),
    [
        ("sqs", FAILURES, 2),
        ("kinesis", FAILURES, 2),
        ("dynamodb", FAILURES, 2),
        ("sqs", {"batchItemFailures": []}, 0),
        ("sqs", None, 0),
        ("sqs", "ok", 0),
        ("sqs", {"statusCode": 200}, 0),
        ("sqs", {"batchItemFailures": "all"}, 0),
        ("sns", FAILURES, 0),
        ("api_gateway", FAILURES, 0),
        ("direct", FAILURES, 0),
    ],
)
def test_batch_failures(trigger_type: str, result: Any, expected: int) -> None:
    """Only batch triggers' partial batch responses count as failed items."""
    assert batch_failures(trigger_type, result) == expected


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        ({"statusCode": 200, "body": "ok"}, 200, "ok"),
        ({"statusCode": 404}, 404, "ok"),  # a client error is not the server span's error
        ({"statusCode": 503}, 503, "error"),
        ({"body": "no status"}, None, "ok"),
        ("plain string", None, "ok"),
    ],
)
def test_http_invocation_span_carries_the_answers_status(
    answer: Any, code: Any, status: str, validate_report: Any
) -> None:
    import lambdascope
    from lambdascope.testing import capture_reports, fake_context

    event = json.loads((EVENTS / "apigw_http.json").read_text())

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> Any:
        return answer

    with capture_reports() as reports:
        assert handler(event, fake_context()) == answer
    (report,) = reports
    validate_report(report)
    root = report["spans"][0]
    assert root["kind"] == "server"
    assert root["attributes"].get("http.response.status_code") == code
    assert root["status"] == status
    assert report["invocation"]["status"] == "ok"

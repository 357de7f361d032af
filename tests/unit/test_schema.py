"""The report schema (src/lambdascope/schema/lambdascope-1.json) against real reports.

Every report here is produced by a ``@lambdascope.monitor``-decorated handler and captured as a
collector receives it. The negative tests make sure the schema is not vacuous.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import logging
import pathlib
from typing import Any

import jsonschema
import pytest

import lambdascope
from lambdascope.testing import capture_reports, fake_context

EVENTS = pathlib.Path(__file__).resolve().parents[1] / "events"
log = logging.getLogger("orders")


def event(name: str) -> Any:
    return json.loads((EVENTS / f"{name}.json").read_text())


def run(handler: Any, evt: Any = None, **ctx: Any) -> dict[str, Any]:
    """Invoke ``handler`` once; return its one report (swallowing the handler's exception)."""
    with capture_reports() as reports:
        try:
            handler({} if evt is None else evt, fake_context(**ctx))
        except Exception:
            pass
    assert len(reports) == 1, reports
    return reports[0]


@pytest.fixture
def ok_report() -> dict[str, Any]:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return {"ok": True}

    return run(handler)


# -- the schema document ------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12(report_schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(report_schema)
    assert report_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert report_schema["$id"] == "https://lambdascope.dev/schema/lambdascope-1.json"
    assert report_schema["properties"]["schema"] == {
        "description": "Report format identifier.",
        "const": "lambdascope/1",
    }


def test_schema_ships_with_the_package(report_schema: dict[str, Any]) -> None:
    shipped = importlib.resources.files("lambdascope") / "schema" / "lambdascope-1.json"
    assert json.loads(shipped.read_text()) == report_schema


def test_required_top_level_fields(report_schema: dict[str, Any]) -> None:
    assert set(report_schema["required"]) == {
        "schema", "agent", "function", "invocation", "error", "resources", "metrics", "labels",
        "trace", "spans", "dropped_spans", "logs",
    }  # fmt: skip
    optional = set(report_schema["properties"]) - set(report_schema["required"])
    assert optional == {"event", "profile", "diagnostics", "dropped_reports"}


def _described(node: Any, path: str, missing: list[str]) -> None:
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if "description" not in sub:
                missing.append(f"{path}.{name}")
        for key, sub in node.items():
            if key != "$defs":
                _described(sub, f"{path}.{key}" if key != "properties" else path, missing)
    elif isinstance(node, list):
        for item in node:
            _described(item, path, missing)


def test_every_field_has_a_description(report_schema: dict[str, Any]) -> None:
    missing: list[str] = []
    _described(report_schema, "$", missing)
    assert missing == []


@pytest.mark.parametrize(
    ("path", "values"),
    [
        (("invocation", "status"), ["ok", "error", "timeout", "crashed"]),
        (
            ("invocation", "init_type"),
            ["on-demand", "provisioned-concurrency", "snap-start", "lambda-managed-instances"],
        ),
        (("function", "architecture"), ["x86_64", "arm64"]),
    ],
)
def test_enums(report_schema: dict[str, Any], path: tuple[str, str], values: list[str]) -> None:
    node = report_schema["properties"][path[0]]["properties"][path[1]]
    # init_type names the known values as examples: a type Lambda adds later must still pass
    enum = node["enum"] if "enum" in node else node["examples"]
    assert enum == values


def test_unknown_future_init_type_passes_through(
    ok_report: dict[str, Any], validate_report: Any
) -> None:
    """A type Lambda adds later must not make every report of such sandboxes invalid."""
    report = json.loads(json.dumps(ok_report))
    report["invocation"]["init_type"] = "some-future-type"
    validate_report(report)
    report["invocation"]["init_type"] = "Not A Type!"
    with pytest.raises(AssertionError):
        validate_report(report)


# -- real reports validate ----------------------------------------------------------------------


def test_ok_report_validates(ok_report: dict[str, Any], validate_report: Any) -> None:
    validate_report(ok_report)
    assert ok_report["invocation"]["status"] == "ok"
    assert ok_report["error"] is None
    assert ok_report["invocation"]["cold_start"] is True
    assert ok_report["agent"]["overhead"]["init_ms"] is not None


def test_warm_report_validates(validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        return None

    run(handler)
    warm = validate_report(run(handler))
    assert warm["invocation"]["cold_start"] is False
    assert warm["invocation"]["init_duration_ms"] is None
    assert warm["agent"]["overhead"]["init_ms"] is None


def test_error_report_validates(validate_report: Any) -> None:
    def parse(order: Any) -> int:
        return int(order["qty"])

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> int:
        return parse(event)

    report = validate_report(run(handler, {"qty": "two"}))
    assert report["invocation"]["status"] == "error"
    assert report["error"]["type"] == "ValueError"
    assert [f["function"] for f in report["error"]["stack"]][-2:] == ["handler", "parse"]
    assert report["spans"][0]["status"] == "error"


def test_metrics_labels_spans_and_logs_validate(validate_report: Any) -> None:
    @lambdascope.monitor(service="orders")
    def handler(event: Any, context: Any) -> str:
        lambdascope.metric("orders_placed", 3, "Count", region="eu-west-1", tier=2)
        lambdascope.metric("basket_value", 59.9, "None")
        lambdascope.metric("payload", 1024, "Bytes", api_key="must-not-leak")
        lambdascope.label("beta-user", "eu")
        with lambdascope.span("load", table="orders") as outer:
            outer.set_attribute("rows", 10)
            with lambdascope.span("parse", **{"url.full": "https://u:p@x.example.com/a?k=v"}):
                log.warning("parsing %d rows", 10)
        try:
            with lambdascope.span("charge"):
                raise RuntimeError("card declined")
        except RuntimeError:
            log.exception("charge failed")
        return "done"

    report = validate_report(run(handler))
    assert [m["name"] for m in report["metrics"]] == ["orders_placed", "basket_value", "payload"]
    assert report["metrics"][0]["dimensions"] == {"region": "eu-west-1", "tier": "2"}
    assert report["metrics"][2]["dimensions"] == {"api_key": "[REDACTED]"}
    assert report["labels"] == ["beta-user", "eu"]
    names = [s["name"] for s in report["spans"]]
    assert names[1:] == ["load", "parse", "charge"]
    assert {s["kind"] for s in report["spans"][1:]} == {"internal"}
    assert report["spans"][3]["status"] == "error"
    assert report["spans"][2]["attributes"]["url.full"] == "https://x.example.com/a?k=REDACTED"
    assert len(report["logs"]) == 2
    assert all("span_id" in entry for entry in report["logs"])


def test_sqs_batch_with_failures_validates(validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> dict[str, Any]:
        first = event["Records"][0]["messageId"]
        return {"batchItemFailures": [{"itemIdentifier": first}]}

    report = validate_report(run(handler, event("sqs")))
    inv = report["invocation"]
    assert inv["trigger"] == {
        "type": "sqs",
        "source": "arn:aws:sqs:us-east-1:123456789012:orders-queue",
    }
    assert inv["batch"] == {"size": 2, "failed": 1}
    assert report["spans"][0]["kind"] == "consumer"


@pytest.mark.parametrize(
    "name",
    ["apigw_rest", "apigw_http", "alb", "function_url"],
)
def test_http_trigger_validates(name: str, validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "{}"}

    report = validate_report(run(handler, event(name)))
    assert report["invocation"]["batch"] is None
    root = report["spans"][0]
    assert root["kind"] == "server"
    assert root["attributes"]["faas.trigger"] == "http"
    assert "http.request.method" in root["attributes"]


@pytest.mark.parametrize(
    "name",
    ["sns", "s3_put", "dynamodb_stream", "kinesis", "eventbridge", "schedule",
     "cloudwatch_logs", "warmup", "direct"],
)  # fmt: skip
def test_every_sample_trigger_validates(name: str, validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        return None

    validate_report(run(handler, event(name)))


def test_captured_event_validates(validate_report: Any) -> None:
    @lambdascope.monitor(capture_event=True)
    def handler(event: Any, context: Any) -> None:
        return None

    report = validate_report(run(handler, event("apigw_rest")))
    assert report["event"]["headers"]["Authorization"] == "[REDACTED]"


def test_unsampled_report_validates(validate_report: Any) -> None:
    @lambdascope.monitor(sample_rate=0)
    def handler(event: Any, context: Any) -> None:
        return None

    report = validate_report(run(handler))
    assert report["spans"] == []
    # The invocation span is not recorded, but its id is what downstream calls were given.
    assert report["trace"]["span_id"] is not None
    assert report["invocation"]["sampled"] is False


def test_report_with_tenant_and_lambda_environment_validates(
    monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders-api")
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/03/12/[7]abcdef")
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        return None

    report = validate_report(run(handler, tenant_id="tenant-42"))
    assert report["invocation"]["tenant_id"] == "tenant-42"
    assert report["invocation"]["init_type"] == "provisioned-concurrency"
    assert report["function"]["memory_limit_mb"] == 1024
    assert report["resources"]["memory_used_pct"] is not None


def test_handler_without_context_validates(validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any = None) -> None:
        return None

    with capture_reports() as reports:
        handler({})
    report = validate_report(reports[0])
    assert report["invocation"]["timeout_ms"] is None
    assert report["function"]["arn"] is None


def test_async_handler_report_validates(validate_report: Any) -> None:
    import asyncio

    @lambdascope.monitor
    async def handler(event: Any, context: Any) -> str:
        await asyncio.sleep(0)
        return "ok"

    with capture_reports() as reports:
        asyncio.run(handler({}, fake_context()))
    validate_report(reports[0])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("profile", {"interval_ms": 10, "samples": 3, "stacks": [
            {"frames": ["app.py:handler:10", "app.py:work:20"], "count": 2},
            {"frames": ["app.py:handler:10"], "count": 1}]}),
        ("profile", {"interval_ms": 10, "samples": 0, "stacks": []}),
        ("diagnostics", {"import_ms": 120.5, "slowest_imports": [["boto3", 80.1]],
                         "env_names": ["AWS_REGION"], "tmp_used_mb": 1.0}),
        ("dropped_reports", 3),
        ("event", ["any", "json", 1]),
        ("event", None),
    ],
)  # fmt: skip
def test_optional_fields_validate(
    ok_report: dict[str, Any], key: str, value: Any, validate_report: Any
) -> None:
    validate_report({**ok_report, key: value})


def test_fields_added_by_later_versions_are_allowed(
    ok_report: dict[str, Any], validate_report: Any
) -> None:
    report = copy.deepcopy(ok_report)
    report["agent"]["overhead"]["flush_ms"] = 1.5
    report["resources"]["sandbox_memory_peak_mb"] = 140.0
    report["invocation"]["new_field"] = "x"
    validate_report(report)


# -- negative: the schema rejects what is wrong ----------------------------------------------


def _set(report: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = report
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _del(report: dict[str, Any], path: tuple[Any, ...]) -> None:
    node: Any = report
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


WITH_SPAN = ("spans", 0)

BAD_VALUES = [
    (("schema",), "lambdascope/2"),
    (("agent", "name"), "other"),
    (("agent", "overhead", "init_ms"), "12"),
    (("agent", "overhead", "setup_ms"), None),
    (("agent", "python"), 3.11),
    (("function", "architecture"), "amd64"),
    (("function", "memory_limit_mb"), "128"),
    (("function", "memory_limit_mb"), 128.5),
    (("function", "version"), 7),
    (("invocation", "request_id"), ""),
    (("invocation", "duration_ms"), "12.5"),
    (("invocation", "duration_ms"), -1),
    (("invocation", "start_ms"), None),
    (("invocation", "cold_start"), "true"),
    (("invocation", "cold_start"), 1),
    (("invocation", "status"), "failed"),
    (("invocation", "init_type"), "on_demand"),
    (("invocation", "proactive_init"), None),
    (("invocation", "trigger", "type"), "http"),
    (("invocation", "trigger", "source"), 5),
    (("invocation", "batch"), {"size": 2}),
    (("invocation", "batch"), {"size": 2, "failed": "1"}),
    (("invocation", "batch"), {"size": 2, "failed": 0, "extra": 1}),
    (("invocation", "tenant_id"), 42),
    (("error",), {"type": "ValueError", "message": "x"}),
    (("error",), {"type": "ValueError", "message": "x", "stack": [{"file": "a.py"}]}),
    (("error",), {"type": "E", "message": "x",
                  "stack": [{"file": "a.py", "line": "3", "function": "f"}]}),
    (("error",), "ValueError"),
    (("resources", "rss_peak_mb"), "100"),
    (("resources", "memory_used_pct"), -5),
    (("resources", "open_fds"), 3.5),
    (("resources", "threads"), 0),
    (("resources", "leak_suspected"), None),
    (("resources", "rss_growth_mb"), None),
    (("resources", "net_rx_bytes"), -1),
    (("metrics",), [{"name": "m", "value": "1", "unit": "Count", "dimensions": {},
                     "timestamp_ms": 1.0}]),
    (("metrics",), [{"name": "m", "value": 1, "unit": "Things", "dimensions": {},
                     "timestamp_ms": 1.0}]),
    (("metrics",), [{"name": "m", "value": 1, "unit": "Count", "dimensions": {"a": 1},
                     "timestamp_ms": 1.0}]),
    (("metrics",), [{"name": "", "value": 1, "unit": "Count", "dimensions": {},
                     "timestamp_ms": 1.0}]),
    (("metrics",), [{"name": "m", "value": 1, "unit": "Count", "dimensions": {}}]),
    (("labels",), ["a", 1]),
    (("labels",), ["a", "a"]),
    (("labels",), "beta"),
    (("trace", "trace_id"), "4BF92F3577B34DA6A3CE929D0E0E4736"),
    (("trace", "trace_id"), "4bf92f3577b34da6a3ce929d0e0e473"),
    (("trace", "trace_id"), "0" * 32),
    (("trace", "span_id"), "00f067aa0ba902b"),
    (("trace", "parent_span_id"), "zzf067aa0ba902b7"),
    ((*WITH_SPAN, "kind"), "SERVER"),
    ((*WITH_SPAN, "status"), "unset"),
    ((*WITH_SPAN, "span_id"), "0" * 16),
    ((*WITH_SPAN, "duration_ms"), None),
    ((*WITH_SPAN, "attributes"), []),
    (("dropped_spans",), -1),
    (("dropped_spans",), "0"),
    (("logs",), [{"timestamp_ms": 1.0, "level": "INFO", "logger": "x"}]),
    (("logs",), [{"timestamp_ms": 1.0, "level": "INFO", "logger": "x", "message": "m",
                  "span_id": "nope"}]),
    (("dropped_reports",), "3"),
    (("profile",), {"interval_ms": 10, "samples": 1, "stacks": [{"frames": [1], "count": 1}]}),
    (("profile",), {"interval_ms": 10, "samples": 1, "stacks": [{"frames": ["a"]}]}),
    (("profile",), {"interval_ms": 0, "samples": 1, "stacks": []}),
    (("profile",), {"samples": 1, "stacks": []}),
    (("diagnostics",), ["not", "an", "object"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value"), BAD_VALUES, ids=[".".join(map(str, p)) for p, _ in BAD_VALUES]
)
def test_wrong_value_fails_validation(
    ok_report: dict[str, Any], validate_report: Any, path: tuple[Any, ...], value: Any
) -> None:
    report = copy.deepcopy(ok_report)
    _set(report, path, value)
    with pytest.raises(AssertionError, match="does not match the schema"):
        validate_report(report)


MISSING = [
    ("schema",), ("agent",), ("function",), ("invocation",), ("error",), ("resources",),
    ("metrics",), ("labels",), ("trace",), ("spans",), ("dropped_spans",), ("logs",),
    ("agent", "overhead"), ("agent", "overhead", "invocation_ms"), ("function", "arn"),
    ("function", "memory_limit_mb"), ("invocation", "status"), ("invocation", "timeout_ms"),
    ("invocation", "batch"), ("invocation", "tenant_id"), ("invocation", "trigger", "source"),
    ("resources", "rss_peak_mb"), ("resources", "leak_suspected"),
    ("resources", "sandbox_memory_mb"), ("trace", "parent_span_id"),
    (*WITH_SPAN, "attributes"), (*WITH_SPAN, "parent_span_id"),
]  # fmt: skip


@pytest.mark.parametrize("path", MISSING, ids=[".".join(map(str, p)) for p in MISSING])
def test_missing_field_fails_validation(
    ok_report: dict[str, Any], validate_report: Any, path: tuple[Any, ...]
) -> None:
    report = copy.deepcopy(ok_report)
    _del(report, path)
    with pytest.raises(AssertionError, match="does not match the schema"):
        validate_report(report)


def test_report_must_be_an_object(validate_report: Any) -> None:
    with pytest.raises(AssertionError):
        validate_report([])

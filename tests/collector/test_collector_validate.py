"""The collector's quick report check agrees with the full JSON Schema validator.

``lambdascope.collector.validate.compile_check`` answers valid/invalid without building error
messages; the full validator (fastjsonschema) only runs to explain a refusal. A report the quick
check accepts and the full validator would refuse would be stored unchecked, so the two are
compared on real reports, on hand-picked edge cases, and on thousands of random mutations.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import fastjsonschema
import pytest
from collector_reports import aws_span, http_span, make_report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdascope.collector.app import load_report_schema, parse_reports, report_validator
from lambdascope.collector.validate import UnsupportedSchema, compile_check

SCHEMA = load_report_schema()
QUICK = compile_check(SCHEMA)
FULL = fastjsonschema.compile(SCHEMA)


def full_ok(value: Any) -> bool:
    try:
        FULL(value)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def agree(value: Any) -> None:
    quick = QUICK(value)
    expected = full_ok(value)
    assert quick is None or quick == expected, (quick, expected, json.dumps(value)[:400])


def rich_report() -> dict[str, Any]:
    report = make_report(
        status="error", cold=True, init_ms=120.0, labels=["tenant=a", "beta"],
        spans=[aws_span("S3.GetObject", 5.0, **{"aws.s3.bucket": "b"}),
               http_span("GET", "api.example.com", 7.0, status="error")],
        logs=["hello"],
    )
    report["metrics"] = [{"name": "bytes", "value": 12, "unit": "Bytes",
                          "dimensions": {"channel": "web"}, "timestamp_ms": report[
                              "invocation"]["start_ms"]}]
    report["invocation"]["batch"] = {"size": 2, "failed": 0}
    return report


def test_real_reports_pass_both() -> None:
    for report in (make_report(), rich_report(), make_report(status="timeout"),
                   make_report(function=None, memory_mb=None)):
        assert full_ok(report), "the test's report is not valid"
        assert QUICK(report) is True


def test_reports_made_by_the_agent_pass() -> None:
    """Reports from the real agent: cold, warm, an error with its stack, spans, logs,
    metrics and labels."""
    import logging

    import lambdascope
    from lambdascope.testing import capture_reports, fake_context, reset

    reset()

    @lambdascope.monitor
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        lambdascope.label("tenant", "a")
        lambdascope.metric("items", 3, "Count", channel="web")
        logging.getLogger("app").warning("working on %s", event["id"])
        with lambdascope.span("compute"):
            pass
        if event.get("fail"):
            raise ValueError("no such order")
        return {"ok": True}

    with capture_reports() as reports:
        for n in range(3):
            try:
                handler({"id": n, "fail": n == 2}, fake_context())
            except ValueError:
                pass
    reset()
    assert len(reports) == 3 and reports[2]["error"]["stack"]
    for report in reports:
        report = json.loads(json.dumps(report))  # as the collector receives it
        assert full_ok(report)
        assert QUICK(report) is True


@pytest.mark.parametrize(
    ("mutate", "valid"),
    [
        (lambda r: r["invocation"].update(duration_ms=True), False),  # a bool is no number
        (lambda r: r["invocation"].update(duration_ms=-0.0), True),
        (lambda r: r["invocation"].update(duration_ms=-1e-300), False),
        (lambda r: r["invocation"].update(start_ms=0), False),  # exclusiveMinimum 0
        (lambda r: r["function"].update(memory_limit_mb=512.0), True),  # integral float
        (lambda r: r["function"].update(memory_limit_mb=512.5), False),
        (lambda r: r["function"].update(memory_limit_mb=0), False),
        (lambda r: r["function"].update(memory_limit_mb=True), False),
        (lambda r: r["trace"].update(trace_id="0" * 32), False),
        (lambda r: r["trace"].update(trace_id="a" * 32 + "\n"), False),  # "$" is the very end
        (lambda r: r["trace"].update(trace_id="A" * 32), False),
        (lambda r: r["trace"].update(span_id=None), True),
        (lambda r: r.update(labels=["a", "a"]), False),  # uniqueItems
        (lambda r: r.update(labels=["a", {"b": 1}]), False),
        (lambda r: r.update(labels=[[1], [1]]), False),
        (lambda r: r.update(labels=[""]), False),
        (lambda r: r["invocation"].update(batch={"size": 2, "failed": 0, "x": 1}), False),
        (lambda r: r["invocation"].update(batch={"size": 2, "failed": 0}), True),
        (lambda r: r["invocation"].update(batch=[]), False),
        (lambda r: r["invocation"].update(status="OK"), False),
        (lambda r: r["invocation"].pop("status"), False),
        (lambda r: r.update(schema="lambdascope/2"), False),
        (lambda r: r.update(extra={"anything": [1, 2]}), True),  # additionalProperties true
        (lambda r: r.update(event=[1, "x", None]), True),
        (lambda r: r["metrics"].append({"name": "n", "value": 1, "unit": "Count",
                                        "dimensions": {"k": 1}, "timestamp_ms": 1.0}), False),
        (lambda r: r["metrics"].append({"name": "n" * 256, "value": 1, "unit": "Count",
                                        "dimensions": {}, "timestamp_ms": 1.0}), False),
        (lambda r: r["spans"][0].update(links=[{"trace_id": "a" * 32, "span_id": None,
                                                "attributes": {}}] * 101), False),
        (lambda r: r["spans"][0].update(links=[{"trace_id": "a" * 32, "span_id": None,
                                                "attributes": {}}] * 100), True),
        (lambda r: r.update(profile={"interval_ms": 10, "samples": 1,
                                     "stacks": [{"frames": ["a"], "count": 0}]}), False),
        (lambda r: r.update(error={"type": "E", "message": "m",
                                   "stack": [{"file": "f", "line": None, "function": "g"}]}),
         True),
        (lambda r: r.update(error={"type": "E", "message": "m",
                                   "stack": [{"file": "f", "line": 1.5, "function": "g"}]}),
         False),
    ],
)
def test_edge_cases_agree(mutate: Any, valid: bool) -> None:
    report = rich_report()
    mutate(report)
    assert full_ok(report) is valid
    assert QUICK(report) is valid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=False,
                                                                  allow_infinity=False)
    | st.text(max_size=40) | st.sampled_from(["a" * 16, "0" * 16, "f" * 32, "ok", "error",
                                              "x86_64", "sqs", "lambdascope/1", "Count"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out.extend(_paths(child, (*prefix, i)))
    return out


BASE = rich_report()
PATHS = _paths(BASE)[1:]


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "drop", "add"]),
                          json_values), min_size=1, max_size=3))
def test_random_mutations_agree(edits: list[tuple[tuple[Any, ...], str, Any]]) -> None:
    report = copy.deepcopy(BASE)
    for path, action, value in edits:
        parent: Any = report
        try:
            for part in path[:-1]:
                parent = parent[part]
            key = path[-1]
            if action == "set":
                parent[key] = value
            elif action == "drop":
                if isinstance(parent, dict):
                    parent.pop(key, None)
                elif isinstance(parent, list) and key < len(parent):
                    parent.pop(key)
            elif isinstance(parent, dict):
                parent[f"x{len(parent)}"] = value
            elif isinstance(parent, list):
                parent.append(value)
        except (KeyError, IndexError, TypeError):
            continue
    agree(report)


def test_parse_reports_explains_a_refusal_with_the_full_validator() -> None:
    bad = rich_report()
    bad["invocation"]["status"] = "nope"
    from lambdascope.collector.app import ApiError

    with pytest.raises(ApiError) as info:
        parse_reports(json.dumps([make_report(), bad]).encode(), 10)
    assert info.value.status == 400
    assert info.value.message.startswith("report 1: data.invocation.status must be one of")
    assert report_validator() is not None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {"a": {}}},
        {"anyOf": [{"type": "string"}]},
        {"$ref": "https://example.com/other.json"},
        {"type": "decimal"},
        {"enum": [1, 2]},
        {"type": "array", "items": [{"type": "string"}]},
    ],
)
def test_unknown_keywords_refused_at_compile_time(schema: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedSchema):
        compile_check(schema)


def test_local_references_and_additional_property_schemas() -> None:
    check = compile_check({
        "$defs": {"id": {"type": "string", "pattern": "^[0-9]+$"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/id"}},
        "additionalProperties": {"type": "integer", "minimum": 1},
    })
    assert check({"a": "12", "b": 3}) is True
    assert check({"a": "12x"}) is False
    assert check({"a": "1", "b": 0}) is False
    assert check({"a": "1", "b": "2"}) is False
    assert check([]) is False


# -- a batch's reports kept as received ------------------------------------------------------------
def test_each_report_of_a_batch_keeps_its_text_as_received() -> None:
    from lambdascope.collector.app import parse_body

    one, two = make_report(), rich_report()
    two["logs"][0]["message"] = "caf\u00e9 \U0001f600 \\ \" \u2028"
    texts = [json.dumps(one, indent=1).encode(), json.dumps(two, ensure_ascii=False).encode()]
    body = b" \n[ " + texts[0] + b" ,\r\n\t" + texts[1] + b"\n] \n"
    reports, raws = parse_body(body, 10)
    assert reports == [one, two]
    assert raws == texts
    assert [json.loads(raw) for raw in raws] == [one, two]
    ascii_body = b"[" + json.dumps(one).encode() + b"]"
    assert parse_body(ascii_body, 10)[1] == [json.dumps(one).encode()]
    assert parse_body(b"[]", 10) == ([], [])
    single = json.dumps(one).encode()
    assert parse_body(single, 10) == ([one], [single])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[{}] x", "malformed JSON: Extra data"),
        (b"[{},]", "malformed JSON"),
        (b"[{} {}]", "malformed JSON: Expecting ',' delimiter"),
        (b"[", "malformed JSON"),
        (b"[NaN]", "malformed JSON"),
        (b"[1e999]", "malformed JSON: number out of range"),
        (b"[\xff]", "malformed JSON"),
        (b"[" * 100_000, "malformed JSON"),
        (b"[1, 2]", "report 0: data must be object"),
    ],
)
def test_malformed_batches_are_refused_with_the_parsers_reason(body: bytes, message: str
                                                              ) -> None:
    from lambdascope.collector.app import ApiError, parse_body

    with pytest.raises(ApiError) as info:
        parse_body(body, 10)
    assert info.value.status == 400
    assert info.value.message.startswith(message), info.value.message

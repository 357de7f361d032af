"""``/openapi.json`` describes the collector's HTTP surface accurately: it is a valid OpenAPI 3.1
document, it lists exactly the application's routes, and the API fuzzed from it (schemathesis,
positive and negative cases) against the real service in a subprocess never answers 5xx and
always answers as described (status codes, content types, headers, bodies)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")
schemathesis = pytest.importorskip("schemathesis")

from collector_harness import Collector, make_report  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lambdascope.collector.app import create_app  # noqa: E402
from lambdascope.collector.store import Store  # noqa: E402

TOKEN = "fuzz-token"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PLATFORM_ID = "8f5e2b1c-0000-4000-8000-platform0001"
MAX_EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class _NoStore:
    def add(self, reports: Any) -> Any:  # pragma: no cover - never called here
        raise AssertionError

    def reader(self) -> Any:  # pragma: no cover
        raise AssertionError


@pytest.mark.parametrize("token", [None, TOKEN])
def test_the_document_is_valid_openapi_31(token: str | None) -> None:
    from openapi_spec_validator import validate

    app = create_app(_NoStore(), token)
    doc = app.state.openapi
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    secured = [op for item in doc["paths"].values() for op in item.values() if "security" in op]
    assert bool(secured) == (token is not None)


def test_the_document_lists_exactly_the_routes() -> None:
    app = create_app(_NoStore())
    doc = app.state.openapi
    # The dashboard's pages (HTML, named "dashboard:...") are not part of the JSON API.
    api_routes = [r for r in app.routes if not getattr(r, "name", "").startswith("dashboard:")]
    assert len(api_routes) < len(app.routes)
    routes = {(method.lower(), route.path.replace(":path}", "}")) for route in api_routes
              for method in (route.methods or ()) if method != "HEAD"}  # type: ignore[attr-defined]
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert routes == documented
    for path, item in doc["paths"].items():
        for op in item.values():
            in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(re.findall(r"{(\w+)}", path)), path


def test_the_request_body_is_the_shipped_report_schema(report_schema: dict[str, Any]) -> None:
    doc = create_app(_NoStore()).state.openapi
    body = doc["paths"]["/v1/reports"]["post"]["requestBody"]["content"]["application/json"]
    one, many = body["schema"]["oneOf"]
    assert one == {"$ref": "#/components/schemas/Report"}
    assert many["items"] == one and many["maxItems"] == 1000
    report = doc["components"]["schemas"]["Report"]
    assert report["required"] == report_schema["required"]
    assert report["properties"]["invocation"]["properties"]["status"] == (
        report_schema["properties"]["invocation"]["properties"]["status"])
    for name in report_schema["$defs"]:
        assert f"Report_{name}" in doc["components"]["schemas"]


def test_a_report_validates_against_the_documented_body(validate_report: Any) -> None:
    import jsonschema

    doc = create_app(_NoStore()).state.openapi
    schema = {"$ref": "#/components/schemas/Report", "components": doc["components"]}
    report = validate_report(make_report(with_span=True, status="error"))
    jsonschema.Draft202012Validator(schema).validate(report)
    bad = make_report()
    bad["invocation"]["status"] = "nope"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


# -- fuzzing --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """A collector with a token and some data: functions with errors, spans, logs, a trace
    shared by two invocations."""
    db = tmp_path_factory.mktemp("fuzz") / "reports.db"
    with Store(db) as store:  # an invocation only Lambda's REPORT line told of
        store.add_platform({
            "request_id": PLATFORM_ID, "function": "orders", "log_stream":
            "2026/11/30/[7]0123456789abcdef0123456789abcdef", "duration_ms": 101.2,
            "billed_ms": 102, "memory_mb": 256, "max_memory_mb": 80, "init_ms": 300.5,
            "timestamp_ms": time.time() * 1000.0 - 10_000,
        })
    with Collector(db, token=TOKEN) as c:
        reports = [make_report(f"fuzz-{i}", function=("orders", "billing")[i % 2],
                               status=("ok", "ok", "error", "timeout")[i % 4], cold=i < 2,
                               with_span=True, version=str(1 + i % 3),
                               trace_id=TRACE if i < 2 else None)
                   for i in range(40)]
        assert c.post(reports).status_code == 202
        yield c
        assert c.alive(), c.stderr
    assert "Traceback" not in c.stderr, c.stderr


@pytest.fixture(scope="module")
def api_schema(service: Collector) -> Any:
    return schemathesis.openapi.from_url(service.url + "/openapi.json")


# One test per operation of the document (the same document the service serves: it is built
# from the same declarations), each running Hypothesis over schemathesis's strategies.
# (schemathesis's own pytest plugin does not run under this pytest: it sets a removed
# attribute of pytest's nodes.)
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in create_app(_NoStore()).state.openapi["paths"].items()
    for method in item
)


CASES = [
    pytest.param(method, path, mode, id=f"{mode.value}-{method}-{path}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # nothing can be wrong in a request without parameters or body
    if mode is GenerationMode.POSITIVE or path not in ("/api/health", "/openapi.json")
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_the_api_as_described(api_schema: Any, service: Collector, method: str, path: str,
                              mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # Reports are large to generate: fewer of them.
    examples = MAX_EXAMPLES // 3 if method == "POST" else MAX_EXAMPLES

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=examples,
              database=None, derandomize=True)
    def run(case: Any) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS, timeout=30)

    run()


@pytest.mark.parametrize(("method", "path"), [op for op in OPERATIONS
                                              if op[1] != "/openapi.json"])
def test_without_the_token_every_call_is_refused_as_described(
    api_schema: Any, service: Collector, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=5,
              database=None, derandomize=True)
    def run(case: Any) -> None:
        response = case.call(timeout=30)
        assert response.status_code == 401, (case.method, case.path, response.text)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance,
                                                 response_schema_conformance])

    run()


ANSWERS = [
    ("/api/invocations/{request_id}", {"request_id": "fuzz-2"}, {}),
    ("/api/invocations/{request_id}", {"request_id": "fuzz-1"}, {"price_gb_s": "0.00002"}),
    ("/api/invocations/{request_id}", {"request_id": PLATFORM_ID}, {}),
    ("/api/traces/{trace_id}", {"trace_id": TRACE}, {}),
    ("/api/stats", {}, {}),
    ("/api/stats", {}, {"by": "version", "since": "0"}),
    ("/api/stats", {}, {"function": "orders", "cold": "true"}),
    ("/api/stats", {}, {"function": "billing", "cold": "false", "price_request": "0"}),
    ("/api/invocations", {}, {"since": "0", "limit": "5"}),
    ("/api/invocations", {}, {"status": "error", "function": "orders"}),
    ("/api/invocations", {}, {"source": "platform"}),
    ("/api/logs", {}, {"request_id": "fuzz-1"}),
    ("/api/logs", {}, {"q": "loading", "limit": "3", "offset": "1"}),
    ("/api/errors", {}, {"since": "0"}),
    ("/api/dependencies", {}, {"since": "0"}),
    ("/api/functions", {}, {"since": "0"}),
]


@pytest.mark.parametrize(("path", "path_parameters", "query"), ANSWERS)
def test_answers_with_data_are_as_described(api_schema: Any, service: Collector, path: str,
                                            path_parameters: dict[str, str],
                                            query: dict[str, str]) -> None:
    case = api_schema[path]["GET"].Case(path_parameters=path_parameters, query=query)
    response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                      checks=CHECKS[:5], timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    for key in ("functions", "invocations", "logs", "errors", "dependencies", "related"):
        if key in body and path != "/api/invocations/{request_id}":
            assert body[key], (path, query, key)  # the answer holds data

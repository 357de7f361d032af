"""The ``emf`` exporter: CloudWatch Embedded Metric Format documents on stdout.

Real monitored handlers run in-process with ``exporters="emf"``; every document written is
validated against tests/emf_schema.json (the EMF specification's structure) and against what
a schema cannot say (every referenced member present with the right type, limits per document).
"""

from __future__ import annotations

import errno
import json
import math
import pathlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest

import lambdascope
from lambdascope.exporters import ExportResult
from lambdascope.exporters.emf import (
    DEFAULT_NAMESPACE,
    MAX_DOCUMENT_VALUES,
    EmfExporter,
    xray_trace_id,
)
from lambdascope.testing import capture_reports, fake_context

ROOT = pathlib.Path(__file__).resolve().parents[1]
EMF_SCHEMA = json.loads((ROOT / "emf_schema.json").read_text())
EVENTS = ROOT / "events"
_VALIDATOR = jsonschema.Draft202012Validator(EMF_SCHEMA)
BUILTINS = {"Duration", "ColdStart", "InitDuration", "MemoryUsed", "MaxMemoryUsed", "Errors",
            "Timeouts", "Crashed"}  # fmt: skip


@pytest.fixture(autouse=True)
def _no_runtime_trace_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)


# -- checking documents ---------------------------------------------------------------------


def _no_constants(token: str) -> Any:
    raise AssertionError(f"{token} in an EMF document")


def check(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema, then the references and limits a schema cannot express."""
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, f"{list(errors[0].path)}: {errors[0].message}"
    directives = doc["_aws"]["CloudWatchMetrics"]
    assert directives, "a document without metrics"
    metric_names: list[str] = []
    dimension_names: set[str] = set()
    for directive in directives:
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                value = doc.get(name)
                assert isinstance(value, str), f"dimension {name!r} is {value!r}"
                assert 0 < len(value) <= 1024 and value.isascii() and value.strip()
                dimension_names.add(name)
        for definition in directive["Metrics"]:
            name = definition["Name"]
            metric_names.append(name)
            value = doc.get(name)
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100, f"metric {name!r} has {len(values)} values"
            for v in values:
                assert isinstance(v, (int, float)) and not isinstance(v, bool), (name, v)
                assert math.isfinite(v)
    assert len(metric_names) <= 100
    assert len(set(metric_names)) == len(metric_names), "one member, two metrics"
    assert not dimension_names & set(metric_names), "one member both dimension and metric"
    return doc


def read_docs(capsys: Any) -> list[dict[str, Any]]:
    """The EMF documents written to stdout, checked (other lines are left aside)."""
    docs = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith('{"_aws"'):
            docs.append(check(json.loads(line, parse_constant=_no_constants)))
    return docs


def metrics_of(doc: dict[str, Any]) -> dict[str, tuple[str, list[list[str]], Any]]:
    """Metric name -> (unit, dimension sets, value) in one document."""
    out = {}
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for definition in directive["Metrics"]:
            name = definition["Name"]
            out[name] = (definition.get("Unit", "None"), directive["Dimensions"], doc[name])
    return out


def custom(docs: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, str], Any]]:
    """Every custom metric in ``docs``: (name, unit, dimensions, value)."""
    out = []
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            if directive["Dimensions"][0] and directive["Dimensions"][0][0] == "FunctionName":
                continue  # the built-ins
            (dimension_set,) = directive["Dimensions"]
            dims = {name: doc[name] for name in dimension_set}
            for definition in directive["Metrics"]:
                name = definition["Name"]
                out.append((name, definition["Unit"], dims, doc[name]))
    return out


def flat(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out


def handler_with(body: Any, **options: Any) -> Any:
    options.setdefault("exporters", "emf")

    @lambdascope.monitor(**options)
    def handler(event: Any, context: Any) -> Any:
        return body(event)

    return handler


# -- the schema itself -----------------------------------------------------------------------


def test_schema_accepts_the_specification_shape_and_rejects_what_it_forbids() -> None:
    good = {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "shop",
                    "Dimensions": [["Operation"], []],
                    "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}, {"Name": "Hits"}],
                }
            ],
        },
        "Operation": "get",
        "Latency": [1, 2.5],
        "Hits": 3,
        "anything": {"nested": True},
    }
    check(good)
    directive = good["_aws"]["CloudWatchMetrics"][0]
    bad = [
        {"_aws": {"CloudWatchMetrics": []}},  # no Timestamp
        {"_aws": {"Timestamp": 1.5, "CloudWatchMetrics": []}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{**directive, "Extra": 1}]}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{**directive, "Namespace": ""}]}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{**directive, "Dimensions": []}]}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
            {**directive, "Dimensions": [[f"d{i}" for i in range(31)]]}]}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
            {**directive, "Metrics": [{"Name": "x", "Unit": "Furlongs"}]}]}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
            {**directive, "Metrics": [{"Name": "x", "StorageResolution": 30}]}]}},
        {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
            {**directive, "Metrics": [{"Name": f"m{i}"} for i in range(101)]}]}},
    ]  # fmt: skip
    for doc in bad:
        assert list(_VALIDATOR.iter_errors(doc)), doc
    # What only the semantic checks see: a referenced member missing or of the wrong type.
    for broken in ({**good, "Operation": 1}, {**good, "Hits": "3"}, {**good, "Latency": []}):
        with pytest.raises(AssertionError):
            check(broken)


# -- built-in metrics -----------------------------------------------------------------------


class TestBuiltins:
    def test_cold_then_warm(self, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
        handler = handler_with(lambda event: "ok")
        with capture_reports(only=False) as reports:
            ctx = fake_context()
            assert handler({}, ctx) == "ok"
            assert handler({}, fake_context()) == "ok"
        cold, warm = read_docs(capsys)
        assert len(reports) == 2

        c = metrics_of(cold)
        assert c["ColdStart"][:1] == ("Count",) and c["ColdStart"][2] == 1
        assert c["InitDuration"][0] == "Milliseconds" and c["InitDuration"][2] >= 0
        assert c["InitDuration"][2] == reports[0]["invocation"]["init_duration_ms"]
        assert c["Duration"][0] == "Milliseconds"
        assert c["Duration"][2] == reports[0]["invocation"]["duration_ms"]
        assert c["Errors"][2] == 0 and c["Timeouts"][2] == 0
        assert "Crashed" not in c
        assert c["Duration"][1] == [["FunctionName"]]  # the service is the function's name
        assert cold["FunctionName"] == "test-function"
        assert cold["_aws"]["CloudWatchMetrics"][0]["Namespace"] == DEFAULT_NAMESPACE
        assert cold["_aws"]["Timestamp"] == int(reports[0]["invocation"]["end_ms"])
        peak = reports[0]["resources"]["rss_peak_mb"]
        if peak is not None:
            assert c["MemoryUsed"] == ("Megabytes", [["FunctionName"]], peak)
        # Properties that link the line back to the invocation; never dimensions.
        assert cold["requestId"] == ctx.aws_request_id
        assert cold["coldStart"] is True and cold["functionVersion"] == "7"
        assert cold["traceId"] == xray_trace_id(reports[0]["trace"]["trace_id"])

        w = metrics_of(warm)
        assert w["ColdStart"][2] == 0 and "InitDuration" not in w
        assert w["Errors"][2] == 0 and w["Duration"][2] >= 0
        assert warm["coldStart"] is False
        assert warm["requestId"] == reports[1]["invocation"]["request_id"]
        for doc in (cold, warm):
            for directive in doc["_aws"]["CloudWatchMetrics"]:
                assert all("requestId" not in s for s in directive["Dimensions"])

    def test_service_adds_a_dimension_set(self, capsys: Any) -> None:
        handler = handler_with(lambda event: None, service="orders")
        handler({}, fake_context(function_name="orders-api"))
        (doc,) = read_docs(capsys)
        _, sets, _ = metrics_of(doc)["Duration"]
        assert sets == [["FunctionName"], ["service"]]
        assert doc["FunctionName"] == "orders-api" and doc["service"] == "orders"

    def test_error_counts(self, capsys: Any) -> None:
        def body(event: Any) -> None:
            raise RuntimeError("boom")

        handler = handler_with(body)
        with pytest.raises(RuntimeError):
            handler({}, fake_context())
        handler_ok = handler_with(lambda event: 1)
        handler_ok({}, fake_context())
        failed, ok = read_docs(capsys)
        assert metrics_of(failed)["Errors"][2] == 1
        assert metrics_of(ok)["Errors"][2] == 0

    def test_timeout_report_then_the_late_finish(self, capsys: Any) -> None:
        @lambdascope.monitor(exporters="emf", timeout_warning_ms=300)
        def handler(event: Any, context: Any) -> str:
            lambdascope.metric("Started", 1, "Count")
            time.sleep(0.7)  # still running when the watchdog fires (at 0.6 s)
            lambdascope.metric("Finished", 1, "Count")
            return "late"

        with capture_reports(only=False) as reports:
            assert handler({}, fake_context(timeout_s=0.9)) == "late"
        assert [r["invocation"]["status"] for r in reports] == ["timeout", "ok"]
        first, *rest = read_docs(capsys)
        t = metrics_of(first)
        assert t["Timeouts"][2] == 1 and "Errors" not in t  # it may still finish
        assert t["ColdStart"][2] == 1
        assert t["Duration"][2] == reports[0]["invocation"]["duration_ms"]
        assert [c[0] for c in custom([first])] == ["Started"]
        # The finish adds its outcome and what was recorded after the timeout report, once.
        later = {name: value for doc in rest for name, (_, _, value) in metrics_of(doc).items()}
        assert later == {"Errors": 0, "Finished": 1}
        assert all(doc["requestId"] == first["requestId"] for doc in rest)

    def test_crashed_report(self, capsys: Any) -> None:
        from lambdascope._breadcrumb import crashed_report

        class Pipeline:
            memory_limit_mb = 128
            init_type = "on-demand"
            function = {"name": "orders-api", "version": "$LATEST", "arn": None,
                        "region": "eu-west-1", "architecture": "x86_64", "memory_limit_mb": 128,
                        "log_group": None, "log_stream": None, "service": "orders"}  # fmt: skip

        start = time.time() * 1000.0 - 5000.0
        report = crashed_report(
            {"request_id": "dead-1", "start_ms": start, "timeout_ms": 3000.0, "rss_mb": 120.0,
             "limit_mb": 128},
            Pipeline(),
        )  # fmt: skip
        exporter = EmfExporter()
        assert exporter.export([report], [json.dumps(report)], 1.0) is ExportResult.SUCCESS
        (doc,) = read_docs(capsys)
        m = metrics_of(doc)
        assert {k: v[2] for k, v in m.items()} == {"Crashed": 1, "Errors": 1}
        assert doc["_aws"]["Timestamp"] == int(report["invocation"]["start_ms"])
        assert doc["requestId"] == "dead-1" and doc["coldStart"] is False
        assert doc["traceId"] == xray_trace_id(report["trace"]["trace_id"])


# -- custom metrics -------------------------------------------------------------------------


class TestCustomMetrics:
    def test_units_dimensions_and_arrays(self, capsys: Any) -> None:
        def body(event: Any) -> None:
            lambdascope.metric("Orders", 1, "Count")
            lambdascope.metric("Orders", 2, "Count")
            lambdascope.metric("Orders", 3, "Count")
            lambdascope.metric("Latency", 12.5, "ms")
            lambdascope.metric("Latency", 3, "Milliseconds", Operation="get", Table="orders")
            lambdascope.metric("Latency", 4, "Milliseconds", Operation="get", Table="orders")
            lambdascope.metric("Payload", 2048, "Bytes", Operation="get", Table="orders")
            lambdascope.metric("Latency", 9, "Milliseconds", Operation="put", Table="orders")

        handler_with(body, service="shop")({}, fake_context())
        docs = read_docs(capsys)

        def key(c: tuple[str, str, dict[str, str], Any]) -> str:
            return json.dumps(c)

        assert sorted(custom(docs), key=key) == sorted([
            ("Latency", "Milliseconds", {"service": "shop"}, 12.5),
            ("Latency", "Milliseconds", {"service": "shop", "Operation": "get",
                                         "Table": "orders"}, [3, 4]),
            ("Latency", "Milliseconds", {"service": "shop", "Operation": "put",
                                         "Table": "orders"}, 9),
            ("Orders", "Count", {"service": "shop"}, [1, 2, 3]),
            ("Payload", "Bytes", {"service": "shop", "Operation": "get", "Table": "orders"},
             2048),
        ], key=key)  # fmt: skip
        # One directive per set of dimensions, the service first in its dimension set.
        for doc in docs:
            for directive in doc["_aws"]["CloudWatchMetrics"]:
                sets = directive["Dimensions"]
                assert sets[0][0] in ("FunctionName", "service")
        # "Latency" three times: three documents, each complete with the built-ins in the first.
        assert len(docs) == 3
        assert "Duration" in metrics_of(docs[0])
        assert all(doc["requestId"] == docs[0]["requestId"] for doc in docs)

    def test_unknown_unit_is_none(self, capsys: Any) -> None:
        report = sample_report([{"name": "Speed", "value": 3, "unit": "Furlongs/Fortnight",
                                 "dimensions": {}, "timestamp_ms": 1.0}])  # fmt: skip
        EmfExporter().export([report], [], 1.0)
        (doc,) = read_docs(capsys)
        assert metrics_of(doc)["Speed"][0] == "None"

    def test_101_metrics_split(self, capsys: Any) -> None:
        def body(event: Any) -> None:
            for i in range(101):
                lambdascope.metric(f"m{i:03d}", i, "Count")

        handler_with(body)({}, fake_context())
        docs = read_docs(capsys)
        assert len(docs) == 2
        got = custom(docs)
        assert sorted(name for name, *_ in got) == [f"m{i:03d}" for i in range(101)]
        assert all(value == int(name[1:]) for name, _, _, value in got)
        builtins = set(metrics_of(docs[0])) & BUILTINS
        assert {"Duration", "ColdStart", "Errors", "Timeouts"} <= builtins
        assert sum(len(metrics_of(doc)) for doc in docs) == 101 + len(builtins)
        assert len(metrics_of(docs[0])) == 100
        assert all("requestId" in doc and "traceId" in doc for doc in docs)

    def test_101_values_split(self, capsys: Any) -> None:
        def body(event: Any) -> None:
            for i in range(101):
                lambdascope.metric("Items", i, "Count")
            lambdascope.metric("Other", 5, "Count")

        handler_with(body)({}, fake_context())
        docs = read_docs(capsys)
        assert len(docs) == 2
        items = [value for name, _, _, value in custom(docs) if name == "Items"]
        assert [len(v) if isinstance(v, list) else 1 for v in items] == [100, 1]
        assert flat(items) == list(range(101))
        assert [value for name, *_, value in custom(docs) if name == "Other"] == [5]

    def test_250_values_in_three_documents(self) -> None:
        report = sample_report(
            [{"name": "Items", "value": i * 0.5, "unit": "Count", "dimensions": {"k": "v"},
              "timestamp_ms": 1.0} for i in range(250)]
        )  # fmt: skip
        docs = [check(json.loads(d)) for d in EmfExporter().documents(report)]
        items = [value for name, _, _, value in custom(docs) if name == "Items"]
        assert [len(v) for v in items] == [100, 100, 50]
        assert flat(items) == [i * 0.5 for i in range(250)]

    def test_many_values_keep_documents_small(self) -> None:
        metrics = [{"name": f"n{j}", "value": 1.2345678901234567e-100 * i, "unit": "None",
                    "dimensions": {}, "timestamp_ms": 1.0}
                   for j in range(90) for i in range(100)]  # fmt: skip
        docs = EmfExporter().documents(sample_report(metrics))
        checked = [check(json.loads(d)) for d in docs]
        for doc in checked:
            count = sum(len(v) if isinstance(v, list) else 1
                        for _, (_, _, v) in metrics_of(doc).items())  # fmt: skip
            assert count <= MAX_DOCUMENT_VALUES + 10
        assert max(len(d) for d in docs) < 256 * 1024
        assert len(flat([c[3] for c in custom(checked)])) == 9000

    def test_more_than_30_dimensions_are_cut(self, capsys: Any) -> None:
        dims = {f"d{i:02d}": f"v{i}" for i in range(30)}
        handler_with(lambda event: lambdascope.metric("Wide", 1, "Count", **dims))(
            {}, fake_context()
        )
        docs = read_docs(capsys)
        ((_, _, got, _),) = custom(docs)
        assert list(got) == ["service", *[f"d{i:02d}" for i in range(29)]]

    def test_names_and_values_cloudwatch_accepts(self, capsys: Any) -> None:
        def body(event: Any) -> None:
            lambdascope.metric("Visits", 1, "Count", city="Zürich", empty="", tab="a\tb")

        handler_with(body)({}, fake_context())
        ((_, _, dims, _),) = custom(read_docs(capsys))
        assert dims["city"] == "Z\\xfcrich" and dims["empty"] == "(empty)"
        assert dims["tab"] == "a b"

    def test_non_finite_values_never_appear(self, capsys: Any) -> None:
        report = sample_report(
            [{"name": name, "value": value, "unit": "Count", "dimensions": {},
              "timestamp_ms": 1.0}
             for name, value in (("nan", math.nan), ("inf", math.inf), ("ninf", -math.inf),
                                 ("huge", 1e300), ("ok", 2), ("flag", True))]
        )  # fmt: skip
        report["invocation"]["duration_ms"] = math.nan
        EmfExporter().export([report], [], 1.0)
        (doc,) = read_docs(capsys)
        names = set(metrics_of(doc))
        assert "Duration" not in names
        assert {c[0] for c in custom([doc])} == {"ok"}


# -- collisions -----------------------------------------------------------------------------


class TestCollisions:
    def test_dimension_named_like_a_builtin_metric(self, capsys: Any) -> None:
        handler_with(lambda event: lambdascope.metric("Checkout", 1, "Count", Duration="slow"))(
            {}, fake_context()
        )
        docs = read_docs(capsys)
        assert len(docs) == 2
        builtin = next(d for d in docs if "ColdStart" in metrics_of(d))
        other = next(d for d in docs if d is not builtin)
        assert isinstance(builtin["Duration"], float)
        assert other["Duration"] == "slow" and other["Checkout"] == 1

    def test_metric_named_like_a_dimension_or_property(self, capsys: Any) -> None:
        def body(event: Any) -> None:
            lambdascope.metric("FunctionName", 1, "Count")
            lambdascope.metric("requestId", 2, "Count")
            lambdascope.metric("Orders", 3, "Count", Orders="dup")
            lambdascope.metric("service", 4, "Count", region="eu")
            lambdascope.metric("Region", 5, "Count", region="eu", FunctionName="other")

        ctx = fake_context()
        handler_with(body)({}, ctx)
        docs = read_docs(capsys)
        got = {(name, tuple(dims)): value for name, _, dims, value in custom(docs)}
        assert got[("FunctionName", ("service",))] == 1
        assert got[("requestId", ("service",))] == 2
        assert got[("Orders", ("service",))] == 3  # the dimension of its own name is left out
        assert got[("service", ("region",))] == 4
        assert got[("Region", ("service", "region", "FunctionName"))] == 5
        for doc in docs:  # the property where no metric took the name
            assert doc["requestId"] in (ctx.aws_request_id, 2)
        assert any(doc["requestId"] == ctx.aws_request_id and "ColdStart" in metrics_of(doc)
                   for doc in docs)  # fmt: skip

    def test_same_name_in_two_units(self, capsys: Any) -> None:
        def body(event: Any) -> None:
            lambdascope.metric("Size", 1, "Bytes")
            lambdascope.metric("Size", 2, "Kilobytes")
            lambdascope.metric("Size", 3, "Bytes")

        handler_with(body)({}, fake_context())
        got = sorted((unit, value) for name, unit, _, value in custom(read_docs(capsys)))
        assert got == [("Bytes", [1, 3]), ("Kilobytes", 2)]


# -- trace id, several exporters, namespace -------------------------------------------------


def test_trace_id_in_xray_format_matches_the_report(capsys: Any) -> None:
    event = json.loads((EVENTS / "propagation_apigw_rest.json").read_text())
    handler = handler_with(lambda event: {"statusCode": 200})
    with capture_reports(only=False) as reports:
        handler(event, fake_context())
    (doc,) = read_docs(capsys)
    trace_id = reports[0]["trace"]["trace_id"]
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert doc["traceId"] == "1-0af76519-16cd43dd8448eb211c80319c"


def test_stdout_and_emf_together(capsys: Any) -> None:
    handler = handler_with(lambda event: lambdascope.metric("Sold", 2, "Count"),
                           exporters="stdout,emf")  # fmt: skip
    handler({}, fake_context())
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    reports = [json.loads(line) for line in lines if line.startswith('{"schema"')]
    docs = [check(json.loads(line)) for line in lines if line.startswith('{"_aws"')]
    assert len(reports) == 1 and len(docs) == 1
    assert docs[0]["requestId"] == reports[0]["invocation"]["request_id"]
    assert docs[0]["Sold"] == 2


@pytest.fixture
def collector() -> Iterator[list[Any]]:
    received: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(json.loads(body))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received.append(f"http://127.0.0.1:{server.server_address[1]}")
    yield received
    server.shutdown()
    server.server_close()


def test_http_and_emf_together(capsys: Any, collector: list[Any]) -> None:
    url = collector.pop(0)
    handler = handler_with(lambda event: None, exporters="http,emf", collector_url=url)
    handler({}, fake_context())
    (doc,) = read_docs(capsys)
    assert len(collector) == 1
    body = collector[0]
    report = body[0] if isinstance(body, list) else body
    assert report["invocation"]["request_id"] == doc["requestId"]


def test_namespace() -> None:
    report = sample_report([])
    (doc,) = [json.loads(d) for d in EmfExporter(namespace="Shop/Orders").documents(report)]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop/Orders"
    for bad in ("AWS/Lambda", ":x", "", "a" * 256, "bad\nname"):
        assert EmfExporter(namespace=bad).namespace == DEFAULT_NAMESPACE


def test_namespace_from_the_environment(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASCOPE_EMF_NAMESPACE", "Shop/Orders")
    handler = handler_with(lambda event: None)
    handler({}, fake_context())
    (doc,) = read_docs(capsys)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop/Orders"


# -- stdout that cannot be written ----------------------------------------------------------


class TestStdoutGone:
    def test_none(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("sys.stdout", None)
        assert EmfExporter().export([sample_report([])], [], 1.0) is ExportResult.REJECTED

    @pytest.mark.parametrize(
        "exc",
        [
            BrokenPipeError(errno.EPIPE, "broken pipe"),
            ValueError("I/O operation on closed file."),
            OSError(errno.EBADF, "bad file descriptor"),
        ],
    )
    def test_closed_is_rejected(self, monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
        monkeypatch.setattr("sys.stdout", Failing(exc))
        assert EmfExporter().export([sample_report([])], [], 1.0) is ExportResult.REJECTED

    def test_busy_is_retried_when_nothing_was_written(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stream = Failing(BlockingIOError(errno.EAGAIN, "try again"))
        monkeypatch.setattr("sys.stdout", stream)
        assert EmfExporter().export([sample_report([])], [], 1.0) is ExportResult.RETRY
        stream.after = 1  # the first document goes out, then the write fails
        many = [{"name": f"m{i}", "value": 1, "unit": "Count", "dimensions": {},
                 "timestamp_ms": 1.0} for i in range(150)]  # fmt: skip
        assert EmfExporter().export([sample_report(many)], [], 1.0) is ExportResult.REJECTED
        assert len(stream.written) == 1

    def test_handler_unaffected_and_nothing_spooled(self, monkeypatch: pytest.MonkeyPatch) -> None:
        handler = handler_with(lambda event: "fine")
        monkeypatch.setattr("sys.stdout", Failing(BrokenPipeError(errno.EPIPE, "gone")))
        assert handler({}, fake_context()) == "fine"
        assert handler({}, fake_context()) == "fine"
        (pipeline,) = lambdascope._state.S.pipelines.values()
        assert pipeline.spool.pending("emf") == 0 and not pipeline.retry


def test_spooled_reports_come_as_lines(capsys: Any) -> None:
    report = sample_report([{"name": "Late", "value": 7, "unit": "Seconds", "dimensions": {},
                             "timestamp_ms": 1.0}])  # fmt: skip
    result = EmfExporter().export([], [json.dumps(report), "not json"], 1.0)
    assert result is ExportResult.SUCCESS
    (doc,) = read_docs(capsys)
    assert doc["Late"] == 7 and doc["requestId"] == "req-1"


# -- helpers --------------------------------------------------------------------------------


class Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.after = 0
        self.written: list[str] = []

    def write(self, data: str) -> int:
        if len(self.written) < self.after:
            self.written.append(data)
            return len(data)
        raise self.exc

    def flush(self) -> None:
        pass


def sample_report(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """A warm report with just the members the exporter reads."""
    return {
        "schema": "lambdascope/1",
        "function": {"name": "orders-api", "version": "$LATEST", "service": "orders-api"},
        "invocation": {"request_id": "req-1", "start_ms": 1_700_000_000_000.0,
                       "end_ms": 1_700_000_000_012.5, "duration_ms": 12.5, "cold_start": False,
                       "init_duration_ms": None, "status": "ok"},
        "resources": {"rss_peak_mb": 60.0, "sandbox_memory_mb": 80.0},
        "metrics": metrics,
        "trace": {"trace_id": "0af7651916cd43dd8448eb211c80319c"},
    }  # fmt: skip

"""The ``otlp`` exporter: real monitored handlers, a real OTLP/HTTP receiver on loopback that
decodes every request with ``opentelemetry-proto``, and the pipeline's spool and retries."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import lambdascope
from lambdascope.exporters import ExportResult
from lambdascope.exporters.otlp import OtlpExporter
from lambdascope.testing import capture_reports, fake_context
from otlp_receiver import OtlpReceiver, attributes

REPO = pathlib.Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "events"
MIB = 1024 * 1024
SERVER, CLIENT, CONSUMER, INTERNAL = 2, 3, 5, 1
STATUS_ERROR = 2


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "LAMBDASCOPE_OTLP", "AWS_LAMBDA_", "AWS_REGION")):
            monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture
def downstream() -> Iterator[str]:
    """A plain HTTP server for the handler to call (an outgoing HTTP span)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_VERSION": "42",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[42]0123456789abcdef0123456789abcdef",
        "AWS_REGION": "eu-west-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def context(**kwargs: Any) -> Any:
    kwargs.setdefault("function_name", "orders")
    kwargs.setdefault("region", "eu-west-1")
    ctx = fake_context(**kwargs)
    ctx.invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders:live"
    return ctx


def hexid(data: bytes) -> str:
    return data.hex()


def by_name(receiver: OtlpReceiver) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for _, metric in receiver.metrics():
        out.setdefault(metric.name, []).append(metric)
    return out


def points(metric: Any) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data")).data_points)


def number(point: Any) -> float:
    return getattr(point, point.WhichOneof("value"))


log = logging.getLogger("orders.app")
#: The invocation span's name: the handler's qualified name.
ROOT = "make_handler.<locals>.handler"


def make_handler(downstream: str | None = None, **options: Any) -> Any:
    import requests

    options.setdefault("exporters", "otlp")

    @lambdascope.monitor(**options)
    def handler(event: Any, context: Any) -> Any:
        log.warning("received order")
        with lambdascope.span("price", sku="A-1", qty=3, ratio=0.5, rush=True, tags=["a", "b"]):
            log.error("price lookup slow")
            if downstream:
                requests.get(downstream + "/stock?sku=A-1", timeout=2)
        lambdascope.metric("orders_placed", 2, "Count", channel="web")
        lambdascope.metric("orders_placed", 1, "Count", channel="web")
        lambdascope.metric("basket_value", 12.5, "None", channel="web")
        lambdascope.metric("pricing_latency", 7.25, "Milliseconds")
        if isinstance(event, dict) and event.get("fail"):
            raise RuntimeError("payment declined")
        return {"statusCode": 201}

    return handler


@pytest.fixture(autouse=True)
def _log_level() -> Iterator[None]:
    previous = log.level
    log.setLevel(logging.INFO)
    yield
    log.setLevel(previous)


class TestResource:
    """One resource per function, per the FaaS and cloud conventions, env merged over it."""

    def test_resource_attributes_follow_the_conventions(
        self, receiver: OtlpReceiver, lambda_env: dict[str, str], monkeypatch: Any
    ) -> None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-api")
        monkeypatch.setenv(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=prod,team=pay%2Cments%20eu,service.name=ignored",
        )
        handler = make_handler(otlp_endpoint=receiver.url)
        assert handler(event("apigw_http"), context()) == {"statusCode": 201}
        for signal in ("traces", "metrics", "logs"):
            (message,) = receiver.messages(signal)
            groups = getattr(message, f"resource_{signal if signal != 'traces' else 'spans'}")
            assert len(groups) == 1
            resource = attributes(groups[0].resource.attributes)
            assert resource["service.name"] == "orders-api"  # OTEL_SERVICE_NAME beats all
            assert resource["cloud.provider"] == "aws"
            assert resource["cloud.platform"] == "aws_lambda"
            assert resource["cloud.region"] == "eu-west-1"
            assert resource["cloud.account.id"] == "123456789012"
            # the version the alias resolved to, not the alias
            assert resource["cloud.resource_id"] == (
                "arn:aws:lambda:eu-west-1:123456789012:function:orders:42"
            )
            assert resource["faas.name"] == "orders"
            assert resource["faas.version"] == "42"
            assert resource["faas.instance"] == lambda_env["AWS_LAMBDA_LOG_STREAM_NAME"]
            assert resource["faas.max_memory"] == 256 * MIB
            assert resource["aws.log.group.names"] == ["/aws/lambda/orders"]
            assert resource["deployment.environment.name"] == "prod"
            assert resource["team"] == "pay,ments eu"
            assert resource["telemetry.sdk.name"] == "lambdascope"
            assert resource["telemetry.sdk.language"] == "python"
            assert resource["telemetry.sdk.version"] == lambdascope.__version__
        assert set(receiver.scopes()) == {("lambdascope", lambdascope.__version__)}

    def test_service_name_defaults_to_the_reports_service(
        self, receiver: OtlpReceiver, lambda_env: dict[str, str]
    ) -> None:
        handler = make_handler(otlp_endpoint=receiver.url, service="checkout")
        handler({}, context())
        resource, _ = receiver.spans()[0]
        assert resource["service.name"] == "checkout"


class TestTraces:
    """Spans with their ids, parents, kinds, times, typed attributes and status."""

    def test_spans_keep_their_tree_ids_and_typed_attributes(
        self, receiver: OtlpReceiver, downstream: str, lambda_env: dict[str, str]
    ) -> None:
        handler = make_handler(downstream, otlp_endpoint=receiver.url)
        with capture_reports(only=False) as reports:
            handler(event("propagation_apigw_http"), context())
        (report,) = reports
        spans = {span.name: span for _, span in receiver.spans()}
        assert set(spans) == {s["name"] for s in report["spans"]} == {ROOT, "price", "GET"}
        root, price, get = spans[ROOT], spans["price"], spans["GET"]
        trace_id = report["trace"]["trace_id"]
        assert {hexid(s.trace_id) for s in spans.values()} == {trace_id}
        # the caller's span, from the traceparent header, is the root's remote parent
        assert hexid(root.parent_span_id) == report["trace"]["parent_span_id"]
        assert root.flags & 0x300 == 0x300  # has-is-remote, is-remote
        assert hexid(root.span_id) == report["trace"]["span_id"]
        assert price.parent_span_id == root.span_id
        assert get.parent_span_id == price.span_id
        assert price.flags & 0x300 == 0x100  # local parent
        assert (root.kind, price.kind, get.kind) == (SERVER, INTERNAL, CLIENT)
        # times in ns, from the report's ms
        first = report["spans"][0]
        assert root.start_time_unix_nano == round(first["start_ms"] * 1000) * 1000
        assert root.end_time_unix_nano - root.start_time_unix_nano == pytest.approx(
            first["duration_ms"] * 1e6, abs=2000
        )
        for span in spans.values():
            assert root.start_time_unix_nano <= span.start_time_unix_nano
            assert span.start_time_unix_nano <= span.end_time_unix_nano
        root_attrs = attributes(root.attributes)
        assert root_attrs["faas.trigger"] == "http"
        assert root_attrs["faas.invocation_id"] == report["invocation"]["request_id"]
        assert root_attrs["faas.coldstart"] is True
        assert root_attrs["http.request.method"] == "POST"
        assert root_attrs["url.path"] == "/orders"
        assert root_attrs["url.scheme"] == "https"
        assert root_attrs["http.route"] == "/orders"
        assert root_attrs["aws.lambda.invoked_arn"].endswith(":function:orders:live")
        assert attributes(price.attributes) == {
            "sku": "A-1", "qty": 3, "ratio": 0.5, "rush": True, "tags": ["a", "b"],
        }  # fmt: skip
        kinds = {kv.key: kv.value.WhichOneof("value") for kv in price.attributes}
        assert kinds == {
            "sku": "string_value", "qty": "int_value", "ratio": "double_value",
            "rush": "bool_value", "tags": "array_value",
        }  # fmt: skip
        get_attrs = attributes(get.attributes)
        assert get_attrs["http.request.method"] == "GET"
        assert get_attrs["http.response.status_code"] == 200
        assert get_attrs["server.address"] == "127.0.0.1"
        assert "A-1" not in get_attrs["url.full"]  # query values redacted, as in the report
        assert root.status.code == 0  # unset: only errors are flagged

    def test_error_sets_status_and_exception_event(
        self, receiver: OtlpReceiver, lambda_env: dict[str, str]
    ) -> None:
        handler = make_handler(otlp_endpoint=receiver.url)
        with pytest.raises(RuntimeError):
            handler({"fail": True}, context())
        root = next(span for _, span in receiver.spans() if span.name == ROOT)
        assert root.status.code == STATUS_ERROR
        assert root.status.message == "RuntimeError: payment declined"
        assert attributes(root.attributes)["error.type"] == "RuntimeError"
        (exc_event,) = root.events
        assert exc_event.name == "exception"
        exc = attributes(exc_event.attributes)
        assert exc["exception.type"] == "RuntimeError"
        assert exc["exception.message"] == "payment declined"
        assert exc["exception.stacktrace"].startswith("Traceback (most recent call last):")
        assert "in handler" in exc["exception.stacktrace"]

    def test_user_span_error_is_an_exception_event(self, receiver: OtlpReceiver) -> None:
        @lambdascope.monitor(exporters="otlp", otlp_endpoint=receiver.url)
        def handler(event: Any, context: Any) -> None:
            try:
                with lambdascope.span("charge"):
                    raise KeyError("card")
            except KeyError:
                pass

        handler({}, context())
        charge = next(span for _, span in receiver.spans() if span.name == "charge")
        assert charge.status.code == STATUS_ERROR
        assert charge.status.message.startswith("KeyError")
        assert [e.name for e in charge.events] == ["exception"]
        assert "exception.type" not in attributes(charge.attributes)

    def test_queue_trigger_is_a_consumer_span_linked_to_its_producers(
        self, receiver: OtlpReceiver
    ) -> None:
        handler = make_handler(otlp_endpoint=receiver.url)
        with capture_reports(only=False) as reports:
            handler(event("propagation_sqs_batch"), context())
        root = next(span for _, span in receiver.spans() if span.name == ROOT)
        assert root.kind == CONSUMER
        assert root.parent_span_id == b""
        expected = [(lk["trace_id"], lk["span_id"]) for lk in reports[0]["spans"][0]["links"]]
        assert [(hexid(lk.trace_id), hexid(lk.span_id)) for lk in root.links] == expected
        assert len(expected) == 3
        first = attributes(root.links[0].attributes)
        assert first["messaging.message.id"] == "11111111-aaaa-4bbb-8ccc-000000000001"
        assert attributes(root.attributes)["faas.trigger"] == "pubsub"

    def test_unsampled_invocation_sends_no_trace_request(self, receiver: OtlpReceiver) -> None:
        handler = make_handler(otlp_endpoint=receiver.url, sample_rate=0.0)
        handler({}, context())
        assert receiver.requests("/v1/traces") == []
        assert len(receiver.requests("/v1/metrics")) == 1
        assert len(receiver.requests("/v1/logs")) == 1


class TestMetrics:
    """Built-in FaaS metrics and custom metrics: types, units, values, temporality."""

    def test_builtin_metrics_types_units_and_values(
        self, receiver: OtlpReceiver, lambda_env: dict[str, str]
    ) -> None:
        handler = make_handler(otlp_endpoint=receiver.url)
        with capture_reports(only=False) as reports:
            handler(event("apigw_http"), context())
            with pytest.raises(RuntimeError):
                handler({"fail": True}, context())
        cold, warm = reports
        metrics = by_name(receiver)
        duration = [p for m in metrics["faas.invoke_duration"] for p in points(m)]
        assert metrics["faas.invoke_duration"][0].unit == "s"
        assert metrics["faas.invoke_duration"][0].histogram.aggregation_temporality == 1
        assert [p.count for p in duration] == [1, 1]
        for point, report in zip(duration, reports):
            seconds = report["invocation"]["duration_ms"] / 1000
            assert point.sum == pytest.approx(seconds)
            assert point.min == point.max == point.sum
            assert sum(point.bucket_counts) == 1
            assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
            assert point.explicit_bounds[-1] == 900.0  # Lambda's longest timeout, in s
            assert point.start_time_unix_nano < point.time_unix_nano
        assert attributes(duration[0].attributes) == {"faas.trigger": "http"}
        assert attributes(duration[1].attributes) == {"faas.trigger": "other"}
        # the invocation is an exemplar, never a point attribute
        (exemplar,) = duration[0].exemplars
        assert attributes(exemplar.filtered_attributes) == {
            "faas.invocation_id": cold["invocation"]["request_id"]
        }
        assert hexid(exemplar.trace_id) == cold["trace"]["trace_id"]
        assert hexid(exemplar.span_id) == cold["trace"]["span_id"]

        init = [p for m in metrics["faas.init_duration"] for p in points(m)]
        assert len(init) == 1  # the cold start only
        assert init[0].sum == pytest.approx(cold["invocation"]["init_duration_ms"] / 1000)
        assert attributes(init[0].attributes)["faas.coldstart"] is True

        def sums(name: str) -> list[int]:
            found = metrics[name]
            for metric in found:
                assert metric.sum.is_monotonic
                assert metric.sum.aggregation_temporality == 1  # delta
            return [number(p) for m in found for p in points(m)]

        assert sums("faas.invocations") == [1, 0]  # successful ones, per the conventions
        assert sums("faas.coldstarts") == [1, 0]
        assert sums("faas.errors") == [0, 1]
        assert sums("faas.timeouts") == [0, 0]
        assert metrics["faas.coldstarts"][0].unit == "{coldstart}"
        error_point = points(metrics["faas.errors"][-1])[-1]
        assert hexid(error_point.exemplars[0].trace_id) == warm["trace"]["trace_id"]

        mem = [p for m in metrics["faas.mem_usage"] for p in points(m)]
        assert metrics["faas.mem_usage"][0].unit == "By"
        assert mem[0].sum == pytest.approx(cold["resources"]["rss_peak_mb"] * MIB, rel=1e-6)
        usage = points(metrics["lambdascope.memory.usage"][0])
        assert metrics["lambdascope.memory.usage"][0].WhichOneof("data") == "gauge"
        assert number(usage[0]) == round(cold["resources"]["rss_end_mb"] * MIB)
        peak = points(metrics["lambdascope.memory.peak"][0])
        assert number(peak[0]) == round(cold["resources"]["rss_peak_mb"] * MIB)
        if cold["resources"]["sandbox_memory_mb"] is not None:
            assert "lambdascope.sandbox.memory.usage" in metrics
        assert metrics["lambdascope.memory.utilization"][0].unit == "1"
        for metric_list in metrics.values():
            for metric in metric_list:
                for point in points(metric):
                    assert "faas.invocation_id" not in attributes(point.attributes)

    def test_custom_metrics_with_dimensions_and_units(self, receiver: OtlpReceiver) -> None:
        handler = make_handler(otlp_endpoint=receiver.url)
        handler({}, context())
        metrics = by_name(receiver)
        (placed,) = metrics["orders_placed"]
        assert placed.WhichOneof("data") == "sum"
        assert placed.unit == "{count}"
        assert placed.sum.is_monotonic and placed.sum.aggregation_temporality == 1
        (point,) = points(placed)  # 2 + 1 for the same dimensions: one point per invocation
        assert number(point) == 3
        assert point.WhichOneof("value") == "as_int"
        assert attributes(point.attributes) == {"channel": "web"}
        (value,) = metrics["basket_value"]
        assert value.WhichOneof("data") == "gauge" and value.unit == ""
        assert number(points(value)[0]) == 12.5
        assert attributes(points(value)[0].attributes) == {"channel": "web"}
        (latency,) = metrics["pricing_latency"]
        assert latency.WhichOneof("data") == "gauge" and latency.unit == "ms"
        assert number(points(latency)[0]) == 7.25

    def test_one_request_per_signal_carries_a_whole_batch(self, receiver: OtlpReceiver) -> None:
        receiver.status = 503
        handler = make_handler(otlp_endpoint=receiver.url)
        for _ in range(3):
            lambdascope.flush()  # skip the back-off: every report is tried, then spooled
            handler({}, context())
        receiver.status = 200
        receiver.clear()
        assert lambdascope.flush() is True
        assert [r.path for r in receiver.requests()] == ["/v1/metrics", "/v1/traces", "/v1/logs"]
        (metrics,) = receiver.messages("metrics")
        assert len(metrics.resource_metrics) == 1  # one function, one resource
        durations = [
            m for m in metrics.resource_metrics[0].scope_metrics[0].metrics
            if m.name == "faas.invoke_duration"
        ]  # fmt: skip
        assert len(durations) == 1 and len(durations[0].histogram.data_points) == 3
        assert len({span.trace_id for _, span in receiver.spans()}) == 3


class TestLogs:
    """Captured log records, correlated with the trace and the span that was current."""

    def test_records_carry_trace_span_severity_and_invocation(self, receiver: OtlpReceiver) -> None:
        handler = make_handler(otlp_endpoint=receiver.url)
        with capture_reports(only=False) as reports:
            handler({}, context())
        (report,) = reports
        spans = {span.name: span for _, span in receiver.spans()}
        records = [record for _, record in receiver.logs()]
        assert [r.body.string_value for r in records] == ["received order", "price lookup slow"]
        first, second = records
        assert (first.severity_text, first.severity_number) == ("WARNING", 13)
        assert (second.severity_text, second.severity_number) == ("ERROR", 17)
        assert first.trace_id == second.trace_id == spans[ROOT].trace_id
        assert first.span_id == spans[ROOT].span_id  # logged outside any user span
        assert second.span_id == spans["price"].span_id  # logged inside "price"
        assert first.flags & 1 == 1
        assert first.time_unix_nano == round(report["logs"][0]["timestamp_ms"] * 1000) * 1000
        attrs = attributes(first.attributes)
        assert attrs == {
            "logger.name": "orders.app",
            "faas.invocation_id": report["invocation"]["request_id"],
        }


class TestTransport:
    """Environment, compression, headers, endpoints and the time budget."""

    def test_gzip_from_env_per_signal(self, receiver: OtlpReceiver, monkeypatch: Any) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none")
        handler = make_handler(otlp_endpoint=receiver.url)
        handler({}, context())
        encodings = {r.path: r.headers.get("Content-Encoding") for r in receiver.requests()}
        assert encodings == {"/v1/traces": "gzip", "/v1/metrics": "gzip", "/v1/logs": None}
        assert len(receiver.spans()) == 2  # decoded after gunzip

    def test_headers_from_env_reach_the_receiver(
        self, receiver: OtlpReceiver, monkeypatch: Any
    ) -> None:
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s%3Dcret%2C1, x-team = payments"
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-dataset=metrics,x-team=m")
        handler = make_handler(otlp_endpoint=receiver.url)
        handler({}, context())
        by_path = {r.path: r.headers for r in receiver.requests()}
        for headers in by_path.values():
            assert headers["x-api-key"] == "s=cret,1"  # percent-decoded
            assert headers["Content-Type"] == "application/x-protobuf"
            assert headers["User-Agent"].startswith("lambdascope/")
        assert by_path["/v1/traces"]["x-team"] == "payments"
        assert by_path["/v1/metrics"]["x-team"] == "m"  # the signal's own header wins
        assert by_path["/v1/metrics"]["x-dataset"] == "metrics"
        assert "x-dataset" not in by_path["/v1/logs"]

    def test_bad_header_is_left_out_and_its_value_never_logged(
        self, receiver: OtlpReceiver, monkeypatch: Any, caplog: Any
    ) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "bad name=s3cr3t%0D%0A,ok=1")
        with caplog.at_level(logging.WARNING, logger="lambdascope"):
            exporter = OtlpExporter(receiver.url)
        assert exporter.signals[0].headers == {"ok": "1"}
        assert "OTEL_EXPORTER_OTLP_HEADERS" in caplog.text
        assert "s3cr3t" not in caplog.text

    def test_base_endpoint_path_kept_and_signal_endpoints_used_as_is(
        self, receiver: OtlpReceiver
    ) -> None:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url + "/otlp/",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": receiver.url + "/v1/logs",
        }
        exporter = OtlpExporter(None, environ=env)
        assert [s.url for s in exporter.signals] == [
            receiver.url + "/otlp/v1/metrics",
            receiver.url + "/otlp/v1/traces",
            receiver.url + "/v1/logs",
        ]
        # the same OTel endpoint resolved by the config: the per-signal one still wins
        same = OtlpExporter(receiver.url + "/otlp", environ=env)
        assert same.signals[2].url == receiver.url + "/v1/logs"
        # lambdascope's own endpoint, set explicitly, serves every signal
        explicit = OtlpExporter("http://127.0.0.1:9/mine", environ=env)
        assert [s.url for s in explicit.signals] == [
            "http://127.0.0.1:9/mine/v1/metrics",
            "http://127.0.0.1:9/mine/v1/traces",
            "http://127.0.0.1:9/mine/v1/logs",
        ]
        assert OtlpExporter(None, environ={}).endpoint == "http://localhost:4318"

    def test_one_connection_for_all_signals_across_invocations(
        self, receiver: OtlpReceiver
    ) -> None:
        handler = make_handler(otlp_endpoint=receiver.url)
        for _ in range(3):
            handler({}, context())
        assert len(receiver.requests()) == 9
        assert receiver.connections == 1

    @pytest.mark.parametrize(
        ("raw", "expected_s"),
        [(None, 10.0), ("250", 0.25), ("2500.5", 2.5005), ("soon", 10.0), ("-1", 10.0)],
    )
    def test_timeout_env_is_milliseconds(
        self, raw: str | None, expected_s: float, caplog: Any
    ) -> None:
        env = {} if raw is None else {"OTEL_EXPORTER_OTLP_TIMEOUT": raw}
        with caplog.at_level(logging.WARNING, logger="lambdascope"):
            exporter = OtlpExporter("http://127.0.0.1:9", environ=env)
        assert {s.timeout_s for s in exporter.signals} == {expected_s}
        if raw in ("soon", "-1"):
            assert "OTEL_EXPORTER_OTLP_TIMEOUT" in caplog.text

    def test_otel_timeout_bounds_each_request_below_the_flush_budget(
        self, receiver: OtlpReceiver, monkeypatch: Any
    ) -> None:
        receiver.hang_s = 5.0
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "100")
        exporter = OtlpExporter(receiver.url)
        line = json.dumps(_report())
        t0 = time.perf_counter()
        assert exporter.export([], [line], 3.0) is ExportResult.RETRY
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.6, elapsed  # three requests of at most 100 ms each, not 3 s

    def test_hanging_receiver_bounded_by_the_flush_budget(self, receiver: OtlpReceiver) -> None:
        receiver.hang_s = 5.0
        handler = make_handler(otlp_endpoint=receiver.url, flush_timeout_ms=300)
        t0 = time.perf_counter()
        assert handler({}, context()) == {"statusCode": 201}
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.8, f"the export waited {elapsed:.2f}s past its 300 ms budget"

    def test_receiver_down_does_not_break_the_handler(self) -> None:
        handler = make_handler(otlp_endpoint="http://127.0.0.1:9", flush_timeout_ms=300)
        assert handler({}, context()) == {"statusCode": 201}


class TestDelivery:
    """Answers, the spool and retries, through the pipeline."""

    def test_server_error_spools_then_delivers_when_back(
        self, receiver: OtlpReceiver, tmp_path: Any, monkeypatch: Any
    ) -> None:
        monkeypatch.setenv("LAMBDASCOPE_SPOOL_DIR", str(tmp_path))
        receiver.status = 500
        handler = make_handler(otlp_endpoint=receiver.url)
        handler({}, context())
        assert receiver.spans() == [] and len(receiver.requests()) == 3
        assert list((tmp_path / "otlp").glob("*.jsonl"))  # waiting in the spool
        receiver.status = 200
        assert lambdascope.flush() is True
        assert len(receiver.spans()) == 2
        assert len(receiver.logs()) == 2
        assert not list((tmp_path / "otlp").glob("*.jsonl"))

    def test_retry_resends_only_the_signal_that_failed(self, receiver: OtlpReceiver) -> None:
        receiver.status_by_path["/v1/metrics"] = 503
        handler = make_handler(otlp_endpoint=receiver.url)
        handler({}, context())
        assert len(receiver.spans()) == 2 and receiver.metrics() == []
        del receiver.status_by_path["/v1/metrics"]
        receiver.clear()
        assert lambdascope.flush() is True
        assert [r.path for r in receiver.requests()] == ["/v1/metrics"]  # no duplicate spans
        assert "faas.invoke_duration" in by_name(receiver)

    @pytest.mark.parametrize("status", [400, 401, 403, 413])
    def test_refusal_is_final_and_logged_once(
        self, receiver: OtlpReceiver, status: int, caplog: Any
    ) -> None:
        receiver.status = status
        handler = make_handler(otlp_endpoint=receiver.url)
        with caplog.at_level(logging.WARNING, logger="lambdascope"):
            handler({}, context())
            handler({}, context())
        assert len(receiver.requests()) == 6  # each signal of each report once, no retries
        refused = [r for r in caplog.records if f"with {status}" in r.getMessage()]
        assert len(refused) == 1
        assert "bad request from test" in refused[0].getMessage()  # the receiver's message
        receiver.clear()
        assert lambdascope.flush() is True
        assert receiver.requests() == []

    @pytest.mark.parametrize("status", [408, 429, 502])
    def test_retryable_statuses_are_kept(self, receiver: OtlpReceiver, status: int) -> None:
        receiver.status = status
        handler = make_handler(otlp_endpoint=receiver.url)
        handler({}, context())
        receiver.status = 200
        assert lambdascope.flush() is True
        assert len(receiver.spans()) == 2

    def test_partial_success_is_delivered_and_logged_once(
        self, receiver: OtlpReceiver, caplog: Any
    ) -> None:
        receiver.partial["/v1/traces"] = (1, "span too old")
        handler = make_handler(otlp_endpoint=receiver.url)
        with caplog.at_level(logging.WARNING, logger="lambdascope"):
            handler({}, context())
            handler({}, context())
        partial = [r for r in caplog.records if "rejected 1" in r.getMessage()]
        assert len(partial) == 1 and "span too old" in partial[0].getMessage()
        receiver.clear()
        assert lambdascope.flush() is True
        assert receiver.requests() == []  # accepted: not sent again


class TestTimeouts:
    """A timeout report, then the same invocation's report when it finishes after all: each
    span goes out once and nothing is counted twice."""

    def test_finishing_after_a_timeout_report_sends_only_the_rest(
        self, receiver: OtlpReceiver
    ) -> None:
        @lambdascope.monitor(exporters="otlp", otlp_endpoint=receiver.url, timeout_warning_ms=200)
        def handler(event: Any, context: Any) -> str:
            lambdascope.metric("started", 1, "Count")
            log.warning("before")
            with lambdascope.span("done-part"):
                pass
            with lambdascope.span("stuck-part"):
                time.sleep(0.5)  # the watchdog fires at 0.3 s
            lambdascope.metric("finished", 1, "Count")
            log.warning("after")
            return "finished late"

        with capture_reports(only=False) as reports:
            assert handler({}, context(timeout_s=0.5 + 0.3 - 0.1)) == "finished late"
        assert [r["invocation"]["status"] for r in reports] == ["timeout", "ok"]
        names = sorted(span.name for _, span in receiver.spans())
        assert names == sorted([ROOT_OF_TIMEOUT, "done-part", "stuck-part"])  # once each
        root = next(span for _, span in receiver.spans() if span.name == ROOT_OF_TIMEOUT)
        assert root.status.code == STATUS_ERROR
        assert root.status.message.startswith("Timeout: ")
        metrics = by_name(receiver)

        def values(name: str) -> list[float]:
            return [number(p) for m in metrics.get(name, []) for p in points(m)]

        assert values("faas.timeouts") == [1]
        assert values("faas.errors") == [0, 0]  # the timeout report's, then the outcome
        assert values("faas.invocations") == [0]  # counted once, as a timeout
        assert sum(len(points(m)) for m in metrics["faas.invoke_duration"]) == 1
        assert values("started") == [1] and values("finished") == [1]
        bodies = [record.body.string_value for _, record in receiver.logs()]
        assert bodies == ["before", "after"]


#: The invocation span of the handler defined in TestTimeouts.
ROOT_OF_TIMEOUT = (
    "TestTimeouts.test_finishing_after_a_timeout_report_sends_only_the_rest.<locals>.handler"
)


class TestDirect:
    """The exporter on its own, with hand-made reports."""

    def test_reports_from_several_functions_get_one_resource_each(
        self, receiver: OtlpReceiver
    ) -> None:
        exporter = OtlpExporter(receiver.url, environ={})
        a, b = _report(name="a"), _report(name="b")
        lines = [json.dumps(r) for r in (a, b, _report(name="a"))]
        assert exporter.export([], lines, 2.0) is ExportResult.SUCCESS
        (traces,) = receiver.messages("traces")
        names = [attributes(rs.resource.attributes)["faas.name"] for rs in traces.resource_spans]
        assert names == ["a", "b"]
        assert len(traces.resource_spans[0].scope_spans[0].spans) == 2

    def test_timeout_and_crash_are_errors(self, receiver: OtlpReceiver) -> None:
        exporter = OtlpExporter(receiver.url, environ={})
        timeout = _report(status="timeout")
        crashed = _report(status="crashed", error={
            "type": "OutOfMemory", "message": "killed", "stack": [],
        })  # fmt: skip
        crashed["invocation"]["duration_ms"] = crashed["invocation"]["end_ms"] = None
        lines = [json.dumps(timeout), json.dumps(crashed)]
        assert exporter.export([], lines, 2.0) is ExportResult.SUCCESS
        roots = [span for _, span in receiver.spans()]
        assert [s.status.code for s in roots] == [STATUS_ERROR, STATUS_ERROR]
        assert roots[1].status.message == "OutOfMemory: killed"
        metrics = by_name(receiver)
        assert [number(p) for m in metrics["faas.timeouts"] for p in points(m)] == [1, 0]
        assert [number(p) for m in metrics["faas.errors"] for p in points(m)] == [0, 1]
        # a crashed invocation has no duration
        assert sum(len(points(m)) for m in metrics["faas.invoke_duration"]) == 1

    def test_concurrent_exports_take_turns_on_the_connection(self, receiver: OtlpReceiver) -> None:
        exporter = OtlpExporter(receiver.url, environ={})
        results: list[ExportResult] = []

        def send() -> None:
            for _ in range(10):
                results.append(exporter.export([], [json.dumps(_report())], 2.0))

        threads = [threading.Thread(target=send) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert results == [ExportResult.SUCCESS] * 30
        assert len(receiver.spans()) == 30

    def test_report_objects_without_lines(self, receiver: OtlpReceiver) -> None:
        exporter = OtlpExporter(receiver.url, environ={})
        report = _report(name="objects")
        assert exporter.export([report], [], 2.0) is ExportResult.SUCCESS
        assert [attrs["faas.name"] for attrs, _ in receiver.spans()] == ["objects"]
        assert exporter.export([], [], 2.0) is ExportResult.SUCCESS
        assert len(receiver.requests()) == 3

    @pytest.mark.faults
    def test_a_report_that_cannot_be_encoded_does_not_stop_the_batch(
        self, receiver: OtlpReceiver, internal_errors: list[Any]
    ) -> None:
        exporter = OtlpExporter(receiver.url, environ={})
        bad = _report(name="bad")
        bad["spans"][0]["start_ms"] = "yesterday"
        bad["logs"] = [{"timestamp_ms": "x", "level": "INFO", "logger": "l", "message": "m"}]
        lines = [json.dumps(bad), json.dumps(_report(name="good")), "{not json"]
        assert exporter.export([], lines, 2.0) is ExportResult.SUCCESS
        assert [attrs["faas.name"] for attrs, _ in receiver.spans()] == ["good"]
        assert [attrs["faas.name"] for attrs, _ in receiver.logs()] == ["good"]
        assert {site for site, _ in internal_errors} == {
            "exporter.otlp.traces", "exporter.otlp.logs",
        }  # fmt: skip

    def test_missing_extra_is_named(self, monkeypatch: Any) -> None:
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "opentelemetry.proto" else real(name, *a),
        )
        with pytest.raises(ImportError, match=r"lambdascope\[otlp\]"):
            OtlpExporter("http://127.0.0.1:9")


def _report(
    name: str = "fn", status: str = "ok", error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A minimal report as a spool would hold it."""
    import secrets

    now = time.time() * 1000.0
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return {
        "schema": "lambdascope/1",
        "agent": {"name": "lambdascope", "version": lambdascope.__version__, "python": "3.11.7",
                  "overhead": {"init_ms": None, "invocation_ms": 0.1}},
        "function": {"name": name, "version": "$LATEST",
                     "arn": f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
                     "region": "us-east-1", "architecture": "arm64", "memory_limit_mb": 128,
                     "log_group": None, "log_stream": None, "service": name},
        "invocation": {"request_id": secrets.token_hex(8), "start_ms": now - 5,
                       "end_ms": now, "duration_ms": 5.0, "timeout_ms": 3000.0,
                       "cold_start": False, "init_duration_ms": None, "init_type": "on-demand",
                       "proactive_init": False, "since_restore_ms": None, "status": status,
                       "sampled": True, "trigger": {"type": "direct", "source": None},
                       "batch": None, "tenant_id": None},
        "error": error,
        "resources": {"rss_start_mb": 30.0, "rss_end_mb": 31.0, "rss_peak_mb": 31.5,
                      "memory_used_pct": 24.6, "cpu_user_ms": 1.0, "cpu_system_ms": 0.5,
                      "net_rx_bytes": 10, "net_tx_bytes": 20, "tmp_used_mb": 0.0,
                      "open_fds": 5, "threads": 1, "rss_growth_mb": 0.0,
                      "leak_suspected": False, "sandbox_memory_mb": None},
        "metrics": [], "labels": [],
        "trace": {"trace_id": trace_id, "span_id": span_id, "parent_span_id": None},
        "spans": [{"span_id": span_id, "parent_span_id": None, "name": name,
                   "kind": "server", "start_ms": now - 5, "duration_ms": 5.0,
                   "status": "error" if status != "ok" else "ok",
                   "attributes": {"faas.trigger": "other"}}],
        "dropped_spans": 0,
        "logs": [{"timestamp_ms": now - 1, "level": "INFO", "logger": "x", "message": "hi"}],
    }  # fmt: skip


class TestColdStartCost:
    """Users who do not configure ``otlp`` never load protobuf; those who do load it at the
    first export, not when the exporter is built."""

    @pytest.fixture(autouse=True)
    def _spool(self, tmp_path: Any) -> None:
        self.spool = str(tmp_path / "spool")

    def _run(self, code: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LAMBDASCOPE_"))}
        env["LAMBDASCOPE_SPOOL_DIR"] = self.spool
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def test_stdout_exporter_never_loads_protobuf(self) -> None:
        out = self._run(
            "import sys, lambdascope\n"
            "from lambdascope.testing import fake_context\n"
            "@lambdascope.monitor(exporters='stdout')\n"
            "def handler(event, context):\n"
            "    lambdascope.metric('m', 1, 'Count')\n"
            "    return 1\n"
            "assert handler({}, fake_context()) == 1\n"
            "loaded = sorted(m for m in sys.modules if m.startswith(('google.protobuf',"
            " 'opentelemetry.proto', 'lambdascope.exporters.otlp',"
            " 'lambdascope.exporters._otlp')))\n"
            "print('LOADED', loaded)\n"
        )
        assert out.splitlines()[-1] == "LOADED []"

    def test_building_the_exporter_does_not_load_protobuf(self) -> None:
        out = self._run(
            "import sys\n"
            "from lambdascope.exporters.otlp import OtlpExporter\n"
            "OtlpExporter('http://127.0.0.1:9', environ={})\n"
            "print(sorted(m for m in sys.modules if m.startswith('google.protobuf')))\n"
        )
        assert out == "[]"


class TestSecrets:
    """What leaves through OTLP is what the pipeline redacted: secret environment values too."""

    def test_secret_environment_values_never_reach_the_receiver(
        self, receiver: OtlpReceiver, monkeypatch: Any
    ) -> None:
        secret = "sk_live_9f8e7d6c5b4a3210"
        monkeypatch.setenv("PAYMENT_API_KEY", secret)

        @lambdascope.monitor(exporters="otlp", otlp_endpoint=receiver.url)
        def handler(event: Any, context: Any) -> None:
            with lambdascope.span("charge", note=f"paying with {secret}"):
                log.warning("charging %s", secret)
            lambdascope.metric("charges", 1, "Count", account=secret)
            raise ValueError(f"declined for {secret}")

        with pytest.raises(ValueError):
            handler({}, context())
        assert len(receiver.requests()) == 3
        for request in receiver.requests():
            assert secret.encode() not in request.raw

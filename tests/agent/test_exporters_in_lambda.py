"""``LAMBDASCOPE_EXPORTERS=http,otlp,emf`` together, under the real runtime client.

``handlers/exporters_app.py`` runs in a sandbox (``awslambdaric`` against the Runtime API
emulator) with the default ``LAMBDASCOPE_FLUSH=auto`` (delivery after the response). Each
invocation goes three ways at once:

* ``http``: its report to :class:`Collector`, a lambdascope collector on loopback;
* ``otlp``: its spans, metrics and log records to ``tests/otlp_receiver.py``'s receiver, which
  decodes every request with ``opentelemetry-proto``;
* ``emf``: its CloudWatch EMF document(s) on the sandbox's stdout, checked against
  ``tests/emf_schema.json``.

All three must describe the same invocation: the request id and the trace id (the X-Ray root the
runtime was given) agree everywhere, and the spans sent over OTLP are the spans of the report.
Everything of invocation N has arrived before invocation N+1 starts: the handler of N+1 calls
:class:`Downstream`, which notes what the collector and the receiver hold at that moment, and on
stdout the EMF document of N comes before the handler's first line of N+1.

With the OTLP receiver down, the ``otlp`` part waits in the spool and goes out once the receiver
is back (each span once), while ``http`` and ``emf`` deliver as if nothing happened. With only
``/v1/traces`` refused for a while, the retry sends the traces alone. A timeout report followed by
the late end of the same invocation, and an invocation whose process died (reported by the next
process), are each sent once and counted once on every exporter.

The module also checks that the OpenTelemetry Collector configurations in docs/exporters.md are
valid YAML wired the way the text says.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pathlib
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import jsonschema
import pytest

import otlp_receiver
from otlp_receiver import OtlpReceiver, attributes

ROOT = pathlib.Path(__file__).resolve().parents[2]
EMF_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((ROOT / "tests" / "emf_schema.json").read_text())
)
HANDLER = "exporters_app.handler"
FUNCTION_NAME = "lambdascope-test"  # tests/agent/conftest.py
NAMESPACE = "Shop/Orders"
MIB = 1024 * 1024
SERVER, CLIENT = 2, 3  # Span.SpanKind
STATUS_ERROR = 2
MARKER = "HANDLER-START "


# -- peers on loopback -------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """A threaded server on 127.0.0.1 that can cut its kept-alive connections (a server that
    goes down takes its connections with it; ``shutdown`` alone leaves them served)."""

    daemon_threads = True

    def __init__(self, handler: Any, port: int = 0) -> None:
        self.open_connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def go_down(self) -> None:
        self.shutdown()
        self.server_close()
        with self._conn_lock:
            connections = list(self.open_connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def serve(self) -> None:
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


class Collector:
    """A lambdascope collector (``POST /v1/reports``, SPEC section 6) that answers 202 and keeps
    every report, in arrival order."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                payload = json.loads(body)
                with outer._lock:
                    outer.reports.extend(payload if isinstance(payload, list) else [payload])
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(Handler)
        self.url = self.server.url
        self.server.serve()

    def by_request_id(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {r["invocation"]["request_id"]: r for r in self.reports}

    def ids(self) -> list[str]:
        with self._lock:
            return [r["invocation"]["request_id"] for r in self.reports]

    def close(self) -> None:
        self.server.go_down()


class Downstream:
    """The server the handler calls (its outgoing HTTP span). Each call records the headers it
    came with and ``snapshot()``: what the other peers held while that invocation ran."""

    def __init__(self, snapshot: Callable[[], Any]) -> None:
        self.calls: dict[str, tuple[dict[str, str], Any]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                rid = self.path.partition("rid=")[2]
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.calls[rid] = (headers, snapshot())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(Handler)
        self.url = self.server.url
        self.server.serve()

    def close(self) -> None:
        self.server.go_down()


def receiver_on(port: int) -> OtlpReceiver:
    """An :class:`OtlpReceiver` on ``port`` (0: a free one) whose server can go down with its
    connections (:meth:`_Server.go_down`)."""

    def server(address: Any, handler: Any) -> _Server:
        return _Server(handler, port)

    with mock.patch.object(otlp_receiver, "ThreadingHTTPServer", server):
        return OtlpReceiver()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = receiver_on(0)
    yield r
    r.server.go_down()


# -- what the OTLP receiver got, per invocation ------------------------------------------------


def hexid(data: bytes) -> str:
    return bytes(data).hex()


def xray_root(header: str) -> str:
    """The 32 hex digits of the ``Root=1-xxxxxxxx-yyy…`` of an X-Ray trace header."""
    found = re.search(r"Root=1-([0-9a-f]{8})-([0-9a-f]{24})", header)
    assert found, header
    return found.group(1) + found.group(2)


def points(metric: Any) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data")).data_points)


def number(point: Any) -> float:
    return getattr(point, point.WhichOneof("value"))


class Otlp:
    """What one or more receivers accepted, sorted by invocation."""

    def __init__(self, *receivers: OtlpReceiver) -> None:
        self.spans: list[tuple[dict[str, Any], Any]] = []
        self.logs: list[tuple[dict[str, Any], Any]] = []
        # one entry per accepted metrics request: the invocation ids of its duration exemplars,
        # and its metrics by name
        self.metric_requests: list[tuple[list[str], dict[str, list[Any]]]] = []
        self.resources: list[dict[str, Any]] = []
        for r in receivers:
            self.spans += r.spans()
            self.logs += r.logs()
            for message in r.messages("metrics"):
                by_name: dict[str, list[Any]] = {}
                for rm in message.resource_metrics:
                    self.resources.append(attributes(rm.resource.attributes))
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            by_name.setdefault(metric.name, []).append(metric)
                ids = [
                    attributes(e.filtered_attributes)["faas.invocation_id"]
                    for m in by_name.get("faas.invoke_duration", [])
                    for p in points(m)
                    for e in p.exemplars
                ]
                self.metric_requests.append((ids, by_name))
        self.resources += [resource for resource, _ in self.spans + self.logs]

    def root(self, rid: str) -> Any:
        roots = [
            span for _, span in self.spans
            if attributes(span.attributes).get("faas.invocation_id") == rid
        ]  # fmt: skip
        assert len(roots) == 1, f"{len(roots)} invocation spans for {rid}"
        return roots[0]

    def spans_of(self, rid: str) -> list[Any]:
        trace_id = self.root(rid).trace_id
        return [span for _, span in self.spans if span.trace_id == trace_id]

    def logs_of(self, rid: str) -> list[Any]:
        return [
            record for _, record in self.logs
            if attributes(record.attributes).get("faas.invocation_id") == rid
        ]  # fmt: skip

    def metrics_of(self, rid: str) -> dict[str, list[Any]]:
        """The metrics sent for one invocation alone (a request that carries only it)."""
        found = [by_name for ids, by_name in self.metric_requests if ids == [rid]]
        assert len(found) == 1, f"{len(found)} metrics requests for {rid} alone"
        return found[0]

    def duration_exemplars(self) -> list[str]:
        return [rid for ids, _ in self.metric_requests for rid in ids]


def otlp_ids(*receivers: OtlpReceiver) -> dict[str, set[str]]:
    """Invocation ids the receivers accepted, per signal."""
    got = Otlp(*receivers)
    return {
        "traces": {
            attributes(s.attributes)["faas.invocation_id"]
            for _, s in got.spans
            if "faas.invocation_id" in attributes(s.attributes)
        },
        "metrics": set(got.duration_exemplars()),
        "logs": {attributes(r.attributes).get("faas.invocation_id") for _, r in got.logs},
    }


# -- EMF on stdout -----------------------------------------------------------------------------


def _no_constants(token: str) -> Any:
    raise AssertionError(f"{token} in an EMF document")


def check_emf(doc: dict[str, Any]) -> dict[str, Any]:
    """tests/emf_schema.json, then what a schema cannot say: every member a directive names is
    there, a string for a dimension, a finite number (or up to 100 of them) for a metric."""
    errors = sorted(EMF_VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, f"{list(errors[0].path)}: {errors[0].message}"
    names = []
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(doc.get(name), str) and doc[name].strip(), (name, doc)
        for definition in directive["Metrics"]:
            names.append(definition["Name"])
            value = doc.get(definition["Name"])
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            for v in values:
                assert isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    assert len(names) == len(set(names)) <= 100
    return doc


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    return [
        check_emf(json.loads(line, parse_constant=_no_constants))
        for line in stdout.splitlines()
        if line.startswith('{"_aws"')
    ]


def stdout_with(lam: Any, rids: list[str]) -> str:
    """The sandbox's stdout once it shows an EMF document of each of ``rids``: they were written
    before the sandbox went idle, but the thread reading the pipe may be a moment behind."""
    wait_until(
        lambda: all(f'"requestId":"{rid}"' in lam.sandbox.stdout for rid in rids),
        2.0,
        "the EMF documents on stdout",
    )
    return lam.sandbox.stdout


def emf_metrics(docs: list[dict[str, Any]]) -> dict[str, tuple[str, str, dict[str, str], Any]]:
    """Metric name -> (namespace, unit, dimensions, value) over the documents of one invocation
    (each name once)."""
    out: dict[str, tuple[str, str, dict[str, str], Any]] = {}
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            dims = {name: doc[name] for s in directive["Dimensions"] for name in s}
            for definition in directive["Metrics"]:
                name = definition["Name"]
                assert name not in out, f"{name} twice for one invocation"
                out[name] = (directive["Namespace"], definition.get("Unit"), dims, doc[name])
    return out


# -- sandboxes ---------------------------------------------------------------------------------


def start(sandboxes: Any, collector: Collector, otlp_url: str, **more: str) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("OTEL_")}
    env.update(
        {
            "LAMBDASCOPE_EXPORTERS": "http,otlp,emf",
            "LAMBDASCOPE_COLLECTOR_URL": collector.url,
            "LAMBDASCOPE_OTLP_ENDPOINT": otlp_url,
            "LAMBDASCOPE_EMF_NAMESPACE": NAMESPACE,
            "LAMBDASCOPE_FLUSH": None,  # the default: auto
            **more,
        }
    )
    return sandboxes(HANDLER, env=env)


def invoke(lam: Any, event: dict[str, Any]) -> Any:
    result = lam.invoke(event, timeout_s=5.0)
    assert lam.sandbox.wait_idle(5.0), f"the sandbox stayed busy\n{lam.sandbox.output}"
    return result


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def spooled(spool: pathlib.Path, lane: str) -> list[str]:
    """Request ids waiting in the spool for ``lane``."""
    out = []
    for path in sorted((spool / lane).glob("*.jsonl")) if (spool / lane).is_dir() else []:
        if path.name.startswith("."):
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line)["invocation"]["request_id"])
    return out


# -- 1. three exporters, one invocation --------------------------------------------------------


def test_http_otlp_and_emf_describe_the_same_invocation_before_the_next_starts(
    sandboxes: Any, collector: Collector, receiver: OtlpReceiver, validate_report: Any
) -> None:
    downstream = Downstream(lambda: (set(collector.ids()), otlp_ids(receiver)))
    try:
        lam = start(sandboxes, collector, receiver.url)
        events = [
            {"downstream": downstream.url, "orders": 2},  # cold
            {"downstream": downstream.url, "orders": 3},  # warm
            {"downstream": downstream.url, "orders": 1, "action": "raise"},  # error
            {"downstream": downstream.url, "orders": 4},  # warm after an error
        ]
        results = [invoke(lam, event) for event in events]
    finally:
        downstream.close()
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].payload["errorType"] == "ValueError"
    rids = [r.request_id for r in results]
    stdout = stdout_with(lam, rids)

    # -- delivered after the response, and before the next invocation started ------------------
    for previous, rid in zip(rids, rids[1:]):
        seen_by_collector, seen_over_otlp = downstream.calls[rid][1]
        assert previous in seen_by_collector, "the report came after the next invocation began"
        for signal in ("traces", "metrics", "logs"):
            assert previous in seen_over_otlp[signal], f"{signal} of {previous} came late"
        emf_at = stdout.find(f'"requestId":"{previous}"')
        assert 0 <= emf_at < stdout.find(MARKER + rid), "the EMF document came late"

    # -- http: one report per invocation, in order ---------------------------------------------
    assert collector.ids() == rids
    reports = collector.by_request_id()
    for report in reports.values():
        validate_report(report)
    otlp = Otlp(receiver)
    docs = emf_documents(stdout)
    assert Counter(d["requestId"] for d in docs) == Counter(rids)  # one document each

    for index, (result, event) in enumerate(zip(results, events)):
        rid = result.request_id
        report = reports[rid]
        cold = index == 0
        failed = event.get("action") == "raise"
        trace_id = xray_root(result.trace_id)  # what the runtime was given
        assert report["trace"]["trace_id"] == trace_id
        assert report["invocation"]["cold_start"] is cold
        assert report["invocation"]["status"] == ("error" if failed else "ok")

        # -- otlp: spans -----------------------------------------------------------------------
        root = otlp.root(rid)
        spans = otlp.spans_of(rid)
        assert {hexid(s.trace_id) for s in spans} == {trace_id}
        assert {hexid(s.span_id) for s in spans} == {s["span_id"] for s in report["spans"]}
        assert hexid(root.span_id) == report["trace"]["span_id"]
        assert root.kind == SERVER
        root_attrs = attributes(root.attributes)
        assert root_attrs["faas.coldstart"] is cold
        assert root_attrs["faas.trigger"] == "other"
        (call,) = [s for s in spans if s.kind == CLIENT]
        assert call.parent_span_id == root.span_id
        call_attrs = attributes(call.attributes)
        assert call_attrs["http.request.method"] == "GET"
        assert call_attrs["http.response.status_code"] == 200
        assert call_attrs["server.address"] == "127.0.0.1"
        # the call carried the trace on: the downstream server saw the same ids
        headers = downstream.calls[rid][0]
        assert headers["traceparent"] == f"00-{trace_id}-{hexid(call.span_id)}-01"
        if failed:
            assert root.status.code == STATUS_ERROR
            assert root.status.message == "ValueError: payment declined"
            assert [e.name for e in root.events] == ["exception"]
        else:
            assert root.status.code == 0

        # -- otlp: metrics ---------------------------------------------------------------------
        metrics = otlp.metrics_of(rid)
        (duration,) = [p for m in metrics["faas.invoke_duration"] for p in points(m)]
        (exemplar,) = duration.exemplars
        assert attributes(exemplar.filtered_attributes) == {"faas.invocation_id": rid}
        assert hexid(exemplar.trace_id) == trace_id
        assert exemplar.span_id == root.span_id
        assert duration.sum == pytest.approx(report["invocation"]["duration_ms"] / 1000)

        def value(name: str, metrics: dict[str, list[Any]] = metrics) -> float:
            (point,) = [p for m in metrics[name] for p in points(m)]
            return number(point)

        assert value("faas.coldstarts") == int(cold)
        assert value("faas.errors") == int(failed)
        assert value("faas.invocations") == int(not failed)
        assert value("faas.timeouts") == 0
        assert ("faas.init_duration" in metrics) is cold
        if failed:
            (point,) = [p for m in metrics["faas.errors"] for p in points(m)]
            assert attributes(point.exemplars[0].filtered_attributes) == {"faas.invocation_id": rid}
        (orders,) = metrics["orders_placed"]
        (point,) = points(orders)
        assert orders.unit == "{count}" and orders.WhichOneof("data") == "sum"
        assert number(point) == event["orders"]
        assert attributes(point.attributes) == {"channel": "web"}

        # -- otlp: logs ------------------------------------------------------------------------
        logs = otlp.logs_of(rid)
        assert len(logs) == len(report["logs"])
        (line,) = [r for r in logs if r.body.string_value == f"order handled for {rid}"]
        assert hexid(line.trace_id) == trace_id
        assert line.span_id == root.span_id  # logged outside any child span
        assert line.severity_text == "WARNING"
        assert attributes(line.attributes)["logger.name"] == "tests.exporters"

        # -- emf -------------------------------------------------------------------------------
        mine = [d for d in docs if d.get("requestId") == rid]
        for doc in mine:
            assert doc["traceId"] == f"1-{trace_id[:8]}-{trace_id[8:]}"
            assert doc["coldStart"] is cold
            assert doc["_aws"]["Timestamp"] == int(report["invocation"]["end_ms"])
        emf = emf_metrics(mine)
        assert {ns for ns, _, _, _ in emf.values()} == {NAMESPACE}
        assert emf["Duration"][1:] == (
            "Milliseconds",
            {"FunctionName": FUNCTION_NAME},
            report["invocation"]["duration_ms"],
        )
        assert emf["ColdStart"][3] == int(cold)
        assert emf["Errors"][3] == int(failed)
        assert emf["Timeouts"][3] == 0
        assert ("InitDuration" in emf) is cold
        assert emf["MemoryUsed"][1] == "Megabytes"
        assert emf["orders_placed"][1:] == (
            "Count",
            {"service": FUNCTION_NAME, "channel": "web"},
            event["orders"],
        )

    # -- one resource for the sandbox, on every signal -----------------------------------------
    for resource in otlp.resources:
        assert resource["service.name"] == FUNCTION_NAME
        assert resource["faas.name"] == FUNCTION_NAME
        assert resource["faas.instance"] == lam.sandbox.log_stream_name
        assert resource["faas.max_memory"] == 256 * MIB
        assert resource["cloud.provider"] == "aws"
        assert resource["cloud.platform"] == "aws_lambda"
        assert resource["cloud.region"] == "eu-west-1"
    # nothing went twice, nothing waits
    all_span_ids = [hexid(s.span_id) for _, s in otlp.spans]
    assert len(all_span_ids) == len(set(all_span_ids))
    assert sorted(otlp.duration_exemplars()) == sorted(rids)
    spool = lam.reports_path.parent / "spool"
    assert not spooled(spool, "otlp") and not spooled(spool, "http")


# -- 2. the OTLP receiver down, then back ------------------------------------------------------


def test_otlp_receiver_down_spools_only_otlp_and_delivers_it_when_back(
    sandboxes: Any, collector: Collector, receiver: OtlpReceiver
) -> None:
    lam = start(sandboxes, collector, receiver.url)
    spool = lam.reports_path.parent / "spool"
    sent: list[str] = []

    def call() -> str:
        result = invoke(lam, {"orders": 1})
        assert result.ok, result.payload
        sent.append(result.request_id)
        return result.request_id

    call()  # delivered everywhere; the exporter keeps its connection to the receiver
    assert otlp_ids(receiver)["traces"] == set(sent)

    receiver.server.go_down()
    down = [call(), call(), call()]
    # http and emf did not notice: each report arrived, once, before the sandbox was idle
    assert collector.ids() == sent
    assert Counter(d["requestId"] for d in emf_documents(stdout_with(lam, sent))) == Counter(sent)
    assert not spooled(spool, "http")
    # the otlp part waits in the spool, each invocation once
    assert sorted(spooled(spool, "otlp")) == sorted(down)
    port = int(receiver.url.rsplit(":", 1)[1])
    before = Otlp(receiver)

    back = receiver_on(port)
    try:
        # A live function keeps being invoked: once the back-off (1 s after the failure) is
        # over, the next flush sends its own report, then drains the spool.
        give_up = time.monotonic() + 8.0
        while not all(set(sent) <= ids for ids in otlp_ids(receiver, back).values()):
            assert time.monotonic() < give_up, (
                f"spooled otlp data never arrived; spool holds {spooled(spool, 'otlp')}\n"
                + "\n".join(lam.sandbox.output.splitlines()[-30:])
            )
            time.sleep(0.2)
            call()
        wait_until(lambda: not spooled(spool, "otlp"), 2.0, "the spool to empty")

        after = Otlp(back)
        every = Otlp(receiver, back)
        reports = collector.by_request_id()
        # each invocation's spans arrived once: no span id twice, none missing
        span_ids = [hexid(s.span_id) for _, s in every.spans]
        assert len(span_ids) == len(set(span_ids)), "a span was delivered twice"
        for rid in sent:
            assert {hexid(s.span_id) for s in every.spans_of(rid)} == {
                s["span_id"] for s in reports[rid]["spans"]
            }
            assert len(every.logs_of(rid)) == len(reports[rid]["logs"])
        # and each was counted once: one duration exemplar per invocation, over both receivers
        assert sorted(every.duration_exemplars()) == sorted(sent)
        # what was spooled went to the receiver that came back, nothing of it to the old one
        assert not set(down) & set(before.duration_exemplars())
        assert set(down) <= set(after.duration_exemplars())
        # the receiver answered every request it got
        assert all(r.status == 200 for r in back.requests())
    finally:
        back.server.go_down()
    # http and emf never waited: every report once, none spooled
    assert collector.ids() == sent
    assert Counter(d["requestId"] for d in emf_documents(stdout_with(lam, sent))) == Counter(sent)
    assert not spooled(spool, "http")


# -- 3. partial refusals, timeouts, crashes ----------------------------------------------------


def test_traces_refused_for_a_while_resend_traces_only(
    sandboxes: Any, collector: Collector, receiver: OtlpReceiver
) -> None:
    """The receiver answers 503 on ``/v1/traces`` only: metrics and logs of those invocations
    were accepted and must not go again (their delta counts would be added twice); the spans
    follow from the spool once traces are accepted again."""
    lam = start(sandboxes, collector, receiver.url)
    sent = [invoke(lam, {}).request_id]
    receiver.status_by_path = {"/v1/traces": 503}
    sent += [invoke(lam, {}).request_id for _ in range(2)]
    receiver.status_by_path = {}
    give_up = time.monotonic() + 8.0
    while not set(sent) <= otlp_ids(receiver)["traces"]:
        assert time.monotonic() < give_up, "the refused spans never arrived"
        time.sleep(0.2)
        sent.append(invoke(lam, {}).request_id)
    otlp = Otlp(receiver)
    assert sorted(otlp.duration_exemplars()) == sorted(sent)  # each invocation counted once
    span_ids = [hexid(s.span_id) for _, s in otlp.spans]
    assert len(span_ids) == len(set(span_ids))
    logged = Counter(attributes(r.attributes)["faas.invocation_id"] for _, r in otlp.logs)
    assert logged == Counter(sent)  # one log line per invocation, none twice
    assert collector.ids() == sent
    assert Counter(d["requestId"] for d in emf_documents(stdout_with(lam, sent))) == Counter(sent)


def test_a_late_finish_after_the_timeout_report_is_sent_once_and_counted_once(
    sandboxes: Any, collector: Collector, receiver: OtlpReceiver
) -> None:
    """The timeout warning fires (800 ms before a 2 s deadline) while the handler sleeps; the
    handler then finishes in time. The timeout report goes out from inside the invocation; the
    late report adds only what the first could not carry, on every exporter."""
    lam = start(sandboxes, collector, receiver.url, LAMBDASCOPE_TIMEOUT_WARNING_MS="800")
    result = lam.invoke({"sleep": 1.5}, timeout_s=2.0)
    assert result.ok, result.payload
    assert lam.sandbox.wait_idle(5.0)
    rid = result.request_id
    statuses = [r["invocation"]["status"] for r in collector.reports]
    assert statuses == ["timeout", "ok"]  # http: both reports, as they are

    otlp = Otlp(receiver)
    spans = otlp.spans_of(rid)
    names = [s.name for s in spans]
    assert sorted(names) == ["handler", "slow-step"]  # each span once
    assert otlp.duration_exemplars() == [rid]  # one duration, from the timeout report

    def total(name: str) -> float:
        return sum(
            number(p) for _, m in otlp.metric_requests for x in m.get(name, []) for p in points(x)
        )

    assert total("faas.timeouts") == 1
    assert total("faas.errors") == 0
    assert total("orders_placed") == 1 and total("late_metric") == 1

    docs = [d for d in emf_documents(stdout_with(lam, [rid])) if d.get("requestId") == rid]
    emf = emf_metrics(docs)  # raises if a metric shows twice for the invocation
    assert emf["Timeouts"][3] == 1 and emf["Errors"][3] == 0
    assert emf["orders_placed"][3] == 1 and emf["late_metric"][3] == 1


def test_a_crashed_invocation_reaches_every_exporter(
    sandboxes: Any, collector: Collector, receiver: OtlpReceiver, tmp_path: pathlib.Path
) -> None:
    """The process dies mid-invocation; the next process of the sandbox reports it as
    ``crashed`` to all three exporters, under the trace id the runtime gave the invocation."""
    spool = str(tmp_path / "shared-spool")  # /tmp survives a runtime restart in the sandbox
    first = start(sandboxes, collector, receiver.url, LAMBDASCOPE_SPOOL_DIR=spool)
    assert invoke(first, {}).ok
    died = first.invoke({"action": "exit"})
    assert not died.ok
    first.sandbox.stop()
    second = start(sandboxes, collector, receiver.url, LAMBDASCOPE_SPOOL_DIR=spool)
    assert invoke(second, {}).ok
    rid, trace_id = died.request_id, xray_root(died.trace_id)

    crashed = collector.by_request_id()[rid]
    assert crashed["invocation"]["status"] == "crashed"
    assert crashed["trace"]["trace_id"] == trace_id

    stdout = stdout_with(second, [rid])
    (doc,) = [d for d in emf_documents(stdout) if d.get("requestId") == rid]
    assert doc["traceId"] == f"1-{trace_id[:8]}-{trace_id[8:]}"
    assert emf_metrics([doc])["Crashed"][3] == 1 and emf_metrics([doc])["Errors"][3] == 1

    otlp = Otlp(receiver)
    errors = [
        (number(p), e)
        for _, m in otlp.metric_requests for x in m.get("faas.errors", []) for p in points(x)
        for e in p.exemplars
        if attributes(e.filtered_attributes).get("faas.invocation_id") == rid
    ]  # fmt: skip
    assert [count for count, _ in errors] == [1]  # counted once, as an error
    # The crash must show in the trace backend too: an invocation span in the runtime's trace,
    # flagged as an error. (The crashed report carries no spans, and the otlp exporter builds
    # spans from the report's spans only: nothing is sent, so Jaeger never shows the crash.)
    roots = [
        s for _, s in otlp.spans
        if attributes(s.attributes).get("faas.invocation_id") == rid
    ]  # fmt: skip
    assert len(roots) == 1, "no invocation span was exported for the crashed invocation"
    (root,) = roots
    assert hexid(root.trace_id) == trace_id
    assert root.status.code == STATUS_ERROR


# -- 4. the Collector configuration of docs/exporters.md ---------------------------------------


def test_collector_configurations_in_the_docs_are_valid_yaml_and_wired() -> None:
    """Every YAML block of docs/exporters.md parses; every Collector configuration in it uses
    only components it defines; the Jaeger one and the Lambda layer one say what the text says."""
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "docs" / "exporters.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    parsed = [yaml.safe_load(block) for block in blocks]  # every block parses
    configs = [c for c in parsed if isinstance(c, dict) and {"receivers", "service"} <= set(c)]
    assert len(configs) == 2, "expected the Jaeger and the Lambda layer configurations"
    for config in configs:
        pipelines = config["service"]["pipelines"]
        assert set(pipelines) == {"traces", "metrics", "logs"}  # all that lambdascope sends
        for name, pipeline in pipelines.items():
            for kind in ("receivers", "processors", "exporters"):
                for component in pipeline.get(kind, []):
                    assert component in (config.get(kind) or {}), f"{name}: {component} undefined"
            assert pipeline["receivers"] == ["otlp"]
            assert "http" in config["receivers"]["otlp"]["protocols"]  # lambdascope's protocol

    jaeger_config, layer_config = configs
    # the Collector beside Jaeger: OTLP/HTTP on 4318 from any interface, batch, Jaeger + debug
    assert jaeger_config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    exporters = jaeger_config["exporters"]
    jaeger = [name for name in exporters if name.split("/")[0] in ("otlp", "otlp_grpc")]
    assert len(jaeger) == 1 and exporters[jaeger[0]]["endpoint"] == "jaeger:4317"
    pipelines = jaeger_config["service"]["pipelines"]
    for pipeline in pipelines.values():
        assert pipeline["processors"] == ["batch"]
        assert "debug" in pipeline["exporters"]
    assert jaeger[0] in pipelines["traces"]["exporters"]  # Jaeger stores traces only
    assert jaeger[0] not in pipelines["metrics"]["exporters"] + pipelines["logs"]["exporters"]
    compose = next(c for c in parsed if isinstance(c, dict) and "services" in c)
    assert "4318:4318" in compose["services"]["otel-collector"]["ports"]
    assert "jaeger" in compose["services"]  # the host name the exporter uses

    # the layer: loopback only (the function's default endpoint), decouple last
    assert layer_config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "localhost:4318"
    for pipeline in layer_config["service"]["pipelines"].values():
        assert pipeline["processors"][-1] == "decouple"

"""The invocation's trace context is worked out on first use (``Invocation._resolve``): trace id,
parent span id, the invocation span's id, the sampling decision, a batch's links and the age of
its oldest record. It must be worked out once, agree across threads, give what the eager version
gave (record ages measured from the invocation's start, not from when it happens to be resolved),
and never fail or hang the handler.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import lambdascope
from lambdascope import _propagation
from lambdascope._config import Config
from lambdascope._invocation import Invocation
from lambdascope.testing import capture_reports, fake_context

XRAY_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
XRAY_TRACE_ID = "5759e988bd862e3fe1be46a994272793"
W3C_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
W3C_PARENT = "00f067aa0ba902b7"
HEX = set("0123456789abcdef")


@pytest.fixture(autouse=True)
def _no_runtime_trace_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)


@pytest.fixture
def extract_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Count (and slow down a little, to widen races) the calls of ``extract``."""
    calls: list[Any] = []
    original = _propagation.extract

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        time.sleep(0.02)
        return original(*args, **kwargs)

    monkeypatch.setattr(_propagation, "extract", counting)
    return calls


def make_inv(event: Any = None, rate: float = 1.0) -> Invocation:
    inv = Invocation(str(uuid.uuid4()), fake_context(), event)
    inv.config = Config({"sample_rate": rate})
    return inv


def apigw(traceparent: str) -> dict[str, Any]:
    return {"version": "2.0", "routeKey": "GET /orders", "rawPath": "/orders",
            "headers": {"traceparent": traceparent},
            "requestContext": {"http": {"method": "GET", "path": "/orders"}}}


def ids(inv: Invocation) -> tuple[Any, ...]:
    return (inv.trace_id, inv.parent_span_id, inv.root_span_id, inv.span_id, inv.sampled,
            [dict(link) for link in inv.links], inv.oldest_ms, inv.remote_source)


# -- once --------------------------------------------------------------------------------------


def test_nothing_is_resolved_until_first_use(extract_calls: list[Any]) -> None:
    inv = make_inv(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-01"))
    assert inv._resolved is False and extract_calls == []
    assert inv.request_id and inv.elapsed_ms >= 0  # the rest of the public view costs nothing
    assert inv._resolved is False and extract_calls == []
    assert inv.trace_id == W3C_TRACE_ID
    assert inv._resolved is True and len(extract_calls) == 1


@pytest.mark.parametrize("first", ["trace_id", "parent_span_id", "root_span_id", "sampled",
                                   "links", "span_id"])
def test_resolves_once_whatever_is_read_first(extract_calls: list[Any], first: str) -> None:
    inv = make_inv(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-01"))
    getattr(inv, first)
    seen = ids(inv)
    for _ in range(5):
        assert ids(inv) == seen
    assert len(extract_calls) == 1
    trace_id, parent, root, span_id, sampled, _, _, source = seen
    assert (trace_id, parent, sampled, source) == (W3C_TRACE_ID, W3C_PARENT, True, "w3c")
    assert root == span_id and len(root) == 16 and set(root) <= HEX and root != W3C_PARENT


def test_without_a_remote_context_the_ids_are_fresh_and_stable() -> None:
    first, second = make_inv({}), make_inv({})
    assert first.trace_id == first.trace_id and first.root_span_id == first.root_span_id
    assert first.trace_id != second.trace_id and first.root_span_id != second.root_span_id
    for inv in (first, second):
        assert len(inv.trace_id) == 32 and set(inv.trace_id) <= HEX
        assert int(inv.trace_id, 16) != 0
        assert inv.parent_span_id is None and inv.remote_source is None


def test_xray_header_of_the_runtime_is_continued(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)
    inv = make_inv({})
    assert (inv.trace_id, inv.parent_span_id, inv.remote_source) == (
        XRAY_TRACE_ID, "53995c3f42cd8ad8", "xray")


def _race(inv: Invocation, threads: int = 12) -> list[Any]:
    """What each of ``threads`` threads saw when they all read the context at once, each
    starting with a different property."""
    barrier = threading.Barrier(threads)
    seen: list[Any] = []
    errors: list[BaseException] = []
    attrs = ["trace_id", "root_span_id", "sampled", "parent_span_id", "links", "span_id"]

    def read(attr: str) -> None:
        try:
            barrier.wait(5)
            getattr(inv, attr)
            seen.append(ids(inv))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    workers = [threading.Thread(target=read, args=(attrs[i % len(attrs)],))
               for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(10)
    assert not errors
    assert len(seen) == threads
    return seen


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_concurrent_first_access_yields_one_context(extract_calls: list[Any], rate: float) -> None:
    """Threads of one invocation (a pool making calls at once) must agree on its ids."""
    for _ in range(3):
        seen = _race(make_inv({}, rate))
        assert len({repr(s) for s in seen}) == 1, "threads saw different contexts"
    assert len(extract_calls) == 3  # once per invocation


# -- sampling ---------------------------------------------------------------------------------


def test_sample_rate_zero_and_one() -> None:
    assert all(make_inv({}, 1.0).sampled for _ in range(50))
    assert not any(make_inv({}, 0.0).sampled for _ in range(50))


def test_sample_rate_half_decides_per_invocation() -> None:
    decisions = {make_inv({}, 0.5).sampled for _ in range(200)}
    assert decisions == {True, False}


def test_w3c_parent_not_sampled_forces_unsampled() -> None:
    inv = make_inv(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-00"), 1.0)
    assert inv.sampled is False
    assert (inv.trace_id, inv.parent_span_id) == (W3C_TRACE_ID, W3C_PARENT)
    assert len(inv.root_span_id) == 16  # drawn even unsampled: calls still carry it (flags 00)


def test_w3c_parent_sampled_follows_the_rate() -> None:
    assert make_inv(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-01"), 1.0).sampled is True
    assert make_inv(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-01"), 0.0).sampled is False


def test_unsampled_parent_gives_an_unsampled_report(validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        with lambdascope.span("work"):
            pass
        return "ok"

    with capture_reports() as reports:
        assert handler(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-00"), fake_context()) == "ok"
    (report,) = reports
    validate_report(report)
    assert report["invocation"]["sampled"] is False
    assert report["spans"] == []
    assert report["trace"]["trace_id"] == W3C_TRACE_ID
    assert report["trace"]["parent_span_id"] == W3C_PARENT


def test_sample_rate_zero_report_still_has_a_trace(validate_report: Any) -> None:
    @lambdascope.monitor(sample_rate=0.0)
    def handler(event: Any, context: Any) -> str:
        return "ok"

    with capture_reports() as reports:
        handler({}, fake_context())
    (report,) = reports
    validate_report(report)
    assert report["invocation"]["sampled"] is False and report["spans"] == []
    assert len(report["trace"]["trace_id"]) == 32 and len(report["trace"]["span_id"]) == 16


# -- record ages ------------------------------------------------------------------------------


def sqs_batch(sent_ms: list[int]) -> dict[str, Any]:
    return {"Records": [
        {
            "messageId": f"m-{i}",
            "body": "{}",
            "attributes": {"SentTimestamp": str(sent), "ApproximateReceiveCount": "1"},
            "messageAttributes": {"traceparent": {
                "stringValue": f"00-{W3C_TRACE_ID}-{i + 1:016x}-01", "dataType": "String"}},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders",
        }
        for i, sent in enumerate(sent_ms)
    ]}


def test_record_ages_are_measured_from_the_invocation_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = sqs_batch([0, 0])
    inv = make_inv(event)
    start_ms = inv.start_wall * 1000.0
    sent = [int(start_ms) - 5000, int(start_ms) - 2000]
    for record, at in zip(event["Records"], sent):
        record["attributes"]["SentTimestamp"] = str(at)
    # Resolved a minute "later" (after the response): the ages must not grow by that minute.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 60.0)
    links = inv.links
    expected = [round(start_ms - at, 3) for at in sent]
    assert [link["attributes"]["lambdascope.message.age_ms"] for link in links] == expected
    assert inv.oldest_ms == expected[0]
    assert [link["attributes"]["messaging.message.id"] for link in links] == ["m-0", "m-1"]


def test_record_ages_in_the_report_after_a_slow_handler(validate_report: Any) -> None:
    """The handler makes no call, so the context is worked out when the report is built, after
    the handler slept: the oldest record's age is still its age when the invocation started."""
    sent_at = int(time.time() * 1000.0) - 3000
    event = sqs_batch([sent_at])
    resolved_in_handler: list[bool] = []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> dict[str, Any]:
        time.sleep(0.3)
        resolved_in_handler.append(lambdascope.current()._resolved)
        return {"batchItemFailures": []}

    with capture_reports() as reports:
        handler(event, fake_context())
    (report,) = reports
    validate_report(report)
    assert resolved_in_handler == [False]
    start_ms = report["invocation"]["start_ms"]
    (root,) = [s for s in report["spans"] if s["span_id"] == report["trace"]["span_id"]]
    age = root["attributes"]["lambdascope.batch.oldest_age_ms"]
    assert age == pytest.approx(start_ms - sent_at, abs=0.01)
    assert age < 3000 + 250  # not the 300 ms the handler slept on top
    assert root["links"][0]["attributes"]["lambdascope.message.age_ms"] == age


# -- in the handler -------------------------------------------------------------------------------


def test_begin_does_not_resolve_and_current_agrees_with_the_report(
    extract_calls: list[Any],
) -> None:
    seen: list[Any] = []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        inv = lambdascope.current()
        seen.append(inv._resolved)
        seen.append(inv.trace_id)
        seen.append(inv._resolved)

    with capture_reports() as reports:
        handler(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-01"), fake_context())
    assert seen == [False, W3C_TRACE_ID, True]
    assert reports[0]["trace"]["trace_id"] == W3C_TRACE_ID
    assert len(extract_calls) == 1


def test_a_call_from_another_thread_shares_the_context() -> None:
    """The first use is on a worker thread (a pool making the call): it and the report agree."""
    from concurrent.futures import ThreadPoolExecutor

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> list[str]:
        inv = lambdascope.current()
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda _: inv.trace_id + inv.root_span_id, range(8)))

    with capture_reports() as reports:
        seen = handler({}, fake_context())
    (report,) = reports
    assert set(seen) == {report["trace"]["trace_id"] + report["trace"]["span_id"]}


# -- failure -----------------------------------------------------------------------------------


@pytest.mark.faults
def test_extract_failure_is_swallowed_and_gives_a_fresh_trace(
    monkeypatch: pytest.MonkeyPatch, internal_errors: list[Any]
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)
    calls: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("extract broke")

    monkeypatch.setattr(_propagation, "extract", broken)
    inv = make_inv(apigw(f"00-{W3C_TRACE_ID}-{W3C_PARENT}-01"))
    trace_id = inv.trace_id
    assert len(trace_id) == 32 and set(trace_id) <= HEX and int(trace_id, 16) != 0
    assert trace_id not in (W3C_TRACE_ID, XRAY_TRACE_ID)
    assert inv.parent_span_id is None and inv.links == [] and inv.oldest_ms is None
    assert inv.sampled is True and len(inv.root_span_id) == 16
    assert ids(inv) == ids(inv) and calls == [1]  # not retried on every access
    assert [site for site, _ in internal_errors] == ["propagation.extract"]


@pytest.mark.faults
def test_extract_failure_in_a_handler_changes_nothing_for_it(
    monkeypatch: pytest.MonkeyPatch, validate_report: Any, internal_errors: list[Any]
) -> None:
    """A malformed batch event (an SQS record whose ``attributes`` is a string) makes the
    extraction fail: the handler's result is unchanged and the report has a fresh trace."""
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": "{}",
                          "attributes": "not-a-mapping"}]}

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        return lambdascope.current().trace_id

    with capture_reports() as reports:
        seen = handler(event, fake_context())
    (report,) = reports
    validate_report(report)
    assert report["trace"]["trace_id"] == seen
    assert report["trace"]["parent_span_id"] is None


@pytest.mark.parametrize("attributes", ["{}", '"not-a-mapping"'], ids=["control", "malformed"])
def test_a_log_hook_reading_the_trace_id_never_hangs_the_handler(
    tmp_path: Path, attributes: str
) -> None:
    """Log correlation: a logging filter on the root logger stamps each record with
    ``lambdascope.current().trace_id``. When working the context out fails, the agent logs that
    failure (on the ``lambdascope`` logger, which propagates to the root logger's handlers)
    while it resolves; the filter then asks for the trace id again from inside the resolution.
    The handler must still return. Run in a child process: a hang there cannot take the test
    session with it."""
    code = textwrap.dedent(
        """
        import logging, sys
        import lambdascope
        from lambdascope.testing import capture_reports, fake_context

        class TraceIds(logging.Filter):
            def filter(self, record):
                inv = lambdascope.current()
                record.trace_id = inv.trace_id if inv is not None else "-"
                return True

        stream = logging.StreamHandler(sys.stderr)
        stream.addFilter(TraceIds())
        logging.getLogger().addHandler(stream)

        @lambdascope.monitor
        def handler(event, context):
            logging.getLogger("app").warning("handling")
            return "done"

        event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": "{}",
                              "attributes": ATTRIBUTES}]}
        with capture_reports() as reports:
            print(handler(event, fake_context()), len(reports), flush=True)
        """
    ).replace("ATTRIBUTES", attributes)
    env = {"LAMBDASCOPE_SPOOL_DIR": str(tmp_path / "spool"), "PATH": "/usr/bin:/bin"}
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=10, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            "the handler hung: the trace context's resolution logs its own failure while it "
            f"holds its (non-reentrant) lock, and a log filter that reads the trace id waits "
            f"for that lock forever\n{exc.stderr!r}"
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["done", "1"], out.stdout + out.stderr

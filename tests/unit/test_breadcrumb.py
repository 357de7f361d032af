"""The crash breadcrumb (``lambdascope._breadcrumb``): one 1 KB file per process, mapped
``MAP_SHARED`` (``pwrite`` where it cannot be mapped). Its first half is the invocation in flight
(a fixed binary record whose in-flight mark is set last and cleared first); its second half is a
text line naming the span last opened.

What a process writes there must be readable by the *next* process after the writer died, so the
round trips below run the writer in a forked child that ends with ``os._exit`` in the middle of
its "invocation"; the parent then plays the new process of the sandbox and reads the breadcrumb
with ``orphans()`` of a Breadcrumbs instance of its own. Every crash report built from what it
finds is checked against the shipped JSON schema.
"""

from __future__ import annotations

import http.server
import json
import mmap
import os
import stat
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lambdascope
from lambdascope import _ids, _state
from lambdascope._breadcrumb import Breadcrumbs, crashed_report, parse
from lambdascope._config import Config
from lambdascope._invocation import Invocation, SpanRecord
from lambdascope._pipeline import Pipeline
from lambdascope.testing import capture_reports, fake_context

XRAY_ROOT = "1-6a1f2b3c-0123456789abcdef01234567"
XRAY_TRACE_ID = "6a1f2b3c0123456789abcdef01234567"
XRAY_HEADER = f"Root={XRAY_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
W3C_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HALF = 512


@pytest.fixture(autouse=True)
def _no_runtime_trace_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)


@pytest.fixture
def spool(tmp_path: Path) -> str:
    return str(tmp_path / "spool")


def make_inv(request_id: str | None = None, event: Any = None) -> Invocation:
    inv = Invocation(request_id or str(uuid.uuid4()), fake_context(), event)
    inv.timeout_ms = 3000.0
    inv.config = Config()
    return inv


def open_span(
    inv: Invocation,
    crumbs: Breadcrumbs,
    name: str,
    parent: str | None,
    start_ms: float | None = None,
) -> SpanRecord:
    """What instrumentation/_spans.start does: the span is open, the breadcrumb names it."""
    record = SpanRecord(_ids.new_span_id(), parent, name, "client")
    if start_ms is not None:
        record.start_ms = start_ms
    inv.open_spans[record.span_id] = record
    crumbs.span_started(inv, record)
    return record


def close_span(inv: Invocation, crumbs: Breadcrumbs, record: SpanRecord) -> None:
    """What instrumentation/_spans.finish does: the span is no longer open, then the breadcrumb."""
    record.finish()
    inv.add_span(record)
    crumbs.span_ended(inv, record)


def die_in_child(work: Callable[[], None]) -> None:
    """Run ``work`` in a forked child that then dies with ``os._exit`` (no clean-up at all)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            work()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child failed"


def crumbs_after_death(spool: str, work: Callable[[Breadcrumbs], None]) -> list[dict[str, Any]]:
    """The breadcrumbs a new process finds after a process that ran ``work`` died."""
    die_in_child(lambda: work(Breadcrumbs(spool)))
    return Breadcrumbs(spool).orphans()


def raw(crumbs: Breadcrumbs) -> bytes:
    data = Path(crumbs.path).read_bytes()
    assert len(data) == 2 * HALF, len(data)
    return data


def span_line(data: bytes) -> Any:
    """The span half: blank, or one whole JSON line ending at the file's last byte."""
    half = data[HALF:]
    assert half.endswith(b"\n") and half.count(b"\n") == 1, half
    text = half.strip(b" \n\0")
    return json.loads(text) if text else None


def others(spool: str) -> list[str]:
    """Breadcrumb files in the spool other than this process's own."""
    return [n for n in os.listdir(os.path.join(spool, "inflight"))
            if not n.startswith(f"{os.getpid()}-")]


def pipeline() -> Pipeline:
    return Pipeline(Config())


# -- the round trip -----------------------------------------------------------------------


def test_an_invocation_in_flight_is_found_by_the_next_process(
    spool: str, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)
    inv = make_inv()
    found = crumbs_after_death(spool, lambda crumbs: crumbs.enter(inv, 126_413, 256))
    assert len(found) == 1
    crumb = found[0]
    assert crumb["request_id"] == inv.request_id
    assert crumb["start_ms"] == pytest.approx(inv.start_wall * 1000.0, abs=0.001)
    assert crumb["timeout_ms"] == 3000
    assert crumb["rss_mb"] == round(126_413 / 1024.0, 2)
    assert crumb["limit_mb"] == 256
    assert crumb["xray"] == XRAY_HEADER
    assert "span" not in crumb  # no span was opened
    # Claimed: the next process to look finds nothing more, and the file is gone.
    assert Breadcrumbs(spool).orphans() == []
    assert others(spool) == []

    report = validate_report(crashed_report(crumb, pipeline()))
    assert report["invocation"]["status"] == "crashed"
    assert report["invocation"]["request_id"] == inv.request_id
    assert report["invocation"]["timeout_ms"] == 3000
    assert report["resources"]["rss_start_mb"] == crumb["rss_mb"]
    assert report["trace"]["trace_id"] == XRAY_TRACE_ID


def test_unknowns_are_kept_unknown(spool: str, validate_report: Any) -> None:
    inv = make_inv()
    inv.timeout_ms = None
    (crumb,) = crumbs_after_death(spool, lambda crumbs: crumbs.enter(inv, None, None))
    assert (crumb["timeout_ms"], crumb["rss_mb"], crumb["limit_mb"], crumb["xray"]) == (
        None, None, None, "")
    validate_report(crashed_report(crumb, pipeline()))


def test_an_invocation_that_ended_leaves_nothing(spool: str) -> None:
    inv = make_inv()

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(inv, 50_000, 128)
        record = open_span(inv, crumbs, "GET", inv.root_span_id)
        close_span(inv, crumbs, record)
        crumbs.leave()

    assert crumbs_after_death(spool, work) == []
    assert others(spool) == []  # the empty one is cleared too


def test_a_process_that_is_alive_keeps_its_breadcrumb(spool: str) -> None:
    """On Managed Instances sibling processes share the spool: a live one is not reported."""
    inv = make_inv()
    ready, finish = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(ready[0])
            Breadcrumbs(spool).enter(inv, 10_000, 128)
            os.write(ready[1], b"x")
            os.read(finish[0], 1)
        finally:
            os._exit(0)
    os.close(ready[1])
    try:
        assert os.read(ready[0], 1) == b"x", "the child failed before entering"
        assert Breadcrumbs(spool).orphans() == []  # alive: left alone
        assert len(others(spool)) == 1
    finally:
        os.write(finish[1], b"x")
        os.waitpid(pid, 0)
    found = Breadcrumbs(spool).orphans()
    assert [c["request_id"] for c in found] == [inv.request_id]


def test_one_dead_invocation_is_reported_by_one_new_process(spool: str) -> None:
    """Several new processes look at once (Managed Instances): exactly one claims it."""
    inv = make_inv()
    die_in_child(lambda: Breadcrumbs(spool).enter(inv, 10_000, 128))
    out_r, out_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                crumbs = Breadcrumbs(spool)
                os.read(go_r, 1)
                os.write(out_w, b"%d\n" % len(crumbs.orphans()))
            finally:
                os._exit(0)
        pids.append(pid)
    os.write(go_w, b"x" * len(pids))
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(out_w)
    counts = []
    while chunk := os.read(out_r, 1024):
        counts.extend(int(n) for n in chunk.split())
    assert len(counts) == 6 and sum(counts) == 1, counts


def test_file_is_owner_only_and_one_kilobyte(spool: str) -> None:
    crumbs = Breadcrumbs(spool)
    assert stat.S_IMODE(os.stat(crumbs.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(crumbs.directory).st_mode) == 0o700
    assert os.path.getsize(crumbs.path) == 2 * HALF
    assert crumbs._map is not None  # mapped where the platform allows it
    data = raw(crumbs)
    assert parse(data) is None and span_line(data) is None


def test_parse_is_robust_to_what_a_file_may_hold() -> None:
    assert parse(b"") is None
    assert parse(b"\0" * 1024) is None
    assert parse(b"LSB1" + b"\0" * 1020) is None  # marked, but no request id
    assert parse(b"LSB1" + b"\xff" * 100) is None  # cut short
    garbage = bytearray(os.urandom(1024))
    garbage[:4] = b"LSB1"
    crumb = parse(bytes(garbage))  # whatever it says, it does not raise
    assert crumb is None or isinstance(crumb["request_id"], str)


# -- the span line ---------------------------------------------------------------------------


def test_span_in_flight_is_named_and_its_trace_kept(
    spool: str, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)
    inv = make_inv()
    root_span_id = inv.root_span_id  # resolved here, so the child carries the same ids

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(inv, 80_000, 1024)
        open_span(inv, crumbs, "DynamoDB.Query", inv.root_span_id)
        # The child dies with the query in flight.

    (crumb,) = crumbs_after_death(spool, work)
    span = crumb["span"]
    assert span["name"] == "DynamoDB.Query"
    assert span["trace_id"] == inv.trace_id == XRAY_TRACE_ID
    assert span["root_span_id"] == root_span_id
    assert len(span["span_id"]) == 16
    report = validate_report(crashed_report(crumb, pipeline()))
    assert "in flight: DynamoDB.Query" in report["error"]["message"]
    assert "ms after the start" in report["error"]["message"]
    assert report["trace"]["trace_id"] == XRAY_TRACE_ID
    assert report["trace"]["span_id"] == root_span_id


def test_nested_span_end_restores_the_parent_then_the_outer_end_blanks(spool: str) -> None:
    inv = make_inv()
    crumbs = Breadcrumbs(spool)
    crumbs.enter(inv, 10_000, 128)
    outer = open_span(inv, crumbs, "outer", inv.root_span_id)
    assert span_line(raw(crumbs))["span_id"] == outer.span_id
    inner = open_span(inv, crumbs, "inner", outer.span_id)
    assert span_line(raw(crumbs))["span_id"] == inner.span_id
    close_span(inv, crumbs, inner)
    restored = span_line(raw(crumbs))
    assert (restored["span_id"], restored["name"]) == (outer.span_id, "outer")
    close_span(inv, crumbs, outer)
    assert span_line(raw(crumbs)) is None
    assert parse(raw(crumbs))["request_id"] == inv.request_id  # the invocation: still in flight
    crumbs.leave()
    assert parse(raw(crumbs)) is None and span_line(raw(crumbs)) is None


def test_the_restored_parent_is_what_the_next_process_sees(spool: str) -> None:
    inv = make_inv()

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(inv, 10_000, 128)
        outer = open_span(inv, crumbs, "outer", inv.root_span_id)
        inner = open_span(inv, crumbs, "inner", outer.span_id)
        close_span(inv, crumbs, inner)

    (crumb,) = crumbs_after_death(spool, work)
    assert crumb["span"]["name"] == "outer"


def test_next_invocation_starts_with_no_span(spool: str) -> None:
    """An invocation that ended with a span still open (a leaked span) does not pass it on."""
    first, second = make_inv(), make_inv()

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(first, 10_000, 128)
        open_span(first, crumbs, "never-closed", first.root_span_id)
        crumbs.leave()
        crumbs.enter(second, 10_000, 128)

    (crumb,) = crumbs_after_death(spool, work)
    assert crumb["request_id"] == second.request_id
    assert "span" not in crumb


class _Recorder(http.server.ThreadingHTTPServer):
    """A loopback server that reads this process's breadcrumb while each request is in flight."""

    daemon_threads = True

    def __init__(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                data = Path(_state.S.breadcrumbs.path).read_bytes()
                outer.seen.append((self.headers.get("traceparent"), parse(data)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str | None, Any]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/orders"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    yield server
    server.shutdown()
    server.server_close()


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=5) as response:
        response.read()


def test_an_instrumented_call_is_the_span_in_flight(recorder: _Recorder) -> None:
    """Through the real instrumentation: while the HTTP call is in flight the breadcrumb holds
    the invocation and names the call (with the span id the call carries downstream); once it
    returns, nothing is in flight; after the invocation, nothing at all."""
    after: list[Any] = []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        _get(recorder.url)
        after.append(span_line(raw(_state.S.breadcrumbs)))

    context = fake_context()
    with capture_reports() as reports:
        handler({}, context)
    (report,) = reports
    ((traceparent, crumb),) = recorder.seen
    assert crumb is not None and crumb["request_id"] == context.aws_request_id
    assert "span" in crumb, "the call in flight was not in the breadcrumb"
    _, trace_id, span_id, _ = traceparent.split("-")
    assert crumb["span"]["trace_id"] == trace_id == report["trace"]["trace_id"]
    assert crumb["span"]["span_id"] == span_id
    assert crumb["span"]["root_span_id"] == report["trace"]["span_id"]
    assert crumb["span"]["name"] in {s["name"] for s in report["spans"]}
    assert after == [None]
    assert parse(raw(_state.S.breadcrumbs)) is None
    assert span_line(raw(_state.S.breadcrumbs)) is None


def test_a_user_span_restored_as_parent_is_blanked_when_it_ends(recorder: _Recorder) -> None:
    """An instrumented call inside ``lambdascope.span("work")``: when the call returns, the
    breadcrumb names its parent ``work`` (still in flight). When ``work`` ends nothing is in
    flight any more, so a crash right after must not be blamed on ``work``."""
    during: list[Any] = []
    after: list[Any] = []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        with lambdascope.span("work"):
            _get(recorder.url)
            during.append(span_line(raw(_state.S.breadcrumbs)))
        after.append(span_line(raw(_state.S.breadcrumbs)))

    with capture_reports():
        handler({}, fake_context())
    assert during[0] is not None and during[0]["name"] == "work"
    assert after == [None], f"the breadcrumb still names a span that ended: {after[0]}"


# -- what goes in a record ------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    [
        'quote"inside',
        "back\\slash",
        "new\nline\r\tand tab",
        "ünïcødé-ßø-日本",
        '{"request_id":"fake","start_ms":0}',
        "\x00nul\x1f control",
        "x" * 128,
    ],
    ids=["quote", "backslash", "newline", "unicode", "json", "control", "128-bytes"],
)
def test_odd_request_ids_round_trip(spool: str, request_id: str, validate_report: Any) -> None:
    inv = make_inv(request_id)

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(inv, 10_000, 128)
        open_span(inv, crumbs, 'GET "odd"\nname', inv.root_span_id)

    (crumb,) = crumbs_after_death(spool, work)
    assert crumb["request_id"] == request_id
    assert crumb["span"]["name"] == 'GET "odd"\nname'
    report = validate_report(crashed_report(crumb, pipeline()))
    assert report["invocation"]["request_id"] == request_id


@pytest.mark.parametrize("request_id", ["r" * 600, "a" + "é" * 100], ids=["ascii", "multibyte-cut"])
def test_a_too_long_request_id_is_cut_and_tears_nothing(
    spool: str, request_id: str, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)
    inv = make_inv(request_id)

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(inv, 10_000, 128)
        open_span(inv, crumbs, "GET", inv.root_span_id)

    (crumb,) = crumbs_after_death(spool, work)
    kept = crumb["request_id"]
    assert 0 < len(kept.encode()) <= 130 and request_id.startswith(kept.rstrip("\ufffd"))
    assert crumb["xray"] == XRAY_HEADER  # the fields after it are whole
    assert crumb["timeout_ms"] == 3000
    assert crumb["span"]["name"] == "GET"
    validate_report(crashed_report(crumb, pipeline()))


def test_a_shorter_request_id_after_a_longer_one_reads_back_exactly(spool: str) -> None:
    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(make_inv("a-long-request-id-" + "z" * 60), 10_000, 128)
        crumbs.leave()
        crumbs.enter(make_inv("short"), 10_000, 128)

    (crumb,) = crumbs_after_death(spool, work)
    assert crumb["request_id"] == "short"


def test_a_too_long_xray_header_stays_in_its_half(
    spool: str, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    header = f"Root={XRAY_ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=" + "a1b2c3d4:0|" * 120
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
    inv = make_inv()
    seen: list[Any] = []

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(inv, 10_000, 128)
        seen.append(span_line(raw(crumbs)))  # the span half untouched by the header
        open_span(inv, crumbs, "GET", inv.root_span_id)

    (crumb,) = crumbs_after_death(spool, work)
    assert header.startswith(crumb["xray"]) and len(crumb["xray"]) < HALF
    assert crumb["span"]["name"] == "GET"
    report = validate_report(crashed_report(crumb, pipeline()))
    assert report["trace"]["trace_id"] == XRAY_TRACE_ID


@pytest.mark.parametrize(
    "name",
    ["x" * 5000, "é" * 200, '"' * 200, "\\" * 300, "\n" * 200],
    ids=["long-ascii", "non-ascii", "quotes", "backslashes", "newlines"],
)
def test_a_long_span_name_never_tears_the_span_line(spool: str, name: str) -> None:
    inv = make_inv()
    crumbs = Breadcrumbs(spool)
    crumbs.enter(inv, 10_000, 128)
    outer = open_span(inv, crumbs, "outer", inv.root_span_id)
    open_span(inv, crumbs, name, outer.span_id)
    data = raw(crumbs)
    span = span_line(data)  # one whole line
    assert span is not None
    # Either the new span (cut to 200 characters) or, too long to fit, the one before stands.
    assert span["name"] in (name[:200], "outer")
    assert parse(data)["request_id"] == inv.request_id


# -- pwrite where the file cannot be mapped -----------------------------------------------------


def _story(crumbs: Breadcrumbs, invs: list[Invocation], steps: list[bytes]) -> None:
    first, second = invs
    crumbs.enter(first, 42_000, 512)
    steps.append(raw(crumbs))
    outer = open_span(first, crumbs, "outer", first.root_span_id, 1_700_000_000_001.5)
    inner = open_span(first, crumbs, "inner", outer.span_id, 1_700_000_000_002.5)
    steps.append(raw(crumbs))
    close_span(first, crumbs, inner)
    steps.append(raw(crumbs))
    crumbs.leave()
    steps.append(raw(crumbs))
    crumbs.enter(second, 43_000, 512)
    steps.append(raw(crumbs))


def test_pwrite_fallback_writes_the_same_breadcrumb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)
    invs = [make_inv('req"1-' + "q" * 40), make_inv("req-2")]
    for inv in invs:
        assert inv.trace_id  # resolved before the span ids are replayed
    ids = [_ids.new_span_id() for _ in range(2)]
    mapped_steps: list[bytes] = []
    feed = iter(ids)
    monkeypatch.setattr(_ids, "new_span_id", lambda: next(feed))
    mapped = Breadcrumbs(str(tmp_path / "mapped"))
    assert mapped._map is not None
    _story(mapped, invs, mapped_steps)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("mmap refused")

    monkeypatch.setattr(mmap, "mmap", refuse)
    feed = iter(ids)
    for inv in invs:
        inv.open_spans.clear()
        inv.spans.clear()
    written_steps: list[bytes] = []
    written = Breadcrumbs(str(tmp_path / "written"))
    assert written._map is None
    assert stat.S_IMODE(os.stat(written.path).st_mode) == 0o600
    _story(written, invs, written_steps)

    # What a new process reads is the same at every step.
    assert [parse(s) for s in written_steps] == [parse(s) for s in mapped_steps]
    assert [span_line(s) for s in written_steps] == [span_line(s) for s in mapped_steps]
    # Byte for byte while nothing older lingers in the record (a fresh file).
    assert written_steps[:4] == mapped_steps[:4]
    assert [s[HALF:] for s in written_steps] == [s[HALF:] for s in mapped_steps]


def test_pwrite_fallback_round_trip(
    spool: str, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("mmap refused")

    monkeypatch.setattr(mmap, "mmap", refuse)
    inv = make_inv()

    def work(crumbs: Breadcrumbs) -> None:
        assert crumbs._map is None
        crumbs.enter(inv, 10_000, 128)
        open_span(inv, crumbs, "S3.GetObject", inv.root_span_id)

    (crumb,) = crumbs_after_death(spool, work)
    assert crumb["request_id"] == inv.request_id
    assert crumb["span"]["name"] == "S3.GetObject"
    validate_report(crashed_report(crumb, pipeline()))


# -- the crash report in each case ------------------------------------------------------------


def test_crashed_report_without_a_span_or_a_header_gets_a_fresh_trace(
    spool: str, validate_report: Any
) -> None:
    inv = make_inv()
    (crumb,) = crumbs_after_death(spool, lambda crumbs: crumbs.enter(inv, 10_000, 128))
    assert crumb["xray"] == "" and "span" not in crumb
    first = validate_report(crashed_report(dict(crumb), pipeline()))
    second = validate_report(crashed_report(dict(crumb), pipeline()))
    tid = first["trace"]["trace_id"]
    assert len(tid) == 32 and int(tid, 16) != 0
    assert tid != second["trace"]["trace_id"]
    # An invocation span of its own (error, no span in flight under it), so the crash shows in
    # tracing back ends.
    (root,) = first["spans"]
    assert first["trace"]["span_id"] == root["span_id"] and root["status"] == "error"
    assert root["parent_span_id"] is None and root["duration_ms"] == 0.0
    assert "in flight" not in first["error"]["message"]
    assert "ended during the invocation" in first["error"]["message"]


def test_crashed_report_with_only_the_xray_header(validate_report: Any) -> None:
    crumb = {"request_id": "r-2", "start_ms": 1_700_000_000_000.0, "timeout_ms": 3000,
             "rss_mb": 10.0, "limit_mb": 128, "xray": XRAY_HEADER}
    report = validate_report(crashed_report(crumb, pipeline()))
    assert report["trace"]["trace_id"] == XRAY_TRACE_ID
    (root,) = report["spans"]
    assert report["trace"]["span_id"] == root["span_id"]
    assert root["parent_span_id"] == report["trace"]["parent_span_id"]  # the X-Ray Parent


def test_crashed_report_prefers_the_span_line(validate_report: Any) -> None:
    crumb = {"request_id": "r-3", "start_ms": 1_700_000_000_000.0, "timeout_ms": 3000,
             "rss_mb": 10.0, "limit_mb": 128, "xray": XRAY_HEADER,
             "span": {"trace_id": W3C_TRACE_ID, "root_span_id": "00f067aa0ba902b7",
                      "span_id": "1111111111111111", "name": "POST /charge",
                      "start_ms": 1_700_000_000_250.0}}
    report = validate_report(crashed_report(crumb, pipeline()))
    assert report["trace"]["trace_id"] == W3C_TRACE_ID
    assert report["trace"]["span_id"] == "00f067aa0ba902b7"
    assert "in flight: POST /charge (250 ms after the start)" in report["error"]["message"]
    root, in_flight = report["spans"]
    # long past its deadline: stopped there, so the invocation span lasts until the deadline
    assert (root["span_id"], root["duration_ms"]) == ("00f067aa0ba902b7", 3000.0)
    assert in_flight["span_id"] == "1111111111111111"
    assert in_flight["parent_span_id"] == root["span_id"] and in_flight["status"] == "error"
    assert in_flight["attributes"]["lambdascope.in_flight"] is True


def test_crashed_report_from_almost_nothing(validate_report: Any) -> None:
    report = validate_report(crashed_report({"request_id": "r-4"}, pipeline()))
    assert report["invocation"]["request_id"] == "r-4"
    assert report["invocation"]["status"] == "crashed"


def test_crashed_report_names_memory_near_the_limit(validate_report: Any) -> None:
    crumb = {"request_id": "r-5", "start_ms": 1_700_000_000_000.0, "timeout_ms": 900_000,
             "rss_mb": 240.0, "limit_mb": 256, "xray": ""}
    report = validate_report(crashed_report(crumb, pipeline()))
    assert "probable out-of-memory" in report["error"]["message"]


def test_a_timeout_already_reported_is_not_reported_again(spool: str) -> None:
    """The watchdog delivered the timeout report, then the process was killed at the deadline:
    the next process finds nothing to report (one report per invocation)."""
    inv = make_inv()

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(inv, 50_000, 128)
        open_span(inv, crumbs, "GET", inv.root_span_id)
        crumbs.timeout_reported()

    assert crumbs_after_death(spool, work) == []
    assert others(spool) == []  # claimed and removed all the same


def test_a_new_invocation_after_a_reported_timeout_is_in_flight_again(spool: str) -> None:
    first, second = make_inv(), make_inv()

    def work(crumbs: Breadcrumbs) -> None:
        crumbs.enter(first, 50_000, 128)
        crumbs.timeout_reported()
        crumbs.leave()  # the handler finished after all
        crumbs.enter(second, 50_000, 128)

    (crumb,) = crumbs_after_death(spool, work)
    assert crumb["request_id"] == second.request_id

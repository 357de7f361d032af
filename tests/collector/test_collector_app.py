"""The collector's ASGI application in process (uvicorn in a thread), on a real store:
ingestion (validation, sizes, encodings, tokens, atomic batches), the API's parameters and
answers, and the store's blocking calls kept off the event loop."""

from __future__ import annotations

import contextlib
import gzip
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("fastjsonschema")

from collector_harness import InProcess, gzip_bomb, make_report, raw_exchange  # noqa: E402
from httpx import Client  # noqa: E402

from lambdascope.collector import app as app_module  # noqa: E402
from lambdascope.collector.app import create_app, parse_duration_ms, parse_time_ms  # noqa: E402
from lambdascope.collector.store import Store  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    s = Store(tmp_path / "reports.db")
    yield s
    s.close()


@contextlib.contextmanager
def serve(store: Any, token: str | None = None, **kwargs: Any) -> Iterator[Client]:
    with InProcess(create_app(store, token, **kwargs)) as server, server.client() as c:
        yield c


@pytest.fixture
def client(store: Store) -> Iterator[Client]:
    with serve(store) as c:
        yield c


@pytest.fixture
def secured(store: Store) -> Iterator[Client]:
    with serve(store, TOKEN) as c:
        yield c


def count(store: Store) -> int:
    with store.reader() as conn:
        return conn.execute("SELECT count(*) FROM invocations").fetchone()[0]


def test_the_report_helper_makes_schema_valid_reports(validate_report: Any) -> None:
    validate_report(make_report())
    validate_report(make_report(status="error", cold=True, with_span=True))


# -- ingestion ----------------------------------------------------------------------------------
def test_a_report_is_stored_once(client: Client, store: Store) -> None:
    report = make_report()
    first = client.post("/v1/reports", json=report)
    assert first.status_code == 202, first.text
    assert first.json() == {"stored": 1, "duplicates": 0, "replaced": 0}
    again = client.post("/v1/reports", json=report)
    assert again.status_code == 202
    assert again.json() == {"stored": 0, "duplicates": 1, "replaced": 0}
    assert count(store) == 1


def test_an_array_is_stored_with_its_counts(client: Client, store: Store) -> None:
    reports = [make_report() for _ in range(10)]
    r = client.post("/v1/reports", json=reports)
    assert r.status_code == 202
    assert r.json()["stored"] == 10
    r = client.post("/v1/reports", json=[*reports[:3], make_report()])
    assert r.json() == {"stored": 1, "duplicates": 3, "replaced": 0}
    assert count(store) == 11
    assert client.post("/v1/reports", json=[]).json() == {
        "stored": 0, "duplicates": 0, "replaced": 0}


def test_the_final_report_replaces_the_timeout_report(client: Client) -> None:
    rid = "timeout-then-final"
    first = client.post("/v1/reports", json=make_report(rid, status="timeout")).json()
    final = client.post("/v1/reports", json=make_report(rid, status="ok")).json()
    assert first["stored"] == 1
    assert final == {"stored": 1, "duplicates": 0, "replaced": 1}


def test_one_invalid_report_stores_nothing_of_its_batch(client: Client, store: Store
                                                        ) -> None:
    reports = [make_report() for _ in range(5)]
    reports[3]["invocation"]["status"] = "exploded"
    r = client.post("/v1/reports", json=reports)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error.startswith("report 3: data.invocation.status must be one of"), error
    assert "\n" not in error
    assert count(store) == 0


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.pop("schema"), "report 0: data must contain"),
        (lambda r: r["trace"].update(trace_id="0" * 32), "data.trace.trace_id must match"),
        (lambda r: r["invocation"].update(duration_ms=-1), "data.invocation.duration_ms "),
        (lambda r: r["invocation"].update(cold_start="yes"), "data.invocation.cold_start must"),
        (lambda r: r["function"].update(memory_limit_mb=True),
         "data.function.memory_limit_mb must"),
    ],
)
def test_a_report_against_the_schema_is_named_with_its_first_problem(
    client: Client, mutate: Any, expected: str
) -> None:
    report = make_report()
    mutate(report)
    r = client.post("/v1/reports", json=report)
    assert r.status_code == 400
    assert expected in r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"[1,",
        b"nul",
        b'"a report"',
        b"42",
        b"\xff\xfe\x00garbage",
        b'{"schema": NaN}',
        b'{"schema": Infinity}',
        b'{"schema": 1e999}',
        b'{"n": ' + b"9" * 30 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b"[1]",
        b"[[]]",
    ],
)
def test_malformed_bodies_are_400_and_nothing_is_stored(
    client: Client, store: Store, body: bytes
) -> None:
    r = client.post("/v1/reports", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"}
    assert "\n" not in r.json()["error"]
    assert count(store) == 0
    # and the application still works
    assert client.post("/v1/reports", json=make_report()).status_code == 202


def test_too_many_reports_in_one_body_is_413(store: Store) -> None:
    with serve(store, max_reports=5) as c:
        r = c.post("/v1/reports", json=[make_report() for _ in range(6)])
        assert r.status_code == 413
        assert "6 reports" in r.json()["error"]
        assert c.post("/v1/reports", json=[make_report() for _ in range(5)]).status_code == 202


def test_a_body_over_the_limit_is_413(store: Store) -> None:
    with serve(store, max_body=2000) as c:
        big = make_report()
        big["labels"] = [f"label-{i}" for i in range(300)]
        r = c.post("/v1/reports", json=big)
        assert r.status_code == 413
        assert r.headers["connection"] == "close"
        assert "larger than 2000 bytes" in r.json()["error"]
        # a declared length over the limit is refused before the body is read
        status, headers, body = raw_exchange(
            str(c.base_url), b"POST /v1/reports HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 10000000000", b"x" * 100)
        assert status == 413
        assert headers["connection"] == "close"
        assert json.loads(body)["error"] == "the body is larger than 2000 bytes"
        # so is a chunked body once it passes the limit
        chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
        status, headers, _ = raw_exchange(
            str(c.base_url), b"POST /v1/reports HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked", chunk * 3)
        assert status == 413
        # and a bad declared length is 400
        status, _, _ = raw_exchange(
            str(c.base_url), b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: -5")
        assert status == 400
    assert count(store) == 0


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "deflate-raw"])
def test_compressed_bodies_are_accepted(client: Client, store: Store, encoding: str
                                        ) -> None:
    reports = [make_report(with_span=True) for _ in range(20)]
    raw = json.dumps(reports).encode()
    if encoding in ("gzip", "x-gzip"):
        body = gzip.compress(raw)
    elif encoding == "deflate":
        body = zlib.compress(raw)
    else:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = comp.compress(raw) + comp.flush()
        encoding = "deflate"
    r = client.post("/v1/reports", content=body, headers={"Content-Encoding": encoding})
    assert r.status_code == 202, r.text
    assert r.json()["stored"] == 20
    assert count(store) == 20


def test_multi_member_gzip_is_read_whole(client: Client) -> None:
    a, b = make_report(), make_report()
    raw = json.dumps([a, b]).encode()
    body = gzip.compress(raw[:30]) + gzip.compress(raw[30:])
    r = client.post("/v1/reports", content=body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 202, r.text
    assert r.json()["stored"] == 2


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [
        (b"not gzip at all", "gzip", 400),
        (gzip.compress(b'{"a": 1}')[:-6], "gzip", 400),  # truncated
        (b"", "gzip", 400),
        (zlib.compress(b"{}") + b"trailing", "deflate", 400),
        (b"{}", "br", 415),
        (b"{}", "gzip, gzip", 415),
    ],
)
def test_bad_encodings_are_refused(client: Client, body: bytes, encoding: str,
                                   status: int) -> None:
    r = client.post("/v1/reports", content=body, headers={"Content-Encoding": encoding})
    assert r.status_code == status, r.text
    assert "error" in r.json()


def test_a_gzip_bomb_is_413_after_reading_little(store: Store) -> None:
    bomb = gzip_bomb(64)  # 64 MB of zeros in ~70 KB
    with serve(store, max_decompressed=1 << 20) as c:
        started = time.monotonic()
        r = c.post("/v1/reports", content=bomb, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413
        assert "decompresses to more than" in r.json()["error"]
        assert time.monotonic() - started < 5
        assert c.post("/v1/reports", json=make_report()).status_code == 202


# -- the token ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer"},
        {"Authorization": ("Bearer " + "é" * 10).encode()},
    ],
)
def test_a_wrong_token_is_401_with_a_challenge(secured: Client, store: Store,
                                               headers: dict[str, str]) -> None:
    r = secured.post("/v1/reports", json=make_report(), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert count(store) == 0
    r = secured.get("/api/stats", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_the_right_token_is_accepted_everywhere(secured: Client) -> None:
    assert secured.post("/v1/reports", json=make_report(), headers=AUTH).status_code == 202
    assert secured.post("/v1/reports", json=make_report(),
                        headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 202
    for path in ("/api/health", "/api/functions", "/api/stats", "/api/invocations",
                 "/api/dependencies", "/api/errors", "/api/logs"):
        assert secured.get(path).status_code == 401, path
        assert secured.get(path, headers=AUTH).status_code == 200, path
    # the description holds no data and is open
    doc = secured.get("/openapi.json")
    assert doc.status_code == 200
    assert doc.json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch,
                                                secured: Client) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = app_module.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    secured.get("/api/health", headers={"Authorization": "Bearer nope"})
    secured.get("/api/health", headers={"Authorization": "Basic nope"})
    assert len(calls) == 2
    assert all(b == TOKEN.encode() for _, b in calls)


# -- the store off the event loop ----------------------------------------------------------------
class _WaitingStore:
    """A store seen through ``add`` and ``reader`` only (no ``add_nowait``): the app then
    waits for each write in a worker thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.add = store.add

    def reader(self) -> Any:
        return self.store.reader()


@pytest.mark.parametrize("waiting", [False, True], ids=["add_nowait", "add"])
def test_a_slow_store_does_not_stop_the_api(store: Store, waiting: bool) -> None:
    release = threading.Event()
    entered = threading.Event()
    real_apply = store._apply

    def slow_apply(jobs: Any) -> Any:  # the writer thread, inside its transaction
        entered.set()
        release.wait(10)
        return real_apply(jobs)

    store._apply = slow_apply  # type: ignore[method-assign]
    with serve(_WaitingStore(store) if waiting else store) as c:
        results: list[Any] = []
        poster = threading.Thread(
            target=lambda: results.append(c.post("/v1/reports", json=make_report()))
        )
        poster.start()
        assert entered.wait(5)
        started = time.monotonic()
        assert c.get("/api/health").status_code == 200  # answered while the write waits
        assert time.monotonic() - started < 2
        release.set()
        poster.join(10)
        assert results[0].status_code == 202
        assert results[0].json()["stored"] == 1


@pytest.mark.parametrize("waiting", [False, True], ids=["add_nowait", "add"])
def test_a_failing_store_is_503_and_a_report_it_refuses_is_400(store: Store, waiting: bool
                                                               ) -> None:
    from lambdascope.collector.store import StoreError

    failure: list[BaseException] = []
    real_apply = store._apply

    def apply(jobs: Any) -> Any:
        if failure:
            raise failure[0]
        return real_apply(jobs)

    store._apply = apply  # type: ignore[method-assign]
    with serve(_WaitingStore(store) if waiting else store) as c:
        failure.append(sqlite3.OperationalError("disk I/O error"))
        r = c.post("/v1/reports", json=make_report())
        assert r.status_code == 503
        assert "disk I/O error" in r.json()["error"]
        failure[:] = [StoreError("disk full")]
        r = c.post("/v1/reports", json=[make_report(), make_report()])
        assert r.status_code == 503 and "disk full" in r.json()["error"]
        failure[:] = [OverflowError("Python int too large to convert to SQLite INTEGER")]
        r = c.post("/v1/reports", json=make_report())
        assert r.status_code == 400 and "OverflowError" in r.json()["error"]
        failure.clear()
        # A report the schema allows but the store cannot take: refused before the writer.
        odd = make_report(start_ms=1e15)
        r = c.post("/v1/reports", json=odd)
        assert r.status_code == 400
        assert "not a time in epoch ms" in r.json()["error"]
        # and the store still works
        r = c.post("/v1/reports", json=make_report())
        assert r.status_code == 202 and r.json()["stored"] == 1


# -- the API ----------------------------------------------------------------------------------
def test_durations_and_times() -> None:
    assert parse_duration_ms("30s") == 30_000
    assert parse_duration_ms("15m") == parse_duration_ms("15min") == 900_000
    assert parse_duration_ms("1.5h") == 5_400_000
    assert parse_duration_ms("7d") == 7 * 86_400_000
    assert parse_time_ms("1h", now_ms=10_000_000) == 10_000_000 - 3_600_000
    assert parse_time_ms("1767225600000") == 1767225600000.0
    assert parse_time_ms("1767225600000.5") == 1767225600000.5
    for bad in ("", "1y", "h", "-1h", "1e3", "yesterday", "1h; DROP TABLE x"):
        with pytest.raises(ValueError):
            parse_time_ms(bad)


def _seed(client: Client, n: int = 6) -> list[dict[str, Any]]:
    reports = [make_report(f"rid-{i}", function="orders" if i % 2 else "billing",
                           status="error" if i == 3 else "ok", cold=(i < 2), with_span=True)
               for i in range(n)]
    assert client.post("/v1/reports", json=reports).status_code == 202
    return reports


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/stats", {"since": "yesterday"}),
        ("/api/stats", {"since": "1y"}),
        ("/api/stats", {"until": "soon"}),
        ("/api/stats", {"since": "1h", "until": "2h"}),
        ("/api/stats", {"cold": "yes"}),
        ("/api/stats", {"cold": "1"}),
        ("/api/stats", {"by": "region"}),
        ("/api/stats", {"price_gb_s": "-1"}),
        ("/api/stats", {"price_gb_s": "abc"}),
        ("/api/stats", {"price_request": "nan"}),
        ("/api/stats", {"price_request": "1e999"}),
        ("/api/stats", {"function": ""}),
        ("/api/stats", {"function": "x" * 300}),
        ("/api/invocations", {"limit": "0"}),
        ("/api/invocations", {"limit": "1001"}),
        ("/api/invocations", {"limit": "ten"}),
        ("/api/invocations", {"offset": "-1"}),
        ("/api/invocations", {"offset": "99999999999999999999999"}),
        ("/api/invocations", {"status": "weird"}),
        ("/api/logs", {"limit": "1.5"}),
        ("/api/traces/not-a-trace-id", {}),
    ],
)
def test_bad_parameters_are_400_with_one_line(client: Client, path: str,
                                              params: dict[str, str]) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert list(body) == ["error"]
    assert "\n" not in body["error"]


def test_the_api_answers_from_the_store(client: Client) -> None:
    reports = _seed(client)
    stats = client.get("/api/stats", params={"since": "1h"}).json()
    by_name = {f["function"]: f for f in stats["functions"]}
    assert by_name["orders"]["invocations"] == 3
    assert by_name["billing"]["invocations"] == 3
    one = client.get("/api/stats", params={"function": "orders", "cold": "true"}).json()
    assert [f["invocations"] for f in one["functions"]] == [1]

    shown = client.get("/api/invocations/rid-3")
    assert shown.status_code == 200
    assert shown.json()["invocation"]["invocation"]["request_id"] == "rid-3"
    odd = make_report("odd/id with spaces?&#")
    assert client.post("/v1/reports", json=odd).status_code == 202
    from urllib.parse import quote

    shown = client.get("/api/invocations/" + quote("odd/id with spaces?&#", safe=""))
    assert shown.status_code == 200, shown.text
    assert shown.json()["invocation"]["invocation"]["request_id"] == "odd/id with spaces?&#"
    assert client.get("/api/invocations/").status_code == 400
    missing = client.get("/api/invocations/no-such-request")
    assert missing.status_code == 404
    assert "no-such-request" in missing.json()["error"]

    trace = client.get(f"/api/traces/{reports[0]['trace']['trace_id']}")
    assert trace.status_code == 200
    assert client.get(f"/api/traces/{'a' * 32}").status_code == 404

    for path in ("/api/functions", "/api/invocations", "/api/dependencies", "/api/errors",
                 "/api/logs"):
        r = client.get(path, params={"since": "1h"})
        assert r.status_code == 200, (path, r.text)


def test_sql_looking_values_are_only_values(client: Client, store: Store) -> None:
    _seed(client)
    before = count(store)
    for value in ("orders' OR '1'='1", "'; DROP TABLE invocations; --", 'orders" --',
                  "%", "_", "orders%", "\\", "orders) UNION SELECT * FROM invocations --"):
        for path in ("/api/stats", "/api/invocations", "/api/dependencies", "/api/errors",
                     "/api/logs"):
            r = client.get(path, params={"function": value, "since": "1h"})
            assert r.status_code == 200, (path, value, r.text)
            text = r.text
            assert "rid-" not in text, (path, value)
        assert client.get(f"/api/invocations/{value.replace('/', '')}").status_code == 404
    assert count(store) == before
    assert client.get("/api/stats", params={"function": "orders"}).json()["functions"]


def test_unknown_routes_and_methods_answer_json(client: Client) -> None:
    r = client.get("/api/nothing-here")
    assert r.status_code == 404
    assert "error" in r.json()
    r = client.get("/v1/reports")
    assert r.status_code == 405
    assert "error" in r.json()
    r = client.get("/api/stats/")
    assert r.status_code == 404  # no redirect to the other spelling


def test_a_report_the_store_cannot_take_is_400_not_retried(client: Client, store: Store
                                                           ) -> None:
    far = make_report(start_ms=1.9e177)  # schema-valid; no SQLite integer holds its minute
    r = client.post("/v1/reports", json=[make_report(), far])
    assert r.status_code == 400, r.text
    assert count(store) == 0
    assert client.post("/v1/reports", json=make_report()).status_code == 202


def _extreme_reports() -> list[dict[str, Any]]:
    huge = [make_report(duration_ms=1.7e308) for _ in range(2)]
    costly = make_report()
    costly["function"]["memory_limit_mb"] = 10**17
    costly["invocation"]["duration_ms"] = 1e300
    slow_init = make_report(cold=True)
    slow_init["invocation"]["init_duration_ms"] = 1.7e308
    return [*huge, costly, slow_init]


def test_extreme_but_schema_valid_values_do_not_break_the_api(client: Client,
                                                              validate_report: Any) -> None:
    reports = _extreme_reports()
    for report in reports:
        validate_report(report)
    r = client.post("/v1/reports", json=reports)
    if r.status_code == 400:  # refused at the door: fine too
        return
    assert r.status_code == 202
    assert client.get("/api/stats", params={"since": "0"}).status_code == 200
    for report in reports:
        rid = report["invocation"]["request_id"]
        assert client.get(f"/api/invocations/{rid}").status_code == 200


def test_an_unexpected_failure_is_a_json_500_and_the_connection_stays_usable(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdascope.collector import queries

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(queries, "functions", broken)
    r = client.get("/api/functions")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error: RuntimeError: boom"}
    assert client.get("/api/health").status_code == 200  # same kept-alive connection


def test_a_body_that_stops_arriving_is_408(store: Store) -> None:
    with serve(store, body_timeout_s=0.5) as c:
        started = time.monotonic()
        status, headers, _ = raw_exchange(
            str(c.base_url), b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: 1000",
            b'{"schema": ')
        assert status == 408
        assert headers["connection"] == "close"
        assert time.monotonic() - started < 5
        assert c.get("/api/health").status_code == 200

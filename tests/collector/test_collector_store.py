"""The store: schema and migrations, the single writer, duplicates, REPORT lines, logs,
retention, error fingerprints and dependency names."""

from __future__ import annotations

import copy
import json
import sqlite3
import stat
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from collector_reports import (
    HOUR,
    MINUTE,
    T0,
    assert_rollups_consistent,
    aws_span,
    http_span,
    make_report,
)

from lambdascope.collector import queries
from lambdascope.collector import store as store_module
from lambdascope.collector.fingerprint import fingerprint, message_shape, top_frame
from lambdascope.collector.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AddResult,
    Store,
    StoreError,
    dependency_of,
    migrate,
    open_reader,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "reports.db"


@pytest.fixture
def store(db: Path) -> Any:
    with Store(db) as s:
        yield s


def count(s: Store, table: str = "invocations", where: str = "1", *params: Any) -> int:
    with s.reader() as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()[0]


def row(s: Store, request_id: str) -> dict[str, Any]:
    with s.reader() as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM invocations WHERE request_id = ?",
                             (request_id,)).fetchone()
        return dict(found) if found else {}


def consistent(s: Store) -> None:
    with s.reader() as conn:
        assert_rollups_consistent(conn)


class TestOpening:
    """A new store is private, in WAL mode, at the latest schema version."""

    def test_owner_only_directories_and_file(self, db: Path) -> None:
        with Store(db) as s:
            s.add(make_report())
            for path in (db, Path(str(db) + "-wal")):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700

    def test_wal_and_schema_version(self, store: Store, db: Path) -> None:
        with store.reader() as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert SCHEMA_VERSION == len(MIGRATIONS) == 3

    def test_readers_cannot_write(self, store: Store) -> None:
        with store.reader() as conn, pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM invocations")

    def test_reader_of_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="no store"):
            open_reader(tmp_path / "nothing.db")

    def test_a_file_that_is_not_a_database(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(StoreError, match="not a lambdascope store"):
            Store(bad)

    def test_a_newer_schema_is_refused(self, db: Path) -> None:
        Store(db).close()
        conn = sqlite3.connect(db)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match="newer than this lambdascope"):
            Store(db)
        with pytest.raises(StoreError):
            open_reader(db)

    def test_bad_retain(self, db: Path) -> None:
        with pytest.raises(ValueError):
            Store(db, retain=-5)


class TestMigrations:
    """A database made by an older version opens and is brought up to date."""

    def test_version_1_database_is_upgraded_with_its_data(self, tmp_path: Path) -> None:
        reports = [
            make_report(start_ms=T0 + n * 7 * MINUTE, duration_ms=10.0 + n,
                        cold=n == 0, init_ms=300.0 if n == 0 else None,
                        version="1" if n < 10 else "2",
                        status="error" if n % 7 == 3 else "ok",
                        spans=[aws_span("S3.GetObject", 3.0 + n, **{"aws.s3.bucket": "b"}),
                               http_span(duration_ms=2.0)])
            for n in range(20)
        ]
        # The same data through the current schema, to compare with.
        current_path = tmp_path / "current.db"
        with Store(current_path) as current:
            current.add(reports)
            with current.reader() as conn:
                want = queries.stats(conn, "orders", T0 - HOUR, T0 + 10 * HOUR, by="version")
        # A version-1 database holding those rows, built with the version-1 script.
        old_path = tmp_path / "old.db"
        old = sqlite3.connect(old_path, isolation_level=None)
        old.execute("PRAGMA journal_mode = WAL")
        assert migrate(old, MIGRATIONS[:1]) == 1
        old.execute("ATTACH DATABASE ? AS cur", (str(current_path),))
        for table in ("invocations", "spans", "logs", "rollup", "error_groups"):
            old.execute(f"INSERT INTO main.{table} SELECT * FROM cur.{table}")
        # Version 1 kept dependencies per (function, minute, dependency), without version.
        old.execute(
            "INSERT INTO main.dependency_rollup SELECT function, minute, dependency, SUM(n),"
            " SUM(errors), SUM(total_ms), MIN(duration) FROM cur.dependency_rollup"
            " GROUP BY function, minute, dependency"
        )
        old.execute("DETACH DATABASE cur")
        columns = [r[1] for r in old.execute("PRAGMA table_info(dependency_rollup)")]
        assert "version" not in columns
        old.close()

        with Store(old_path) as upgraded:
            with upgraded.reader() as conn:
                assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
                columns = [r[1] for r in conn.execute("PRAGMA table_info(dependency_rollup)")]
                assert "version" in columns
                assert_rollups_consistent(conn)
                got = queries.stats(conn, "orders", T0 - HOUR, T0 + 10 * HOUR, by="version")
            assert got == want
            # And it keeps working as a current store.
            assert upgraded.add(make_report(start_ms=T0 + 3 * HOUR)).stored == 1
            consistent(upgraded)

    def test_every_later_migration_runs_in_order(self, tmp_path: Path) -> None:
        conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
        steps = [*MIGRATIONS, "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (1)",
                 lambda c: c.execute("INSERT INTO extra VALUES (2)")]
        assert migrate(conn, steps) == len(steps)
        assert [r[0] for r in conn.execute("SELECT x FROM extra ORDER BY x")] == [1, 2]
        assert migrate(conn, steps) == len(steps)  # nothing left to do
        conn.close()

    def test_a_failing_migration_leaves_the_previous_version(self, tmp_path: Path) -> None:
        conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
        migrate(conn)

        def broken(c: sqlite3.Connection) -> None:
            c.execute("CREATE TABLE half_done (x)")
            raise RuntimeError("disk on fire")

        with pytest.raises(RuntimeError):
            migrate(conn, [*MIGRATIONS, broken])
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables
        conn.close()

    def test_a_reader_upgrades_an_old_file(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        conn = sqlite3.connect(path, isolation_level=None)
        migrate(conn, MIGRATIONS[:1])
        conn.close()
        with open_reader(path) as reader:
            assert reader.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert queries.stats(reader)["functions"] == []
        with pytest.raises(StoreError, match="schema version"):
            conn = sqlite3.connect(tmp_path / "old2.db", isolation_level=None)
            migrate(conn, MIGRATIONS[:1])
            conn.close()
            open_reader(tmp_path / "old2.db", migrate_if_needed=False)


class TestAdd:
    """Reports become rows, spans, log lines and rollups."""

    def test_a_report_from_the_agent(self, store: Store) -> None:
        import lambdascope
        from lambdascope.testing import capture_reports, fake_context

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> Any:
            lambdascope.label("beta")
            with lambdascope.span("work"):
                pass
            if event.get("fail"):
                raise KeyError("order 17")
            return {}

        with capture_reports() as reports:
            handler({}, fake_context(function_name="orders"))
            with pytest.raises(KeyError):
                handler({"fail": True}, fake_context(function_name="orders"))
        assert store.add(reports) == AddResult(stored=2, duplicates=0, replaced=0)
        first, second = (r["invocation"]["request_id"] for r in reports)
        stored = row(store, first)
        assert stored["function"] == "orders"
        assert stored["cold_start"] == 1 and stored["status"] == "ok"
        assert stored["source"] == "agent" and stored["rank"] == 3
        assert json.loads(stored["labels"]) == ["beta"]
        assert json.loads(zlib.decompress(stored["report"])) == reports[0]
        assert row(store, second)["error_type"] == "KeyError"
        assert row(store, second)["fingerprint"]
        assert count(store, "spans", "name = 'work'") == 2
        assert count(store, "spans", "kind = 'server'") == 0  # the root span is the row itself
        consistent(store)

    def test_billed_duration_includes_the_cold_starts_init(self, store: Store) -> None:
        store.add([
            make_report(request_id="cold", duration_ms=10.2, cold=True, init_ms=200.4),
            make_report(request_id="warm", duration_ms=10.2),
            make_report(request_id="pc", duration_ms=10.2, cold=False, init_ms=200.4,
                        init_type="provisioned-concurrency"),
            make_report(request_id="late", status="timeout", duration_ms=2800.0,
                        timeout_ms=3000.0),
        ])
        assert row(store, "cold")["billed_ms"] == 11 + 201
        assert row(store, "warm")["billed_ms"] == 11
        assert row(store, "pc")["billed_ms"] == 11
        assert row(store, "late")["billed_ms"] == 3000  # a timeout runs to the deadline

    def test_one_bad_report_stores_none_of_the_batch(self, store: Store) -> None:
        bad = make_report()
        del bad["invocation"]["request_id"]
        with pytest.raises(ValueError, match=r"report 1: invocation\.request_id"):
            store.add([make_report(), bad])
        assert count(store) == 0
        for broken, message in (
            ({"invocation": {"request_id": "x", "start_ms": 1.0, "status": "weird"}}, "status"),
            ({"invocation": {"request_id": "x", "status": "ok"}}, "start_ms"),
            ([1, 2], "JSON object"),
        ):
            with pytest.raises(ValueError, match=message):
                store.add([broken])  # type: ignore[list-item]

    def test_schema_valid_extremes_are_clamped(self, store: Store) -> None:
        huge = make_report(request_id="huge", duration_ms=1.7e308, cold=True, init_ms=1.7e308,
                           rss_peak_mb=1e300, agent_ms=1e308,
                           spans=[http_span(duration_ms=1e308)])
        huge["function"]["memory_limit_mb"] = 10**17
        store.add([huge, make_report(request_id="also", duration_ms=1e300)])
        stored = row(store, "huge")
        assert stored["duration_ms"] == store_module.MAX_MS
        assert stored["init_ms"] == store_module.MAX_MS
        assert stored["rss_peak_mb"] == store_module.MAX_MB
        assert stored["memory_mb"] == int(store_module.MAX_MB)
        with store.reader() as conn:
            stats = queries.stats(conn, "orders", T0 - HOUR, T0 + HOUR)
            shown = queries.show(conn, "huge")
        json.dumps(stats, allow_nan=False)  # every figure finite
        json.dumps(shown, allow_nan=False)
        assert stats["functions"][0]["invocations"] == 2
        consistent(store)

    def test_a_start_that_is_not_a_time_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError, match="epoch ms"):
            store.add(make_report(start_ms=1e300))
        with pytest.raises(ValueError, match="epoch ms"):
            store.add_platform({"request_id": "x", "function": "f", "start_ms": 1e200})

    def test_raw_json_is_stored_as_received(self, store: Store) -> None:
        report = make_report(request_id="raw")
        text = json.dumps(report, indent=1)
        store.add([report], raw=[text])
        assert zlib.decompress(row(store, "raw")["report"]).decode() == text

    def test_empty_add(self, store: Store) -> None:
        assert store.add([]) == AddResult()

    def test_sql_looking_values_are_data(self, store: Store) -> None:
        evil = "orders'; DROP TABLE invocations; --"
        store.add(make_report(request_id="r'1\"", function=evil, version="1' OR '1'='1",
                              labels=['x"); DELETE FROM logs; --', "%_"], logs=["'; --"]))
        assert row(store, "r'1\"")["function"] == evil
        with store.reader() as conn:
            out = queries.invocations(conn, function=evil, label='x"); DELETE FROM logs; --')
            assert [i["request_id"] for i in out["invocations"]] == ["r'1\""]
            assert queries.invocations(conn, function="orders")["invocations"] == []
            assert queries.invocations(conn, label="%")["invocations"] == []
            assert queries.stats(conn, evil, T0 - HOUR, T0 + HOUR)["functions"][0][
                "invocations"] == 1
        consistent(store)


class TestConcurrency:
    """Many writers share commits; readers read meanwhile; every report is counted."""

    def test_concurrent_writers_and_readers(self, store: Store) -> None:
        writers, batches, per_batch = 8, 15, 20
        results: list[AddResult] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def write(w: int) -> None:
            try:
                for b in range(batches):
                    reports = [
                        make_report(request_id=f"w{w}-b{b}-{n}",
                                    start_ms=T0 + (w * 1000 + b * 20 + n) * 1000.0,
                                    status="error" if n == 0 else "ok",
                                    spans=[aws_span(duration_ms=1.0 + n)])
                        for n in range(per_batch)
                    ]
                    # Every other batch is delivered twice, as a retrying spool would.
                    results.append(store.add(reports))
                    if b % 2:
                        results.append(store.add(reports[:5]))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def read() -> None:
            try:
                while not done.is_set():
                    with store.reader() as conn:
                        queries.stats(conn, "orders", T0 - HOUR, T0 + 10 * HOUR)
                        queries.invocations(conn, limit=5)
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(2)]
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in readers + threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        for t in readers:
            t.join()
        assert not errors
        total = writers * batches * per_batch
        assert sum(r.stored for r in results) == total
        assert sum(r.duplicates for r in results) == writers * (batches // 2) * 5
        assert count(store) == total
        with store.reader() as conn:
            assert conn.execute("SELECT SUM(n) FROM rollup").fetchone()[0] == total
            stats = queries.stats(conn, "orders", T0 - HOUR, T0 + 10 * HOUR)["functions"][0]
        assert stats["invocations"] == total
        assert stats["error_rate"] == pytest.approx(1 / per_batch)
        consistent(store)

    def test_close_writes_what_is_queued_and_refuses_more(self, db: Path) -> None:
        s = Store(db)
        threads = [threading.Thread(target=s.add, args=([make_report()],)) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s.close()
        s.close()  # twice is fine
        with pytest.raises(StoreError, match="closed"):
            s.add(make_report())
        with open_reader(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM invocations").fetchone()[0] == 20

    def test_checkpoints_copy_the_wal_back(self, db: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(store_module, "CHECKPOINT_ROWS", 10)
        with Store(db) as s:
            for n in range(5):
                s.add([make_report(start_ms=T0 + n * 100 + k) for k in range(10)])
            deadline = time.monotonic() + 10
            while db.stat().st_size < 100_000 and time.monotonic() < deadline:
                time.sleep(0.05)  # the checkpoint thread copies pages into the file
            assert db.stat().st_size >= 100_000
        wal = Path(f"{db}-wal")
        assert not wal.exists() or wal.stat().st_size == 0  # emptied at close
        with open_reader(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM invocations").fetchone()[0] == 50

    def test_two_stores_on_one_file(self, db: Path) -> None:
        # The collector and `lambdascope ingest --db` writing the same file: each writer's
        # cached rollups must not go stale.
        with Store(db) as a, Store(db) as b:
            for n in range(6):
                (a if n % 2 else b).add(make_report(start_ms=T0 + n * 1000.0))
            consistent(a)
            assert count(a) == 6


class TestDuplicates:
    """At-least-once delivery: the request id is the key, the higher rank wins."""

    def test_the_same_report_twice(self, store: Store) -> None:
        report = make_report(request_id="a")
        assert store.add(report) == AddResult(1, 0, 0)
        assert store.add(copy.deepcopy(report)) == AddResult(0, 1, 0)
        assert store.add([report, report]) == AddResult(0, 2, 0)
        assert count(store) == 1
        consistent(store)

    def test_timeout_then_final_report_replaces(self, store: Store) -> None:
        timeout = make_report(request_id="a", status="timeout", duration_ms=2790.0,
                              spans=[aws_span("DynamoDB.Query", 2500.0,
                                              **{"aws.dynamodb.table_names": ["t"]})])
        final = make_report(request_id="a", status="ok", duration_ms=2900.0,
                            spans=[aws_span("DynamoDB.Query", 2600.0,
                                            **{"aws.dynamodb.table_names": ["t"]}),
                                   http_span(duration_ms=40.0)],
                            logs=["done"])
        assert store.add(timeout) == AddResult(1, 0, 0)
        assert count(store, "error_groups") == 1
        assert store.add(final) == AddResult(1, 0, 1)
        stored = row(store, "a")
        assert stored["status"] == "ok" and stored["rank"] == 3
        assert stored["duration_ms"] == 2900.0
        assert count(store, "spans") == 2
        assert count(store, "logs") == 1
        assert count(store, "error_groups") == 0  # the Timeout group had only this one
        consistent(store)

    def test_a_late_timeout_report_after_the_final_one_is_a_duplicate(self, store: Store) -> None:
        store.add(make_report(request_id="a", status="error"))
        assert store.add(make_report(request_id="a", status="timeout")) == AddResult(0, 1, 0)
        assert store.add(make_report(request_id="a", status="crashed")) == AddResult(0, 1, 0)
        assert row(store, "a")["status"] == "error"
        consistent(store)

    def test_crashed_then_timeout_then_ok(self, store: Store) -> None:
        store.add(make_report(request_id="a", status="crashed", duration_ms=None))
        assert store.add(make_report(request_id="a", status="timeout")).replaced == 1
        assert store.add(make_report(request_id="a", status="ok")).replaced == 1
        assert row(store, "a")["status"] == "ok"
        consistent(store)

    def test_replacement_in_one_batch(self, store: Store) -> None:
        result = store.add([
            make_report(request_id="a", status="timeout", spans=[http_span()]),
            make_report(request_id="a", status="ok", spans=[http_span(), http_span()]),
            make_report(request_id="a", status="timeout"),
        ])
        assert result == AddResult(stored=2, duplicates=1, replaced=1)
        assert row(store, "a")["status"] == "ok"
        assert count(store, "spans") == 2
        consistent(store)

    def test_replacement_moving_to_another_minute_and_version(self, store: Store) -> None:
        store.add(make_report(request_id="a", status="timeout", start_ms=T0 + 59_999.0,
                              version="1", cold=True, init_ms=100.0, sandbox_mb=300.0,
                              memory_mb=1024))
        store.add(make_report(request_id="b", start_ms=T0 + 1000.0, version="1", cold=True,
                              init_ms=90.0, sandbox_mb=200.0, memory_mb=512))
        store.add(make_report(request_id="a", status="ok", start_ms=T0 + 60_001.0,
                              version="2", cold=False, memory_mb=512))
        with store.reader() as conn:
            minutes = conn.execute(
                "SELECT version, minute, cold, n, sandbox_peak_max, memory_mb FROM rollup"
                " ORDER BY minute, version").fetchall()
        m = int(T0 // 60_000)
        # The maxima of the first minute were read again once the 1024 MB row left it.
        assert minutes == [("1", m, 1, 1, 200.0, 512), ("2", m + 1, 0, 1, None, 512)]
        consistent(store)


class TestPlatformLines:
    """Lambda's REPORT lines: merged with the agent's report, or stored alone."""

    def record(self, request_id: str = "a", **more: Any) -> dict[str, Any]:
        record = {"request_id": request_id, "function": "orders",
                  "log_stream": "2026/01/05/[7]abcdef", "duration_ms": 12.5, "billed_ms": 13.0,
                  "memory_mb": 512, "max_memory_mb": 180.0, "init_ms": None,
                  "timestamp": T0 + 20.0}
        record.update(more)
        return record

    def test_a_report_line_alone_is_a_minimal_invocation(self, store: Store) -> None:
        assert store.add_platform(self.record(init_ms=250.0)) == AddResult(1, 0, 0)
        stored = row(store, "a")
        assert stored["source"] == "platform" and stored["rank"] == 0
        assert stored["version"] == "7"  # from the log stream's name
        assert stored["start_ms"] == T0 + 20.0 - 12.5
        assert stored["cold_start"] == 1 and stored["init_ms"] == 250.0
        assert stored["billed_ms"] == 13.0 and stored["report"] is None
        with store.reader() as conn:
            shown = queries.show(conn, "a")
        assert shown["invocation"]["invocation"]["duration_ms"] == 12.5
        assert shown["platform"]["max_memory_mb"] == 180.0
        consistent(store)

    def test_platform_first_then_agent(self, store: Store) -> None:
        store.add_platform(self.record(billed_ms=263.0, init_ms=250.0))
        assert store.add(make_report(request_id="a", duration_ms=11.7, cold=True,
                                     init_ms=249.0)) == AddResult(1, 0, 0)
        stored = row(store, "a")
        assert stored["source"] == "agent" and stored["duration_ms"] == 11.7
        assert stored["platform_duration_ms"] == 12.5
        assert stored["platform_max_memory_mb"] == 180.0
        assert stored["billed_ms"] == 263.0  # Lambda's own figure wins
        consistent(store)

    def test_agent_first_then_platform(self, store: Store) -> None:
        store.add(make_report(request_id="a", duration_ms=11.7))
        assert store.add_platform(self.record()) == AddResult(1, 0, 0)
        stored = row(store, "a")
        assert stored["source"] == "agent"
        assert (stored["platform_duration_ms"], stored["platform_billed_ms"]) == (12.5, 13.0)
        assert stored["billed_ms"] == 13.0
        assert store.add_platform(self.record()) == AddResult(0, 1, 0)  # once is enough
        consistent(store)

    def test_platform_figures_survive_a_replacement(self, store: Store) -> None:
        store.add(make_report(request_id="a", status="timeout"))
        store.add_platform(self.record(billed_ms=3000.0, status="timeout"))
        store.add(make_report(request_id="a", status="ok"))
        stored = row(store, "a")
        assert stored["status"] == "ok" and stored["platform_billed_ms"] == 3000.0
        consistent(store)

    @pytest.mark.parametrize(("said", "error_type", "status", "kind"), [
        ("success", None, "ok", None),
        (None, None, "ok", None),
        ("timeout", None, "timeout", "Timeout"),
        ("error", "Runtime.OutOfMemory", "crashed", "Runtime.OutOfMemory"),
        ("failure", "Runtime.ExitError", "crashed", "Runtime.ExitError"),
        ("error", "Runtime.Unknown", "error", "Runtime.Unknown"),
        ("failure", None, "error", "Error"),
    ])
    def test_lambdas_status_and_error_type(self, store: Store, said: str | None,
                                           error_type: str | None, status: str,
                                           kind: str | None) -> None:
        store.add_platform(self.record(status=said, error_type=error_type))
        stored = row(store, "a")
        assert stored["status"] == status
        assert stored["error_type"] == kind
        assert count(store, "error_groups") == (0 if kind is None else 1)
        consistent(store)

    def test_an_error_line_then_the_agents_report(self, store: Store) -> None:
        store.add_platform(self.record(status="error", error_type="Runtime.OutOfMemory"))
        store.add_platform(self.record("b", status="error", error_type="Runtime.OutOfMemory"))
        with store.reader() as conn:
            assert conn.execute("SELECT count FROM error_groups").fetchone()[0] == 2
        store.add(make_report(request_id="a", status="crashed"))
        with store.reader() as conn:
            groups = dict(conn.execute("SELECT type, count FROM error_groups"))
        assert groups == {"Runtime.OutOfMemory": 1, "Crashed": 1}
        consistent(store)

    def test_xray_trace_id_joins_the_trace(self, store: Store) -> None:
        trace = "5f0e4a3b" + "c" * 24
        store.add(make_report(request_id="caller", trace_id=trace))
        store.add_platform(self.record("callee", trace_id=trace, function="worker"))
        with store.reader() as conn:
            related = queries.show(conn, "caller")["related"]
        assert [r["request_id"] for r in related] == ["callee"]

    def test_the_same_line_twice(self, store: Store) -> None:
        store.add_platform(self.record())
        assert store.add_platform([self.record(), self.record()]) == AddResult(0, 2, 0)
        assert count(store) == 1

    def test_bad_records(self, store: Store) -> None:
        for record, message in (
            ({"function": "f", "timestamp": 1.0}, "request_id"),
            ({"request_id": "x", "timestamp": 1.0}, "function"),
            ({"request_id": "x", "function": "f"}, "start_ms or timestamp"),
        ):
            with pytest.raises(ValueError, match=message):
                store.add_platform(record)


class TestLogs:
    """Lines ``ingest`` finds are attached to their request id, once."""

    def test_lines_beside_the_reports_own(self, store: Store) -> None:
        store.add(make_report(request_id="a", logs=["hello"]))
        added = store.add_logs("a", [
            {"timestamp_ms": T0 + 1.0, "level": "INFO", "logger": None, "message": "hello"},
            {"timestamp_ms": T0 + 2.0, "level": "ERROR", "message": "boom"},
            "START RequestId: a",
        ])
        assert added == 2  # "hello" is the report's own line
        assert store.add_logs("a", [{"timestamp_ms": T0 + 2.0, "message": "boom"}]) == 0
        with store.reader() as conn:
            lines = queries.show(conn, "a")["logs"]
        assert [(line["message"], line["source"]) for line in lines] == [
            ("hello", "report"), ("boom", "log"), ("START RequestId: a", "log")]

    def test_lines_before_their_invocation(self, store: Store) -> None:
        assert store.add_logs("later", ["first line"]) == 1
        assert count(store, "logs", "function = ''") == 1
        store.add(make_report(request_id="later"))
        assert count(store, "logs", "function = 'orders'") == 1
        assert count(store, "logs", "function = ''") == 0

    def test_lines_survive_a_replacement(self, store: Store) -> None:
        store.add(make_report(request_id="a", status="timeout", logs=["one"]))
        store.add_logs("a", ["from cloudwatch"])
        store.add(make_report(request_id="a", status="ok", logs=["one", "two"]))
        with store.reader() as conn:
            messages = [line["message"] for line in queries.show(conn, "a")["logs"]]
        assert sorted(messages) == ["from cloudwatch", "one", "two"]

    def test_bad_lines(self, store: Store) -> None:
        with pytest.raises(ValueError):
            store.add_logs("", ["x"])
        with pytest.raises(ValueError):
            store.add_logs("a", [42])  # type: ignore[list-item]
        assert store.add_logs("a", []) == 0


class TestRetention:
    """Old data goes, in batches, whole minutes at a time; the rollups stay exact."""

    def fill(self, s: Store) -> None:
        reports = [
            make_report(start_ms=T0 + n * 5 * MINUTE + 123.0, status="error" if n % 4 else "ok",
                        spans=[http_span(duration_ms=n + 1.0)], logs=[f"line {n}"])
            for n in range(40)  # 200 minutes
        ]
        s.add(reports)
        s.add_logs("orphan", [{"timestamp_ms": T0 + 1.0, "message": "no invocation"}],
                   function="orders")

    def test_prune(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(store_module, "PRUNE_BATCH", 7)  # several batches
        self.fill(store)
        cut = T0 + 97 * MINUTE + 30_000.0  # mid-minute, mid-hour
        deleted = store.prune(cut)
        kept = [n for n in range(40) if T0 + n * 5 * MINUTE + 123.0 >= T0 + 97 * MINUTE]
        assert deleted == 40 - len(kept)
        assert count(store) == len(kept)
        assert count(store, "spans") == len(kept)
        assert count(store, "logs") == len(kept)  # the orphan line went too
        with store.reader() as conn:
            first = conn.execute("SELECT MIN(minute) FROM rollup").fetchone()[0]
            assert first >= int(cut // 60_000)
        consistent(store)
        assert store.prune(cut) == 0

    def test_prune_everything(self, store: Store) -> None:
        self.fill(store)
        store.prune(T0 + 100 * HOUR)
        for table in ("invocations", "spans", "logs", "rollup", "rollup_hour",
                      "dependency_rollup", "dependency_rollup_hour", "error_groups"):
            assert count(store, table) == 0, table

    def test_retain_prunes_while_running(self, db: Path) -> None:
        now = time.time() * 1000.0
        with Store(db) as s:
            s.add([make_report(request_id="old", start_ms=now - 3 * HOUR),
                   make_report(request_id="new", start_ms=now - 60_000.0)])
        with Store(db, retain=HOUR) as s:
            deadline = time.monotonic() + 10
            while count(s) != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert row(s, "new") and not row(s, "old")
            consistent(s)

    def test_writes_go_on_while_pruning(self, store: Store,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(store_module, "PRUNE_BATCH", 3)
        self.fill(store)
        pruning = threading.Thread(target=store.prune, args=(T0 + 150 * MINUTE,))
        pruning.start()
        for n in range(10):
            store.add(make_report(start_ms=T0 + 300 * MINUTE + n))
        pruning.join()
        consistent(store)

    def test_bad_cut(self, store: Store) -> None:
        with pytest.raises(ValueError):
            store.prune("yesterday")  # type: ignore[arg-type]


class TestFingerprints:
    """Errors group by type, message shape and the top frame of the user's code."""

    STACK = [
        {"file": "/var/runtime/bootstrap.py", "line": 60, "function": "main"},
        {"file": "/var/task/app/handler.py", "line": 20, "function": "handler"},
        {"file": "/var/task/app/db.py", "line": 41, "function": "load_order"},
        {"file": "/var/task/lib/python3.12/site-packages/pg8000/core.py", "line": 9,
         "function": "connect"},
    ]

    def error(self, message: str, stack: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"type": "ConnectionError", "message": message,
                "stack": self.STACK if stack is None else stack}

    @pytest.mark.parametrize(("a", "b"), [
        ("order 123 not found", "order 98765 not found"),
        ("request 6f1c2a9e-1b2c-4d5e-8f90-0123456789ab failed",
         "request 00000000-1111-2222-3333-444444444444 failed"),
        ("bad key 'alice'", "bad key 'bob'"),
        ('table "orders-prod" missing', 'table "orders-dev" missing'),
        ("no file /tmp/in/a.json", "no file /tmp/out/b.json"),
        ("object at 0x7f3a2b1c", "object at 0xdeadbeef"),
        ("hash 5f2b8c9e1a0d mismatch", "hash 0a1b2c3d4e5f mismatch"),
        ("refused by 10.0.0.12:5432", "refused by 10.0.3.7:5432"),
        ("took 0.52s", "took 1,200.5s"),
        ("GET https://api.example.com/orders/1?x=1", "GET https://api.example.com/orders/2"),
    ])
    def test_messages_differing_only_in_ids_group_together(self, a: str, b: str) -> None:
        assert fingerprint("orders", self.error(a))[0] == fingerprint("orders", self.error(b))[0]

    def test_different_messages_do_not(self) -> None:
        one = fingerprint("orders", self.error("connection refused"))
        two = fingerprint("orders", self.error("connection reset"))
        assert one[0] != two[0]

    def test_different_top_frames_do_not(self) -> None:
        other = [*self.STACK[:2], {"file": "/var/task/app/cache.py", "line": 5,
                                   "function": "load_order"}, self.STACK[3]]
        assert fingerprint("orders", self.error("x"))[0] != fingerprint(
            "orders", self.error("x", other))[0]

    def test_line_numbers_do_not_split_a_group(self) -> None:
        moved = copy.deepcopy(self.STACK)
        moved[2]["line"] = 99
        assert fingerprint("orders", self.error("x"))[0] == fingerprint(
            "orders", self.error("x", moved))[0]

    def test_same_error_in_two_functions(self) -> None:
        assert fingerprint("orders", self.error("x"))[0] != fingerprint(
            "payments", self.error("x"))[0]

    def test_top_frame_skips_libraries_runtime_and_lambdascope(self) -> None:
        assert top_frame(self.STACK) == "app/db.py:load_order"
        stack = [
            {"file": "/work/src/lambdascope/_monitor.py", "line": 1, "function": "call"},
            {"file": "/home/me/proj/handler.py", "line": 2, "function": "handler"},
            {"file": "/usr/lib/python3.12/json/decoder.py", "line": 3, "function": "decode"},
            {"file": "<frozen importlib._bootstrap>", "line": 4, "function": "_load"},
        ]
        assert top_frame(stack) == "/home/me/proj/handler.py:handler"
        only_libraries = [{"file": "/x/site-packages/boto/a.py", "line": 1, "function": "f"}]
        assert top_frame(only_libraries) == "/x/site-packages/boto/a.py:f"
        assert top_frame([]) is None

    def test_message_shape(self) -> None:
        assert message_shape("order 123 not found in 'orders' after 0.5s") == (
            "order <n> not found in '<str>' after <n>s")
        assert message_shape("s3 v2 utf8 facade") == "s3 v2 utf8 facade"  # words, not ids
        assert message_shape(None) == ""
        assert len(message_shape("x" * 10_000)) <= 300

    def test_groups_in_the_store(self, store: Store) -> None:
        store.add([
            make_report(request_id=f"e{n}", start_ms=T0 + n, status="error",
                        error=self.error(f"order {n} not found"))
            for n in range(5)
        ] + [make_report(request_id="other", start_ms=T0 + 10, status="error",
                         error=self.error("order 5 not found", self.STACK[:2]))])
        with store.reader() as conn:
            groups = conn.execute(
                "SELECT message, top_frame, count, first_ms, last_ms, example_request_id"
                " FROM error_groups ORDER BY count DESC").fetchall()
        assert groups == [
            ("order <n> not found", "app/db.py:load_order", 5, T0, T0 + 4, "e4"),
            ("order <n> not found", "app/handler.py:handler", 1, T0 + 10, T0 + 10, "other"),
        ]


class TestDependencyNames:
    """Which dependency a span waited on."""

    @pytest.mark.parametrize(("span", "name"), [
        (aws_span("S3.GetObject", **{"aws.s3.bucket": "my-bucket"}), "S3.GetObject my-bucket"),
        (aws_span("DynamoDB.BatchGetItem", **{"aws.dynamodb.table_names": ["a", "b"]}),
         "DynamoDB.BatchGetItem a"),
        (aws_span("SQS.SendMessage", **{
            "aws.sqs.queue_url": "https://sqs.us-east-1.amazonaws.com/123/jobs"}),
         "SQS.SendMessage jobs"),
        (aws_span("SNS.Publish", **{"aws.sns.topic.arn": "arn:aws:sns:us-east-1:1:alerts"}),
         "SNS.Publish alerts"),
        (aws_span("Lambda.Invoke", **{"faas.invoked_name": "pricing"}), "Lambda.Invoke pricing"),
        (aws_span("STS.GetCallerIdentity"), "STS.GetCallerIdentity"),
        (http_span("GET", "api.example.com"), "GET api.example.com"),
        (http_span("POST", "localhost", port=8080), "POST localhost:8080"),
        ({"name": "work", "kind": "internal", "attributes": {"x": 1}}, None),
        ({"name": "handler", "kind": "server",
          "attributes": {"http.request.method": "GET"}}, None),
        ({"name": "GET", "kind": "client",
          "attributes": {"http.request.method": "GET",
                         "url.full": "https://user@h.example.com/x"}}, "GET h.example.com"),
    ])
    def test_table(self, span: dict[str, Any], name: str | None) -> None:
        assert dependency_of(span) == name

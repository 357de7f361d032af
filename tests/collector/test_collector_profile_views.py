"""Where users look at profiles and cold-start diagnostics (issue 14, item 3): the store's
version-3 tables (``diagnostics``, ``imports``, ``import_rollup``) and their migration from a
version-2 file, ingestion, replacement and pruning; the slowest imports of ``stats``;
``lambdascope show`` and ``stats`` in the terminal; the dashboard's flame graph, top-functions
table and import tree, as served over HTTP.

The reports are made by hand with the fields the agent sends (``profile``, ``diagnostics``:
docs/collector.md, "Profiles and cold-start diagnostics"), each checked against the shipped
schema; the last test takes them from the real agent when it has its profiler.
"""

from __future__ import annotations

import copy
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

import httpx  # noqa: E402
from collector_harness import InProcess  # noqa: E402
from collector_reports import HOUR, MINUTE, T0, make_report  # noqa: E402
from profile_reports import (  # noqa: E402
    BOOT,
    BOTO,
    EVIL_FRAME,
    EVIL_MODULE,
    HOT,
    SSL,
    cold_report,
    rid,
    sample_diagnostics,
    sample_profile,
    slowest,
)

from lambdascope.cli import main  # noqa: E402
from lambdascope.collector import profiles, queries  # noqa: E402
from lambdascope.collector.app import create_app  # noqa: E402
from lambdascope.collector.store import (  # noqa: E402
    MAX_IMPORTS_PER_REPORT,
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    migrate,
    open_reader,
)


def imports_consistent(conn: sqlite3.Connection) -> None:
    """``import_rollup`` (hours, level 0; days, level 1) equals a recomputation from the
    ``imports`` rows: counts, maxima and sums exactly, the sketches' counts; and no row is left
    without what it came from."""
    from lambdascope.collector.sketch import Sketch

    want: dict[tuple[Any, ...], list[Any]] = {}
    for function, version, start, module, ms, used in conn.execute(
            "SELECT function, version, start_ms, module, ms, used FROM imports"):
        for level, size in ((0, HOUR), (1, 24 * HOUR)):
            acc = want.setdefault((function, level, int(start // size), version, module),
                                  [0, 0, 0, None, Sketch()])
            acc[0] += 1
            acc[1] += used == 0
            acc[2] += used is not None
            acc[3] = ms if acc[3] is None else max(acc[3], ms)
            acc[4].add(ms)
    got = {}
    for row in conn.execute(
            "SELECT function, level, unit, version, module, n, unused, used_known, max_ms,"
            " sum_ms, duration FROM import_rollup"):
        sketch = Sketch.from_bytes(row[10])
        assert row[9] == pytest.approx(sketch.sum, abs=1e-6)
        got[row[:5]] = (*row[5:9], sketch.count, round(sketch.sum, 6))
    assert got == {k: (n, u, kn, top, s.count, round(s.sum, 6))
                   for k, (n, u, kn, top, s) in want.items()}
    # every imports row has its diagnostics row, and every diagnostics row its invocation
    assert conn.execute(
        "SELECT COUNT(*) FROM imports i LEFT JOIN diagnostics d USING (request_id)"
        " WHERE d.request_id IS NULL").fetchone()[0] == 0
    assert conn.execute(
        "SELECT COUNT(*) FROM diagnostics d LEFT JOIN invocations i USING (request_id)"
        " WHERE i.request_id IS NULL").fetchone()[0] == 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "reports.db") as s:
        yield s


def by_module(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["module"]: i for i in entry["slow_imports"]}


# -- the hand-made reports are what the agent sends ------------------------------------------------

def test_the_hand_made_reports_match_the_schema(validate_report: Callable[[Any], Any]) -> None:
    validate_report(cold_report(T0, profile=True))
    warm = make_report(start_ms=T0)
    warm["profile"] = sample_profile()
    validate_report(warm)


# -- the store -------------------------------------------------------------------------------------

class TestIngestion:
    """A report's diagnostics become a ``diagnostics`` row and one ``imports`` row per slowest
    import; the hourly rollup follows."""

    def test_rows_of_a_cold_start(self, store: Store) -> None:
        report = cold_report(T0 + 5 * MINUTE, profile=True)
        assert store.add(report).stored == 1
        with store.reader() as conn:
            assert conn.execute("SELECT request_id, function, version, start_ms, imports"
                                " FROM diagnostics").fetchall() == [
                (rid(report), "orders", "1", T0 + 5 * MINUTE, 5)]
            rows = {r[0]: r[1:] for r in conn.execute(
                "SELECT module, function, version, start_ms, ms, self_ms, parent, used"
                " FROM imports WHERE request_id = ?", (rid(report),))}
            assert rows["pandas"] == ("orders", "1", T0 + 5 * MINUTE, 420.0, 105.0, "app", 0)
            assert rows["boto3"][-1] == 1
            assert rows[EVIL_MODULE][-1] is None  # used: null is "not known"
            assert len(rows) == 5
            imports_consistent(conn)

    def test_a_report_without_diagnostics_has_no_rows(self, store: Store) -> None:
        warm = make_report(start_ms=T0)
        warm["profile"] = sample_profile()
        store.add([warm, make_report(start_ms=T0 + 1)])
        with store.reader() as conn:
            for table in ("diagnostics", "imports", "import_rollup"):
                assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0

    def test_diagnostics_without_import_times(self, store: Store) -> None:
        report = cold_report(T0, [])
        report["diagnostics"]["import_tracking"] = "off"
        report["diagnostics"]["imports"] = None
        store.add(report)
        with store.reader() as conn:
            assert conn.execute("SELECT imports FROM diagnostics").fetchall() == [(0,)]
            assert conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 0
            found = queries.slow_imports(conn, "orders", T0 - HOUR, T0 + HOUR)
        assert found == {"diagnosed_sandboxes": 0, "slow_imports": []}

    def test_odd_entries_are_skipped_and_the_rest_bounded(self, store: Store) -> None:
        entries: list[Any] = [
            {"module": "dup", "ms": 5.0}, {"module": "dup", "ms": 9.0},  # the first is kept
            {"module": "", "ms": 1.0}, {"module": 7, "ms": 1.0}, {"module": "no_time"},
            {"module": "bad_time", "ms": "12"}, "not an object", None,
            {"module": "negative", "ms": -3.0, "used": "yes"},
            {"module": "x" * 500, "ms": 2.0, "parent": "p" * 500},
        ]
        entries += [{"module": f"m{i}", "ms": float(i)} for i in range(100)]
        report = cold_report(T0, entries)
        store.add(report)
        with store.reader() as conn:
            rows = {m: (ms, used, parent) for m, ms, used, parent in conn.execute(
                "SELECT module, ms, used, parent FROM imports")}
            count = conn.execute("SELECT imports FROM diagnostics").fetchone()[0]
            imports_consistent(conn)
        assert len(rows) == count == MAX_IMPORTS_PER_REPORT
        assert rows["dup"] == (5.0, None, None)
        assert rows["negative"] == (0.0, None, None)  # clamped like every duration
        assert not {"", "no_time", "bad_time"} & set(rows)
        assert max(len(m) for m in rows) == 200
        assert rows["x" * 200][2] == "p" * 200


class TestReplacementAndPruning:
    """Rows go with their report: replaced, merged, duplicated or pruned, the tables and the
    rollup stay what a recomputation from the reports gives."""

    def test_the_final_report_replaces_the_timeout_reports_rows(self, store: Store) -> None:
        first = cold_report(T0, slowest(("pandas", 400.0, None), ("six", 50.0, None)),
                            status="timeout")
        store.add(first)
        final = copy.deepcopy(first)
        final["invocation"]["status"] = "ok"
        final["error"] = None
        final["diagnostics"]["slowest_imports"] = slowest(("pandas", 410.0, False),
                                                          ("yaml", 30.0, True))
        assert store.add(final).replaced == 1
        with store.reader() as conn:
            modules = {m: ms for m, ms in conn.execute("SELECT module, ms FROM imports")}
            assert modules == {"pandas": 410.0, "yaml": 30.0}
            imports_consistent(conn)
            top = conn.execute("SELECT level, max_ms, n FROM import_rollup"
                               " WHERE module = 'pandas' ORDER BY level").fetchall()
            assert top == [(0, 410.0, 1), (1, 410.0, 1)]
            entry = queries.stats(conn, "orders", T0 - HOUR, T0 + HOUR)["functions"][0]
        assert set(by_module(entry)) == {"pandas", "yaml"}
        assert by_module(entry)["pandas"]["unused_share"] == 1.0

    def test_a_lower_maximum_is_read_again_after_a_replacement(self, store: Store) -> None:
        # Two sandboxes in one hour; the slower one's report is replaced by a faster one.
        slow = cold_report(T0 + MINUTE, slowest(("pandas", 900.0, None)), status="timeout")
        other = cold_report(T0 + 2 * MINUTE, slowest(("pandas", 300.0, None)))
        store.add([slow, other])
        final = copy.deepcopy(slow)
        final["invocation"]["status"] = "ok"
        final["error"] = None
        final["diagnostics"]["slowest_imports"] = slowest(("pandas", 200.0, None))
        store.add(final)
        with store.reader() as conn:
            assert conn.execute("SELECT level, max_ms, n FROM import_rollup ORDER BY level"
                                ).fetchall() == [(0, 300.0, 2), (1, 300.0, 2)]
            imports_consistent(conn)

    def test_a_replacement_without_diagnostics_takes_the_rows_away(self, store: Store) -> None:
        first = cold_report(T0, status="crashed")
        store.add(first)
        final = copy.deepcopy(first)
        final["invocation"]["status"] = "ok"
        final["error"] = None
        del final["diagnostics"]
        store.add(final)
        with store.reader() as conn:
            for table in ("diagnostics", "imports", "import_rollup"):
                assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0

    def test_duplicates_and_report_lines_keep_the_rows(self, store: Store) -> None:
        report = cold_report(T0)
        store.add(report)
        again = copy.deepcopy(report)
        again["diagnostics"]["slowest_imports"] = slowest(("other", 1.0, None))
        assert store.add(again).duplicates == 1  # first wins
        store.add_platform({"request_id": rid(report), "function": "orders",
                            "duration_ms": 12.0, "billed_ms": 13.0, "memory_mb": 512,
                            "max_memory_mb": 90.0, "init_ms": 800.0, "start_ms": T0})
        with store.reader() as conn:
            assert conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 5
            assert conn.execute("SELECT COUNT(*) FROM imports WHERE module = 'other'"
                                ).fetchone()[0] == 0
            assert conn.execute("SELECT platform_billed_ms FROM invocations").fetchone()[0] \
                == 13.0
            imports_consistent(conn)

    def test_a_platform_row_then_the_agent_report(self, store: Store) -> None:
        report = cold_report(T0)
        store.add_platform({"request_id": rid(report), "function": "orders",
                            "duration_ms": 12.0, "billed_ms": 13.0, "memory_mb": 512,
                            "init_ms": 800.0, "start_ms": T0})
        store.add(report)
        with store.reader() as conn:
            assert conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 5
            imports_consistent(conn)

    def test_prune_cuts_into_an_hour(self, store: Store) -> None:
        reports = [cold_report(T0 + m * 10 * MINUTE, slowest(("pandas", 100.0 + m, m % 2 == 0)))
                   for m in range(12)]  # two hours, six per hour
        store.add(reports)
        assert store.prune(T0 + 85 * MINUTE) == 9  # 0, 10, …, 80 minutes
        with store.reader() as conn:
            left = [start for (start,) in conn.execute(
                "SELECT start_ms FROM imports ORDER BY start_ms")]
            assert left == [T0 + m * 10 * MINUTE for m in (9, 10, 11)]
            assert conn.execute("SELECT COUNT(*) FROM diagnostics").fetchone()[0] == 3
            imports_consistent(conn)
            assert conn.execute("SELECT level, unit, n, max_ms FROM import_rollup"
                                " ORDER BY level").fetchall() == [
                (0, int((T0 + HOUR) // HOUR), 3, 111.0), (1, int(T0 // (24 * HOUR)), 3, 111.0)]
            found = queries.slow_imports(conn, "orders", 0, T0 + 3 * HOUR)
        assert found["diagnosed_sandboxes"] == 3
        assert found["slow_imports"][0]["sandboxes"] == 3
        assert found["slow_imports"][0]["max_ms"] == 111.0

    def test_prune_on_an_hour(self, store: Store) -> None:
        store.add([cold_report(T0 + m * 20 * MINUTE) for m in range(6)])
        store.prune(T0 + HOUR)
        with store.reader() as conn:
            assert conn.execute("SELECT COUNT(DISTINCT request_id) FROM imports"
                                ).fetchone()[0] == 3
            assert {h for (h,) in conn.execute(
                "SELECT unit FROM import_rollup WHERE level = 0")} == {int(T0 // HOUR) + 1}
            imports_consistent(conn)


class TestMigration:
    """A version-2 file (the schema before diagnostics) opens, is upgraded, and its stored
    reports' diagnostics are found."""

    def _version_2_copy(self, tmp_path: Path, reports: list[dict[str, Any]]) -> Path:
        current = tmp_path / "current.db"
        with Store(current) as s:
            s.add(reports)
        old = tmp_path / "v2.db"
        conn = sqlite3.connect(old, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        assert migrate(conn, MIGRATIONS[:2]) == 2
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master"
                                             " WHERE type = 'table'")}
        assert not {"diagnostics", "imports", "import_rollup"} & tables
        conn.execute("ATTACH DATABASE ? AS cur", (str(current),))
        for table in sorted(tables):
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM cur.{table}")
        conn.execute("DETACH DATABASE cur")
        conn.close()
        return old

    def test_a_version_2_store_is_upgraded_with_its_diagnostics(self, tmp_path: Path) -> None:
        reports = [cold_report(T0 + m * 25 * MINUTE, slowest(("pandas", 300.0 + m, m == 1),
                                                             ("boto3", 90.0, True)),
                               version=str(1 + m % 2))
                   for m in range(5)]
        reports.append(make_report(start_ms=T0 + 3 * MINUTE))  # a warm one
        with Store(tmp_path / "want.db") as want_store, want_store.reader() as conn:
            want_store.add(reports)
            want = queries.stats(conn, "orders", T0 - HOUR, T0 + 4 * HOUR, by="version")
        old = self._version_2_copy(tmp_path, reports)
        with Store(old) as upgraded, upgraded.reader() as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
            assert conn.execute("SELECT COUNT(*) FROM diagnostics").fetchone()[0] == 5
            assert conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 10
            imports_consistent(conn)
            got = queries.stats(conn, "orders", T0 - HOUR, T0 + 4 * HOUR, by="version")
            assert got == want
            assert [e["slow_imports"][0]["module"] for e in got["functions"]] == [
                "pandas", "pandas"]
            # and it goes on as a version-3 store
            upgraded.add(cold_report(T0 + 5 * HOUR))
            imports_consistent(conn)

    def test_a_reader_upgrades_a_version_2_file(self, tmp_path: Path) -> None:
        old = self._version_2_copy(tmp_path, [cold_report(T0)])
        with open_reader(old) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
            found = queries.slow_imports(conn, "orders", T0 - HOUR, T0 + HOUR)
        assert found["diagnosed_sandboxes"] == 1
        assert [i["module"] for i in found["slow_imports"]][:2] == ["pandas", "numpy"]

    def test_an_unreadable_stored_report_is_passed_over(self, tmp_path: Path) -> None:
        old = self._version_2_copy(tmp_path, [cold_report(T0), cold_report(T0 + MINUTE)])
        conn = sqlite3.connect(old)
        conn.execute("UPDATE invocations SET report = x'00ff' WHERE start_ms = ?", (T0,))
        conn.commit()
        conn.close()
        with Store(old) as upgraded, upgraded.reader() as reader:
            assert reader.execute("SELECT start_ms FROM diagnostics").fetchall() == [
                (T0 + MINUTE,)]


# -- the slowest imports of stats -----------------------------------------------------------------

class TestSlowImports:
    """Per module, over the sandboxes diagnosed in the window: how many listed it, its median,
    p95 and largest import time, how often it went unused."""

    @pytest.fixture
    def filled(self, store: Store) -> Store:
        # Five sandboxes of orders v1 in the first half hour, pandas 100..500 ms; boto3 in
        # three; a module of its own in each; one sandbox of v2 (django and ten tiny
        # modules); one of another function.
        used = [False, False, True, None, True]
        reports = []
        for n in range(5):
            entries = [("pandas", 100.0 * (n + 1), used[n]), (f"solo{n}", 1.0 + n, None)]
            if n < 3:
                entries.append(("boto3", 50.0 + n, True))
            reports.append(cold_report(T0 + n * 5 * MINUTE, slowest(*entries)))
        tiny = [(f"tiny{i}", 0.1 * (i + 1), None) for i in range(10)]
        reports.append(cold_report(T0 + 30 * MINUTE, slowest(("django", 900.0, True), *tiny),
                                   version="2"))
        reports.append(cold_report(T0 + 31 * MINUTE, slowest(("torch", 5000.0, True)),
                                   function="other"))
        reports.append(make_report(start_ms=T0 + 32 * MINUTE))  # warm: no diagnostics
        store.add(reports)
        return store

    def test_exact_figures_over_a_short_window(self, filled: Store) -> None:
        with filled.reader() as conn:
            found = queries.slow_imports(conn, "orders", T0, T0 + 25 * MINUTE, version="1")
        assert found["diagnosed_sandboxes"] == 5
        pandas, boto3 = by_module(found)["pandas"], by_module(found)["boto3"]
        assert pandas == {"module": "pandas", "sandboxes": 5, "sandbox_share": 1.0,
                          "median_ms": 300.0, "p95_ms": 400.0, "max_ms": 500.0,
                          "unused_share": 0.5}  # 2 unused of the 4 known
        assert boto3["sandboxes"] == 3 and boto3["sandbox_share"] == 0.6
        assert boto3["unused_share"] == 0.0
        assert by_module(found)["solo4"]["unused_share"] is None
        assert [i["module"] for i in found["slow_imports"]] == [
            "pandas", "boto3", "solo4", "solo3", "solo2", "solo1", "solo0"]

    def test_in_stats_entries(self, filled: Store) -> None:
        with filled.reader() as conn:
            entries = {e["function"]: e for e in queries.stats(
                conn, since_ms=T0, until_ms=T0 + 40 * MINUTE)["functions"]}
            by_version = {e["version"]: e for e in queries.stats(
                conn, "orders", T0, T0 + 40 * MINUTE, by="version")["functions"]}
            cold_only = queries.stats(conn, "orders", T0, T0 + 40 * MINUTE, cold=False)
            skipped = queries.stats(conn, "orders", T0, T0 + 40 * MINUTE, imports=False)
        orders = entries["orders"]
        assert orders["diagnosed_sandboxes"] == 6
        assert [i["module"] for i in orders["slow_imports"]][:2] == ["django", "pandas"]
        assert by_module(orders)["django"]["sandbox_share"] == pytest.approx(1 / 6)
        assert len(orders["slow_imports"]) == queries.MAX_SLOW_IMPORTS
        assert [i["module"] for i in entries["other"]["slow_imports"]] == ["torch"]
        assert by_version["2"]["slow_imports"][0]["module"] == "django"
        assert len(by_version["2"]["slow_imports"]) == 10
        assert by_version["1"]["diagnosed_sandboxes"] == 5
        assert "django" not in by_module(by_version["1"])
        # a sandbox's imports are its init's: the warm-only filter leaves them
        assert cold_only["functions"][0]["slow_imports"] == orders["slow_imports"]
        assert skipped["functions"][0]["slow_imports"] == []
        assert skipped["functions"][0]["diagnosed_sandboxes"] == 0

    def test_whole_hours_from_the_rollup(self, filled: Store) -> None:
        with filled.reader() as conn:
            found = queries.slow_imports(conn, "orders", T0 - 3 * HOUR, T0 + 5 * HOUR,
                                         version="1")
            pieces = queries.slow_imports(conn, "orders", T0 - 3 * HOUR + 1, T0 + 5 * HOUR,
                                          version="1")
        pandas = by_module(found)["pandas"]
        assert pandas["sandboxes"] == 5 and pandas["max_ms"] == 500.0
        assert pandas["unused_share"] == 0.5
        assert pandas["median_ms"] == pytest.approx(300.0, rel=0.01)
        assert pandas["p95_ms"] == pytest.approx(400.0, rel=0.01)
        assert by_module(pieces)["pandas"]["sandboxes"] == 5

    def test_whole_days_from_the_rollup(self, store: Store) -> None:
        # 12 sandboxes over three days, one every 6 hours from T0 (10:00 UTC).
        store.add([cold_report(T0 + k * 6 * HOUR, slowest(("pandas", 100.0 + k, k >= 3)))
                   for k in range(12)])
        with store.reader() as conn:
            imports_consistent(conn)
            # 09:00 on day 0 to 22:00 on day 3 (+ 1 s): a piece of rows, hours, two whole
            # days, hours, a piece of rows
            found = queries.slow_imports(conn, "orders", T0 - HOUR + 1,
                                         T0 + 3 * 24 * HOUR + 12 * HOUR + 1000)
            plan = queries._import_plan(T0 - HOUR + 1, T0 + 3 * 24 * HOUR + 12 * HOUR + 1000)
        assert [level for level, _, _ in plan[0]] == [1, 0, 0]
        pandas = by_module(found)["pandas"]
        assert (pandas["sandboxes"], pandas["max_ms"], pandas["unused_share"]) == (
            12, 111.0, 0.25)
        assert pandas["median_ms"] == pytest.approx(105.0, rel=0.01)
        assert pandas["p95_ms"] == pytest.approx(110.0, rel=0.01)

    def test_a_dense_edge_is_rounded_to_its_hour(self, filled: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(queries, "IMPORT_EDGE_ROWS_MAX", 2)
        with filled.reader() as conn:
            # [T0 + 10 min, T0 + 2 h): the first piece (50 min of hour T0) holds 6 rows:
            # it is read from the hour's rollup, so every sandbox of that hour counts.
            long_piece = queries.slow_imports(conn, "orders", T0 + 10 * MINUTE,
                                              T0 + 2 * HOUR, version="1")
            # [T0 - 1 h, T0 + 20 min): the 20 minutes after T0 hold 12 rows: under half an
            # hour, the piece is left out (the count of sandboxes diagnosed stays exact).
            short_piece = queries.slow_imports(conn, "orders", T0 - HOUR, T0 + 20 * MINUTE,
                                               version="1")
        assert by_module(long_piece)["pandas"]["sandboxes"] == 5
        assert short_piece == {"diagnosed_sandboxes": 4, "slow_imports": []}

    def test_unknown_function_and_empty_window(self, filled: Store) -> None:
        with filled.reader() as conn:
            assert queries.slow_imports(conn, "nothing")["slow_imports"] == []
            assert queries.slow_imports(conn, "orders", T0 + 5 * HOUR,
                                        T0 + 6 * HOUR)["diagnosed_sandboxes"] == 0

    def test_the_api_and_its_schema(self, filled: Store) -> None:
        import jsonschema

        app = create_app(filled)
        with InProcess(app) as server, server.client() as client:
            body = client.get("/api/stats", params={
                "function": "orders", "since": str(int(T0)),
                "until": str(int(T0 + 40 * MINUTE))}).json()
            document = client.get("/openapi.json").json()
        entry = body["functions"][0]
        assert entry["slow_imports"][0]["module"] == "django"
        schema = document["components"]["schemas"]["StatsEntry"]
        assert {"slow_imports", "diagnosed_sandboxes"} <= set(schema["required"])
        resolver_doc = {"components": document["components"], **schema}
        jsonschema.Draft202012Validator(resolver_doc).validate(entry)


# -- reading a profile ---------------------------------------------------------------------------

class TestProfiles:
    """Frames are told apart, merged, ranked; the import tree is cut to what can be read."""

    @pytest.mark.parametrize(("frame", "kind", "package", "where"), [
        (HOT, "user", None, "app.py:12"),
        ("handlers/orders.py:create:7", "user", None, "handlers/orders.py:7"),
        (BOTO, "library", "botocore", "botocore/client.py:960"),
        ("yaml/loader.py:load:9", "library", "yaml", "yaml/loader.py:9"),
        (SSL, "stdlib", "ssl", "ssl.py:1100"),
        ("json/decoder.py:decode:5", "stdlib", "json", "json/decoder.py:5"),
        (BOOT, "library", "awslambdaric", "awslambdaric/bootstrap.py:480"),
        ("/var/task/app.py:handler:3", "user", None, "app.py:3"),
        ("/opt/python/lib/python3.12/site-packages/botocore/client.py:_send:9", "library",
         "botocore", "botocore/client.py:9"),
        ("/var/lang/lib/python3.12/ssl.py:read:1", "stdlib", "ssl", "ssl.py:1"),
        ("<frozen importlib._bootstrap>:_load:1", "stdlib", "importlib", "<frozen "
                                                                          "importlib._bootstrap>:1"),
        ("app.py:main:3", "user", None, "app.py:3"),
        ("/var/task/app.py:handler", "user", None, "app.py"),
        ("(other stacks)", "other", None, ""),
    ])
    def test_frames(self, frame: str, kind: str, package: str | None, where: str) -> None:
        parsed = profiles.parse_frame(frame)
        assert (parsed.kind, parsed.package, parsed.where()) == (kind, package, where)

    def test_the_functions_distributions_tell_its_libraries(self) -> None:
        frame = "shopkit/cart.py:total:4"
        assert profiles.parse_frame(frame).kind == "user"
        names = profiles.library_names({"distributions": [
            {"name": "ShopKit", "version": "1", "size_kb": 1, "location": "task"},
            {"name": "PyYAML", "version": "6", "size_kb": 1, "location": "task"}]})
        assert {"shopkit", "pyyaml", "yaml"} <= names
        assert profiles.parse_frame(frame, names).kind == "library"
        profile = profiles.read_profile({"interval_ms": 1, "samples": 1, "stacks": [
            {"frames": [frame], "count": 1}]}, names)
        assert profile is not None and profile.stacks[0][0][0].package == "shopkit"

    def test_top_functions_and_the_hottest_path(self) -> None:
        profile = profiles.read_profile(sample_profile())
        assert profile is not None and profile.samples == 120
        top = profiles.top_functions(profile, 3)
        assert [(f["function"], f["self_samples"], f["total_samples"]) for f in top] == [
            ("compute_hash", 70, 70), ("read", 30, 30), (EVIL_FRAME, 15, 15)]
        assert top[0]["self_ms"] == 700.0 and top[0]["self_share"] == pytest.approx(70 / 120)
        handler = [f for f in profiles.top_functions(profile, 50) if f["function"] == "handler"]
        assert handler[0]["total_samples"] == 115 and handler[0]["self_samples"] == 0
        path = profiles.hottest_path(profile)
        assert [n.frame.function for n in path if n.frame] == ["handler", "compute_hash"]

    def test_recursion_is_counted_once_per_stack(self) -> None:
        rec = "app.py:walk:5"
        profile = profiles.read_profile({"interval_ms": 5, "samples": 10, "stacks": [
            {"frames": [rec, rec, rec], "count": 6},
            {"frames": [rec, "app.py:leaf:9"], "count": 4}]})
        assert profile is not None
        walk = profiles.top_functions(profile)[0]
        assert (walk["function"], walk["self_samples"], walk["total_samples"],
                walk["total_ms"]) == ("walk", 6, 10, 50.0)

    def test_what_is_not_a_profile(self) -> None:
        assert profiles.read_profile(None) is None
        assert profiles.read_profile({"stacks": "no"}) is None
        odd = profiles.read_profile({"interval_ms": "x", "samples": 3, "stacks": [
            {"frames": [HOT], "count": 0}, {"frames": [1, 2], "count": 3}, "x",
            {"frames": [HOT], "count": 2}]})
        assert odd is not None
        assert (odd.samples, odd.stacks_skipped, odd.interval_ms) == (3, 3, 0.0)

    def test_the_import_tree_is_cut_to_size(self) -> None:
        nodes = profiles.import_tree(sample_diagnostics())
        shown = [(n.depth, n.module, n.unused) for n in nodes]
        assert shown[:3] == [(0, "app", False), (1, "pandas", True), (2, "numpy", True)]
        # pytz (3 ms < 1 % of 640 ms) and json are folded into "… more" lines
        folded = [(n.depth, n.hidden, n.ms) for n in nodes if n.module is None]
        assert folded == [(2, 1, 3.0), (1, 1, 0.5)]
        wide = {"imports": {"module": "app", "ms": 100.0, "children": [
            {"module": f"m{i}", "ms": 50.0, "children": []} for i in range(50)]}}
        cut = profiles.import_tree(wide, max_nodes=10)
        assert len(cut) == 11 and cut[-1].hidden == -1


# -- the terminal --------------------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out


@pytest.fixture
def shown(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A store with one cold start (profile and diagnostics) and one plain warm invocation."""
    cold = cold_report(time.time() * 1000.0 - 20 * MINUTE, profile=True)
    warm = make_report(start_ms=time.time() * 1000.0 - 10 * MINUTE)
    with Store(tmp_path / "r.db") as s:
        s.add([cold, warm])
    return tmp_path / "r.db", cold, warm


class TestShow:
    """``lambdascope show``: the profile's top functions and hottest path, the diagnostics;
    as they are with ``--json``; readable in 100 columns."""

    def test_profile_and_diagnostics(self, shown: Any, capsys: Any) -> None:
        db, cold, _ = shown
        status, out = run_cli(capsys, "show", rid(cold), "--db", db)
        assert status == 0
        assert all(len(line) <= 100 for line in out.splitlines()), max(
            out.splitlines(), key=len)
        section = out[out.index("\nprofile "):]
        assert "120 samples every 10.0 ms = 1.20 s sampled of 1.25 s" in section
        assert "profiled by rate; 2 samples dropped; 1 stack cut short" in section
        rows = [line.split() for line in section.splitlines()]
        first = next(r for r in rows if r and r[0] == "compute_hash")
        assert first == ["compute_hash", "(app.py:12)", "your", "code", "58.3%", "700", "ms",
                         "58.3%", "700", "ms"]
        assert any(r[:3] == ["read", "(ssl.py:1100)", "stdlib"] for r in rows)
        assert any(r[:3] == ["_make_api_call", "(botocore/client.py:960)", "lib"] for r in rows)
        assert EVIL_FRAME in section  # a terminal shows it as it is
        hot = section[section.index("hottest path"):].splitlines()
        assert "58.3% of samples end on it" in hot[0]
        assert [h.split()[0] for h in hot[1:3]] == ["handler", "compute_hash"]
        assert hot[3] == ""
        diag = out[out.index("cold-start diagnostics"):]
        assert re.search(r"init\s+812 ms · handler app\.handler imported in 640 ms · "
                         r"import tracking full", diag)
        assert "CPython 3.12.1 · AWS_Lambda_python3.12 · x86_64" in diag
        assert re.search(r"/tmp\s+12\.0 MB used of 512 MB", diag)
        assert re.search(r"environment\s+3 variable names \(values are never recorded\)", diag)
        assert "nofile=1024/4096, nproc=unlimited, stack_kb=8192, as_mb=unlimited" in diag
        tree = diag[diag.index("import tree"):diag.index("slowest imports")].splitlines()[1:]
        assert re.match(r"^    app\s+640 ms  \(12\.0 ms\)$", tree[0])
        assert re.match(r"^      pandas\s+420 ms  \(30\.0 ms\)\s+unused$", tree[1])
        assert re.match(r"^        numpy\s+200 ms  \(150 ms\)\s+unused$", tree[2])
        assert tree[3].strip() == "… 1 more, 3.00 ms in all"
        slow = diag[diag.index("slowest imports"):].splitlines()
        assert slow[2].split() == ["pandas", "420", "ms", "105", "ms", "app", "unused"]
        assert slow[4].split()[-1] == "used"
        dists = diag[diag.index("largest distributions"):].splitlines()
        assert [d.split()[0] for d in dists[2:5]] == ["pandas", "numpy", "boto3"]

    def test_a_plain_invocation_has_neither(self, shown: Any, capsys: Any) -> None:
        db, _, warm = shown
        status, out = run_cli(capsys, "show", rid(warm), "--db", db)
        assert status == 0 and out.startswith(f"invocation {rid(warm)}")
        assert "\nprofile " not in out and "cold-start diagnostics" not in out

    def test_json_has_them_as_they_are(self, shown: Any, capsys: Any) -> None:
        db, cold, warm = shown
        _, out = run_cli(capsys, "show", rid(cold), "--db", db, "--json")
        found = json.loads(out)["invocation"]
        assert found["profile"] == cold["profile"]
        assert found["diagnostics"] == cold["diagnostics"]
        _, out = run_cli(capsys, "show", rid(warm), "--db", db, "--json")
        assert "profile" not in json.loads(out)["invocation"]

    def test_an_empty_profile(self, tmp_path: Path, capsys: Any) -> None:
        report = make_report(start_ms=time.time() * 1000.0 - MINUTE)
        report["profile"] = {"interval_ms": 10, "samples": 0, "stacks": []}
        with Store(tmp_path / "e.db") as s:
            s.add(report)
        _, out = run_cli(capsys, "show", rid(report), "--db", tmp_path / "e.db")
        assert "0 samples every 10.0 ms" in out
        assert "no stacks were sampled" in out


class TestStatsCommand:
    def test_the_slowest_imports_table(self, shown: Any, capsys: Any) -> None:
        db, _, _ = shown
        status, out = run_cli(capsys, "stats", "--db", db, "--since", "1h")
        assert status == 0
        part = out[out.index("slowest imports"):].splitlines()
        assert part[0] == ("slowest imports (of 1 sandbox diagnosed; unused: not used by "
                           "the first invocation)")
        assert part[1].split() == ["module", "sandboxes", "median", "p95", "max", "unused"]
        assert part[2].split() == ["pandas", "1", "(100%)", "420", "ms", "420", "ms", "420",
                                   "ms", "100%"]
        assert part[4].split()[0] == "boto3" and part[4].split()[-1] == "0%"
        _, out = run_cli(capsys, "stats", "--db", db, "--since", "1h", "--top", "2")
        assert "… 3 more (--top N)" in out
        _, out = run_cli(capsys, "stats", "--db", db, "--since", "1h", "--json")
        entry = json.loads(out)["functions"][0]
        assert entry["diagnosed_sandboxes"] == 1
        assert entry["slow_imports"][0]["module"] == "pandas"


# -- the dashboard, over HTTP ---------------------------------------------------------------------

class _Elements(HTMLParser):
    """Start tags with their attributes, and the text of every ``<title>`` in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_title = tag == "title"
        if tag == "title":
            self.titles.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles[-1] += data

    def having(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(
            v in a.get("class", "").split() if k == "class_" else
            a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def elements(text: str) -> _Elements:
    parsed = _Elements()
    parsed.feed(text)
    return parsed


def huge_profile() -> dict[str, Any]:
    """Far more distinct frames than are drawn: 400 stacks of 60 frames (a report posted by
    hand can be this big; the agent's own are bounded at 64 KB)."""
    stacks = []
    for s in range(400):
        frames = ["app.py:handler:20"]
        frames += [f"pkg{d % 5}/m{(s * 7 + d) % 31}.py:step_{d}_{s % 13}:{d + 1}"
                   for d in range(58)]
        stacks.append({"frames": frames, "count": 1 + s % 5})
    stacks.append({"frames": ["app.py:handler:20", HOT], "count": 3000})
    return {"interval_ms": 10, "samples": sum(s["count"] for s in stacks), "stacks": stacks}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    now = time.time() * 1000.0
    cold = cold_report(now - 30 * MINUTE, profile=True)
    older = cold_report(now - 50 * MINUTE, slowest(("pandas", 380.0, True)))
    big = make_report(start_ms=now - 5 * MINUTE)
    big["profile"] = huge_profile()
    plain = make_report(start_ms=now - 4 * MINUTE)
    store = Store(tmp_path_factory.mktemp("profile-views") / "reports.db")
    store.add([cold, older, big, plain])
    with InProcess(create_app(store)) as server:
        yield server.url, {"cold": cold, "older": older, "big": big, "plain": plain}
    store.close()


class TestDashboard:
    """The invocation page's flame graph and top functions, the diagnostics on the invocation
    and function pages; what the user sent is text; the page stays within its budget."""

    def get(self, site: Any, path: str) -> str:
        response = httpx.get(site[0] + path, timeout=30.0)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        return response.text

    def test_the_flame_graph(self, site: Any) -> None:
        page = self.get(site, f"/invocations/{rid(site[1]['cold'])}")
        doc = elements(page)
        assert len(doc.having("svg", class_="flame", data_chart="flame")) == 1
        rects = doc.having("rect", class_="frame")
        # handler, and over it compute_hash, the markup one, botocore (ssl over it); and
        # (other stacks) beside it
        assert len(rects) == 6
        kinds = sorted(r["class"].split()[1] for r in rects)
        assert kinds == ["lib", "other", "std", "user", "user", "user"]
        widths = {float(r["width"]) for r in rects}
        assert max(widths) == pytest.approx(1200 * 115 / 120 - 0.5, abs=0.11)
        titles = [t for t in doc.titles if "samples (" in t]
        assert "compute_hash (app.py)\n70 samples (58.3%), 700 ms; 70 in the function " \
               "itself" in titles
        assert "read (ssl.py)\n30 samples (25.0%), 300 ms; 30 in the function itself" in titles
        assert any(t.startswith(f"{EVIL_FRAME} (app.py)") for t in titles)
        assert "<script>alert(1)" not in page  # escaped everywhere
        assert page.count("<script") == 1  # the page's own script only

    def test_the_top_functions_table(self, site: Any) -> None:
        page = self.get(site, f"/invocations/{rid(site[1]['cold'])}")
        table = page[page.index('data-table="profile"'):]
        table = table[:table.index("</table>")]
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table)]
        first = cells[:9]
        assert first == ["compute_hash", "app.py:12", "your code", "70", "58%", "700 ms", "70",
                         "58%", "700 ms"]
        assert "stdlib ssl" in cells and "library botocore" in cells

    def test_the_diagnostics_on_the_invocation(self, site: Any) -> None:
        page = self.get(site, f"/invocations/{rid(site[1]['cold'])}")
        doc = elements(page)
        assert doc.having("div", class_="imports")
        unused = [a["data-module"] for a in doc.having("li", class_="unused")]
        assert unused == ["pandas", "numpy"]
        modules = [a["data-module"] for a in doc.having("li") if "data-module" in a]
        assert modules == ["app", "pandas", "numpy", "boto3", "botocore", EVIL_MODULE]
        assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src" not in page
        assert doc.having("table", data_table="slowest-imports")
        assert doc.having("table", data_table="distributions")
        assert "3 variable names (values are never recorded)" in page

    def test_the_function_page(self, site: Any) -> None:
        page = self.get(site, "/functions/orders")
        table = page[page.index('data-table="imports"'):]
        table = table[:table.index("</table>")]
        rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
                for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table)[1:]]
        pandas = next(r for r in rows if r[0] == "pandas")
        assert pandas[1] == "2 (100%)"
        assert pandas[4] == "420 ms" and pandas[5] == "50%"
        assert "Over the 2 sandboxes diagnosed" in page
        newest = page[page.index("The newest cold start:"):]
        assert f'href="/invocations/{rid(site[1]["cold"])}"' in newest[:400]
        assert elements(newest).having("div", class_="imports")

    def test_pages_without_them(self, site: Any) -> None:
        page = self.get(site, f"/invocations/{rid(site[1]['plain'])}")
        assert 'class="flame"' not in page and "Cold-start diagnostics" not in page
        self.get(site, "/")

    def test_a_huge_profile_is_capped(self, site: Any) -> None:
        path = f"/invocations/{rid(site[1]['big'])}"
        self.get(site, path)  # warm up
        took = []
        for _ in range(3):
            began = time.perf_counter()
            page = self.get(site, path)
            took.append(time.perf_counter() - began)
        print(f"invocation page with a huge profile: {min(took) * 1000:.1f} ms at best")
        rects = elements(page).having("rect", class_="frame")
        assert len(rects) == 1500
        assert len(page.encode()) <= 500 * 1024
        assert "frames too narrow to draw left out" in page
        # the hot leaf is still drawn, as wide as its samples
        hot = re.findall(r'<rect class="frame user k\d" x="([\d.]+)" y="\d+" '
                         r'width="([\d.]+)"[^>]*><title>compute_hash ', page)
        samples = site[1]["big"]["profile"]["samples"]
        assert [float(w) for _, w in hot] == [pytest.approx(1200 * 3000 / samples - 0.5,
                                                            abs=0.1)]

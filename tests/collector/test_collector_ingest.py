"""``lambdascope ingest``: CloudWatch exports, ``aws logs tail`` text, stdout-exporter lines and
Lambda's REPORT lines into a real store (the samples in ``data/`` hold real agent reports; see
``data/make_samples.py``)."""

from __future__ import annotations

import gzip
import io
import json
import pathlib
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from lambdascope.cli import main
from lambdascope.collector.ingest import Counts, Ingester, parse_report_line

DATA = pathlib.Path(__file__).resolve().parent / "data"
FILTER = DATA / "filter_log_events.json"
TAIL = DATA / "tail.txt"
MIXED = DATA / "stdout_mixed.log"
JSON_FORMAT = DATA / "json_format.log"
REPORT_ONLY = DATA / "report_only.json"
CUSTOM_GROUP = DATA / "report_only_custom_group.txt"

R1, R2, R3 = (f"8f3c2a1e-5b6d-4e7f-9a0b-1c2d3e4f5a0{i}" for i in (1, 2, 3))
R4, R5, R6 = (f"1d2e3f40-6a7b-4c8d-9e0f-a1b2c3d4e5f{i}" for i in (4, 5, 6))


def ingest(capsys: pytest.CaptureFixture[str], db: pathlib.Path, *args: Any) -> str:
    status = main(["ingest", "--db", str(db), *map(str, args)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert len(lines) == 1, captured.out
    return lines[0]


def rows(db: pathlib.Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def logs_of(db: pathlib.Path, request_id: str) -> list[str]:
    return [m for (m,) in rows(db, "SELECT message FROM logs WHERE request_id = ? ORDER BY ts_ms,"
                                   " seq", request_id)]


class FakeStore:
    """What the Ingester hands over, kept in lists (for parsing-only tests)."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.platform: list[dict[str, Any]] = []
        self.logs: dict[str, list[dict[str, Any]]] = {}

    def add(self, reports: list[dict[str, Any]]) -> Any:
        from lambdascope.collector.store import AddResult

        self.reports.extend(reports)
        return AddResult(stored=len(reports))

    def add_platform(self, records: list[dict[str, Any]]) -> Any:
        from lambdascope.collector.store import AddResult

        self.platform.extend(records)
        return AddResult(stored=len(records))

    def add_logs(self, request_id: str, lines: list[dict[str, Any]],
                 function: str | None = None) -> int:
        self.logs.setdefault(request_id, []).extend(dict(line, function=function)
                                                    for line in lines)
        return len(lines)


def feed(text: str, function: str | None = None, chunk: int | None = None) -> tuple[FakeStore,
                                                                                   Counts]:
    store = FakeStore()
    ingester = Ingester(store, function)
    if chunk:
        ingester.read_text_chunks(text[i:i + chunk] for i in range(0, len(text), chunk))
    else:
        ingester.read_text_chunks([text])
    return store, ingester.close()


class TestFilterLogEvents:
    """The JSON of `aws logs filter-log-events`: two sandboxes of orders-api interleaved."""

    def test_counts_are_exact(self, tmp_path: pathlib.Path, capsys: Any) -> None:
        line = ingest(capsys, tmp_path / "r.db", FILTER)
        assert line == (
            "37 lines read, 5 reports stored, 0 duplicates, 6 platform records (1 without an "
            "agent report), 6 log lines attached, 0 unreadable lines"
        )

    def test_report_lines_are_joined_to_the_agent_reports(self, tmp_path: pathlib.Path,
                                                         capsys: Any) -> None:
        db = tmp_path / "r.db"
        ingest(capsys, db, FILTER)
        (row,) = rows(db, "SELECT source, status, cold_start, init_ms, platform_duration_ms,"
                          " platform_billed_ms, platform_max_memory_mb, platform_init_ms,"
                          " billed_ms, version FROM invocations WHERE request_id = ?", R1)
        # The agent's figures, and Lambda's beside them; Lambda's billed duration wins (init
        # billed since August 2025: 87 + 298 ms).
        assert row == ("agent", "ok", 1, 297.41, 86.12, 385.0, 81.0, 297.41, 385.0, "7")
        (timeout,) = rows(db, "SELECT source, status, platform_duration_ms FROM invocations"
                              " WHERE request_id = ?", R5)
        assert timeout == ("agent", "timeout", 3000.0)

    def test_a_report_line_alone_is_a_minimal_invocation(self, tmp_path: pathlib.Path,
                                                        capsys: Any) -> None:
        db = tmp_path / "r.db"
        ingest(capsys, db, FILTER)
        (row,) = rows(db, "SELECT function, version, source, status, memory_mb, duration_ms,"
                          " platform_max_memory_mb, log_stream FROM invocations"
                          " WHERE request_id = ?", R6)
        # The function comes from the agent's reports of the same sandbox (log stream); out of
        # memory (Error Type: Runtime.OutOfMemory) is a crash.
        assert row == ("orders-api", "7", "platform", "crashed", 256, 449.2, 256.0,
                       "2026/11/30/[7]f9e8d7c6b5a4938271605f4e3d2c1b0a")

    def test_interleaved_invocations_are_untangled(self, tmp_path: pathlib.Path,
                                                   capsys: Any) -> None:
        db = tmp_path / "r.db"
        ingest(capsys, db, FILTER)
        # print() output without a prefix goes to the one invocation in flight in its sandbox;
        # r2's background thread logging while r3 runs goes to r2, by its prefix.
        assert logs_of(db, R2) == [
            "new order o-1002 for customer c-4",          # the agent's captured record
            "processing 3 line items",                    # print(), between START and END
            "audit trail for o-1002 written",             # after r2 ended, prefix says r2
        ]
        r3 = logs_of(db, R3)
        assert r3[0] == "new order o-1003 for customer c-9"
        assert r3[1].startswith("ValueError: order o-1003 not found\nTraceback")
        assert len(r3) == 2
        assert logs_of(db, R5)[-1] == "Task timed out after 3.00 seconds"
        assert logs_of(db, R6) == ["importing a 900 MB catalogue"]
        # The agent's own records are not stored twice (they are in the CloudWatch log too).
        assert sorted(logs_of(db, R1)) == ["Found credentials in environment variables.",
                                           "new order o-1001 for customer c-17"]
        assert sorted(logs_of(db, R4)) == ["inventory service unavailable, retrying later",
                                           "new order o-1004 for customer c-2"]
        functions = rows(db, "SELECT DISTINCT function FROM logs")
        assert functions == [("orders-api",)]

    def test_a_second_ingest_stores_nothing_twice(self, tmp_path: pathlib.Path,
                                                  capsys: Any) -> None:
        db = tmp_path / "r.db"
        ingest(capsys, db, FILTER)
        before = rows(db, "SELECT COUNT(*) FROM logs")
        line = ingest(capsys, db, FILTER)
        assert line == (
            "37 lines read, 0 reports stored, 11 duplicates, 0 platform records, "
            "0 log lines attached, 0 unreadable lines"
        )
        assert rows(db, "SELECT COUNT(*) FROM logs") == before
        assert rows(db, "SELECT COUNT(*) FROM invocations") == [(6,)]

    def test_gzip_and_stdin(self, tmp_path: pathlib.Path, capsys: Any,
                            monkeypatch: pytest.MonkeyPatch) -> None:
        packed = tmp_path / "export.json.gz"
        packed.write_bytes(gzip.compress(FILTER.read_bytes()))
        assert ingest(capsys, tmp_path / "a.db", packed).startswith(
            "37 lines read, 5 reports stored")
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(FILTER.read_bytes())))
        assert ingest(capsys, tmp_path / "b.db", "-").startswith(
            "37 lines read, 5 reports stored")

    @pytest.mark.parametrize("chunk", [1, 7, 4096])
    def test_any_chunking_gives_the_same_result(self, chunk: int) -> None:
        text = FILTER.read_text()
        whole_store, whole = feed(text)
        store, counts = feed(text, chunk=chunk)
        assert counts.as_dict() == whole.as_dict()
        assert [r["invocation"]["request_id"] for r in store.reports] == \
            [r["invocation"]["request_id"] for r in whole_store.reports]
        assert store.logs == whole_store.logs

    def test_a_large_export_streams(self, tmp_path: pathlib.Path, capsys: Any) -> None:
        # 12,000 events (2 MB; a REPORT line alone every 3rd): read in chunks, never whole.
        events = []
        for i in range(4_000):
            rid = f"00000000-0000-4000-8000-{i:012d}"
            ts = 1_796_025_600_000 + i * 10
            stream = f"2026/11/30/big-fn[$LATEST]{i % 7:032d}"
            events += [
                {"logStreamName": stream, "timestamp": ts,
                 "message": f"START RequestId: {rid} Version: $LATEST\n"},
                {"logStreamName": stream, "timestamp": ts + 1,
                 "message": f"[INFO]\t2026-11-30T08:00:00.000Z\t{rid}\tline {i}\n"},
                {"logStreamName": stream, "timestamp": ts + 5,
                 "message": f"REPORT RequestId: {rid}\tDuration: {1 + i % 50}.00 ms\t"
                            f"Billed Duration: {1 + i % 50} ms\tMemory Size: 128 MB\t"
                            f"Max Memory Used: 60 MB\t\n"},
            ]
        big = tmp_path / "big.json"
        big.write_text(json.dumps({"events": events}, indent=4))
        line = ingest(capsys, tmp_path / "r.db", big)
        assert line == ("12,000 lines read, 0 reports stored, 0 duplicates, 4,000 platform "
                        "records (4,000 without an agent report), 4,000 log lines attached, "
                        "0 unreadable lines")
        assert rows(tmp_path / "r.db", "SELECT COUNT(DISTINCT function) FROM invocations") == \
            [(1,)]


class TestTail:
    """The text of `aws logs tail` (version 8 of orders-api: a multi-line message)."""

    def test_counts_and_continuation_lines(self, tmp_path: pathlib.Path, capsys: Any) -> None:
        db = tmp_path / "r.db"
        line = ingest(capsys, db, TAIL)
        # 19 lines in the file; 2 of them continue a multi-line message: 17 events.
        assert len(TAIL.read_text().splitlines()) == 19
        assert line == ("17 lines read, 3 reports stored, 0 duplicates, 3 platform records, "
                        "1 log lines attached, 0 unreadable lines")
        assert logs_of(db, "c0ffee00-1111-4222-8333-444455556668")[-1] == \
            "slow query:\nSELECT * FROM orders\nWHERE customer = ?"
        assert rows(db, "SELECT DISTINCT version FROM invocations") == [("8",)]

    def test_short_format(self) -> None:
        text = (
            "2026-11-30T08:00:00 START RequestId: 11111111-2222-4333-8444-555555555555 "
            "Version: $LATEST\n"
            "2026-11-30T08:00:00 [INFO]\t2026-11-30T08:00:00.120Z\t"
            "11111111-2222-4333-8444-555555555555\thello\n"
            "2026-11-30T08:00:01 END RequestId: 11111111-2222-4333-8444-555555555555\n"
            "2026-11-30T08:00:01 REPORT RequestId: 11111111-2222-4333-8444-555555555555\t"
            "Duration: 812.50 ms\tBilled Duration: 813 ms\tMemory Size: 128 MB\t"
            "Max Memory Used: 64 MB\t\n"
        )
        store, counts = feed(text, function="short-fn")
        assert (counts.lines, counts.platform, counts.logs) == (4, 1, 1)
        (record,) = store.platform
        assert record["function"] == "short-fn"
        assert record["start_ms"] == 1_796_025_600_000.0  # the START line's time


class TestStdoutLines:
    """Raw lines as a container's output keeps them: reports among other lines."""

    def test_counts_and_unreadable_lines(self, tmp_path: pathlib.Path, capsys: Any) -> None:
        db = tmp_path / "r.db"
        line = ingest(capsys, db, MIXED)
        assert line.startswith(
            "23 lines read, 3 reports stored, 0 duplicates, 3 platform records, 3 log lines "
            "attached, 2 unreadable lines (first unreadable: ")
        assert "stdout_mixed.log:21: report is not valid JSON" in line
        # The report behind the runtime's tab-separated prefix is one of the three.
        assert rows(db, "SELECT COUNT(*) FROM invocations WHERE function = 'thumbnailer'"
                        " AND source = 'agent' AND platform_billed_ms IS NOT NULL") == [(3,)]
        assert sorted(logs_of(db, "7a7a7a7a-0000-4000-8000-00000000000b")) == [
            "resizing t-1.jpg to 3 sizes", "wrote 3 thumbnails"]

    def test_json_log_format(self, tmp_path: pathlib.Path, capsys: Any) -> None:
        db = tmp_path / "r.db"
        line = ingest(capsys, db, JSON_FORMAT)
        assert line == ("6 lines read, 1 reports stored, 0 duplicates, 1 platform records, "
                        "1 log lines attached, 0 unreadable lines")
        rid = "9b9b9b9b-1111-4222-8333-444444444444"
        assert rows(db, "SELECT platform_billed_ms, platform_init_ms FROM invocations"
                        " WHERE request_id = ?", rid) == [(312.0, 240.0)]
        assert sorted(logs_of(db, rid)) == ["cache warmed", "new order j-1 for customer c-8"]

    def test_jq_lines_subscription_payloads_and_arrays(self) -> None:
        rid = "22222222-3333-4444-8555-666666666666"
        report = (f"REPORT RequestId: {rid}\tDuration: 10.00 ms\tBilled Duration: 10 ms\t"
                  f"Memory Size: 128 MB\tMax Memory Used: 50 MB\t")
        events = [{"id": "1", "timestamp": 1_796_025_600_000, "message": report}]
        payload = {"messageType": "DATA_MESSAGE", "owner": "123456789012",
                   "logGroup": "/aws/lambda/from-group", "logStream": "2026/11/30/[$LATEST]ab",
                   "subscriptionFilters": ["f"], "logEvents": events}
        # Firehose writes payloads back to back, without a separator.
        store, counts = feed(json.dumps(payload) + json.dumps(payload))
        assert counts.lines == 2 and counts.platform == 2
        assert {r["function"] for r in store.platform} == {"from-group"}

        store, counts = feed(json.dumps([{"logStreamName": "s", "timestamp": 1_796_025_600_000,
                                          "message": report}]), function="arr")
        assert (counts.lines, counts.platform) == (1, 1)

        line = json.dumps({"logStreamName": "s", "timestamp": 1_796_025_600_000,
                           "message": report, "ingestionTime": 1, "eventId": "9"})
        store, counts = feed(line + "\n" + line + "\n", function="jq")
        assert (counts.lines, counts.platform) == (2, 2)

    def test_corrupt_json_export(self) -> None:
        text = FILTER.read_text()
        cut = text[: len(text) // 2] + "\n}}} not json"
        _, counts = feed(cut)
        assert counts.unreadable == 1
        assert "not valid JSON" in (counts.first_problem or "")
        assert counts.reports >= 1  # what came before the damage is kept


class TestReportOnly:
    """Functions without the agent: Lambda's REPORT lines alone."""

    def test_needs_a_function_name_from_somewhere(self, tmp_path: pathlib.Path,
                                                  capsys: Any) -> None:
        db = tmp_path / "r.db"
        line = ingest(capsys, db, REPORT_ONLY)
        assert line.endswith("3 REPORT lines skipped: no function name (give --function)")
        assert rows(db, "SELECT COUNT(*) FROM invocations") == [(0,)]
        line = ingest(capsys, db, "--function", "legacy-cron", REPORT_ONLY)
        assert line == ("13 lines read, 0 reports stored, 0 duplicates, 3 platform records "
                        "(3 without an agent report), 3 log lines attached, 0 unreadable lines")
        found = rows(db, "SELECT request_id, function, cold_start, init_ms, billed_ms,"
                         " memory_mb FROM invocations ORDER BY start_ms")
        assert found[0] == ("5eed0000-aaaa-4bbb-8ccc-000000000000", "legacy-cron", 1, 612.3,
                            2134.0, 512)
        assert [r[2] for r in found] == [1, 0, 0]
        assert logs_of(db, "5eed0000-aaaa-4bbb-8ccc-000000000001") == ["sync batch 1: 250 rows"]

    def test_function_name_from_a_custom_log_groups_stream(self, tmp_path: pathlib.Path,
                                                           capsys: Any) -> None:
        db = tmp_path / "r.db"
        ingest(capsys, db, CUSTOM_GROUP)
        assert rows(db, "SELECT DISTINCT function, version FROM invocations") == \
            [("billing-sync", "$LATEST")]


class TestReportLine:
    def test_fields(self) -> None:
        record = parse_report_line(
            "REPORT RequestId: 3f2e0000-0000-4000-8000-000000000000\tDuration: 3000.00 ms\t"
            "Billed Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 41 MB\t"
            "Restore Duration: 412.20 ms\tBilled Restore Duration: 190 ms\tStatus: timeout\n"
            "XRAY TraceId: 1-5759e988-bd862e3fe1be46a994272793\tSegmentId: 53995c3f42cd8ad8\t"
            "Sampled: true\t"
        )
        assert record == {
            "request_id": "3f2e0000-0000-4000-8000-000000000000", "duration_ms": 3000.0,
            "billed_ms": 3000.0, "memory_mb": 128, "max_memory_mb": 41, "restore_ms": 412.2,
            "billed_restore_ms": 190.0, "status": "timeout",
            "trace_id": "5759e988bd862e3fe1be46a994272793",
        }
        assert parse_report_line("REPORT RequestId: x\tBilled Duration: ms") is None


class TestBadInput:
    """One line on stderr and exit status 2, never a traceback."""

    @pytest.mark.parametrize("args, message", [
        (["missing.json"], "missing.json: no such file"),
        (["."], ".: is a directory"),
        (["-", "-"], "'-' (standard input) can be given once"),
        (["--function", " ", "x"], "--function: empty name"),
        (["--bogus", "x"], "unrecognized arguments: --bogus"),
        ([], "the following arguments are required: FILE"),
    ])
    def test_arguments(self, tmp_path: pathlib.Path, capsys: Any, args: list[str],
                       message: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "x").write_text("")
        status = main(["ingest", "--db", str(tmp_path / "r.db"), *args])
        err = capsys.readouterr().err
        assert status == 2
        assert err.count("\n") == 1 and message in err, err
        assert err.startswith("lambdascope ingest: error: ")

    def test_corrupt_store(self, tmp_path: pathlib.Path, capsys: Any) -> None:
        db = tmp_path / "r.db"
        db.write_bytes(b"this is not a database, just some bytes" * 100)
        status = main(["ingest", "--db", str(db), str(TAIL)])
        err = capsys.readouterr().err
        assert status == 2
        assert err.count("\n") == 1 and "not a lambdascope store" in err, err

    def test_someone_elses_database_is_left_alone(self, tmp_path: pathlib.Path,
                                                  capsys: Any) -> None:
        db = tmp_path / "app.sqlite"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE users (id INTEGER)")
        conn.close()
        status = main(["ingest", "--db", str(db), str(TAIL)])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1
        assert "not a lambdascope store: a SQLite database with other tables (users)" in err
        assert rows(db, "SELECT name FROM sqlite_master") == [("users",)]

    def test_the_real_command(self, tmp_path: pathlib.Path) -> None:
        """The installed entry point, as a subprocess: counts on stdout, nothing else."""
        done = subprocess.run(
            [sys.executable, "-m", "lambdascope.cli", "ingest", "--db", str(tmp_path / "r.db"),
             str(FILTER), str(TAIL)],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert done.stdout == (
            "54 lines read, 8 reports stored, 0 duplicates, 9 platform records (1 without an "
            "agent report), 7 log lines attached, 0 unreadable lines\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "lambdascope.cli", "ingest", "--db", str(tmp_path / "r.db"),
             str(tmp_path / "nope.log")],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr == f"lambdascope ingest: error: {tmp_path / 'nope.log'}: no such " \
                              f"file\n"


class TestProgress:
    def test_progress_lines_on_a_pipe_with_the_flag(self, tmp_path: pathlib.Path) -> None:
        from lambdascope.cli.ingest import Progress

        stream = io.StringIO()
        bar = Progress(stream, tty=False)
        bar.started -= 10
        bar.file("big.json", 1)
        bar.update(Counts(lines=1200, reports=3), 512 * 1024, 1024 * 1024)
        assert stream.getvalue() == (
            "big.json [############............]  50.0% 0.5 MB/1.0 MB · 1,200 lines · "
            "3 reports · 0 platform records\n")

    def test_no_progress_on_a_pipe_without_the_flag(self, tmp_path: pathlib.Path,
                                                    capsys: Any) -> None:
        ingest(capsys, tmp_path / "r.db", FILTER)  # asserts stderr is empty

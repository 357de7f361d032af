"""``lambdascope stats``, ``show``, ``check`` and ``collector`` against a store filled with
real agent reports (``lambdascope.testing``: HTTP calls to a loopback server give the spans,
a handler raises for the error groups, a second function continues the first one's trace),
read with ``--db`` and, once, through the real collector with ``--url``."""

from __future__ import annotations

import copy
import http.server
import json
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lambdascope import monitor, testing
from lambdascope.cli import main
from lambdascope.testing import capture_reports, fake_context

pytest.importorskip("fastjsonschema")

from collector_harness import Collector  # noqa: E402

from lambdascope.collector.store import Store  # noqa: E402

EVENTS = pathlib.Path(__file__).resolve().parents[1] / "events"
DATA = pathlib.Path(__file__).resolve().parent / "data"


class _Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        recorder = self
        self.seen: list[dict[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
                status = 503 if "down" in self.path else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class DatabaseRefused(ConnectionError):
    pass


@dataclass
class Filled:
    db: pathlib.Path
    host: str                       # "127.0.0.1:PORT", as the dependency names it
    reports: list[dict[str, Any]]
    caller: str                     # request id of the checkout call that invoked payments
    callee: str                     # request id of that payments invocation
    failed: list[str]               # request ids of the DatabaseRefused errors

    def ids(self, function: str) -> list[str]:
        return [r["invocation"]["request_id"] for r in self.reports
                if r["function"]["name"] == function]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    """One store for the module (the commands only read it)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LAMBDASCOPE_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))
        for name in ("AWS_LAMBDA_INITIALIZATION_TYPE", "LAMBDASCOPE_EXPORTERS",
                     "LAMBDASCOPE_COLLECTOR_URL", "LAMBDASCOPE_DISABLED"):
            monkeypatch.delenv(name, raising=False)
        testing.reset()
        try:
            yield _fill(tmp_path_factory.mktemp("cli"), monkeypatch)
        finally:
            testing.reset()


def _fill(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Filled:
    server = _Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()

    @monitor
    def checkout(event: dict[str, Any], context: Any) -> dict[str, Any]:
        import logging

        logging.getLogger("checkout").warning("checkout of cart %s", event["cart"])
        with urllib.request.urlopen(f"{server.base}/pay/{event['cart']}", timeout=5) as r:
            r.read()
        if event.get("slow"):
            time.sleep(0.03)
        if event.get("refused"):
            raise DatabaseRefused(f"database refused connections from 10.0.0.{len(event['cart'])}"
                                  f"{event['cart'][1:]}")
        return {"statusCode": 200}

    @monitor
    def payments(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            urllib.request.urlopen(f"{server.base}/bank/down", timeout=5).read()
        except Exception:
            pass
        return {"statusCode": 202}

    reports: list[dict[str, Any]] = []
    failed: list[str] = []
    with capture_reports() as captured:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "1")
        for i in range(6):
            ctx = fake_context(function_name="checkout", memory_limit_in_mb=512)
            try:
                checkout({"cart": f"c{i}", "refused": i in (2, 4)}, ctx)
            except DatabaseRefused:
                failed.append(ctx.aws_request_id)
        caller = captured[-1]["invocation"]["request_id"]
        headers = server.seen[-1]
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "2")
        testing.reset()  # a new deploy: a new sandbox, a cold start
        for i in range(4):
            checkout({"cart": f"d{i}", "slow": True},
                     fake_context(function_name="checkout", memory_limit_in_mb=512))
        reports.extend(captured)
    # payments, in a sandbox of its own, invoked through API Gateway with the headers the
    # checkout call sent: the same trace.
    testing.reset()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    event = json.loads((EVENTS / "apigw_http.json").read_text())
    event["headers"] = {**event["headers"], "traceparent": headers["traceparent"]}
    event["headers"].pop("x-amzn-trace-id", None)
    with capture_reports() as captured:
        payments(event, fake_context(function_name="payments"))
    reports.extend(captured)
    server.shutdown()
    assert len(reports) == 11
    callee = reports[-1]["invocation"]["request_id"]
    db = tmp_path / "store" / "reports.db"
    store = Store(db)
    try:
        store.add(copy.deepcopy(reports))
    finally:
        store.close()
    return Filled(db, f"127.0.0.1:{server.server_address[1]}", reports, caller, callee, failed)


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(err: str, command: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"lambdascope {command}: error: "), err
    assert "Traceback" not in err


# -- stats ------------------------------------------------------------------------------------

class TestStats:
    def test_json_is_the_queries_answer(self, filled: Filled, capsys: Any) -> None:
        status, out, err = run(capsys, "stats", "--db", filled.db, "--json")
        assert status == 0 and err == ""
        data = json.loads(out)
        assert [e["function"] for e in data["functions"]] == ["checkout", "payments"]
        checkout = data["functions"][0]
        assert checkout["invocations"] == 10
        assert checkout["error_rate"] == pytest.approx(0.2)
        assert checkout["cold_starts"] == 2
        assert checkout["duration"]["cold"]["count"] == 2
        assert checkout["memory"]["configured_mb"] == 512
        assert checkout["cost"]["per_million_usd"] > 0
        deps = {d["dependency"]: d for d in checkout["dependencies"]}
        assert deps[f"GET {filled.host}"]["count"] == 10
        (group,) = checkout["errors"]
        assert group["count"] == 2
        assert group["type"].endswith("DatabaseRefused")
        assert group["example_request_id"] in filled.failed
        payments = data["functions"][1]
        assert payments["dependencies"][0]["error_rate"] == 1.0

    def test_tables(self, filled: Filled, capsys: Any) -> None:
        status, out, err = run(capsys, "stats", "--db", filled.db)
        assert status == 0 and err == ""
        assert "\ncheckout\n" in out and "\npayments\n" in out
        assert "invocations 10   errors 20%" in out
        for heading in ("duration", "init", "memory", "cost", "agent", "dependencies",
                        "errors", "per invocation", "per million", "in cold starts"):
            assert heading in out, heading
        assert f"GET {filled.host}" in out
        assert "database refused connections from <ip>" in out
        example = next(line for line in out.splitlines() if "DatabaseRefused" in line)
        assert example.split()[-1] in filled.failed

    def test_by_version_side_by_side(self, filled: Filled, capsys: Any) -> None:
        status, out, _ = run(capsys, "stats", "--db", filled.db, "--function", "checkout",
                             "--by", "version")
        assert status == 0
        assert "checkout: versions side by side (newest first)" in out
        rows = out.split("side by side")[1].splitlines()[2:4]
        assert [r.split()[0] for r in rows] == ["2", "1"]
        assert "checkout  version 2" in out and "checkout  version 1" in out

    def test_cold_warm_and_prices(self, filled: Filled, capsys: Any) -> None:
        _, out, _ = run(capsys, "stats", "--db", filled.db, "-f", "checkout", "--cold",
                        "--json")
        assert json.loads(out)["functions"][0]["invocations"] == 2
        _, out, _ = run(capsys, "stats", "--db", filled.db, "-f", "checkout", "--warm",
                        "--json", "--price-gb-s", "0.00001", "--price-request", "0")
        entry = json.loads(out)["functions"][0]
        assert entry["invocations"] == 8
        assert entry["cost"]["price_gb_s_usd"] == 0.00001
        assert entry["cost"]["price_request_usd"] == 0

    def test_an_empty_window_says_so(self, filled: Filled, capsys: Any) -> None:
        status, out, _ = run(capsys, "stats", "--db", filled.db, "--since", "2h",
                             "--until", "1h")
        assert status == 0
        assert out.startswith("no invocations from ")


# -- show -------------------------------------------------------------------------------------

class TestShow:
    def test_waterfall_logs_and_related(self, filled: Filled, capsys: Any) -> None:
        status, out, err = run(capsys, "show", filled.caller, "--db", filled.db, "--width", "40")
        assert status == 0 and err == ""
        assert out.startswith(f"invocation {filled.caller}   checkout   OK\n")
        lines = out.splitlines()
        spans = lines[lines.index(next(x for x in lines if x.startswith("spans (2;"))):]
        root, child = spans[1], spans[2]
        assert root.startswith("  ") and root.split()[0].endswith("checkout") and "|" in root
        assert child.startswith(f"    GET {filled.host}")
        bar = child[child.index("|") + 1:child.rindex("|")]
        assert len(bar) == 40 and set(bar) <= {" ", "█", "#"} and bar.strip()
        assert "logs (1)" in out and "WARNING checkout: checkout of cart c5" in out
        assert "related invocations (trace " in out
        related = out[out.index("related invocations"):]
        assert "payments" in related and filled.callee in related

    def test_the_callee_sees_its_caller_and_its_failed_call(self, filled: Filled,
                                                           capsys: Any) -> None:
        status, out, _ = run(capsys, "show", filled.callee, "--db", filled.db)
        assert status == 0
        assert "trigger     api_gateway_v2" in out
        assert "(called from span " in out
        assert "GET " in out and "503" in out and "error" in out
        assert filled.caller in out[out.index("related invocations"):]

    def test_error_with_its_stack(self, filled: Filled, capsys: Any) -> None:
        status, out, _ = run(capsys, "show", filled.failed[0], "--db", filled.db)
        assert status == 0
        assert "   ERROR\n" in out.splitlines()[0] + "\n"
        assert "error  " in out and "DatabaseRefused: database refused connections" in out
        assert "Traceback (most recent call last):" in out
        assert "in checkout" in out

    def test_json(self, filled: Filled, capsys: Any) -> None:
        status, out, _ = run(capsys, "show", filled.caller, "--db", filled.db, "--json")
        assert status == 0
        data = json.loads(out)
        assert data["invocation"]["invocation"]["request_id"] == filled.caller
        assert [r["request_id"] for r in data["related"]] == [filled.callee]

    def test_an_ingested_report_line_alone(self, tmp_path: pathlib.Path, capsys: Any) -> None:
        db = tmp_path / "r.db"
        assert main(["ingest", "--db", str(db), str(DATA / "filter_log_events.json")]) == 0
        capsys.readouterr()
        status, out, _ = run(capsys, "show", "1d2e3f40-6a7b-4c8d-9e0f-a1b2c3d4e5f6",
                             "--db", db)
        assert status == 0
        assert "Lambda's REPORT line only" in out
        assert "max memory used 256 MB" in out
        assert "importing a 900 MB catalogue" in out


def test_waterfall_names_aws_resources_and_nests() -> None:
    from lambdascope.cli.show import waterfall

    start = 1_796_025_600_000.0
    root = {"span_id": "a" * 16, "parent_span_id": None, "name": "handler", "kind": "server",
            "start_ms": start, "duration_ms": 100.0, "status": "ok", "attributes": {}}
    step = {"span_id": "b" * 16, "parent_span_id": "a" * 16, "name": "load", "kind": "internal",
            "start_ms": start + 10, "duration_ms": 60.0, "status": "ok", "attributes": {}}
    s3 = {"span_id": "c" * 16, "parent_span_id": "b" * 16, "name": "S3.GetObject",
          "kind": "client", "start_ms": start + 20, "duration_ms": 50.0, "status": "error",
          "attributes": {"rpc.system": "aws-api", "rpc.service": "S3", "rpc.method": "GetObject",
                         "aws.s3.bucket": "invoices"}}
    sqs = {"span_id": "d" * 16, "parent_span_id": "a" * 16, "name": "SQS.SendMessage",
           "kind": "producer", "start_ms": start + 75, "duration_ms": 25.0, "status": "ok",
           "attributes": {"rpc.system": "aws-api", "aws.sqs.queue_url":
                          "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-out"}}
    report = {"invocation": {"start_ms": start, "duration_ms": 100.0},
              "trace": {"span_id": "a" * 16}, "spans": [root, sqs, s3, step]}
    assert waterfall(report, width=20, fancy=False) == [
        "  handler                       |####################|    100 ms",
        "    load                        |  ############      |   60.0 ms",
        "      S3.GetObject invoices     |    ##########      |   50.0 ms x error",
        "    SQS.SendMessage orders-out  |               #####|   25.0 ms",
    ]


# -- check ------------------------------------------------------------------------------------

class TestCheck:
    def test_passing(self, filled: Filled, capsys: Any) -> None:
        status, out, err = run(
            capsys, "check", "--db", filled.db, "--function", "checkout",
            # The "init" of an in-process test sandbox runs from the start of pytest, and a cold
            # start's init is billed: both grow with the time the suite has been running.
            "--max-p95-ms", "5000", "--max-error-rate", "50%", "--max-init-ms", "86400000",
            "--max-cold-start-rate", "0.9", "--max-cost-per-million", "1000000",
            "--max-agent-overhead-ms", "1000",
        )
        assert (status, err) == (0, ""), out
        # --version defaults to the newest version seen: 2 (no errors there).
        assert out.startswith("checkout version 2: 4 invocations from ")
        assert out.count("PASS") == 6 and "FAIL" not in out
        assert out.rstrip().endswith("all 6 checks passed")

    def test_failing(self, filled: Filled, capsys: Any) -> None:
        status, out, _ = run(capsys, "check", "--db", filled.db, "-f", "checkout",
                             "--version", "1", "--max-error-rate", "0.1",
                             "--max-p95-ms", "5000")
        assert status == 1
        rate = next(line for line in out.splitlines() if "error rate" in line)
        assert "33.3%" in rate and "FAIL" in rate
        assert out.rstrip().endswith("1 of 2 checks failed")

    def test_regression_against_a_baseline(self, filled: Filled, capsys: Any) -> None:
        status, out, _ = run(capsys, "check", "--db", filled.db, "-f", "checkout",
                             "--baseline-version", "1", "--max-regression-pct", "10%")
        # Version 2 sleeps 30 ms more: far more than 10 % slower.
        assert status == 1
        line = next(x for x in out.splitlines() if "p95 regression" in x)
        assert "FAIL" in line and "in version 1" in line

    def test_json(self, filled: Filled, capsys: Any) -> None:
        status, out, _ = run(capsys, "check", "--db", filled.db, "-f", "checkout",
                             "--max-p95-ms", "1", "--json")
        assert status == 1
        data = json.loads(out)
        assert data["ok"] is False and data["version"] == "2"
        assert data["checks"][0]["check"] == "p95_ms" and data["checks"][0]["ok"] is False

    @pytest.mark.parametrize("args, message", [
        (["-f", "nobody", "--max-p95-ms", "1"], "no data: no invocations of nobody"),
        (["-f", "checkout", "--version", "9", "--max-p95-ms", "1"],
         "no data: no invocations of checkout version 9"),
        (["-f", "checkout", "--baseline-version", "7", "--max-regression-pct", "5"],
         "version 7 (the baseline)"),
        (["-f", "checkout"], "nothing to check"),
        (["-f", "checkout", "--max-regression-pct", "5"],
         "--baseline-version and --max-regression-pct go together"),
        (["--max-p95-ms", "1"], "the following arguments are required: --function"),
    ])
    def test_no_data_and_bad_input_exit_2(self, filled: Filled, capsys: Any, args: list[str],
                                          message: str) -> None:
        status, out, err = run(capsys, "check", "--db", filled.db, *args)
        assert status == 2 and out == ""
        one_error_line(err, "check")
        assert message in err, err


# -- bad input, every command -------------------------------------------------------------------

BAD = [
    (["stats", "--since", "5x"], "--since '5x': not a time"),
    (["stats", "--until", "yesterday"], "--until 'yesterday': not a time"),
    (["stats", "--since", "1h", "--until", "2h"], "is not after --since"),
    (["stats", "--price-gb-s", "-1"], "--price-gb-s '-1'"),
    (["stats", "--price-request", "free"], "--price-request 'free': not a number"),
    (["stats", "--cold", "--warm"], "not allowed with argument"),
    (["stats", "--by", "region"], "invalid choice: 'region'"),
    (["stats", "--bogus"], "unrecognized arguments: --bogus"),
    (["stats", "--token", "t"], "--token goes with --url"),
    (["stats", "--url", "http://127.0.0.1:1", "--db", "x.db"], "give --db or --url, not both"),
    (["stats", "--url", "ftp://example.com"], "not an http(s) URL"),
    (["show"], "the following arguments are required: REQUEST_ID"),
    (["show", "abc", "--bogus"], "unrecognized arguments: --bogus"),
    (["check", "-f", "checkout", "--max-p95-ms", "1", "--bogus", "2"],
     "unrecognized arguments: --bogus 2"),
    (["nonsense"], "invalid choice: 'nonsense'"),
    (["show", "abc", "--width", "3"], "--width 3: between 10 and 500"),
    (["show", "abc", "--width", "wide"], "invalid int value: 'wide'"),
    (["show", "no-such-request"], "no invocation with request id no-such-request"),
    (["check", "-f", "checkout", "--max-error-rate", "150%"], "a rate is between 0 and 1"),
    (["check", "-f", "checkout", "--max-error-rate", "5"], "did you mean 5%?"),
    (["check", "-f", "checkout", "--max-cold-start-rate", "lots"], "not a rate"),
    (["check", "-f", "checkout", "--max-p95-ms", "fast"], "--max-p95-ms 'fast': not a number"),
    (["check", "-f", "checkout", "--max-p95-ms", "nan"], "finite number"),
    (["check", "-f", "checkout", "--since", "-1h", "--max-p95-ms", "1"],
     "expected one argument"),
    (["ingest", "--db", "x.db", "nope.log"], "nope.log: no such file"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_one_line_exit_2(filled: Filled, capsys: Any, args: list[str],
                                       message: str, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: pathlib.Path) -> None:
    monkeypatch.chdir(tmp_path)
    if args[0] not in ("ingest", "nonsense") and "--db" not in args and "--url" not in args:
        args = [*args, "--db", str(filled.db)]
    status, out, err = run(capsys, *args)
    assert status == 2 and out == ""
    if args[0] == "nonsense":
        assert err.startswith("lambdascope: error: ") and err.count("\n") == 1
    else:
        one_error_line(err, args[0])
    assert message in err, err


@pytest.mark.parametrize("command", [["stats"], ["show", "abc"],
                                     ["check", "-f", "x", "--max-p95-ms", "1"]])
class TestBadStores:
    def test_missing_store(self, tmp_path: pathlib.Path, capsys: Any,
                           command: list[str]) -> None:
        status, _, err = run(capsys, *command, "--db", tmp_path / "none.db")
        assert status == 2
        one_error_line(err, command[0])
        assert "no store at" in err and "lambdascope ingest" in err

    def test_default_store_missing(self, tmp_path: pathlib.Path, capsys: Any,
                                   command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        status, _, err = run(capsys, *command)
        assert status == 2
        assert "no store at .lambdascope/reports.db" in err

    def test_corrupt_store(self, tmp_path: pathlib.Path, capsys: Any,
                           command: list[str]) -> None:
        db = tmp_path / "r.db"
        db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
        status, _, err = run(capsys, *command, "--db", db)
        assert status == 2
        one_error_line(err, command[0])
        assert "not a lambdascope store" in err

    def test_someone_elses_database_is_left_alone(self, tmp_path: pathlib.Path, capsys: Any,
                                                  command: list[str]) -> None:
        import sqlite3

        db = tmp_path / "app.sqlite"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE users (id INTEGER)")
        conn.close()
        status, _, err = run(capsys, *command, "--db", db)
        assert status == 2
        one_error_line(err, command[0])
        assert "not a lambdascope store: a SQLite database with other tables (users)" in err
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
        conn.close()

    def test_empty_store_file(self, tmp_path: pathlib.Path, capsys: Any,
                              command: list[str]) -> None:
        db = tmp_path / "r.db"
        db.write_bytes(b"")
        status, _, err = run(capsys, *command, "--db", db)
        assert status == 2
        assert "is an empty store" in err

    def test_unreachable_collector(self, capsys: Any, command: list[str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # bound, not listening: refused
            status, _, err = run(capsys, *command, "--url", f"http://127.0.0.1:{port}")
        assert status == 2
        one_error_line(err, command[0])
        assert f"cannot reach the collector at http://127.0.0.1:{port}" in err


def test_help_for_every_command(capsys: Any) -> None:
    for command in ("stats", "show", "ingest", "check"):
        status, out, _ = run(capsys, command, "--help")
        assert status == 0 and out.startswith(f"usage: lambdascope {command}")
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("stats", "show", "ingest", "check", "collector"):
        assert command in out
    status, out, _ = run(capsys, "collector", "--help")
    assert status == 0 and out.startswith("usage: lambdascope collector")
    status, _, err = run(capsys, "collector", "--port", "http")
    assert status == 2
    one_error_line(err, "collector")


def test_the_installed_command(filled: Filled) -> None:
    """``python -m lambdascope.cli`` as a subprocess: output and exit statuses."""
    def cli(*args: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lambdascope.cli", *map(str, args)],
                              capture_output=True, text=True, timeout=60)

    done = cli("stats", "--db", filled.db, "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert len(json.loads(done.stdout)["functions"]) == 2
    done = cli("check", "--db", filled.db, "-f", "checkout", "--max-p95-ms", "0.001")
    assert done.returncode == 1 and "FAIL" in done.stdout
    done = cli("stats", "--db", filled.db, "--since", "5x")
    assert done.returncode == 2
    assert done.stderr == ("lambdascope stats: error: --since '5x': not a time (use a duration "
                           "back from now such as 30m, 1h or 7d, an ISO 8601 time such as "
                           "2026-01-31T12:00:00Z, or epoch milliseconds)\n")


# -- --url: the real collector ------------------------------------------------------------------

def test_url_mode_reads_the_running_collector(filled: Filled, capsys: Any) -> None:
    token = "cli-test-token"
    with Collector(filled.db, token=token) as collector:
        args = ["--url", collector.url, "--token", token]
        status, remote, err = run(capsys, "stats", "--json", "--since", "1h", *args)
        assert (status, err) == (0, ""), remote
        _, local, _ = run(capsys, "stats", "--json", "--since", "1h", "--db", filled.db)
        remote_data, local_data = json.loads(remote), json.loads(local)
        assert remote_data["functions"] == local_data["functions"]

        status, out, _ = run(capsys, "show", filled.caller, *args)
        assert status == 0 and "related invocations" in out and filled.callee in out

        status, out, _ = run(capsys, "check", "-f", "checkout", "--version", "1",
                             "--max-error-rate", "10%", *args)
        assert status == 1 and "FAIL" in out

        status, _, err = run(capsys, "show", "nope", *args)
        assert status == 2 and "no invocation with request id nope" in err

        status, _, err = run(capsys, "stats", "--url", collector.url, "--token", "wrong")
        assert status == 2
        one_error_line(err, "stats")
        assert "refused the token" in err

        status, _, err = run(capsys, "stats", "--url", collector.url)
        assert status == 2 and "refused the token" in err and "LAMBDASCOPE_TOKEN" in err


def test_collector_command_runs_the_service(tmp_path: pathlib.Path) -> None:
    """``lambdascope collector`` hands its arguments to the service: it starts, answers and
    stops cleanly on SIGTERM."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "lambdascope.cli", "collector", "--port", "0", "--db",
         str(tmp_path / "c.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "lambdascope collector listening on http://127.0.0.1:" in line, line
        url = line[line.index("http://"):].split()[0]
        with urllib.request.urlopen(f"{url}/api/health", timeout=10) as response:
            assert json.loads(response.read())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

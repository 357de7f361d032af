"""``lambdascope invoke`` as a user runs it: bad input answered with one line and exit status 2
before any sandbox starts, the summary, ``--json``, ``--event -`` and LAMBDASCOPE_COLLECTOR_URL."""

from __future__ import annotations

import io
import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
from runner_harness import HANDLERS, stored_rows

from lambdascope.cli import main
from lambdascope.collector.store import Store
from lambdascope.runner import runtime_api
from lambdascope.runner.receiver import ReportReceiver

SCRIPTED = str(HANDLERS / "scripted.py") + ":handler"


@pytest.fixture
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a sandbox process is started."""

    def refuse(self: Any) -> Any:
        raise AssertionError("a sandbox was started")

    monkeypatch.setattr(runtime_api.Sandbox, "start", refuse)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lambdascope invoke: error: ")
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("missing_file.py:handler", "missing_file.py: no such file"),
        ("no_such_module_here:handler", "no module 'no_such_module_here'"),
        (str(HANDLERS / "scripted.py") + ":nope", "no function 'nope' in the module"),
        (str(HANDLERS / "not_callable.py") + ":handler", "'handler' is not callable"),
        (str(HANDLERS / "scripted.py"), "expected FILE_OR_MODULE:FUNC"),
        (str(HANDLERS) + ":handler", "is a directory"),
        ("scripted.py:handler", "scripted.py: no such file"),
    ],
)
def test_bad_handler_references_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], no_sandbox: None, tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch, target: str, says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(capsys, ["invoke", target])
    assert says in line
    assert not (tmp_path / ".lambdascope").exists()


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ("missing.json", "--event missing.json: no such file"),
        ("invalid.json", "is not valid JSON: Expecting ',' delimiter at line 1 column 9"),
        ("no_such_sample", "no sample event of that name (the samples: api_gateway_v1"),
        ("-", "standard input is empty"),
    ],
)
def test_bad_events_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], no_sandbox: None, tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch, event: str, says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "invalid.json").write_text('{"a": 1 "b": 2}')
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    line = _one_line_error(capsys, ["invoke", SCRIPTED, "--event", event])
    assert says in line


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--concurrency", "3", "--containers", "2"], "--concurrency 3 needs --containers 3"),
        (["--memory", "64"], "--memory 64: Lambda takes 128 to 10240 MB"),
        (["--timeout", "0"], "--timeout 0: must be more than 0"),
        (["--times", "0"], "--times 0: must be 1 or more"),
        (["--times", "many"], "argument --times/-n: invalid int value: 'many'"),
        (["--init-type", "later"], "argument --init-type: invalid choice: 'later'"),
        (["--init-type", "provisioned-concurrency", "--snapstart"], "contradict each other"),
        (["--env", "NOEQUALS"], "expected KEY=VALUE"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], no_sandbox: None, flags: list[str], says: str
) -> None:
    line = _one_line_error(capsys, ["invoke", SCRIPTED, *flags])
    assert says in line


def test_the_summary_the_stats_and_the_dashboard_command(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    db = tmp_path / "store" / "reports.db"
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"script": ["ok", "raise", "ok"]}))
    code = main(["invoke", SCRIPTED, "--event", str(event), "--times", "3",
                 "--function-name", "summary-fn", "--db", str(db),
                 "--env", f"SCRIPT_DIR={tmp_path}", "--logs"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = captured.out
    assert text.startswith(f"{SCRIPTED} as summary-fn: 3 invocations on 1 sandbox "
                           f"(on-demand, 128 MB, timeout 3 s)")
    request_ids = re.findall(r"^\s+\d\s+([0-9a-f-]{36})\s", text, re.MULTILINE)
    assert len(request_ids) == 3
    rows = re.findall(r"^\s+(\d)\s+[0-9a-f-]{36}\s+1\s+(cold|warm)\s.*\s(ok|error \(.*\))$",
                      text, re.MULTILINE)
    assert [(n, start, status.split(" ")[0]) for n, start, status in rows] == [
        ("1", "cold", "ok"), ("2", "warm", "error"), ("3", "warm", "ok")]
    assert "error (ValueError: scripted failure)" in text
    assert "1 cold, 2 warm · 2 ok, 1 error · 1 sandbox process started" in text
    assert f"reports: 3 from the agent in {db}" in text
    # The stats of the run, as `lambdascope stats` shows them.
    assert "\nsummary-fn\n  invocations 3   errors 33.3%" in text
    assert "cold starts 33.3% (1)" in text
    assert f"open the dashboard:\n  lambdascope collector --db {db}\n" \
           f"  then http://127.0.0.1:8585/functions/summary-fn\n" in text
    assert sorted(r["request_id"] for r in stored_rows(db, "summary-fn")) == sorted(request_ids)
    # Progress went to stderr (not a terminal here: a plain line per invocation), and with
    # --logs what the sandbox printed: the runtime client's log of the error.
    assert "lambdascope invoke: 3/3 invocations done" in captured.err
    logged = [line for line in captured.err.splitlines() if line.startswith("[sandbox 1] ")]
    assert any("scripted failure" in line for line in logged), captured.err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal() -> None:
    from lambdascope.cli.invoke import Progress
    from lambdascope.runner.invoke import InvocationRecord

    stream = _Terminal()
    progress = Progress(stream, 4, enabled=True)
    for done in range(1, 5):
        record = InvocationRecord(index=done, request_id=str(done), sandbox=1, process=1,
                                  start="warm", cold_start=False,
                                  status="error" if done == 2 else "ok")
        progress.update(done, 4, record)
    progress.finish()
    progress.finish()  # once only
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and not text.endswith("\n\n")
    assert "[######------------------] 1/4 invocations" in text.replace(".", "-")
    assert "4/4 invocations · 1 failed" in text
    quiet = _Terminal()
    Progress(quiet, 4, enabled=False).update(1, 4, record)
    assert quiet.getvalue() == ""


def test_event_from_stdin_snapstart_and_json_output(tmp_path: pathlib.Path) -> None:
    event = {"script": ["ok"], "order": {"id": 42}}
    proc = subprocess.run(
        [sys.executable, "-m", "lambdascope.cli", "invoke", SCRIPTED, "--event", "-",
         "--times", "2", "--snapstart", "--json", "--db", str(tmp_path / "r.db"),
         "--env", f"SCRIPT_DIR={tmp_path}", "--function-name", "stdin-fn"],
        input=json.dumps(event), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["function"] == "stdin-fn"
    assert [r["response"]["event"] for r in doc["invocations"]] == [event, event]
    assert doc["init_type"] == "snap-start"
    assert [r["start"] for r in doc["invocations"]] == ["restored", "warm"]
    assert doc["counts"]["restored"] == 1 and doc["counts"]["warm"] == 1
    assert doc["reports"] == {"destination": "store", "db": str(tmp_path / "r.db"),
                              "collector_url": None, "received": 2, "missing": []}
    entry = doc["stats"]["functions"][0]
    assert entry["function"] == "stdin-fn" and entry["invocations"] == 2
    assert all(key.endswith("_ms") for key in doc["invocations"][0] if "ms" in key)


def test_collector_url_in_the_environment_is_where_reports_go(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Store(tmp_path / "collector.db") as store:
        collector = ReportReceiver(store)
        try:
            monkeypatch.setenv("LAMBDASCOPE_COLLECTOR_URL", collector.url)
            monkeypatch.chdir(tmp_path)
            code = main(["invoke", SCRIPTED, "--times", "2", "--event", "sqs", "--json",
                         "--function-name", "remote-fn", "--env", f"SCRIPT_DIR={tmp_path}"])
            captured = capsys.readouterr()
            assert code == 0, captured.err
            doc = json.loads(captured.out)
            assert set(collector.received()) == {r["request_id"] for r in doc["invocations"]}
        finally:
            collector.close()
    assert doc["reports"]["destination"] == "collector"
    assert doc["reports"]["collector_url"] == collector.url
    assert not (tmp_path / ".lambdascope").exists()  # no embedded store
    rows = stored_rows(tmp_path / "collector.db", "remote-fn")
    assert len(rows) == 2
    assert {row["trigger_type"] for row in rows} == {"sqs"}  # the bundled sample event


def test_a_run_whose_every_sandbox_was_killed_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    """One invocation killed out of memory: no agent report could get out (its crash report
    would come from the sandbox's next process), and the summary does not blame the handler's
    decorator."""
    db = tmp_path / "reports.db"
    code = main(["invoke", SCRIPTED, "--event", json.dumps({"script": ["alloc:400"]}),
                 "--times", "1", "--memory", "128", "--function-name", "killed-fn",
                 "--db", str(db), "--env", f"SCRIPT_DIR={tmp_path}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "1 crashed" in captured.out
    assert "out of memory" in captured.out
    assert ("reports: 0 from the agent" in captured.out
            or "every sandbox was killed before it could report" in captured.out), captured.out
    assert "1 invocation without one" in captured.out or "killed" in captured.out
    assert "is the handler decorated" not in captured.out
    (row,) = stored_rows(db, "killed-fn")
    assert row["status"] == "crashed"

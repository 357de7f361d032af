"""The demo end to end: ``bash scripts/demo.sh`` itself (without the venv set-up, on a store and a
state directory of the test's own, the collector on a free port), then what the store holds:
cold and warm invocations, the error, the timeout, the out-of-memory crash, and one trace from
checkout through SQS to fulfilment, as the service map draws it."""

from __future__ import annotations

import os
import pathlib
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from examples_harness import ROOT, stored

from lambdascope.collector import views
from lambdascope.collector.store import open_reader


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("demo")
    db, state = work / "reports.db", work / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDASCOPE_", "AWS_"))}
    env["LAMBDASCOPE_DEMO_PYTHON"] = sys.executable
    began = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), "--no-setup", "--no-keep", "--port", "0",
         "--db", str(db), "--state", str(state)],
        capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - began
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return {"db": db, "state": state, "stdout": done.stdout, "stderr": done.stderr,
            "seconds": seconds}


def rows(db: pathlib.Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    with open_reader(db) as conn:
        conn.row_factory = sqlite3.Row
        found = list(conn.execute(sql, args))
    return found


def counts(db: pathlib.Path, function: str) -> dict[tuple[str, int], int]:
    """(status, cold_start) -> invocations of ``function``."""
    return {(r["status"], r["cold_start"]): r["n"] for r in rows(
        db, "SELECT status, cold_start, count(*) AS n FROM invocations WHERE function = ?"
            " GROUP BY status, cold_start", function)}


def test_the_demo_runs_in_under_two_minutes_and_cleans_up(demo: dict[str, Any]) -> None:
    out = demo["stdout"]
    assert demo["seconds"] < 120, demo["seconds"]
    assert "dashboard: http://127.0.0.1:" in out
    assert "the collector stops now" in out
    # The stats of the run and the fulfilment invocation's trace were printed.
    for function in ("thumbnailer", "orders", "checkout", "fulfilment"):
        assert f"\n{function}\n  invocations " in out, function
    assert "related invocations (trace " in out
    # Nothing is left running: the local cloud removed its environment file when it stopped,
    # and the collector (not a terminal, --no-keep) was stopped.
    assert not (demo["state"] / "devstack.env").exists()
    assert not (demo["state"] / "collector.pid").exists()
    url = out.split("dashboard: ", 1)[1].split()[0]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/api/health", timeout=2)


def test_the_store_holds_cold_warm_error_timeout_and_out_of_memory(
        demo: dict[str, Any]) -> None:
    db = demo["db"]
    thumbnailer = counts(db, "thumbnailer")
    assert thumbnailer == {("ok", 1): 2, ("ok", 0): 2, ("crashed", 1): 1}, thumbnailer
    (oom,) = rows(db, "SELECT request_id, error_type, memory_mb FROM invocations"
                      " WHERE function = 'thumbnailer' AND status = 'crashed'")
    assert oom["error_type"] == "Runtime.OutOfMemory" and oom["memory_mb"] == 128

    orders = counts(db, "orders")
    # 6 orders on 2 sandboxes, a declined card, two unknown products, one timeout.
    assert orders == {("ok", 1): 3, ("ok", 0): 4, ("error", 1): 1, ("error", 0): 1,
                      ("timeout", 1): 1}, orders
    errors = rows(db, "SELECT error_type, fingerprint FROM invocations"
                      " WHERE function = 'orders' AND status = 'error'")
    assert [e["error_type"] for e in errors] == ["KeyError", "KeyError"]
    assert errors[0]["fingerprint"] and errors[0]["fingerprint"] == errors[1]["fingerprint"]
    (timeout,) = rows(db, "SELECT request_id, timeout_ms, duration_ms FROM invocations"
                          " WHERE function = 'orders' AND status = 'timeout'")
    assert timeout["timeout_ms"] <= 1000
    report = stored(db, timeout["request_id"])
    assert report["error"]["type"] == "Timeout"
    assert [s["name"] for s in report["spans"]].count("POST") == 1  # the call it waited on

    # The thumbnails' reports carry the tool's run and the bytes.
    for row in rows(db, "SELECT request_id FROM invocations WHERE function = 'thumbnailer'"
                        " AND status = 'ok'"):
        photo = stored(db, row["request_id"])
        assert [s["status"] for s in photo["spans"] if s["name"] == "subprocess thumbnail"] == [
            "ok"]
        assert [m["name"] for m in photo["metrics"]] == ["bytes_processed", "thumbnail_bytes"]


def test_one_trace_from_checkout_to_fulfilment_on_the_map(demo: dict[str, Any]) -> None:
    db = demo["db"]
    (a,) = rows(db, "SELECT * FROM invocations WHERE function = 'checkout'")
    (b,) = rows(db, "SELECT * FROM invocations WHERE function = 'fulfilment'")
    assert a["trace_id"] == b["trace_id"]
    send = [s for s in stored(db, a["request_id"])["spans"]
            if s["name"] == "SQS.SendMessageBatch"]
    assert len(send) == 1
    assert b["parent_span_id"] == send[0]["span_id"]
    report = stored(db, b["request_id"])
    assert report["invocation"]["batch"] == {"size": 3, "failed": 1}
    assert {link["span_id"] for link in report["spans"][0]["links"]} == {send[0]["span_id"]}
    assert f"related invocations (trace {a['trace_id']})" in demo["stdout"]

    with open_reader(db) as conn:
        found = views.service_map(conn, 0.0, time.time() * 1000.0 + 60_000)
    edges = {(e["from"], e["to"]) for e in found["edges"]}
    for edge in (("fn:checkout", "sqs:shipments"), ("sqs:shipments", "fn:fulfilment"),
                 ("fn:fulfilment", "s3:shipping-labels"), ("fn:orders", "dynamodb:orders"),
                 ("fn:thumbnailer", "s3:photos-incoming"),
                 ("fn:thumbnailer", "s3:photos-thumbnails")):
        assert edge in edges, (edge, sorted(edges))

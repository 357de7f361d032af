"""The parts under the runner: the sandbox memory figure the agent reads
(``LAMBDASCOPE_SANDBOX_CGROUP``, the one agent change the runner needed) and the loopback
receiver that puts reports in the store."""

from __future__ import annotations

import gzip
import json
import pathlib
import urllib.error
import urllib.request
from typing import Any

import pytest

from lambdascope import _resources, monitor
from lambdascope.collector.store import Store
from lambdascope.runner import receiver as receiver_module
from lambdascope.runner.invoke import _MemoryFile
from lambdascope.runner.receiver import ReportReceiver
from lambdascope.testing import capture_reports, fake_context

MB = 1024 * 1024


def test_the_agent_reads_the_sandbox_memory_where_the_runner_writes_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = _MemoryFile(str(tmp_path / "memory.current"))
    peak = _MemoryFile(str(tmp_path / "memory.peak"))
    current.write(50 * MB)
    peak.write(60 * MB)
    monkeypatch.setenv("LAMBDASCOPE_SANDBOX_CGROUP", str(tmp_path))
    sampler = _resources.Sampler()
    try:
        figures = sampler.end(sampler.start(), 128)
        assert figures["sandbox_memory_mb"] == 50.0
        assert figures["sandbox_memory_peak_mb"] == 60.0
        # Rewritten in place, shorter: the agent's open file sees the new number whole.
        current.write(7 * MB)
        peak.write(61 * MB)
        figures = sampler.end(sampler.start(), 128)
        assert figures["sandbox_memory_mb"] == 7.0
        assert figures["sandbox_memory_peak_mb"] == 61.0
    finally:
        sampler.close()
        current.close()
        peak.close()


def test_none_means_no_sandbox_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASCOPE_SANDBOX_CGROUP", "none")
    sampler = _resources.Sampler()
    try:
        figures = sampler.end(sampler.start(), 128)
        assert figures["sandbox_memory_mb"] is None
        assert figures["sandbox_memory_peak_mb"] is None
        assert figures["rss_end_mb"] is not None  # the process's own figures are unchanged
    finally:
        sampler.close()


def test_unset_reads_the_cgroup_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDASCOPE_SANDBOX_CGROUP", raising=False)
    assert _resources._cgroup_candidates() == _resources._CGROUP_CANDIDATES
    monkeypatch.setenv("LAMBDASCOPE_SANDBOX_CGROUP", "/x/y")
    assert _resources._cgroup_candidates() == (("/x/y/memory.current", "/x/y/memory.peak"),)


def _report() -> dict[str, Any]:
    @monitor
    def handler(event: Any, context: Any) -> str:
        return "ok"

    with capture_reports() as reports:
        handler({}, fake_context())
    return reports[0]


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_receiver_stores_before_it_answers(tmp_path: pathlib.Path) -> None:
    with Store(tmp_path / "r.db") as store:
        receiver = ReportReceiver(store)
        try:
            first, second = _report(), _report()
            rid1 = first["invocation"]["request_id"]
            rid2 = second["invocation"]["request_id"]
            assert receiver.wait_for([rid1], 0.05) == {rid1}
            status, answer = _post(receiver.url + "/v1/reports", json.dumps(first).encode())
            assert (status, answer) == (200, {"stored": 1})
            gzipped = gzip.compress(json.dumps([second]).encode())
            status, _ = _post(receiver.url + "/v1/reports", gzipped,
                              {"Content-Encoding": "gzip"})
            assert status == 200
            assert receiver.wait_for([rid1, rid2], 0.05) == set()
            with store.reader() as conn:
                stored = {r for (r,) in conn.execute("SELECT request_id FROM invocations")}
            assert stored == {rid1, rid2}

            assert _post(receiver.url + "/v1/reports", b"{not json")[0] == 400
            assert _post(receiver.url + "/v1/reports", b'{"schema": "x"}')[0] == 400
            assert _post(receiver.url + "/v1/other", b"{}")[0] == 404
            assert _post(receiver.url + "/v1/reports", b"\x1f\x8b broken",
                         {"Content-Encoding": "gzip"})[0] == 400
            assert receiver.refused == 2  # the two bodies that got as far as the checks
        finally:
            receiver.close()


def test_without_the_collector_extra_bodies_are_checked_against_the_schema() -> None:
    report = _report()
    reports, raws = receiver_module._parse_plain(json.dumps(report).encode())
    assert reports == [report] and raws is not None
    reports, raws = receiver_module._parse_plain(json.dumps([report, report]).encode())
    assert len(reports) == 2 and raws is None
    broken = dict(report, invocation=dict(report["invocation"], status="fine"))
    with pytest.raises(receiver_module._Refused) as caught:
        receiver_module._parse_plain(json.dumps(broken).encode())
    assert caught.value.status == 400
    with pytest.raises(receiver_module._Refused) as caught:
        receiver_module._parse_plain(b"[1, 2")
    assert caught.value.status == 400 and "malformed JSON" in caught.value.message

"""Profiles and cold-start diagnostics in headless Chromium (issue 14): the invocation page's
flame graph and top-functions table, the function page's import tree and slowest imports.

A collector of this module's own (a ``lambdascope collector`` subprocess) gets two kinds of
reports: hand-made ones with a known profile (``compute_hash`` hot, a function named
``<script>alert(1)</script>``) and diagnostics (a module named ``<img src=x onerror=…>``),
posted over HTTP; and reports of the real agent, from a sandbox under the Runtime API emulator
(``awslambdaric``) whose handler module imports a deliberately slow module and spends its time
in one function, with ``LAMBDASCOPE_PROFILE_RATE=1``. Every page is watched: a console error or
warning, a CSP violation, a failed request or a dialog fails the test (``conftest.py``).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from collector_harness import Collector
from dashboard_harness import (
    IMG_DIR,
    UPDATE_SCREENSHOTS,
    Watch,
    quantity,
    read_table,
    sort_direction,
    wait_for,
)
from profile_reports import EVIL_FRAME, EVIL_MODULE, cold_report, rid, slowest

from lambdascope.cli import main
from lambdascope.runner.runtime_api import Sandbox

AGENT_FUNCTION = "profiled-app"
SLOW_IMPORT_S = 0.25
HOT_MS = 300

APP = f'''
import lambdascope
import slow_dependency
import time


def hot_spin(ms):
    end = time.perf_counter() + ms / 1000.0
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def pause(ms):
    time.sleep(ms / 1000.0)


@lambdascope.monitor
def handler(event, context):
    hot_spin({HOT_MS})
    pause(40)
    return {{"ok": True}}
'''
SLOW = f"import time\ntime.sleep({SLOW_IMPORT_S})\n"


@dataclass
class Posted:
    url: str
    cold: str       # hand-made: profile and diagnostics
    older: str      # hand-made: diagnostics only, an earlier sandbox
    agent: list[str]  # the real agent's request ids, in order (the first is the cold start)


def _post(url: str, reports: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{url}/v1/reports", json=reports, timeout=30.0)
    assert response.status_code == 202, response.text
    assert response.json()["stored"] == len(reports)


def _stored(url: str, function: str) -> set[str]:
    found = httpx.get(f"{url}/api/invocations", params={"function": function, "since": "0"},
                      timeout=10.0)
    found.raise_for_status()
    return {i["request_id"] for i in found.json()["invocations"]}


def _run_agent(url: str, workdir: pathlib.Path) -> list[str]:
    """Two invocations of a real sandbox, profiled; their reports posted by the agent (the
    sandbox is stopped once they are stored)."""
    task = workdir / "task"
    task.mkdir(parents=True)
    (task / "prof_views_app.py").write_text(textwrap.dedent(APP))
    (task / "slow_dependency.py").write_text(SLOW)
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAMBDASCOPE_")}
    env.update({
        "LAMBDASCOPE_EXPORTERS": "http",
        "LAMBDASCOPE_COLLECTOR_URL": url,
        "LAMBDASCOPE_PROFILE_RATE": "1",
        "LAMBDASCOPE_SPOOL_DIR": str(workdir / "spool"),
    })
    sandbox = Sandbox("prof_views_app.handler", task, env=env, function_name=AGENT_FUNCTION)
    sandbox.start()
    try:
        assert sandbox.wait_ready(30.0), sandbox.output
        ids = []
        for _ in range(2):
            result = sandbox.invoke({}, 10.0)
            assert result.ok, (result.status, result.payload, sandbox.output)
            ids.append(result.request_id)
        stored = wait_for(lambda: set(ids) <= _stored(url, AGENT_FUNCTION), 30.0, 0.2)
        assert stored, f"the agent's reports never reached the collector\n{sandbox.output}"
    finally:
        sandbox.stop()
    assert "lambdascope: internal error" not in sandbox.stdout + sandbox.stderr
    return ids


@pytest.fixture(scope="module")
def posted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posted]:
    directory = tmp_path_factory.mktemp("profile-dashboard")
    with Collector(directory / "reports.db") as running:
        now = time.time() * 1000.0
        cold = cold_report(now - 30 * 60_000, profile=True)
        older = cold_report(now - 50 * 60_000, slowest(("pandas", 380.0, True)))
        _post(running.url, [cold, older])
        agent = _run_agent(running.url, directory)
        yield Posted(running.url, rid(cold), rid(older), agent)
        assert running.alive(), running.stderr
    assert "Traceback" not in running.stderr, running.stderr


@pytest.fixture
def page(posted: Posted, open_page: Callable[[str], Watch]) -> Watch:
    return open_page(posted.url)


# Each frame's geometry and title; a leaf is a frame with none drawn over it (the root is at
# the bottom, callees one row up).
_FRAMES = """() => {
  const rects = [...document.querySelectorAll('svg.flame rect.frame')];
  const frames = rects.map(r => ({
    x: +r.getAttribute('x'), y: +r.getAttribute('y'), w: +r.getAttribute('width'),
    h: +r.getAttribute('height'), shown: r.getBoundingClientRect().width,
    kind: r.classList[1], title: (r.querySelector('title') || {}).textContent || ''}));
  for (const f of frames) {
    f.leaf = !frames.some(o => Math.abs(o.y - (f.y - f.h - 1)) < 0.01
                               && o.x < f.x + f.w && o.x + o.w > f.x);
  }
  return frames;
}"""


def frames_of(watch: Watch) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = watch.page.evaluate(_FRAMES)
    assert found, f"no flame graph on {watch.page.url}"
    return found


def widest_leaf(watch: Watch) -> dict[str, Any]:
    return max((f for f in frames_of(watch) if f["leaf"]), key=lambda f: f["w"])


_INJECTED = """() => ({
  scripts: [...document.scripts].filter(s => s.textContent.includes('alert(1)')).length,
  images: [...document.images].filter(i => i.getAttribute('src') === 'x').length,
  handlers: document.querySelectorAll('[onerror]').length,
})"""


def screenshot(watch: Watch, selector: str, name: str) -> None:
    """The section for docs/dashboard.md (replaced with LAMBDASCOPE_UPDATE_SCREENSHOTS=1, else
    written to a temporary directory, as the other browser tests do)."""
    folder = IMG_DIR if UPDATE_SCREENSHOTS else pathlib.Path(
        tempfile.gettempdir()) / "lambdascope-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    watch.page.locator(selector).first.screenshot(path=str(folder / f"{name}.png"),
                                                  animations="disabled")


class TestFlameGraph:
    def test_the_hot_frame_is_the_widest_leaf(self, page: Watch, posted: Posted) -> None:
        page.goto(f"/invocations/{posted.cold}")
        frames = frames_of(page)
        assert len(frames) == 6
        assert all(f["shown"] > 0 for f in frames)  # drawn, not just in the markup
        leaf = widest_leaf(page)
        assert leaf["title"].startswith("compute_hash (app.py)\n70 samples (58.3%), 700 ms")
        assert leaf["kind"] == "user"
        # the root row is the widest; callees above it, narrower
        bottom = max(frames, key=lambda f: f["y"])
        assert bottom["title"].startswith("handler (app.py)\n115 samples (95.8%)")
        assert {f["kind"] for f in frames} == {"user", "lib", "std", "other"}
        screenshot(page, "section.profile", "profile")

    def test_markup_in_a_frame_is_text(self, page: Watch, posted: Posted) -> None:
        page.goto(f"/invocations/{posted.cold}")
        titles = [f["title"] for f in frames_of(page)]
        assert any(t.startswith(f"{EVIL_FRAME} (app.py)\n15 samples") for t in titles)
        table = read_table(page.page, "profile")
        assert EVIL_FRAME in table.values(table.column("^function"))
        labels = page.page.eval_on_selector_all("svg.flame text", "ts => ts.map(t => "
                                                "t.textContent)")
        assert any(label.startswith("<script>") for label in labels)
        assert page.page.evaluate(_INJECTED) == {"scripts": 0, "images": 0, "handlers": 0}
        assert page.dialogs == []

    def test_the_top_functions_table(self, page: Watch, posted: Posted) -> None:
        page.goto(f"/invocations/{posted.cold}")
        table = read_table(page.page, "profile")
        function, code, self_ms = (table.column("^function"), table.column("^code"),
                                   table.column("self time"))
        assert table.rows[0][function] == "compute_hash"
        assert table.rows[0][code] == "your code" and table.rows[0][self_ms] == "700 ms"
        assert "library botocore" in table.values(code)
        total = table.column("^total time")
        page.page.locator('table[data-table="profile"] th', has_text="Total time").click()
        assert sort_direction([read_table(page.page, "profile").values(total)]) == "desc"


class TestImportTree:
    def test_on_the_function_page(self, page: Watch, posted: Posted) -> None:
        page.goto("/functions/orders")
        tree = page.page.locator("section.cold-starts div.imports")
        assert tree.count() == 1
        unused = page.page.eval_on_selector_all(
            "section.cold-starts div.imports li.unused",
            "ls => ls.map(l => [l.dataset.module, l.querySelector('.badge').textContent])")
        assert unused == [["pandas", "unused"], ["numpy", "unused"]]
        # numpy is drawn inside pandas' list item: the tree, not a flat list
        parent = page.page.eval_on_selector(
            'section.cold-starts li[data-module="numpy"]',
            "l => l.parentElement.closest('li').dataset.module")
        assert parent == "pandas"
        names = page.page.eval_on_selector_all(
            "section.cold-starts div.imports li[data-module] > .mod",
            "ms => ms.map(m => m.textContent)")
        assert EVIL_MODULE in names
        table = read_table(page.page, "imports")
        row = table.row_with("pandas")
        assert row[table.column("sandboxes")] == "2 (100%)"
        assert row[table.column("unused")] == "50%"
        assert page.page.evaluate(_INJECTED) == {"scripts": 0, "images": 0, "handlers": 0}
        screenshot(page, "section.cold-starts", "cold-starts")


class TestTheRealAgent:
    """The agent's own profile and diagnostics, end to end."""

    def test_the_hot_function_and_the_slow_import(self, page: Watch, posted: Posted,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
        first, second = posted.agent
        for request_id in (first, second):
            page.goto(f"/invocations/{request_id}")
            leaf = widest_leaf(page)
            assert leaf["title"].startswith("hot_spin (prof_views_app.py)"), leaf
            share = float(leaf["title"].split("(")[2].split("%")[0]) / 100.0
            assert share > 0.5, leaf["title"]
            assert read_table(page.page, "profile").rows[0][0] == "hot_spin"
        page.goto(f"/functions/{AGENT_FUNCTION}")
        table = read_table(page.page, "imports")
        assert table.rows[0][0] == "slow_dependency"
        median = table.rows[0][table.column("median")]
        assert float(median.split()[0]) >= SLOW_IMPORT_S * 1000 * 0.95, median
        tree = dict(page.page.eval_on_selector_all(
            "section.cold-starts div.imports li[data-module]",
            "ls => ls.map(l => [l.dataset.module, [l.querySelector('.ms').textContent,"
            " (l.parentElement.closest('li') || {dataset: {}}).dataset.module || null]])"))
        slow_ms, parent = tree["slow_dependency"]
        assert parent == "prof_views_app"  # imported by the handler's module
        assert quantity(slow_ms) is not None
        assert quantity(slow_ms) >= SLOW_IMPORT_S * 1000 * 0.95, slow_ms
        # and in the terminal, from the same collector
        assert main(["show", first, "--url", posted.url]) == 0
        out = capsys.readouterr().out
        functions = out[out.index("top functions"):].splitlines()
        assert functions[2].split()[0] == "hot_spin"
        assert "slow_dependency" in out[out.index("import tree"):]

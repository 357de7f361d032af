"""Fixtures of the dashboard's browser tests.

One collector per session (a real ``python -m lambdascope.collector.server`` subprocess on
loopback, with alert rules whose webhook is a local receiver), filled by the real agent in four
sandboxes (:func:`dashboard_harness.fill`); a second collector with a token for the login
tests; Debian's Chromium driven by Playwright (the system browser: no download). Each test gets
a fresh browser context and a :class:`dashboard_harness.Watch` that fails the test on any
console error or warning (CSP violations included), page error, failed request or dialog.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

HERE = pathlib.Path(__file__).resolve().parent
for extra in (HERE, HERE.parent / "collector", HERE.parent / "instrumentation"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from collector_harness import Collector  # noqa: E402
from dashboard_harness import (  # noqa: E402
    ALERT_RULE,
    CHROMIUM_ARGS,
    TOKEN,
    VIEWPORT,
    Fill,
    Peer,
    Watch,
    chromium_path,
    fill,
)
from moto_server import MotoServer  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # One browser per test module, not per session: while Playwright's sync API is started, its
    # event loop counts as running in the main thread, and the rest of the suite's asyncio
    # tests (asyncio.run) would fail after the dashboard's.
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dev dependency
        pytest.fail("the dashboard's browser tests need playwright (pip install -e '.[dev]')",
                    pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory, peer: Peer) -> Iterator[Collector]:
    """The filled collector, with one alert rule that the fill's errors break."""
    directory = tmp_path_factory.mktemp("dashboard")
    rules = directory / "rules.toml"
    rules.write_text(
        'interval = "1s"\n'
        f'webhook = "{peer.url}/webhook"\n\n'
        "[[rules]]\n"
        f'name = "{ALERT_RULE}"\n'
        'function = "shop-orders"\n'
        'metric = "error_rate"\n'
        "threshold = 0.05\n"
        'window = "1h"\n'
    )
    with Collector(directory / "reports.db", "--alerts", str(rules)) as running:
        yield running
        assert running.alive(), running.stderr
    assert "Traceback" not in running.stderr, running.stderr


@pytest.fixture(scope="session")
def filled(collector: Collector, peer: Peer, tmp_path_factory: pytest.TempPathFactory) -> Fill:
    with MotoServer() as moto:
        return fill(collector.url, moto, peer, tmp_path_factory.mktemp("sandboxes"))


@pytest.fixture(scope="session")
def token_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("token") / "reports.db", token=TOKEN) as running:
        yield running
    assert "Traceback" not in running.stderr, running.stderr


WATCHES = pytest.StashKey[list[Watch]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """After the test body: a problem any of its pages reported fails the test (when the body
    itself failed, the problems are printed beside its failure)."""
    watches = item.stash.get(WATCHES, [])
    try:
        result = yield
    except BaseException:
        for watch in watches:
            for line in watch.unexpected() + watch.dialogs:
                print(f"page problem: {line}", file=sys.stderr)
        raise
    for watch in watches:
        watch.check()
    return result


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest
              ) -> Iterator[Callable[[str], Watch]]:
    """Factory: ``open_page(base_url)`` gives a watched page in a fresh context (its own
    cookies); what every page opened reported is checked when the test body ends."""
    contexts: list[Any] = []
    watches = request.node.stash.setdefault(WATCHES, [])

    def make(base_url: str) -> Watch:
        context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        watch = Watch(context.new_page(), base_url)
        watches.append(watch)
        return watch

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def dash(filled: Fill, collector: Collector, open_page: Callable[[str], Watch]) -> Watch:
    """A watched page on the filled collector."""
    return open_page(collector.url)

"""What the dashboard's browser tests share.

* :func:`fill` fills a collector the way production does: real sandboxes (``awslambdaric``
  under the Runtime API emulator, :mod:`lambdascope.runner.runtime_api`) run the handlers of
  ``tests/dashboard/handlers`` with the real agent, whose ``http`` exporter posts to the
  collector. The functions call a local HTTP server (:class:`Peer`) and moto on loopback (SQS,
  S3); ``shop-orders``' messages are handed to ``shop-payments`` as Lambda's SQS poller would,
  so their invocations share a trace. :class:`Fill` says what was sent.
* :class:`Watch` wraps a Playwright page: it records console errors and warnings, uncaught
  page errors, failed requests, error responses and dialogs, and :meth:`Watch.check` fails the
  test on any that the test did not declare.
* :func:`read_table`, :func:`set_field`, :func:`number`: reading the pages' DOM contract.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from lambdascope.runner.runtime_api import InvocationResult, Sandbox

if TYPE_CHECKING:  # playwright is imported by the browser fixture, which says when it is missing
    from moto_server import MotoServer
    from playwright.sync_api import ConsoleMessage, Dialog, Page, Request, Response

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HANDLERS = HERE / "handlers"
IMG_DIR = ROOT / "docs" / "img"
#: The screenshots replace docs/img/*.png only when this is set (``=1``); otherwise they are
#: still taken (the code path is tested) but written to a temporary directory, so a test run
#: leaves the working tree clean.
UPDATE_SCREENSHOTS = os.environ.get("LAMBDASCOPE_UPDATE_SCREENSHOTS") == "1"

#: The system browser (Debian's ``chromium`` package); ``LAMBDASCOPE_TEST_CHROMIUM`` overrides.
CHROMIUM_DEFAULT = "/usr/bin/chromium"
#: Without these, Chromium tries background connections the closed test network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}

REGION = "eu-west-1"
ACCOUNT = "123456789012"
QUEUE = "orders-queue"
RECEIPTS_BUCKET = "receipts"
MAIL_BUCKET = "mail-archive"
SCRIPT_LABEL = "note=<script>alert(1)</script>"
SCRIPT_TEXT = "<script>alert(1)</script>"
IMG_TEXT = "<img src=x onerror=alert(1)>"
#: What error groups show of it: the message's shape (its numbers are masked).
IMG_SHAPE = "<img src=x onerror=alert("
SLOW_S = 0.6  # one shop-orders invocation sleeps this long (the slower_than filter finds it)
ALERT_RULE = "shop-orders errors"
TOKEN = "dashboard-t0ken-for-tests"  # the login tests' collector

SERVICES = {"shop-orders": "shop", "shop-payments": "shop", "mail-notify": "mail"}
MEMORY_MB = {"shop-orders": 256, "shop-payments": 512, "mail-notify": 128}
HANDLER_OF = {"shop-orders": "shop_orders.handler", "shop-payments": "shop_payments.handler",
              "mail-notify": "mail_notify.handler"}
INTERNAL_ERROR = "lambdascope: internal error"  # what the agent logs when it swallows an error


def chromium_path() -> str:
    """The system Chromium, or a failure saying how to install it (never a skip: a browser
    test that does not run must not pass)."""
    wanted = os.environ.get("LAMBDASCOPE_TEST_CHROMIUM") or CHROMIUM_DEFAULT
    found = wanted if os.access(wanted, os.X_OK) else shutil.which("chromium")
    if not found:
        pytest.fail(
            f"the dashboard's browser tests need Debian's Chromium at {wanted} "
            "(apt-get install chromium; .ci/run installs it) or LAMBDASCOPE_TEST_CHROMIUM "
            "naming a Chromium binary; Playwright's own browser downloads are not used",
            pytrace=False,
        )
    return found


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, every_s: float = 0.1) -> Any:
    """``predicate()``'s first truthy value within ``timeout_s`` (its last value otherwise)."""
    give_up = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > give_up:
            return value
        time.sleep(every_s)


# -- the peers -----------------------------------------------------------------------------------
class Peer(ThreadingHTTPServer):
    """A loopback HTTP server: ``GET`` answers 200 (the functions' HTTP dependency), ``POST``
    bodies are kept as JSON (the alert webhook)."""

    daemon_threads = True

    def __init__(self) -> None:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                with peer.lock:
                    peer.gets.append(self.path)
                self._answer(200, b"ok")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    posted = json.loads(body)
                except ValueError:
                    posted = {"unparsed": body.decode("utf-8", "replace")}
                with peer.lock:
                    peer.posts.append(posted)
                self._answer(200, b"{}")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.gets: list[str] = []
        self.posts: list[Any] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.host = "127.0.0.1"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


# -- filling a collector ---------------------------------------------------------------------------
@dataclass
class Invoked:
    """One invocation the fill made, as the test knows it."""

    request_id: str
    function: str
    version: str
    cold: bool
    status: str  # ok | error
    labels: tuple[str, ...] = ()


@dataclass
class Fill:
    """What :func:`fill` sent to the collector."""

    invocations: list[Invoked] = field(default_factory=list)
    #: (shop-orders request id, shop-payments request id) of each order passed on over SQS.
    trace_pairs: list[tuple[str, str]] = field(default_factory=list)
    xss_request_id: str = ""
    slow_request_id: str = ""
    #: The failed invocation whose order was still sent on (an error bar and a trace).
    failed_traced_request_id: str = ""
    #: Log lines per (function, level), as the handlers emit them.
    log_lines: dict[tuple[str, str], int] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, function: str | None = None, **match: Any) -> int:
        return len(self.select(function, **match))

    def select(self, function: str | None = None, *, cold: bool | None = None,
               status: str | None = None, label: str | None = None,
               version: str | None = None) -> list[Invoked]:
        """The invocations made with every one of these (``None``: any)."""
        return [i for i in self.invocations
                if (function is None or i.function == function)
                and (cold is None or i.cold == cold)
                and (status is None or i.status == status)
                and (label is None or label in i.labels)
                and (version is None or i.version == version)]

    @property
    def functions(self) -> list[str]:
        return sorted({i.function for i in self.invocations})

    def by_id(self, request_id: str) -> Invoked:
        (found,) = [i for i in self.invocations if i.request_id == request_id]
        return found


class _Function:
    """One sandbox of one function and what it was sent."""

    def __init__(self, name: str, version: str, sandbox: Sandbox) -> None:
        self.name = name
        self.version = version
        self.sandbox = sandbox
        self.calls = 0

    def invoke(self, fill: Fill, event: dict[str, Any], labels: Iterable[str] = ()
               ) -> InvocationResult:
        result = self.sandbox.invoke(event, 10.0)
        if result.status not in ("ok", "error"):
            raise AssertionError(f"{self.name}: {result.status} {result.payload!r}\n"
                                 f"{self.sandbox.output}")
        fill.invocations.append(Invoked(result.request_id, self.name, self.version,
                                        self.calls == 0, result.status, tuple(labels)))
        self.calls += 1
        return result


def _sqs_event(message: dict[str, Any]) -> dict[str, Any]:
    """The event Lambda's SQS poller hands the consumer for one received message."""
    attributes = {
        name: {"stringValue": value.get("StringValue"), "stringListValues": [],
               "binaryListValues": [], "dataType": value["DataType"]}
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    return {"Records": [{
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}",
        "awsRegion": REGION,
    }]}


def stored_request_ids(collector_url: str) -> set[str]:
    response = httpx.get(f"{collector_url}/api/invocations",
                         params={"since": "0", "limit": 1000}, timeout=10.0)
    response.raise_for_status()
    return {i["request_id"] for i in response.json()["invocations"]}


def fill(collector_url: str, moto: MotoServer, peer: Peer, workdir: pathlib.Path) -> Fill:
    """Run the three functions in four sandboxes and wait until every report is stored.

    * ``shop-orders``: version 1 in one sandbox (7 invocations), version 2 in another (6); each
      labels ``tier=gold|free`` and GETs the peer; 3 send their order to the SQS queue, 2 fail
      in ``charge-card`` (one of them after sending), one carries the ``<script>`` label and an
      ``<img>`` log line, one sleeps :data:`SLOW_S`.
    * ``shop-payments``: one sandbox, one invocation per queued order (S3 ``PutObject``).
    * ``mail-notify``: one sandbox, 4 invocations (HTTP to the peer, S3 ``PutObject``).
    """
    began = time.monotonic()
    sqs = moto.client("sqs", region_name=REGION)
    s3 = moto.client("s3", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    for bucket in (RECEIPTS_BUCKET, MAIL_BUCKET):
        s3.create_bucket(Bucket=bucket,
                         CreateBucketConfiguration={"LocationConstraint": REGION})

    plan = [("shop-orders", "1"), ("shop-orders", "2"), ("shop-payments", "1"),
            ("mail-notify", "1")]
    functions: list[_Function] = []
    try:
        for index, (name, version) in enumerate(plan):
            env: dict[str, str | None] = {k: None for k in os.environ
                                          if k.startswith("LAMBDASCOPE_")}
            env.update({
                "LAMBDASCOPE_EXPORTERS": "http",
                "LAMBDASCOPE_COLLECTOR_URL": collector_url,
                "LAMBDASCOPE_SERVICE": SERVICES[name],
                "LAMBDASCOPE_SPOOL_DIR": str(workdir / f"spool-{index}"),
                "AWS_ENDPOINT_URL": moto.endpoint,
                "AWS_ACCESS_KEY_ID": "AKIADASHBOARDTESTKEY",
                "AWS_SECRET_ACCESS_KEY": "dashboard-fake-secret-access-key",
                "AWS_SESSION_TOKEN": None,
                "AWS_PROFILE": None,
                "OTEL_PROPAGATORS": None,
                "RECEIPTS_BUCKET": RECEIPTS_BUCKET,
                "MAIL_BUCKET": MAIL_BUCKET,
            })
            sandbox = Sandbox(HANDLER_OF[name], HANDLERS, env=env, function_name=name,
                              function_version=version, memory_mb=MEMORY_MB[name],
                              region=REGION, account_id=ACCOUNT)
            functions.append(_Function(name, version, sandbox))
            sandbox.start()
        for fn in functions:
            if not fn.sandbox.wait_ready(30.0):
                raise AssertionError(f"{fn.name} did not finish its init\n{fn.sandbox.output}")
        result = _invoke_all(functions, sqs, queue_url, peer)
        expected = {i.request_id for i in result.invocations}
        stored = wait_for(lambda: expected <= stored_request_ids(collector_url), 30.0, 0.2)
        if not stored:
            missing = expected - stored_request_ids(collector_url)
            raise AssertionError(f"{len(missing)} reports never reached the collector")
    finally:
        for fn in functions:
            fn.sandbox.stop()
    for fn in functions:
        output = fn.sandbox.stdout + fn.sandbox.stderr
        if INTERNAL_ERROR in output:
            raise AssertionError(f"the agent failed inside {fn.name}:\n{output}")
    result.seconds = time.monotonic() - began
    return result


def _invoke_all(functions: list[_Function], sqs: Any, queue_url: str, peer: Peer) -> Fill:
    orders_v1, orders_v2, payments, notify = functions
    out = Fill()
    inventory = f"{peer.url}/inventory"
    queued: list[str] = []

    def order(fn: _Function, i: int, **extra: Any) -> str:
        tier = "gold" if i % 3 == 0 else "free"
        event = {"inventory_url": f"{inventory}?item={i}", "tier": tier, **extra}
        if extra.get("queue"):
            event["queue_url"] = queue_url
        labels = ["tier=" + tier] + ([SCRIPT_LABEL] if extra.get("xss") else [])
        rid = fn.invoke(out, event, labels).request_id
        if extra.get("queue"):
            queued.append(rid)
        return rid

    for i in range(7):
        if i == 2:
            out.failed_traced_request_id = order(orders_v1, i, fail=True, queue=True)
        elif i == 4:
            out.xss_request_id = order(orders_v1, i, xss=True)
        elif i == 5:
            out.slow_request_id = order(orders_v1, i, sleep_s=SLOW_S)
        else:
            order(orders_v1, i, queue=i == 1)
    for i in range(6):
        order(orders_v2, i, fail=i == 1, queue=i == 3)

    # Lambda's SQS poller: each queued order becomes one shop-payments invocation.
    messages: list[dict[str, Any]] = []
    give_up = time.monotonic() + 10.0
    while len(messages) < len(queued) and time.monotonic() < give_up:
        messages += sqs.receive_message(
            QueueUrl=queue_url, MessageAttributeNames=["All"], AttributeNames=["All"],
            MaxNumberOfMessages=10, WaitTimeSeconds=0,
        ).get("Messages", [])
    if len(messages) != len(queued):
        raise AssertionError(f"{len(queued)} orders queued, {len(messages)} received")
    for message in sorted(messages, key=lambda m: queued.index(
            json.loads(m["Body"])["order_request_id"])):
        rid = payments.invoke(out, _sqs_event(message)).request_id
        out.trace_pairs.append((json.loads(message["Body"])["order_request_id"], rid))

    for i in range(4):
        channel = "sms" if i == 3 else "email"
        notify.invoke(out, {"notify_url": f"{peer.url}/notify?n={i}", "channel": channel},
                      ["channel=" + channel])

    orders = out.count("shop-orders")
    failed = out.count("shop-orders", status="error")
    out.log_lines = {
        ("shop-orders", "INFO"): orders,      # "order … in stock"
        ("shop-orders", "WARNING"): 1,        # the customer note (markup)
        ("shop-orders", "ERROR"): failed,     # "payment refused …"
        ("shop-payments", "INFO"): out.count("shop-payments"),
        ("mail-notify", "WARNING"): out.count("mail-notify"),
    }
    return out


# -- the browser -----------------------------------------------------------------------------------
class Watch:
    """A page and everything that went wrong on it.

    ``allow(regex)`` declares an expected problem (say, the ``401`` of a refused login); any
    other console error or warning, page error, failed request, 4xx/5xx response or dialog
    fails the test in :meth:`check`.
    """

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self._allowed: list[re.Pattern[str]] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)
        page.on("dialog", self._on_dialog)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning", "assert"):
            where = msg.location or {}
            self.problems.append(
                f"console {msg.type}: {msg.text} ({where.get('url', '')}:"
                f"{where.get('lineNumber', '')})")

    def _on_request_failed(self, request: Request) -> None:
        # ERR_ABORTED: the test navigated on before a request (the favicon, say) was done;
        # a request the page itself could not make shows as a console error too.
        if "net::ERR_ABORTED" not in (request.failure or ""):
            self.problems.append(f"request failed: {request.method} {request.url}: "
                                 f"{request.failure}")

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"response {response.status}: {response.request.method} "
                                 f"{response.url}")

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def allow(self, pattern: str) -> None:
        self._allowed.append(re.compile(pattern))

    def allow_status(self, status: int, method: str = "GET", path: str = "") -> None:
        """Expect a ``status`` answer to ``method`` on a URL holding ``path``: its response
        and the console error Chromium logs for it."""
        where = re.escape(path)
        self.allow(rf"^response {status}: {method} \S*{where}")
        self.allow(rf"^console error: Failed to load resource: the server responded with a "
                   rf"status of {status} .*{where}")

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self._allowed)]

    def check(self) -> None:
        if self.dialogs:
            pytest.fail(f"a dialog opened (markup ran as script?): {self.dialogs}",
                        pytrace=False)
        bad = self.unexpected()
        if bad:
            pytest.fail("the page reported problems:\n  " + "\n  ".join(bad), pytrace=False)

    def goto(self, path: str, status: int | None = 200) -> Response:
        """Open ``path`` (relative to the collector) and wait for it to load; the response of
        the final document (after redirects), checked against ``status``."""
        response = self.page.goto(self.url(path), wait_until="load")
        assert response is not None, f"no response for {path}"
        if status is not None:
            assert response.status == status, (
                f"GET {path}: {response.status}\n{self.page.content()[:2000]}")
        return response

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def path(self) -> str:
        """The current URL without the origin."""
        parts = urlsplit(self.page.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def screenshot(self, name: str) -> pathlib.Path:
        """A full-page PNG for ``docs/dashboard.md`` (see :data:`UPDATE_SCREENSHOTS`)."""
        folder = IMG_DIR if UPDATE_SCREENSHOTS else pathlib.Path(
            tempfile.gettempdir()) / "lambdascope-screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path


@dataclass
class Table:
    """A ``table.data`` read from the DOM: header cells and body rows."""

    name: str
    heads: list[str]
    sorts: list[str | None]
    rows: list[list[str]]
    links: list[str | None]
    #: For each row, the index of the ``tbody`` it is in (a group, such as a service).
    groups: list[int]

    def column(self, *patterns: str) -> int:
        """The index of the first header matching any of ``patterns`` (case-insensitive)."""
        for pattern in patterns:
            for index, head in enumerate(self.heads):
                if re.search(pattern, head, re.IGNORECASE):
                    return index
        raise AssertionError(f"table {self.name}: no column like {patterns} in {self.heads}")

    def values(self, column: int) -> list[str]:
        return [row[column] if column < len(row) else "" for row in self.rows]

    def grouped_values(self, column: int) -> list[list[str]]:
        """The column's cells per group (``tbody``), in document order."""
        out: dict[int, list[str]] = {}
        for group, value in zip(self.groups, self.values(column)):
            out.setdefault(group, []).append(value)
        return list(out.values())

    def row_with(self, *texts: str) -> list[str]:
        """The only row whose cells hold all of ``texts``."""
        found = [row for row in self.rows if all(any(t in cell for cell in row) for t in texts)]
        assert len(found) == 1, f"table {self.name}: {len(found)} rows with {texts}: {self.rows}"
        return found[0]

    def __len__(self) -> int:
        return len(self.rows)


_READ_TABLE = """name => {
  const tables = [...document.querySelectorAll(`table.data[data-table="${name}"]`)];
  if (!tables.length) return null;
  const first = tables[0];
  const headRow = first.tHead ? first.tHead.rows[0] : first.querySelector('tr');
  const heads = headRow ? [...headRow.cells] : [];
  const bodies = tables.flatMap(t => [...t.tBodies]);
  const bodyRows = tables.flatMap(
    t => [...t.querySelectorAll('tbody tr')].filter(tr => tr.querySelector('td')));
  return {
    heads: heads.map(c => c.innerText.trim()),
    sorts: heads.map(c => c.dataset.sort ?? null),
    rows: bodyRows.map(tr => [...tr.cells].map(c => c.innerText.trim())),
    links: bodyRows.map(tr => {
      const a = tr.cells[0] && tr.cells[0].querySelector('a[href]');
      return a ? a.getAttribute('href') : null;
    }),
    groups: bodyRows.map(tr => bodies.indexOf(tr.parentElement)),
  };
}"""


def read_table(page: Page, name: str) -> Table:
    """Every ``table.data[data-table=name]`` of the page (one per group, say) as one table:
    the first one's headers, all their body rows in document order."""
    data = page.evaluate(_READ_TABLE, name)
    assert data is not None, f'no <table class="data" data-table="{name}"> on {page.url}'
    return Table(name, data["heads"], data["sorts"], data["rows"], data["links"],
                 data["groups"])


_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_QUANTITY = re.compile(
    r"([-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+)\s*(µs|us|ms|min|s|h|kb|mb|gb|%)?(?![a-z])",
    re.IGNORECASE)
_SCALE = {"µs": 0.001, "us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0,
          "kb": 1 / 1024, "mb": 1.0, "gb": 1024.0, "%": 0.01}


def number(text: str) -> float:
    """The first number in ``text`` (``1,234`` is 1234)."""
    found = _NUMBER.search(text)
    assert found, f"no number in {text!r}"
    return float(found.group().replace(",", ""))


def quantity(text: str) -> float | None:
    """The first number in ``text`` in a common unit (durations in ms, sizes in MB, ``%`` as a
    fraction); ``None`` when there is none (an empty cell, a dash)."""
    found = _QUANTITY.search(text)
    if not found:
        return None
    value = float(found.group(1).replace(",", ""))
    return value * _SCALE.get((found.group(2) or "").lower(), 1.0)


def fraction(text: str, total: int) -> float:
    """A rate cell as a fraction of ``total``: ``15.4%``, ``0.154`` or a count such as ``2``."""
    value = number(text)
    if "%" in text:
        return value / 100.0
    if value > 1.0 or (value == 1.0 and "." not in text and total > 1):
        return value / total
    return value


def _order_keys(values: list[str]) -> list[Any]:
    cells = [v for v in values if v.strip() not in ("", "-", "\u2014", "\u2013")]
    numbers = [quantity(v) for v in cells]
    if all(n is not None for n in numbers):
        return numbers
    return [v.lower() for v in cells]


def sort_direction(groups: list[list[str]]) -> str:
    """``asc`` or ``desc``: the order the cells of every group are in (by number, with units,
    when every non-empty cell has one; else by text); fails when it is neither, or when no
    group has two different values to tell."""
    seen = set()
    for values in groups:
        keys = _order_keys(values)
        if len(set(keys)) < 2:
            continue
        if keys == sorted(keys):
            seen.add("asc")
        elif keys == sorted(keys, reverse=True):
            seen.add("desc")
        else:
            raise AssertionError(f"not sorted: {values}")
    if len(seen) != 1:
        raise AssertionError(f"cannot tell one order from {groups}")
    return seen.pop()


def set_field(page: Page, form: str, name: str, value: str) -> None:
    """Set the filter ``name`` of ``form`` to ``value``: a select's option whose value or label
    matches (case-insensitively), else the input's text."""
    locator = page.locator(f'{form} [name="{name}"]')
    assert locator.count() == 1, f'{locator.count()} fields named "{name}" in {form}'
    tag = locator.evaluate("e => e.tagName.toLowerCase()")
    if tag == "select":
        options = locator.evaluate(
            "e => [...e.options].map(o => ({value: o.value, label: o.label}))")
        for option in options:
            if value.lower() in (option["value"].lower(), option["label"].strip().lower()):
                locator.select_option(value=option["value"])
                return
        raise AssertionError(f'select "{name}" has no option {value!r}: {options}')
    locator.fill(value)


def submit_filters(watch: Watch, fields: dict[str, str]) -> None:
    """Fill ``form.filters`` and press its submit button, waiting for the page it loads."""
    page = watch.page
    form = "form.filters"
    assert page.locator(form).count() >= 1, f"no {form} on {page.url}"
    assert (page.locator(form).first.get_attribute("method") or "get").lower() == "get"
    for name, value in fields.items():
        set_field(page, form, name, value)
    with page.expect_navigation(wait_until="load") as navigation:
        page.locator(f"{form} button[type=submit]").first.click()
    response = navigation.value
    assert response is not None and response.status == 200, (
        f"submitting {fields}: {response and response.status}")


def svg_shapes(page: Page, selector: str) -> list[int]:
    """For each element matching ``selector``, how many ``path``/``rect`` shapes it holds."""
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.querySelectorAll('path, rect').length)")


# -- the Content-Security-Policy -----------------------------------------------------------------
def csp_directives(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = [w.lower() for w in words[1:]]
    return out


def csp_problems(header: str | None) -> list[str]:
    """Why ``header`` is not a strict policy (empty when it is): scripts only from the
    collector itself (or none), no inline or eval'd script, no plugins, no framing."""
    if not header:
        return ["no Content-Security-Policy header"]
    rules = csp_directives(header)
    problems = []
    if "default-src" not in rules:
        problems.append("no default-src")
    scripts = rules.get("script-src", rules.get("default-src", ["*"]))
    for source in scripts:
        if source in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:",
                      "blob:") or source.startswith(("http://", "https://")):
            problems.append(f"script-src allows {source}")
    if rules.get("object-src", rules.get("default-src")) != ["'none'"]:
        problems.append("object-src is not 'none'")
    if "frame-ancestors" not in rules:
        problems.append("no frame-ancestors")
    return problems


def iter_nav_links(page: Page) -> Iterator[str]:
    yield from page.eval_on_selector_all("nav a[href]", "as => as.map(a => a.getAttribute('href'))")

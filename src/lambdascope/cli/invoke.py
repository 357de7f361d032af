"""``lambdascope invoke FILE_OR_MODULE:FUNC``: run a handler the way Lambda does (the local
runner, :mod:`lambdascope.runner.invoke`), then show what it ran: one line per invocation, the
``stats`` of the function over the run, and how to open the dashboard.

Only the standard library at import (``lambdascope --help`` imports this module to declare the
arguments); the runner is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import Any, TextIO

from ._common import (
    CLIError,
    clip,
    die,
    fmt_mb,
    fmt_ms,
    out,
    print_json,
    table,
)

INIT_TYPES = ("on-demand", "provisioned-concurrency", "snap-start", "lambda-managed-instances")
#: Invocations listed one per line; the rest are counted (``--json`` has them all).
MAX_ROWS = 50
DASHBOARD_URL = "http://127.0.0.1:8585"


def add_arguments(commands: Any) -> argparse.ArgumentParser:
    """Declare ``invoke`` on the ``lambdascope`` sub-command set."""
    p: argparse.ArgumentParser = commands.add_parser(
        "invoke", help="run a handler locally the way Lambda does, with its reports",
        description="Run a handler under the real AWS runtime interface client (awslambdaric), "
                    "one process per sandbox, with Lambda's rules: the first invocation of a "
                    "sandbox is cold and later ones warm, the sandbox is frozen between "
                    "invocations, the timeout and the memory size are enforced by killing the "
                    "sandbox. Reports go to the embedded store (or to LAMBDASCOPE_COLLECTOR_URL "
                    "when it is set); the command ends with a line per invocation, the stats of "
                    "the run and the command that opens the dashboard. See docs/runner.md.",
    )
    p.add_argument("target", metavar="FILE_OR_MODULE:FUNC",
                   help="the handler: path/to/app.py:handler (run from the file's directory) or "
                        "package.module:handler (run from the current directory)")
    p.add_argument("--event", "-e", metavar="F|NAME|-", default=None,
                   help="the event: a JSON file, - for standard input, the name of a bundled "
                        "sample (lambdascope events lists them), or the JSON itself "
                        "('{\"id\": 1}'); default {}")
    p.add_argument("--times", "-n", metavar="N", type=int, default=1,
                   help="how many invocations in all, over every sandbox (default 1)")
    p.add_argument("--containers", "-k", metavar="K", type=int, default=None,
                   help="how many sandboxes share the invocations (default: --concurrency)")
    p.add_argument("--concurrency", "-c", metavar="C", type=int, default=1,
                   help="how many invocations run at once (default 1)")
    p.add_argument("--timeout", metavar="S", type=float, default=3.0,
                   help="the function's timeout in seconds, enforced (default 3, as Lambda)")
    p.add_argument("--memory", metavar="MB", type=int, default=128,
                   help="the function's memory size in MB, enforced (default 128)")
    p.add_argument("--interval", metavar="S", type=float, default=0.0,
                   help="seconds to pause between invocations (default 0)")
    p.add_argument("--init-type", metavar="T", choices=INIT_TYPES, default=None,
                   help=f"how sandboxes start: {', '.join(INIT_TYPES)} (default on-demand)")
    p.add_argument("--snapstart", action="store_true",
                   help="SnapStart: init up to the snapshot ahead, restore on the first "
                        "invocation (same as --init-type snap-start)")
    p.add_argument("--function-name", metavar="NAME", default=None,
                   help="the function's name in the reports (default: the module's name, plus "
                        "the function's unless it is handler or lambda_handler)")
    p.add_argument("--env", metavar="KEY=VALUE", action="append", default=[],
                   help="an environment variable for the function (repeatable)")
    p.add_argument("--db", metavar="FILE", default=None,
                   help="the store the reports go to (default .lambdascope/reports.db; ignores "
                        "LAMBDASCOPE_COLLECTOR_URL)")
    p.add_argument("--logs", action="store_true",
                   help="show what the sandboxes print, on stderr")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true",
                   help="print the run as JSON (invocations, counts, stats)")
    return p


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            die(f"--env {pair!r}: expected KEY=VALUE with a variable name as KEY")
        env[key] = value
    return env


class Progress:
    """A bar on a terminal, a plain line every so many invocations otherwise."""

    WIDTH = 24

    def __init__(self, stream: TextIO, total: int, enabled: bool) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.every = max(1, total // 10)
        self.started = time.monotonic()
        self.failed = 0
        self.shown = False

    def update(self, done: int, total: int, record: Any) -> None:
        if record.status != "ok":
            self.failed += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        failed = f" · {self.failed} failed" if self.failed else ""
        if self.tty:
            filled = int(self.WIDTH * done / max(1, total))
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r  [{bar}] {done}/{total} invocations{failed} · "
                              f"{elapsed:.1f} s ")
            self.shown = True
        elif done % self.every == 0 or done == total:
            self.stream.write(f"lambdascope invoke: {done}/{total} invocations done{failed} "
                              f"({elapsed:.1f} s)\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line (before other output on the terminal, and at the end)."""
        if self.enabled and self.tty and self.shown:
            self.shown = False
            self.stream.write("\n")
            self.stream.flush()


def run(args: Any) -> int:
    import importlib.util

    from ..runner.invoke import InvokeOptions, Runner
    from ..runner.samples import EventError, read_event
    from ..runner.target import TargetError, resolve

    try:
        ref = resolve(args.target)
    except TargetError as exc:
        die(str(exc))
    init_type = args.init_type or ("snap-start" if args.snapstart else "on-demand")
    if args.snapstart and init_type != "snap-start":
        die(f"--snapstart and --init-type {init_type} contradict each other")
    options = InvokeOptions(
        times=args.times, containers=args.containers, concurrency=args.concurrency,
        timeout_s=args.timeout, memory_mb=args.memory, interval_s=args.interval,
        init_type=init_type, function_name=args.function_name, env=_env_pairs(args.env),
    )
    try:
        options.check()
    except ValueError as exc:
        die(str(exc))
    try:
        event = read_event(args.event)
    except EventError as exc:
        die(str(exc))
    if importlib.util.find_spec("awslambdaric") is None:
        die("needs awslambdaric, the AWS runtime interface client: install lambdascope[local] "
            "(pip install 'lambdascope[local]')")

    collector_url = None
    db_path = args.db
    if db_path is None:
        collector_url = (os.environ.get("LAMBDASCOPE_COLLECTOR_URL") or "").strip() or None
        if collector_url is None:
            from . import DEFAULT_DB

            db_path = DEFAULT_DB
    if db_path is not None and os.path.isdir(db_path):
        die(f"--db {db_path}: is a directory, not a store file")

    progress = Progress(sys.stderr, options.times, enabled=not args.quiet)

    def output(sandbox: int, stream: str, line: str) -> None:
        if args.logs:
            progress.finish()
            sys.stderr.write(f"[sandbox {sandbox}] {line}" + ("" if line.endswith("\n")
                                                              else "\n"))

    runner = Runner(ref, options, db_path=db_path, collector_url=collector_url,
                    on_progress=progress.update, on_output=output)
    from ..collector.store import StoreError

    try:
        result = runner.run(event)
    except StoreError as exc:
        die(str(exc))
    finally:
        progress.finish()

    stats = _stats(result)
    if args.json:
        print_json(_document(result, stats))
    else:
        _render(result, stats)
    return 0


def _stats(result: Any) -> dict[str, Any] | str:
    """The ``stats`` figures of the function over the run, or why there are none."""
    from ._common import LocalSource, RemoteSource

    try:
        if result.db_path is not None:
            source: Any = LocalSource(result.db_path)
        else:
            source = RemoteSource(result.collector_url,
                                  os.environ.get("LAMBDASCOPE_TOKEN") or None)
        with source:
            found: dict[str, Any] = source.stats(
                function=result.function_name, since_ms=result.since_ms,
                until_ms=result.until_ms,
            )
            return found
    except CLIError as exc:
        return str(exc)


def _dashboard(result: Any) -> dict[str, str]:
    from urllib.parse import quote

    page = f"/functions/{quote(result.function_name, safe='')}"
    if result.db_path is not None:
        return {"command": f"lambdascope collector --db {shlex.quote(result.db_path)}",
                "url": DASHBOARD_URL + page}
    return {"command": "", "url": result.collector_url.rstrip("/") + page}


def _document(result: Any, stats: dict[str, Any] | str) -> dict[str, Any]:
    opts = result.options
    return {
        "function": result.function_name,
        "handler": result.handler,
        "init_type": opts.init_type,
        "memory_mb": opts.memory_mb,
        "timeout_ms": opts.timeout_s * 1000.0,
        "sandboxes": opts.sandboxes,
        "concurrency": opts.concurrency,
        "sandboxes_started": result.sandboxes_started,
        "since_ms": result.since_ms,
        "until_ms": result.until_ms,
        "counts": result.counts(),
        "invocations": [r.as_dict() for r in result.invocations],
        "reports": {
            "destination": "store" if result.db_path is not None else "collector",
            "db": result.db_path,
            "collector_url": result.collector_url,
            "received": result.reports_received if result.db_path is not None else None,
            "missing": result.reports_missing,
        },
        "notes": result.notes,
        "stats": stats if isinstance(stats, dict) else None,
        "stats_error": stats if isinstance(stats, str) else None,
        "dashboard": _dashboard(result),
    }


def _status_text(r: Any) -> str:
    if r.status == "ok":
        return "ok"
    if r.error_type == "Runtime.OutOfMemory":
        return "out of memory"
    detail = r.error_type or ""
    if r.status == "error" and r.error_message:
        detail = f"{detail}: {r.error_message}" if detail else r.error_message
    label = {"error": "error", "timeout": "timeout", "crashed": "crashed"}.get(r.status, r.status)
    if r.status == "timeout":
        return label
    return f"{label} ({detail})" if detail else label


def _render(result: Any, stats: dict[str, Any] | str) -> None:
    opts = result.options
    counts = result.counts()
    n = counts["invocations"]
    out(f"{result.handler} as {result.function_name}: {n} invocation{'s' if n != 1 else ''} "
        f"on {opts.sandboxes} sandbox{'es' if opts.sandboxes != 1 else ''} "
        f"({opts.init_type}, {opts.memory_mb} MB, timeout {opts.timeout_s:g} s"
        f"{f', {opts.concurrency} at once' if opts.concurrency > 1 else ''})")
    out()
    rows = []
    for r in result.invocations[:MAX_ROWS]:
        rows.append([
            str(r.index), r.request_id, f"{r.sandbox}" + (f".{r.process}" if r.process > 1
                                                          else ""),
            r.start, fmt_ms(r.duration_ms), fmt_ms(r.init_ms) if r.start != "warm" else "",
            fmt_mb(r.max_memory_mb), clip(_status_text(r), 60),
        ])
    for line in table(["#", "request id", "sandbox", "start", "duration", "init", "memory",
                       "status"], rows, right={0, 4, 5, 6}):
        out(line)
    if n > MAX_ROWS:
        out(f"  … {n - MAX_ROWS} more invocations (--json lists them all)")
    starts = ", ".join(f"{counts[k]} {k}" for k in ("cold", "warm", "provisioned", "restored",
                                                       "managed") if counts[k])
    outcomes = ", ".join(f"{counts[k]} {k}" for k in ("ok", "error", "timeout", "crashed")
                         if counts[k])
    out()
    out(f"  {starts} · {outcomes} · {result.sandboxes_started} sandbox process"
        f"{'es' if result.sandboxes_started != 1 else ''} started")
    if n == 1 and result.invocations:
        import json

        first = result.invocations[0]
        label = "response" if first.status == "ok" else "error"
        try:
            text = json.dumps(first.payload, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(first.payload)
        out(f"  {label}: {clip(text, 300)}")
    if result.db_path is not None:
        missing = len(result.reports_missing)
        killed = counts["timeout"] + counts["crashed"]
        if result.agent_seen:
            line = f"  reports: {result.reports_received} from the agent in {result.db_path}"
        elif killed == len(result.invocations):
            # Every sandbox was killed before its agent could report (the agent's crash report
            # comes from the sandbox's next process, and there was none).
            line = (f"  reports: none from the agent (every sandbox was killed before it could"
                    f" report); the runner's own records are in {result.db_path}")
        else:
            line = (f"  reports: none from the agent (is the handler decorated with "
                    f"@lambdascope.monitor?); the runner's own records are in {result.db_path}")
        if result.agent_seen and missing:
            line += (f"; {missing} invocation{'s' if missing != 1 else ''} without one "
                     f"(stored from the runner's own record)")
        out(line)
    else:
        out(f"  reports: sent to the collector at {result.collector_url} "
            f"(LAMBDASCOPE_COLLECTOR_URL)")
    for note in result.notes:
        out(f"  note: {note}")
    out()
    if isinstance(stats, dict):
        from .stats import render

        render(stats, argparse.Namespace(function=result.function_name, cold=False, warm=False,
                                         by=None, top=10))
    else:
        out(f"stats: {stats}")
    dashboard = _dashboard(result)
    out()
    if dashboard["command"]:
        out("open the dashboard:")
        out(f"  {dashboard['command']}")
        out(f"  then {dashboard['url']}")
    else:
        out(f"the dashboard: {dashboard['url']}")

"""The ``lambdascope`` command line. Each command lives in its own module and is imported only
when it runs, so ``lambdascope --help`` stays fast and needs no optional extra.

Every command answers bad input with one line on stderr and exit status 2, never a traceback
(``LAMBDASCOPE_DEBUG=1`` shows the traceback of an unexpected error).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__

DESCRIPTION = (
    "lambdascope: monitoring for Python AWS Lambda functions. Put @monitor on a handler to get "
    "one report per invocation; these commands run and query the local tools."
)

DEFAULT_DB = os.path.join(".lambdascope", "reports.db")

#: Commands whose module is ``lambdascope.cli.<name>``, with a ``run(args) -> int``.
COMMANDS = ("stats", "show", "ingest", "check", "collector", "layer", "invoke", "events")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``lambdascope stats: error: …`` and exit status 2."""

    commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the data is")
    group.add_argument(
        "--db", metavar="FILE", default=None,
        help=f"the local store (default {DEFAULT_DB})",
    )
    group.add_argument(
        "--url", metavar="URL", default=None,
        help="read a running collector's /api/ instead of a store file (e.g. "
             "http://127.0.0.1:8585)",
    )
    group.add_argument(
        "--token", metavar="T", default=None,
        help="the collector's token, with --url (default: LAMBDASCOPE_TOKEN)",
    )


def _window_arguments(parser: argparse.ArgumentParser, since_default: str = "1h") -> None:
    group = parser.add_argument_group("time window")
    group.add_argument(
        "--since", metavar="WHEN", default=since_default,
        help=f"start of the window: a duration back from now (30s, 15m, 1h, 7d, 2w), an ISO 8601 "
             f"time or epoch ms (default {since_default})",
    )
    group.add_argument(
        "--until", metavar="WHEN", default=None,
        help="end of the window, in the same forms (default: now)",
    )


def build_parser() -> Parser:
    parser = Parser(prog="lambdascope", description=DESCRIPTION)
    parser.add_argument(
        "--version", action="version", version=f"lambdascope {__version__}",
        help="print the version and exit",
    )
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    # stats ---------------------------------------------------------------------------------
    stats = commands.add_parser(
        "stats", help="counts, rates, latency, memory, cost, dependencies and errors",
        description="Per function over a time window: invocations, error/timeout/cold-start "
                    "rates, init and duration percentiles (cold and warm apart), memory against "
                    "the configured size with a suggested size, cost per invocation and per "
                    "million, the dependencies (AWS operations with their resource, HTTP hosts) "
                    "and the error groups. --json prints the figures for scripts (durations in "
                    "ms, rates and shares 0..1, memory in MB, money in USD).",
    )
    stats.add_argument("--function", "-f", metavar="F", help="only this function")
    _window_arguments(stats)
    temp = stats.add_mutually_exclusive_group()
    temp.add_argument("--cold", action="store_true", help="only cold starts")
    temp.add_argument("--warm", action="store_true", help="only warm invocations")
    stats.add_argument(
        "--by", choices=["version"], default=None,
        help="side by side per function version (newest first)",
    )
    stats.add_argument(
        "--price-gb-s", metavar="USD", default=None,
        help="price of a GB-second (default: AWS's published on-demand price for the "
             "function's architecture)",
    )
    stats.add_argument(
        "--price-request", metavar="USD", default=None,
        help="price of one request (default: AWS's published price)",
    )
    stats.add_argument("--top", metavar="N", type=int, default=10,
                       help="dependencies and error groups shown per function (default 10)")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    _source_arguments(stats)

    # show ----------------------------------------------------------------------------------
    show = commands.add_parser(
        "show", help="one invocation: fields, error, logs, span waterfall, related invocations",
        description="One invocation: its fields, its error with the stack, its logs, a span "
                    "waterfall (bars scaled to the invocation's duration, the AWS resource or "
                    "HTTP host on each line) and the other invocations of the same trace.",
    )
    show.add_argument("request_id", metavar="REQUEST_ID", help="the Lambda request id")
    show.add_argument("--json", action="store_true", help="print what the store has, as JSON")
    show.add_argument("--width", metavar="N", type=int, default=None,
                      help="width of the waterfall's bars (default: fit the terminal)")
    _source_arguments(show)

    # ingest --------------------------------------------------------------------------------
    ingest = commands.add_parser(
        "ingest", help="read reports out of log files (CloudWatch exports, stdout lines, REPORT)",
        description="Fill the store from log files: the JSON of `aws logs filter-log-events` "
                    "(or get-log-events, or a CloudWatch Logs subscription payload), the text "
                    "of `aws logs tail`, files of stdout-exporter lines mixed with other log "
                    "lines, and Lambda's START/END/REPORT lines. REPORT lines are joined to "
                    "the agent's report of the same request id, or stored as a minimal "
                    "invocation; every other line is attached to its request id. Ends with one "
                    "line of counts (a line is one event of a JSON export).",
    )
    ingest.add_argument("files", metavar="FILE", nargs="+",
                        help="files to read ('-' for standard input; .gz files are unpacked)")
    ingest.add_argument(
        "--function", "-f", metavar="F", default=None,
        help="function name of REPORT lines whose function is not known otherwise (no agent "
             "report in the same log stream, no function name in the stream name)",
    )
    ingest.add_argument("--progress", action="store_true",
                        help="show progress on stderr even when it is not a terminal")
    ingest.add_argument("--quiet", "-q", action="store_true", help="no progress and no counts")
    ingest.add_argument("--db", metavar="FILE", default=None,
                        help=f"the store to fill (default {DEFAULT_DB})")

    # check ---------------------------------------------------------------------------------
    check = commands.add_parser(
        "check", help="gate a deploy: exit 1 when a threshold is broken",
        description="Check a function's figures over a window against thresholds. Prints each "
                    "check with its value, threshold and PASS or FAIL; exits 1 when any fails, "
                    "0 when all pass, 2 on bad input or when there is no data. Rates may be "
                    "written 0.05 or 5%.",
    )
    check.add_argument("--function", "-f", metavar="F", required=True, help="the function")
    _window_arguments(check)
    check.add_argument("--version", dest="fn_version", metavar="V", default=None,
                       help="the function version checked (default: the newest seen)")
    check.add_argument("--max-p95-ms", metavar="N", help="duration p95, ms")
    check.add_argument("--max-error-rate", metavar="R", help="error rate (0.01 or 1%%)")
    check.add_argument("--max-init-ms", metavar="N", help="init duration p95, ms")
    check.add_argument("--max-cold-start-rate", metavar="R", help="cold-start rate")
    check.add_argument("--max-cost-per-million", metavar="USD",
                       help="cost per million invocations, USD")
    check.add_argument("--max-agent-overhead-ms", metavar="N",
                       help="the agent's own time per invocation, p95, ms")
    check.add_argument("--baseline-version", metavar="V0", default=None,
                       help="compare the duration p95 of --version against this version")
    check.add_argument("--max-regression-pct", metavar="P", default=None,
                       help="with --baseline-version: the largest slow-down allowed, percent "
                            "(10 or 10%%)")
    check.add_argument("--json", action="store_true", help="print the checks as JSON")
    _source_arguments(check)

    # invoke, events: declared by their own modules (standard library only at import) -------
    for name in ("invoke", "events"):
        importlib.import_module(f".{name}", __name__).add_arguments(commands)

    parser.commands = dict(commands.choices)
    # collector -----------------------------------------------------------------------------
    commands.add_parser(
        "collector", add_help=False,
        help="the collector service: ingestion, store, /api/ (lambdascope collector --help)",
    )
    commands.add_parser(
        "layer", add_help=False,
        help="build a Lambda layer zip of lambdascope (lambdascope layer build --help)",
    )
    return parser


def _debug() -> bool:
    return os.environ.get("LAMBDASCOPE_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("collector", "layer"):
        # Everything after the word belongs to the command's own parser.
        return _run(args_list[0], args_list[1:])
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(args_list)
        if extras:
            # Reported by the command's own parser: "lambdascope stats: error: …".
            where = parser.commands.get(args.command or "", parser)
            where.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:  # --help, --version, a bad argument: the status, not an exit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help()
        return 0
    return _run(args.command, args)


def _run(command: str, args: Any) -> int:
    from ._common import CLIError, fail

    prog = f"lambdascope {command}"
    try:
        module = importlib.import_module(f".{command}", __name__)
        return int(module.run(args) or 0)
    except SystemExit as exc:  # the collector's own parser (--help, a bad argument)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except CLIError as exc:
        return fail(prog, str(exc))
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except BrokenPipeError:
        # `lambdascope stats | head`: the reader went away; say nothing more.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit-time flush
        except OSError:
            pass
        return 0
    except ModuleNotFoundError as exc:
        if _debug():
            raise
        name = exc.name or "a module"
        if name.startswith("lambdascope"):
            return fail(prog, f"this installation lacks {name}: reinstall lambdascope")
        return fail(prog, f"needs {name}: install lambdascope[collector] "
                          f"(pip install 'lambdascope[collector]')")
    except Exception as exc:  # never a traceback; the one line says what happened
        if _debug():
            raise
        text = " ".join(str(exc).split()) or "no detail"
        return fail(prog, f"unexpected {type(exc).__name__}: {text} "
                          f"(LAMBDASCOPE_DEBUG=1 shows the traceback)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

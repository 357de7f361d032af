"""The ``lambdascope`` command line. Each command lives in its own module and is imported only
when it runs, so ``lambdascope --help`` stays fast and needs no optional extra."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__

DESCRIPTION = (
    "lambdascope: monitoring for Python AWS Lambda functions. Put @monitor on a handler to get "
    "one report per invocation; these commands run and query the local tools."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambdascope", description=DESCRIPTION)
    parser.add_argument(
        "--version", action="version", version=f"lambdascope {__version__}",
        help="print the version and exit",
    )
    parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

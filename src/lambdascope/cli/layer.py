"""``lambdascope layer build [--python 3.12] [--arch x86_64|arm64] [--output FILE]``: write a
Lambda layer zip of lambdascope and its dependencies for one runtime (``lambdascope.layer``
does the work). pip's progress goes to stderr; the zip's path, size and packages to stdout.

Everything after ``layer`` is this module's own arguments, as for ``collector``: ``run`` takes
either those words or a namespace that :func:`add_arguments` declared on another parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

PROG = "lambdascope layer"

_PROGRESS_PREFIXES = (
    "packing ", "compiling ", "installing what ", "Collecting ", "Processing ", "Downloading ",
    "Using cached ", "Looking in ", "Installing collected packages", "Successfully installed",
    "Obtaining ", "ERROR:",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``build`` and its flags on ``parser`` (the ``layer`` command's parser)."""
    from .. import layer

    actions = parser.add_subparsers(dest="layer_command", title="commands", metavar="COMMAND",
                                    parser_class=_Parser)
    build = actions.add_parser(
        "build", help="write a layer zip for one Python runtime and architecture",
        description=(
            "Write a Lambda layer zip: python/ at its root holding lambdascope and its runtime "
            "dependencies (wrapt, psutil, requests, opentelemetry-api, opentelemetry-sdk and "
            "theirs) as the wheels of the target runtime and architecture, whatever machine "
            "builds it. pip chooses the wheels (--platform manylinux…, --python-version, "
            "--only-binary=:all:); from PyPI, or from a local wheelhouse with --find-links "
            "DIR --no-index. The same inputs give the same bytes (sorted entries, fixed "
            "timestamps). Prints the zip's path, its size and the packages in it."
        ),
    )
    build.add_argument(
        "--python", metavar="X.Y", default=layer.DEFAULT_PYTHON,
        help=f"the Lambda Python runtime: {', '.join(layer.RUNTIMES)} (default "
             f"{layer.DEFAULT_PYTHON}; python3.12 is accepted too)",
    )
    build.add_argument(
        "--arch", metavar="ARCH", default=layer.DEFAULT_ARCH,
        help=f"the function's architecture: x86_64 or arm64 (default {layer.DEFAULT_ARCH})",
    )
    build.add_argument(
        "--output", "-o", metavar="FILE", default=None,
        help="the zip to write (default lambdascope-layer-<version>-python<X.Y>-<arch>.zip in "
             "the current folder); replaced if it exists",
    )
    build.add_argument(
        "--extra", metavar="NAME", action="append", default=[],
        help="also install an extra of lambdascope, e.g. otlp (repeatable)",
    )
    source = build.add_argument_group("where the wheels come from")
    source.add_argument(
        "--find-links", metavar="DIR", action="append", default=[],
        help="also look for wheels in this folder (or URL); repeatable",
    )
    source.add_argument("--no-index", action="store_true",
                        help="do not use a package index: only --find-links (offline builds)")
    source.add_argument("--index-url", metavar="URL", default=None,
                        help="a package index other than pip's configured one")
    build.add_argument(
        "--compile", action="store_true",
        help="add .pyc files, so the runtime does not compile every module at each cold start "
             "(Lambda's /opt is read-only); needs the build to run on the target's Python "
             "version",
    )
    build.add_argument("--quiet", "-q", action="store_true",
                       help="no progress on stderr; only the summary")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Lambda layers of lambdascope. `lambdascope layer build --help` for the "
                    "options.",
    )
    add_arguments(parser)
    return parser


def run(args: Any) -> int:
    if not isinstance(args, argparse.Namespace):
        parser = build_parser()
        try:
            args = parser.parse_args(list(args))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if args.layer_command is None:
            parser.print_help()
            return 0
    elif getattr(args, "layer_command", None) is None:
        build_parser().print_help()
        return 0
    return _build(args)


def _build(args: argparse.Namespace) -> int:
    from .. import layer
    from ._common import CLIError, fmt_mb, out

    prog = f"{PROG} build"
    try:
        target = layer.Target(layer.parse_python(args.python), layer.parse_arch(args.arch))
    except layer.LayerError as exc:
        raise CLIError(str(exc)) from None
    from importlib import metadata

    try:
        version = metadata.version("lambdascope")
    except metadata.PackageNotFoundError:
        raise CLIError("lambdascope is not installed as a distribution (pip install "
                       "lambdascope, or pip install -e . in a checkout)") from None
    output = args.output or layer.default_output(target, version)
    if args.compile:
        try:
            layer.check_compile(target)
        except layer.LayerError as exc:
            raise CLIError(str(exc)) from None
    if args.no_index and not args.find_links:
        raise CLIError("--no-index needs --find-links DIR: there would be nowhere to find the "
                       "dependencies")
    extras = [e.strip() for item in args.extra for e in item.split(",") if e.strip()]

    def progress(line: str) -> None:
        if line.startswith(_PROGRESS_PREFIXES) or line.startswith("  "):
            sys.stderr.write(f"  {line.strip()}\n")
            sys.stderr.flush()

    quiet = bool(args.quiet)
    if not quiet:
        low, high = target.platform_tags()[-1], target.platform_tags()[0]
        sys.stderr.write(
            f"{prog}: {target.runtime} {target.arch} ({target.os_name}: wheels tagged "
            f"{high} down to {low})\n"
        )
        sys.stderr.flush()
    try:
        result = layer.build_layer(
            target, output, find_links=args.find_links, no_index=args.no_index,
            index_url=args.index_url, extras=extras, compile_bytecode=bool(args.compile),
            progress=None if quiet else progress,
        )
    except layer.LayerError as exc:
        raise CLIError(str(exc)) from None

    out(f"{result.path}  {fmt_mb(result.size_bytes / 2**20)} "
        f"({fmt_mb(result.unzipped_bytes / 2**20)} unzipped, {result.files} files)")
    out(f"runtime {target.runtime}, architecture {target.arch}"
        + (f", with .pyc for {target.runtime}" if result.compiled else ""))
    out(f"packages ({len(result.packages)}):")
    width = max((len(name) for name, _ in result.packages), default=0)
    for name, pkg_version in result.packages:
        out(f"  {name.ljust(width)}  {pkg_version}")
    for warning in result.warnings:
        sys.stderr.write(f"{prog}: warning: {warning}\n")
    if not quiet:
        sys.stderr.write(
            f"publish it: aws lambda publish-layer-version --layer-name lambdascope "
            f"--zip-file fileb://{result.path} --compatible-runtimes {target.runtime} "
            f"--compatible-architectures {target.arch}\n"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lambdascope.cli.layer build …``: the same as ``lambdascope layer build …``,
    with the CLI's one-line errors."""
    from ._common import CLIError, fail

    try:
        return run(sys.argv[1:] if argv is None else argv)
    except CLIError as exc:
        return fail(f"{PROG} build", str(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

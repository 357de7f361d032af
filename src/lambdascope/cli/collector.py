"""``lambdascope collector …``: the collector service. Everything after the word is the
service's own arguments (``lambdascope collector --help``); this shim hands them over to
:func:`lambdascope.collector.server.main`."""

from __future__ import annotations

from collections.abc import Sequence


def run(argv: Sequence[str]) -> int:
    from ..collector.server import main

    return int(main(list(argv)) or 0)

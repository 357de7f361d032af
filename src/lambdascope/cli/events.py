"""``lambdascope events [NAME]``: the sample events bundled for ``invoke --event NAME``; with a
name, the event itself (to copy and edit)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import die, out, print_json, table


def add_arguments(commands: Any) -> argparse.ArgumentParser:
    """Declare ``events`` on the ``lambdascope`` sub-command set."""
    p: argparse.ArgumentParser = commands.add_parser(
        "events", help="list the sample events that invoke --event NAME accepts",
        description="The sample events bundled with lambdascope, each shaped as AWS documents "
                    "the event of its source (the agent reports each as that trigger type). "
                    "`lambdascope invoke app.py:handler --event sqs` sends one; "
                    "`lambdascope events sqs` prints it, to copy and edit.",
    )
    p.add_argument("name", metavar="NAME", nargs="?", default=None,
                   help="print this sample event's JSON instead of the list")
    p.add_argument("--json", action="store_true",
                   help="the list as JSON: name, trigger type and description of each")
    return p


def run(args: Any) -> int:
    from ..runner.samples import SAMPLES, EventError, sample_text

    if args.name is not None:
        try:
            text = sample_text(args.name)
        except EventError as exc:
            die(str(exc))
        out(text.rstrip("\n"))
        return 0
    if args.json:
        print_json([{"name": name, "trigger": trigger, "description": description}
                    for name, (trigger, description) in SAMPLES.items()])
        return 0
    rows = [[name, trigger, description] for name, (trigger, description) in SAMPLES.items()]
    for line in table(["name", "trigger", "description"], rows):
        out(line)
    out()
    out("  lambdascope invoke app.py:handler --event NAME   sends one; lambdascope events NAME "
        "prints it")
    return 0

"""The runnable examples of the docs pages, and how to run them.

A page marks a fenced block with an HTML comment on the line just before the fence (invisible
when the page is rendered):

``<!-- run -->``
    run the block: a ``python`` block with the venv's interpreter (``python -``), a ``sh`` block
    with ``bash -euo pipefail``. It must exit 0.
``<!-- run requires=MODULE -->``
    the same, skipped while ``MODULE`` cannot be imported (a feature still being built).
``<!-- file: NAME -->``
    write the block to ``NAME`` in the page's working folder (a handler the next blocks use).
``<!-- output -->``
    on a ``text`` block: the output of the run block before it. Each non-empty line must appear,
    in order, as a line of the output (stdout and stderr as one stream, unbuffered, as a terminal
    shows them); ``…`` stands for any text.

Every block of a page runs in order in one fresh folder, with an environment of its own: the
venv's ``bin`` first on ``PATH``, ``HOME`` and the agent's spool inside the folder, 100 columns,
and no ``LAMBDASCOPE_*``, ``OTEL_*``, ``AWS_*`` or ``PIP_*`` variable of the machine's.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VENV_BIN = Path(sys.executable).parent

_MARK = re.compile(r"^<!--\s*(run|file|output)\b(.*?)-->\s*$")
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    kind: str  # run, file, output
    code: str
    args: dict[str, str] = field(default_factory=dict)
    expected: str | None = None  # the output block that follows a run block

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The marked blocks of ``page``, in order; an output block is attached to its run block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        mark = _MARK.match(lines[i].strip())
        if mark is None or i + 1 >= len(lines) or not _FENCE.match(lines[i + 1]):
            i += 1
            continue
        kind, rest = mark.group(1), mark.group(2).strip()
        fence = _FENCE.match(lines[i + 1])
        assert fence is not None
        ticks, lang = fence.group(1), fence.group(2)
        body: list[str] = []
        j = i + 2
        while j < len(lines) and not lines[j].startswith(ticks):
            body.append(lines[j])
            j += 1
        if j >= len(lines):
            raise AssertionError(f"{page.name}:{i + 2}: the block is never closed")
        args: dict[str, str] = {}
        if kind == "file":
            args["name"] = rest.lstrip(":").strip()
        else:
            for item in rest.split():
                key, _, value = item.partition("=")
                args[key] = value
        block = Block(page.name, i + 2, lang, kind, "\n".join(body) + "\n", args)
        if kind == "output":
            if not found or found[-1].kind != "run":
                raise AssertionError(f"{block.where}: an output block must follow a run block")
            found[-1].expected = block.code
        else:
            found.append(block)
        i = j + 1
    return found


def environment(workdir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("LAMBDASCOPE_", "OTEL_", "AWS_", "PIP_", "PYTHON", "VIRTUAL_ENV"))}
    keep.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(workdir),
        "LAMBDASCOPE_SPOOL_DIR": str(workdir / ".spool"),
        "PIP_CONFIG_FILE": os.devnull,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
        "COLUMNS": "100",  # help texts wrap at a known width
    })
    return keep


@dataclass
class Outcome:
    block: Block
    status: int
    output: str
    skipped: str | None = None


def missing_requirement(block: Block) -> str | None:
    module = block.args.get("requires")
    if not module:
        return None
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    return None if found is not None else f"{module} is not available"


def run_page(page: Path, workdir: Path, timeout_s: float = 180.0) -> list[Outcome]:
    """Run every marked block of ``page`` in order in ``workdir``."""
    env = environment(workdir)
    outcomes = []
    for block in blocks(page):
        if block.kind == "file":
            target = workdir / block.args["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            continue
        reason = missing_requirement(block)
        if reason is not None:
            outcomes.append(Outcome(block, 0, "", skipped=reason))
            continue
        if block.lang == "python":
            cmd = [sys.executable, "-"]
        elif block.lang in ("sh", "bash", "shell"):
            cmd = ["bash", "-euo", "pipefail", "-s"]
        else:
            raise AssertionError(f"{block.where}: cannot run a {block.lang or 'plain'} block")
        proc = subprocess.run(cmd, input=block.code, cwd=workdir, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
        outcomes.append(Outcome(block, proc.returncode, proc.stdout))
    return outcomes


def expected_lines_missing(expected: str, output: str) -> list[str]:
    """The lines of ``expected`` not found, in order, among the lines of ``output``."""
    lines = output.splitlines()
    pos = 0
    missing = []
    for want in (w.rstrip() for w in expected.splitlines()):
        if not want.strip():
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.strip().split("…")))
        for k in range(pos, len(lines)):
            if pattern.fullmatch(lines[k].strip()):
                pos = k + 1
                break
        else:
            missing.append(want)
    return missing

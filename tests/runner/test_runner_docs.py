"""docs/runner.md: its files are written, its commands run, and the output it shows is what they
print; the Python example runs too."""

from __future__ import annotations

import pathlib
import re
import shlex

import pytest

from lambdascope.cli import main

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "runner.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str, str]]:
    """(language, body, the text before the block since the previous one)."""
    text = DOC.read_text()
    found = []
    last = 0
    for match in BLOCK.finditer(text):
        found.append((match.group(1), match.group(2), text[last:match.start()]))
        last = match.end()
    return found


def test_the_runner_page_examples_run(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    files = consoles = 0
    scripts: list[str] = []
    for language, body, before in blocks:
        if language != "python":
            continue
        names = re.findall(r"`(\w+\.py)`", before.strip().splitlines()[-1])
        if names:
            (tmp_path / names[-1]).write_text(body)
            files += 1
        else:
            scripts.append(body)
    for language, body, _ in blocks:
        if language != "console":
            continue
        consoles += 1
        runs: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                runs.append((line[2:], []))
            elif runs and line.strip() and "…" not in line:
                runs[-1][1].append(line.rstrip())
        for command, expected in runs:
            argv = shlex.split(command)
            assert argv[0] == "lambdascope"
            code = main(argv[1:])
            printed = capsys.readouterr().out.splitlines()
            assert code == 0, command
            position = 0
            for want in expected:  # in order, each a whole line of the output
                assert want in printed[position:], f"{command}: missing {want!r}\n" + \
                    "\n".join(printed)
                position = printed.index(want, position) + 1
    assert files == 2 and consoles == 3 and len(scripts) == 1
    namespace: dict[str, object] = {}
    exec(compile(scripts[0], str(DOC), "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3
    assert [line.split()[1] for line in printed] == ["cold", "cold", "warm"]
    assert all(line.split()[2] == "ok" for line in printed)
    assert (tmp_path / "reports.db").exists()

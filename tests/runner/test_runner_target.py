"""``FILE_OR_MODULE:FUNC`` resolved and checked without running the user's code."""

from __future__ import annotations

import pathlib
import re
import textwrap

import pytest
from runner_harness import HANDLERS

from lambdascope.runner.target import TargetError, resolve


def test_a_file_reference_runs_from_the_files_directory(tmp_path: pathlib.Path) -> None:
    ref = resolve("handlers/scripted.py:handler", cwd=str(HANDLERS.parent))
    assert ref.task_root == str(HANDLERS)
    assert (ref.module, ref.function, ref.handler) == ("scripted", "handler", "scripted.handler")
    assert ref.path == str(HANDLERS / "scripted.py")
    assert ref.default_function_name == "scripted"


def test_a_module_reference_is_found_without_importing_its_package() -> None:
    # pkg/__init__.py raises when imported: resolving must not import it.
    ref = resolve("pkg.api:handler", cwd=str(HANDLERS), search_path=[])
    assert ref.task_root == str(HANDLERS)
    assert (ref.module, ref.handler) == ("pkg.api", "pkg.api.handler")
    assert ref.path == str(HANDLERS / "pkg" / "api.py")
    with pytest.raises(TargetError, match=r"no module 'pkg\.nothing'"):
        resolve("pkg.nothing:handler", cwd=str(HANDLERS), search_path=[])
    with pytest.raises(TargetError, match=r"pkg\.api is a module, not a package"):
        resolve("pkg.api.deeper:handler", cwd=str(HANDLERS), search_path=[])


def test_a_module_from_the_python_path() -> None:
    ref = resolve("json.decoder:JSONDecoder", cwd="/")
    assert ref.task_root == "/" and ref.path and ref.path.endswith("decoder.py")


def test_default_function_name_names_other_functions() -> None:
    ref = resolve("handlers/scripted.py:handler", cwd=str(HANDLERS.parent))
    assert ref.default_function_name == "scripted"
    other = resolve("handlers/background.py:handler", cwd=str(HANDLERS.parent))
    assert other.default_function_name == "background"


@pytest.mark.parametrize(
    ("source", "verdict"),
    [
        ("def handler(event, context):\n    return 1\n", None),
        ("async def handler(event, context):\n    return 1\n", None),
        ("class handler:\n    pass\n", None),
        ("from functools import partial\nhandler = partial(print)\n", None),
        ("from somewhere import handler\n", None),
        ("import json as handler\n", None),
        ("try:\n    from fast import handler\nexcept ImportError:\n    handler = print\n", None),
        ("from helpers import *\n", None),  # cannot tell: left to the sandbox
        ("def __getattr__(name):\n    return print\n", None),
        ("globals()['handler'] = print\n", None),
        ("handler = 42\n", "is not callable (it is bound to a int value)"),
        ("handler = {'a': 1}\n", "is not callable (it is bound to a dict)"),
        ("def handler(e, c):\n    pass\nhandler = None\n", "bound to a None value"),
        ("def other(event, context):\n    pass\n", "no function 'handler' in the module"),
        ("if True:\n    handler = 'x'\n", "is not callable"),
        ("def handler(:\n", None),  # a syntax error: the sandbox's init error says it
    ],
)
def test_the_function_is_checked_in_the_source(
    tmp_path: pathlib.Path, source: str, verdict: str | None
) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(source))
    if verdict is None:
        assert resolve("app.py:handler", cwd=str(tmp_path)).function == "handler"
    else:
        with pytest.raises(TargetError, match=re.escape(verdict)):
            resolve("app.py:handler", cwd=str(tmp_path))


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("app.py", "expected FILE_OR_MODULE:FUNC"),
        ("app.py:", "expected FILE_OR_MODULE:FUNC"),
        (":handler", "expected FILE_OR_MODULE:FUNC"),
        ("app.py:not-a-name", "'not-a-name' is not a Python function name"),
        ("my-app.py:handler", "cannot be imported as a module (rename the file to a Python "
                              "identifier such as my_app.py)"),
        ("notes.txt:handler", "notes.txt: no module 'notes' in the current directory"),
        ("sys.py:handler", "'sys' is the name of a built-in module"),
        ("9lives:handler", "'9lives' is not a module name"),
    ],
)
def test_unusable_references(tmp_path: pathlib.Path, reference: str, says: str) -> None:
    for name in ("app.py", "my-app.py", "sys.py"):
        (tmp_path / name).write_text("def handler(event, context):\n    pass\n")
    with pytest.raises(TargetError) as caught:
        resolve(reference, cwd=str(tmp_path))
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_python(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TargetError, match=r"notes\.txt: not a Python source file"):
        resolve("notes.txt:handler", cwd=str(tmp_path))

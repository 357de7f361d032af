"""``FILE_OR_MODULE:FUNC``: which handler ``lambdascope invoke`` runs, checked before any sandbox
starts as far as that is cheap and runs none of the user's code.

* ``path/to/app.py:handler``: the task root (Lambda's ``/var/task``) is the file's directory and
  the module its stem.
* ``package.module:handler``: the task root is the current directory; the module is found the
  way the sandbox's interpreter will look for it (the task root, then its own ``sys.path``)
  without importing anything (no package ``__init__`` runs here).

The function is looked up in the module's source (its syntax tree): a module that surely has no
such name, or binds it only to a literal (a number, a string, a list…), is refused here; a
module whose names cannot be told without running it (``from x import *``, a module
``__getattr__``, a compiled extension) is left to the sandbox, where ``awslambdaric`` reports
``Runtime.HandlerNotFound`` as Lambda does. Errors in the module itself (a syntax error, an
exception at import) are init errors of the sandbox, reported as the invocation's failure.
"""

from __future__ import annotations

import ast
import importlib.machinery
import os
import sys
from dataclasses import dataclass

__all__ = ["HandlerRef", "TargetError", "resolve"]


class TargetError(ValueError):
    """The handler reference is unusable (one line for the user)."""


@dataclass(frozen=True)
class HandlerRef:
    """A resolved handler reference."""

    #: As the user wrote it.
    reference: str
    #: The directory the sandbox runs in and imports from first (``LAMBDA_TASK_ROOT``).
    task_root: str
    #: The module's dotted name.
    module: str
    #: The function's name.
    function: str
    #: The module's source file, when one was found.
    path: str | None

    @property
    def handler(self) -> str:
        """``module.function``: Lambda's handler setting (``_HANDLER``)."""
        return f"{self.module}.{self.function}"

    @property
    def default_function_name(self) -> str:
        """A Lambda function name for the reports: the module's last part, plus the function
        when it is not called ``handler`` or ``lambda_handler``."""
        base = self.module.rsplit(".", 1)[-1]
        if self.function not in ("handler", "lambda_handler"):
            base = f"{base}-{self.function}"
        return base.replace("_", "-")


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not name.startswith(".")


def resolve(reference: str, cwd: str | None = None, search_path: list[str] | None = None
            ) -> HandlerRef:
    """Check ``reference`` and say where the sandbox will find it. Raises :class:`TargetError`.

    ``search_path`` is where the sandbox's interpreter looks for modules after the task root
    (default: this interpreter's ``sys.path``)."""
    cwd = os.path.abspath(cwd or os.getcwd())
    where, sep, function = reference.rpartition(":")
    if not sep or not where or not function:
        raise TargetError(
            f"{reference!r}: expected FILE_OR_MODULE:FUNC (e.g. app.py:handler or "
            f"orders.api:handler)"
        )
    if not _is_identifier(function):
        raise TargetError(f"{reference!r}: {function!r} is not a Python function name")
    looks_like_file = (where.endswith(".py") or os.sep in where or "/" in where
                       or os.path.isfile(os.path.join(cwd, where)))
    if looks_like_file:
        path = os.path.abspath(os.path.join(cwd, where))
        if not os.path.exists(path):
            raise TargetError(f"{where}: no such file")
        if os.path.isdir(path):
            raise TargetError(f"{where}: is a directory; give the handler's .py file")
        stem, ext = os.path.splitext(os.path.basename(path))
        if ext != ".py":
            raise TargetError(f"{where}: not a Python source file (.py)")
        if not _is_identifier(stem):
            raise TargetError(
                f"{where}: {stem!r} cannot be imported as a module (rename the file to a "
                f"Python identifier such as {_suggest(stem)}.py)"
            )
        if stem in sys.builtin_module_names:
            raise TargetError(f"{where}: {stem!r} is the name of a built-in module; rename it")
        ref = HandlerRef(reference, os.path.dirname(path), stem, function, path)
    else:
        parts = where.split(".")
        if not all(_is_identifier(p) for p in parts):
            raise TargetError(f"{reference!r}: {where!r} is not a module name")
        if parts[0] in sys.builtin_module_names:
            raise TargetError(f"{where}: {parts[0]!r} is the name of a built-in module")
        found = _find_module(parts, [cwd, *(search_path if search_path is not None else
                                            [p or cwd for p in sys.path])])
        ref = HandlerRef(reference, cwd, where, function, found)
    if ref.path is not None and ref.path.endswith(".py"):
        _check_function(ref)
    return ref


def _suggest(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"m_{cleaned}"


def _find_module(parts: list[str], path: list[str]) -> str | None:
    """The file of module ``parts`` as the path finder sees it, importing nothing; ``None`` for
    a module without a file of its own (a namespace package). Raises :class:`TargetError`."""
    locations: list[str] | None = path
    spec = None
    for depth, part in enumerate(parts):
        if locations is None:
            raise TargetError(
                f"{'.'.join(parts)}: {'.'.join(parts[:depth])} is a module, not a package"
            )
        spec = importlib.machinery.PathFinder.find_spec(part, locations)
        if spec is None:
            name = ".".join(parts[: depth + 1])
            if depth == 0:
                raise TargetError(
                    f"{'.'.join(parts)}: no module {name!r} in the current directory or on "
                    f"the Python path (give a file as path/to/app.py:handler, or run from the "
                    f"directory that holds it)"
                )
            raise TargetError(f"{'.'.join(parts)}: no module {name!r}")
        search = spec.submodule_search_locations
        locations = list(search) if search is not None else None
    assert spec is not None
    origin = spec.origin
    if origin in (None, "namespace"):
        return None
    return str(origin)


def _literal(node: ast.AST) -> bool:
    return isinstance(node, (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set,
                             ast.JoinedStr, ast.ListComp, ast.DictComp, ast.SetComp))


def _bindings(body: list[ast.stmt], name: str, out: list[tuple[bool, ast.AST | None]],
              conditional: bool) -> bool:
    """Collect how ``name`` is bound at module level in ``body`` as (conditional, value node;
    ``None`` when callable or unknown). Returns ``False`` when the module's names cannot be told
    from its source."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if stmt.name == "__getattr__":
                return False
            if stmt.name == name:
                out.append((conditional, None))
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name) and node.id == name:
                        simple = isinstance(target, ast.Name)
                        out.append((conditional, stmt.value if simple else None))
                    if isinstance(node, ast.Name) and node.id == "__getattr__":
                        return False
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            if isinstance(stmt.target, ast.Name) and stmt.target.id == name:
                value = stmt.value if isinstance(stmt, ast.AnnAssign) else None
                out.append((conditional, value))
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                if alias.name == "*":
                    return False
                bound = alias.asname or alias.name.split(".")[0]
                if bound == name:
                    out.append((conditional, None))
        elif isinstance(stmt, (ast.If, ast.Try, ast.With, ast.AsyncWith, ast.For, ast.AsyncFor,
                               ast.While)) or type(stmt).__name__ == "TryStar":
            blocks: list[list[ast.stmt]] = []
            for field in ("body", "orelse", "finalbody"):
                blocks.append(getattr(stmt, field, None) or [])
            for handler in getattr(stmt, "handlers", None) or []:
                blocks.append(handler.body)
            if isinstance(stmt, (ast.For, ast.AsyncFor)):
                for node in ast.walk(stmt.target):
                    if isinstance(node, ast.Name) and node.id == name:
                        out.append((True, None))
            for block in blocks:
                if not _bindings(block, name, out, True):
                    return False
        elif isinstance(stmt, ast.Global):
            continue
        else:
            # Walrus assignments, match statements…: bound somewhere we do not follow.
            for node in ast.walk(stmt):
                if isinstance(node, ast.NamedExpr) and node.target.id == name:
                    out.append((True, None))
    return True


def _check_function(ref: HandlerRef) -> None:
    assert ref.path is not None
    try:
        with open(ref.path, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        raise TargetError(f"{ref.path}: cannot read it: {exc.strerror or exc}") from None
    try:
        tree = ast.parse(source, filename=ref.path)
    except (SyntaxError, ValueError):
        return  # an init error: the sandbox reports it (Runtime.UserCodeSyntaxError)
    for node in ast.walk(tree):
        # Module attributes set from elsewhere (sys.modules[__name__], globals()[...]): the
        # source cannot tell; leave it to the sandbox.
        if isinstance(node, ast.Name) and node.id in ("globals", "setattr", "exec", "vars"):
            return
        if isinstance(node, ast.Attribute) and node.attr == "modules":
            return
    found: list[tuple[bool, ast.AST | None]] = []
    if not _bindings(tree.body, ref.function, found, False):
        return
    where = ref.reference.rpartition(":")[0]
    if not found:
        raise TargetError(f"{where}: no function {ref.function!r} in the module")
    last_conditional, last_value = found[-1]
    all_literals = all(value is not None and _literal(value) for _, value in found)
    if all_literals or (not last_conditional and last_value is not None and _literal(last_value)):
        raise TargetError(
            f"{where}: {ref.function!r} is not callable (it is bound to a {_kind(last_value)})"
        )


def _kind(node: ast.AST | None) -> str:
    if isinstance(node, ast.Constant):
        value = node.value
        return "None value" if value is None else f"{type(value).__name__} value"
    if isinstance(node, ast.JoinedStr):
        return "str value"
    return {ast.List: "list", ast.Tuple: "tuple", ast.Dict: "dict", ast.Set: "set",
            ast.ListComp: "list", ast.DictComp: "dict", ast.SetComp: "set"}.get(
        type(node), "value")  # type: ignore[arg-type]

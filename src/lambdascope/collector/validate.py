"""A fast yes/no check of a report against the shipped JSON Schema.

The collector validates every report it receives. A general validator (fastjsonschema) spends
most of its time on bookkeeping that only matters when a report is wrong: key sets built and
emptied for every object, an error message's context prepared for every field, a function call
per ``$ref``. Reports are nearly always right, so the collector asks a cheaper question first:
:func:`compile_check` turns the schema into one straight-line Python function that answers
only *whether* a value is valid. When it says no, the general validator runs to say *why*.

Only the keywords the report schema uses are understood (``type``, ``const``, ``enum``,
``required``, ``properties``, ``additionalProperties``, ``items``, ``maxItems``,
``uniqueItems``, ``minimum``, ``exclusiveMinimum``, ``minLength``, ``maxLength``, ``pattern``
and local ``$ref``); anything else raises :class:`UnsupportedSchema` at compile time, so a
schema change that this module does not follow cannot silently weaken validation. The meaning
of each keyword follows JSON Schema 2020-12 as fastjsonschema implements it (a float with an
integral value is an ``integer``; ``true`` is not a number; ``pattern`` searches, with ``$``
meaning the end of the string); the tests check that both always agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["UnsupportedSchema", "compile_check"]

_ANNOTATIONS = frozenset({"description", "examples", "title", "$id", "$schema", "$comment",
                          "default", "$defs", "definitions"})
_KEYWORDS = frozenset({"type", "const", "enum", "required", "properties",
                       "additionalProperties", "items", "maxItems", "uniqueItems", "minimum",
                       "exclusiveMinimum", "minLength", "maxLength", "pattern", "$ref"})

#: The test of each JSON type on a value held in ``v`` whose Python type is in ``t``.
_TYPE_TESTS = {
    "object": "t is dict",
    "array": "(t is list or t is tuple)",
    "string": "t is str",
    "boolean": "t is bool",
    "null": "v is None",
    "number": "(t is int or t is float)",
    "integer": "(t is int or (t is float and v.is_integer()))",
}


class UnsupportedSchema(ValueError):
    """The schema uses a keyword or form this compiler does not implement."""


def _pattern(regex: str) -> re.Pattern[str]:
    # As fastjsonschema reads a pattern: "$" anchors at the very end (not before a newline).
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", regex))


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.names = 0

    def const(self, value: Any, prefix: str) -> str:
        for name, known in self.consts.items():
            if name.startswith(prefix) and type(known) is type(value) and known == value:
                return name
        name = f"{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.names += 1
        return f"v{self.names}"

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            if len(schema) > 1 and set(schema) - _ANNOTATIONS - {"$ref"}:
                raise UnsupportedSchema("$ref beside other keywords")
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise UnsupportedSchema(f"only local references are supported: {ref!r}")
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
            seen += 1
            if seen > 32:
                raise UnsupportedSchema("reference cycle")
        return schema

    def sub(self, schema: Any, v: str, depth: int) -> list[str]:
        """The lines of :meth:`node`, without emitting them."""
        saved, self.lines = self.lines, []
        try:
            self.node(schema, v, depth)
            return self.lines
        finally:
            self.lines = saved

    def node(self, schema: Any, v: str, depth: int) -> None:
        """Code that ``return False``\\ s unless the value in variable ``v`` is valid."""
        if schema is True or schema == {}:
            return
        if schema is False:
            self.emit(depth, "return False")
            return
        if not isinstance(schema, Mapping):
            raise UnsupportedSchema(f"a schema must be an object or a boolean: {schema!r}")
        schema = self.resolve(schema)
        unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
        if unknown:
            raise UnsupportedSchema(f"unsupported keywords: {sorted(unknown)}")
        t = self.var()
        saved, self.lines = self.lines, []
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else list(types)
            tests = []
            for name in names:
                if name not in _TYPE_TESTS:
                    raise UnsupportedSchema(f"unknown type {name!r}")
                tests.append(re.sub(r"\bt\b", t, re.sub(r"\bv\b", v, _TYPE_TESTS[name])))
            self.emit(depth, f"if not ({' or '.join(tests)}):")
            self.emit(depth + 1, "return False")
        if "const" in schema:
            value = schema["const"]
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise UnsupportedSchema("const other than a string or a number")
            c = self.const(value, "C")
            if isinstance(value, str):
                self.emit(depth, f"if {t} is not str or {v} != {c}:")
            else:
                self.emit(depth, f"if not ({t} is int or {t} is float) or {v} != {c}:")
            self.emit(depth + 1, "return False")
        if "enum" in schema:
            values = schema["enum"]
            if not all(isinstance(x, str) for x in values):
                raise UnsupportedSchema("enum of values other than strings")
            c = self.const(frozenset(values), "E")
            self.emit(depth, f"if {t} is not str or {v} not in {c}:")
            self.emit(depth + 1, "return False")
        # With a single type already checked, the per-type checks below need no guard.
        self.sure = types if isinstance(types, str) else (
            types[0] if isinstance(types, list) and len(types) == 1 else None)
        sure = self.sure
        self.numbers(schema, v, t, depth, sure in ("number", "integer"))
        self.strings(schema, v, t, depth, sure == "string")
        self.arrays(schema, v, t, depth, sure == "array")
        self.objects(schema, v, t, depth, sure == "object")
        body, self.lines = self.lines, saved
        if body:
            self.emit(depth, f"{t} = type({v})")
            self.lines.extend(body)

    def numbers(self, schema: Mapping[str, Any], v: str, t: str, depth: int, sure: bool
                ) -> None:
        checks = []
        for key, op in (("minimum", "<"), ("exclusiveMinimum", "<=")):
            if key in schema:
                bound = schema[key]
                if not isinstance(bound, (int, float)) or isinstance(bound, bool):
                    raise UnsupportedSchema(f"{key} must be a number")
                checks.append(f"{v} {op} {bound!r}")
        if checks:
            # fastjsonschema applies number bounds to ints and floats (booleans are not numbers).
            guard = "" if sure else f"({t} is int or {t} is float) and "
            self.emit(depth, f"if {guard}({' or '.join(checks)}):")
            self.emit(depth + 1, "return False")

    def strings(self, schema: Mapping[str, Any], v: str, t: str, depth: int, sure: bool
                ) -> None:
        checks = []
        if "minLength" in schema:
            checks.append(f"len({v}) < {int(schema['minLength'])}")
        if "maxLength" in schema:
            checks.append(f"len({v}) > {int(schema['maxLength'])}")
        if "pattern" in schema:
            c = self.const(_pattern(schema["pattern"]), "P")
            checks.append(f"{c}.search({v}) is None")
        if checks:
            guard = "" if sure else f"{t} is str and "
            self.emit(depth, f"if {guard}({' or '.join(checks)}):")
            self.emit(depth + 1, "return False")

    def arrays(self, schema: Mapping[str, Any], v: str, t: str, depth: int, sure: bool
               ) -> None:
        items = schema.get("items")
        limit = schema.get("maxItems")
        unique = schema.get("uniqueItems", False)
        if items is None and limit is None and not unique:
            return
        inner = depth
        if not sure:
            self.emit(depth, f"if {t} is list or {t} is tuple:")
            self.emit(depth + 1, "pass")
            inner = depth + 1
        if limit is not None:
            self.emit(inner, f"if len({v}) > {int(limit)}:")
            self.emit(inner + 1, "return False")
        if items is not None and items is not True and items != {}:
            if isinstance(items, list):
                raise UnsupportedSchema("items as a list (use prefixItems)")
            item = self.var()
            lines = self.sub(items, item, inner + 1)
            if lines:
                self.emit(inner, f"for {item} in {v}:")
                self.lines.extend(lines)
        if unique:
            # Items of the report schema's unique arrays are strings (checked just above).
            self.emit(inner, f"if len({v}) > 1:")
            self.emit(inner + 1, "try:")
            self.emit(inner + 2, f"if len(set({v})) != len({v}):")
            self.emit(inner + 3, "return False")
            self.emit(inner + 1, "except TypeError:")
            self.emit(inner + 2, "raise _Undecided from None")

    def objects(self, schema: Mapping[str, Any], v: str, t: str, depth: int, sure: bool
                ) -> None:
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required") or ())
        extra = schema.get("additionalProperties", True)
        if not props and not required and (extra is True or extra == {}):
            return
        inner = depth
        if not sure:
            self.emit(depth, f"if {t} is dict:")
            self.emit(depth + 1, "pass")
            inner = depth + 1
        for key in required:
            if key not in props:
                self.emit(inner, f"if {key!r} not in {v}:")
                self.emit(inner + 1, "return False")
        for key, sub in props.items():
            child = self.var()
            if key in required:
                self.emit(inner, f"{child} = {v}.get({key!r}, _MISSING)")
                self.emit(inner, f"if {child} is _MISSING:")
                self.emit(inner + 1, "return False")
                self.lines.extend(self.sub(sub, child, inner))
                continue
            lines = self.sub(sub, child, inner + 1)
            if lines:
                self.emit(inner, f"{child} = {v}.get({key!r}, _MISSING)")
                self.emit(inner, f"if {child} is not _MISSING:")
                self.lines.extend(lines)
        if extra is False:
            known = self.const(frozenset(props), "K")
            self.emit(inner, f"if len({v}) > {len(props)} or not {known}.issuperset({v}):")
            self.emit(inner + 1, "return False")
        elif extra is not True and extra != {}:
            known = self.const(frozenset(props), "K")
            key, value = self.var(), self.var()
            self.emit(inner, f"for {key}, {value} in {v}.items():")
            self.emit(inner + 1, f"if {key} not in {known}:")
            self.lines.extend(self.sub(extra, value, inner + 2) or ["    " * (inner + 2) + "pass"])


class _Undecided(Exception):
    """The quick check cannot tell: ask the full validator."""


def compile_check(schema: Mapping[str, Any]) -> Callable[[Any], bool | None]:
    """``check(value)``: ``True`` when ``value`` is valid against ``schema``, ``False`` when it
    is not, ``None`` when the quick check cannot tell (ask a full validator). Raises
    :class:`UnsupportedSchema` for a schema it does not understand."""
    compiler = _Compiler(schema)
    compiler.emit(0, "def check(v0):")
    compiler.node(schema, "v0", 1)
    compiler.emit(1, "return True")
    code = "\n".join(compiler.lines)
    namespace: dict[str, Any] = {"_MISSING": object(), "_Undecided": _Undecided,
                                 **compiler.consts}
    exec(compile(code, "<lambdascope report check>", "exec"), namespace)  # noqa: S102
    inner: Callable[[Any], bool] = namespace["check"]

    def check(value: Any) -> bool | None:
        try:
            return inner(value)
        except (_Undecided, RecursionError):
            return None

    check.source = code  # type: ignore[attr-defined]
    return check

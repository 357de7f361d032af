"""docs/configuration.md and the source agree: every ``LAMBDASCOPE_*`` variable the source reads
is documented there and every documented one is read; every decorator option is there; every
``OTEL_*`` variable the source reads is named; the defaults in the table are the code's."""

from __future__ import annotations

import re
from typing import Any

import pytest
from docs_snippets import DOCS, ROOT

from lambdascope import _config

PAGE = DOCS / "configuration.md"
SOURCE = ROOT / "src" / "lambdascope"

# A whole variable name: not the start of a longer one, nor a prefix completed at run time
# (f"OTEL_EXPORTER_OTLP_{signal}_HEADERS").
_LAMBDASCOPE = re.compile(r"\bLAMBDASCOPE_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_{])")
_OTEL = re.compile(r"\bOTEL_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_{])")


def _source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(SOURCE.rglob("*.py")))


def _fields() -> dict[str, tuple[Any, Any]]:
    extra = getattr(_config, "_EXTRA_FIELDS", {})
    return {**_config._FIELDS, **extra}


def _env_keys() -> set[str]:
    option_only = getattr(_config, "OPTION_ONLY", frozenset())
    return {key for key in _fields() if key not in option_only}


def source_variables() -> set[str]:
    """Every LAMBDASCOPE_* variable the source reads: the configuration keys (read as
    ``PREFIX + key.upper()``) and the names written out in the code."""
    found = {_config.PREFIX + key.upper() for key in _env_keys()}
    found |= set(_LAMBDASCOPE.findall(_source_text()))
    return found


def page_text() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_every_variable_the_source_reads_is_documented() -> None:
    documented = set(_LAMBDASCOPE.findall(page_text()))
    missing = source_variables() - documented
    assert not missing, f"docs/configuration.md does not document {sorted(missing)}"


def test_every_documented_variable_is_read_by_the_source() -> None:
    documented = set(_LAMBDASCOPE.findall(page_text()))
    unknown = documented - source_variables()
    assert not unknown, f"docs/configuration.md documents unread variables {sorted(unknown)}"


def test_every_decorator_option_is_documented_as_an_option() -> None:
    text = page_text()
    missing = [key for key in _fields() if f"| `{key}` |" not in text]
    assert not missing, f"docs/configuration.md lacks the options {missing}"


def test_every_otel_variable_the_source_reads_is_named() -> None:
    text = page_text()
    in_source = set(_OTEL.findall(_source_text()))
    assert in_source, "the source reads no OTEL_* variable? the pattern is wrong"
    missing = sorted(name for name in in_source if name not in text)
    assert not missing, f"docs/configuration.md does not name {missing}"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in page_text().splitlines():
        if line.startswith("| `LAMBDASCOPE_") and line.count("|") >= 6:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


@pytest.mark.parametrize("key", sorted(_env_keys()))
def test_the_table_gives_the_codes_default(key: str) -> None:
    name = _config.PREFIX + key.upper()
    row = _rows().get(name)
    assert row is not None, f"{name} has no row in the table"
    assert row[1] == f"`{key}`", f"{name}: the option column says {row[1]}"
    default = _fields()[key][1]
    cell = row[3]
    if default is None or default == ():
        # Unset or derived in the code: the page must say so, not give a value.
        assert cell and not re.fullmatch(r"`[^`]*`", cell), f"{name}: the default is {cell!r}"
        return
    shown = re.match(r"`([^`]*)`", cell)
    assert shown is not None, f"{name}: the default cell {cell!r} shows no value"
    if isinstance(default, float) and not isinstance(default, bool):
        assert float(shown.group(1)) == default, f"{name}: {shown.group(1)} != {default}"
    else:
        assert shown.group(1) == _shown(default), f"{name}: {shown.group(1)} != {default}"

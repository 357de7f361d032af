"""Shared fixtures.

* Every test starts with fresh agent state (the next invocation is cold again).
* Errors the agent swallows fail the test at teardown, unless the test is marked ``faults``
  (fault-injection tests that expect them).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from lambdascope import _guard, testing

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "src" / "lambdascope" / "schema" / "lambdascope-1.json"


@pytest.fixture(autouse=True)
def _fresh_agent(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> Any:
    for name in ("AWS_LAMBDA_INITIALIZATION_TYPE", "LAMBDASCOPE_EXPORTERS",
                 "LAMBDASCOPE_COLLECTOR_URL", "LAMBDASCOPE_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    # Each test gets a spool of its own: nothing undelivered leaks into the next test.
    monkeypatch.setenv("LAMBDASCOPE_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))
    testing.reset()
    yield
    testing.reset()


@pytest.fixture(autouse=True)
def internal_errors(request: pytest.FixtureRequest) -> Any:
    """Collect what the agent swallowed; re-raise it at teardown unless the test expects it."""
    seen: list[tuple[str, BaseException]] = []
    previous = _guard.listener
    _guard.listener = lambda site, exc: seen.append((site, exc))
    yield seen
    _guard.listener = previous
    if seen and request.node.get_closest_marker("faults") is None:
        site, exc = seen[0]
        raise AssertionError(f"lambdascope swallowed an internal error in {site}: {exc!r}") from exc


@pytest.fixture(scope="session")
def report_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture
def validate_report(report_schema: dict[str, Any]) -> Any:
    import jsonschema

    validator = jsonschema.Draft202012Validator(report_schema)

    def check(report: dict[str, Any]) -> dict[str, Any]:
        errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            raise AssertionError(
                f"report does not match the schema at {list(first.path)}: {first.message}"
            )
        return report

    return check

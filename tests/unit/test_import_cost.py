"""``import lambdascope`` is paid by every cold start: it imports what the first invocation needs
when it needs it, so none of these standard-library modules comes in with the package."""

from __future__ import annotations

import subprocess
import sys

DEFERRED = ("typing", "logging", "json", "random", "re", "enum")


def _new_modules(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys\nbefore = set(sys.modules)\n" + code
         + "\nnew = sorted(set(sys.modules) - before)\nprint(' '.join(new))"],
        capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": "/usr/bin:/bin"},  # the installed package, no Lambda variables
    )
    return out.stdout.strip().splitlines()[-1].split()


def test_import_lambdascope_defers_the_stdlib_modules_only_invocations_need() -> None:
    new = _new_modules("import lambdascope")
    assert "lambdascope" in new
    assert [m for m in DEFERRED if m in new] == []


def test_decorating_a_handler_still_imports_none_of_them() -> None:
    new = _new_modules("import lambdascope\n@lambdascope.monitor\ndef handler(event, context):"
                       "\n    return 1")
    assert [m for m in DEFERRED if m in new] == []


def test_the_first_invocation_brings_what_it_needs() -> None:
    new = _new_modules(
        "import lambdascope\nfrom lambdascope.testing import capture_reports, fake_context\n"
        "@lambdascope.monitor\ndef handler(event, context):\n    return 1\n"
        "with capture_reports() as reports:\n    handler({}, fake_context())\n"
        "assert len(reports) == 1, reports"
    )
    assert "logging" in new  # the log capture

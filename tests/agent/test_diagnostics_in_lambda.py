"""Cold-start diagnostics under the real runtime client (``awslambdaric``) and the Runtime API
emulator.

Each test writes its own deployment package into a temporary task root (``LAMBDA_TASK_ROOT``): a
handler module that imports ``lambdascope`` first, then a deliberately slow module (0.3 s of
``time.sleep`` at import), one it uses and one it does not, and a fake installed distribution.
Reports come back through the ``file`` exporter.

``unused_imports`` needs ``sys.monitoring`` (Python 3.12+). The runtime client's native part in
this environment is built for the venv's Python (3.11) only, so a 3.12 sandbox cannot be
started here; :func:`test_unused_imports_on_python_3_12_and_later` runs the agent itself, end to
end, under every Python >= 3.12 found on the machine (without the runtime client), and fails if
there is none.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

import lambdascope
from lambdascope.runner.runtime_api import Sandbox

AGENT_PATH = str(pathlib.Path(lambdascope.__file__).resolve().parents[1])
INTERNAL_ERROR = "lambdascope: internal error"
SLOW_S = 0.3

HANDLER_MODULE = '''
import lambdascope
{after_agent}
import diag_slow_dep
import diag_used_dep
import diag_unused_dep
import json
import os
import sys

{extra}

@lambdascope.monitor
def handler(event, context):
    diag_used_dep.work()
    return {{
        "meta_path": [type(f).__name__ for f in sys.meta_path],
        "importtime_loaded": "lambdascope._importtime" in sys.modules,
    }}
'''

MODULES = {
    "diag_slow_dep.py": f"import time\ntime.sleep({SLOW_S})\n\ndef never():\n    return 1\n",
    "diag_used_dep.py": "def work():\n    return sum(range(10))\n",
    "diag_unused_dep.py": "import decimal\n\ndef never():\n    return decimal.Decimal(1)\n",
}

FAKE_RECORD = (
    "fakepkg/__init__.py,sha256=abc,2048\n"
    "fakepkg/core.py,sha256=def,1024\n"
    "fakepkg-1.2.3.dist-info/RECORD,,\n"
)


def write_package(
    root: pathlib.Path,
    extra: str = "",
    header: str = "",
    after_agent: str = "",
    files: dict[str, str] | None = None,
) -> None:
    """The deployment package: ``header`` goes before ``import lambdascope``, ``after_agent``
    right after it, ``extra`` after the other imports; ``files`` are more modules."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "diag_app.py").write_text(
        header + HANDLER_MODULE.format(extra=extra, after_agent=after_agent)
    )
    for name, text in {**MODULES, **(files or {})}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    dist = root / "fakepkg-1.2.3.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "RECORD").write_text(FAKE_RECORD)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.2.3\n\n")


class DiagLambda:
    """A sandbox on a task root of the test's own; its reports from the ``file`` exporter."""

    def __init__(
        self, directory: pathlib.Path, env: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        self.root = directory / "task"
        self.reports_path = directory / "reports.jsonl"
        full: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LAMBDASCOPE_")}
        full.update(
            {
                "LAMBDASCOPE_EXPORTERS": "file",
                "LAMBDASCOPE_FILE": str(self.reports_path),
                "LAMBDASCOPE_SPOOL_DIR": str(directory / "spool"),
            }
        )
        full.update(env or {})
        self.sandbox = Sandbox(
            "diag_app.handler", self.root, env=full, function_name="diag-test", **kwargs
        )

    def start(self) -> DiagLambda:
        self.sandbox.start()
        if not self.sandbox.wait_ready(30.0):
            self.sandbox.stop()
            pytest.fail(f"the sandbox did not finish its init\n{self.sandbox.output}")
        return self

    def invoke(self, event: Any = None) -> dict[str, Any]:
        result = self.sandbox.invoke({} if event is None else event, 10.0)
        assert result.ok, (result.status, result.payload, self.sandbox.output)
        return result.payload  # type: ignore[no-any-return]

    def reports(self, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        give_up = time.monotonic() + timeout_s
        lines: list[str] = []
        while time.monotonic() < give_up:
            if self.reports_path.exists():
                text = self.reports_path.read_text()
                lines = [line for line in text.splitlines() if line.strip()]
                if len(lines) >= count and text.endswith("\n"):
                    break
            time.sleep(0.01)
        assert len(lines) == count, self.sandbox.output
        return [json.loads(line) for line in lines]

    @property
    def output(self) -> str:
        return self.sandbox.stdout + self.sandbox.stderr


@pytest.fixture
def diag_lambdas(tmp_path: pathlib.Path) -> Iterator[Any]:
    """Factory ``diag_lambdas(env=..., clean=True, extra=..., header=..., after_agent=...,
    files=..., init_type=...)``: writes the package (see :func:`write_package`) and starts its
    sandbox; with ``clean`` the agent must not have logged an error of its own."""
    started: list[tuple[DiagLambda, bool]] = []

    def start(
        env: dict[str, str] | None = None,
        clean: bool = True,
        extra: str = "",
        header: str = "",
        after_agent: str = "",
        files: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> DiagLambda:
        directory = tmp_path / f"sandbox-{len(started)}"
        write_package(directory / "task", extra, header, after_agent, files)
        lam = DiagLambda(directory, env, **kwargs)
        started.append((lam, clean))
        return lam.start()

    yield start
    for lam, _ in started:
        lam.sandbox.stop()
    for lam, clean in started:
        if clean:
            assert INTERNAL_ERROR not in lam.output, lam.output


def walk(node: dict[str, Any]) -> Iterator[tuple[dict[str, Any], int]]:
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        yield current, depth
        stack.extend((child, depth + 1) for child in current["children"])


# -- what the diagnostics say -----------------------------------------------------------------


def test_a_slow_import_is_on_top_of_the_slowest_imports(
    diag_lambdas: Any, validate_report: Any
) -> None:
    lam = diag_lambdas()
    answer = lam.invoke()
    (report,) = lam.reports(1)
    validate_report(report)
    diag = report["diagnostics"]
    # The finders on sys.meta_path were themselves again at the end of init.
    assert answer["importtime_loaded"] is True
    assert "_TimedFinder" not in answer["meta_path"]

    assert diag["handler"] == "diag_app.handler"
    assert diag["import_tracking"] == "full"
    top = diag["slowest_imports"][0]
    assert top["module"] == "diag_slow_dep"
    assert top["parent"] == "diag_app"
    assert top["ms"] >= SLOW_S * 1000 * 0.95
    assert top["self_ms"] >= SLOW_S * 1000 * 0.95
    assert top["used"] is None if sys.version_info < (3, 12) else top["used"] is False
    listed = [entry["module"] for entry in diag["slowest_imports"]]
    assert "lambdascope" not in listed and len(listed) == len(set(listed)) <= 20
    assert [e["ms"] for e in diag["slowest_imports"]] == sorted(
        (e["ms"] for e in diag["slowest_imports"]), reverse=True
    )

    assert diag["handler_import_ms"] >= SLOW_S * 1000
    assert diag["init_ms"] == report["invocation"]["init_duration_ms"]
    assert diag["init_ms"] >= diag["handler_import_ms"]
    tree = diag["imports"]
    assert tree["module"] == "diag_app"
    assert tree["ms"] == diag["handler_import_ms"]
    children = {child["module"]: child for child in tree["children"]}
    assert children["diag_slow_dep"]["ms"] >= SLOW_S * 1000 * 0.95
    assert "lambdascope" in children  # the agent's own share of init, shown as such
    for node, _ in walk(tree):
        assert node["ms"] >= 1.0 or node is tree
        assert abs(node["ms"] - node["self_ms"] - sum(c["ms"] for c in node["children"])) < 0.01

    assert diag["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert diag["implementation"] == "CPython"
    assert diag["runtime"] == lam.sandbox.env["AWS_EXECUTION_ENV"]
    assert diag["architecture"] == report["function"]["architecture"]
    assert diag["sandbox_id"] == lam.sandbox.log_stream_name
    (fake,) = [d for d in diag["distributions"] if d["name"] == "fakepkg"]
    assert fake == {"name": "fakepkg", "version": "1.2.3", "size_kb": 3.0, "location": "task"}
    assert len(diag["distributions"]) <= 100
    sizes = [d["size_kb"] for d in diag["distributions"] if d["size_kb"] is not None]
    assert sizes == sorted(sizes, reverse=True)
    assert diag["tmp"]["total_mb"] >= diag["tmp"]["used_mb"] >= 0
    assert set(diag["limits"]) == {"nofile", "nproc", "stack_kb", "as_mb"}
    soft, hard = diag["limits"]["nofile"]
    assert soft is None or hard is None or 0 < soft <= hard
    assert "LAMBDA_TASK_ROOT" in diag["env_names"] and diag["env_names"] == sorted(
        diag["env_names"]
    )
    assert len(json.dumps(diag, ensure_ascii=False).encode()) <= 64 * 1024


def test_only_the_first_report_of_a_sandbox_has_diagnostics(diag_lambdas: Any) -> None:
    lam = diag_lambdas()
    for _ in range(3):
        lam.invoke()
    first, *warm = lam.reports(3)
    assert first["invocation"]["cold_start"] is True
    assert "diagnostics" in first
    assert all("diagnostics" not in r for r in warm)


def test_diagnostics_never_contain_environment_values(
    diag_lambdas: Any, validate_report: Any
) -> None:
    planted = {
        "DB_PASSWORD": "planted-password-8c1f2e",
        "STRIPE_SECRET_KEY": "sk_live_planted_4d7a9b",
        "PLAIN_SETTING": "planted-plain-value-5e3c",  # not named like a secret: still no value
        "API_TOKEN": "planted-token-0a9f",
    }
    lam = diag_lambdas(env=planted)
    lam.invoke()
    lam.invoke()
    reports = lam.reports(2)
    diag = validate_report(reports[0])["diagnostics"]
    for name in planted:
        assert name in diag["env_names"]
    text = "\n".join(json.dumps(r) for r in reports)
    for value in planted.values():
        assert value not in text


def test_imports_before_lambdascope_make_the_tracking_partial(diag_lambdas: Any) -> None:
    lam = diag_lambdas(header="import email.parser\n")
    lam.invoke()
    (report,) = lam.reports(1)
    diag = report["diagnostics"]
    assert diag["import_tracking"] == "partial"
    # What came after lambdascope is still timed.
    assert diag["slowest_imports"][0]["module"] == "diag_slow_dep"
    assert "email.parser" not in json.dumps(diag["imports"])


def test_diagnostics_off_installs_nothing(diag_lambdas: Any) -> None:
    lam = diag_lambdas(env={"LAMBDASCOPE_DIAGNOSTICS": "0"})
    answer = lam.invoke()
    (report,) = lam.reports(1)
    assert "diagnostics" not in report
    assert answer["importtime_loaded"] is False
    assert "_TimedFinder" not in answer["meta_path"]


@pytest.mark.parametrize("init_type", ["provisioned-concurrency", "snap-start"])
def test_first_invocations_that_are_not_cold_starts_have_diagnostics(
    diag_lambdas: Any, validate_report: Any, init_type: str
) -> None:
    lam = diag_lambdas(init_type=init_type)
    lam.invoke()
    lam.invoke()
    first, second = lam.reports(2)
    assert first["invocation"]["cold_start"] is False
    assert first["invocation"]["init_type"] == init_type
    diag = validate_report(first)["diagnostics"]
    assert diag["slowest_imports"][0]["module"] == "diag_slow_dep"
    assert diag["init_ms"] == first["invocation"]["init_duration_ms"]
    assert diag["handler_import_ms"] >= SLOW_S * 1000
    assert "diagnostics" not in second


def test_thousands_of_modules_stay_bounded(diag_lambdas: Any, validate_report: Any) -> None:
    """2,000 tiny modules and a chain of 20 modules of about 2 ms each: the tree keeps at most
    300 nodes and 12 levels, the whole field under 64 KB."""
    files = {f"many_mods/m{k}.py": f"VALUE_{k} = {k}\n" for k in range(2000)}
    files["many_mods/__init__.py"] = "".join(f"from . import m{k}\n" for k in range(2000))
    for k in range(20):
        body = "import time\n_end = time.perf_counter() + 0.002\n"
        body += "while time.perf_counter() < _end:\n    pass\n"
        if k < 19:
            body += f"import chain_{k + 1}\n"
        files[f"chain_{k}.py"] = body
    lam = diag_lambdas(extra="import many_mods\nimport chain_0\n", files=files)
    lam.invoke()
    (report,) = lam.reports(1)
    diag = validate_report(report)["diagnostics"]
    assert diag["imports_timed"] >= 2020
    nodes = list(walk(diag["imports"]))
    assert len(nodes) <= 300
    assert max(depth for _, depth in nodes) <= 12
    chain = [node["module"] for node, _ in nodes if node["module"].startswith("chain_")]
    assert "chain_0" in chain and "chain_19" not in chain  # cut at 12 levels
    assert len(json.dumps(diag, ensure_ascii=False).encode()) <= 64 * 1024
    slowest = [entry["module"] for entry in diag["slowest_imports"]]
    assert {"many_mods", "diag_slow_dep", "chain_0"} <= set(slowest)
    assert not any(name.startswith(("many_mods.", "chain_1")) for name in slowest)  # inside


# -- failures never reach the function ------------------------------------------------------


def test_failing_diagnostics_leave_the_answer_and_the_report(
    diag_lambdas: Any, validate_report: Any
) -> None:
    extra = textwrap.dedent(
        """
        from lambdascope import _diagnostics

        def _broken(*args, **kwargs):
            raise RuntimeError("injected diagnostics fault")

        _diagnostics.gather = _broken
        """
    )
    lam = diag_lambdas(extra=extra, clean=False)
    answer = lam.invoke()
    lam.invoke()
    first, second = lam.reports(2)
    assert "_TimedFinder" not in answer["meta_path"]
    validate_report(first)
    assert first["invocation"]["status"] == "ok"
    assert "diagnostics" not in first and "diagnostics" not in second
    assert lam.output.count(INTERNAL_ERROR) == 1
    assert "injected diagnostics fault" in lam.output


def test_a_failing_import_timer_never_fails_an_import(
    diag_lambdas: Any, validate_report: Any
) -> None:
    """The finder's bookkeeping breaks after ``import lambdascope``: every later import still
    works (and the handler with it); what could not be timed is simply not in the tree."""
    broken = (
        "from lambdascope import _importtime\n"
        "def _broken(*args, **kwargs):\n"
        "    raise RuntimeError('injected import-timing fault')\n"
        "_importtime._enter = _broken\n"
        "_importtime._leave = _broken\n"
    )
    lam = diag_lambdas(after_agent=broken)
    answer = lam.invoke()
    (report,) = lam.reports(1)
    assert "_TimedFinder" not in answer["meta_path"]
    diag = validate_report(report)["diagnostics"]
    assert diag["import_tracking"] == "full"
    assert diag["slowest_imports"] == []  # nothing could be timed, nothing is made up


# -- unused imports: sys.monitoring, Python 3.12+ ---------------------------------------------

RUN_FIRST_INVOCATION = r'''
import json, os, sys
sys.path.insert(0, os.environ["TASK_ROOT"])
import diag_app  # imports lambdascope first, as a handler module should
from lambdascope.testing import fake_context

def count_calls():
    # The PY_START callback is called once per code object, however often the code runs.
    from lambdascope import _importtime
    calls = []
    original = _importtime._on_start
    def counting(code, offset):
        calls.append(code.co_name)
        return original(code, offset)
    _importtime._on_start = counting
    return calls

calls = count_calls()
first = diag_app.handler({}, fake_context())
for _ in range(3):
    diag_app.handler({}, fake_context())
tool = sys.monitoring.get_tool(4) or sys.monitoring.get_tool(3)
print(json.dumps({"first": first, "tool_after": tool, "work_calls": calls.count("work")}))
'''


def pythons_312_and_later() -> list[str]:
    found: dict[str, str] = {}
    candidates = [
        *glob.glob("/root/.pyenv/versions/3.1[2-9]*/bin/python"),
        *glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")),
        *(shutil.which(f"python3.{minor}") or "" for minor in range(12, 20)),
    ]
    if sys.version_info >= (3, 12):
        candidates.append(sys.executable)
    for path in candidates:
        if not path or not os.path.exists(path):
            continue
        try:
            version = subprocess.run(
                [path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if tuple(int(p) for p in version.split(".")[:2]) >= (3, 12):
            found.setdefault(version, path)
    return [found[v] for v in sorted(found)]


def test_unused_imports_on_python_3_12_and_later(tmp_path: pathlib.Path) -> None:
    """The agent on Python >= 3.12, in a Lambda-like environment, without the runtime client:
    the first report lists the imports whose code never ran (``diag_unused_dep``, with the
    ``decimal`` it imported), marks the slow import unused and the used one used, and after
    the first invocation the ``sys.monitoring`` tool id is free again."""
    pythons = pythons_312_and_later()
    assert pythons, "no Python >= 3.12 found: unused_imports cannot be tested"
    for python in pythons:
        root = tmp_path / os.path.basename(os.path.dirname(os.path.dirname(python)))
        write_package(root)
        reports = root.parent / f"{root.name}.jsonl"
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("LAMBDASCOPE_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(
            {
                "PYTHONPATH": AGENT_PATH,
                "TASK_ROOT": str(root),
                "LAMBDA_TASK_ROOT": str(root),
                "_HANDLER": "diag_app.handler",
                "AWS_LAMBDA_FUNCTION_NAME": "diag-test",
                "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]abc",
                "LAMBDASCOPE_EXPORTERS": "file",
                "LAMBDASCOPE_FILE": str(reports),
                "LAMBDASCOPE_SPOOL_DIR": str(root.parent / f"{root.name}-spool"),
                "LAMBDASCOPE_INSTRUMENT": "none",  # wrapt's C part is the venv's (3.11)
            }
        )
        done = subprocess.run(
            [python, "-c", RUN_FIRST_INVOCATION], env=env, cwd=str(root),
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert INTERNAL_ERROR not in done.stderr + done.stdout, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["tool_after"] is None  # the tool id was given back
        assert seen["work_calls"] == 1  # four invocations, the callback once
        lines = reports.read_text().splitlines()
        assert len(lines) == 4
        first, *warm = (json.loads(line) for line in lines)
        diag = first["diagnostics"]
        assert all("diagnostics" not in r for r in warm)
        assert diag["python"] == seen_version(python)
        unused = diag["unused_imports"]
        assert isinstance(unused, list)
        assert "diag_unused_dep" in unused
        assert "diag_slow_dep" in unused  # imported, slow, and never called
        assert "diag_used_dep" not in unused
        assert not any(name == "lambdascope" or name.startswith("lambdascope.") for name in unused)
        by_module = {e["module"]: e for e in diag["slowest_imports"]}
        assert by_module["diag_slow_dep"]["used"] is False
        assert diag["slowest_imports"][0]["module"] == "diag_slow_dep"


def seen_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()

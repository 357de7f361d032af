"""Hand-made ``profile`` and ``diagnostics`` fields, as the agent sends them (the shapes of the
shipped schema and docs/collector.md, "Profiles and cold-start diagnostics"), on reports of
:func:`collector_reports.make_report`: for the store, CLI and dashboard tests of issue 14.

The profile has a known hot frame (``compute_hash``, 70 of 120 samples) and a function whose
name is markup; the diagnostics' import tree has a slow, unused ``pandas`` and a module whose
name is markup.
"""

from __future__ import annotations

from typing import Any

from collector_reports import make_report

EVIL_FRAME = "<script>alert(1)</script>"
EVIL_MODULE = "<img src=x onerror=alert(1)>"
# Frames as the agent writes them: relative to the task root or to their sys.path entry.
HOT = "app.py:compute_hash:12"
BOTO = "botocore/client.py:_make_api_call:960"
SSL = "ssl.py:read:1100"
BOOT = "/var/runtime/awslambdaric/bootstrap.py:run:480"  # an absolute path, from elsewhere


# -- the fields ----------------------------------------------------------------------------------

def sample_profile() -> dict[str, Any]:
    """120 samples: 70 end in compute_hash (the hot frame), 30 in ssl.read under botocore,
    15 in a function whose name is markup, 5 in the agent's "(other stacks)"."""
    return {
        "interval_ms": 10, "samples": 120, "duration_ms": 1250.0, "mode": "rate",
        "dropped_samples": 2, "truncated_stacks": 1,
        "stacks": [
            {"frames": ["app.py:handler:20", HOT], "count": 70},
            {"frames": ["app.py:handler:21", BOTO, SSL], "count": 30},
            {"frames": ["app.py:handler:22", f"app.py:{EVIL_FRAME}:3"], "count": 15},
            {"frames": ["(other stacks)"], "count": 5},
        ],
    }


def slowest(*entries: tuple[str, float, bool | None], parent: str = "app"
            ) -> list[dict[str, Any]]:
    return [{"module": m, "ms": ms, "self_ms": ms / 4, "parent": parent, "used": used}
            for m, ms, used in entries]


def sample_diagnostics(slowest_imports: list[dict[str, Any]] | None = None
                       ) -> dict[str, Any]:
    if slowest_imports is None:
        slowest_imports = slowest(("pandas", 420.0, False), ("numpy", 200.0, False),
                                  ("boto3", 180.0, True), ("botocore", 160.0, True),
                                  (EVIL_MODULE, 27.0, None))
    return {
        "init_ms": 812.5, "handler": "app.handler", "handler_import_ms": 640.2,
        "import_tracking": "full",
        "imports": {"module": "app", "ms": 640.2, "self_ms": 12.0, "children": [
            {"module": "pandas", "ms": 420.0, "self_ms": 30.0, "children": [
                {"module": "numpy", "ms": 200.0, "self_ms": 150.0, "children": []},
                {"module": "pytz", "ms": 3.0, "self_ms": 3.0, "children": []}]},
            {"module": "boto3", "ms": 180.0, "self_ms": 10.0, "children": [
                {"module": "botocore", "ms": 160.0, "self_ms": 60.0, "children": []}]},
            {"module": "json", "ms": 0.5, "self_ms": 0.5, "children": []},
            {"module": EVIL_MODULE, "ms": 27.0, "self_ms": 27.0, "children": []}]},
        "slowest_imports": slowest_imports,
        "unused_imports": ["pandas", "numpy"],
        "python": "3.12.1", "implementation": "CPython", "runtime": "AWS_Lambda_python3.12",
        "architecture": "x86_64",
        "distributions": [
            {"name": "boto3", "version": "1.34.0", "size_kb": 800, "location": "task"},
            {"name": "pandas", "version": "2.2.0", "size_kb": 60000, "location": "task"},
            {"name": "numpy", "version": "1.26.0", "size_kb": 35000, "location": "layer"}],
        "env_names": ["AWS_REGION", "DB_PASSWORD", "PATH"],
        "tmp": {"total_mb": 512.0, "used_mb": 12.0},
        "limits": {"nofile": [1024, 4096], "nproc": None, "stack_kb": 8192, "as_mb": None},
        "sandbox_id": "2026/01/05/[1]0123456789abcdef",
    }


def cold_report(start_ms: float, slowest_imports: list[dict[str, Any]] | None = None, *,
                function: str = "orders", version: str | None = "1",
                profile: bool = False, **kw: Any) -> dict[str, Any]:
    report = make_report(function=function, version=version, start_ms=start_ms, cold=True,
                         init_ms=800.0, **kw)
    report["diagnostics"] = sample_diagnostics(slowest_imports)
    if profile:
        report["profile"] = sample_profile()
    return report


def rid(report: dict[str, Any]) -> str:
    return str(report["invocation"]["request_id"])

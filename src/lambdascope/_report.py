"""The report of one invocation (schema ``lambdascope/1``) and its serialisation (pure)."""

from __future__ import annotations

import json
import math
import os
import sys
from types import TracebackType
from typing import Any

SCHEMA = "lambdascope/1"
MAX_FRAMES = 64
MAX_MESSAGE = 4096


def architecture() -> str:
    machine = os.uname().machine.lower() if hasattr(os, "uname") else ""
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"


def _memory_limit(env: Any) -> int | None:
    raw = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    try:
        value = int(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def function_info(service: str | None, environ: Any = None) -> dict[str, Any]:
    """The static part of ``function`` (everything but the ARN, which comes per invocation)."""
    env = os.environ if environ is None else environ
    name = env.get("AWS_LAMBDA_FUNCTION_NAME")
    return {
        "name": name,
        "version": env.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "arn": None,
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        "architecture": architecture(),
        "memory_limit_mb": _memory_limit(env),
        "log_group": env.get("AWS_LAMBDA_LOG_GROUP_NAME"),
        "log_stream": env.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        "service": service or name,
    }


PYTHON_VERSION = "%d.%d.%d" % sys.version_info[:3]


def python_version() -> str:
    return PYTHON_VERSION


def error_info(
    exc: BaseException, skip: int = 1, scrub: Any = None
) -> dict[str, Any]:
    """Type, message and stack of ``exc``: outermost call first, the raising frame last.

    ``skip`` drops the agent's own wrapper frames at the top of the traceback; ``scrub`` cleans
    the message of secrets before it is cut to length.
    """
    cls = type(exc)
    module = cls.__module__
    qualname = cls.__qualname__
    name = qualname if module in ("builtins", "__main__") else f"{module}.{qualname}"
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable exception>"
    if scrub is not None:
        message = scrub(message)
    frames: list[dict[str, Any]] = []
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and skip > 0 and tb.tb_next is not None:
        tb, skip = tb.tb_next, skip - 1
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append({"file": code.co_filename, "line": tb.tb_lineno, "function": code.co_name})
        tb = tb.tb_next
    if len(frames) > MAX_FRAMES:  # keep the entry and the raising end
        frames = frames[:8] + frames[-(MAX_FRAMES - 8) :]
    return {"type": name, "message": message[:MAX_MESSAGE], "stack": frames}


def _fix(value: Any, depth: int = 0) -> Any:
    """Make ``value`` JSON-safe: non-finite floats and unknown objects become strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if depth > 32:
        return str(value)
    if isinstance(value, dict):
        return {str(k): _fix(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_fix(v, depth + 1) for v in value]
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


# No circular-reference bookkeeping: the report is built by the agent; a user attribute that
# refers to itself ends in RecursionError, and the fallback below turns it into text.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)


def dumps(report: dict[str, Any]) -> str:
    """Serialise a report to one line of JSON. Nothing is dropped: what JSON cannot carry is
    turned into a string."""
    try:
        return _ENCODER.encode(report)
    except (TypeError, ValueError, RecursionError):
        return _ENCODER.encode(_fix(report))

"""The report of one invocation (schema ``lambdascope/1``) and its serialisation (pure)."""

from __future__ import annotations

import math
import os
import sys
from types import TracebackType

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
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
    exc: BaseException, skip: int = 1, scrub: Any = None, tb: TracebackType | None = None
) -> dict[str, Any]:
    """Type, message and stack of ``exc``: outermost call first, the raising frame last.

    ``skip`` drops the agent's own wrapper frames at the top of the traceback; ``scrub`` cleans
    the message of secrets before it is cut to length; ``tb`` is the traceback as it was when
    the exception left the handler (a report built later would otherwise see the frames the
    exception went on through, such as the runtime client's).
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
    if tb is None:
        tb = exc.__traceback__
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


_encode: Any = None  # made with the first report: ``import lambdascope`` does not need json


def _encoder() -> Any:
    # No circular-reference bookkeeping: the report is built by the agent; a user attribute
    # that refers to itself ends in RecursionError, and the fallback below turns it into text.
    global _encode
    import json

    _encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False,
                               check_circular=False).encode
    return _encode


def dumps(report: dict[str, Any]) -> str:
    """Serialise a report to one line of JSON. Nothing is dropped: what JSON cannot carry is
    turned into a string."""
    encode = _encode or _encoder()
    try:
        return encode(report)
    except (TypeError, ValueError, RecursionError):
        return encode(_fix(report))


#: The largest serialised report sent; bigger ones are pruned (a collector answers 413 otherwise).
MAX_REPORT_BYTES = 256 * 1024


def prune(report: dict[str, Any], line: str, max_bytes: int = MAX_REPORT_BYTES) -> str:
    """Cut a report that serialises past ``max_bytes``, least valuable first: the captured event,
    successful child spans (latest first), log records (oldest kept), metrics, then the
    attributes of the spans left. The invocation, error, timeout and resource facts, the root
    span and spans with errors are never pruned. Dropped spans are counted in ``dropped_spans``.
    """
    if len(line) <= max_bytes:
        return line
    if report.pop("event", None) is not None:
        line = dumps(report)
    spans = report.get("spans") or []
    if len(line) > max_bytes and len(spans) > 1:
        root, children = spans[0], spans[1:]
        errors = [s for s in children if s.get("status") == "error"]
        ok = [s for s in children if s.get("status") != "error"]
        # Estimate how many successful spans fit, then trim.
        per = max(1, (len(line) - 2) // max(1, len(spans)))
        excess = len(line) - max_bytes
        cut = min(len(ok), excess // per + 1)
        if cut:
            report["dropped_spans"] = int(report.get("dropped_spans") or 0) + cut
            kept = ok[: len(ok) - cut]
            report["spans"] = [root, *sorted(kept + errors, key=lambda s: s.get("start_ms", 0))]
            line = dumps(report)
    for key, keep in (("logs", 20), ("metrics", 100)):
        if len(line) > max_bytes and len(report.get(key) or []) > keep:
            report[key] = report[key][-keep:] if key == "logs" else report[key][:keep]
            line = dumps(report)
    if len(line) > max_bytes:
        for span in report.get("spans") or []:
            attrs = span.get("attributes") or {}
            span["attributes"] = {
                k: v for k, v in attrs.items()
                if not isinstance(v, str) or len(v) <= 256
            }
        line = dumps(report)
    if len(line) > max_bytes:  # still too big: only the facts and the root span go
        report["dropped_spans"] = int(report.get("dropped_spans") or 0) + max(
            0, len(report.get("spans") or []) - 1
        )
        report["spans"] = (report.get("spans") or [])[:1]
        report["logs"] = (report.get("logs") or [])[-5:]
        report["metrics"] = (report.get("metrics") or [])[:20]
        line = dumps(report)
    return line

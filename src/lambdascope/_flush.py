"""``flush()``: send what is pending now."""

from __future__ import annotations

from . import _state
from ._guard import internal_error


def flush(timeout_ms: float | None = None) -> bool:
    """Send every report still waiting for delivery (for code that runs outside a handler).

    Returns True when nothing is left undelivered. Never raises.
    """
    ok = True
    try:
        for pipeline in list(_state.S.pipelines.values()):
            if pipeline.has_waiting() and not pipeline.deliver(
                [], timeout_ms, ignore_backoff=True
            ):
                ok = False
    except Exception as exc:
        internal_error("flush", exc)
        return False
    return ok

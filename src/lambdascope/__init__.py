"""lambdascope: an in-function monitoring agent for Python AWS Lambda functions.

``@monitor`` on the handler gives one report per invocation: timing, cold start, memory and CPU,
spans, custom metrics and labels, and the error if one happened.
"""

import time as _time

_t0 = _time.perf_counter()

from . import _state  # noqa: E402
from ._decorator import monitor  # noqa: E402
from ._flush import flush  # noqa: E402
from ._invocation import Invocation, current, label, metric  # noqa: E402
from ._tracing import span  # noqa: E402


def instrument() -> None:
    """Apply the automatic instrumentation that ``LAMBDASCOPE_INSTRUMENT`` names (every AWS SDK
    and HTTP call becomes a span). ``@monitor`` does this on its first invocation; calling it
    again changes nothing."""
    from .instrumentation import instrument as _instrument

    _instrument()


def uninstrument() -> None:
    """Remove the automatic instrumentation, restoring every patched function exactly."""
    from .instrumentation import uninstrument as _uninstrument

    _uninstrument()


__version__ = "0.1.0"

__all__ = [
    "Invocation",
    "__version__",
    "current",
    "flush",
    "instrument",
    "label",
    "metric",
    "monitor",
    "span",
    "uninstrument",
]

for _obj in (monitor, flush, current, label, metric, span, Invocation, instrument, uninstrument):
    try:
        _obj.__module__ = "lambdascope"
    except (AttributeError, TypeError):  # pragma: no cover
        pass



def _time_imports() -> None:
    """Inside Lambda, time the imports that follow until the end of init (the cold-start
    diagnostics, docs/profiling.md): a finder first on ``sys.meta_path``, removed at the end of
    init. ``LAMBDASCOPE_DIAGNOSTICS=false`` (or a disabled agent) leaves it out."""
    import os
    import sys

    env = os.environ
    if not (env.get("AWS_LAMBDA_FUNCTION_NAME") or "awslambdaric" in sys.modules):
        return
    off = ("0", "false", "no", "off")
    if env.get("LAMBDASCOPE_DIAGNOSTICS", "").strip().lower() in off:
        return
    if env.get("LAMBDASCOPE_DISABLED", "").strip().lower() not in ("", *off):
        return
    try:
        from . import _importtime

        _importtime.install(_t0)
    except Exception:  # no import timing; nothing else changes
        pass


_time_imports()
_state.import_ms = (_time.perf_counter() - _t0) * 1000.0
del _obj

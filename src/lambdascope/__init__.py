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

__version__ = "0.1.0"

__all__ = [
    "Invocation",
    "__version__",
    "current",
    "flush",
    "label",
    "metric",
    "monitor",
    "span",
]

for _obj in (monitor, flush, current, label, metric, span, Invocation):
    try:
        _obj.__module__ = "lambdascope"
    except (AttributeError, TypeError):  # pragma: no cover
        pass

_state.import_ms = (_time.perf_counter() - _t0) * 1000.0
del _obj

"""Threads started from a handler belong to its invocation: work submitted to a
``ThreadPoolExecutor`` and ``threading.Thread``s run in a copy of the context they were started
from, so their spans, metrics and HTTP and AWS calls are parented where they were started.
(asyncio tasks copy the context by themselves.)"""

from __future__ import annotations

import contextvars
from types import ModuleType
from typing import Any

from .._invocation import CURRENT
from ._base import Instrumentor

_CTX = "_lambdascope_context"


class ThreadingInstrumentor(Instrumentor):
    name = "threading"
    modules = ("threading", "concurrent.futures.thread")

    def patch(self, module_name: str, module: ModuleType) -> None:
        if module_name == "threading":
            self.wrap(module.Thread, "start", self._start)
            if "_bootstrap_inner" in module.Thread.__dict__:
                self.wrap(module.Thread, "_bootstrap_inner", self._bootstrap_inner)
        else:
            self.wrap(module.ThreadPoolExecutor, "submit", self._submit)

    def _start(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.enabled and CURRENT.get() is not None:
            instance.__dict__[_CTX] = contextvars.copy_context()
        return wrapped(*args, **kwargs)

    def _bootstrap_inner(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        ctx = instance.__dict__.pop(_CTX, None)
        if ctx is None:
            return wrapped(*args, **kwargs)
        return ctx.run(wrapped, *args, **kwargs)

    def _submit(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.enabled or CURRENT.get() is None or not args:
            return wrapped(*args, **kwargs)
        ctx = contextvars.copy_context()
        fn = args[0]
        return wrapped(ctx.run, fn, *args[1:], **kwargs)

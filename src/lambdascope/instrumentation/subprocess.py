"""``subprocess``: each child process started from a handler (a tool shipped with the function
and run from ``/tmp``, say) is a span from its start until its exit is seen, named after the
command, with its exit code. Arguments are not recorded (they often carry secrets)."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from . import _spans, _suppress
from ._base import Instrumentor

_ATTR = "_lambdascope_span"


def _command(args: Any) -> str:
    if isinstance(args, (str, bytes)):
        text = args.decode("utf-8", "replace") if isinstance(args, bytes) else args
        first = text.strip().split(" ", 1)[0] if text.strip() else "?"
    elif isinstance(args, (list, tuple)) and args:
        first = args[0]
        if isinstance(first, bytes):
            first = first.decode("utf-8", "replace")
        first = os.fspath(first) if not isinstance(first, str) else first
    else:
        try:
            first = os.fspath(args)
        except TypeError:
            first = "?"
        if isinstance(first, bytes):
            first = first.decode("utf-8", "replace")
    return os.path.basename(str(first)) or str(first)


class SubprocessInstrumentor(Instrumentor):
    name = "subprocess"
    modules = ("subprocess",)

    def patch(self, module_name: str, module: ModuleType) -> None:
        self.wrap(module.Popen, "__init__", self._init)
        self.wrap(module.Popen, "wait", self._done)
        self.wrap(module.Popen, "poll", self._done)

    def _init(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.enabled or _suppress.LEVEL.get() >= _suppress.ALL:
            return wrapped(*args, **kwargs)
        handle = None
        try:
            command = _command(args[0] if args else kwargs.get("args"))
            attrs: dict[str, Any] = {"process.executable.name": command}
            if kwargs.get("shell"):
                attrs["lambdascope.process.shell"] = True
            handle = _spans.start(f"subprocess {command}", attrs, kind="internal", level=2)
        except Exception as exc:
            from .._guard import internal_error

            internal_error("subprocess.start", exc)
        if handle is None:
            return wrapped(*args, **kwargs)
        try:
            wrapped(*args, **kwargs)
        except BaseException as exc:
            handle[1].attributes["error.type"] = type(exc).__qualname__
            _spans.finish_safely(handle, exc)
            raise
        handle[1].attributes["process.pid"] = instance.pid
        instance.__dict__[_ATTR] = handle

    def _done(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        if instance.__dict__.get(_ATTR) is not None and instance.returncode is not None:
            handle = instance.__dict__.pop(_ATTR)
            code = instance.returncode
            handle[1].attributes["process.exit.code"] = code
            if code != 0:
                handle[1].attributes["error.type"] = str(code)
            _spans.finish_safely(handle, error=code != 0)
        return result

"""``@monitor``: bare or with options, on sync and ``async def`` handlers."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from . import _state
from ._guard import internal_error
from ._monitor import begin, choose_flusher, end, hook_init_end, register_snapstart, unmonitored_end
from ._tracing import is_async

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__lambdascope_monitored__"


def _already_monitored(fn: Any) -> bool:
    seen = 0
    while fn is not None and seen < 20:
        seen += 1
        if getattr(fn, _MARK, False) is True:
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def _wrap(handler: F, options: dict[str, Any]) -> F:
    t0 = time.perf_counter()
    try:
        if _already_monitored(handler):
            return handler
        from ._config import Config

        config = Config(options)
        if config.disabled:
            return handler
        name = getattr(handler, "__qualname__", None) or getattr(handler, "__name__", "handler")
        S = _state.S
        if not S.init_end_exact:
            S.init_end = time.time()  # decoration: the last part of init seen so far
        register_snapstart()
        hook_init_end()
        choose_flusher(config)
    except Exception as exc:
        internal_error("monitor.decorate", exc)
        return handler

    if is_async(handler):

        @functools.wraps(handler)
        async def async_monitored(*args: Any, **kwargs: Any) -> Any:
            handle = begin(config, name, args, kwargs)
            if handle is None:
                try:
                    return await handler(*args, **kwargs)
                finally:
                    unmonitored_end(args, kwargs)
            try:
                result = await handler(*args, **kwargs)
            except BaseException as exc:
                end(handle, None, exc)
                raise
            end(handle, result, None)
            return result

        wrapper: Any = async_monitored
    else:

        @functools.wraps(handler)
        def monitored(*args: Any, **kwargs: Any) -> Any:
            handle = begin(config, name, args, kwargs)
            if handle is None:
                try:
                    return handler(*args, **kwargs)
                finally:
                    unmonitored_end(args, kwargs)
            try:
                result = handler(*args, **kwargs)
            except BaseException as exc:
                end(handle, None, exc)
                raise
            end(handle, result, None)
            return result

        wrapper = monitored

    try:
        setattr(wrapper, _MARK, True)
        wrapper.__lambdascope_config__ = config
        S.decorate_ms += (time.perf_counter() - t0) * 1000.0
    except Exception as exc:  # pragma: no cover
        internal_error("monitor.decorate", exc)
    return wrapper  # type: ignore[no-any-return]


if TYPE_CHECKING:
    @overload
    def monitor(handler: F, /) -> F: ...
    @overload
    def monitor(
        handler: None = None, /, *, profile: bool = False, **options: Any
    ) -> Callable[[F], F]: ...


def monitor(handler: Any = None, /, *, profile: bool | None = None, **options: Any) -> Any:
    """Monitor a Lambda handler: ``@monitor`` or ``@monitor(service="orders", ...)``.

    Options are the configuration keys (``LAMBDASCOPE_*`` in lower case without the prefix) and
    beat the environment. ``profile=True`` profiles every invocation of this handler (the
    sampling profiler; ``LAMBDASCOPE_PROFILE_RATE`` profiles a share of all invocations). The
    handler keeps its name, signature and docstring, returns exactly what it returns and raises
    exactly what it raises.
    """
    if profile is not None:
        options["profile"] = profile
    if handler is None:
        return functools.partial(_wrap, options=options)
    if not callable(handler):
        raise TypeError("monitor() takes the handler function, or only keyword options")
    return _wrap(handler, options)

"""Suppression: the agent's own calls are never traced, and a call traced at one level (an AWS
SDK call, a ``requests`` call) makes no second span at the levels beneath it."""

from __future__ import annotations

from contextvars import ContextVar, Token

#: Nothing beneath is traced or injected (the agent's own exports, Runtime API calls).
ALL = 2
#: HTTP layers beneath make no span (they run inside an AWS or a higher-level HTTP span).
HTTP = 1

LEVEL: ContextVar[int] = ContextVar("lambdascope_suppress", default=0)


class suppressed:
    """``with suppressed(ALL): ...`` — a context manager raising the suppression level."""

    __slots__ = ("_level", "_token")

    def __init__(self, level: int = ALL) -> None:
        self._level = level
        self._token: Token[int] | None = None

    def __enter__(self) -> None:
        if LEVEL.get() < self._level:
            self._token = LEVEL.set(self._level)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            LEVEL.reset(self._token)
            self._token = None


def level() -> int:
    return LEVEL.get()

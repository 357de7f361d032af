"""Containment of the agent's own failures.

Every piece of agent work that is not the user's code runs under :func:`guarded` (or calls
:func:`internal_error` from an ``except`` block). A failure is logged once per site on the
``lambdascope`` logger and swallowed, so the handler returns or raises exactly as it would
without the agent.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

WARNING = 30  # logging.WARNING, without importing logging before it is needed


def _logger() -> logging.Logger:
    """The ``lambdascope`` logger: logging is imported with the first message, not with the
    agent (the first invocation imports it anyway, for the log capture)."""
    import logging

    return logging.getLogger("lambdascope")

_seen_sites: set[str] = set()
# Test hook: called with (site, exception) for every swallowed error (see tests/conftest.py).
listener: Callable[[str, BaseException], None] | None = None


def internal_error(site: str, exc: BaseException) -> None:
    """Record an agent failure at ``site``: log the first one with its traceback, count the rest."""
    try:
        if listener is not None:
            listener(site, exc)
        if site in _seen_sites:
            _logger().debug("lambdascope: internal error again in %s: %r", site, exc)
            return
        _seen_sites.add(site)
        _logger().warning(
            "lambdascope: internal error in %s (the function is not affected): %r",
            site,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    except Exception:  # pragma: no cover - logging itself is broken
        pass


def log_once(site: str, message: str, *args: object, level: int = WARNING) -> None:
    """Log a non-exception problem (bad config, refused report) once per site."""
    if site in _seen_sites:
        return
    _seen_sites.add(site)
    try:
        _logger().log(level, message, *args)
    except Exception:  # pragma: no cover
        pass


class guarded:
    """Context manager that swallows ``Exception`` raised by agent code and logs it once."""

    __slots__ = ("site",)

    def __init__(self, site: str) -> None:
        self.site = site

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        internal_error(self.site, exc)
        return True


def reset() -> None:
    """Forget which sites have logged (test helper)."""
    _seen_sites.clear()

"""The instrumentor base: idempotent, undoable patches through wrapt.

Each instrumentor patches the classes that define the functions it wraps and records
``(owner, attribute, original, proxy)``. ``uninstrument()`` puts the original object back while
our proxy is still the attribute; if something else has wrapped over it since, the proxy stays
but turns into a pass-through (every wrapper checks ``enabled`` first). Libraries imported after
``instrument()`` are patched by a post-import hook, which likewise checks ``enabled``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType

from .._guard import internal_error

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any


class Instrumentor:
    #: The name used in ``LAMBDASCOPE_INSTRUMENT``.
    name = ""
    #: Modules whose import applies the patches (each once).
    modules: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.enabled = False
        self._ledger: list[tuple[Any, str, Any, Any]] = []
        self._patched: set[str] = set()
        self._hooked: set[str] = set()
        self._lock = threading.RLock()

    # -- public -------------------------------------------------------------------------
    def instrument(self) -> None:
        with self._lock:
            if self.enabled:
                return
            self.enabled = True
            for name in self.modules:
                module = sys.modules.get(name)
                if module is not None:
                    self._apply(name, module)
                elif name not in self._hooked:
                    import wrapt

                    wrapt.register_post_import_hook(self._on_import, name)
                    self._hooked.add(name)

    def uninstrument(self) -> None:
        with self._lock:
            self.enabled = False
            for owner, attr, original, proxy in reversed(self._ledger):
                try:
                    if owner.__dict__.get(attr) is proxy:
                        setattr(owner, attr, original)
                except Exception as exc:  # pragma: no cover - a read-only owner
                    internal_error(f"uninstrument.{self.name}", exc)
            self._ledger.clear()
            self._patched.clear()

    # -- for subclasses -------------------------------------------------------------------
    def patch(self, module_name: str, module: ModuleType) -> None:
        raise NotImplementedError

    def wrap(self, owner: Any, attr: str, wrapper: Callable[..., Any]) -> None:
        """Wrap ``owner.attr`` (a class or module attribute) with a wrapt function wrapper."""
        import wrapt

        original = owner.__dict__.get(attr)
        if original is None:
            return
        wrapt.wrap_function_wrapper(owner, attr, wrapper)
        self._ledger.append((owner, attr, original, owner.__dict__.get(attr)))

    # -- internals ------------------------------------------------------------------------
    def _on_import(self, module: ModuleType) -> None:
        with self._lock:
            if self.enabled:
                self._apply(module.__name__, module)

    def _apply(self, name: str, module: ModuleType) -> None:
        if name in self._patched:
            return
        self._patched.add(name)
        try:
            self.patch(name, module)
        except Exception as exc:
            internal_error(f"instrument.{self.name}", exc)

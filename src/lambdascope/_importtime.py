"""Import timing for the cold-start diagnostics, from ``import lambdascope`` to the end of init.

Imported by ``lambdascope/__init__.py`` only inside Lambda (and unless ``LAMBDASCOPE_DIAGNOSTICS``
or ``LAMBDASCOPE_DISABLED`` says otherwise). :func:`install` puts a stand-in in front of each
finder on ``sys.meta_path``. For every module imported afterwards on the importing thread, the
stand-in asks its finder (timing the look-up) and puts a thin loader in front of the real one,
which times the module's creation and execution and hands the spec and module their real loader
back before any of the module's own code runs. A stack of the modules being imported gives the
tree (an import made while another one executes is its child).

The finders are themselves again at the end of init (the runtime client's first request for an
event, or the first invocation), so warm invocations pay nothing. During the first invocation
only, on Python 3.12 and later, :func:`watch_start` notes which source files run any code
(``sys.monitoring`` ``PY_START`` events, each code object reported once), to tell the imports the
first invocation did not use. Everything else (shaping the tree, names, versions) is done after
the response by :mod:`lambdascope._diagnostics`.

Kept small on purpose: it is imported on every cold start inside Lambda.
"""

from __future__ import annotations

import os
import sys
import time
from _thread import get_ident

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

_perf = time.perf_counter
_AGENT = __name__.rpartition(".")[0]  # "lambdascope"
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Past this many modules, or this long after install, the stand-ins step aside (a process
#: that never invokes a monitored handler must not pay for it forever).
MAX_MODULES = 20_000
MAX_SECONDS = 900.0

#: sys.monitoring tool ids tried, in order (0-2 and 5 are the debugger's, coverage's,
#: profilers' and optimizers' by convention).
_TOOL_IDS = (4, 3)
_UNTIMED = frozenset(("BuiltinImporter", "FrozenImporter"))
_TOOL_NAME = "lambdascope"


class Node:
    """One imported module: its name, file, time (ms, look-up included) and the imports it made."""

    __slots__ = ("by_agent", "children", "file", "find_ms", "ms", "name", "start")

    def __init__(self, name: str, find_ms: float, by_agent: bool = False) -> None:
        self.name = name
        self.find_ms = find_ms
        self.by_agent = by_agent  # imported by the agent's own code (e.g. while decorating)
        self.start = 0.0
        self.ms: float | None = None  # None: never executed (a spec looked up but not loaded)
        self.file: str | None = None
        self.children: list[Node] = []


class Recorder:
    """What the finder saw. One per process."""

    def __init__(self, import_start: float) -> None:
        self.thread = get_ident()
        self.import_start = import_start  # perf_counter at the start of ``import lambdascope``
        self.install_perf = _perf()
        self.install_wall = time.time()
        self.top: list[Node] = []  # modules imported while no other timed import was running
        #: The agent's own share of init: what its code imported after ``import lambdascope``.
        self.agent = Node(_AGENT, 0.0, True)
        self.stack: list[Node] = []
        self.count = 0
        self.active = True
        self.end_wall: float | None = None  # the end of init, as the agent saw it
        #: Module-level frames that were importing lambdascope, innermost first:
        #: (module name, code object, offset of the instruction running).
        self.importers: list[tuple[str, Any, int]] = []
        #: Source files that ran code during the first invocation (None: not watched).
        self.executed: set[str] | None = None
        self.tool_id: int | None = None


RECORDER: Recorder | None = None


def _enter(node: Node) -> None:
    node.start = _perf()
    rec = RECORDER
    if rec is not None and rec.active:
        if node.by_agent:
            rec.agent.children.append(node)
        else:
            (rec.stack[-1].children if rec.stack else rec.top).append(node)
        rec.stack.append(node)
        rec.count += 1


def _by_agent(frame: Any) -> bool:
    """Whether the import was made by the agent's code: an agent frame between the import
    statement and the module body it runs in (the nearest ``<module>`` frame). No cache keyed
    by code objects: hashing a module's code object hashes all of its bytecode."""
    agent_dir = _AGENT_DIR
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        if filename.startswith(agent_dir):
            return True
        if code.co_name == "<module>" and not filename.startswith("<frozen"):
            return False
        frame = frame.f_back
    return False


class _TimedLoader:
    """Stands in for a module's loader between the look-up and the execution of its code.

    The timing's own bookkeeping never fails an import: whatever goes wrong in it is left out
    of the tree, and the real loader's exceptions pass through unchanged."""

    __slots__ = ("_loader", "_node", "_spec")

    def __init__(self, loader: Any, spec: Any, node: Node) -> None:
        self._loader = loader
        self._spec = spec
        self._node = node

    def __getattr__(self, name: str) -> Any:  # whatever else a caller of find_spec may ask
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        try:
            _enter(self._node)
        except Exception:
            pass
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        loader = self._loader
        node = self._node
        # The real loader back before the module's code runs: the module never sees this one.
        try:
            if self._spec.loader is self:
                self._spec.loader = loader
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = loader
            if not node.start:  # executed without being created first (importlib.reload)
                _enter(node)
        except Exception:
            pass
        try:
            loader.exec_module(module)
        finally:
            try:
                _leave(node, module)
            except Exception:
                pass


def _leave(node: Node, module: Any) -> None:
    node.ms = node.find_ms + (_perf() - node.start) * 1000.0
    node.file = getattr(module, "__file__", None)
    rec = RECORDER
    if rec is not None:
        stack = rec.stack
        if node in stack:  # pops it and anything left above it (a failed creation)
            while stack and stack.pop() is not node:
                pass


class _TimedFinder:
    """Stands in for one of ``sys.meta_path``'s finders during init: asks it, and times the
    module it finds. It compares equal to the finder it stands for, so code that looks for or
    removes that finder in ``sys.meta_path`` still finds it; anything else is the finder's."""

    __slots__ = ("_finder",)

    def __init__(self, finder: Any) -> None:
        self._finder = finder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._finder, name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _TimedFinder):
            other = other._finder
        return other is self._finder

    def __hash__(self) -> int:
        return hash(self._finder)

    def __repr__(self) -> str:
        return f"<lambdascope timing {self._finder!r}>"

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        t0 = _perf()
        spec = self._finder.find_spec(name, path, target)  # raises as it would without us
        if spec is None:  # most calls: the finders before the one that finds it
            return None
        rec = RECORDER
        if rec is None or not rec.active or get_ident() != rec.thread:
            return spec
        try:
            if rec.count >= MAX_MODULES or t0 - rec.install_perf > MAX_SECONDS:
                stop(None)
                return spec
            loader = spec.loader
            if loader is not None and hasattr(loader, "exec_module"):
                node = Node(name, (_perf() - t0) * 1000.0, _by_agent(sys._getframe(1)))
                spec.loader = _TimedLoader(loader, spec, node)
        except Exception:
            pass
        return spec


def _importers() -> list[tuple[str, Any, int]]:
    """The module-level frames importing lambdascope right now, innermost first (the runtime's
    ``__main__`` and the import machinery left out)."""
    found: list[tuple[str, Any, int]] = []
    frame = sys._getframe(1)
    package = __name__.rpartition(".")[0]
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>":
            name = frame.f_globals.get("__name__")
            if (
                isinstance(name, str)
                and name != "__main__"
                and name != package
                and not name.startswith(package + ".")
            ):
                found.append((name, code, frame.f_lasti))
        frame = frame.f_back  # type: ignore[assignment]
    return found


def install(import_start: float) -> None:
    """Put a timing stand-in in front of each finder on ``sys.meta_path`` (once per process).

    Each finder is asked once per import, as without the agent: a module that is not found
    costs no second look-up."""
    global RECORDER
    if RECORDER is not None:
        return
    rec = Recorder(import_start)
    try:
        rec.importers = _importers()
    except Exception:
        rec.importers = []
    RECORDER = rec
    meta_path = sys.meta_path
    for i, finder in enumerate(list(meta_path)):
        # Built-in and frozen modules load from the interpreter itself in microseconds, and
        # those two finders are asked first for every import: they are left as they are.
        if (
            not isinstance(finder, _TimedFinder)
            and hasattr(finder, "find_spec")
            and getattr(finder, "__name__", None) not in _UNTIMED
        ):
            meta_path[i] = _TimedFinder(finder)


def installed() -> bool:
    """Whether a timing stand-in is on ``sys.meta_path``."""
    return any(type(finder) is _TimedFinder for finder in sys.meta_path)


def stop(end_wall: float | None) -> None:
    """The end of init: every finder on ``sys.meta_path`` is itself again; imports already under
    way finish normally (their loaders hand themselves back). ``end_wall`` is the end of init as
    the agent knows it (epoch seconds); the first call wins."""
    rec = RECORDER
    if rec is None:
        return
    if rec.active:
        rec.active = False
        rec.end_wall = end_wall if end_wall is not None else time.time()
    meta_path = sys.meta_path
    for i, finder in enumerate(list(meta_path)):
        if type(finder) is _TimedFinder:
            try:
                meta_path[i] = finder._finder
            except IndexError:  # pragma: no cover - the list changed meanwhile
                pass


# -- the first invocation: which imported files run code (Python 3.12+) ---------------------


def _on_start(code: Any, offset: int) -> Any:
    rec = RECORDER
    if rec is not None and rec.executed is not None:
        rec.executed.add(code.co_filename)
    return _DISABLE


_DISABLE: Any = None


def watch_start() -> None:
    """Start noting the source files that run code (first invocation only; Python 3.12+)."""
    global _DISABLE
    rec = RECORDER
    monitoring = getattr(sys, "monitoring", None)
    if rec is None or monitoring is None or rec.tool_id is not None or rec.executed is not None:
        return
    for tool in _TOOL_IDS:
        try:
            monitoring.use_tool_id(tool, _TOOL_NAME)
        except ValueError:  # taken by another tool
            continue
        _DISABLE = monitoring.DISABLE
        rec.executed = set()
        rec.tool_id = tool
        monitoring.register_callback(tool, monitoring.events.PY_START, _on_start)
        monitoring.set_events(tool, monitoring.events.PY_START)
        return


def watch_stop() -> None:
    """Stop watching and give the tool id back. Never raises."""
    rec = RECORDER
    monitoring = getattr(sys, "monitoring", None)
    if rec is None or monitoring is None or rec.tool_id is None:
        return
    tool, rec.tool_id = rec.tool_id, None
    try:
        monitoring.set_events(tool, 0)
        monitoring.register_callback(tool, monitoring.events.PY_START, None)
    finally:
        monitoring.free_tool_id(tool)

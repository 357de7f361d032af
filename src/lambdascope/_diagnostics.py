"""Cold-start diagnostics: the ``diagnostics`` field of a sandbox's first report.

Built once per process, when the first report is built: after the response where the agent
delivers after the response (the default inside Lambda), so nothing here is on the caller's path.
It reads what :mod:`lambdascope._importtime` recorded during init (the import tree) and looks at
the sandbox: Python and runtime versions, the installed distributions with their sizes, the
environment's variable *names* (never a value), ``/tmp`` use and the resource limits.

Bounded: the import tree keeps the modules of 1 ms or more (the rest is folded into their
parent's ``self_ms``), at most 300 nodes and 12 levels; 20 slowest imports; 100 unused imports and
100 distributions; the whole field serialises to at most 64 KB.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping

from . import _importtime, _state
from ._report import architecture, python_version

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

MAX_BYTES = 64 * 1024
MIN_NODE_MS = 1.0
MAX_NODES = 300
MAX_TREE_DEPTH = 12
MAX_SLOWEST = 20
MAX_UNUSED = 100
MAX_DISTRIBUTIONS = 100
MAX_ENV_NAMES = 1000
#: Time allowed to read distributions' RECORD files for their sizes (after that: size unknown).
SCAN_BUDGET_S = 0.2

_AGENT = __name__.rpartition(".")[0]  # "lambdascope"
_MB = 1024.0 * 1024.0
_RECORD_SIZE = re.compile(rb",(\d+)\r?$", re.MULTILINE)
_OWN = frozenset(("task", "layer"))
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy"}


# -- imports -------------------------------------------------------------------------------


class _Tree:
    """The recorded imports as one tree rooted at the handler's module."""

    def __init__(self, root: _importtime.Node, parents: dict[int, _importtime.Node]) -> None:
        self.root = root
        self.parents = parents  # id(node) -> parent node
        #: Every node, parents before children, and each one's depth (the root is at 1).
        self.all: list[_importtime.Node] = [root]
        self.depth: dict[int, int] = {id(root): 1}
        depth = self.depth
        for node in self.all:  # grows while it is walked: a breadth-first order
            level = depth[id(node)] + 1
            for child in node.children:
                depth[id(child)] = level
                self.all.append(child)

    @staticmethod
    def build(
        rec: _importtime.Recorder, handler_module: str | None, import_ms: float
    ) -> tuple[_Tree, str, float | None]:
        """(tree, import_tracking, handler_import_ms)."""
        top = [n for n in rec.top if n.ms is not None]
        found = next((n for n in top if n.name == handler_module), None) if handler_module else None
        importers = rec.importers
        if found is not None:
            # lambdascope was imported before the handler's module: its import was timed whole.
            root, tracking = found, "full"
            handler_ms = found.ms
        else:
            name = handler_module or (importers[-1][0] if importers else "(init)")
            root = _importtime.Node(name, 0.0)
            # The agent's share: ``import lambdascope`` and what its code imported during init.
            agent = _importtime.Node(_AGENT, 0.0, True)
            agent.children = [n for n in rec.agent.children if n.ms is not None]
            agent.ms = import_ms + sum_ms(agent.children)
            root.children = [agent, *top]
            end = rec.end_wall if rec.end_wall is not None else time.time()
            # From the start of ``import lambdascope`` to the end of init as the agent saw it.
            root.ms = max(import_ms + (end - rec.install_wall) * 1000.0, sum_ms(root.children))
            handler_ms = root.ms if importers else None
            tracking = _tracking(importers, handler_module)
        parents: dict[int, _importtime.Node] = {}
        stack = [root]
        while stack:
            node = stack.pop()
            for child in node.children:
                parents[id(child)] = node
                stack.append(child)
        return _Tree(root, parents), tracking, handler_ms

    def nodes(self) -> list[_importtime.Node]:
        return self.all


def sum_ms(nodes: Iterable[_importtime.Node]) -> float:
    return sum(n.ms or 0.0 for n in nodes)


#: IMPORT_NAME and EXTENDED_ARG by Python version (``opcode`` costs about 0.6 ms to import).
_OPCODES = {(3, 10): (108, 144), (3, 11): (108, 144), (3, 12): (108, 144), (3, 13): (75, 71)}


def _opcodes() -> tuple[int, int]:
    known = _OPCODES.get(sys.version_info[:2])
    if known is not None and "opcode" not in sys.modules:
        return known
    import opcode

    return opcode.opmap["IMPORT_NAME"], opcode.opmap["EXTENDED_ARG"]


def _prior_imports(code: Any, offset: int) -> int:
    """How many import statements ``code`` ran before the instruction at ``offset`` (a
    ``from __future__`` import does not count)."""
    import_name, extended = _opcodes()
    raw = code.co_code
    names = code.co_names
    count = 0
    prefix = 0  # the high bits an EXTENDED_ARG carries to the next instruction
    for at in range(0, min(offset, len(raw)) - 1, 2):
        op, arg = raw[at], raw[at + 1] | prefix
        if op == extended:
            prefix = arg << 8
            continue
        prefix = 0
        if op == import_name and not (arg < len(names) and names[arg] == "__future__"):
            count += 1
    return count


def _tracking(importers: list[tuple[str, Any, int]], handler_module: str | None) -> str:
    """``full`` when lambdascope was the first import of the handler's module (nothing it
    imported escaped the finder), else ``partial``."""
    if not importers:
        return "full"  # imported before any module of the function (the finder saw them all)
    if len(importers) > 1:
        return "partial"  # through another module of the function: that one was not timed
    name, code, offset = importers[0]
    if handler_module is not None and name != handler_module:
        return "partial"
    try:
        return "full" if _prior_imports(code, offset) == 0 else "partial"
    except Exception:
        return "partial"


def _python_file(node: _importtime.Node) -> bool:
    return isinstance(node.file, str) and node.file.endswith(".py")


def _usage(tree: _Tree, executed: set[str] | None) -> dict[int, bool | None]:
    """Per node: True if code of its subtree ran during the first invocation, False if its
    subtree has Python code and none of it ran, None when unknown (no Python code, or no
    ``sys.monitoring``)."""
    used: dict[int, bool | None] = {}
    if executed is None:
        return used
    order = tree.nodes()  # parents before children
    for node in reversed(order):  # children first
        state: bool | None = None
        if _python_file(node):
            state = node.file in executed
        for child in node.children:
            child_state = used.get(id(child))
            if child_state is True:
                state = True
                break
            if child_state is False and state is None:
                state = False
        used[id(node)] = state
    return used


def _is_agent(name: str) -> bool:
    return name == _AGENT or name.startswith(_AGENT + ".")


def _shape(tree: _Tree, max_nodes: int) -> dict[str, Any]:
    """The tree as nested dicts: nodes of 1 ms or more, the largest first, at most ``max_nodes``
    and ``MAX_TREE_DEPTH`` levels; what is left out counts in its parent's ``self_ms``."""
    root = tree.root
    depth = tree.depth
    kept: dict[int, list[_importtime.Node]] = {id(root): []}
    # A module's time includes its imports', so in this order a parent comes before its
    # children: keeping the largest modules whose parent is kept keeps a connected tree.
    ordered = sorted(
        (n for n in tree.nodes() if n is not root and n.ms is not None and n.ms >= MIN_NODE_MS),
        key=lambda n: (-(n.ms or 0.0), depth[id(n)]),
    )
    for node in ordered:
        if len(kept) >= max_nodes:
            break
        parent = tree.parents[id(node)]
        if id(parent) in kept and depth[id(node)] <= MAX_TREE_DEPTH:
            kept[id(parent)].append(node)
            kept[id(node)] = []

    def as_dict(node: _importtime.Node) -> dict[str, Any]:
        children = sorted(kept[id(node)], key=lambda n: -(n.ms or 0.0))
        ms = node.ms or 0.0
        return {
            "module": node.name,
            "ms": round(ms, 3),
            "self_ms": round(max(0.0, ms - sum_ms(children)), 3),
            "children": [as_dict(child) for child in children],
        }

    return as_dict(root)


def _slowest(tree: _Tree, used: dict[int, bool | None], watched: bool) -> list[dict[str, Any]]:
    """The slowest imports a user could drop or defer: by cumulative time, leaving out those
    inside one already listed (their time is in it) and the agent's own."""
    root = tree.root
    agents: set[int] = set()  # the agent's subtrees: lambdascope's modules and their imports
    parents = tree.parents
    for node in tree.nodes():  # parents before children
        if node.by_agent or id(parents.get(id(node))) in agents or _is_agent(node.name):
            agents.add(id(node))
    listed: set[int] = set()
    out: list[dict[str, Any]] = []
    candidates = sorted(
        (n for n in tree.nodes()
         if n is not root and n.ms is not None and id(n) not in agents),
        key=lambda n: -(n.ms or 0.0),
    )
    for node in candidates:
        if len(out) >= MAX_SLOWEST:
            break
        parent = tree.parents.get(id(node))
        inside = False
        while parent is not None:
            if id(parent) in listed:
                inside = True
                break
            parent = tree.parents.get(id(parent))
        if inside:
            continue
        listed.add(id(node))
        direct = tree.parents.get(id(node))
        ms = node.ms or 0.0
        out.append(
            {
                "module": node.name,
                "ms": round(ms, 3),
                "self_ms": round(max(0.0, ms - sum_ms(node.children)), 3),
                "parent": direct.name if direct is not None else None,
                "used": used.get(id(node)) if watched else None,
            }
        )
    return out


def _unused(tree: _Tree, used: dict[int, bool | None]) -> list[str]:
    """The largest imports none of whose code ran in the first invocation (a module whose code
    ran, but some of whose imports did not, leads to those)."""
    found: list[_importtime.Node] = []
    stack = list(tree.root.children)
    while stack:
        node = stack.pop()
        if node.by_agent or _is_agent(node.name):
            continue
        state = used.get(id(node))
        if state is False:
            found.append(node)
        elif state is True:
            stack.extend(node.children)
    found.sort(key=lambda n: -(n.ms or 0.0))
    return [n.name for n in found[:MAX_UNUSED]]


def imports_part(
    handler_module: str | None, import_ms: float, max_nodes: int = MAX_NODES
) -> dict[str, Any]:
    """``import_tracking``, ``handler_import_ms``, ``imports``, ``slowest_imports``,
    ``unused_imports`` (and the number of modules timed)."""
    rec = _importtime.RECORDER
    if rec is None:
        return {
            "handler_import_ms": None,
            "import_tracking": "off",
            "imports": None,
            "slowest_imports": [],
            "unused_imports": None,
            "imports_timed": 0,
        }
    tree, tracking, handler_ms = _Tree.build(rec, handler_module, import_ms)
    executed = rec.executed
    watched = executed is not None
    used = _usage(tree, executed)
    return {
        "handler_import_ms": round(handler_ms, 3) if handler_ms is not None else None,
        "import_tracking": tracking,
        "imports": _shape(tree, max_nodes),
        "slowest_imports": _slowest(tree, used, watched),
        "unused_imports": _unused(tree, used) if watched else None,
        "imports_timed": rec.count,
    }


# -- the sandbox ---------------------------------------------------------------------------


def _location(directory: str, task_root: str) -> str:
    path = os.path.abspath(directory) + os.sep
    if task_root and path.startswith(task_root):
        return "task"
    if path.startswith("/opt" + os.sep):
        return "layer"
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/var/runtime", "/var/lang"}
    if any(path.startswith(os.path.abspath(p) + os.sep) for p in prefixes if p):
        return "runtime"
    return "other"


def _name_version(dirname: str) -> tuple[str, str | None]:
    stem = dirname.rsplit(".", 1)[0]  # foo_bar-1.2.3(.dist-info|.egg-info)
    name, sep, version = stem.partition("-")
    if not sep:
        return name, None
    return name, version.split("-py")[0] or None


def _metadata_name(path: str) -> tuple[str | None, str | None]:
    """Name and version as the METADATA file spells them (its first lines)."""
    name = version = None
    try:
        with open(os.path.join(path, "METADATA"), "rb") as fh:
            head = fh.read(2048)
    except OSError:
        return None, None
    for line in head.splitlines():
        if line.startswith(b"Name:"):
            name = line[5:].strip().decode("utf-8", "replace")
        elif line.startswith(b"Version:"):
            version = line[8:].strip().decode("utf-8", "replace")
        if not line.strip() or (name and version):
            break
    return name, version


def distributions(
    paths: Iterable[str], task_root: str, locations: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """Installed distributions on ``paths`` (``*.dist-info`` and ``*.egg-info``): name, version,
    size (from the RECORD file's sizes, in KB; None where unknown) and where they come from.
    ``locations`` limits the scan to those kinds of directory. The largest first, at most 100."""
    root = os.path.abspath(task_root) + os.sep if task_root else ""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    give_up = time.perf_counter() + SCAN_BUDGET_S
    seen_dirs: set[str] = set()
    for directory in paths:
        if not isinstance(directory, str) or not directory:
            continue
        directory = os.path.abspath(directory)
        if directory in seen_dirs:
            continue
        seen_dirs.add(directory)
        location = _location(directory, root)
        if locations is not None and location not in locations:
            continue
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            name, version = _name_version(entry.name)
            key = (name.lower().replace("-", "_").replace(".", "_"), location)
            if key in found:
                continue  # the first on sys.path is the one imported
            size_kb: float | None = None
            if entry.name.endswith(".dist-info") and time.perf_counter() < give_up:
                try:
                    with open(os.path.join(entry.path, "RECORD"), "rb") as fh:
                        raw = fh.read()
                    size_kb = round(sum(map(int, _RECORD_SIZE.findall(raw))) / 1024.0, 1)
                except (OSError, ValueError):
                    size_kb = None
            if version is None or "_" in name:
                meta_name, meta_version = _metadata_name(entry.path)
                name = meta_name or name
                version = meta_version or version
            found[key] = {
                "name": name,
                "version": version,
                "size_kb": size_kb,
                "location": location,
            }
    def largest(d: dict[str, Any]) -> tuple[float, str]:
        return (-(d["size_kb"] if d["size_kb"] is not None else -1.0), d["name"].lower())

    # The deployment package's and the layers' first (the user's own), then the largest others.
    ordered = sorted(found.values(), key=lambda d: (d["location"] not in _OWN, *largest(d)))
    return sorted(ordered[:MAX_DISTRIBUTIONS], key=largest)


def _limit(value: int, scale: int) -> int | None:
    import resource

    if value == resource.RLIM_INFINITY or value < 0:
        return None
    return value // scale


def limits() -> dict[str, Any]:
    out: dict[str, Any] = {"nofile": None, "nproc": None, "stack_kb": None, "as_mb": None}
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return out
    for key, name, scale, pair in (
        ("nofile", "RLIMIT_NOFILE", 1, True),
        ("nproc", "RLIMIT_NPROC", 1, True),
        ("stack_kb", "RLIMIT_STACK", 1024, False),
        ("as_mb", "RLIMIT_AS", 1024 * 1024, False),
    ):
        which = getattr(resource, name, None)
        if which is None:
            continue
        try:
            soft, hard = resource.getrlimit(which)
        except (OSError, ValueError):
            continue
        out[key] = [_limit(soft, scale), _limit(hard, scale)] if pair else _limit(soft, scale)
    return out


def tmp_usage(directory: str = "/tmp") -> dict[str, Any] | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    total = st.f_blocks * st.f_frsize / _MB
    used = (st.f_blocks - st.f_bfree) * st.f_frsize / _MB
    return {"total_mb": round(total, 2), "used_mb": round(used, 2)}


def handler_name(environ: Mapping[str, str], fallback: str | None) -> str | None:
    handler = environ.get("_HANDLER")
    return handler or fallback or None


def handler_module(handler: str | None) -> str | None:
    """The module of a handler string as the runtime imports it (``dir/app.handler`` ->
    ``dir.app``)."""
    if not handler or "." not in handler:
        return None
    return handler.rsplit(".", 1)[0].replace("/", ".") or None


# -- the whole field -----------------------------------------------------------------------


def gather(
    init_ms: float | None,
    handler_fallback: str | None = None,
    after_response: bool = True,
    sandbox_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``diagnostics`` of this sandbox's first report.

    ``after_response`` false (the report is built before the response: synchronous delivery)
    limits the distribution scan to the deployment package and layers."""
    env = os.environ if environ is None else environ
    handler = handler_name(env, handler_fallback)
    module = handler_module(env.get("_HANDLER")) or handler_module(handler)
    task_root = env.get("LAMBDA_TASK_ROOT") or ""
    implementation = sys.implementation.name
    diag: dict[str, Any] = {
        "init_ms": init_ms,
        "handler": handler,
        **imports_part(module, _state.import_ms),
        "python": python_version(),
        "implementation": _IMPLEMENTATIONS.get(implementation, implementation),
        "runtime": env.get("AWS_EXECUTION_ENV") or None,
        "architecture": architecture(),
        "distributions": distributions(
            sys.path, task_root, None if after_response else frozenset(("task", "layer"))
        ),
        "env_names": sorted(env)[:MAX_ENV_NAMES],
        "tmp": tmp_usage(),
        "limits": limits(),
        "sandbox_id": sandbox_id or env.get("AWS_LAMBDA_LOG_STREAM_NAME") or None,
        "cpus": os.cpu_count(),
    }
    return bound(diag, module)


def bound(diag: dict[str, Any], module: str | None, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """Cut ``diag`` until it serialises to at most ``max_bytes``: fewer import nodes, unused
    imports, distributions and variable names, in that order."""
    def size() -> int:
        return len(json.dumps(diag, separators=(",", ":"), ensure_ascii=False).encode())

    current = size()
    nodes = MAX_NODES
    while current > max_bytes and nodes > 10 and diag.get("imports") is not None:
        nodes //= 2
        diag.update(imports_part(module, _state.import_ms, max_nodes=nodes))
        current = size()
    for key in ("unused_imports", "distributions", "env_names"):
        while current > max_bytes and diag.get(key):
            items = diag[key]
            diag[key] = items[: len(items) // 2]
            diag["truncated"] = True
            current = size()
    if current > max_bytes:  # names that long: nothing of the lists can stay
        diag["imports"] = None
        diag["slowest_imports"] = []
        diag["truncated"] = True
    return diag

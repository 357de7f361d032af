"""Reading a report's ``profile`` and ``diagnostics`` for the people looking at them: the
frames parsed and told apart (your code, a library, the standard library), the sampled stacks
merged into one tree (the flame graph's), the top functions by self and total samples, the
hottest path, and the import tree cut to what fits a screen.

Pure functions of the report's data, shared by ``lambdascope show`` and the dashboard; only the
standard library. Everything here is defensive: a report is the user's data, so a field of the
wrong type is skipped rather than trusted (the collector's schema check lets extra shapes
through: ``diagnostics`` is any object).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KIND_NAMES",
    "KNOWN_LIBRARIES",
    "Frame",
    "ImportNode",
    "Node",
    "Profile",
    "classify",
    "hottest_path",
    "import_tree",
    "largest_distributions",
    "library_names",
    "limit_text",
    "names",
    "number",
    "parse_frame",
    "read_profile",
    "slowest_imports",
    "top_functions",
    "unused_modules",
]

#: Stacks read from one profile (the agent sends at most 200) and frames from one stack.
MAX_STACKS = 2000
MAX_DEPTH = 512

USER, LIBRARY, STDLIB, OTHER = "user", "library", "stdlib", "other"
KIND_NAMES = {USER: "your code", LIBRARY: "library", STDLIB: "stdlib", OTHER: "other"}

_FRAME_NO_LINE = re.compile(r"^(.+\.py[cw]?|<[^>]*>):([^:]+)$")
_SITE = re.compile(r"[/\\](?:site|dist)-packages[/\\]([^/\\]+)")
_LAYER = re.compile(r"^/opt/python/([^/]+)")
_RUNTIME = re.compile(r"^/var/runtime/([^/]+)")
_STDLIB = re.compile(r"[/\\](?:lib|Lib)[/\\]python3(?:\.\d+)?[/\\]([^/\\]+)")
_FROZEN = re.compile(r"^<frozen ([\w.]+)>$")


class Frame:
    """One frame of a sampled stack, ``"path/file.py:function:line"`` taken apart (made by
    :func:`parse_frame`, which keeps the ones it made: stacks repeat their frames)."""

    __slots__ = ("file", "function", "key", "kind", "line", "package", "raw")

    def __init__(self, raw: str, file: str | None, function: str, line: int | None,
                 kind: str, package: str | None) -> None:
        self.raw = raw
        self.file = file
        self.function = function
        self.line = line
        self.kind = kind        # user | library | stdlib | other
        self.package = package  # the top-level package of a library or stdlib frame
        # What frames are merged by: the function in its file (the line left out, so one
        # function is one node however many of its lines were sampled).
        self.key = f"{file}:{function}" if file is not None else raw

    def __repr__(self) -> str:
        return f"Frame({self.raw!r})"

    @property
    def short_file(self) -> str:
        """The file as people name it: ``app.py``, ``botocore/client.py``."""
        if self.file is None:
            return ""
        path = self.file.replace("\\", "/")
        for marker in ("/site-packages/", "/dist-packages/", "/var/task/", "/opt/python/",
                       "/var/runtime/"):
            if marker in path:
                return path.rsplit(marker, 1)[1]
        found = _STDLIB.search(self.file)
        if found:
            return path[found.start(1):]
        return path.rsplit("/", 1)[-1] if path.startswith("/") else path

    def where(self, line: int | None = None) -> str:
        """``app.py:12`` (the short file and a line)."""
        shown = self.line if line is None else line
        if self.file is None:
            return ""
        return f"{self.short_file}:{shown}" if shown is not None else self.short_file


def _package(name: str) -> str:
    name = name.split(".", 1)[0] if name.endswith((".py", ".pyc", ".so")) else name
    return name.split("-", 1)[0] if name.endswith(".dist-info") else name


#: Top-level packages told apart as libraries when the function's own list of distributions
#: is not known (the agent writes library frames relative to their ``sys.path`` entry, so
#: ``botocore/endpoint.py`` looks like a folder of the task): the runtime's and the ones most
#: Lambda functions bundle.
KNOWN_LIBRARIES = frozenset((
    "awslambdaric", "bootstrap", "boto3", "botocore", "s3transfer", "jmespath", "urllib3",
    "requests", "certifi", "idna", "charset_normalizer", "chardet", "dateutil", "six",
    "aws_lambda_powertools", "aws_xray_sdk", "pydantic", "pydantic_core", "typing_extensions",
    "numpy", "pandas", "pytz", "yaml", "simplejson", "orjson", "ujson", "httpx", "httpcore",
    "anyio", "sniffio", "h11", "aiohttp", "aiobotocore", "multidict", "yarl", "attr", "attrs",
    "sqlalchemy", "psycopg", "psycopg2", "pymysql", "redis", "jwt", "cryptography", "cffi",
    "google", "grpc", "opentelemetry", "sentry_sdk", "structlog", "wrapt", "lambdascope",
    "starlette", "fastapi", "mangum", "flask", "werkzeug", "jinja2", "markupsafe", "click",
    "PIL", "sklearn", "scipy", "bs4", "lxml", "stripe", "openai", "tenacity", "packaging",
))
#: Distributions whose import name is not their name.
_DIST_MODULES = {
    "pyyaml": ("yaml",), "python_dateutil": ("dateutil",), "beautifulsoup4": ("bs4",),
    "pillow": ("PIL",), "scikit_learn": ("sklearn",), "protobuf": ("google",),
    "attrs": ("attr", "attrs"), "pyjwt": ("jwt",), "psycopg2_binary": ("psycopg2",),
    "psycopg_binary": ("psycopg",), "opencv_python": ("cv2",),
    "opencv_python_headless": ("cv2",), "python_jose": ("jose",), "setuptools": (
        "setuptools", "pkg_resources", "_distutils_hack"),
    "google_api_core": ("google",), "googleapis_common_protos": ("google",),
    "grpcio": ("grpc",), "opentelemetry_api": ("opentelemetry",),
    "opentelemetry_sdk": ("opentelemetry",), "pymongo": ("pymongo", "bson", "gridfs"),
    "typing_extensions": ("typing_extensions",), "msgpack_python": ("msgpack",),
}
_STDLIB_NAMES = frozenset(getattr(sys, "stdlib_module_names", ())) | {"__future__"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def library_names(diagnostics: Any) -> frozenset[str]:
    """The top-level names the distributions of a function's diagnostics can be imported by
    (normalised: lower case, ``_`` for ``-`` and ``.``), for :func:`read_profile`."""
    found: set[str] = set()
    if isinstance(diagnostics, Mapping) and isinstance(diagnostics.get("distributions"), list):
        for dist in diagnostics["distributions"]:
            name = dist.get("name") if isinstance(dist, Mapping) else None
            if isinstance(name, str) and name:
                key = _normal(name)
                found.add(key)
                found.update(_normal(m) for m in _DIST_MODULES.get(key, ()))
    return frozenset(found)


_KNOWN = frozenset(_normal(n) for n in KNOWN_LIBRARIES)


@functools.lru_cache(maxsize=4096)
def classify(path: str, libraries: frozenset[str] = frozenset()) -> tuple[str, str | None]:
    """``(kind, package)`` of a frame's file. An absolute path tells where the code lives: a
    library (``site-packages``, a Lambda layer under ``/opt/python``, the runtime under
    ``/var/runtime``), the standard library (under ``lib/python3.x``), else your code. The
    agent's paths are relative (to the task root, else to their ``sys.path`` entry): the first
    part names the top-level module, which is the standard library's (``ssl.py``,
    ``json/decoder.py``), a library's when it is one of ``libraries`` (the function's
    distributions) or well known (``botocore/…``), else your code. Frozen modules are the
    standard library's."""
    found = _FROZEN.match(path)
    if found:
        return STDLIB, found.group(1).split(".", 1)[0]
    if path.startswith(("/", "\\")) or path[1:3] in (":\\", ":/"):
        found = _SITE.search(path)
        if found:
            return LIBRARY, _package(found.group(1))
        for pattern in (_LAYER, _RUNTIME):
            found = pattern.match(path)
            if found:
                return LIBRARY, _package(found.group(1))
        found = _STDLIB.search(path)
        if found:
            return STDLIB, _package(found.group(1))
        return USER, None
    top = _package(re.split(r"[/\\]", path, maxsplit=1)[0])
    if top in _STDLIB_NAMES:
        return STDLIB, top
    key = _normal(top)
    if key in libraries or key in _KNOWN:
        return LIBRARY, top
    return USER, None


@functools.lru_cache(maxsize=16384)
def parse_frame(text: str, libraries: frozenset[str] = frozenset()) -> Frame:
    """A frame string (``"path/file.py:function:line"``; anything else, such as ``"(other
    stacks)"`` or ``"(… 12 frames)"``, is kept as it is, of kind ``other``). ``libraries``:
    see :func:`classify`."""
    head, _, line = text.rpartition(":")
    path, _, function = head.rpartition(":")
    if path and line.isdigit() and line.isascii():
        number: int | None = int(line)
    else:
        found = _FRAME_NO_LINE.match(text)
        if not found:
            return Frame(text, None, text, None, OTHER, None)
        path, function, number = found.group(1), found.group(2), None
    kind, package = classify(path, libraries)
    return Frame(text, path, function or "?", number, kind, package)


class Node:
    """A node of the merged stack tree: a function reached by one path from the root."""

    __slots__ = ("children", "frame", "samples", "self_lines", "self_samples")

    def __init__(self, frame: Frame | None) -> None:
        self.frame = frame        # None for the root
        self.samples = 0          # stacks through this node
        self.self_samples = 0     # stacks that end here
        self.children: dict[str, Node] = {}
        self.self_lines: dict[int, int] | None = None  # line -> samples ending there

    @property
    def hottest_line(self) -> int | None:
        """The line most samples ended on in this function, else the line it was first
        seen at (the call it made)."""
        if self.self_lines:
            return max(self.self_lines.items(), key=lambda kv: (kv[1], -kv[0]))[0]
        return self.frame.line if self.frame else None

    def sorted_children(self) -> list[Node]:
        """The hottest first (then by name, so the order is stable)."""
        return sorted(self.children.values(),
                      key=lambda n: (-n.samples, n.frame.key if n.frame else ""))


@dataclass
class Profile:
    """A profile as read: its figures, its stacks as parsed frames, the merged tree."""

    interval_ms: float
    samples: int          # the denominator of every share
    stacks: list[tuple[list[Frame], int]]
    tree: Node
    mode: str | None = None
    duration_ms: float | None = None
    dropped_samples: int = 0
    truncated_stacks: int = 0
    stacks_skipped: int = 0  # entries that were not a list of frames with a count

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0

    def ms(self, count: int) -> float:
        return count * self.interval_ms


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _number(value: Any) -> float | None:
    if type(value) in (int, float) and value == value and abs(value) != float("inf"):
        return float(value)
    return None


def read_profile(profile: Any, libraries: frozenset[str] = frozenset()) -> Profile | None:
    """The report's ``profile`` read and merged; ``None`` when it is not one. ``libraries``:
    the top-level names of the function's distributions (:func:`library_names`), which tell
    library frames from yours."""
    if not isinstance(profile, Mapping):
        return None
    raw_stacks = profile.get("stacks")
    if not isinstance(raw_stacks, list):
        return None
    interval = _number(profile.get("interval_ms"))
    stacks: list[tuple[list[Frame], int]] = []
    skipped = 0
    root = Node(None)
    parse = functools.partial(parse_frame, libraries=libraries) if libraries else parse_frame
    for entry in raw_stacks[:MAX_STACKS]:
        frames = entry.get("frames") if isinstance(entry, Mapping) else None
        count = _int(entry.get("count")) if isinstance(entry, Mapping) else None
        if (not isinstance(frames, list) or not frames or count is None or count < 1
                or not all(type(f) is str for f in frames)):
            skipped += 1
            continue
        parsed = [parse(f) for f in frames[:MAX_DEPTH]]
        stacks.append((parsed, count))
        node = root
        node.samples += count
        for frame in parsed:
            children = node.children
            child = children.get(frame.key)
            if child is None:
                child = children[frame.key] = Node(frame)
            child.samples += count
            node = child
        node.self_samples += count
        line = parsed[-1].line
        if line is not None:
            if node.self_lines is None:
                node.self_lines = {}
            node.self_lines[line] = node.self_lines.get(line, 0) + count
    skipped += max(0, len(raw_stacks) - MAX_STACKS)
    declared = _int(profile.get("samples"))
    total = max(declared or 0, root.samples)
    mode = profile.get("mode")
    return Profile(
        interval_ms=interval if interval is not None and interval > 0 else 0.0,
        samples=total,
        stacks=stacks,
        tree=root,
        mode=mode if isinstance(mode, str) else None,
        duration_ms=_number(profile.get("duration_ms")),
        dropped_samples=_int(profile.get("dropped_samples")) or 0,
        truncated_stacks=_int(profile.get("truncated_stacks")) or 0,
        stacks_skipped=skipped,
    )


def top_functions(profile: Profile, limit: int = 20) -> list[dict[str, Any]]:
    """The functions with the most samples, by self samples (the stacks that end in them)
    then total samples (the stacks they are on; a recursive function counted once per
    stack): ``{"frame", "function", "where", "kind", "package", "self_samples",
    "total_samples", "self_share", "total_share", "self_ms", "total_ms"}``."""
    # key -> [frame, self, total, {line: self samples}]
    found: dict[str, list[Any]] = {}
    for frames, count in profile.stacks:
        for key, frame in {f.key: f for f in frames}.items():  # once per stack
            acc = found.get(key)
            if acc is None:
                found[key] = [frame, 0, count, {}]
            else:
                acc[2] += count
        leaf = frames[-1]
        acc = found[leaf.key]
        acc[1] += count
        if leaf.line is not None:
            acc[3][leaf.line] = acc[3].get(leaf.line, 0) + count
    ranked = sorted(found.values(), key=lambda a: (-a[1], -a[2], a[0].key))[:limit]
    out = []
    for frame, self_n, total_n, lines in ranked:
        line = max(lines.items(), key=lambda kv: (kv[1], -kv[0]))[0] if lines else None
        out.append({
            "frame": frame.key,
            "function": frame.function,
            "where": frame.where(line),
            "kind": frame.kind,
            "package": frame.package,
            "self_samples": self_n,
            "total_samples": total_n,
            "self_share": profile.share(self_n),
            "total_share": profile.share(total_n),
            "self_ms": profile.ms(self_n),
            "total_ms": profile.ms(total_n),
        })
    return out


def hottest_path(profile: Profile) -> list[Node]:
    """From the root, the hottest child each time: where most samples went."""
    path = []
    node = profile.tree
    while node.children:
        node = node.sorted_children()[0]
        path.append(node)
    return path


# -- cold-start diagnostics ----------------------------------------------------------------------

@dataclass
class ImportNode:
    """One module of the import tree as shown (or, ``module`` None, the modules left out
    under one parent: ``hidden`` of them, ``ms`` in all)."""

    module: str | None
    ms: float | None
    self_ms: float | None
    depth: int
    unused: bool = False
    hidden: int = 0
    has_children: bool = False


def unused_modules(diagnostics: Mapping[str, Any]) -> set[str]:
    """The modules the first invocation did not use: ``unused_imports`` and the slowest
    imports marked ``used: false``."""
    out: set[str] = set()
    names = diagnostics.get("unused_imports")
    if isinstance(names, list):
        out.update(n for n in names if isinstance(n, str))
    slowest = diagnostics.get("slowest_imports")
    if isinstance(slowest, list):
        out.update(s["module"] for s in slowest
                   if isinstance(s, Mapping) and s.get("used") is False
                   and isinstance(s.get("module"), str))
    return out


def import_tree(diagnostics: Mapping[str, Any], *, max_nodes: int = 200, max_depth: int = 12,
                min_share: float = 0.01) -> list[ImportNode]:
    """The import tree in display order (depth first, the slowest child first), cut to what
    can be read: at most ``max_nodes`` modules, ``max_depth`` levels, and children under
    ``min_share`` of the root's time folded into one line per parent (``module`` None)."""
    root = diagnostics.get("imports")
    if not isinstance(root, Mapping):
        return []
    unused = unused_modules(diagnostics)
    root_ms = _number(root.get("ms")) or 0.0
    floor_ms = root_ms * min_share
    out: list[ImportNode] = []

    def ms_of(node: Mapping[str, Any]) -> float:
        return _number(node.get("ms")) or 0.0

    def walk(node: Mapping[str, Any], depth: int) -> Iterator[ImportNode]:
        module = node.get("module")
        children = [c for c in node.get("children") or [] if isinstance(c, Mapping)] \
            if isinstance(node.get("children"), list) else []
        name = module if isinstance(module, str) else "?"
        yield ImportNode(name, _number(node.get("ms")), _number(node.get("self_ms")), depth,
                         name in unused, has_children=bool(children))
        if not children:
            return
        if depth + 1 >= max_depth:
            yield ImportNode(None, sum(ms_of(c) for c in children), None, depth + 1,
                             hidden=len(children))
            return
        shown = sorted(children, key=lambda c: -ms_of(c))
        # The slowest child is always shown; the others when they are worth a line.
        small = [c for c in shown[1:] if ms_of(c) < floor_ms]
        for child in shown[:len(shown) - len(small)]:
            yield from walk(child, depth + 1)
        if small:
            yield ImportNode(None, sum(ms_of(c) for c in small), None, depth + 1,
                             hidden=len(small))

    for item in walk(root, 0):
        if len(out) >= max_nodes:
            out.append(ImportNode(None, None, None, 0, hidden=-1))  # the tree was cut
            break
        out.append(item)
    return out


def largest_distributions(diagnostics: Mapping[str, Any], limit: int = 10
                          ) -> list[dict[str, Any]]:
    """The installed distributions, the largest first: ``{"name", "version", "size_kb",
    "location"}``."""
    found = diagnostics.get("distributions")
    if not isinstance(found, list):
        return []
    out = [d for d in found if isinstance(d, Mapping) and isinstance(d.get("name"), str)]
    out.sort(key=lambda d: (-(_number(d.get("size_kb")) or 0.0), d["name"]))
    return [dict(d) for d in out[:limit]]


def slowest_imports(diagnostics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = diagnostics.get("slowest_imports")
    if not isinstance(found, list):
        return []
    return [s for s in found if isinstance(s, Mapping) and isinstance(s.get("module"), str)]


def number(value: Any) -> float | None:
    """A finite number, or None (figures of the user's report)."""
    return _number(value)


def names(value: Any) -> Sequence[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def limit_text(value: Any) -> str:
    """A resource limit as the agent reports it (a number, ``[soft, hard]``, or ``None`` for
    no limit) as text: ``1024``, ``1024/4096``, ``unlimited``."""
    if value is None:
        return "unlimited"
    if isinstance(value, list) and len(value) == 2:
        return "/".join(limit_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

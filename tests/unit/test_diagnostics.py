"""Cold-start diagnostics in process: the import-timing finder, the tree and lists made from it,
the sandbox facts (distributions, limits, /tmp, variable names), the bounds, and failures that
must never reach the function."""

from __future__ import annotations

import dis
import importlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import lambdascope
from lambdascope import _diagnostics, _importtime
from lambdascope._importtime import Node
from lambdascope.testing import capture_reports, fake_context


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[Any]:
    """A fresh import-timing finder for this test (removed afterwards), and a directory on
    ``sys.path`` for the test's modules (forgotten from ``sys.modules`` afterwards)."""
    monkeypatch.setattr(_importtime, "RECORDER", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    stop = _importtime.stop  # as it is (a test may break it)
    _importtime.install(0.0)
    yield _importtime.RECORDER
    stop(None)
    sys.meta_path[:] = [getattr(f, "_finder", f) for f in sys.meta_path]
    for name in set(sys.modules) - before:
        if name.startswith("ut_"):
            del sys.modules[name]


def write(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    importlib.invalidate_caches()


def by_name(nodes: list[Node]) -> dict[str, Node]:
    return {n.name: n for n in nodes}


# -- the finder ---------------------------------------------------------------------------------


def test_the_finder_times_each_import_and_nests_them(
    recorder: Any, tmp_path: pathlib.Path
) -> None:
    write(tmp_path, {
        "ut_a.py": "import ut_b\nimport ut_c\n",
        "ut_b.py": "import time\ntime.sleep(0.05)\n",
        "ut_c.py": "import ut_d\n",
        "ut_d.py": "import time\ntime.sleep(0.02)\n",
    })
    import ut_a  # type: ignore[import-not-found]

    (a,) = [n for n in recorder.top if n.name == "ut_a"]
    children = by_name(a.children)
    assert list(children) == ["ut_b", "ut_c"]
    assert [n.name for n in children["ut_c"].children] == ["ut_d"]
    assert children["ut_b"].ms >= 50
    assert children["ut_c"].children[0].ms >= 20
    assert a.ms >= children["ut_b"].ms + children["ut_c"].ms
    assert a.file == ut_a.__file__
    assert a.find_ms >= 0
    assert recorder.stack == []
    # The module and its spec have their real loader back: nothing of the finder shows.
    for name in ("ut_a", "ut_b", "ut_c", "ut_d"):
        module = sys.modules[name]
        assert type(module.__loader__).__name__ == "SourceFileLoader"
        assert module.__spec__.loader is module.__loader__
    assert _importtime.installed()


def test_the_stand_ins_are_transparent_and_a_miss_is_looked_up_once(
    recorder: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.machinery

    assert importlib.machinery.PathFinder in sys.meta_path
    assert sys.meta_path.index(importlib.machinery.PathFinder) >= 0
    asked: list[str] = []

    class Counting:
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            asked.append(name)
            return None

    counting = Counting()
    sys.meta_path.insert(0, counting)
    sys.meta_path[0] = _importtime._TimedFinder(counting)  # as install() leaves a finder
    try:
        with pytest.raises(ModuleNotFoundError):
            import ut_nowhere  # type: ignore[import-not-found]  # noqa: F401
        assert asked == ["ut_nowhere"]  # once, as without the agent
        sys.meta_path.remove(counting)  # found by the finder it stands for
    finally:
        sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "_finder", f) is not counting]
    assert counting not in sys.meta_path


def test_a_failing_import_fails_as_it_would_and_leaves_the_stack_clean(
    recorder: Any, tmp_path: pathlib.Path
) -> None:
    write(tmp_path, {
        "ut_bad.py": "import ut_ok\nraise LookupError('the module itself fails')\n",
        "ut_ok.py": "VALUE = 1\n",
        "ut_after.py": "import ut_ok\n",
    })
    with pytest.raises(LookupError, match="the module itself fails"):
        import ut_bad  # type: ignore[import-not-found]  # noqa: F401
    assert recorder.stack == []
    with pytest.raises(ModuleNotFoundError):
        import ut_missing  # type: ignore[import-not-found]  # noqa: F401
    import ut_after  # type: ignore[import-not-found]  # noqa: F401

    names = [n.name for n in recorder.top]
    assert names == ["ut_bad", "ut_after"]
    assert [n.name for n in recorder.top[0].children] == ["ut_ok"]


def test_a_probe_reload_and_other_threads_are_handled(
    recorder: Any, tmp_path: pathlib.Path
) -> None:
    write(tmp_path, {"ut_probe.py": "X = 1\n", "ut_thread.py": "X = 2\n"})
    spec = importlib.util.find_spec("ut_probe")  # looked up, never loaded
    assert spec is not None and spec.loader is not None
    assert spec.loader.get_source("ut_probe") == "X = 1\n"  # the stand-in answers as the loader
    assert recorder.top == []
    import ut_probe  # type: ignore[import-not-found]

    importlib.reload(ut_probe)
    assert [n.name for n in recorder.top] == ["ut_probe", "ut_probe"]
    assert all(n.ms is not None and n.ms >= 0 for n in recorder.top)
    assert type(ut_probe.__loader__).__name__ == "SourceFileLoader"

    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(importlib.import_module("ut_thread")))
    thread.start()
    thread.join()
    assert done[0].X == 2
    assert [n.name for n in recorder.top] == ["ut_probe", "ut_probe"]  # not timed


def test_extension_modules_are_timed_through_their_creation(
    recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "_csv"
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module(name)
    (node,) = [n for n in recorder.top if n.name == name]
    assert node.ms is not None and node.ms >= 0
    assert type(module.__loader__).__name__ in ("ExtensionFileLoader", "BuiltinImporter")


def test_stop_takes_the_finder_out_and_later_imports_are_not_timed(
    recorder: Any, tmp_path: pathlib.Path
) -> None:
    write(tmp_path, {"ut_late.py": "X = 1\n"})
    _importtime.stop(123.0)
    _importtime.stop(456.0)  # the first end wins
    assert not _importtime.installed()
    assert recorder.end_wall == 123.0
    import ut_late  # type: ignore[import-not-found]  # noqa: F401

    assert recorder.top == []


def test_the_finder_gives_up_past_its_bounds(
    recorder: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_importtime, "MAX_MODULES", 3)
    write(tmp_path, {f"ut_n{k}.py": "X = 1\n" for k in range(6)})
    for k in range(6):
        importlib.import_module(f"ut_n{k}")
    assert len(recorder.top) == 3
    assert not _importtime.installed()


@pytest.mark.parametrize("broken", ["_enter", "_leave", "Node"])
def test_a_broken_timer_never_fails_an_import(
    recorder: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(_importtime, broken, boom)
    write(tmp_path, {"ut_x.py": "import ut_y\nVALUE = ut_y.VALUE + 1\n", "ut_y.py": "VALUE = 1\n"})
    import ut_x  # type: ignore[import-not-found]

    assert ut_x.VALUE == 2
    assert type(ut_x.__loader__).__name__ == "SourceFileLoader"


def test_imports_by_the_agents_code_are_the_agents(
    recorder: Any, tmp_path: pathlib.Path
) -> None:
    write(tmp_path, {"ut_user.py": "X = 1\n", "ut_agents.py": "Y = 1\n"})
    import ut_user  # type: ignore[import-not-found]  # noqa: F401

    # An import made by code of the agent's (code compiled as if from one of its files).
    from lambdascope import _monitor

    exec(compile("def load():\n    import ut_agents\n", _monitor.__file__, "exec"), namespace := {})
    namespace["load"]()
    assert [n.name for n in recorder.top] == ["ut_user"]
    assert [n.name for n in recorder.agent.children] == ["ut_agents"]


# -- from the recording to the report's fields --------------------------------------------------


def tree_of(spec: Any, name: str = "root") -> Node:
    """A Node tree from ``(ms, [children...])`` / ``{name: spec}`` nesting."""
    ms, children = spec
    node = Node(name, 0.0)
    node.ms = ms
    node.file = f"/task/{name}.py"
    node.children = [tree_of(child, child_name) for child_name, child in children.items()]
    return node


def recording(top: list[Node], importers: list[Any] | None = None) -> _importtime.Recorder:
    rec = _importtime.Recorder(0.0)
    rec.top = top
    rec.importers = importers or []
    rec.end_wall = rec.install_wall + 0.5
    return rec


def test_the_handler_module_imported_after_lambdascope_is_the_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = tree_of((400.0, {"pandas": (300.0, {"numpy": (150.0, {})}), "tiny": (0.2, {})}), "app")
    monkeypatch.setattr(_importtime, "RECORDER", recording([app]))
    part = _diagnostics.imports_part("app", 5.0)
    assert part["import_tracking"] == "full"
    assert part["handler_import_ms"] == 400.0
    root = part["imports"]
    assert root["module"] == "app"
    assert [c["module"] for c in root["children"]] == ["pandas"]  # tiny (< 1 ms) folded in
    assert root["self_ms"] == 100.0
    assert root["children"][0]["children"][0] == {
        "module": "numpy", "ms": 150.0, "self_ms": 150.0, "children": []
    }
    assert part["slowest_imports"] == [
        {"module": "pandas", "ms": 300.0, "self_ms": 150.0, "parent": "app", "used": None},
        {"module": "tiny", "ms": 0.2, "self_ms": 0.2, "parent": "app", "used": None},
    ]
    assert part["unused_imports"] is None


def test_lambdascope_imported_inside_the_handler_module(monkeypatch: pytest.MonkeyPatch) -> None:
    code = compile("import lambdascope\nimport pandas\n", "/task/app.py", "exec")
    offset = next(i.offset for i in dis.get_instructions(code) if i.opname == "IMPORT_NAME")
    rec = recording(
        [tree_of((300.0, {}), "pandas")], importers=[("app", code, offset)]
    )
    agent_child = tree_of((4.0, {}), "http.client")
    agent_child.by_agent = True
    rec.agent.children = [agent_child]
    monkeypatch.setattr(_importtime, "RECORDER", rec)
    part = _diagnostics.imports_part("app", 6.0)
    assert part["import_tracking"] == "full"
    root = part["imports"]
    assert root["module"] == "app"
    # From the start of `import lambdascope` to the end of init (0.5 s after the install).
    assert part["handler_import_ms"] == pytest.approx(506.0, abs=1.0)
    children = {c["module"]: c for c in root["children"]}
    assert children["lambdascope"]["ms"] == 10.0  # its import and what its code imported
    assert [c["module"] for c in children["lambdascope"]["children"]] == ["http.client"]
    assert [e["module"] for e in part["slowest_imports"]] == ["pandas"]  # never the agent's


@pytest.mark.parametrize(
    ("source", "tracking"),
    [
        ("import lambdascope\nimport json\n", "full"),
        ("from __future__ import annotations\nimport lambdascope\n", "full"),
        ('"""doc"""\nimport lambdascope\n', "full"),
        ("import json\nimport lambdascope\n", "partial"),
        ("from os import path\nimport lambdascope\n", "partial"),
        ("try:\n    import ujson\nexcept ImportError:\n    pass\nimport lambdascope\n", "partial"),
    ],
)
def test_import_tracking_says_whether_imports_came_before_lambdascope(
    source: str, tracking: str
) -> None:
    code = compile(source, "/task/app.py", "exec")
    offset = next(i.offset for i in dis.get_instructions(code)
                  if i.opname == "IMPORT_NAME" and i.argval == "lambdascope")
    assert _diagnostics._tracking([("app", code, offset)], "app") == tracking
    assert _diagnostics._tracking([("other", code, offset)], "app") == "partial"
    assert _diagnostics._tracking([("app", code, offset), ("outer", code, 0)], "app") == "partial"


def test_the_tree_is_bounded_in_nodes_depth_and_small_modules() -> None:
    def chain(depth: int) -> Any:
        return (2.0 * depth + 1.0, {} if depth == 0 else {f"c{depth - 1}": chain(depth - 1)})

    wide = {f"w{k}": (1.5 + k / 1000.0, {f"w{k}.tiny": (0.5, {})}) for k in range(2000)}
    root = tree_of((10_000.0, {**wide, "c39": chain(39)}), "app")
    parents: dict[int, Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.children:
            parents[id(child)] = node
            stack.append(child)
    shaped = _diagnostics._shape(_diagnostics._Tree(root, parents), 300)

    def walk(node: dict[str, Any], depth: int = 1) -> Iterator[tuple[dict[str, Any], int]]:
        yield node, depth
        for child in node["children"]:
            yield from walk(child, depth + 1)

    nodes = list(walk(shaped))
    assert len(nodes) == 300
    assert max(d for _, d in nodes) == 12
    assert all(n["ms"] >= 1.0 for n, d in nodes if d > 1)
    assert not any(n["module"].endswith(".tiny") for n, _ in nodes)
    for node, _ in nodes:  # what is left out is in the parent's own time
        assert node["self_ms"] == pytest.approx(
            node["ms"] - sum(c["ms"] for c in node["children"]), abs=0.002
        )
        assert [c["ms"] for c in node["children"]] == sorted(
            (c["ms"] for c in node["children"]), reverse=True
        )


def test_slowest_imports_are_disjoint_and_unused_ones_are_the_largest_unused_subtrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = tree_of((900.0, {
        "pandas": (500.0, {"numpy": (300.0, {}), "pytz": (50.0, {})}),
        "requests": (200.0, {"urllib3": (120.0, {}), "idna": (30.0, {})}),
        "helpers": (80.0, {}),
    }), "app")
    rec = recording([app])
    rec.executed = {"/task/requests.py", "/task/urllib3.py", "/task/app.py"}
    monkeypatch.setattr(_importtime, "RECORDER", rec)
    part = _diagnostics.imports_part("app", 1.0)
    slowest = part["slowest_imports"]
    assert [e["module"] for e in slowest] == ["pandas", "requests", "helpers"]
    assert {e["module"]: e["used"] for e in slowest} == {
        "pandas": False, "requests": True, "helpers": False
    }
    assert part["unused_imports"] == ["pandas", "helpers", "idna"]


def test_the_first_invocation_watch_frees_its_tool_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_importtime, "RECORDER", recording([]))
    _importtime.watch_start()
    rec = _importtime.RECORDER
    if sys.version_info < (3, 12):
        assert rec.executed is None and rec.tool_id is None
        return
    tool = rec.tool_id
    assert tool in (3, 4)
    assert sys.monitoring.get_tool(tool) == "lambdascope"
    _importtime.watch_stop()
    assert sys.monitoring.get_tool(tool) is None
    assert rec.tool_id is None


# -- the sandbox ----------------------------------------------------------------------------------


def dist(root: pathlib.Path, dirname: str, sizes: list[int] | None, meta: str = "") -> None:
    path = root / dirname
    path.mkdir(parents=True)
    if sizes is not None:
        lines = [f"pkg/f{k}.py,sha256=x,{size}" for k, size in enumerate(sizes)]
        lines.append(f"{dirname}/RECORD,,")
        (path / "RECORD").write_text("\n".join(lines) + "\n")
    if meta:
        (path / "METADATA").write_text(meta)


def test_distributions_with_versions_sizes_and_where_they_come_from(
    tmp_path: pathlib.Path,
) -> None:
    task, other = tmp_path / "task", tmp_path / "elsewhere"
    dist(task, "small_pkg-1.0.dist-info", [1024])
    dist(task, "zope_interface-6.1.dist-info", [2048, 2048],
         "Metadata-Version: 2.1\nName: zope.interface\nVersion: 6.1\n\n")
    dist(task, "old_style-0.9-py3.11.egg-info", None)
    dist(other, "big-2.0.dist-info", [10 * 1024 * 1024])
    dist(other, "small_pkg-0.5.dist-info", [512])  # the same name elsewhere: its own entry
    found = _diagnostics.distributions([str(task), str(other), str(task)], str(task))
    assert found == [
        {"name": "big", "version": "2.0", "size_kb": 10240.0, "location": "other"},
        {"name": "zope.interface", "version": "6.1", "size_kb": 4.0, "location": "task"},
        {"name": "small_pkg", "version": "1.0", "size_kb": 1.0, "location": "task"},
        {"name": "small_pkg", "version": "0.5", "size_kb": 0.5, "location": "other"},
        {"name": "old_style", "version": "0.9", "size_kb": None, "location": "task"},
    ]
    own_only = _diagnostics.distributions([str(task), str(other)], str(task),
                                          frozenset(("task", "layer")))
    assert {d["location"] for d in own_only} == {"task"}


def test_at_most_100_distributions_the_deployment_packages_first(
    tmp_path: pathlib.Path,
) -> None:
    task, other = tmp_path / "task", tmp_path / "other"
    for k in range(30):
        dist(task, f"mine{k}-1.0.dist-info", [1024])
    for k in range(150):
        dist(other, f"theirs{k}-1.0.dist-info", [1024 * 1024])
    found = _diagnostics.distributions([str(task), str(other)], str(task))
    assert len(found) == 100
    assert sum(1 for d in found if d["location"] == "task") == 30
    assert found[0]["location"] == "other"  # largest first


def test_locations() -> None:
    assert _diagnostics._location("/var/task/lib", "/var/task/") == "task"
    assert _diagnostics._location("/opt/python", "/var/task/") == "layer"
    assert _diagnostics._location("/var/runtime", "/var/task/") == "runtime"
    assert _diagnostics._location(os.path.join(sys.prefix, "lib"), "") == "runtime"
    assert _diagnostics._location("/somewhere/else", "/var/task/") == "other"


def test_limits_tmp_and_names() -> None:
    limits = _diagnostics.limits()
    assert set(limits) == {"nofile", "nproc", "stack_kb", "as_mb"}
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = [None if v == resource.RLIM_INFINITY else v for v in (soft, hard)]
    assert limits["nofile"] == expected
    tmp = _diagnostics.tmp_usage()
    assert tmp is not None and tmp["total_mb"] >= tmp["used_mb"] >= 0
    assert _diagnostics.tmp_usage("/no/such/dir") is None
    assert _diagnostics.handler_module("src/app.handler") == "src.app"
    assert _diagnostics.handler_module("handler") is None


def test_environment_values_never_appear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_importtime, "RECORDER", None)
    planted = {
        "DB_PASSWORD": "planted-pw-31d9",
        "MY_SETTING": "planted-setting-77aa",
        "AWS_SECRET_ACCESS_KEY": "planted/aws+key-0c3e",
        "_HANDLER": "app.handler",
    }
    diag = _diagnostics.gather(12.5, environ=planted)
    text = json.dumps(diag)
    assert diag["env_names"] == sorted(planted)
    for name, value in planted.items():
        if name != "_HANDLER":  # the handler setting is reported as such
            assert value not in text
    assert diag["handler"] == "app.handler"
    assert diag["import_tracking"] == "off" and diag["imports"] is None


def test_the_field_stays_under_64_kb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_importtime, "RECORDER", None)
    env = {f"VARIABLE_WITH_A_RATHER_LONG_NAME_{k:05d}_" + "N" * 60: "x" for k in range(5000)}
    diag = _diagnostics.gather(1.0, environ=env)
    assert len(json.dumps(diag, separators=(",", ":")).encode()) <= 64 * 1024
    assert diag["truncated"] is True
    assert 0 < len(diag["env_names"]) < 5000


def test_a_huge_import_tree_is_cut_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    long = "m" * 150
    top = {f"{long}{k}": (5.0 + k, {}) for k in range(1000)}
    monkeypatch.setattr(_importtime, "RECORDER", recording([tree_of((9999.0, top), "app")]))
    diag = _diagnostics.gather(1.0, environ={"_HANDLER": "app.handler"})
    assert len(json.dumps(diag, separators=(",", ":")).encode()) <= 64 * 1024
    assert 10 <= len(diag["imports"]["children"]) < 300
    assert len(diag["slowest_imports"]) == 20


# -- in a monitored function --------------------------------------------------------------------


def test_only_the_first_report_inside_lambda_has_diagnostics(
    monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        return "ok"

    with capture_reports() as reports:
        handler({}, fake_context())  # outside Lambda: no diagnostics
    assert "diagnostics" not in reports[0]

    lambdascope.testing.reset()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "diag-unit")
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.11")
    with capture_reports() as reports:
        for _ in range(3):
            handler({}, fake_context())
    first = validate_report(reports[0])
    diag = first["diagnostics"]
    assert diag["runtime"] == "AWS_Lambda_python3.11"
    assert diag["init_ms"] == first["invocation"]["init_duration_ms"]
    assert diag["sandbox_id"] == fake_context().log_stream_name
    assert all("diagnostics" not in r for r in reports[1:])

    lambdascope.testing.reset()

    @lambdascope.monitor(diagnostics=False)
    def quiet(event: Any, context: Any) -> str:
        return "ok"

    with capture_reports() as reports:
        quiet({}, fake_context())
    assert "diagnostics" not in reports[0]


def test_the_finder_leaves_at_the_first_invocation(
    recorder: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, validate_report: Any
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "diag-unit")
    monkeypatch.setenv("_HANDLER", "ut_app.handler")
    write(tmp_path, {
        "ut_app.py": "import lambdascope\nimport ut_dep\n\n@lambdascope.monitor\n"
                     "def handler(event, context):\n    return 'ok'\n",
        "ut_dep.py": "import time\ntime.sleep(0.03)\n",
    })
    import ut_app  # type: ignore[import-not-found]

    assert _importtime.installed()
    with capture_reports() as reports:
        assert ut_app.handler({}, fake_context()) == "ok"
        assert not _importtime.installed()
        ut_app.handler({}, fake_context())
    diag = validate_report(reports[0])["diagnostics"]
    assert diag["import_tracking"] == "full"
    assert diag["imports"]["module"] == "ut_app"
    assert diag["slowest_imports"][0]["module"] == "ut_dep"
    assert diag["handler_import_ms"] >= 30
    assert "diagnostics" not in reports[1]


@pytest.mark.faults
@pytest.mark.parametrize(
    ("target", "site"),
    [(("_diagnostics", "gather"), "diagnostics"), (("_importtime", "watch_start"), "imports.watch"),
     (("_importtime", "stop"), "imports.stop")],
)
def test_failing_diagnostics_change_nothing_for_the_handler(
    recorder: Any, monkeypatch: pytest.MonkeyPatch, internal_errors: list[Any],
    validate_report: Any, target: tuple[str, str], site: str
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "diag-unit")
    module = {"_diagnostics": _diagnostics, "_importtime": _importtime}[target[0]]
    monkeypatch.setattr(module, target[1], boom)
    marker = object()

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> object:
        return marker

    with capture_reports() as reports:
        assert handler({}, fake_context()) is marker
    report = validate_report(reports[0])
    assert report["invocation"]["status"] == "ok"
    assert {s for s, _ in internal_errors} == {site}
    assert ("diagnostics" in report) is (site != "diagnostics")


# -- import lambdascope: where the finder is installed -------------------------------------------


@pytest.mark.parametrize(
    ("env", "installed"),
    [
        ({}, False),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f", "LAMBDASCOPE_DIAGNOSTICS": "0"}, False),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f", "LAMBDASCOPE_DIAGNOSTICS": "false"}, False),
        ({"AWS_LAMBDA_FUNCTION_NAME": "f", "LAMBDASCOPE_DISABLED": "true"}, False),
    ],
)
def test_import_installs_the_finder_only_inside_lambda(
    env: dict[str, str], installed: bool
) -> None:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("LAMBDASCOPE_", "AWS_LAMBDA_"))}
    script = (
        "import sys, json, lambdascope\n"
        "print(json.dumps(['lambdascope._importtime' in sys.modules,"
        " [f.__name__ if isinstance(f, type) else type(f).__name__ for f in sys.meta_path]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded, finders = json.loads(done.stdout)
    assert loaded is installed
    assert ("_TimedFinder" in finders) is installed
    if installed:  # every finder but the built-in and frozen modules' is timed
        assert set(finders) == {"_TimedFinder", "BuiltinImporter", "FrozenImporter"}


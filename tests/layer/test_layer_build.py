"""``lambdascope layer build``: the right wheels for the target, a deterministic zip with
``python/`` at its root, and a layer that works once unzipped.

Offline: the wheelhouse is made here, from the distributions installed in this environment
(repacked as wheels with their own tags: they are this machine's) plus fake wheels of the
platform-specific ones for the *other* architecture, and decoys that a correct build must not
choose (another Python version, a glibc newer than the runtime's, musl, macOS, an sdist). pip
runs with ``--no-index --find-links`` and without the machine's pip configuration.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from lambdascope import cli
from lambdascope.layer import RUNTIMES, ZIP_DATE_TIME, Target, build_layer

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST_ARCH = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
OTHER_ARCH = "x86_64" if HOST_ARCH == "arm64" else "arm64"
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
CP = f"cp{sys.version_info.major}{sys.version_info.minor}"
FAKE_MARKER = "LAMBDASCOPE_TEST_FAKE_PLATFORM"

pytestmark = pytest.mark.skipif(
    HOST_PYTHON not in RUNTIMES or sys.platform != "linux",
    reason="needs a Linux host running a Python version Lambda offers",
)


# -- the wheelhouse ----------------------------------------------------------------------------

def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    names = []
    for req in dist.requires or []:
        if "extra ==" in req.replace(" ", "").replace("extra==", "extra =="):
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if match:
            names.append(match.group(1))
    return names


def runtime_closure() -> dict[str, metadata.Distribution]:
    """lambdascope's runtime dependencies and theirs, as installed here (by normalised name)."""
    found: dict[str, metadata.Distribution] = {}
    todo = _requirement_names(metadata.distribution("lambdascope"))
    while todo:
        name = todo.pop()
        key = _norm(name)
        if key in found:
            continue
        dist = metadata.distribution(name)
        found[key] = dist
        todo.extend(_requirement_names(dist))
    return found


def _record(entries: dict[str, bytes], info: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for name, data in sorted(entries.items()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    return buffer.getvalue().encode()


def _write_wheel(path: Path, entries: dict[str, bytes], info: str) -> Path:
    entries = dict(entries)
    entries[f"{info}/RECORD"] = _record(entries, info)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(entries.items()):
            zf.writestr(name, data)
    return path


def _tags(dist: metadata.Distribution) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]


def _compressed(tags: list[str]) -> str:
    parts: list[list[str]] = [[], [], []]
    for tag in tags:
        for i, piece in enumerate(tag.split("-")):
            if piece not in parts[i]:
                parts[i].append(piece)
    return "-".join(".".join(p) for p in parts)


def repack(dist: metadata.Distribution, out: Path, more_requires: tuple[str, ...] = ()) -> Path:
    """An installed distribution back into a wheel with its own tags (and, for a test, more
    ``Requires-Dist`` lines)."""
    name, version = dist.metadata["Name"], dist.version
    info = f"{_wheel_name(name)}-{version}.dist-info"
    entries: dict[str, bytes] = {}
    for file in dist.files or []:
        rel = file.as_posix()
        if rel.startswith("..") or "__pycache__" in rel or rel.endswith(".pyc"):
            continue
        if rel.endswith((".dist-info/RECORD", ".dist-info/INSTALLER", ".dist-info/REQUESTED",
                         ".dist-info/direct_url.json")):
            continue
        if ".dist-info/" in rel:
            rel = f"{info}/{rel.split('.dist-info/', 1)[1]}"
        entries[rel] = Path(str(dist.locate_file(file))).read_bytes()
    if more_requires:
        meta = entries[f"{info}/METADATA"].decode()
        head, sep, body = meta.partition("\n\n")
        head += "".join(f"\nRequires-Dist: {req}" for req in more_requires)
        entries[f"{info}/METADATA"] = (head + sep + body).encode()
    tag = _compressed(_tags(dist))
    return _write_wheel(out / f"{_wheel_name(name)}-{version}-{tag}.whl", entries, info)


def _top_level(dist: metadata.Distribution) -> list[str]:
    tops = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.startswith("..") or first.endswith((".dist-info", ".data")):
            continue
        if len(file.parts) > 1:
            tops.add(first)
        elif first.endswith(".py"):
            tops.add(first[:-3])
    return sorted(t for t in tops if t != "__pycache__")


def fake_wheel(name: str, version: str, tag: str, packages: list[str], out: Path,
               platform_name: str) -> Path:
    """A wheel that only says which platform it was made for."""
    info = f"{_wheel_name(name)}-{version}.dist-info"
    entries = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                          f"Tag: {tag}\n").encode(),
    }
    for package in packages:
        entries[f"{package}/__init__.py"] = f"{FAKE_MARKER} = {platform_name!r}\n".encode()
    return _write_wheel(out / f"{_wheel_name(name)}-{version}-{tag}.whl", entries, info)


def _glibc_ceiling(python: str) -> int:
    return RUNTIMES[python][1][1]


@dataclass
class Wheelhouse:
    path: Path
    platform_specific: list[str]  # normalised names of the distributions with compiled code
    closure: dict[str, metadata.Distribution]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    house = tmp_path_factory.mktemp("wheelhouse")
    closure = runtime_closure()
    specific = []
    other = MACHINE[OTHER_ARCH]
    for key, dist in sorted(closure.items()):
        repack(dist, house)
        if "Root-Is-Purelib: true" not in (dist.read_text("WHEEL") or ""):
            specific.append(key)
            fake_wheel(dist.metadata["Name"], dist.version,
                       f"{CP}-{CP}-manylinux_2_17_{other}", _top_level(dist), house, other)
    assert "psutil" in specific and "wrapt" in specific  # what the test is about
    # Decoys: newer versions that no correct build for HOST_PYTHON may choose.
    next_cp = f"cp{sys.version_info.major}{sys.version_info.minor + 1}"
    too_new = _glibc_ceiling(HOST_PYTHON) + 1
    for machine in (MACHINE[HOST_ARCH], other):
        fake_wheel("psutil", "99.0.0", f"{next_cp}-{next_cp}-manylinux_2_17_{machine}",
                   ["psutil"], house, "another python")
        fake_wheel("psutil", "98.0.0", f"{CP}-{CP}-manylinux_2_{too_new}_{machine}",
                   ["psutil"], house, "a newer glibc")
        fake_wheel("psutil", "97.0.0", f"{CP}-{CP}-musllinux_1_2_{machine}",
                   ["psutil"], house, "musl")
    fake_wheel("psutil", "96.0.0", f"{CP}-{CP}-macosx_11_0_arm64", ["psutil"], house, "macos")
    with tarfile.open(house / "psutil-95.0.0.tar.gz", "w:gz") as tar:
        data = b"Metadata-Version: 2.1\nName: psutil\nVersion: 95.0.0\n"
        member = tarfile.TarInfo("psutil-95.0.0/PKG-INFO")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return Wheelhouse(house, specific, closure)


@contextlib.contextmanager
def offline_pip() -> Iterator[None]:
    """No pip configuration of this machine (its find-links, indexes, constraints)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("PIP_"):
                mp.delenv(name)
        mp.setenv("PIP_CONFIG_FILE", os.devnull)
        yield


@dataclass
class Built:
    path: Path
    status: int
    stdout: str
    stderr: str

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.path) as zf:
            return zf.namelist()

    def read(self, name: str) -> bytes:
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(name)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with offline_pip(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(list(argv))
    return status, out.getvalue(), err.getvalue()


def build(house: Wheelhouse, arch: str, output: Path, *more: str) -> Built:
    status, out, err = run_cli(
        "layer", "build", "--python", HOST_PYTHON, "--arch", arch, "--output", str(output),
        "--find-links", str(house.path), "--no-index", *more,
    )
    assert status == 0, f"layer build failed ({status}): {err}"
    return Built(output, status, out, err)


@pytest.fixture(scope="module")
def host_layer(wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(wheelhouse, HOST_ARCH, tmp_path_factory.mktemp("host") / "layer.zip",
                 "--compile")


@pytest.fixture(scope="module")
def other_layer(wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(wheelhouse, OTHER_ARCH, tmp_path_factory.mktemp("other") / "layer.zip")


def _dist_info(names: list[str], project: str) -> str:
    wanted = _wheel_name(project).lower()
    for name in names:
        top = name.split("/")[1]
        if top.endswith(".dist-info") and top.lower().startswith(wanted + "-"):
            return top
    raise AssertionError(f"no dist-info of {project} in the layer")


# -- what is in the zip ------------------------------------------------------------------------

def test_every_entry_is_under_python_and_nothing_is_machine_specific(
    host_layer: Built, other_layer: Built
) -> None:
    for built in (host_layer, other_layer):
        names = built.names()
        assert "python/lambdascope/__init__.py" in names
        assert "python/lambdascope/schema/lambdascope-1.json" in names
        assert all(name.startswith("python/") for name in names)
        assert not [n for n in names if n.startswith("python/bin/")]
        assert not [n for n in names if n.endswith("/direct_url.json")]
    # Without --compile, no bytecode at all (none of this machine's caches either).
    assert not [n for n in other_layer.names() if "__pycache__" in n or n.endswith(".pyc")]


def test_compile_adds_bytecode_of_the_target_version_only(host_layer: Built) -> None:
    names = set(host_layer.names())
    pycs = {n for n in names if n.endswith(".pyc")}
    tag = sys.implementation.cache_tag
    assert "python/lambdascope/__pycache__/__init__." + tag + ".pyc" in pycs
    assert all(n.endswith(f".{tag}.pyc") and "/__pycache__/" in n for n in pycs)
    sources = {n for n in names if n.endswith(".py")}
    assert len(pycs) >= 0.9 * len(sources)
    assert f"with .pyc for python{HOST_PYTHON}" in host_layer.stdout


def test_the_layer_holds_lambdascope_and_exactly_its_runtime_dependencies(
    host_layer: Built, wheelhouse: Wheelhouse
) -> None:
    names = host_layer.names()
    infos = {n.split("/")[1] for n in names if n.split("/")[1].endswith(".dist-info")}
    projects = {_norm(info.removesuffix(".dist-info").rsplit("-", 1)[0]) for info in infos}
    assert projects == {"lambdascope", *wheelhouse.closure}
    assert {"wrapt", "psutil", "requests", "opentelemetry-api", "opentelemetry-sdk"} <= projects
    # The summary names every package with its version.
    for key, dist in wheelhouse.closure.items():
        line = next((ln for ln in host_layer.stdout.splitlines()
                     if _norm(ln.split()[0]) == key and ln.startswith("  ")), None)
        assert line is not None and line.split()[1] == dist.version, key


def test_the_summary_gives_the_path_size_and_progress_went_to_stderr(host_layer: Built) -> None:
    first = host_layer.stdout.splitlines()[0]
    assert first.startswith(str(host_layer.path))
    size_mb = os.path.getsize(host_layer.path) / 2**20
    shown = float(re.search(r"\s([\d.]+) MB", first).group(1))  # type: ignore[union-attr]
    assert abs(shown - size_mb) < 0.1
    assert f"runtime python{HOST_PYTHON}, architecture {HOST_ARCH}" in host_layer.stdout
    assert "Installing collected packages" in host_layer.stderr
    assert "publish-layer-version" in host_layer.stderr


def test_each_architecture_gets_the_wheels_built_for_it(
    host_layer: Built, other_layer: Built, wheelhouse: Wheelhouse
) -> None:
    host_names, other_names = host_layer.names(), other_layer.names()
    other_machine = MACHINE[OTHER_ARCH]
    for key in wheelhouse.platform_specific:
        info = _dist_info(other_names, key)
        wheel_meta = other_layer.read(f"python/{info}/WHEEL").decode()
        assert f"manylinux_2_17_{other_machine}" in wheel_meta, key
        host_meta = host_layer.read(f"python/{_dist_info(host_names, key)}/WHEEL").decode()
        assert other_machine not in host_meta, key
    # The other architecture got the fake psutil, the host the real one with its extension.
    marker = other_layer.read("python/psutil/__init__.py").decode()
    assert f"{FAKE_MARKER} = {other_machine!r}" in marker
    assert not [n for n in other_names if n.startswith("python/psutil/") and ".so" in n]
    assert [n for n in host_names if n.startswith("python/psutil/") and n.endswith(".so")]
    assert FAKE_MARKER.encode() not in host_layer.read("python/psutil/__init__.py")
    # Pure-Python packages are the same files in both.
    assert host_layer.read("python/requests/api.py") == other_layer.read("python/requests/api.py")


def test_wheels_for_another_python_glibc_libc_or_os_and_sdists_are_never_chosen(
    host_layer: Built, other_layer: Built
) -> None:
    installed = metadata.version("psutil")
    for built in (host_layer, other_layer):
        info = _dist_info(built.names(), "psutil")
        assert info == f"psutil-{installed}.dist-info"
        assert b"another python" not in built.read("python/psutil/__init__.py")


def test_the_same_inputs_give_the_same_bytes(wheelhouse: Wheelhouse, tmp_path: Path) -> None:
    # A snapshot of the package, so an edit of the source tree between the builds cannot count.
    import lambdascope

    snapshot = tmp_path / "src" / "lambdascope"
    shutil.copytree(Path(lambdascope.__file__).parent, snapshot,
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = Target(HOST_PYTHON, OTHER_ARCH)
    paths = []
    with offline_pip():
        for name in ("first.zip", "second.zip"):
            result = build_layer(target, tmp_path / name, find_links=[str(wheelhouse.path)],
                                 no_index=True, package_dir=snapshot, compile_bytecode=True)
            paths.append(Path(result.path))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with zipfile.ZipFile(paths[0]) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {ZIP_DATE_TIME}
    assert {(i.external_attr >> 16) & 0o777 for i in infos} <= {0o644, 0o755}


def test_record_files_list_only_what_the_layer_holds(host_layer: Built) -> None:
    names = set(host_layer.names())
    records = [n for n in names if n.endswith(".dist-info/RECORD")]
    assert len(records) >= 6
    for record in records:
        rows = list(csv.reader(io.StringIO(host_layer.read(record).decode())))
        assert rows, record
        for row in rows:
            assert f"python/{row[0]}" in names, (record, row[0])


def test_the_unzipped_layer_imports_and_reports_with_a_plain_python(
    host_layer: Built, tmp_path: Path
) -> None:
    with zipfile.ZipFile(host_layer.path) as zf:
        zf.extractall(tmp_path / "opt")
    layer_dir = tmp_path / "opt" / "python"
    with open(layer_dir / "lambdascope" / "_config.py", "a") as fh:
        fh.write("\nEDITED_AFTER_THE_BUILD = True\n")
    code = (
        "import json, sys, lambdascope, wrapt, psutil, requests, opentelemetry.sdk.trace\n"
        "from lambdascope.testing import fake_context\n"
        "paths = [m.__file__ for m in (lambdascope, wrapt, psutil, requests)]\n"
        "print(json.dumps(paths))\n"
        "import lambdascope._config as cfg\n"
        "print(json.dumps([cfg.__spec__.cached, hasattr(cfg, 'EDITED_AFTER_THE_BUILD')]))\n"
        "@lambdascope.monitor\n"
        "def handler(event, context):\n"
        "    lambdascope.metric('items', 3, 'Count')\n"
        "    return {'ok': True}\n"
        "print(json.dumps(handler({}, fake_context(function_name='layer-test'))))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(layer_dir),
        "LAMBDASCOPE_EXPORTERS": "stdout",
        "LAMBDASCOPE_FLUSH": "sync",
        "LAMBDASCOPE_SPOOL_DIR": str(tmp_path / "spool"),
    }
    # -S: no site-packages, so nothing can come from this environment; only the layer.
    # -B: no bytecode written, as on Lambda's read-only /opt.
    proc = subprocess.run([sys.executable, "-S", "-B", "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    paths = json.loads(lines[0])
    assert all(p.startswith(str(layer_dir)) for p in paths), paths
    # The shipped .pyc was used (unchecked: the source edited after the build is not read).
    cached, edited = json.loads(lines[1])
    assert cached.startswith(str(layer_dir)) and os.path.exists(cached)
    assert edited is False
    report = json.loads(next(ln for ln in lines if '"schema"' in ln))
    assert report["schema"] == "lambdascope/1"
    assert report["invocation"]["status"] == "ok"
    assert report["metrics"][0]["name"] == "items"
    assert json.loads(lines[-1]) == {"ok": True}


def test_a_dependency_only_the_target_python_needs_is_installed(
    wheelhouse: Wheelhouse, tmp_path: Path
) -> None:
    # pip reads dependency markers for the interpreter running it; the target's must decide.
    target_python = next(v for v in RUNTIMES if v != HOST_PYTHON)
    house = tmp_path / "house"
    shutil.copytree(wheelhouse.path, house)
    typing_ext = wheelhouse.closure["typing-extensions"]
    repack(typing_ext, house, (f'only-on-target>=1; python_version == "{target_python}"',
                               'never-needed; python_version == "2.7"'))
    fake_wheel("only-on-target", "1.0", "py3-none-any", ["only_on_target"], house, "any")
    cp = "cp" + target_python.replace(".", "")
    other = MACHINE[OTHER_ARCH]
    for key in wheelhouse.platform_specific:
        dist = wheelhouse.closure[key]
        fake_wheel(dist.metadata["Name"], dist.version, f"{cp}-{cp}-manylinux_2_17_{other}",
                   _top_level(dist), house, other)
    with offline_pip():
        result = build_layer(Target(target_python, OTHER_ARCH), tmp_path / "layer.zip",
                             find_links=[str(house)], no_index=True)
    with zipfile.ZipFile(result.path) as zf:
        names = zf.namelist()
    assert "python/only_on_target/__init__.py" in names
    assert not [n for n in names if "never_needed" in n]
    assert ("only-on-target", "1.0") in result.packages


# -- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--python", "3.9", "3.10 or newer"),
        ("--python", "2.7", "3.10 or newer"),
        ("--python", "3.15", "not a Python runtime Lambda offers"),
        ("--python", "twelve", "not a Python runtime Lambda offers"),
        ("--arch", "sparc", "not a Lambda architecture"),
        ("--arch", "i386", "not a Lambda architecture"),
    ],
)
def test_a_runtime_lambda_does_not_offer_is_refused_in_one_line(
    flag: str, value: str, says: str, tmp_path: Path
) -> None:
    out = tmp_path / "layer.zip"
    status, stdout, stderr = run_cli("layer", "build", flag, value, "--output", str(out))
    assert status == 2
    assert stderr.count("\n") == 1 and stderr.startswith("lambdascope layer")
    assert f"{flag} {value!r}" in stderr and says in stderr
    assert stdout == "" and not out.exists()


def test_compile_for_another_python_version_is_refused(tmp_path: Path) -> None:
    other = next(v for v in RUNTIMES if v != HOST_PYTHON)
    status, stdout, stderr = run_cli("layer", "build", "--python", other, "--compile",
                                     "--output", str(tmp_path / "x.zip"))
    assert status == 2 and stderr.count("\n") == 1
    assert f"--compile needs Python {other}" in stderr and stdout == ""


def test_no_index_without_find_links_is_refused(tmp_path: Path) -> None:
    status, _, stderr = run_cli("layer", "build", "--no-index",
                                "--output", str(tmp_path / "x.zip"))
    assert status == 2 and "--find-links" in stderr and stderr.count("\n") == 1


def test_an_unknown_extra_is_refused(tmp_path: Path) -> None:
    status, _, stderr = run_cli("layer", "build", "--extra", "nosuch",
                                "--output", str(tmp_path / "x.zip"))
    assert status == 2 and "'nosuch'" in stderr and "otlp" in stderr


def test_a_dependency_without_a_wheel_for_the_target_fails_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty-wheelhouse"
    empty.mkdir()
    out = tmp_path / "layer.zip"
    status, stdout, stderr = run_cli(
        "layer", "build", "--arch", "arm64", "--find-links", str(empty), "--no-index",
        "--output", str(out), "--quiet",
    )
    assert status == 2
    assert stderr.count("\n") == 1 and "pip failed" in stderr
    assert "no wheel of it for this Python version and platform" in stderr
    assert stdout == "" and not out.exists()


def test_layer_build_help_lists_the_options() -> None:
    status, stdout, _ = run_cli("layer", "build", "--help")
    assert status == 0
    for option in ("--python", "--arch", "--output", "--find-links", "--no-index", "--extra",
                   "--compile"):
        assert option in stdout


# -- the platform tags pip is given ---------------------------------------------------------------

def test_amazon_linux_2_runtimes_stop_at_glibc_2_26() -> None:
    tags = Target("3.11", "x86_64").platform_tags()
    assert tags[0] == "manylinux_2_26_x86_64"
    assert "manylinux_2_27_x86_64" not in tags and "manylinux_2_28_x86_64" not in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64",
            "manylinux_2_17_x86_64", "manylinux_2_5_x86_64"} <= set(tags)


def test_amazon_linux_2023_runtimes_reach_glibc_2_34_and_arm_starts_at_2_17() -> None:
    tags = Target("3.12", "arm64").platform_tags()
    assert tags[0] == "manylinux_2_34_aarch64"
    assert "manylinux_2_28_aarch64" in tags and "manylinux2014_aarch64" in tags
    assert "manylinux_2_35_aarch64" not in tags and "manylinux_2_16_aarch64" not in tags
    assert all(tag.endswith("_aarch64") for tag in tags)

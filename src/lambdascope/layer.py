"""Build a Lambda layer zip of lambdascope for one Python runtime and architecture.

A Python layer is a zip whose ``python/`` folder Lambda puts on ``sys.path`` (it is unpacked
under ``/opt``). This module fills that folder with lambdascope and its runtime dependencies as
wheels built for the *target* (``manylinux`` for ``x86_64`` or ``aarch64``, the given CPython
version), whatever machine it runs on:

1. lambdascope itself is packed into a pure-Python wheel from the installed package (the files
   of the package and the metadata of the installed distribution, so its ``Requires-Dist`` say
   what to install with it);
2. ``pip install --target`` installs that wheel with ``--platform``/``--python-version``/
   ``--implementation cp``/``--only-binary=:all:``, which makes pip choose the target's wheels
   for every dependency (and refuse any sdist, which it could not build for another platform);
3. pip reads dependency markers (``; python_version < "3.11"``) for the interpreter running it,
   whatever ``--python-version`` says: the result is checked against the target's markers, and
   what the target also needs is installed by another pass;
4. the result is cleaned (no ``__pycache__``, no ``bin/`` scripts whose first line names this
   machine's interpreter, no ``direct_url.json`` naming a temporary path; ``RECORD`` files are
   rewritten to list what stays) and zipped deterministically: sorted entries, fixed timestamps
   and modes, so the same inputs give the same bytes.

``--find-links DIR`` with ``--no-index`` builds from a local wheelhouse, without the network.

``--compile`` adds ``.pyc`` files: Lambda unpacks layers on a read-only file system, where Python
cannot write its bytecode cache, so without them every cold start compiles every module it
imports. They are written by the interpreter running the build, which must therefore be the
target's version; they are hash-based and unchecked (no timestamp, no stat of the source) and
name ``/opt/python/...`` as their source path, where Lambda puts the layer, so they are
deterministic too.

Only the standard library is imported with this module; pip runs in a child process, and its
copy of ``packaging`` (or an installed one) reads the markers.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Python runtimes Lambda offers that lambdascope supports (``requires-python >= 3.10``), with
#: the glibc of the Amazon Linux they run on: the newest ``manylinux_2_N`` a wheel may need.
#: python3.10 and python3.11 run on Amazon Linux 2 (glibc 2.26); python3.12 and later on Amazon
#: Linux 2023 (glibc 2.34). python3.9 reached end of support in December 2025.
RUNTIMES: dict[str, tuple[str, tuple[int, int]]] = {
    "3.10": ("Amazon Linux 2", (2, 26)),
    "3.11": ("Amazon Linux 2", (2, 26)),
    "3.12": ("Amazon Linux 2023", (2, 34)),
    "3.13": ("Amazon Linux 2023", (2, 34)),
    "3.14": ("Amazon Linux 2023", (2, 34)),
}

#: Lambda's architecture names and the machine names in wheel tags.
ARCHITECTURES: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64",
                 "arm64": "arm64", "aarch64": "arm64"}

DEFAULT_PYTHON = "3.12"
DEFAULT_ARCH = "x86_64"

#: Lambda's limits for a layer: 50 MB zipped when uploaded directly, 250 MB unzipped for a
#: function and all its layers together.
ZIP_LIMIT_BYTES = 50 * 1024 * 1024
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024

#: The timestamp of every zip entry (the earliest a zip can hold): no build time in the bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

_PACKAGE = "lambdascope"
_SKIP_DIRS = frozenset(("__pycache__",))
_SKIP_SUFFIXES = (".pyc", ".pyo", "~", ".orig", ".rej", ".swp")


class LayerError(Exception):
    """The layer cannot be built; the message is one line saying why."""


@dataclass(frozen=True)
class Target:
    """A Lambda runtime and architecture, e.g. ``Target("3.12", "arm64")``."""

    python: str
    arch: str

    @property
    def runtime(self) -> str:
        """Lambda's runtime identifier: ``python3.12``."""
        return f"python{self.python}"

    @property
    def machine(self) -> str:
        """The machine name in wheel tags: ``x86_64`` or ``aarch64``."""
        return ARCHITECTURES[self.arch]

    @property
    def glibc(self) -> tuple[int, int]:
        return RUNTIMES[self.python][1]

    @property
    def os_name(self) -> str:
        return RUNTIMES[self.python][0]

    def platform_tags(self) -> list[str]:
        """Every platform tag a wheel may carry to run on this target, newest glibc first.

        pip takes ``--platform`` values literally (``manylinux_2_28_x86_64`` does not imply
        ``manylinux_2_17_x86_64``), so each ``manylinux_2_N`` from the runtime's glibc down to
        the oldest of the architecture is listed, with the legacy aliases of 2.17, 2.12 and 2.5.
        """
        major, newest = self.glibc
        oldest = 17 if self.machine == "aarch64" else 5
        tags = [f"manylinux_{major}_{minor}_{self.machine}"
                for minor in range(newest, oldest - 1, -1)]
        tags.append(f"manylinux2014_{self.machine}")
        if self.machine == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags


def parse_python(text: str) -> str:
    """``3.12`` or ``python3.12`` → ``3.12``; LayerError for a version Lambda does not offer."""
    raw = (text or "").strip().lower()
    value = raw[len("python"):] if raw.startswith("python") else raw
    match = re.fullmatch(r"(\d+)\.(\d+)", value)
    if match is None or value not in RUNTIMES:
        offered = ", ".join(RUNTIMES)
        if match is not None and (int(match.group(1)), int(match.group(2))) < (3, 10):
            reason = "lambdascope needs Python 3.10 or newer"
        else:
            reason = "not a Python runtime Lambda offers"
        raise LayerError(f"--python {text!r}: {reason} (use one of {offered})")
    return value


def parse_arch(text: str) -> str:
    """``x86_64`` or ``arm64`` (``amd64`` and ``aarch64`` are accepted for them)."""
    value = _ARCH_ALIASES.get((text or "").strip().lower())
    if value is None:
        raise LayerError(f"--arch {text!r}: not a Lambda architecture (use x86_64 or arm64)")
    return value


def default_output(target: Target, version: str) -> str:
    return f"lambdascope-layer-{version}-{target.runtime}-{target.arch}.zip"


@dataclass
class LayerResult:
    """What :func:`build_layer` wrote."""

    path: str
    size_bytes: int
    unzipped_bytes: int
    files: int
    target: Target
    compiled: bool = False
    #: ``(name, version)`` of every distribution in the layer, sorted by name.
    packages: list[tuple[str, str]] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        found = []
        if self.size_bytes > ZIP_LIMIT_BYTES:
            found.append(f"the zip is over {ZIP_LIMIT_BYTES // 2**20} MB: upload it through S3 "
                         f"(Lambda refuses a larger zip sent directly)")
        if self.unzipped_bytes > UNZIPPED_LIMIT_BYTES:
            found.append(f"unzipped it is over {UNZIPPED_LIMIT_BYTES // 2**20} MB, Lambda's "
                         f"limit for a function with all its layers")
        return found


# -- lambdascope as a wheel --------------------------------------------------------------------

def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _wanted(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(_SKIP_SUFFIXES)


def _package_files(root: Path) -> list[tuple[str, Path]]:
    """``(path in the wheel, file)`` for every file of the package at ``root``."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not _wanted(name):
                continue
            path = Path(folder) / name
            rel = path.relative_to(root.parent).as_posix()
            found.append((rel, path))
    return found


def _write_zip(path: Path, entries: Iterable[tuple[str, bytes, bool]]) -> None:
    """A deterministic zip: entries sorted by name, fixed time, normalised modes."""
    tmp = path.with_name(path.name + ".part")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name, data, executable in sorted(entries, key=lambda e: e[0]):
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                info.create_system = 3  # unix, so the modes below mean what they say
                info.external_attr = (0o100755 if executable else 0o100644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def self_wheel(out_dir: Path, package_dir: Path | None = None) -> Path:
    """Pack the installed lambdascope into ``lambdascope-<version>-py3-none-any.whl``.

    The files come from the package's directory (an editable install's source tree works too),
    the metadata from the installed distribution, so pip sees lambdascope's requirements.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(_PACKAGE)
    except metadata.PackageNotFoundError:
        raise LayerError("lambdascope is not installed as a distribution (pip install "
                         "lambdascope, or pip install -e . in a checkout)") from None
    meta_text = dist.read_text("METADATA")
    if not meta_text:
        raise LayerError("the installed lambdascope has no METADATA: reinstall it")
    version = dist.version
    if package_dir is None:
        import lambdascope

        package_dir = Path(lambdascope.__file__).resolve().parent
    files = _package_files(package_dir)
    if not any(rel == f"{_PACKAGE}/__init__.py" for rel, _ in files):
        raise LayerError(f"{package_dir} holds no lambdascope package")

    info = f"{_PACKAGE}-{version}.dist-info"
    entries: list[tuple[str, bytes, bool]] = [
        (rel, path.read_bytes(), False) for rel, path in files
    ]
    entries.append((f"{info}/METADATA", meta_text.encode("utf-8"), False))
    entries.append((f"{info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: lambdascope layer\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    ).encode("ascii"), False))
    entries.append((f"{info}/top_level.txt", f"{_PACKAGE}\n".encode("ascii"), False))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for name, data, _ in sorted(entries):
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    entries.append((f"{info}/RECORD", buffer.getvalue().encode("utf-8"), False))

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{_PACKAGE}-{version}-py3-none-any.whl"
    _write_zip(wheel, entries)
    return wheel


def known_extras() -> set[str]:
    """The extras the installed lambdascope declares (``otlp``, ``local``, …)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(_PACKAGE)
    except metadata.PackageNotFoundError:
        return set()
    return {str(e) for e in (dist.metadata.get_all("Provides-Extra") or [])}


# -- pip -------------------------------------------------------------------------------------

def pip_command(target: Target, dest: Path, *requirements: str,
                find_links: Sequence[str] = (), no_index: bool = False,
                index_url: str | None = None) -> list[str]:
    """The ``pip install`` that puts ``requirements`` and their dependencies, as the target's
    wheels, into ``dest``."""
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--target", str(dest),
        "--implementation", "cp",
        "--python-version", target.python,
        "--only-binary=:all:",
        "--no-compile",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar", "off",
    ]
    for tag in target.platform_tags():
        cmd += ["--platform", tag]
    if no_index:
        cmd.append("--no-index")
    if index_url:
        cmd += ["--index-url", index_url]
    for link in find_links:
        cmd += ["--find-links", link]
    cmd.extend(requirements)
    return cmd


def _run_pip(cmd: list[str], progress: Callable[[str], None] | None) -> None:
    env = dict(os.environ, PIP_NO_INPUT="1", PYTHONUNBUFFERED="1")
    env.pop("PIP_TARGET", None)
    env.pop("PIP_USER", None)
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, encoding="utf-8", errors="replace", env=env,
        )
    except OSError as exc:
        raise LayerError(f"cannot run pip: {exc.strerror or exc}") from None
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip()
            if not line:
                continue
            tail = [*tail[-29:], line]
            if progress is not None:
                progress(line)
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    status = proc.wait()
    if status != 0:
        raise LayerError("pip failed: " + _pip_reason(tail, status))


def _pip_reason(lines: list[str], status: int) -> str:
    if any("No module named pip" in line for line in lines):
        return f"{sys.executable} has no pip (python -m ensurepip installs it)"
    errors = [line.strip() for line in lines if line.lstrip().startswith("ERROR:")]
    if errors:
        reason = " ".join(errors[0].split()[1:])
        if "from versions: none" in reason or "No matching distribution" in reason:
            reason += (" (no wheel of it for this Python version and platform: pip cannot "
                       "build an sdist for another platform)")
        return reason
    last = lines[-1].strip() if lines else ""
    return last or f"exit status {status}"


# -- the layer ---------------------------------------------------------------------------------

def _clean_records(root: Path, kept: set[str]) -> None:
    """Rewrite each ``*.dist-info/RECORD`` under ``root`` to list only the files kept."""
    for record in sorted(root.glob("*.dist-info/RECORD")):
        info_dir = record.parent
        rows = []
        with open(record, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if not row:
                    continue
                where = os.path.normpath(os.path.join(root, row[0]))
                try:
                    rel = Path(where).relative_to(root).as_posix()
                except ValueError:
                    continue  # outside the target folder (a script in ../../bin)
                if rel in kept or rel == f"{info_dir.name}/RECORD":
                    rows.append(row)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(sorted(rows, key=lambda r: r[0]))
        record.write_text(buffer.getvalue(), encoding="utf-8")


def _layer_files(root: Path) -> list[str]:
    """The files under ``root`` that belong in the layer, as posix paths relative to it."""
    kept = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d != "bin"]  # console scripts: this machine's paths
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue  # bytecode only from compile_layer(), in __pycache__
            if name == "direct_url.json" and here.name.endswith(".dist-info"):
                continue  # names the temporary wheel's path
            kept.append((here / name).relative_to(root).as_posix())
    return kept


def check_compile(target: Target) -> None:
    """LayerError unless this interpreter can write bytecode for ``target``'s runtime."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != target.python:
        raise LayerError(
            f"--compile needs Python {target.python} to run the build (this is Python {here}): "
            f".pyc files are specific to one Python version; run lambdascope layer build with "
            f"python{target.python}, or leave --compile out"
        )


def compile_layer(root: Path, files: Sequence[str]) -> list[str]:
    """Write unchecked hash-based ``.pyc`` files for the ``.py`` files among ``files``; the paths
    (relative to ``root``) of those written."""
    import importlib.util
    import py_compile

    written = []
    for rel in files:
        if not rel.endswith(".py"):
            continue
        source = root / rel
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            py_compile.compile(
                str(source), cfile=str(cached), dfile=f"/opt/python/{rel}", doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except (py_compile.PyCompileError, SyntaxError, ValueError):
            continue  # a file this Python cannot compile cannot be imported either
        written.append(cached.relative_to(root).as_posix())
    return written


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def marker_environment(target: Target) -> dict[str, str]:
    """The values of environment markers (PEP 508) on the target's runtime."""
    version = f"{target.python}.0"
    return {
        "implementation_name": "cpython", "implementation_version": version,
        "os_name": "posix", "platform_machine": target.machine,
        "platform_python_implementation": "CPython", "platform_release": "",
        "platform_system": "Linux", "platform_version": "", "python_full_version": version,
        "python_version": target.python, "sys_platform": "linux",
    }


def _requirement_type() -> Any:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip, which the build needs anyway, carries its own copy
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    return Requirement


def missing_requirements(root: Path, target: Target, extras: Sequence[str] = ()) -> list[str]:
    """The requirements of the distributions under ``root`` that apply on ``target`` and are
    not installed there, without their markers (``name[extras] specifier``).

    pip evaluates the environment markers of dependencies (``; python_version < "3.11"``)
    against the interpreter running it, not against ``--python-version``: building for
    another Python version can leave out a dependency the target needs. This finds them.
    """
    from email.parser import HeaderParser

    requirement = _requirement_type()
    base = marker_environment(target)
    dists: dict[str, list[str]] = {}
    for meta in sorted(root.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        name = headers.get("Name")
        if name:
            dists[_canonical(str(name))] = [str(r) for r in headers.get_all("Requires-Dist") or []]
    wanted: dict[str, set[str]] = {name: set() for name in dists}  # the extras asked of each
    wanted[_PACKAGE] = set(extras)
    missing: dict[str, str] = {}
    todo = list(dists)
    while todo:
        name = todo.pop()
        for text in dists.get(name, []):
            try:
                req = requirement(text)
            except Exception:
                continue  # a requirement pip could not read either
            applies = req.marker is None or any(
                req.marker.evaluate({**base, "extra": extra})
                for extra in ("", *sorted(wanted.get(name, ())))
            )
            if not applies:
                continue
            dep = _canonical(req.name)
            if dep not in dists:
                shown = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
                missing.setdefault(dep, f"{req.name}{shown}{req.specifier}")
            elif not set(req.extras) <= wanted[dep]:
                wanted[dep] |= set(req.extras)
                todo.append(dep)  # its requirements under the new extras apply too
    return [missing[key] for key in sorted(missing)]


def _packages(root: Path) -> list[tuple[str, str]]:
    from email.parser import HeaderParser

    found = []
    for meta in root.glob("*.dist-info/METADATA"):
        headers = HeaderParser().parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        name, version = headers.get("Name"), headers.get("Version")
        if name and version:
            found.append((str(name), str(version)))
    return sorted(found, key=lambda p: p[0].lower())


def _complete(site: Path, work: Path, target: Target, extras: Sequence[str],
              progress: Callable[[str], None] | None, **pip_options: Any) -> None:
    """Install what pip left out because it read the markers for this interpreter."""
    for round_ in range(1, 6):
        missing = missing_requirements(site, target, extras)
        if not missing:
            return
        if progress is not None:
            progress(f"installing what {target.runtime} also needs: {', '.join(missing)}")
        more = work / f"more-{round_}"
        _run_pip(pip_command(target, more, *missing, **pip_options), progress)
        for entry in sorted(more.iterdir()):
            if not (site / entry.name).exists():  # what the first pass has stays as it is
                shutil.move(str(entry), str(site / entry.name))
    raise LayerError("the dependencies for " + target.runtime + " did not settle: "
                     + ", ".join(missing_requirements(site, target, extras)))


def build_layer(
    target: Target,
    output: str | os.PathLike[str],
    *,
    find_links: Sequence[str] = (),
    no_index: bool = False,
    index_url: str | None = None,
    extras: Sequence[str] = (),
    compile_bytecode: bool = False,
    progress: Callable[[str], None] | None = None,
    package_dir: Path | None = None,
) -> LayerResult:
    """Write the layer zip for ``target`` to ``output`` and say what is in it.

    ``compile_bytecode``: add ``.pyc`` files (see :func:`compile_layer`); the build must then run
    on the target's Python version."""
    if compile_bytecode:
        check_compile(target)
    out = Path(output)
    if out.is_dir():
        raise LayerError(f"--output {out}: is a directory (give a file name ending in .zip)")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise LayerError(f"--output {out}: the folder {parent} does not exist")
    for link in find_links:
        if "://" not in link and not os.path.exists(link):
            raise LayerError(f"--find-links {link}: no such file or folder")
    known = known_extras()
    for extra in extras:
        if extra not in known:
            raise LayerError(f"--extra {extra!r}: lambdascope has no such extra (it has "
                             f"{', '.join(sorted(known)) or 'none'})")
    with tempfile.TemporaryDirectory(prefix="lambdascope-layer-") as tmp:
        work = Path(tmp)
        if progress is not None:
            progress("packing lambdascope into a wheel")
        wheel = self_wheel(work / "wheel", package_dir)
        requirement = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
        site = work / "python"
        cmd = pip_command(target, site, requirement, find_links=find_links,
                          no_index=no_index, index_url=index_url)
        _run_pip(cmd, progress)
        if not (site / _PACKAGE / "__init__.py").is_file():
            raise LayerError("pip finished but lambdascope is not in the layer")
        _complete(site, work, target, extras, progress,
                  find_links=find_links, no_index=no_index, index_url=index_url)
        kept = _layer_files(site)
        _clean_records(site, set(kept))
        if compile_bytecode:
            if progress is not None:
                progress(f"compiling to .pyc for {target.runtime}")
            kept = sorted([*kept, *compile_layer(site, kept)])
        entries = []
        unzipped = 0
        for rel in kept:
            path = site / rel
            data = path.read_bytes()
            unzipped += len(data)
            executable = bool(path.stat().st_mode & 0o111)
            entries.append((f"python/{rel}", data, executable))
        packages = _packages(site)
        _write_zip(out, entries)
    return LayerResult(
        path=str(out), size_bytes=out.stat().st_size, unzipped_bytes=unzipped,
        files=len(entries), target=target, packages=packages, compiled=compile_bytecode,
    )


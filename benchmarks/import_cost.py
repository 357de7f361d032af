"""What ``import lambdascope`` costs on a bare interpreter: the median and minimum of N fresh
processes (after one that writes the bytecode), and which standard-library modules it brings.

    .venv/bin/python benchmarks/import_cost.py [--src DIR] [-n 15]

``--src`` measures another checkout's ``src`` (e.g. a worktree of an older commit), so two
versions can be compared in the same run on this noisy host.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys

CODE = ("import sys, time\nbefore = set(sys.modules)\nt = time.perf_counter()\nimport lambdascope\n"
        "ms = (time.perf_counter() - t) * 1000\n"
        "print(ms, ' '.join(sorted(set(sys.modules) - before)))")
WATCHED = ("typing", "logging", "json", "random", "re", "enum", "threading", "contextvars")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=str(pathlib.Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("-n", type=int, default=15)
    ns = ap.parse_args()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ns.src}
    subprocess.run([sys.executable, "-c", "import lambdascope"], env=env, check=True)
    times = []
    modules: list[str] = []
    for _ in range(ns.n):
        out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        times.append(float(out[0]))
        modules = out[1:]
    print(f"import lambdascope ({ns.src}): median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f} ms over {ns.n} fresh interpreters")
    print(f"  {len(modules)} modules imported; of the watched stdlib ones: "
          f"{', '.join(m for m in WATCHED if m in modules) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

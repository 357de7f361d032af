"""examples/quickstart: ``python examples/quickstart/run.py`` invokes the handler four times in
its own process (cold, then warm; one invocation fails) and prints what each report says."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from examples_harness import EXAMPLES


def test_quickstart_prints_one_line_per_report_and_writes_them() -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LAMBDASCOPE_", "AWS_LAMBDA_"))}
    done = subprocess.run([sys.executable, str(EXAMPLES / "quickstart" / "run.py")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["request", "cold", "status"]
    rows = [line.split() for line in lines[1:5]]
    assert [(r[1], r[2]) for r in rows] == [("True", "ok"), ("False", "ok"),
                                            ("False", "error"), ("False", "ok")]
    assert "catalogue_size=1000," in lines[1]  # recorded at import time, sent with report 1
    assert "['beta-user']" in lines[2]

    path = lines[-1].split(": ", 1)[1]
    reports = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
    assert [r["invocation"]["status"] for r in reports] == ["ok", "ok", "error", "ok"]
    assert reports[2]["error"]["type"] == "ValueError"
    assert [s["name"] for s in reports[0]["spans"]] == ["handler", "price", "lookup"]
    assert {r["function"]["service"] for r in reports} == {"quickstart"}

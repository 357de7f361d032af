"""SnapStart: sandboxes restored from one snapshot must not share trace and span ids.

A restored sandbox resumes with the snapshotted process's memory, random generator state
included. The test initialises a parent (the snapshot), then forks children that put the parent's
generator state back (what a restore does) and run the after-restore hooks registered through
the real ``snapshot_restore_py`` package, as the Lambda runtime does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, random, sys
    os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
    import snapshot_restore_py
    import lambdascope
    from lambdascope import _ids
    from lambdascope.testing import capture_reports, fake_context

    run_hooks = sys.argv[1] == "hooks"

    @lambdascope.monitor
    def handler(event, context):
        with lambdascope.span("work"):
            pass
        return None

    # The snapshot: memory as it is at the end of init.
    # (the generator as an id made during init left it: the case re-seeding is for)
    snapshot = (_ids._generator().getstate(), random.getstate())
    results = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _ids._generator().setstate(snapshot[0]); random.setstate(snapshot[1])  # restored
            if run_hooks:
                for func, args, kwargs in snapshot_restore_py.get_after_restore():
                    func(*args, **kwargs)
            with capture_reports() as reports:
                handler({}, fake_context())
                handler({}, fake_context())
            os.write(write, json.dumps(reports).encode())
            os._exit(0)
        os.close(write)
        chunks = []
        while True:
            chunk = os.read(read, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.waitpid(pid, 0)
        results.append(json.loads(b"".join(chunks)))
    print(json.dumps(results))
    """
)


def run(mode: str) -> list:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ids(reports: list) -> set[str]:
    out = set()
    for report in reports:
        out.add(report["trace"]["trace_id"])
        out.update(span["span_id"] for span in report["spans"])
    return out


def test_restored_sandboxes_draw_different_ids() -> None:
    first, second = run("hooks")
    assert ids(first) and ids(second)
    assert ids(first).isdisjoint(ids(second))


def test_without_the_hook_restored_sandboxes_would_collide() -> None:
    """The trap is real: the same memory gives the same ids when nothing re-seeds."""
    first, second = run("no-hooks")
    assert ids(first) == ids(second)


def test_first_invocation_after_restore_reports_snap_start() -> None:
    first, _ = run("hooks")
    inv = first[0]["invocation"]
    assert inv["init_type"] == "snap-start"
    assert inv["cold_start"] is False
    assert 0 <= inv["since_restore_ms"] < 5000
    assert inv["init_duration_ms"] is not None
    assert first[1]["invocation"]["since_restore_ms"] is None

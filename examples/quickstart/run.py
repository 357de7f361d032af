"""Invoke the quickstart handler a few times, the way Lambda would (cold, then warm), and print
what lambdascope reported about each invocation."""

from __future__ import annotations

import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    out = os.path.join(tempfile.mkdtemp(prefix="lambdascope-demo-"), "reports.jsonl")
    os.environ.setdefault("AWS_LAMBDA_FUNCTION_NAME", "quickstart")
    os.environ.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    os.environ.setdefault("AWS_REGION", "eu-west-1")
    os.environ["LAMBDASCOPE_EXPORTERS"] = "file"
    os.environ["LAMBDASCOPE_FILE"] = out
    sys.path.insert(0, HERE)
    import handler as demo

    from lambdascope.testing import fake_context

    events = [
        {"items": ["sku-1", "sku-2"]},
        {"items": ["sku-3"], "beta": True},
        {"items": []},
        {"items": ["sku-4", "sku-5", "sku-6"]},
    ]
    for event in events:
        try:
            demo.handler(event, fake_context(function_name="quickstart", memory_limit_in_mb=256))
        except ValueError:
            pass  # the handler's own error: reported, then raised to the caller as usual

    print(f"{'request':<10} {'cold':<5} {'status':<6} {'ms':>7} {'init ms':>8} "
          f"{'rss MB':>7} {'spans':>5} metrics / labels")
    with open(out) as fh:
        for line in fh:
            r = json.loads(line)
            inv, res = r["invocation"], r["resources"]
            metrics = ", ".join(f"{m['name']}={m['value']}" for m in r["metrics"])
            print(
                f"{inv['request_id'][:8]:<10} {inv['cold_start']!s:<5} {inv['status']:<6} "
                f"{inv['duration_ms']:>7.2f} {inv['init_duration_ms'] or '':>8} "
                f"{res['rss_peak_mb']:>7} {len(r['spans']):>5} {metrics} {r['labels'] or ''}"
            )
    print(f"\nFull reports (one JSON line each): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``lambdascope check``: a function's figures over a window against thresholds; exit status
1 when one is broken (a CI/CD gate), 0 when all pass, 2 on bad input or when there is no
data."""

from __future__ import annotations

from typing import Any

from ._common import (
    die,
    fmt_count,
    fmt_ms,
    fmt_rate,
    fmt_time,
    fmt_usd,
    open_source,
    out,
    parse_number,
    parse_percent,
    parse_rate,
    parse_window,
    print_json,
    table,
)

#: flag → (threshold name in queries.check, parser)
FLAGS = (
    ("max_p95_ms", "--max-p95-ms", "p95_ms", parse_number),
    ("max_error_rate", "--max-error-rate", "error_rate", parse_rate),
    ("max_init_ms", "--max-init-ms", "init_ms", parse_number),
    ("max_cold_start_rate", "--max-cold-start-rate", "cold_start_rate", parse_rate),
    ("max_cost_per_million", "--max-cost-per-million", "cost_per_million", parse_number),
    ("max_agent_overhead_ms", "--max-agent-overhead-ms", "agent_overhead_ms", parse_number),
)
LABELS = {
    "p95_ms": "duration p95",
    "error_rate": "error rate",
    "init_ms": "init p95",
    "cold_start_rate": "cold-start rate",
    "cost_per_million": "cost per million",
    "agent_overhead_ms": "agent overhead p95",
    "regression_pct": "p95 regression",
}


def run(args: Any) -> int:
    function = args.function.strip()
    if not function:
        die("--function: empty name")
    since_ms, until_ms = parse_window(args)
    thresholds: dict[str, float] = {}
    for attr, flag, name, parse in FLAGS:
        value = parse(getattr(args, attr), flag)
        if value is not None:
            thresholds[name] = value
    regression = parse_percent(args.max_regression_pct, "--max-regression-pct")
    if (regression is None) != (args.baseline_version is None):
        die("--baseline-version and --max-regression-pct go together")
    if regression is not None:
        thresholds["regression_pct"] = regression
    if not thresholds:
        die("nothing to check: give at least one --max-… threshold (lambdascope check --help)")

    with open_source(args) as source:
        result = source.stats(function=function, since_ms=since_ms, until_ms=until_ms,
                              by="version")
    entries = [e for e in result.get("functions") or [] if e.get("function") == function]
    window = f"{fmt_time(result.get('since_ms'))} to {fmt_time(result.get('until_ms'))}"
    if not entries:
        die(f"no data: no invocations of {function} from {window} (widen --since?)")
    seen = ", ".join(str(e.get("version")) for e in entries)
    if args.fn_version is not None:
        entry = _find(entries, args.fn_version)
        if entry is None:
            die(f"no data: no invocations of {function} version {args.fn_version} from "
                f"{window} (versions seen: {seen})")
    else:
        entry = entries[0]  # the newest version seen
    baseline = None
    if args.baseline_version is not None:
        baseline = _find(entries, args.baseline_version)
        if baseline is None:
            die(f"no data: no invocations of {function} version {args.baseline_version} (the "
                f"baseline) from {window} (versions seen: {seen})")

    from ..collector.queries import check

    checks = check(entry, thresholds, baseline)
    failed = [c for c in checks if not c.get("ok")]
    if args.json:
        print_json({
            "function": function, "version": entry.get("version"),
            "baseline_version": args.baseline_version,
            "since_ms": result.get("since_ms"), "until_ms": result.get("until_ms"),
            "invocations": entry.get("invocations"), "ok": not failed, "checks": checks,
        })
        return 1 if failed else 0
    version = entry.get("version")
    out(f"{function}" + (f" version {version}" if version is not None else "")
        + f": {fmt_count(entry.get('invocations'))} invocations from {window}")
    rows = []
    for c in checks:
        value = _value(c["check"], c.get("value"))
        note = c.get("note") or ""
        if c["check"] == "regression_pct" and c.get("baseline_p95_ms") is not None:
            note = (f"p95 {fmt_ms(c.get('p95_ms'))} against {fmt_ms(c['baseline_p95_ms'])} in "
                    f"version {args.baseline_version}")
        limit = _value(c["check"], c.get("threshold"), signed=False)
        rows.append([LABELS.get(c["check"], c["check"]), value,
                     ("≤ " if _utf8() else "<= ") + limit,
                     "PASS" if c.get("ok") else "FAIL", note])
    for line in table(["check", "value", "threshold", "result", ""], rows, right={1, 2}):
        out(line)
    if failed:
        out(f"{len(failed)} of {len(checks)} checks failed")
        return 1
    out(f"all {len(checks)} checks passed")
    return 0


def _find(entries: list[dict[str, Any]], version: str) -> dict[str, Any] | None:
    for entry in entries:
        if str(entry.get("version")) == version:
            return entry
    return None


def _value(name: str, value: Any, signed: bool = True) -> str:
    if value is None:
        return "no data"
    if name.endswith("_ms"):
        return fmt_ms(value)
    if name.endswith("_rate"):
        return fmt_rate(value)
    if name == "cost_per_million":
        return fmt_usd(value)
    if name == "regression_pct":
        if not signed:
            return f"{float(value):g}%"
        return f"{float(value):+.1f}%" if value else "0%"
    return str(value)


def _utf8() -> bool:
    from ._common import unicode_ok

    return unicode_ok()

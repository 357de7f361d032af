"""``lambdascope show REQUEST_ID``: one invocation: its fields, its error with the stack, its
logs, a span waterfall in the terminal, the other invocations of its trace, and, when the
report has them, its profile (top functions, the hottest path) and the sandbox's cold-start
diagnostics (the import tree, the slowest imports, runtime, distributions, limits)."""

from __future__ import annotations

from typing import Any

from ._common import (
    clip,
    clip_left,
    die,
    fmt_mb,
    fmt_ms,
    fmt_rate,
    fmt_time,
    open_source,
    out,
    print_json,
    table,
    terminal_width,
    unicode_ok,
)


def run(args: Any) -> int:
    request_id = args.request_id.strip()
    if not request_id or len(request_id) > 256 or "\x00" in request_id:
        die(f"{args.request_id!r}: not a request id")
    if args.width is not None and not 10 <= args.width <= 500:
        die(f"--width {args.width}: between 10 and 500")
    with open_source(args) as source:
        found = source.show(request_id)
        if found is None:
            die(f"no invocation with request id {request_id} in {source.where}")
        logs = found.get("logs")
        if logs is None:  # a collector that does not send them with the invocation
            logs = source.logs(request_id)
    if args.json:
        print_json({**found, "logs": logs})
        return 0
    render(found, logs, args.width)
    return 0


# -- the parts ---------------------------------------------------------------------------------

def dependency_of(span: dict[str, Any]) -> str | None:
    """What a span called, named as the store names dependencies (``S3.GetObject my-bucket``,
    ``GET api.example.com``); None for internal spans and the invocation span."""
    from ..collector.store import dependency_of as store_dependency_of

    return store_dependency_of(span)


def _tree(spans: list[dict[str, Any]], root_id: str | None) -> list[tuple[int, dict[str, Any]]]:
    """Spans in tree order (children by start time) with their depth."""
    ids = {s.get("span_id") for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    tops: list[dict[str, Any]] = []
    for span in spans:
        parent = span.get("parent_span_id")
        if span.get("span_id") == root_id or parent not in ids:
            tops.append(span)
        else:
            children.setdefault(parent, []).append(span)

    def start(s: dict[str, Any]) -> float:
        return float(s.get("start_ms") or 0.0)

    ordered: list[tuple[int, dict[str, Any]]] = []
    seen: set[int] = set()

    def walk(span: dict[str, Any], depth: int) -> None:
        if id(span) in seen:
            return
        seen.add(id(span))
        ordered.append((depth, span))
        for child in sorted(children.get(span.get("span_id"), []), key=start):
            walk(child, depth + 1)

    tops.sort(key=lambda s: (s.get("span_id") != root_id, start(s)))
    for top in tops:
        walk(top, 0 if top.get("span_id") == root_id or root_id is None else 1)
    return ordered


def waterfall(report: dict[str, Any], width: int | None = None,
              fancy: bool | None = None) -> list[str]:
    """The span waterfall: one line per span, indented by depth, the bar scaled to the
    invocation's duration, the dependency on the line, errors marked."""
    spans = report.get("spans") or []
    if not spans:
        return []
    inv = report.get("invocation") or {}
    start = inv.get("start_ms")
    if start is None:
        start = min(float(s.get("start_ms") or 0.0) for s in spans)
    total = inv.get("duration_ms") or 0.0
    ends = [float(s.get("start_ms") or start) + float(s.get("duration_ms") or 0.0)
            for s in spans]
    total = max(float(total), max(ends) - float(start), 1e-6)
    fancy = unicode_ok() if fancy is None else fancy
    full, empty = ("█", " ") if fancy else ("#", " ")
    mark = "✗" if fancy else "x"

    rows = _tree(spans, (report.get("trace") or {}).get("span_id"))
    labels = []
    for depth, span in rows:
        label = dependency_of(span) or span.get("name") or "?"
        attrs = span.get("attributes") or {}
        code = attrs.get("http.response.status_code")
        if span.get("status") == "error" and code:
            label += f" {code}"
        labels.append("  " * min(depth, 8) + clip(label, 48))
    label_width = max(len(x) for x in labels)
    if width is None:
        width = max(20, min(80, terminal_width() - label_width - 24))
    lines = []
    for (_, span), label in zip(rows, labels):
        offset = (float(span.get("start_ms") or start) - float(start)) / total
        length = float(span.get("duration_ms") or 0.0) / total
        begin = min(width - 1, max(0, int(offset * width)))
        cells = max(1, round(length * width))
        cells = min(cells, width - begin)
        bar = empty * begin + full * cells + empty * (width - begin - cells)
        error = f" {mark} error" if span.get("status") == "error" else ""
        lines.append(f"  {label.ljust(label_width)}  |{bar}| "
                     f"{fmt_ms(span.get('duration_ms')).rjust(9)}{error}")
    dropped = report.get("dropped_spans")
    if dropped:
        lines.append(f"  … {dropped} spans not kept (LAMBDASCOPE_MAX_SPANS)")
    return lines


def _fields(report: dict[str, Any], platform: dict[str, Any] | None) -> list[str]:
    inv = report.get("invocation") or {}
    fn = report.get("function") or {}
    res = report.get("resources") or {}
    agent = report.get("agent") or {}
    rows: list[tuple[str, str]] = []
    timing = f"{fmt_time(inv.get('start_ms'))}   duration {fmt_ms(inv.get('duration_ms'))}"
    if inv.get("timeout_ms") is not None:
        timing += f"   timeout {fmt_ms(inv.get('timeout_ms'))}"
    rows.append(("start", timing))
    if report.get("source") == "platform":
        rows.append(("source", "Lambda's REPORT line only (no agent report for this request)"))
    if inv.get("cold_start"):
        cold = f"yes, init {fmt_ms(inv.get('init_duration_ms'))} ({inv.get('init_type')})"
    elif inv.get("proactive_init"):
        cold = f"proactive init {fmt_ms(inv.get('init_duration_ms'))} (no caller waited)"
    else:
        cold = "no" + (f" ({inv.get('init_type')})" if inv.get("init_type") not in
                       (None, "on-demand") else "")
    rows.append(("cold start", cold))
    trigger = inv.get("trigger") or {}
    if trigger:
        text = str(trigger.get("type"))
        if trigger.get("source"):
            text += f" {trigger['source']}"
        batch = inv.get("batch")
        if batch:
            text += f" (batch of {batch.get('size')}, {batch.get('failed')} failed)"
        rows.append(("trigger", text))
    where = " ".join(str(x) for x in (fn.get("region"), fn.get("architecture")) if x)
    rows.append(("function", f"{fn.get('name')} version {fn.get('version') or '-'}"
                             + (f" ({where})" if where else "")
                             + (f", {fn.get('memory_limit_mb')} MB"
                                if fn.get("memory_limit_mb") else "")))
    if fn.get("log_stream"):
        rows.append(("log stream", str(fn.get("log_stream"))))
    if res and res.get("rss_peak_mb") is not None:
        memory = [f"peak {fmt_mb(res.get('rss_peak_mb'))}"]
        if fn.get("memory_limit_mb"):
            memory[0] += f" of {fmt_mb(fn.get('memory_limit_mb'))}"
        if res.get("sandbox_memory_mb") is not None:
            memory.append(f"sandbox {fmt_mb(res.get('sandbox_memory_mb'))}")
        if res.get("rss_growth_mb") is not None:
            memory.append(f"growth since cold start {res['rss_growth_mb']:+.1f} MB")
        if res.get("leak_suspected"):
            memory.append("leak suspected")
        rows.append(("memory", " · ".join(memory)))
        if res.get("cpu_user_ms") is not None:
            rows.append(("cpu", f"user {fmt_ms(res.get('cpu_user_ms'))} · system "
                                f"{fmt_ms(res.get('cpu_system_ms'))}"))
    trace = report.get("trace") or {}
    if trace.get("trace_id"):
        text = str(trace["trace_id"])
        if trace.get("parent_span_id"):
            text += f" (called from span {trace['parent_span_id']})"
        rows.append(("trace", text))
    overhead = (agent.get("overhead") or {}).get("invocation_ms")
    if overhead is not None:
        rows.append(("agent", f"overhead {fmt_ms(overhead)}"))
    if platform:
        rows.append(("lambda", _platform_text(platform)))
    if report.get("labels"):
        rows.append(("labels", ", ".join(str(x) for x in report["labels"])))
    for metric in (report.get("metrics") or [])[:20]:
        dims = metric.get("dimensions") or {}
        dim_text = (" " + ",".join(f"{k}={v}" for k, v in dims.items())) if dims else ""
        rows.append(("metric", f"{metric.get('name')} = {metric.get('value')} "
                               f"{metric.get('unit') or ''}{dim_text}".rstrip()))
    width = max(len(k) for k, _ in rows)
    return [f"  {k.ljust(width)}  {v}" for k, v in rows]


def _platform_text(platform: dict[str, Any]) -> str:
    """Lambda's REPORT line figures, whatever their keys are named (``platform_…`` or not)."""
    def get(*names: str) -> Any:
        for name in names:
            for key in (name, f"platform_{name}"):
                if platform.get(key) is not None:
                    return platform[key]
        return None

    parts = []
    duration = get("duration_ms")
    if duration is not None:
        parts.append(f"duration {fmt_ms(duration)}")
    billed = get("billed_ms")
    if billed is not None:
        parts.append(f"billed {fmt_ms(billed)}")
    memory = get("max_memory_mb", "max_memory_used_mb")
    if memory is not None:
        parts.append(f"max memory used {fmt_mb(memory)}")
    init = get("init_ms", "init_duration_ms")
    if init is not None:
        parts.append(f"init {fmt_ms(init)}")
    status = get("status")
    if status not in (None, "ok", "success"):
        parts.append(f"status {status}")
    error_type = get("error_type")
    if error_type:
        parts.append(str(error_type))
    return " · ".join(parts) + " (REPORT line)" if parts else "REPORT line"


def _error(report: dict[str, Any]) -> list[str]:
    error = report.get("error")
    if not error:
        return []
    lines = [f"error  {error.get('type')}: {error.get('message')}"]
    stack = error.get("stack") or []
    if stack:
        lines.append("  Traceback (most recent call last):")
        for frame in stack:
            line = frame.get("line")
            lines.append(f"    File \"{frame.get('file')}\", line "
                         f"{line if line is not None else '?'}, in {frame.get('function')}")
    return lines


def _merge_logs(report: dict[str, Any], stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agent's captured records and the lines ingested from CloudWatch, by time, once."""
    merged: list[dict[str, Any]] = []
    seen: set[tuple[Any, str]] = set()
    for record in [] if stored else report.get("logs") or []:
        ts = record.get("timestamp_ms", record.get("ts_ms"))
        merged.append({"ts_ms": ts, "level": record.get("level"),
                       "logger": record.get("logger"), "message": record.get("message") or ""})
    for record in stored:
        ts = record.get("ts_ms", record.get("timestamp_ms"))
        merged.append({"ts_ms": ts, "level": record.get("level"),
                       "logger": record.get("logger"), "message": record.get("message") or ""})
    out_logs = []
    for record in sorted(merged, key=lambda r: float(r["ts_ms"] or 0.0)):
        key = (round(float(record["ts_ms"] or 0.0), 0), record["message"])
        if key in seen:
            continue
        seen.add(key)
        out_logs.append(record)
    return out_logs


def _logs(report: dict[str, Any], stored: list[dict[str, Any]]) -> list[str]:
    records = _merge_logs(report, stored)
    if not records:
        return []
    start = (report.get("invocation") or {}).get("start_ms")
    lines = [f"logs ({len(records)})"]
    for record in records:
        ts = record["ts_ms"]
        when = (f"+{fmt_ms(float(ts) - float(start))}" if ts is not None and start is not None
                else fmt_time(ts))
        level = (record.get("level") or "").ljust(7)
        logger = record.get("logger")
        message_lines = str(record["message"]).split("\n")
        head = f"  {when.rjust(10)}  {level} " + (f"{logger}: " if logger else "")
        lines.append(head + message_lines[0])
        for more in message_lines[1:]:
            lines.append(" " * len(head) + more)
    return lines


def _related(found: dict[str, Any], report: dict[str, Any]) -> list[str]:
    related = found.get("related") or []
    if not related:
        return []
    start = (report.get("invocation") or {}).get("start_ms")
    rows = []
    for r in related:
        r_start = r.get("start_ms")
        offset = (f"{'+' if r_start >= start else '-'}{fmt_ms(abs(r_start - start))}"
                  if r_start is not None and start is not None else fmt_time(r_start))
        cold = "cold" if r.get("cold_start") else ""
        relation = r.get("relation") or ""
        rows.append([offset, str(r.get("function") or "-"), str(r.get("request_id")),
                     fmt_ms(r.get("duration_ms")), str(r.get("status") or "-"), cold,
                     str(relation) if relation else str(r.get("trigger_type") or "")])
    trace_id = (report.get("trace") or {}).get("trace_id")
    lines = [f"related invocations (trace {trace_id})" if trace_id else "related invocations"]
    lines += table(["start", "function", "request id", "duration", "status", "", "trigger"],
                   rows, right={0, 3})
    return lines


# -- profile and cold-start diagnostics ------------------------------------------------------------

#: Rows of the top-functions table, frames of the hottest path, modules of the import tree.
TOP_FUNCTIONS = 15
HOT_PATH_FRAMES = 40
IMPORT_TREE_NODES = 60
LINE = 100  # the width the profile and diagnostics sections fit in


def _kind(kind: str, package: str | None) -> str:
    from ..collector.profiles import KIND_NAMES

    if kind == "library" and package:
        return f"lib {package}"
    name = KIND_NAMES.get(kind, kind)
    return f"{name} {package}" if package and kind != "user" else name


def _labelled(function: str, where: str, width: int) -> str:
    """``function (file:line)`` in ``width`` columns: the file is shortened first (from the
    left, keeping the file name), then the function."""
    if not where:
        return clip(function, width)
    room = width - len(function) - 3
    if room >= 8:
        return f"{function} ({clip_left(where, room)})"
    return clip(function, width)


def _profile(report: dict[str, Any]) -> list[str]:
    from ..collector.profiles import hottest_path, library_names, read_profile, top_functions

    # The report's own distributions (a cold start's) tell library frames from the user's;
    # without them, the standard library and well-known packages are told apart.
    profile = read_profile(report.get("profile"), library_names(report.get("diagnostics")))
    if profile is None:
        return []
    interval = profile.interval_ms
    head = (f"profile  {profile.samples:,} samples every {fmt_ms(interval)} = "
            f"{fmt_ms(profile.ms(profile.samples))} sampled")
    if profile.duration_ms is not None:
        head += f" of {fmt_ms(profile.duration_ms)}"
    notes = []
    if profile.mode:
        notes.append(f"profiled by {profile.mode}")
    if profile.dropped_samples:
        notes.append(f"{profile.dropped_samples:,} samples dropped")
    if profile.truncated_stacks:
        notes.append(_plural(profile.truncated_stacks, "stack") + " cut short")
    if profile.stacks_skipped:
        notes.append(_plural(profile.stacks_skipped, "unreadable stack") + " left out")
    lines = [head]
    if notes:
        lines.append(f"  {'; '.join(notes)}")
    if not profile.stacks:
        lines.append("  no stacks were sampled (the invocation was shorter than the interval)")
        return lines
    rows = []
    for f in top_functions(profile, TOP_FUNCTIONS):
        rows.append([_labelled(f["function"], f["where"], 40), clip(_kind(f["kind"],
                                                                           f["package"]), 18),
                     fmt_rate(f["self_share"]), fmt_ms(f["self_ms"]),
                     fmt_rate(f["total_share"]), fmt_ms(f["total_ms"])])
    lines.append("  top functions (self: samples that ended in the function; total: samples "
                 "it was on)")
    lines += table(["function", "code", "self", "self ms", "total", "total ms"], rows,
                   right={2, 3, 4, 5}, indent="    ")
    path = hottest_path(profile)
    if path:
        lines.append(f"  hottest path ({fmt_rate(profile.share(path[-1].samples))} of samples "
                     f"end on it)")
        shown: list[Any] = path if len(path) <= HOT_PATH_FRAMES else [
            *path[:HOT_PATH_FRAMES // 2], None, *path[-HOT_PATH_FRAMES // 2:]]
        for depth, node in enumerate(shown):
            if node is None or node.frame is None:
                lines.append(f"    {'  ' * min(depth, 20)}… {len(path) - HOT_PATH_FRAMES} "
                             f"frames between")
                continue
            indent = "  " * min(depth, 20)
            figure = f"{fmt_rate(profile.share(node.samples))}".rjust(7)
            width = LINE - 4 - len(indent) - len(figure) - 2
            label = _labelled(node.frame.function, node.frame.where(node.hottest_line), width)
            lines.append(f"    {indent}{label.ljust(width)}  {figure}")
    return lines


def _figure_ms(value: Any) -> str:
    from ..collector.profiles import number

    return fmt_ms(number(value))


def _wrap(label: str, parts: list[str], label_width: int) -> list[str]:
    """``label`` then ``parts`` joined by ``, ``, wrapped to ``LINE`` columns."""
    lines: list[str] = []
    current = ""
    room = LINE - 4 - label_width
    for part in parts:
        part = clip(part, room)
        if current and len(current) + 2 + len(part) > room:
            lines.append(current + ",")
            current = part
        else:
            current = f"{current}, {part}" if current else part
    if current:
        lines.append(current)
    return [f"  {(label if n == 0 else '').ljust(label_width)}  {text}"
            for n, text in enumerate(lines)]


def _diagnostics(report: dict[str, Any]) -> list[str]:
    from ..collector.profiles import (
        import_tree,
        largest_distributions,
        limit_text,
        names,
        number,
        slowest_imports,
    )

    diag = report.get("diagnostics")
    if not isinstance(diag, dict):
        return []
    facts: list[tuple[str, str]] = []
    init = [_figure_ms(diag.get("init_ms"))]
    if diag.get("handler"):
        init.append(f"handler {diag.get('handler')} imported in "
                    f"{_figure_ms(diag.get('handler_import_ms'))}")
    if diag.get("import_tracking"):
        init.append(f"import tracking {diag.get('import_tracking')}")
    facts.append(("init", " · ".join(init)))
    runtime = [str(x) for x in (
        " ".join(str(v) for v in (diag.get("implementation"), diag.get("python")) if v),
        diag.get("runtime"), diag.get("architecture")) if x]
    if runtime:
        facts.append(("python", " · ".join(runtime)))
    if diag.get("sandbox_id"):
        facts.append(("sandbox", str(diag.get("sandbox_id"))))
    tmp = diag.get("tmp")
    if isinstance(tmp, dict):
        used, total = number(tmp.get("used_mb")), number(tmp.get("total_mb"))
        facts.append(("/tmp", f"{fmt_mb(used)} used of {fmt_mb(total)}"))
    env = names(diag.get("env_names"))
    if isinstance(diag.get("env_names"), list):
        facts.append(("environment", f"{len(env)} variable names (values are never "
                                     f"recorded)"))
    width = max(len(k) for k, _ in [*facts, ("limits", "")])
    lines = ["cold-start diagnostics"]
    lines += [f"  {k.ljust(width)}  {clip(v, LINE - 4 - width)}" for k, v in facts]
    limits = diag.get("limits")
    if isinstance(limits, dict) and limits:
        lines += _wrap("limits", [f"{k}={limit_text(v)}" for k, v in limits.items()], width)
    if diag.get("truncated"):
        lines.append(f"  {''.ljust(width)}  (the agent cut these diagnostics to fit its size "
                     f"bound)")

    tree = import_tree(diag, max_nodes=IMPORT_TREE_NODES)
    if tree:
        lines.append("  import tree (cumulative time, the module's own in brackets)")
        for node in tree:
            indent = "  " * min(node.depth, 16)
            if node.module is None:
                text = ("… the tree goes on (see --json)" if node.hidden < 0 else
                        f"… {node.hidden} more, {fmt_ms(node.ms)} in all")
                lines.append(f"    {indent}{text}")
                continue
            own = f"({fmt_ms(node.self_ms)})" if node.self_ms is not None else ""
            figures = f"{fmt_ms(node.ms).rjust(9)}  {own.ljust(10)}  "
            mark = "unused" if node.unused else ""
            width_name = LINE - 4 - len(indent) - len(figures) - 6 - 2
            lines.append(f"    {indent}{clip(node.module, width_name).ljust(width_name)}  "
                         f"{figures}{mark}".rstrip())
    slowest = slowest_imports(diag)
    if slowest:
        rows = []
        for s in slowest[:TOP_FUNCTIONS]:
            used = s.get("used")
            rows.append([clip(s["module"], 36), _figure_ms(s.get("ms")),
                         _figure_ms(s.get("self_ms")), clip_left(str(s.get("parent") or "-"), 24),
                         "unused" if used is False else "used" if used is True else "-"])
        lines.append("  slowest imports (unused: the first invocation did not use it)")
        lines += table(["module", "ms", "own ms", "imported by", "first call"], rows,
                       right={1, 2}, indent="    ")
        more = len(slowest) - len(rows)
        if more > 0:
            lines.append(f"    … {more} more (see --json)")
    unused = names(diag.get("unused_imports"))
    if unused:
        lines += _wrap("unused", unused[:40] + ([f"… {len(unused) - 40} more"]
                                                if len(unused) > 40 else []), width)
    dists = largest_distributions(diag, 10)
    if dists:
        rows = [[clip(str(d.get("name")), 32), clip(str(d.get("version") or "-"), 16),
                 fmt_kb(number(d.get("size_kb"))), clip_left(str(d.get("location") or "-"), 34)]
                for d in dists]
        total = len(diag.get("distributions") or [])
        lines.append(f"  largest distributions ({len(rows)} of {total})")
        lines += table(["name", "version", "size", "location"], rows, right={2}, indent="    ")
    return lines


def _plural(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def fmt_kb(value: float | None) -> str:
    if value is None:
        return "-"
    return fmt_mb(value / 1024.0) if value >= 1024 else f"{value:.0f} KB"


def render(found: dict[str, Any], logs: list[dict[str, Any]], width: int | None = None) -> None:
    report = found.get("invocation") or {}
    platform = found.get("platform")
    inv = report.get("invocation") or {}
    fn = report.get("function") or {}
    request_id = inv.get("request_id") or found.get("request_id")
    status = inv.get("status") or (platform or {}).get("status") or "?"
    out(f"invocation {request_id}   {fn.get('name') or found.get('function') or '?'}   "
        f"{str(status).upper()}")
    if report:
        for line in _fields(report, platform):
            out(line)
    elif platform:
        out(f"  lambda  {_platform_text(platform)}")
    sections = [_error(report)]
    bars = waterfall(report, width) if report else []
    if bars:
        total = max(float(inv.get("duration_ms") or 0.0), 0.0)
        sections.append([f"spans ({len(report.get('spans') or [])}; bars scaled to "
                         f"{fmt_ms(total)})", *bars])
    elif report and inv.get("sampled") is False:
        sections.append(["spans: none (this invocation was not sampled)"])
    sections.append(_profile(report))
    sections.append(_diagnostics(report))
    sections.append(_logs(report, logs))
    sections.append(_related(found, report))
    for section in sections:
        if section:
            out()
            for line in section:
                out(line)

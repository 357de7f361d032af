"""Alerts: rules read from a TOML file, evaluated on a schedule inside the collector, each breach
and each recovery posted once to a webhook (docs/alerts.md).

* :func:`load_rules` reads and checks a rules file (SPEC section 8) into a :class:`RuleSet`;
  any mistake is a :class:`RulesError` whose text names the file, the line and the reason.
* :func:`metric_value` is the one definition of each metric, taken from an entry of
  :func:`lambdascope.collector.queries.stats` (pure; the tests check it directly).
* :class:`AlertEngine` evaluates the rules in a thread of its own on a read connection of the
  store (never the writer), keeps what the webhook was told in a small JSON file beside the
  store (so a restart neither repeats a breach nor forgets a recovery), retries a post that
  failed at the next evaluation, and answers :meth:`AlertEngine.firing` for the dashboard and
  ``GET /api/alerts``.

Nothing here may stop the collector: an evaluation or a post that fails is logged once on the
``lambdascope.collector`` logger (the webhook by its host only: its path may hold a token) and
tried again at the next evaluation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = [
    "DEPENDENCY_METRICS",
    "METRICS",
    "AlertEngine",
    "Rule",
    "RuleSet",
    "RulesError",
    "check_url",
    "describe",
    "load_rules",
    "metric_value",
    "parse_rules",
    "state_path_for",
    "summary",
]

log = logging.getLogger("lambdascope.collector")

#: metric -> its unit, as the human line of a post shows it.
METRICS: dict[str, str] = {
    "error_rate": "rate",
    "timeout_rate": "rate",
    "cold_start_rate": "rate",
    "p95_ms": "ms",
    "dependency_p95_ms": "ms",
    "dependency_error_rate": "rate",
    "memory_growth_mb": "MB",
    "cost_per_day": "usd",
}
DEPENDENCY_METRICS = frozenset({"dependency_p95_ms", "dependency_error_rate"})
TOP_KEYS = ("interval", "webhook", "rules")
RULE_KEYS = ("name", "function", "metric", "threshold", "window", "dependency")
REQUIRED_RULE_KEYS = ("name", "function", "metric", "threshold", "window")
DEFAULT_INTERVAL = "30s"
MIN_INTERVAL_MS = 100.0
MAX_INTERVAL_MS = 86_400_000.0
MIN_WINDOW_MS = 1000.0
MAX_WINDOW_MS = 30 * 86_400_000.0
MAX_NAME = 200
MAX_FUNCTION = 256
MAX_DEPENDENCY = 512
HOUR_MS = 3_600_000.0
DAY_MS = 86_400_000.0
#: Seconds to connect to the webhook, and to wait for its answer.
POST_TIMEOUT_S = (3.05, 5.0)
STATE_VERSION = 1
FIRING = "firing"
RESOLVED = "resolved"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- the rules file -----------------------------------------------------------------------------
class RulesError(Exception):
    """A rules file that cannot be used; ``str()`` is the one line to print."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = " ".join(reason.split())
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {self.reason}")


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` entry, checked."""

    name: str
    function: str  # "*": every function seen in the window, each on its own
    metric: str
    threshold: float
    window: str  # as written ("5m")
    window_ms: float
    dependency: str | None = None
    line: int = 0  # of its [[rules]] header, for messages

    @property
    def every_function(self) -> bool:
        return self.function == "*"


@dataclass(frozen=True)
class RuleSet:
    """A checked rules file."""

    path: str
    interval: str
    interval_ms: float
    webhook: str
    rules: tuple[Rule, ...]

    @property
    def webhook_host(self) -> str:
        """The webhook's host (and port): what logs may show of it."""
        parts = urlsplit(self.webhook)
        return parts.netloc.rpartition("@")[2] or "?"

    def rule(self, name: str) -> Rule | None:
        for rule in self.rules:
            if rule.name == name:
                return rule
        return None


def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """Read and check the rules file at ``path``. Raises :class:`RulesError`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise RulesError(name, None, "is a directory, not a rules file") from None
    except OSError as exc:
        raise RulesError(name, None, str(exc.strerror or exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RulesError(name, line, "not UTF-8 text") from None
    return parse_rules(text, name)


def _toml_loads(text: str, path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise RulesError(path, None, "reading TOML needs Python 3.11 or the tomli package "
                                         "(pip install tomli)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(getattr(exc, "msg", "") or exc)
        line = getattr(exc, "lineno", None)
        column = getattr(exc, "colno", None)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        if found:
            line = line or int(found.group(1))
            column = column or int(found.group(2))
            message = message[: found.start()] + message[found.end():]
        elif "(at end of document)" in message:
            message = message.replace("(at end of document)", "").strip()
            line = line or max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        detail = f"not valid TOML: {message.strip()}"
        if column:
            detail += f" (column {column})"
        raise RulesError(path, line, detail) from None


_HEADER = re.compile(r"^\s*\[")
_RULES_HEADER = re.compile(r"""^\s*\[\[\s*(?:rules|"rules"|'rules')\s*\]\]\s*(?:#.*)?$""")
_KEY = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")


class _Lines:
    """Where things are in the text of a rules file, for messages: the line of a top-level key,
    of the i-th ``[[rules]]`` header and of a key inside it. (tomllib gives lines of syntax
    errors only.)"""

    def __init__(self, text: str) -> None:
        self.top: dict[str, int] = {}
        self.headers: list[int] = []
        self.rule_keys: list[dict[str, int]] = []
        section: dict[str, int] | None = self.top
        for number, line in enumerate(text.splitlines(), 1):
            if _RULES_HEADER.match(line):
                self.headers.append(number)
                section = {}
                self.rule_keys.append(section)
                continue
            if _HEADER.match(line):
                section = None  # a table of its own: not ours to locate in
                continue
            found = _KEY.match(line)
            if found and section is not None:
                key = next(g for g in found.groups() if g is not None)
                section.setdefault(key, number)

    def top_key(self, key: str) -> int:
        return self.top.get(key, 1)

    def rule(self, index: int) -> int:
        if index < len(self.headers):
            return self.headers[index]
        return self.top.get("rules", 1)  # rules = [{...}, ...]: the array's line

    def rule_key(self, index: int, key: str) -> int:
        if index < len(self.rule_keys) and key in self.rule_keys[index]:
            return self.rule_keys[index][key]
        return self.rule(index)


def _duration(value: Any, what: str, low_ms: float, high_ms: float) -> float:
    """A duration string checked against its bounds; ValueError with the reason."""
    from .app import parse_duration_ms

    if not isinstance(value, str):
        raise ValueError(f"{what} must be a duration string like \"30s\" or \"5m\", "
                         f"not {_kind(value)}")
    ms = parse_duration_ms(value)
    if ms < low_ms:
        raise ValueError(f"{what} {value!r} is shorter than {_human_ms(low_ms)}")
    if ms > high_ms:
        raise ValueError(f"{what} {value!r} is longer than {_human_ms(high_ms)}")
    return ms


def _human_ms(ms: float) -> str:
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("m", 60_000.0), ("s", 1000.0)):
        if ms >= size and ms % size == 0:
            return f"{int(ms // size)}{unit}"
    return f"{ms:g}ms"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {_kind(value)}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise ValueError(f"{what} must not hold control characters (a newline, a tab...)")
    return value


def check_url(value: Any, what: str = "webhook") -> str:
    """An ``http://`` or ``https://`` URL with a host; ValueError otherwise. The value is not
    repeated in the message: a webhook URL may hold a token."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string (an http:// or https:// URL), "
                         f"not {_kind(value)}")
    if not value or value != value.strip() or re.search(r"\s", value):
        raise ValueError(f"{what} must be an http:// or https:// URL without spaces")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a bad port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{what} must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{what} has no host")
    del port
    return value


def parse_rules(text: str, path: str = "<rules>") -> RuleSet:
    """Check the text of a rules file (see docs/alerts.md). Raises :class:`RulesError`."""
    doc = _toml_loads(text, path)
    lines = _Lines(text)

    def fail(line: int, reason: str) -> RulesError:
        return RulesError(path, line, reason)

    for key in doc:
        if key not in TOP_KEYS:
            raise fail(lines.top_key(key), f"unknown key {key!r} (the file holds interval, "
                                           f"webhook and [[rules]] tables)")
    interval = doc.get("interval", DEFAULT_INTERVAL)
    try:
        interval_ms = _duration(interval, "interval", MIN_INTERVAL_MS, MAX_INTERVAL_MS)
    except ValueError as exc:
        raise fail(lines.top_key("interval"), str(exc)) from None
    if "webhook" not in doc:
        raise fail(1, "no webhook: add webhook = \"https://...\", the URL breaches and "
                      "recoveries are posted to")
    try:
        webhook = check_url(doc["webhook"])
    except ValueError as exc:
        raise fail(lines.top_key("webhook"), str(exc)) from None
    raw_rules = doc.get("rules")
    if raw_rules is None:
        raise fail(1, "no [[rules]]: add at least one rule")
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise fail(lines.top_key("rules"), "rules must be [[rules]] tables")
    if not raw_rules:
        raise fail(lines.top_key("rules"), "no [[rules]]: add at least one rule")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        rules.append(_rule(raw, index, lines, fail, seen))
    return RuleSet(path=path, interval=str(interval).strip(), interval_ms=interval_ms,
                   webhook=webhook, rules=tuple(rules))


def _rule(raw: Mapping[str, Any], index: int, lines: _Lines,
          fail: Callable[[int, str], RulesError], seen: dict[str, int]) -> Rule:
    header = lines.rule(index)
    label = f"rule {index + 1}"
    if isinstance(raw.get("name"), str) and raw["name"].strip():
        label = f"rule {raw['name']!r}"

    def at(key: str) -> int:
        return lines.rule_key(index, key)

    for key in raw:
        if key not in RULE_KEYS:
            raise fail(at(key), f"{label}: unknown key {key!r} (a rule has "
                                f"{', '.join(RULE_KEYS)})")
    for key in REQUIRED_RULE_KEYS:
        if key not in raw:
            raise fail(header, f"{label}: {key} is missing")
    try:
        name = _text(raw["name"], "name", MAX_NAME)
    except ValueError as exc:
        raise fail(at("name"), f"{label}: {exc}") from None
    if name in seen:
        raise fail(at("name"), f"{label}: a second rule with this name (the first is at line "
                               f"{seen[name]}); names must be unique")
    seen[name] = at("name")
    try:
        function = _text(raw["function"], "function", MAX_FUNCTION)
    except ValueError as exc:
        raise fail(at("function"), f"{label}: {exc} (a function name, or \"*\" for every "
                                   f"function)") from None
    metric = raw["metric"]
    if not isinstance(metric, str) or metric not in METRICS:
        shown = repr(metric) if isinstance(metric, str) else _kind(metric)
        raise fail(at("metric"), f"{label}: unknown metric {shown} (one of "
                                 f"{', '.join(METRICS)})")
    threshold = raw["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise fail(at("threshold"), f"{label}: threshold must be a number, not "
                                    f"{_kind(threshold)}")
    if not math.isfinite(threshold):
        raise fail(at("threshold"), f"{label}: threshold must be a finite number")
    if threshold < 0:
        raise fail(at("threshold"), f"{label}: threshold {threshold:g} is negative (a breach "
                                    f"is a value above it; every metric is 0 or more)")
    if METRICS[metric] == "rate" and threshold > 1:
        raise fail(at("threshold"), f"{label}: {metric} is a rate from 0 to 1 (5% is 0.05), "
                                    f"so threshold {threshold:g} could never be broken")
    try:
        window_ms = _duration(raw["window"], "window", MIN_WINDOW_MS, MAX_WINDOW_MS)
    except ValueError as exc:
        raise fail(at("window"), f"{label}: {exc}") from None
    dependency = raw.get("dependency")
    if metric in DEPENDENCY_METRICS:
        if dependency is None:
            raise fail(header, f"{label}: {metric} needs dependency = \"...\" (as "
                               f"`lambdascope stats` lists them, e.g. \"S3.GetObject "
                               f"my-bucket\" or \"GET api.example.com\")")
        try:
            dependency = _text(dependency, "dependency", MAX_DEPENDENCY)
        except ValueError as exc:
            raise fail(at("dependency"), f"{label}: {exc}") from None
    elif dependency is not None:
        raise fail(at("dependency"), f"{label}: dependency applies to "
                                     f"{' and '.join(sorted(DEPENDENCY_METRICS))} only, "
                                     f"not to {metric}")
    return Rule(name=name, function=function, metric=metric, threshold=float(threshold),
                window=raw["window"].strip(), window_ms=window_ms, dependency=dependency,
                line=header)


# -- the metrics --------------------------------------------------------------------------------
def metric_value(metric: str, entry: Mapping[str, Any] | None, window_ms: float,
                 dependency: str | None = None) -> float | None:
    """The value of ``metric`` in one entry of ``queries.stats()`` computed over a window of
    ``window_ms``; ``None`` when the window holds nothing to compute it from (no invocation,
    no call of the dependency, fewer than two minutes with warm invocations for the memory
    trend). Definitions: docs/alerts.md."""
    if not entry or not entry.get("invocations"):
        return None
    value: Any
    if metric in ("error_rate", "timeout_rate", "cold_start_rate"):
        value = entry.get(metric)
    elif metric == "p95_ms":
        value = (entry.get("duration") or {}).get("all", {}).get("p95_ms")
    elif metric in DEPENDENCY_METRICS:
        found = next((d for d in entry.get("dependencies") or ()
                      if d.get("dependency") == dependency), None)
        if found is None or not found.get("count"):
            return None
        value = found.get("p95_ms" if metric == "dependency_p95_ms" else "error_rate")
    elif metric == "memory_growth_mb":
        trend = (entry.get("memory") or {}).get("warm_trend_mb_per_hour")
        value = None if trend is None else trend * window_ms / HOUR_MS
    elif metric == "cost_per_day":
        total = (entry.get("cost") or {}).get("total_usd")
        value = None if total is None else total * DAY_MS / window_ms
    else:
        raise ValueError(f"unknown metric {metric!r}")
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _number(value: float) -> float:
    """A value as posted: 12 significant digits (no float noise)."""
    return float(f"{value:.12g}")


def _show(metric: str, value: float) -> str:
    unit = METRICS.get(metric)
    if unit == "rate":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value:.4g} ms"
    if unit == "MB":
        return f"{value:.4g} MB"
    if unit == "usd":
        return f"${value:.4g}"
    return f"{value:.4g}"


def _slack_escape(text: str) -> str:
    """Slack's three control characters in mrkdwn text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def state_path_for(db: str | os.PathLike[str]) -> str:
    """Where the alert state of the store at ``db`` is kept: ``<db>-alerts.json``."""
    return os.fspath(db) + "-alerts.json"


# -- the engine ---------------------------------------------------------------------------------
@dataclass
class _Alert:
    """One (rule, function): what the last evaluation found, and what the webhook was told."""

    rule: str
    function: str
    firing: bool = False
    value: float | None = None
    since_ms: float | None = None  # when the current (or last) breach began
    posted: str = RESOLVED  # the last state the webhook acknowledged
    pending: list[dict[str, Any]] = field(default_factory=list)  # not yet acknowledged

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "function": self.function, "firing": self.firing,
                "value": self.value, "since_ms": self.since_ms, "posted": self.posted,
                "pending": self.pending}

    @classmethod
    def from_json(cls, data: Any) -> _Alert | None:
        if not isinstance(data, dict):
            return None
        rule, function = data.get("rule"), data.get("function")
        if not isinstance(rule, str) or not isinstance(function, str):
            return None
        value = data.get("value")
        since = data.get("since_ms")
        pending = data.get("pending")
        return cls(
            rule=rule, function=function, firing=data.get("firing") is True,
            value=float(value) if isinstance(value, (int, float)) and not isinstance(
                value, bool) else None,
            since_ms=float(since) if isinstance(since, (int, float)) and not isinstance(
                since, bool) else None,
            posted=FIRING if data.get("posted") == FIRING else RESOLVED,
            pending=[p for p in pending if isinstance(p, dict) and p.get("state") in (
                FIRING, RESOLVED)] if isinstance(pending, list) else [],
        )

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Queue a post. A recovery the webhook has not heard of yet, followed by a new breach,
        cancels out (for the webhook the alert never stopped firing); a breach is never
        dropped, even when it recovered before the webhook could hear of it."""
        if payload["state"] == FIRING and self.pending and self.pending[-1]["state"] == RESOLVED:
            before = self.pending[-2]["state"] if len(self.pending) >= 2 else self.posted
            if before == FIRING:
                self.pending.pop()
                return
        self.pending.append(payload)

    @property
    def idle(self) -> bool:
        return not self.firing and not self.pending and self.posted == RESOLVED


class AlertEngine:
    """Evaluates a :class:`RuleSet` against the store every ``interval`` in a thread of its own
    and posts breaches and recoveries to the webhook.

    ``reader``: makes a read connection to the store (``Store.reader``). ``state_path``: the
    JSON file the state is kept in (``None``: in memory only). ``base_url``: the collector's
    address as people reach it, for the dashboard links.
    """

    def __init__(
        self,
        rules: RuleSet,
        reader: Callable[[], Any],
        *,
        state_path: str | None,
        base_url: str,
        prices: Any = None,
        post_timeout_s: float | tuple[float, float] = POST_TIMEOUT_S,
    ) -> None:
        self.rules = rules
        self.state_path = state_path
        self.base_url = base_url.rstrip("/")
        self._reader = reader
        self._prices = prices
        self._post_timeout = post_timeout_s
        self._conn: Any = None
        self._session: Any = None
        self._lock = threading.Lock()  # the alerts, the counters
        self._round = threading.Lock()  # one evaluation at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._problems: set[str] = set()  # what was logged and has not recovered
        self._dirty = False
        self.evaluations = 0
        self.last_evaluation_ms: float | None = None
        self._alerts: dict[tuple[str, str], _Alert] = {}
        self._load()

    # -- public ---------------------------------------------------------------------------
    def start(self) -> None:
        """Evaluate now, then every ``interval``, in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lambdascope-alerts",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the thread (an evaluation under way finishes first), save, close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        with self._round:
            if self._dirty:
                self._save()
            self._close_conn()
            if self._session is not None:
                with contextlib.suppress(Exception):
                    self._session.close()
                self._session = None

    def firing(self) -> list[dict[str, Any]]:
        """The alerts firing now, the oldest breach first: each a dict with ``rule``,
        ``function``, ``metric``, ``value``, ``threshold``, ``window``, ``since_ms``,
        ``dependency`` and ``dashboard_url``."""
        out = []
        with self._lock:
            alerts = [a for a in self._alerts.values() if a.firing]
        for alert in alerts:
            rule = self.rules.rule(alert.rule)
            if rule is None:
                continue
            out.append({
                "rule": rule.name, "function": alert.function, "metric": rule.metric,
                "value": None if alert.value is None else _number(alert.value),
                "threshold": rule.threshold, "window": rule.window,
                "since_ms": alert.since_ms, "dependency": rule.dependency,
                "dashboard_url": self.dashboard_url(alert.function),
            })
        out.sort(key=lambda a: (a["since_ms"] or 0.0, a["rule"], a["function"]))
        return out

    def pending_posts(self) -> int:
        """Posts queued and not yet acknowledged by the webhook."""
        with self._lock:
            return sum(len(a.pending) for a in self._alerts.values())

    def summary(self, function: str | None = None) -> dict[str, Any]:
        """The firing alerts (of ``function`` when given) and how the evaluation goes."""
        alerts = self.firing()
        if function is not None:
            alerts = [a for a in alerts if a["function"] == function]
        with self._lock:
            evaluations, last = self.evaluations, self.last_evaluation_ms
        return {"configured": True, "rules": len(self.rules.rules),
                "interval_ms": self.rules.interval_ms, "evaluations": evaluations,
                "last_evaluation_ms": last, "pending_posts": self.pending_posts(),
                "alerts": alerts}

    def dashboard_url(self, function: str) -> str:
        return f"{self.base_url}/functions/{quote(function, safe='')}"

    def evaluate(self, now_ms: float | None = None) -> None:
        """One round: compute every rule's metric over ``[now - window, now]``, note the
        breaches and recoveries, post what the webhook has not acknowledged yet. Never
        raises."""
        with self._round:
            now = time.time() * 1000.0 if now_ms is None else float(now_ms)
            try:
                values = self._measure(now)
            except Exception as exc:
                self._close_conn()  # a fresh connection next time
                self._problem("evaluate", "alerts: evaluating the rules failed (%s: %s); "
                              "trying again at each interval", type(exc).__name__,
                              " ".join(str(exc).split())[:300])
            else:
                self._recovered("evaluate", "alerts: evaluating the rules works again")
                self._apply(values, now)
            with self._lock:
                self.evaluations += 1
                self.last_evaluation_ms = now
            try:
                self._deliver()
            except Exception as exc:  # pragma: no cover - a bug in delivery itself
                self._problem("deliver", "alerts: delivering posts failed (%s: %s)",
                              type(exc).__name__, " ".join(str(exc).split())[:300])
            if self._dirty:
                self._save()

    # -- evaluation -------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._reader()
        return self._conn

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _measure(self, now: float) -> dict[tuple[str, str], float | None]:
        """(rule, function) -> value (None: nothing to compute it from) for every rule, over
        the functions it covers and those it has state for."""
        from . import queries

        conn = self._connection()
        prices = self._prices
        # One stats() call per window for the "*" rules (every function at once); one per
        # (window, function) for the rest, unless a "*" rule already reads that window.
        wide = {r.window_ms for r in self.rules.rules if r.every_function}
        cache: dict[tuple[float, str | None], dict[str, dict[str, Any]]] = {}

        def entries(window_ms: float, function: str | None) -> dict[str, dict[str, Any]]:
            key = (window_ms, None if window_ms in wide else function)
            found = cache.get(key)
            if found is None:
                # No rule reads the slowest imports: spare their query.
                result = queries.stats(conn, function=key[1], since_ms=now - window_ms,
                                       until_ms=now, prices=prices, imports=False)
                found = cache[key] = {e["function"]: e for e in result["functions"]}
            return found

        with self._lock:
            known: dict[str, set[str]] = {}
            for rule_name, function in self._alerts:
                known.setdefault(rule_name, set()).add(function)
        values: dict[tuple[str, str], float | None] = {}
        for rule in self.rules.rules:
            if rule.every_function:
                table = entries(rule.window_ms, None)
                functions = set(table) | known.get(rule.name, set())
            else:
                table = entries(rule.window_ms, rule.function)
                # State for another function: the rule was edited; it resolves.
                functions = {rule.function} | known.get(rule.name, set())
            for function in sorted(functions):
                applies = rule.every_function or function == rule.function
                entry = table.get(function) if applies else None
                values[(rule.name, function)] = metric_value(
                    rule.metric, entry, rule.window_ms, rule.dependency)
        return values

    def _apply(self, values: Mapping[tuple[str, str], float | None], now: float) -> None:
        with self._lock:
            for key, value in values.items():
                rule = self.rules.rule(key[0])
                if rule is None:  # pragma: no cover - values come from the rules
                    continue
                alert = self._alerts.get(key)
                if alert is None:
                    alert = self._alerts[key] = _Alert(rule=key[0], function=key[1])
                breached = value is not None and value > rule.threshold
                alert.value = value
                if breached and not alert.firing:
                    alert.firing = True
                    alert.since_ms = now
                    alert.enqueue(self._payload(rule, alert, FIRING, now))
                    self._dirty = True
                elif not breached and alert.firing:
                    alert.firing = False
                    alert.enqueue(self._payload(rule, alert, RESOLVED, now))
                    self._dirty = True
            for key in [k for k, a in self._alerts.items() if a.idle]:
                del self._alerts[key]

    def _payload(self, rule: Rule, alert: _Alert, state: str, now: float) -> dict[str, Any]:
        value = alert.value
        url = self.dashboard_url(alert.function)
        subject = alert.function
        if rule.dependency:
            subject += f" → {rule.dependency}"
        if state == FIRING:
            assert value is not None
            what = (f"{rule.metric} of {subject} is {_show(rule.metric, value)}, above "
                    f"{_show(rule.metric, rule.threshold)}")
        elif value is None:
            what = (f"{rule.metric} of {subject}: nothing to measure in the window (back under "
                    f"{_show(rule.metric, rule.threshold)})")
        else:
            what = (f"{rule.metric} of {subject} is {_show(rule.metric, value)}, back under "
                    f"{_show(rule.metric, rule.threshold)}")
        text = f"[{state.upper()}] {rule.name}: {what} over the last {rule.window} {url}"
        since = alert.since_ms if alert.since_ms is not None else now
        return {
            "rule": rule.name,
            "function": alert.function,
            "metric": rule.metric,
            "dependency": rule.dependency,
            "value": None if value is None else _number(value),
            "threshold": rule.threshold,
            "state": state,
            "window": rule.window,
            "dashboard_url": url,
            "since_ms": since,
            "at_ms": now,
            "id": f"{rule.name}|{alert.function}|{int(since)}",
            "text": _slack_escape(text),
        }

    # -- delivery ---------------------------------------------------------------------------
    def _deliver(self) -> None:
        """Post every queued payload, each alert's in order; a payload leaves the queue only
        after a 2xx. The webhook unreachable or failing (5xx, no answer): the rest waits for
        the next evaluation. A payload it refuses (4xx) is retried next time too, without
        holding up the others."""
        with self._lock:
            queue = sorted((a for a in self._alerts.values() if a.pending),
                           key=lambda a: a.pending[0].get("at_ms") or 0.0)
        for alert in queue:
            while not self._stop.is_set():  # stopping: what is left waits for the next start
                with self._lock:
                    if not alert.pending:
                        break
                    payload = alert.pending[0]
                outcome, reason = self._post(payload)
                if outcome != "ok":
                    self._problem(
                        "webhook", "alerts: the webhook at %s did not take a post (%s); it is "
                        "tried again at each evaluation", self.rules.webhook_host, reason)
                    if outcome == "down":
                        return
                    break
                self._recovered("webhook", "alerts: the webhook at %s takes posts again",
                                self.rules.webhook_host)
                with self._lock:
                    if alert.pending and alert.pending[0] is payload:
                        alert.pending.pop(0)
                        alert.posted = payload["state"]
                    if alert.idle:
                        self._alerts.pop((alert.rule, alert.function), None)
                    self._dirty = True
                self._save()  # acknowledged: never posted again, even after a crash

    def _post(self, payload: Mapping[str, Any]) -> tuple[str, str]:
        """("ok" | "refused" | "down", reason). The reason never holds the URL."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        try:
            response = self._session.post(
                self.rules.webhook, json=payload, timeout=self._post_timeout,
                allow_redirects=False,
                headers={"User-Agent": "lambdascope-collector-alerts"},
            )
        except requests.Timeout:
            return "down", "no answer in time"
        except requests.ConnectionError:
            return "down", "cannot connect"
        except requests.RequestException as exc:
            return "down", type(exc).__name__
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return "ok", ""
        if 400 <= status < 500 and status not in (408, 429):
            return "refused", f"HTTP {status}"
        return "down", f"HTTP {status}"

    # -- logging once -----------------------------------------------------------------------
    def _problem(self, site: str, message: str, *args: Any) -> None:
        if site in self._problems:
            return
        self._problems.add(site)
        log.warning("lambdascope collector: " + message, *args)

    def _recovered(self, site: str, message: str, *args: Any) -> None:
        if site in self._problems:
            self._problems.discard(site)
            log.warning("lambdascope collector: " + message, *args)

    # -- state ------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.state_path is None:
            return
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("lambdascope collector: alerts: cannot read the alert state %s (%s); "
                        "starting without it", self.state_path,
                        getattr(exc, "strerror", None) or type(exc).__name__)
            return
        entries = data.get("alerts") if isinstance(data, dict) else None
        dropped = []
        for raw in entries if isinstance(entries, list) else ():
            alert = _Alert.from_json(raw)
            if alert is None:
                continue
            if self.rules.rule(alert.rule) is None:
                dropped.append(alert.rule)  # the rule is gone from the file
                continue
            if not alert.idle:
                self._alerts[(alert.rule, alert.function)] = alert
        if dropped:
            self._dirty = True
            log.info("lambdascope collector: alerts: forgetting the state of rules no longer in "
                     "%s: %s", self.rules.path, ", ".join(sorted(set(dropped))))

    def _save(self) -> None:
        """Write the state atomically (a temporary file renamed over the old one)."""
        if self.state_path is None:
            self._dirty = False
            return
        with self._lock:
            data = {"version": STATE_VERSION, "saved_ms": time.time() * 1000.0,
                    "alerts": [a.to_json() for a in self._alerts.values()]}
            self._dirty = False
        directory = os.path.dirname(os.path.abspath(self.state_path))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".alerts-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)
            tmp = None
        except OSError as exc:
            self._dirty = True  # tried again after the next evaluation
            self._problem("state", "alerts: cannot write the alert state %s (%s)",
                          self.state_path, exc.strerror or type(exc).__name__)
        else:
            self._recovered("state", "alerts: the alert state %s is written again",
                            self.state_path)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _loop(self) -> None:
        interval = self.rules.interval_ms / 1000.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.evaluate()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a round took longer than the interval: the next one now
                next_at = time.monotonic()
                delay = 0.0
            if self._stop.wait(delay):
                break


def summary(engine: AlertEngine | None, function: str | None = None) -> dict[str, Any]:
    """What ``GET /api/alerts`` answers: the firing alerts (of ``function`` when given) and how
    the evaluation goes; ``engine`` None: a collector without ``--alerts``."""
    if engine is None:
        return {"configured": False, "rules": 0, "interval_ms": None, "evaluations": 0,
                "last_evaluation_ms": None, "pending_posts": 0, "alerts": []}
    return engine.summary(function)


def describe(rules: RuleSet) -> str:
    """A few words for the collector's ready line."""
    n = len(rules.rules)
    return (f"{n} alert rule{'s' if n != 1 else ''} from {rules.path}, every {rules.interval}, "
            f"posting to {rules.webhook_host}")

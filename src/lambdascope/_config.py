"""Configuration: every ``LAMBDASCOPE_*`` variable of the contract, parsed in one place.

An explicit decorator option beats the environment. A bad value never stops the function: it
logs one line naming the variable, the value, what was expected and the value used instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from ._guard import log_once

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

PREFIX = "LAMBDASCOPE_"
EXPORTER_NAMES = ("http", "otlp", "emf", "stdout", "file")
FLUSH_MODES = ("auto", "after_response", "sync")
INSTRUMENT_NAMES = (
    "botocore", "requests", "urllib3", "http.client", "httpx", "threading", "subprocess",
)
# httpx is on by default too (the contract's list predates it): the OpenAI, Anthropic and many
# other SDKs call out through httpx, which bypasses http.client.
# threading (context into worker threads) and subprocess (child processes as spans) too.
DEFAULT_INSTRUMENT = (
    "botocore", "requests", "urllib3", "http.client", "httpx", "threading", "subprocess",
)
DEFAULT_REDACT = (
    "authorization",
    "cookie",
    "password",
    "passwd",
    "secret",
    "token",
    "api key",
    "apikey",
    "credential",
    "session",
    "signature",
    "private key",
)

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off", ""))


class ConfigError(ValueError):
    """A configuration value that cannot be used; carries what was expected."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError("true or false")


def _str(raw: Any) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip()
    return text or None


def _url(raw: Any) -> str | None:
    text = _str(raw)
    if text is None:
        return None
    from urllib.parse import urlsplit

    expected = "an http:// or https:// URL with a host"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(expected)
    return text.rstrip("/")


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ConfigError(f"a whole number from {lo} to {hi}")
        try:
            value = int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise ConfigError(f"a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ConfigError(f"a whole number from {lo} to {hi}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        expected = f"a number from {lo:g} to {hi:g}"
        if isinstance(raw, bool):
            raise ConfigError(expected)
        try:
            value = float(raw) if isinstance(raw, (int, float)) else float(str(raw).strip())
        except ValueError:
            raise ConfigError(expected) from None
        if not (lo <= value <= hi):  # also rejects NaN
            raise ConfigError(expected)
        return value

    return parse


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip().lower().replace("-", "_")
        if text not in choices:
            raise ConfigError("one of " + ", ".join(choices))
        return text

    return parse


def _list(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    return tuple(s for s in (str(item).strip() for item in items) if s)


def _names(allowed: tuple[str, ...], none_ok: bool) -> Callable[[Any], tuple[str, ...]]:
    def parse(raw: Any) -> tuple[str, ...]:
        items = tuple(s.lower() for s in _list(raw))
        if none_ok and items in (("none",), ()):
            return ()
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise ConfigError("a comma list of " + ", ".join(allowed))
        return tuple(dict.fromkeys(items))

    return parse


# key -> (parser, default). A default of None means "derived" (see Config.__init__).
_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "disabled": (_bool, False),
    "service": (_str, None),
    "exporters": (_names(EXPORTER_NAMES, False), None),
    "collector_url": (_url, None),
    "token": (_str, None),
    "otlp_endpoint": (_url, None),
    "file": (_str, "/tmp/lambdascope/reports.jsonl"),
    "flush": (_choice(*FLUSH_MODES), "auto"),
    "flush_timeout_ms": (_int_range(1, 60_000), 1000),
    "timeout_warning_ms": (_int_range(0, 900_000), 200),
    "sample_rate": (_float_range(0.0, 1.0), 1.0),
    "spool_dir": (_str, "/tmp/lambdascope/spool"),
    "spool_max_mb": (_float_range(0.0, 10_240.0), 10.0),
    "capture_event": (_bool, False),
    "capture_logs": (_bool, True),
    "redact": (_list, ()),
    "instrument": (_names(INSTRUMENT_NAMES, True), DEFAULT_INSTRUMENT),
    "max_spans": (_int_range(0, 100_000), 500),
    "profile_rate": (_float_range(0.0, 1.0), 0.0),
    "profile_interval_ms": (_int_range(1, 10_000), 10),
}

KEYS = tuple(_FIELDS)

#: Settings beyond the contract's table. They do not make a configuration different for the
#: pipeline (exporters, redaction), so they stay out of ``key`` and ``as_dict()``.
#: ``profile`` is a decorator option only (``@monitor(profile=True)``: every invocation of that
#: handler is profiled); ``diagnostics`` is also ``LAMBDASCOPE_DIAGNOSTICS`` (cold-start
#: diagnostics on the first report of a sandbox, see docs/profiling.md).
_EXTRA_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "profile": (_bool, False),
    "diagnostics": (_bool, True),
}
EXTRA_KEYS = tuple(_EXTRA_FIELDS)
OPTION_ONLY = frozenset(("profile",))
_ALL_FIELDS = {**_FIELDS, **_EXTRA_FIELDS}


def _describe(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) if value else "none"
    if value is None:
        return "unset"
    return str(value).lower() if isinstance(value, bool) else str(value)


class Config:
    """Resolved, read-only configuration of one monitored handler."""

    __slots__ = (
        *KEYS,
        *EXTRA_KEYS,
        "_frozen",
        "key",
    )

    disabled: bool
    service: str | None
    exporters: tuple[str, ...]
    collector_url: str | None
    token: str | None
    otlp_endpoint: str | None
    file: str
    flush: str
    flush_timeout_ms: int
    timeout_warning_ms: int
    sample_rate: float
    spool_dir: str
    spool_max_mb: float
    capture_event: bool
    capture_logs: bool
    redact: tuple[str, ...]
    instrument: tuple[str, ...]
    max_spans: int
    profile_rate: float
    profile_interval_ms: int
    profile: bool
    diagnostics: bool

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        opts = dict(options or {})
        bad: list[tuple[str, str, Any, str]] = []
        for key in list(opts):
            if key not in _ALL_FIELDS:
                log_once(
                    "config-option:" + key,
                    "lambdascope: unknown monitor option %r ignored (known options: %s)",
                    key,
                    ", ".join((*KEYS, *EXTRA_KEYS)),
                )
                del opts[key]
        for key, (parse, default) in _ALL_FIELDS.items():
            if key in opts:
                source, raw = f"monitor option {key!r}", opts[key]
            elif key in OPTION_ONLY:
                object.__setattr__(self, key, default)
                continue
            else:
                name = PREFIX + key.upper()
                raw = env.get(name)
                if raw is None or (raw.strip() == "" and key not in ("redact",)):
                    object.__setattr__(self, key, default)
                    continue
                source = name
            try:
                value = parse(raw)
            except ConfigError as err:
                value = default
                bad.append((key, source, raw, err.expected))
            object.__setattr__(self, key, value)

        # Derived defaults.
        if self.otlp_endpoint is None:
            endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            object.__setattr__(self, "otlp_endpoint", endpoint or "http://localhost:4318")
        exporters = self.exporters
        if exporters is None:
            exporters = ("http",) if self.collector_url else ("stdout",)
        elif "http" in exporters and not self.collector_url:
            log_once(
                "config:http-without-url",
                "lambdascope: the http exporter needs LAMBDASCOPE_COLLECTOR_URL; "
                "using the other exporters (stdout if none)",
            )
            exporters = tuple(e for e in exporters if e != "http") or ("stdout",)
        object.__setattr__(self, "exporters", exporters)
        if self.service is None:
            object.__setattr__(
                self, "service", env.get("AWS_LAMBDA_FUNCTION_NAME") or None
            )
        for key, source, raw, expected in bad:  # logged once the value used is known
            log_once(
                "config:" + source,
                "lambdascope: %s=%r is not valid (expected %s); using %s",
                source,
                raw,
                expected,
                _describe(getattr(self, key)),
            )
        object.__setattr__(self, "key", tuple(getattr(self, k) for k in KEYS))
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is read-only")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("Config is read-only")

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in KEYS}

    def __repr__(self) -> str:
        shown = self.as_dict()
        if shown.get("token"):
            shown["token"] = "***"
        return f"Config({shown!r})"

"""Keeping secrets out of reports.

* Keys that look sensitive (the built-in patterns plus ``LAMBDASCOPE_REDACT``) have their values
  replaced, wherever they occur in attributes, dimensions and captured events.
* URLs lose their user info and their query values.
* Last, the serialised report is searched for the values of secret environment variables (AWS
  credentials, the collector token, anything whose name looks sensitive): wherever one appears,
  in a log line, an error message or an attribute, it is replaced.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECURITY_TOKEN",
    "LAMBDASCOPE_TOKEN",
)


_NUMBER = re.compile(r"[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?")


def _pattern(words: Iterable[str]) -> re.Pattern[str]:
    parts = []
    for word in words:
        tokens = [re.escape(t) for t in re.split(r"[\s_\-.]+", word.strip().lower()) if t]
        if tokens:
            parts.append(r"[\s_\-.]?".join(tokens))
    return re.compile("|".join(parts) if parts else r"(?!x)x")


class Redactor:
    """Decides which keys are sensitive and scrubs values; built once per configuration."""

    def __init__(self, patterns: Iterable[str], environ: Mapping[str, str] | None = None) -> None:
        self._re = _pattern(patterns)
        self._cache: dict[str, bool] = {}
        env = os.environ if environ is None else environ
        secrets: set[str] = set()
        for name, value in env.items():
            # Short values and plain numbers would match unrelated text and JSON numbers.
            if not value or len(value) < 6 or _NUMBER.fullmatch(value):
                continue
            if name in _SECRET_ENV or (
                self.is_sensitive(name) and not name.startswith("AWS_LAMBDA_")
            ):
                secrets.add(value)
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(secrets, key=len, reverse=True)
        self._json_secrets = [(json.dumps(s)[1:-1], s) for s in self._secrets]

    def is_sensitive(self, key: str) -> bool:
        hit = self._cache.get(key)
        if hit is None:
            hit = bool(self._re.search(key.lower()))
            if len(self._cache) < 4096:
                self._cache[key] = hit
        return hit

    def mapping(self, data: Any, depth: int = 0) -> Any:
        """A copy of ``data`` with the values of sensitive keys replaced (recursively)."""
        if depth > 32:
            return REDACTED  # deeper than any sane payload: hide rather than risk a leak
        if isinstance(data, dict):
            return {
                k: (REDACTED if isinstance(k, str) and self.is_sensitive(k) else
                    self.mapping(v, depth + 1))
                for k, v in data.items()
            }
        if isinstance(data, (list, tuple)):
            return [self.mapping(v, depth + 1) for v in data]
        return data

    def attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Flat attribute maps: sensitive keys hidden, URL values stripped of secrets."""
        out: dict[str, Any] = {}
        for key, value in attrs.items():
            if self.is_sensitive(key):
                out[key] = REDACTED
            elif isinstance(value, str) and (key.startswith("url.") or key == "http.url"):
                out[key] = redact_url(value)
            elif isinstance(value, (dict, list, tuple)):
                out[key] = self.mapping(value)
            else:
                out[key] = value
        return out

    def text(self, payload: str) -> str:
        """Replace any secret environment value that appears in a serialised report."""
        for escaped, raw in self._json_secrets:
            if escaped in payload:
                payload = payload.replace(escaped, REDACTED)
            elif raw in payload:
                payload = payload.replace(raw, REDACTED)
        return payload


def redact_url(url: str) -> str:
    """Drop user info and query values (keys are kept), and the fragment."""
    try:
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "", url
        cut = len(rest)
        for mark in "/?#":
            at = rest.find(mark)
            if 0 <= at < cut:
                cut = at
        netloc, path = rest[:cut], rest[cut:]
        if "@" in netloc:
            netloc = netloc.rsplit("@", 1)[1]
        path = path.split("#", 1)[0]
        base, qmark, query = path.partition("?")
        if qmark:
            keys = [part.split("=", 1)[0] for part in query.split("&") if part]
            base += "?" + "&".join(f"{k}=REDACTED" for k in keys)
        return (scheme + "://" if sep else "") + netloc + base
    except Exception:
        return REDACTED

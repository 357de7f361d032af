"""Keeping secrets out of reports.

* Keys that look sensitive (the built-in patterns plus ``LAMBDASCOPE_REDACT``) have their values
  replaced, wherever they occur in attributes, dimensions and captured events; query strings in
  a captured event lose their values.
* URLs lose their user info and their query values.
* Free text (log messages, error messages, string attributes, event strings) is scrubbed before
  it is cut to length: ``user:password@`` in URLs, query values, ``key=value`` / ``"key": value``
  pairs whose key looks sensitive (``Authorization: Bearer …`` included), and the values of secret
  environment variables.
* Last, the serialised report is searched for the values of secret environment variables: wherever
  one still appears, it is replaced. Secret values are the AWS credentials and the collector
  token, the values of variables whose name looks sensitive (``DB_PASSWORD``, ``STRIPE_KEY``),
  and of those whose name only refers to a secret (``DB_SECRET_NAME``, ``TOKEN_URL``) when the
  value itself looks like one (at least 8 characters of three kinds — lower case, upper case,
  digits, symbols — or 20 of two), so that ``DB_SECRET_NAME=orders`` cannot blank out unrelated
  text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

REDACTED = "[REDACTED]"

_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECURITY_TOKEN",
    "LAMBDASCOPE_TOKEN",
)


# Environment variable names that usually hold a secret (beside the key patterns).
_SECRET_SUFFIXES = ("_KEY", "_PASS", "_PWD", "_DSN", "_CONNECTION_STRING")
_REFERENCE_WORDS = frozenset(
    (
        "NAME", "ARN", "ID", "URL", "URI", "PATH", "TABLE", "BUCKET", "REGION", "TYPE",
        "FILE", "HOST", "PORT", "TTL", "SECONDS", "MS", "ENABLED", "HEADER", "PREFIX", "PARAM",
        "PARAMETER", "VERSION", "STAGE", "QUEUE", "TOPIC", "MODE", "LENGTH", "SIZE",
    )
)  # fmt: skip
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
        self._pairs = _pairs_pattern(patterns)
        self._cache: dict[str, bool] = {}
        env = os.environ if environ is None else environ
        secrets: set[str] = set()
        for name, value in env.items():
            # Short values and plain numbers would match unrelated text and JSON numbers.
            if not value or len(value) < 6 or _NUMBER.fullmatch(value):
                continue
            if name.startswith("AWS_LAMBDA_"):
                continue
            named = self.is_sensitive(name) or name.upper().endswith(_SECRET_SUFFIXES)
            # DB_PASSWORD holds a secret; DB_SECRET_NAME or TOKEN_URL only name one, and count
            # only when the value itself looks like a secret.
            reference = name.upper().rsplit("_", 1)[-1] in _REFERENCE_WORDS
            if name in _SECRET_ENV or (named and (not reference or _looks_secret(value))):
                secrets.add(value)
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(secrets, key=len, reverse=True)
        self._json_secrets = [(json.dumps(s)[1:-1], s) for s in self._secrets]

    def scrub(self, text: str) -> str:
        """Free text with credentials in URLs, query values, sensitive ``key=value`` pairs and
        secret environment values replaced."""
        if not text:
            return text
        if "://" in text and "@" in text:
            text = _USERINFO.sub(r"\1", text)
        if "?" in text and "=" in text:
            text = _QUERY_VALUE.sub(r"\1REDACTED", text)
        if "=" in text or ":" in text:
            text = self._pairs.sub(r"\1\2" + REDACTED, text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def is_sensitive(self, key: str) -> bool:
        hit = self._cache.get(key)
        if hit is None:
            hit = key not in SAFE_KEYS and bool(self._re.search(key.lower()))
            if len(self._cache) < 4096:
                self._cache[key] = hit
        return hit

    def mapping(self, data: Any, depth: int = 0) -> Any:
        """A copy of ``data`` with the values of sensitive keys replaced (recursively)."""
        if depth > 32:
            return REDACTED  # deeper than any sane payload: hide rather than risk a leak
        if isinstance(data, dict):
            out: dict[Any, Any] = {}
            for k, v in data.items():
                if isinstance(k, str) and self.is_sensitive(k):
                    out[k] = REDACTED
                elif isinstance(k, str) and "query" in k.lower():
                    out[k] = _query_values(v)
                else:
                    out[k] = self.mapping(v, depth + 1)
            return out
        if isinstance(data, (list, tuple)):
            return [self.mapping(v, depth + 1) for v in data]
        if isinstance(data, str):
            return self.scrub(data)
        return data

    def attributes(self, attrs: dict[str, Any], trusted: bool = False) -> dict[str, Any]:
        """Flat attribute maps: sensitive keys hidden, URL values stripped of secrets."""
        out: dict[str, Any] = {}
        for key, value in attrs.items():
            if self.is_sensitive(key):
                out[key] = REDACTED
            elif isinstance(value, str) and key in _URL_KEYS:
                out[key] = redact_url(value)
            elif isinstance(value, str) and key in _QUERY_KEYS:
                out[key] = _query_values(value)
            elif isinstance(value, str) and (not trusted or key in _FREE_TEXT_KEYS):
                out[key] = self.scrub(value)
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


#: Attributes the instrumentations set that name a secret without holding it.
SAFE_KEYS = frozenset(
    (
        "aws.secretsmanager.secret.id",
        "aws.secretsmanager.secret.arn",
        "aws.ssm.parameter.name",
        "aws.ssm.parameter.names",
        "aws.kms.key_id",
    )
)
# Free text even on spans whose other attributes the instrumentation set itself.
_FREE_TEXT_KEYS = frozenset(("exception.message", "status.description"))
_URL_KEYS = frozenset(("url.full", "http.url", "url.original", "http.target", "url.path"))
_QUERY_KEYS = frozenset(("url.query", "http.query"))
_USERINFO = re.compile(r"([a-zA-Z][\w+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@")
_QUERY_VALUE = re.compile(r"([?&;][^=&\s\"'#;?]+=)[^&\s\"'#;]*")


def _pairs_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """``key=value``, ``key: value``, ``"key": "value"`` where the key looks sensitive."""
    keys = _pattern(words).pattern
    return re.compile(
        r"(?i)([\w.\-]*(?:" + keys + r")[\w.\-]*[\"']?)(\s*[:=]\s*[\"']?)"
        r"((?:bearer|basic|digest|aws4-hmac-sha256)\s+)?(?!\[REDACTED\])[^\s\"'&,;}]+"
    )


def _looks_secret(value: str) -> bool:
    kinds = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )
    return (len(value) >= 8 and kinds >= 3) or (len(value) >= 20 and kinds >= 2)


def _query_values(value: Any) -> Any:
    """A query string (or parameters map) with every value replaced, keys kept."""
    if isinstance(value, str):
        return "&".join(
            part.split("=", 1)[0] + "=REDACTED" if "=" in part else part
            for part in value.split("&")
        )
    if isinstance(value, dict):
        return {k: REDACTED for k in value}
    if value is None:
        return None
    return REDACTED


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

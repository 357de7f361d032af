"""Error fingerprints: which failed invocations failed the same way.

Two errors belong to the same group when they happened in the same function, have the same
exception type, the same message *shape* and the same top frame of the user's code. The shape
is the message with what varies between occurrences replaced by placeholders: UUIDs, URLs,
file paths, e-mail and IP addresses, hex strings, quoted strings and numbers. "order 123 not
found" and "order 98 not found" are one group; "order 123 not found" raised in ``fetch`` and
in ``cancel`` are two.

The top frame of the user's code is the innermost stack frame that is neither in a library
(``site-packages``, ``dist-packages``), nor in lambdascope, nor in the Lambda runtime or the
Python standard library; when every frame is, the innermost frame. Its line number is left out
so that a group survives a deploy that moves the code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["fingerprint", "message_shape", "top_frame"]

_MAX_SHAPE = 300

# Order matters: the wider patterns go first, so a URL is not cut into a path and numbers.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
     "<uuid>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+"), "<url>"),
    (re.compile(r"\barn:aws[a-zA-Z-]*:[^\s'\"]+"), "<arn>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"'(?:[^'\\\n]|\\.){0,200}'"), "'<str>'"),
    (re.compile(r'"(?:[^"\\\n]|\\.){0,200}"'), '"<str>"'),
    (re.compile(r"(?<![\w<])(?:[A-Za-z]:)?(?:[\\/][\w.@~+-]+){2,}[\\/]?"), "<path>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    # Hex identifiers: 0x-prefixed, or 6+ hex digits mixing digits and letters ("facade" and
    # "s3" are words).
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"
                r"|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<hex>"),
    (re.compile(r"(?<![<\w])[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?"), "<n>"),
)
_SPACE = re.compile(r"\s+")

# Frames that are not the user's code.
_LIBRARY = re.compile(
    r"[\\/](?:site-packages|dist-packages)[\\/]"
    r"|^/var/runtime/"
    r"|^/var/lang/lib/"
    r"|[\\/]lib[\\/]python\d+(?:\.\d+)?[\\/](?!site-packages|dist-packages)"
    r"|[\\/]awslambdaric[\\/]"
    r"|[\\/]lambdascope[\\/](?:_[a-z_]+\.py|instrumentation[\\/]|exporters[\\/]|runner[\\/]"
    r"|collector[\\/]|cli[\\/]|testing\.py|__init__\.py)"
    r"|^<"
)
_TASK_ROOT = re.compile(r"^/var/task/")


def message_shape(message: str | None) -> str:
    """The message with its variable parts replaced by placeholders.

    >>> message_shape("order 123 not found in table 'orders-prod' (took 0.52s)")
    "order <n> not found in table '<str>' (took <n>s)"
    """
    if not message:
        return ""
    text = message[:2000]
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    text = _SPACE.sub(" ", text).strip()
    return text[:_MAX_SHAPE]


def is_user_frame(file: str | None) -> bool:
    """False for frames of libraries, lambdascope, the Lambda runtime and the standard
    library."""
    if not file:
        return False
    return _LIBRARY.search(file) is None


def top_frame(stack: Sequence[Mapping[str, Any]] | None) -> str | None:
    """``file:function`` of the innermost frame of the user's code (see the module doc);
    ``None`` for an empty stack."""
    if not stack:
        return None
    chosen = None
    for frame in reversed(stack):
        if not isinstance(frame, Mapping):
            continue
        if chosen is None:
            chosen = frame  # the innermost frame, if no frame is the user's
        if is_user_frame(str(frame.get("file") or "")):
            chosen = frame
            break
    if chosen is None:
        return None
    file = _TASK_ROOT.sub("", str(chosen.get("file") or "?"))
    return f"{file}:{chosen.get('function') or '?'}"


def fingerprint(function: str, error: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    """``(fingerprint, type, message shape, top frame)`` of an error of ``function``.

    The fingerprint is 16 hex digits of a SHA-1 of the other three and the function name.
    """
    kind = str(error.get("type") or "Error")
    shape = message_shape(error.get("message") if isinstance(error.get("message"), str)
                          else str(error.get("message") or ""))
    stack = error.get("stack")
    frame = top_frame(stack if isinstance(stack, Sequence) else None)
    digest = hashlib.sha1(
        "\x00".join((function, kind, shape, frame or "")).encode("utf-8", "surrogatepass"),
        usedforsecurity=False,
    ).hexdigest()[:16]
    return digest, kind, shape, frame

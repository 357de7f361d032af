"""The pages' access control when the collector has a token.

The login form takes the token (compared in constant time) and sets a cookie holding an expiry
and an HMAC of it under a key derived from the token, never the token itself: it is
``HttpOnly``, ``SameSite=Strict``, ``Path=/`` (and ``Secure`` over HTTPS). Changing the token
ends every session. A request may also carry the API's ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["COOKIE", "MAX_AGE_S", "new_session", "safe_next", "session_ok", "token_ok"]

COOKIE = "lambdascope_session"
MAX_AGE_S = 30 * 86_400
_SESSION = re.compile(r"^([0-9]{1,12})\.([0-9a-f]{64})$")


def _key(secret: bytes) -> bytes:
    return hashlib.sha256(b"lambdascope dashboard session\x00" + secret).digest()


def _mac(secret: bytes, expires: int) -> str:
    return hmac.new(_key(secret), str(expires).encode("ascii"), hashlib.sha256).hexdigest()


def new_session(secret: bytes, now_s: float) -> str:
    """A cookie value good for ``MAX_AGE_S`` seconds."""
    expires = int(now_s) + MAX_AGE_S
    return f"{expires}.{_mac(secret, expires)}"


def session_ok(secret: bytes, value: str | None, now_s: float) -> bool:
    """Whether a cookie value was made by :func:`new_session` with this secret and has not
    expired."""
    match = _SESSION.match(value or "")
    if match is None:
        hmac.compare_digest("0" * 64, _mac(secret, 0))  # the same work as a real check
        return False
    expires = int(match.group(1))
    good = hmac.compare_digest(match.group(2), _mac(secret, expires))
    return good and expires > now_s


def token_ok(secret: bytes, given: str) -> bool:
    """The token typed in the login form, compared in constant time."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of this site only (``/functions/x?since=1h``);
    anything else (another site, ``//host``, a scheme, a backslash trick) is ``/``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c in "\\" for c in value) or len(value) > 2000:
        return "/"
    if value.split("?", 1)[0] in ("/login", "/logout"):
        return "/"
    return value

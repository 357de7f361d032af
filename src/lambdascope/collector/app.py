"""The collector's ASGI application (Starlette): ingestion, the JSON API, ``/openapi.json``.

``create_app(store, token)`` builds it around a :class:`~lambdascope.collector.store.Store`:

* ``POST /v1/reports`` (SPEC section 6): the body is read as it streams in, with a hard limit
  (``413`` past it, the rest left unread and the connection closed); ``gzip`` and ``deflate``
  bodies are decompressed chunk by chunk with a bound on the decompressed size too (a gzip bomb
  is a ``413`` after a few kilobytes of its input); the JSON is a report or an array of reports,
  each validated with the shipped schema compiled once (``400`` naming the first problem and the
  report it is in); the token is compared in constant time (``401`` with ``WWW-Authenticate``).
  A batch is stored whole or not at all: one invalid report and nothing is stored. Parsing,
  validation and the store's write run in the thread pool, so the event loop keeps serving.
* ``GET /api/*``: thin wrappers over :mod:`lambdascope.collector.queries`, each in the thread
  pool on a read connection of its own thread; bad parameters are ``400`` with one line.
* ``GET /openapi.json``: OpenAPI 3.1, generated from the same parameter declarations the
  handlers parse with, so the description and the behaviour cannot drift apart.

With a token, ``/api/*`` needs it too (``/openapi.json`` does not: it holds no data).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hmac
import json
import logging
import math
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("lambdascope.collector")

MAX_BODY = 5 * 1024 * 1024
MAX_DECOMPRESSED = 20 * 1024 * 1024
MAX_REPORTS = 1000
#: Bodies up to this size (decompressed) are parsed on the event loop, bigger ones in a thread.
INLINE_BODY = 64 * 1024
#: A body that has not arrived in full after this long is refused (408): a client trickling
#: bytes cannot hold a request open for ever.
BODY_TIMEOUT_S = 60.0
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_OFFSET = 1_000_000_000
DEFAULT_SINCE = "1h"
#: Integers in a report must fit SQLite's 64-bit integers.
MAX_INT_DIGITS = 18

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0, "h": 3_600_000.0,
             "d": 86_400_000.0, "w": 604_800_000.0}
_DURATION = r"[0-9]{1,9}(?:\.[0-9]{1,6})?(?:ms|s|min|m|h|d|w)"
_EPOCH = r"[0-9]{1,16}(?:\.[0-9]{1,6})?"
DURATION_RE = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,6})?)(ms|s|min|m|h|d|w)$")
EPOCH_RE = re.compile(f"^{_EPOCH}$")
#: The pattern of ``since``/``until`` in the OpenAPI description (the two above).
TIME_PATTERN = f"^({_DURATION}|{_EPOCH})$"


# -- time and duration values ----------------------------------------------------------------
def parse_duration_ms(text: str) -> float:
    """``30s``, ``15m`` (or ``15min``), ``1h``, ``1.5h``, ``7d``, ``2w``, ``500ms`` →
    milliseconds. Raises ValueError."""
    match = DURATION_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a duration like 30m, 1h or 7d: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_time_ms(text: str, now_ms: float | None = None) -> float:
    """A point in time: epoch milliseconds (``1767225600000``) or a duration before now
    (``1h``: an hour ago). Raises ValueError."""
    text = text.strip()
    if EPOCH_RE.match(text):
        return float(text)
    if DURATION_RE.match(text):
        now = time.time() * 1000.0 if now_ms is None else now_ms
        return now - parse_duration_ms(text)
    raise ValueError(f"not a time (epoch ms) or a duration like 1h or 7d: {text!r}")


# -- the report schema -------------------------------------------------------------------------
def load_report_schema() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("lambdascope").joinpath("schema/lambdascope-1.json").read_text("utf-8")
    return json.loads(text)


#: ``"...{var}...".format(**locals())`` in fastjsonschema's generated code: the name of an array
#: item's field, built before every ``$ref`` call. In the schema's one big function,
#: ``locals()`` copies hundreds of variables (about 25 µs a time, for each span of each
#: report); the same string as an f-string reads just the variables it names.
_LOCALS_FORMAT = re.compile(r'"((?:[^"\\\n]|\\.)*)"\.format\(\*\*locals\(\)\)')


@functools.lru_cache(maxsize=1)
def report_validator() -> Callable[[Any], Any]:
    """The shipped report schema compiled with fastjsonschema, once per process.

    The generated code is compiled with its ``.format(**locals())`` strings turned into the
    equivalent f-strings (see ``_LOCALS_FORMAT``): the same checks and messages, several times
    faster on reports with many spans. Should that ever fail to compile, fastjsonschema's own
    compilation is used.
    """
    import fastjsonschema

    schema = load_report_schema()
    try:
        code = _LOCALS_FORMAT.sub(r'f"\1"', fastjsonschema.compile_to_code(schema))
        name = re.search(r"^def (\w+)\(", code, re.MULTILINE)
        namespace: dict[str, Any] = {}
        exec(compile(code, "<lambdascope-1.json validator>", "exec"), namespace)  # noqa: S102
        if name is None:
            raise ValueError("no function in the generated code")
        return namespace[name.group(1)]  # type: ignore[no-any-return]
    except Exception:  # pragma: no cover - a fastjsonschema whose code looks different
        return fastjsonschema.compile(schema)


@functools.lru_cache(maxsize=1)
def report_check() -> Callable[[Any], bool | None]:
    """The quick yes/no check of a report (:mod:`.validate`), compiled once per process; the
    full validator (:func:`report_validator`) only runs to explain a refusal."""
    from .validate import UnsupportedSchema, compile_check

    try:
        return compile_check(load_report_schema())
    except UnsupportedSchema:  # pragma: no cover - a schema keyword the quick check lacks
        return lambda report: None


# -- errors --------------------------------------------------------------------------------------
class ApiError(Exception):
    """An answer other than success: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.headers = headers or {}


def one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


# -- request bodies ------------------------------------------------------------------------------
class _Decoder:
    """Incremental decompression with a bound on what comes out."""

    def __init__(self, encoding: str, max_out: int) -> None:
        self.encoding = encoding
        self.max_out = max_out
        self.out = 0
        self.parts: list[bytes] = []
        self._fed = 0
        self._d: Any = None
        # RFC 9110's deflate is zlib-wrapped, but some clients send raw deflate: when the zlib
        # header is refused before anything came out, one more try that way.
        self._raw_fallback = encoding == "deflate"
        if encoding == "gzip":
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._d = zlib.decompressobj(zlib.MAX_WBITS)
        self._pending = b""  # input kept until the fallback is decided

    def feed(self, data: bytes) -> None:
        if self._d is None:
            self._take(data)
            return
        self._fed += len(data)
        if self._raw_fallback:  # undecided: everything so far, to a fresh zlib decompressor
            data = self._pending = self._pending + data
            self._d = zlib.decompressobj(zlib.MAX_WBITS)
        while data:
            try:
                out = self._d.decompress(data, self.max_out - self.out + 1)
            except zlib.error as exc:
                if self._raw_fallback:
                    self._raw_fallback = False
                    self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                    data = self._pending
                    continue
                raise ApiError(400, f"the body is not valid {self.encoding} data: {exc}") from exc
            if out or self._d.eof or len(self._pending) > 65536:
                self._raw_fallback = False  # decided: zlib-wrapped
                self._pending = b""
            self._take(out)
            if self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
            elif self._d.eof and self._d.unused_data:
                data = self._d.unused_data
                if self.encoding != "gzip":
                    raise ApiError(400, f"data after the end of the {self.encoding} stream")
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a multi-member gzip body
            else:
                data = b""

    def _take(self, out: bytes) -> None:
        if not out:
            return
        self.out += len(out)
        if self.out > self.max_out:
            raise ApiError(
                413,
                f"the body decompresses to more than {self.max_out} bytes",
                {"Connection": "close"},
            )
        self.parts.append(out)

    def finish(self) -> bytes:
        if self._d is not None:
            if not self._fed:
                raise ApiError(400, f"the body is empty, not {self.encoding} data")
            if not self._d.eof:
                raise ApiError(400, f"the {self.encoding} stream is truncated")
            self._take(self._d.flush())
        return b"".join(self.parts)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer out of range (at most {MAX_INT_DIGITS} digits): {text[:40]}")
    return int(text)


#: Numbers json.loads would turn into inf (an exponent of three digits or more) or into integers
#: SQLite cannot hold, where a JSON number can stand (after ``:``, ``,`` or ``[``): only bodies
#: holding one pay for the per-number checks (a look-alike inside a string merely takes the
#: careful path; hex ids, which are quoted, do not match).
_SUSPECT_NUMBER = re.compile(
    rb"[:,\[]\s*-?[0-9]+(?:\.[0-9]*)?[eE][+-]?[0-9]{3}"  # a number with a 3-digit exponent
    rb"|[:,\[]\s*-?[0-9]{" + str(MAX_INT_DIGITS + 1).encode() + rb"}"  # or too many digits
)


_PLAIN = json.JSONDecoder(parse_constant=_no_constant)
_CAREFUL = json.JSONDecoder(parse_constant=_no_constant, parse_float=_parse_float,
                            parse_int=_parse_int)
_SPACE = re.compile(r"[ \t\n\r]*")


def _split_array(body: bytes, decoder: json.JSONDecoder) -> tuple[list[Any], list[bytes]] | None:
    """An array body's items and, for each, its JSON text as received (stored as it is, so a
    report of a batch is not encoded again). ``None`` when the body is not a plain UTF-8 array
    or anything looks wrong: the caller then parses it whole, which also words the error."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    ascii_only = body.isascii()  # then character offsets are byte offsets
    space = _SPACE.match
    decode = decoder.raw_decode
    i = space(text).end()
    if text[i:i + 1] != "[":
        return None
    i = space(text, i + 1).end()
    items: list[Any] = []
    raws: list[bytes] = []
    if text[i:i + 1] == "]":
        return (items, raws) if not text[space(text, i + 1).end():] else None
    while True:
        try:
            item, end = decode(text, i)
        except (ValueError, RecursionError):
            return None
        items.append(item)
        raws.append(body[i:end] if ascii_only else text[i:end].encode("utf-8"))
        i = space(text, end).end()
        sep = text[i:i + 1]
        if sep == ",":
            i = space(text, i + 1).end()
        elif sep == "]":
            return (items, raws) if not text[space(text, i + 1).end():] else None
        else:
            return None


def parse_reports(body: bytes, max_reports: int) -> list[dict[str, Any]]:
    """The body's reports, validated. Raises :class:`ApiError` (400, or 413 for too many)."""
    return parse_body(body, max_reports)[0]


def parse_body(body: bytes, max_reports: int
               ) -> tuple[list[dict[str, Any]], list[bytes] | None]:
    """The body's reports, validated, and each one's JSON text as received (``None`` when it
    could not be told apart). Raises :class:`ApiError` (400, or 413 for too many)."""
    if not body.strip():
        raise ApiError(400, "the body is empty: expected a JSON report or an array of reports")
    # A huge exponent or integer anywhere: the checking hooks; else every number is plain and
    # parses at C speed (NaN and Infinity are refused either way).
    decoder = _CAREFUL if _SUSPECT_NUMBER.search(body) else _PLAIN
    raws: list[bytes] | None = None
    split = _split_array(body, decoder) if body.lstrip()[:1] == b"[" else None
    if split is not None:
        data, raws = split
    else:
        try:
            data = decoder.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
        except RecursionError as exc:
            raise ApiError(400, "malformed JSON: nested too deeply") from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the hooks above
            raise ApiError(400, f"malformed JSON: {exc}") from exc
    if isinstance(data, dict):
        reports = [data]
        raws = [body]
    elif isinstance(data, list):
        reports = data
        if len(reports) > max_reports:
            raise ApiError(
                413, f"{len(reports)} reports in one body; at most {max_reports} are accepted"
            )
    else:
        raise ApiError(400, "expected a JSON report (object) or an array of reports")
    quick = report_check()
    for index, report in enumerate(reports):
        if quick(report) is True:
            continue
        import fastjsonschema

        try:
            report_validator()(report)  # says why (or, if the quick check could not tell, if)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise ApiError(400, f"report {index}: {exc.message}") from exc
        except RecursionError as exc:
            raise ApiError(400, f"report {index}: nested too deeply") from exc
    return reports, raws


# -- query parameters ----------------------------------------------------------------------------
@dataclass
class Param:
    """A query or path parameter: how it is described (OpenAPI) and how it is parsed."""

    name: str
    description: str
    schema: dict[str, Any]
    parse: Callable[[str], Any]
    where: str = "query"
    default: Any = None

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "description": self.description,
            "schema": self.schema,
        }


def _string(max_length: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text:
            raise ValueError("must not be empty")
        if len(text) > max_length:
            raise ValueError(f"longer than {max_length} characters")
        if "\x00" in text:
            raise ValueError("contains a NUL character")
        return text

    return parse


def _boolean(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def _choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"expected one of {', '.join(values)}, not {text!r}")
        return text

    return parse


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]{1,19}", text):
            raise ValueError(f"expected an integer, not {text!r}")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        if not re.fullmatch(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?", text):
            raise ValueError(f"expected a number, not {text!r}")
        value = float(text)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _time(text: str) -> float:
    return parse_time_ms(text)


def _pattern(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def parse(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(f"not {what}: {text[:80]!r}")
        return text

    return parse


STATUSES = ("ok", "error", "timeout", "crashed")
TRACE_ID = r"[0-9a-f]{32}"


def _str_param(name: str, description: str, max_length: int, **kw: Any) -> Param:
    return Param(name, description, {"type": "string", "minLength": 1, "maxLength": max_length},
                 _string(max_length), **kw)


P_FUNCTION = _str_param("function", "Function name (exact match); every function when absent.",
                        256)
P_SINCE = Param(
    "since",
    "Start of the window: epoch ms, or a duration before now (`30m`, `1h`, `7d`). Default "
    f"`{DEFAULT_SINCE}`.",
    {"type": "string", "pattern": TIME_PATTERN, "default": DEFAULT_SINCE}, _time,
    default=DEFAULT_SINCE,
)
P_SINCE_ANY = Param(
    "since",
    "Start of the window: epoch ms, or a duration before now (`30m`, `1h`, `7d`). Default: "
    "no start.",
    {"type": "string", "pattern": TIME_PATTERN}, _time,
)
P_UNTIL = Param(
    "until",
    "End of the window (excluded): epoch ms, or a duration before now. Default: now.",
    {"type": "string", "pattern": TIME_PATTERN}, _time,
)
P_COLD = Param(
    "cold", "Only cold starts (`true`) or only warm invocations (`false`).",
    {"type": "boolean"}, _boolean,
)
P_BY = Param(
    "by", "`version`: one entry per function version, newest first.",
    {"type": "string", "enum": ["version"]}, _choice("version"),
)
P_PRICE_GB_S = Param(
    "price_gb_s", "Price of one GB-second in US dollars (default: AWS's on-demand price for the "
    "function's architecture).", {"type": "number", "minimum": 0, "maximum": 1000},
    _number(0, 1000),
)
P_PRICE_REQUEST = Param(
    "price_request", "Price of one request in US dollars (default: AWS's on-demand price).",
    {"type": "number", "minimum": 0, "maximum": 1000}, _number(0, 1000),
)
P_LIMIT = Param(
    "limit", f"Most items returned (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}).",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    _integer(1, MAX_LIMIT), default=DEFAULT_LIMIT,
)
P_ERRORS_LIMIT = Param(
    "limit", "Most error groups returned (1 to 1000, default 50).",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
    _integer(1, MAX_LIMIT), default=50,
)
P_OFFSET = Param(
    "offset", "Items skipped before the first returned (default 0).",
    {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
    _integer(0, MAX_OFFSET), default=0,
)
P_VERSION = _str_param("version", "Function version (exact match).", 128)
P_STATUS = Param(
    "status", "Invocation outcome.", {"type": "string", "enum": list(STATUSES)},
    _choice(*STATUSES),
)
P_TRIGGER = _str_param("trigger", "Trigger type (e.g. `sqs`, `api_gateway`).", 64)
P_FINGERPRINT = _str_param("fingerprint", "Error fingerprint (as `/api/errors` gives it).", 128)
P_ERROR_TYPE = _str_param("error_type", "Exception type (e.g. `ValueError`).", 256)
P_LABEL = _str_param("label", "A label the invocation carries.", 256)
P_TRACE_ID_Q = Param(
    "trace_id", "W3C trace id: 32 lowercase hex digits.",
    {"type": "string", "pattern": f"^{TRACE_ID}$"}, _pattern(TRACE_ID, "a trace id"),
)
P_SOURCE = Param(
    "source", "`agent`: from the agent's report; `platform`: only Lambda's REPORT line.",
    {"type": "string", "enum": ["agent", "platform"]}, _choice("agent", "platform"),
)
P_SLOWER = Param(
    "slower_than_ms", "Only invocations that took longer than this, ms.",
    {"type": "number", "minimum": 0, "maximum": 1e9}, _number(0, 1e9),
)
P_LEVEL = _str_param("level", "Log level name (e.g. `ERROR`; case ignored).", 32)
P_SEARCH = _str_param("q", "Text the log message contains (case-sensitive).", 256)
P_ORDER = Param(
    "order", "`desc` (newest first; the default) or `asc` (the default with `request_id`).",
    {"type": "string", "enum": ["asc", "desc"]}, _choice("asc", "desc"),
)
P_REQUEST_ID_Q = _str_param("request_id", "Request id (exact match).", 256)
P_REQUEST_ID = _str_param("request_id", "Lambda request id of the invocation.", 256,
                          where="path")
P_TRACE_ID = Param(
    "trace_id", "W3C trace id: 32 lowercase hex digits.",
    {"type": "string", "pattern": f"^{TRACE_ID}$"}, _pattern(TRACE_ID, "a trace id"),
    where="path",
)


def parse_params(request: Request, params: Sequence[Param]) -> dict[str, Any]:
    """The declared parameters, parsed; an unknown query parameter (a typo such as
    ``funtion=``) is a 400 rather than a filter silently not applied."""
    known = {p.name for p in params if p.where == "query"}
    for name in request.query_params:
        if name not in known:
            raise ApiError(
                400, f"unknown parameter {name[:64]!r}"
                + (f" (known: {', '.join(sorted(known))})" if known else " (none are taken)"),
            )
    out: dict[str, Any] = {}
    for param in params:
        source = request.path_params if param.where == "path" else request.query_params
        raw = source.get(param.name)
        if raw is None:
            if not isinstance(param.default, str):
                out[param.name] = param.default
                continue
            raw = param.default  # parsed like a given value (e.g. since=1h: relative to now)
        try:
            out[param.name] = param.parse(raw)
        except ValueError as exc:
            raise ApiError(400, f"{param.name}: {exc}") from exc
    return out


# -- the application -----------------------------------------------------------------------------
@dataclass
class Endpoint:
    path: str
    summary: str
    params: list[Param]
    response: dict[str, Any]
    handler: Callable[..., Any]
    not_found: bool = False
    needs_store: bool = True


class _LazyQueries:
    """``lambdascope.collector.queries``, imported at the first API call."""

    def __getattr__(self, name: str) -> Any:
        from . import queries

        return getattr(queries, name)


class _Readers:
    """One read connection per thread of the pool, opened on first use and kept."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Any] = []

    def get(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.store.reader()
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass


def _bearer_ok(request: Request, token: bytes) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        # Still compare, so a wrong scheme takes the time a wrong token takes.
        hmac.compare_digest(b"", token)
        return False
    # Header values arrive latin-1 decoded: back to the bytes the client sent.
    return hmac.compare_digest(value.strip().encode("latin-1", "replace"), token)


def create_app(
    store: Any,
    token: str | None = None,
    *,
    max_body: int = MAX_BODY,
    max_decompressed: int = MAX_DECOMPRESSED,
    max_reports: int = MAX_REPORTS,
    body_timeout_s: float = BODY_TIMEOUT_S,
    alerts: Any = None,
) -> Starlette:
    """The collector application around ``store`` (a :class:`Store`, or anything with its
    ``add``/``reader`` methods). ``token``: the bearer token required on ``POST /v1/reports``
    and ``/api/*``; ``None`` or empty for none. ``alerts``: the running
    :class:`~lambdascope.collector.alerts.AlertEngine` (``app.state.alerts``; its
    ``.firing()`` for the dashboard and ``GET /api/alerts``), or ``None``."""
    secret = token.encode("utf-8") if token else None
    readers = _Readers(store)
    report_validator()  # compiled now, not on the first request
    report_check()
    challenge = {"WWW-Authenticate": 'Bearer realm="lambdascope"'}

    def check_token(request: Request) -> None:
        if secret is not None and not _bearer_ok(request, secret):
            given = "authorization" in request.headers
            raise ApiError(
                401,
                "bad token" if given else "a bearer token is required (Authorization: Bearer …)",
                {**challenge, "Connection": "close"} if request.method == "POST" else challenge,
            )

    # -- ingestion ---------------------------------------------------------------------------
    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "bad Content-Length", {"Connection": "close"})
            if int(length) > max_body:
                raise ApiError(
                    413, f"the body is larger than {max_body} bytes", {"Connection": "close"}
                )
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            encoding = ""
        elif encoding == "x-gzip":
            encoding = "gzip"
        elif encoding not in ("gzip", "deflate"):
            raise ApiError(
                415, f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)",
                {"Connection": "close"},
            )
        decoder = _Decoder(encoding, max_decompressed)
        received = 0
        with anyio.fail_after(body_timeout_s):
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_body:
                    raise ApiError(
                        413, f"the body is larger than {max_body} bytes", {"Connection": "close"}
                    )
                decoder.feed(chunk)
        return decoder.finish()

    def counts_of(result: Any) -> dict[str, int]:
        return {
            "stored": int(result.stored),
            "duplicates": int(result.duplicates),
            "replaced": int(getattr(result, "replaced", 0)),
        }

    def refusal(exc: BaseException, n: int) -> ApiError:
        if isinstance(exc, (ValueError, TypeError, ArithmeticError, RecursionError)):
            # A report the store cannot take (a value out of its range...): sending it again
            # will not help, so 400, which the agent does not retry.
            return ApiError(400, f"cannot store the reports: {type(exc).__name__}: {exc}")
        log.error("lambdascope collector: the store could not take %d reports", n,
                  exc_info=exc)
        return ApiError(503, f"the store could not take the reports: {exc}")

    def ingest(body: bytes) -> dict[str, int]:
        """Parse, check and store, waiting in this thread (a store without ``add_nowait``)."""
        reports, raw = parse_body(body, max_reports)
        if not reports:
            return {"stored": 0, "duplicates": 0, "replaced": 0}
        try:
            # Each report is stored as received, which spares encoding it again.
            result = store.add(reports, raw=raw)
        except Exception as exc:
            raise refusal(exc, len(reports)) from exc
        return counts_of(result)

    def submit(body: bytes, loop: asyncio.AbstractEventLoop,
               future: asyncio.Future[dict[str, int]]) -> None:
        """Parse, check and queue for the writer, whose commit resolves ``future`` on the
        event loop: no thread waits for the write."""
        reports, raw = parse_body(body, max_reports)

        def settle(result: Any, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(refusal(error, len(reports)))
                else:
                    future.set_result(counts_of(result))

        def done(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(settle, result, error)

        try:
            store.add_nowait(reports, raw, done)
        except Exception as exc:
            raise refusal(exc, len(reports)) from exc

    async def store_body(body: bytes) -> dict[str, int]:
        if not hasattr(store, "add_nowait"):
            return await run_in_threadpool(ingest, body)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, int]] = loop.create_future()
        if len(body) <= INLINE_BODY:
            # A small body (a report or a few) is parsed here: handing it to a thread and
            # back costs more than the parse, and every hand-off waits for the GIL.
            submit(body, loop, future)
        else:
            await run_in_threadpool(submit, body, loop, future)
        return await future

    async def post_reports(request: Request) -> Response:
        try:
            check_token(request)
            try:
                body = await read_body(request)
            except TimeoutError as exc:
                raise ApiError(
                    408, "the body did not arrive in time", {"Connection": "close"}
                ) from exc
            counts = await store_body(body)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except Exception as exc:
            log.exception("lambdascope collector: POST /v1/reports failed")
            return error_response(500, f"internal error: {type(exc).__name__}: {exc}",
                                  {"Connection": "close"})
        return JSONResponse(counts, status_code=202)

    # -- the API -----------------------------------------------------------------------------
    queries = _LazyQueries()

    def window(p: dict[str, Any]) -> tuple[float | None, float | None]:
        since, until = p.get("since"), p.get("until")
        if since is not None and until is not None and until < since:
            raise ApiError(400, "until is before since")
        return since, until

    def prices(p: dict[str, Any]) -> Any:
        from .pricing import Prices

        kwargs = {}
        if p.get("price_gb_s") is not None:
            kwargs["gb_s"] = p["price_gb_s"]
        if p.get("price_request") is not None:
            kwargs["request"] = p["price_request"]
        return Prices(**kwargs)

    def filters(p: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
        out = {name: p[name] for name in names if p.get(name) is not None}
        since_ms, until_ms = window(p)
        if since_ms is not None:
            out["since_ms"] = since_ms
        if until_ms is not None:
            out["until_ms"] = until_ms
        return out

    def q_functions(conn: Any, p: dict[str, Any]) -> Any:
        since_ms, until_ms = window(p)
        return queries.functions(conn, since_ms=since_ms, until_ms=until_ms)

    def q_stats(conn: Any, p: dict[str, Any]) -> Any:
        since_ms, until_ms = window(p)
        return queries.stats(
            conn, function=p["function"], since_ms=since_ms, until_ms=until_ms, cold=p["cold"],
            by=p["by"], prices=prices(p), version=p["version"],
        )

    def q_invocations(conn: Any, p: dict[str, Any]) -> Any:
        f = filters(p, ("function", "version", "status", "cold", "trigger", "fingerprint",
                        "error_type", "label", "trace_id", "source", "slower_than_ms"))
        return queries.invocations(conn, f, limit=p["limit"], offset=p["offset"])

    def q_show(conn: Any, p: dict[str, Any]) -> Any:
        found = queries.show(conn, p["request_id"], prices=prices(p))
        if found is None:
            raise ApiError(404, f"no invocation with request id {p['request_id']!r}")
        return found

    def q_trace(conn: Any, p: dict[str, Any]) -> Any:
        found = queries.trace(conn, p["trace_id"])
        if not found:
            raise ApiError(404, f"no invocation in trace {p['trace_id']}")
        return found

    def q_dependencies(conn: Any, p: dict[str, Any]) -> Any:
        since_ms, until_ms = window(p)
        return queries.dependencies(conn, function=p["function"], since_ms=since_ms,
                                    until_ms=until_ms, version=p["version"])

    def q_errors(conn: Any, p: dict[str, Any]) -> Any:
        since_ms, until_ms = window(p)
        return queries.errors(conn, function=p["function"], since_ms=since_ms,
                              until_ms=until_ms, limit=p["limit"], version=p["version"])

    def q_logs(conn: Any, p: dict[str, Any]) -> Any:
        f = filters(p, ("function", "request_id", "level", "q", "order"))
        return queries.logs(conn, f, limit=p["limit"], offset=p["offset"])

    def q_health(conn: Any, p: dict[str, Any]) -> Any:
        from .. import __version__

        return {"status": "ok", "version": __version__}

    def q_alerts(conn: Any, p: dict[str, Any]) -> Any:
        from .alerts import summary

        return summary(alerts, p["function"])

    window_params = [P_SINCE, P_UNTIL]
    list_window = [P_SINCE_ANY, P_UNTIL]
    price_params = [P_PRICE_GB_S, P_PRICE_REQUEST]
    endpoints = [
        Endpoint("/api/health", "Liveness: the collector answers.", [], HEALTH_SCHEMA, q_health,
                 needs_store=False),
        Endpoint("/api/functions", "The functions seen in the window, by name.",
                 [*window_params], FUNCTIONS_SCHEMA, q_functions),
        Endpoint("/api/stats", "Figures per function (or per function version) for a window: "
                 "what `lambdascope stats --json` prints.",
                 [P_FUNCTION, *window_params, P_COLD, P_BY, P_VERSION, *price_params],
                 STATS_SCHEMA, q_stats),
        Endpoint("/api/invocations", "Invocations, newest first, filtered; `more` tells "
                 "whether another page follows.",
                 [P_FUNCTION, *list_window, P_VERSION, P_STATUS, P_COLD, P_TRIGGER,
                  P_FINGERPRINT, P_ERROR_TYPE, P_LABEL, P_TRACE_ID_Q, P_SOURCE, P_SLOWER,
                  P_LIMIT, P_OFFSET], INVOCATIONS_SCHEMA, q_invocations),
        Endpoint("/api/invocations/{request_id}",
                 "One invocation: its report, Lambda's REPORT-line figures, its logs, its cost "
                 "and the other invocations of its trace.",
                 [P_REQUEST_ID, *price_params], SHOW_SCHEMA, q_show, not_found=True),
        Endpoint("/api/traces/{trace_id}", "The invocations of one trace, by start, with their "
                 "spans.", [P_TRACE_ID], TRACE_SCHEMA, q_trace, not_found=True),
        Endpoint("/api/dependencies", "AWS operations (with their resource) and HTTP hosts "
                 "called, per function, the most time first.",
                 [P_FUNCTION, *window_params, P_VERSION], DEPENDENCIES_SCHEMA, q_dependencies),
        Endpoint("/api/errors", "Errors grouped by fingerprint, the most frequent first.",
                 [P_FUNCTION, *window_params, P_VERSION, P_ERRORS_LIMIT], ERRORS_SCHEMA,
                 q_errors),
        Endpoint("/api/logs", "Log lines of the invocations, newest first, filtered.",
                 [P_FUNCTION, *list_window, P_REQUEST_ID_Q, P_LEVEL, P_SEARCH, P_ORDER, P_LIMIT,
                  P_OFFSET], LOGS_SCHEMA, q_logs),
        Endpoint("/api/alerts", "The alerts firing now (rules of `lambdascope collector "
                 "--alerts`), the oldest breach first, and how their evaluation goes.",
                 [P_FUNCTION], ALERTS_SCHEMA, q_alerts, needs_store=False),
    ]

    def api_route(endpoint: Endpoint) -> Route:
        def run(p: dict[str, Any]) -> Any:
            conn = readers.get() if endpoint.needs_store else None
            try:
                return endpoint.handler(conn, p)
            except ValueError as exc:  # the queries' word for a value they cannot use
                raise ApiError(400, str(exc)) from exc

        async def handle(request: Request) -> Response:
            try:
                check_token(request)
                p = parse_params(request, endpoint.params)
                result = await run_in_threadpool(run, p)
                return JSONResponse(result)
            except ApiError as exc:
                return error_response(exc.status, exc.message, exc.headers)
            except Exception as exc:
                # Answered here (not re-raised): the connection stays usable for the client.
                log.exception("lambdascope collector: %s failed", request.url.path)
                return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

        # A request id may hold any character, "/" included (sent as %2F, which the server
        # decodes before routing): the path convertor takes the rest of the path.
        path = endpoint.path.replace("{request_id}", "{request_id:path}")
        return Route(path, handle, methods=["GET"], name=endpoint.path)

    document = openapi_document(endpoints, token_required=secret is not None,
                                max_reports=max_reports)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, exc.detail or "error", exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    routes = [
        Route("/v1/reports", post_reports, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *(api_route(e) for e in endpoints),
    ]
    from . import dashboard  # the web pages at / (the same read connections and token)

    routes += dashboard.routes(readers, secret)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.router.redirect_slashes = False
    app.state.store = store
    app.state.close_readers = readers.close
    app.state.openapi = document
    app.state.alerts = alerts
    return app


# -- response schemas (JSON Schema 2020-12, as OpenAPI 3.1 takes them) ----------------------------
NUM = {"type": "number"}
NULLABLE_NUM = {"type": ["number", "null"]}
INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
NULLABLE_STR = {"type": ["string", "null"]}
RATE = {"type": "number", "minimum": 0, "maximum": 1}
NULLABLE_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
BOOL = {"type": "boolean"}


def _obj(props: dict[str, Any], required: Sequence[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(props if required is None else required),
        "properties": props,
    }


ERROR_SCHEMA = _obj({"error": {"type": "string", "description": "What went wrong, one line."}})
HEALTH_SCHEMA = _obj({"status": {"const": "ok"}, "version": STR})
ACCEPTED_SCHEMA = _obj({
    "stored": {**INT, "description": "Reports stored (new request ids)."},
    "duplicates": {**INT, "description": "Reports already stored (a retry): ignored."},
    "replaced": {**INT, "description": "Reports that replaced an earlier report of the same "
                 "request id (the final report after a timeout report)."},
})

NUM_OR_NULL_MS = {"type": ["number", "null"], "minimum": 0}
COUNT = {"type": "integer", "minimum": 0}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _component(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_DURATIONS = _obj({"count": COUNT, "p50_ms": NULLABLE_NUM, "p95_ms": NULLABLE_NUM,
                   "p99_ms": NULLABLE_NUM, "p999_ms": NULLABLE_NUM})
_ERROR_GROUP = _obj({
    "fingerprint": STR, "function": STR, "type": NULLABLE_STR, "message": NULLABLE_STR,
    "top_frame": NULLABLE_STR, "count": COUNT, "first_ms": NUM, "last_ms": NUM,
    "example_request_id": STR,
})
_STATS_ENTRY = _obj({
    "function": STR,
    "version": NULLABLE_STR,
    "invocations": COUNT,
    "error_rate": NULLABLE_RATE,
    "timeout_rate": NULLABLE_RATE,
    "crash_rate": NULLABLE_RATE,
    "cold_start_rate": NULLABLE_RATE,
    "cold_starts": COUNT,
    "proactive_inits": COUNT,
    "init_p50_ms": NULLABLE_NUM,
    "init_p95_ms": NULLABLE_NUM,
    "duration": _obj({"all": _component("Durations"), "cold": _component("Durations"),
                      "warm": _component("Durations"), "mean_ms": NULLABLE_NUM},
                     ["all", "cold", "warm"]),
    "memory": _obj({"configured_mb": {"type": ["integer", "null"]},
                    "peak_p99_mb": NULLABLE_NUM, "peak_max_mb": NULLABLE_NUM,
                    "sandbox_peak_max_mb": NULLABLE_NUM,
                    "warm_trend_mb_per_hour": NULLABLE_NUM, "leak_suspected": COUNT}),
    "agent": _obj({"overhead_p50_ms": NULLABLE_NUM, "overhead_p95_ms": NULLABLE_NUM}),
    "cost": _obj({
        "architecture": STR, "price_gb_s_usd": NUM, "price_request_usd": NUM,
        "total_usd": NUM, "per_invocation_usd": NULLABLE_NUM, "per_million_usd": NULLABLE_NUM,
        "cold_start_share": NULLABLE_RATE, "cold_starts_usd": NUM,
    }, ["architecture", "price_gb_s_usd", "price_request_usd", "total_usd",
        "per_invocation_usd", "per_million_usd", "cold_start_share"]),
    "right_sizing": _obj({
        "memory_suggested_mb": {"type": ["integer", "null"]}, "memory_reason": STR,
        "timeout_ms": NULLABLE_NUM, "duration_p999_ms": NULLABLE_NUM,
        "timeout_headroom_share": NULLABLE_RATE, "timeout_reason": STR,
    }, ["memory_suggested_mb", "memory_reason", "timeout_ms", "duration_p999_ms",
        "timeout_headroom_share"]),
    "dependencies": {"type": "array", "items": _obj({
        "dependency": STR, "count": COUNT, "p50_ms": NULLABLE_NUM, "p95_ms": NULLABLE_NUM,
        "error_rate": NULLABLE_RATE, "total_ms": NULLABLE_NUM, "time_share": NULLABLE_RATE,
        "cost_share": NULLABLE_RATE,
    })},
    "errors": {"type": "array", "items": _component("ErrorGroup")},
    "diagnosed_sandboxes": {**COUNT, "description": "Sandboxes in the window whose first "
                            "report carried cold-start diagnostics with import times."},
    "slow_imports": {
        "type": "array", "maxItems": 10,
        "description": "The modules whose import made the cold starts slowest (cumulative "
                       "time, the highest median first), from each sandbox's "
                       "`diagnostics.slowest_imports`.",
        "items": _obj({
            "module": STR,
            "sandboxes": {**COUNT, "description": "Sandboxes whose slowest imports listed "
                          "it."},
            "sandbox_share": NULLABLE_RATE,
            "median_ms": NULLABLE_NUM, "p95_ms": NULLABLE_NUM, "max_ms": NULLABLE_NUM,
            "unused_share": {**NULLABLE_RATE, "description": "Share of those sandboxes whose "
                             "first invocation did not use it (null: not known)."},
        }),
    },
})
_SUMMARY = _obj({
    "request_id": STR, "function": STR, "version": NULLABLE_STR, "start_ms": NUM,
    "duration_ms": NULLABLE_NUM, "status": {"enum": list(STATUSES)}, "cold_start": BOOL,
    "proactive_init": BOOL, "init_ms": NULLABLE_NUM, "trigger_type": NULLABLE_STR,
    "error_type": NULLABLE_STR, "fingerprint": NULLABLE_STR,
    "memory_mb": {"type": ["integer", "null"]}, "rss_peak_mb": NULLABLE_NUM,
    "billed_ms": NULLABLE_NUM, "source": {"enum": ["agent", "platform"]},
    "trace_id": NULLABLE_STR, "parent_span_id": NULLABLE_STR,
    "labels": {"type": "array", "items": STR},
})
_LOG_LINE = {
    "timestamp_ms": NUM, "level": NULLABLE_STR, "logger": NULLABLE_STR,
    "message": NULLABLE_STR, "source": {"enum": ["report", "log"]},
}
_WINDOW = {"since_ms": NUM, "until_ms": NUM}
_PAGE = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
         "offset": COUNT, "more": BOOL}

FUNCTIONS_SCHEMA = _obj({**_WINDOW, "functions": {"type": "array", "items": _obj({
    "function": STR, "invocations": COUNT, "errors": COUNT, "timeouts": COUNT,
    "crashes": COUNT, "cold_starts": COUNT, "versions": {"type": "array", "items": NULLABLE_STR},
    "error_rate": NULLABLE_RATE, "cold_start_rate": NULLABLE_RATE, "last_ms": NULLABLE_NUM,
})}})
STATS_SCHEMA = _obj({**_WINDOW, "functions": {"type": "array",
                                               "items": _component("StatsEntry")}})
INVOCATIONS_SCHEMA = _obj({"invocations": {"type": "array",
                                           "items": _component("InvocationSummary")},
                           **_PAGE})
SHOW_SCHEMA = _obj({
    "invocation": {
        "description": "The stored report (SPEC section 4); for an invocation only Lambda's "
                       "REPORT line told of, a report-shaped view of what it said "
                       "(`schema` null, `source` \"platform\").",
        **_obj({"function": {"type": "object"}, "invocation": {"type": "object"}}),
    },
    "platform": _nullable(_obj({"duration_ms": NULLABLE_NUM, "billed_ms": NULLABLE_NUM,
                                "max_memory_mb": NULLABLE_NUM, "init_ms": NULLABLE_NUM,
                                "memory_mb": NULLABLE_NUM})),
    "related": {"type": "array", "items": _component("InvocationSummary")},
    "logs": {"type": "array", "items": _obj(_LOG_LINE)},
    "billed_ms": NULLABLE_NUM,
    "cost_usd": NULLABLE_NUM,
})
TRACE_SCHEMA = _obj({
    "trace_id": STR, "start_ms": NUM, "duration_ms": NULLABLE_NUM,
    "invocations": {"type": "array", "minItems": 1, "items": {"allOf": [
        _component("InvocationSummary"),
        _obj({"spans": {"type": "array", "items": {"type": "object"}},
              "error": {"type": ["object", "null"]}}),
    ]}},
})
DEPENDENCIES_SCHEMA = _obj({**_WINDOW, "dependencies": {"type": "array", "items": _obj({
    "function": STR, "dependency": STR, "count": COUNT, "p50_ms": NULLABLE_NUM,
    "p95_ms": NULLABLE_NUM, "p99_ms": NULLABLE_NUM, "error_rate": NULLABLE_RATE,
    "total_ms": NULLABLE_NUM, "time_share": NULLABLE_RATE,
})}})
ERRORS_SCHEMA = _obj({**_WINDOW, "errors": {"type": "array", "items": _component("ErrorGroup")}})
LOGS_SCHEMA = _obj({"logs": {"type": "array", "items": _obj(
    {"request_id": STR, "function": NULLABLE_STR, **_LOG_LINE})}, **_PAGE})
ALERTS_SCHEMA = _obj({
    "configured": {**BOOL, "description": "Whether the collector runs with --alerts."},
    "rules": COUNT, "interval_ms": NULLABLE_NUM, "evaluations": COUNT,
    "last_evaluation_ms": NULLABLE_NUM,
    "pending_posts": {**COUNT, "description": "Breaches and recoveries the webhook has not "
                      "acknowledged yet (retried at each evaluation)."},
    "alerts": {"type": "array", "items": _obj({
        "rule": STR, "function": STR, "metric": STR, "value": NULLABLE_NUM, "threshold": NUM,
        "window": STR, "since_ms": NULLABLE_NUM, "dependency": NULLABLE_STR,
        "dashboard_url": STR,
    })},
})

_API_COMPONENTS: dict[str, Any] = {
    "Durations": _DURATIONS,
    "ErrorGroup": _ERROR_GROUP,
    "StatsEntry": _STATS_ENTRY,
    "InvocationSummary": _SUMMARY,
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _report_components() -> dict[str, Any]:
    """The shipped report schema as OpenAPI components: its ``$defs`` become components named
    ``Report_<def>`` and its references are rewritten to match."""
    schema = copy.deepcopy(load_report_schema())
    defs = schema.pop("$defs", {})
    schema.pop("$schema", None)
    schema.pop("$id", None)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                    out[key] = "#/components/schemas/Report_" + value[len("#/$defs/"):]
                else:
                    out[key] = rewrite(value)
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    components = {"Report": rewrite(schema)}
    for name, value in defs.items():
        components[f"Report_{name}"] = rewrite(value)
    return components


def openapi_document(
    endpoints: Sequence[Endpoint], *, token_required: bool, max_reports: int = MAX_REPORTS
) -> dict[str, Any]:
    from .. import __version__

    def error(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": _ref("Error")}}}

    auth_responses = {"401": error("Missing or wrong bearer token.")} if token_required else {}
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        responses = {
            "200": {"description": "OK",
                    "content": {"application/json": {"schema": endpoint.response}}},
        }
        if endpoint.params:
            responses["400"] = error("A parameter is not valid.")
        responses.update(auth_responses)
        if endpoint.not_found:
            responses["404"] = error("Not found.")
        op: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": "get" + "".join(
                part.strip("{}").title().replace("_", "") for part in endpoint.path.split("/")
            ),
            "parameters": [p.openapi() for p in endpoint.params],
            "responses": responses,
        }
        if not endpoint.params:
            del op["parameters"]
        paths[endpoint.path] = {"get": op}
    report_body = {
        "oneOf": [
            _ref("Report"),
            {"type": "array", "items": _ref("Report"), "maxItems": max_reports},
        ]
    }
    paths["/v1/reports"] = {
        "post": {
            "summary": "Ingest reports (SPEC section 6): one report or an array of reports, "
                       "optionally gzip- or deflate-encoded. Idempotent by request id.",
            "operationId": "postReports",
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": report_body}}},
            "responses": {
                "202": {"description": "Accepted (stored, or already stored).",
                        "content": {"application/json": {"schema": _ref("Accepted")}}},
                "400": error("Malformed JSON or a report that does not match the schema "
                             "(the first problem is named); nothing is stored."),
                **auth_responses,
                "408": error("The body did not arrive in time."),
                "413": error("The body, its decompressed size or the number of reports is "
                             "over the limit."),
                "415": error("Unsupported Content-Encoding."),
                "503": error("The store could not take the reports; retry later."),
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This description (OpenAPI 3.1).",
            "operationId": "getOpenapi",
            "responses": {"200": {"description": "OK",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}},
        }
    }
    components: dict[str, Any] = {
        "schemas": {"Error": ERROR_SCHEMA, "Accepted": ACCEPTED_SCHEMA, **_API_COMPONENTS,
                    **_report_components()},
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "lambdascope collector",
            "version": __version__,
            "description": "Receives lambdascope reports and answers questions about them. "
                           "Durations in ms (`_ms`), rates and shares 0..1 (`_rate`, "
                           "`_share`), memory in MB (`_mb`), money in US dollars (`_usd`).",
        },
        "paths": paths,
        "components": components,
    }
    if token_required:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, item in paths.items():
            if path != "/openapi.json":
                for op in item.values():
                    op["security"] = [{"bearer": []}]
    return doc


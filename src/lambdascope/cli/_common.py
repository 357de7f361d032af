"""What the commands share: one-line errors, parsing of times, rates and prices, the data
source (a store file with ``--db`` or a running collector with ``--url``) and text formatting.

Only the standard library at import; the store and the query code are imported when a
command opens a store.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any, NoReturn


class CLIError(Exception):
    """Bad input or an unusable data source: one line on stderr, exit status 2."""


def fail(prog: str, message: str, status: int = 2) -> int:
    line = " ".join(message.split())
    sys.stderr.write(f"{prog}: error: {line}\n")
    return status


def die(message: str) -> NoReturn:
    raise CLIError(message)


# -- parsing -----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1.0, "s": 1e3, "m": 60e3, "min": 60e3, "h": 3600e3, "d": 86400e3,
            "w": 7 * 86400e3}
#: Epoch milliseconds from 1973 on: a bare number smaller than this (but 0, the beginning) is
#: not a time (``--since 5`` is more likely a forgotten unit than 5 ms after 1970).
_MIN_EPOCH_MS = 1e11


def parse_duration_ms(text: str, flag: str) -> float:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w``, ``250ms`` → milliseconds."""
    match = _DURATION.match(text or "")
    if not match:
        die(f"{flag} {text!r}: not a duration (use e.g. 30s, 15m, 1h, 7d)")
    value = float(match.group(1)) * _UNIT_MS[match.group(2).lower()]
    if not math.isfinite(value):
        die(f"{flag} {text!r}: not a duration (use e.g. 30s, 15m, 1h, 7d)")
    return value


def parse_when(text: str | None, flag: str, now_ms: float | None = None) -> float | None:
    """A point in time for ``--since``/``--until``: a duration back from now (``1h``), an ISO
    8601 time (``2026-11-30T08:00:00Z``, a date) or epoch milliseconds → epoch ms."""
    if text is None:
        return None
    now = time.time() * 1000.0 if now_ms is None else now_ms
    raw = text.strip()
    if _DURATION.match(raw):
        return now - parse_duration_ms(raw, flag)
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        value = float(raw)
        if (value >= _MIN_EPOCH_MS or value == 0) and math.isfinite(value):
            return value  # epoch ms; 0: from the beginning
    else:
        parsed = parse_iso_ms(raw)
        if parsed is not None:
            return parsed
    die(f"{flag} {text!r}: not a time (use a duration back from now such as 30m, 1h or 7d, "
        f"an ISO 8601 time such as 2026-01-31T12:00:00Z, or epoch milliseconds)")


def parse_iso_ms(text: str) -> float | None:
    """ISO 8601 (``Z`` or an offset; no zone means UTC) → epoch ms, None if it is not one."""
    from ..collector.ingest import iso_ms  # standard library only

    value = text.strip()
    if not value or not value[0].isdigit():
        return None
    found = iso_ms(value)
    if found is not None:
        return found
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp() * 1000.0


def parse_window(args: Any) -> tuple[float | None, float | None]:
    now = time.time() * 1000.0
    since = parse_when(getattr(args, "since", None), "--since", now)
    until = parse_when(getattr(args, "until", None), "--until", now)
    if since is not None and until is not None and until <= since:
        die(f"--until {args.until!r} is not after --since {args.since!r}")
    return since, until


def parse_number(text: str | None, flag: str, *, allow_zero: bool = True) -> float | None:
    """A non-negative finite number (ms, USD, …)."""
    if text is None:
        return None
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        die(f"{flag} {text!r}: not a number")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        die(f"{flag} {text!r}: must be a {'' if allow_zero else 'positive '}finite number"
            f"{' of 0 or more' if allow_zero else ''}")
    return value


def parse_rate(text: str | None, flag: str) -> float | None:
    """A rate as a fraction: ``0.05`` or ``5%`` → 0.05 (0..1)."""
    if text is None:
        return None
    raw = text.strip()
    percent = raw.endswith("%")
    number = raw[:-1].strip() if percent else raw
    try:
        value = float(number)
    except ValueError:
        die(f"{flag} {text!r}: not a rate (write 0.05 or 5%)")
    if percent:
        value /= 100.0
    if not math.isfinite(value) or value < 0:
        die(f"{flag} {text!r}: a rate is between 0 and 1 (or 0% and 100%)")
    if value > 1:
        hint = f" (did you mean {raw}%?)" if not percent else ""
        die(f"{flag} {text!r}: a rate is between 0 and 1 (or 0% and 100%){hint}")
    return value


def parse_percent(text: str | None, flag: str) -> float | None:
    """A percentage: ``10`` or ``10%`` → 10.0."""
    if text is None:
        return None
    raw = text.strip()
    if raw.endswith("%"):
        raw = raw[:-1].strip()
    try:
        value = float(raw)
    except ValueError:
        die(f"{flag} {text!r}: not a percentage (write 10 or 10%)")
    if not math.isfinite(value) or value < 0:
        die(f"{flag} {text!r}: a percentage of 0 or more")
    return value


# -- the data source ---------------------------------------------------------------------------

def default_db() -> str:
    from . import DEFAULT_DB

    return DEFAULT_DB


def open_source(args: Any) -> Source:
    """The source the flags name: ``--url`` (with ``--token`` or ``LAMBDASCOPE_TOKEN``) or
    ``--db`` (default ``.lambdascope/reports.db``)."""
    url = getattr(args, "url", None)
    db = getattr(args, "db", None)
    token = getattr(args, "token", None)
    if url is not None and db is not None:
        die("give --db or --url, not both")
    if token is not None and url is None:
        die("--token goes with --url")
    if url is not None:
        return RemoteSource(url, token if token is not None else
                            (os.environ.get("LAMBDASCOPE_TOKEN") or None))
    return LocalSource(db if db is not None else default_db())


class Source:
    """Where the figures come from; answers with the JSON-ready dicts of collector.queries."""

    where: str = ""

    def stats(self, *, function: str | None, since_ms: float | None, until_ms: float | None,
              cold: bool | None = None, by: str | None = None,
              price_gb_s: float | None = None,
              price_request: float | None = None) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def show(self, request_id: str) -> dict[str, Any] | None:  # pragma: no cover
        raise NotImplementedError

    def logs(self, request_id: str) -> list[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: Log records fetched for ``show`` (an invocation keeps at most a few hundred).
SHOW_LOGS_LIMIT = 1000


class LocalSource(Source):
    """A store file, read through the same query code the collector's API uses."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = f"the store {path}"
        if not os.path.exists(path):
            die(f"no store at {path}: fill one with `lambdascope ingest FILE` or run "
                f"`lambdascope collector`, or give --db FILE or --url URL")
        if os.path.isdir(path):
            die(f"--db {path}: is a directory, not a store file")
        if not os.access(path, os.R_OK):
            die(f"--db {path}: not readable (permission denied)")
        if check_store_file(path) is None:
            die(f"{path} is an empty store: nothing was stored in it yet")
        self._conn: Any = None
        self._queries: Any = None

    def _open(self) -> Any:
        if self._conn is None:
            from ..collector import queries
            from ..collector.store import StoreError, open_reader

            self._queries = queries
            try:
                self._conn = open_reader(self.path)
            except StoreError as exc:  # not a store, a newer schema, …: its own one line
                die(_one(exc))
            except Exception as exc:  # sqlite3 errors the store did not name
                die(f"{self.path} is not a lambdascope store (or is damaged): {_one(exc)}")
        return self._conn

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        import sqlite3

        from ..collector.store import StoreError

        conn = self._open()
        try:
            return getattr(self._queries, name)(conn, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            die(f"reading {self.path} failed: {_one(exc)}")
        except sqlite3.DatabaseError as exc:
            die(f"{self.path} is not a lambdascope store (or is damaged): {_one(exc)}")
        except StoreError as exc:
            die(_one(exc))

    def stats(self, *, function: str | None, since_ms: float | None, until_ms: float | None,
              cold: bool | None = None, by: str | None = None,
              price_gb_s: float | None = None,
              price_request: float | None = None) -> dict[str, Any]:
        from ..collector.pricing import Prices

        kwargs: dict[str, Any] = {}
        if price_gb_s is not None:
            kwargs["gb_s"] = price_gb_s
        if price_request is not None:
            kwargs["request"] = price_request
        result: dict[str, Any] = self._call(
            "stats", function=function, since_ms=since_ms, until_ms=until_ms, cold=cold,
            by=by, prices=Prices(**kwargs),
        )
        return result

    def show(self, request_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call("show", request_id)
        return result

    def logs(self, request_id: str) -> list[dict[str, Any]]:
        found = self._call(
            "logs", {"request_id": request_id, "since_ms": 0.0, "until_ms": 1e15},
            limit=SHOW_LOGS_LIMIT, offset=0,
        )
        return _items(found)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def check_store_file(path: str) -> int | None:
    """The schema version of the store file at ``path`` (read-only); None for an empty file or
    database. A SQLite database that is not a lambdascope store (tables of its own, no schema
    version) is refused rather than given the store's tables; so is a file that is not SQLite.
    """
    import sqlite3
    from urllib.parse import quote

    if os.path.getsize(path) == 0:
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = [name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        die(f"{path} is not a lambdascope store: {_one(exc)}")
    if version == 0 and tables:
        die(f"{path} is not a lambdascope store: a SQLite database with other tables "
            f"({', '.join(sorted(tables)[:3])}{', …' if len(tables) > 3 else ''})")
    return version if version or tables else None


class RemoteSource(Source):
    """A running collector's ``/api/`` (standard library HTTP: no extra needed)."""

    TIMEOUT_S = 30.0

    def __init__(self, url: str, token: str | None) -> None:
        from urllib.parse import urlsplit

        raw = url.strip()
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as exc:
            die(f"--url {url!r}: {exc}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            die(f"--url {url!r}: not an http(s) URL (e.g. http://127.0.0.1:8585)")
        del port
        self.loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        self.base = raw.rstrip("/")
        self.token = token
        self.where = f"the collector at {self.base}"

    def _get(self, path: str, params: dict[str, Any], *, missing_ok: bool = False) -> Any:
        import urllib.error
        import urllib.request
        from urllib.parse import urlencode

        query = urlencode({k: _param(v) for k, v in params.items() if v is not None})
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": "lambdascope-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, headers=headers, method="GET")
        # A collector on this machine is reached directly, whatever HTTP_PROXY says.
        opener = (urllib.request.build_opener(urllib.request.ProxyHandler({}))
                  if self.loopback else urllib.request.build_opener())
        try:
            with opener.open(request, timeout=self.TIMEOUT_S) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            if exc.code == 404 and missing_ok:
                return None
            if exc.code == 401:
                die(f"{self.where} refused the token ({detail}): give --token or set "
                    f"LAMBDASCOPE_TOKEN" if not self.token else
                    f"{self.where} refused the token: {detail}")
            die(f"{self.where} answered {exc.code}: {detail}")
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = getattr(reason, "strerror", None) or str(reason)
            die(f"cannot reach {self.where}: {text}")
        except TimeoutError:
            die(f"{self.where} did not answer within {self.TIMEOUT_S:g} s")
        except OSError as exc:
            die(f"cannot reach {self.where}: {exc.strerror or exc}")
        try:
            return json.loads(body)
        except ValueError:
            die(f"{self.where} answered with something that is not JSON (is it a lambdascope "
                f"collector?)")

    def stats(self, *, function: str | None, since_ms: float | None, until_ms: float | None,
              cold: bool | None = None, by: str | None = None,
              price_gb_s: float | None = None,
              price_request: float | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/api/stats", {
            "function": function, "since": since_ms, "until": until_ms, "cold": cold,
            "by": by, "price_gb_s": price_gb_s, "price_request": price_request,
        })
        return result

    def show(self, request_id: str) -> dict[str, Any] | None:
        from urllib.parse import quote

        result: dict[str, Any] | None = self._get(
            f"/api/invocations/{quote(request_id, safe='')}", {}, missing_ok=True
        )
        return result

    def logs(self, request_id: str) -> list[dict[str, Any]]:
        found = self._get("/api/logs", {"request_id": request_id, "since": 0,
                                        "limit": SHOW_LOGS_LIMIT})
        return _items(found)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() or value > 1e11 else repr(value)
    return str(value)


def _error_detail(exc: Any) -> str:
    try:
        data = json.loads(exc.read() or b"{}")
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return _one(data["error"])
    except Exception:
        pass
    return _one(exc.reason or f"HTTP {exc.code}")


def _items(found: Any) -> list[dict[str, Any]]:
    if isinstance(found, dict):
        for key in ("logs", "items", "records"):
            if isinstance(found.get(key), list):
                return list(found[key])
        return []
    return list(found or [])


def _one(value: Any) -> str:
    return " ".join(str(value).split()) or type(value).__name__


# -- output ------------------------------------------------------------------------------------

def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    v = float(value)
    if v < 0:
        return f"-{fmt_ms(-v)}"
    if v == 0:
        return "0 ms"
    if v < 10:
        return f"{v:.2f} ms"
    if v < 1000:
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"
    if v < 60_000:
        return f"{v / 1000:.2f} s"
    if v < 3_600_000:
        return f"{v / 60_000:.1f} min"
    return f"{v / 3_600_000:.1f} h"


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    v = float(value) * 100.0
    if v == 0:
        return "0%"
    if v < 0.01:
        return "<0.01%"
    if v < 10:
        return f"{v:.2f}%".replace(".00%", "%")
    return f"{v:.1f}%".replace(".0%", "%")


def fmt_mb(value: float | None) -> str:
    if value is None:
        return "-"
    v = float(value)
    return f"{v:.0f} MB" if abs(v) >= 100 else f"{v:.1f} MB"


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "-"
    v = float(value)
    if v == 0:
        return "$0"
    if abs(v) >= 0.01:
        return f"${v:,.2f}"
    decimals = min(12, -math.floor(math.log10(abs(v))) + 2)
    return f"${v:.{decimals}f}"


def fmt_price(value: float | None) -> str:
    """A unit price with all its digits: $0.0000166667."""
    if value is None:
        return "-"
    text = f"{float(value):.12f}".rstrip("0").rstrip(".")
    return f"${text}"


def fmt_count(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value):,}"


def fmt_time(epoch_ms: float | None) -> str:
    if epoch_ms is None:
        return "-"
    moment = datetime.fromtimestamp(float(epoch_ms) / 1000.0, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None,
          indent: str = "  ") -> list[str]:
    """Plain text columns; ``right`` holds the indexes of right-aligned columns."""
    right = right or set()
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def clip(text: str | None, width: int) -> str:
    value = "" if text is None else " ".join(str(text).split())
    return value if len(value) <= width else value[: max(0, width - 1)] + "…"


def clip_left(text: str | None, width: int) -> str:
    """Cut from the left, keeping the end (a class name, a file and function)."""
    value = "" if text is None else " ".join(str(text).split())
    return value if len(value) <= width else "…" + value[len(value) - width + 1:]


def unicode_ok(stream: Any = None) -> bool:
    encoding = getattr(stream or sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "") in ("utf8", "utf16", "utf32")


def terminal_width(default: int = 100) -> int:
    try:
        return max(60, os.get_terminal_size(sys.stdout.fileno()).columns)
    except (OSError, ValueError, AttributeError):
        return default

"""The collector's store: SQLite in WAL mode, one writer thread, per-minute and per-hour rollups.

See docs/collector.md ("The store") for the design. In short:

* ``Store(path)`` opens (creating owner-only directories and a 0600 file) and migrates the
  database: ``MIGRATIONS`` is an ordered list, version N to N+1, the version kept in
  ``PRAGMA user_version``; each missing one runs in a transaction of its own.
* One thread owns the only write connection. ``add``, ``add_platform``, ``add_logs`` and
  ``prune`` queue their work and wait for it; the writer takes what is queued (up to
  ``BATCH_REPORTS`` reports) and writes it in one transaction, so concurrent callers share
  commits. Readers (``reader()``) have connections of their own and are never blocked (WAL).
* The request id is the key. A report replaces the stored one when its rank is higher (the
  final report after a timeout report), is merged with a platform row (Lambda's REPORT line),
  and is a duplicate otherwise. Replacing takes the old row's contributions out of every
  rollup before adding the new one, so the rollups always equal a recomputation from the rows.
* ``prune(older_than_ms)`` deletes in batches, whole minutes at a time, between writes.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import fingerprint as _fingerprint
from . import pricing
from .sketch import Sketch

log = logging.getLogger("lambdascope.collector")

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AddResult",
    "Store",
    "StoreError",
    "dependency_of",
    "migrate",
    "open_reader",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
#: Most reports the writer puts in one transaction.
BATCH_REPORTS = 500
#: Rows deleted per pruning transaction.
PRUNE_BATCH = 2_000
#: Rows written that wake the checkpoint thread (a few MB of WAL); it also runs after
#: CHECKPOINT_IDLE_S without one. Past CHECKPOINT_FORCE_PAGES not yet copied back, the writer
#: checkpoints itself.
CHECKPOINT_ROWS = 2000
CHECKPOINT_IDLE_S = 5.0
CHECKPOINT_FORCE_PAGES = 64_000
#: The WAL file is cut back to this size after a checkpoint that emptied it.
WAL_SIZE_LIMIT = 64 << 20
#: Decoded rollup rows the writer keeps between transactions (the minutes and hours being
#: written now), so a batch does not decode them again.
CACHE_ROWS = 512
#: How often a store with ``retain`` prunes, seconds.
RETENTION_INTERVAL_S = 60.0
#: zlib level of the stored report (1: fast, and JSON still shrinks about 4x).
COMPRESSION = 1
#: Log lines added by ``add_logs`` are numbered from here; a report's own lines from 0.
INGESTED_SEQ = 1 << 32

#: status -> rank; a platform-only row (a REPORT line alone) has rank 0.
RANKS = {"ok": 3, "error": 3, "timeout": 2, "crashed": 1}

_SCHEMA_V1 = """
CREATE TABLE invocations (
  request_id      TEXT PRIMARY KEY,
  function        TEXT NOT NULL,
  service         TEXT,
  version         TEXT,
  region          TEXT,
  architecture    TEXT,
  memory_mb       INTEGER,
  log_stream      TEXT,
  start_ms        REAL NOT NULL,
  duration_ms     REAL,
  timeout_ms      REAL,
  status          TEXT NOT NULL,
  cold_start      INTEGER NOT NULL,
  proactive_init  INTEGER NOT NULL,
  init_type       TEXT,
  init_ms         REAL,
  trigger_type    TEXT,
  trace_id        TEXT,
  parent_span_id  TEXT,
  rss_peak_mb     REAL,
  rss_end_mb      REAL,
  rss_growth_mb   REAL,
  sandbox_peak_mb REAL,
  leak_suspected  INTEGER,
  error_type      TEXT,
  fingerprint     TEXT,
  agent_ms        REAL,
  billed_ms       REAL,
  platform_duration_ms REAL, platform_billed_ms REAL, platform_max_memory_mb REAL,
  platform_init_ms REAL,
  source          TEXT NOT NULL,
  rank            INTEGER NOT NULL,
  labels          TEXT,
  report          BLOB
);
CREATE INDEX invocations_function_start ON invocations(function, start_ms);
CREATE INDEX invocations_start ON invocations(start_ms);
CREATE INDEX invocations_trace ON invocations(trace_id);
CREATE INDEX invocations_fingerprint ON invocations(fingerprint, start_ms);

CREATE TABLE spans (
  request_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT,
  function TEXT NOT NULL, name TEXT NOT NULL, kind TEXT, start_ms REAL, duration_ms REAL,
  status TEXT, dependency TEXT,
  PRIMARY KEY (request_id, span_id)
) WITHOUT ROWID;
CREATE INDEX spans_dependency ON spans(function, dependency, start_ms);

CREATE TABLE logs (
  request_id TEXT NOT NULL, function TEXT NOT NULL, ts_ms REAL NOT NULL, level TEXT,
  logger TEXT, message TEXT, seq INTEGER NOT NULL,
  PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;
CREATE INDEX logs_function_ts ON logs(function, ts_ms);

CREATE TABLE rollup (
  function TEXT NOT NULL, version TEXT NOT NULL, minute INTEGER NOT NULL,
  cold INTEGER NOT NULL,
  n INTEGER NOT NULL, errors INTEGER NOT NULL, timeouts INTEGER NOT NULL,
  crashed INTEGER NOT NULL, proactive INTEGER NOT NULL, leaks INTEGER NOT NULL,
  duration BLOB NOT NULL,
  init BLOB NOT NULL,
  memory BLOB NOT NULL,
  agent BLOB NOT NULL,
  rss_end_sum REAL NOT NULL, rss_end_n INTEGER NOT NULL,
  sandbox_peak_max REAL, memory_mb INTEGER, timeout_ms_max REAL, architecture TEXT,
  billed_gb_ms REAL NOT NULL,
  PRIMARY KEY (function, version, minute, cold)
) WITHOUT ROWID;

CREATE TABLE dependency_rollup (
  function TEXT NOT NULL, minute INTEGER NOT NULL, dependency TEXT NOT NULL,
  n INTEGER NOT NULL, errors INTEGER NOT NULL, total_ms REAL NOT NULL,
  duration BLOB NOT NULL,
  PRIMARY KEY (function, minute, dependency)
) WITHOUT ROWID;

CREATE TABLE error_groups (
  fingerprint TEXT PRIMARY KEY, function TEXT NOT NULL, type TEXT, message TEXT,
  top_frame TEXT, count INTEGER NOT NULL, first_ms REAL NOT NULL, last_ms REAL NOT NULL,
  example_request_id TEXT NOT NULL
);
"""

_ROLLUP_COLUMNS = """
  cold INTEGER NOT NULL,
  n INTEGER NOT NULL, errors INTEGER NOT NULL, timeouts INTEGER NOT NULL,
  crashed INTEGER NOT NULL, proactive INTEGER NOT NULL, leaks INTEGER NOT NULL,
  duration BLOB NOT NULL, init BLOB NOT NULL, memory BLOB NOT NULL, agent BLOB NOT NULL,
  rss_end_sum REAL NOT NULL, rss_end_n INTEGER NOT NULL,
  sandbox_peak_max REAL, memory_mb INTEGER, timeout_ms_max REAL, architecture TEXT,
  billed_gb_ms REAL NOT NULL,
"""

_SCHEMA_V2_SQL = f"""
CREATE INDEX rollup_function_minute ON rollup(function, minute);

DROP INDEX invocations_fingerprint;
CREATE INDEX invocations_fingerprint
  ON invocations(fingerprint, start_ms, version, cold_start, request_id)
  WHERE fingerprint IS NOT NULL;

CREATE TABLE rollup_hour (
  function TEXT NOT NULL, version TEXT NOT NULL, hour INTEGER NOT NULL,
  {_ROLLUP_COLUMNS}
  PRIMARY KEY (function, hour, version, cold)
) WITHOUT ROWID;

DROP TABLE dependency_rollup;
CREATE TABLE dependency_rollup (
  function TEXT NOT NULL, version TEXT NOT NULL, minute INTEGER NOT NULL,
  dependency TEXT NOT NULL,
  n INTEGER NOT NULL, errors INTEGER NOT NULL, total_ms REAL NOT NULL,
  duration BLOB NOT NULL,
  PRIMARY KEY (function, minute, version, dependency)
) WITHOUT ROWID;
CREATE TABLE dependency_rollup_hour (
  function TEXT NOT NULL, version TEXT NOT NULL, hour INTEGER NOT NULL,
  dependency TEXT NOT NULL,
  n INTEGER NOT NULL, errors INTEGER NOT NULL, total_ms REAL NOT NULL,
  duration BLOB NOT NULL,
  PRIMARY KEY (function, hour, version, dependency)
) WITHOUT ROWID;
"""


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Hourly rollups (a stats query over days reads hours, not thousands of minutes), an
    index for the minutes at a window's edges, the function version in the dependency
    rollups (``stats --by version`` shows each version's dependencies), and an error index
    that covers the error-group questions (counts per version without reading the rows) and
    leaves out the invocations without an error. What is new is built from what version 1
    kept."""
    for statement in _split_sql(_SCHEMA_V2_SQL):
        conn.execute(statement)
    rollups = _Rollups(conn)
    # Dependency rollups from the spans and their invocations.
    rows = conn.execute(
        "SELECT i.function, COALESCE(i.version, ''), i.start_ms, s.dependency, s.duration_ms,"
        " s.status FROM spans s JOIN invocations i ON i.request_id = s.request_id"
        " WHERE s.dependency IS NOT NULL"
    )
    while True:
        chunk = rows.fetchmany(5000)
        if not chunk:
            break
        for function, version, start, dependency, duration, status in chunk:
            minute = int(start // MINUTE_MS)
            for level, unit in ((0, minute), (1, minute // 60)):
                rollups.dependency(level, (function, unit, version, dependency)).apply(
                    duration, status, 1
                )
        rollups.write()
    # Hourly rows from the minute rows.
    rows = conn.execute(
        "SELECT function, version, minute, cold, n, errors, timeouts, crashed, proactive, leaks,"
        " duration, init, memory, agent, rss_end_sum, rss_end_n, sandbox_peak_max, memory_mb,"
        " timeout_ms_max, architecture, billed_gb_ms FROM rollup ORDER BY function, minute"
    )
    for row in rows.fetchall():
        function, version, minute, cold = row[:4]
        target = rollups.invocation(1, (function, minute // 60, version, cold))
        target.merge_row(row[4:])
    rollups.write()


# --------------------------------------------------------------------------------------------
# Version 3: cold-start diagnostics (docs/collector.md, "Profiles and cold-start diagnostics")
#
# ``diagnostics``: one row per report that carries ``diagnostics`` (the first report of a
# sandbox), so the newest one of a function and the number of sandboxes diagnosed in a window
# are read from an index. ``imports``: one row per entry of its ``diagnostics.slowest_imports``
# (cold starts only: a few rows per sandbox). ``import_rollup``: per function, hour (level 0)
# or UTC day (level 1), version and module, what ``stats`` reads for whole days and hours (a
# sketch of the import times, exact counts and sums), so its slowest imports over weeks read
# hundreds of rows, not every cold start's. Rows go with their invocation: a replaced or pruned
# report takes its rows, and their rollup contributions, with it.

_SCHEMA_V3_SQL = """
CREATE TABLE diagnostics (
  request_id TEXT PRIMARY KEY, function TEXT NOT NULL, version TEXT NOT NULL,
  start_ms REAL NOT NULL, imports INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX diagnostics_function_start ON diagnostics(function, start_ms, version, imports);

CREATE TABLE imports (
  request_id TEXT NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
  version TEXT NOT NULL, start_ms REAL NOT NULL, ms REAL NOT NULL, self_ms REAL,
  parent TEXT, used INTEGER,
  PRIMARY KEY (request_id, module)
) WITHOUT ROWID;
CREATE INDEX imports_function_start ON imports(function, start_ms);

CREATE TABLE import_rollup (
  function TEXT NOT NULL, level INTEGER NOT NULL, unit INTEGER NOT NULL,
  version TEXT NOT NULL, module TEXT NOT NULL,
  n INTEGER NOT NULL, unused INTEGER NOT NULL, used_known INTEGER NOT NULL, max_ms REAL,
  sum_ms REAL NOT NULL, duration BLOB NOT NULL,
  PRIMARY KEY (function, level, unit, version, module)
) WITHOUT ROWID;
"""

#: Entries of ``diagnostics.slowest_imports`` kept per report, and the longest module name.
MAX_IMPORTS_PER_REPORT = 50
MAX_MODULE_CHARS = 200

#: A ``diagnostics`` row: (request_id, function, version, start_ms, number of import rows).
DiagnosticsRow = tuple[str, str, str, float, int]
#: An ``imports`` row, in the table's column order.
ImportRow = tuple[str, str, str, str, float, float, float | None, str | None, int | None]
_IMPORT_COLUMNS = "request_id, module, function, version, start_ms, ms, self_ms, parent, used"


def diagnostics_rows(diagnostics: Any, request_id: str, function: str, version: str | None,
                     start_ms: float) -> tuple[DiagnosticsRow | None, list[ImportRow]]:
    """The ``diagnostics`` row and the ``imports`` rows of one report (``None`` and ``[]``
    when it has no diagnostics). An entry without a module name or a time is skipped; a
    module listed twice is kept once (the first); at most ``MAX_IMPORTS_PER_REPORT``."""
    if type(diagnostics) is not dict:
        if not isinstance(diagnostics, Mapping):
            return None, []
        diagnostics = dict(diagnostics)
    version = version or ""
    rows: list[ImportRow] = []
    slowest = diagnostics.get("slowest_imports")
    if type(slowest) is list:
        seen: set[str] = set()
        for entry in slowest:
            if len(rows) >= MAX_IMPORTS_PER_REPORT:
                break
            if not isinstance(entry, Mapping):
                continue
            module = entry.get("module")
            if type(module) is not str or not module:
                continue
            module = module[:MAX_MODULE_CHARS]
            ms = _ms(entry.get("ms"))
            if ms is None or module in seen:
                continue
            seen.add(module)
            used = entry.get("used")
            parent = entry.get("parent")
            rows.append((
                request_id, module, function, version, start_ms, ms, _ms(entry.get("self_ms")),
                parent[:MAX_MODULE_CHARS] if type(parent) is str and parent else None,
                1 if used is True else 0 if used is False else None,
            ))
    return (request_id, function, version, start_ms, len(rows)), rows


#: The import rollup's levels: (level, unit size in ms).
IMPORT_LEVELS = ((0, HOUR_MS), (1, 24 * HOUR_MS))


class _ImportRollups:
    """The ``import_rollup`` rows one transaction touches: loaded once (or, ``fresh``, built
    from nothing), written back by :meth:`write` after the ``imports`` rows."""

    def __init__(self, conn: sqlite3.Connection, *, fresh: bool = False) -> None:
        self.conn = conn
        self.fresh = fresh
        # key (function, level, unit, version, module) -> [n, unused, used_known, max_ms,
        # sketch, max_dirty] (the sum is the sketch's)
        self.rows: dict[tuple[str, int, int, str, str], list[Any]] = {}

    def _row(self, key: tuple[str, int, int, str, str]) -> list[Any]:
        found = self.rows.get(key)
        if found is None:
            stored = None if self.fresh else self.conn.execute(
                "SELECT n, unused, used_known, max_ms, duration FROM import_rollup"
                " WHERE function = ? AND level = ? AND unit = ? AND version = ? AND module = ?",
                key,
            ).fetchone()
            if stored is None:
                found = [0, 0, 0, None, Sketch(), False]
            else:
                found = [*stored[:4], Sketch.from_bytes(stored[4]), False]
            self.rows[key] = found
        return found

    def apply(self, row: ImportRow, sign: int) -> None:
        """Add (``sign`` 1) or take out (-1) one ``imports`` row, at every level."""
        _, module, function, version, start, ms, _self, _parent, used = row
        for level, size in IMPORT_LEVELS:
            acc = self._row((function, level, int(start // size), version, module))
            acc[0] += sign
            if used == 0:
                acc[1] += sign
            if used is not None:
                acc[2] += sign
            if sign > 0:
                acc[4].add(ms)
                if acc[3] is None or ms > acc[3]:
                    acc[3] = ms
            else:
                acc[4].discard(ms)
                acc[5] = True

    def write(self) -> None:
        """Write every touched row (deleting the empty ones), hours before days; a maximum
        something was taken out of is read again from what the row covers (an hour's
        ``imports`` rows, a day's hours)."""
        conn = self.conn
        for level, size in IMPORT_LEVELS:
            upserts = []
            deletes = []
            for key, (n, unused, known, top, sketch, dirty) in self.rows.items():
                if key[1] != level:
                    continue
                if n <= 0:
                    deletes.append(key)
                    continue
                if dirty:
                    function, _, unit, version, module = key
                    if level == 0:
                        top = conn.execute(
                            "SELECT MAX(ms) FROM imports WHERE function = ? AND start_ms >= ?"
                            " AND start_ms < ? AND version = ? AND module = ?",
                            (function, unit * size, (unit + 1) * size, version, module),
                        ).fetchone()[0]
                    else:
                        per = size // HOUR_MS
                        top = conn.execute(
                            "SELECT MAX(max_ms) FROM import_rollup WHERE function = ?"
                            " AND level = 0 AND unit >= ? AND unit < ? AND version = ?"
                            " AND module = ?",
                            (function, unit * per, (unit + 1) * per, version, module),
                        ).fetchone()[0]
                upserts.append((*key, n, unused, known, top, sketch.sum, sketch.to_bytes()))
            if deletes:
                conn.executemany(
                    "DELETE FROM import_rollup WHERE function = ? AND level = ? AND unit = ?"
                    " AND version = ? AND module = ?", deletes)
            if upserts:
                conn.executemany(
                    "INSERT OR REPLACE INTO import_rollup (function, level, unit, version,"
                    " module, n, unused, used_known, max_ms, sum_ms, duration)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", upserts)
        self.rows.clear()


def _insert_diagnostics(conn: sqlite3.Connection, diagnostics: Sequence[DiagnosticsRow],
                        imports: Sequence[ImportRow], rollups: _ImportRollups) -> None:
    if diagnostics:
        conn.executemany(
            "INSERT OR REPLACE INTO diagnostics (request_id, function, version, start_ms,"
            " imports) VALUES (?, ?, ?, ?, ?)", diagnostics)
    if imports:
        conn.executemany(
            f"INSERT INTO imports ({_IMPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            imports)
        for row in imports:
            rollups.apply(row, 1)


def _remove_diagnostics(conn: sqlite3.Connection, keys: Sequence[tuple[str]],
                        rollups: _ImportRollups) -> None:
    """Take the diagnostics and import rows of these request ids out, and their rollup
    contributions (``rollups``, written by the caller): the reports they came from are being
    replaced, or pruned."""
    for key in keys:
        for row in conn.execute(f"SELECT {_IMPORT_COLUMNS} FROM imports WHERE request_id = ?",
                                key).fetchall():
            rollups.apply(row, -1)
    conn.executemany("DELETE FROM imports WHERE request_id = ?", keys)
    conn.executemany("DELETE FROM diagnostics WHERE request_id = ?", keys)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """The diagnostics, imports and import-rollup tables, filled from the reports already
    stored (only a sandbox's first invocation can carry diagnostics: those with an init
    duration, and cold starts)."""
    for statement in _split_sql(_SCHEMA_V3_SQL):
        conn.execute(statement)
    rollups = _ImportRollups(conn, fresh=True)
    rows = conn.execute(
        "SELECT request_id, function, version, start_ms, report FROM invocations"
        " WHERE source = 'agent' AND (init_ms IS NOT NULL OR cold_start = 1)"
        " AND report IS NOT NULL"
    )
    while True:
        chunk = rows.fetchmany(500)
        if not chunk:
            break
        found: list[DiagnosticsRow] = []
        imports: list[ImportRow] = []
        for request_id, function, version, start, blob in chunk:
            try:
                report = json.loads(zlib.decompress(blob))
            except (zlib.error, ValueError):
                continue  # an unreadable report has nothing to give
            if type(report) is not dict:
                continue
            diag, rows_of = diagnostics_rows(report.get("diagnostics"), request_id, function,
                                             version, start)
            if diag is not None:
                found.append(diag)
                imports.extend(rows_of)
        _insert_diagnostics(conn, found, imports, rollups)
    rollups.write()


MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    _SCHEMA_V1, _migrate_v2, _migrate_v3]
#: The schema version this code writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The store cannot be opened or used (one line for the user)."""


@dataclass(frozen=True)
class AddResult:
    """What ``Store.add`` did with the reports it was given: ``stored`` (new ones and
    replacements, merges with a REPORT line included), ``duplicates`` (already stored, or
    lower-ranked than what is), ``replaced`` (the part of ``stored`` that replaced an earlier,
    lower-ranked report of the same request id)."""

    stored: int = 0
    duplicates: int = 0
    replaced: int = 0

    def __add__(self, other: AddResult) -> AddResult:
        return AddResult(
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.replaced + other.replaced,
        )


# --------------------------------------------------------------------------------------------
# Rows out of reports


INV_COLUMNS = (
    "request_id", "function", "service", "version", "region", "architecture", "memory_mb",
    "log_stream", "start_ms", "duration_ms", "timeout_ms", "status", "cold_start",
    "proactive_init", "init_type", "init_ms", "trigger_type", "trace_id", "parent_span_id",
    "rss_peak_mb", "rss_end_mb", "rss_growth_mb", "sandbox_peak_mb", "leak_suspected",
    "error_type", "fingerprint", "agent_ms", "billed_ms", "platform_duration_ms",
    "platform_billed_ms", "platform_max_memory_mb", "platform_init_ms", "source", "rank",
    "labels", "report",
)
# Rows are lists in INV_COLUMNS order (read back without the report blob).
(
    I_REQUEST_ID, I_FUNCTION, I_SERVICE, I_VERSION, I_REGION, I_ARCHITECTURE, I_MEMORY_MB,
    I_LOG_STREAM, I_START_MS, I_DURATION_MS, I_TIMEOUT_MS, I_STATUS, I_COLD_START,
    I_PROACTIVE_INIT, I_INIT_TYPE, I_INIT_MS, I_TRIGGER_TYPE, I_TRACE_ID, I_PARENT_SPAN_ID,
    I_RSS_PEAK_MB, I_RSS_END_MB, I_RSS_GROWTH_MB, I_SANDBOX_PEAK_MB, I_LEAK_SUSPECTED,
    I_ERROR_TYPE, I_FINGERPRINT, I_AGENT_MS, I_BILLED_MS, I_PLATFORM_DURATION_MS,
    I_PLATFORM_BILLED_MS, I_PLATFORM_MAX_MEMORY_MB, I_PLATFORM_INIT_MS, I_SOURCE, I_RANK,
    I_LABELS, I_REPORT,
) = range(len(INV_COLUMNS))
ROW_COLUMNS = INV_COLUMNS[:-1]  # everything but the report blob
_PLATFORM = (I_PLATFORM_DURATION_MS, I_PLATFORM_BILLED_MS, I_PLATFORM_MAX_MEMORY_MB,
             I_PLATFORM_INIT_MS)
_INSERT_INVOCATION = (
    f"INSERT OR REPLACE INTO invocations ({', '.join(INV_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(INV_COLUMNS))})"
)
_SELECT_ROWS = f"SELECT {', '.join(ROW_COLUMNS)} FROM invocations WHERE request_id IN "

_AWS_RESOURCE_KEYS = (
    "aws.s3.bucket",
    "aws.dynamodb.table_names",
    "aws.sqs.queue_url",
    "messaging.destination.name",
    "aws.sns.topic.arn",
    "faas.invoked_name",
    "aws.lambda.function.name",
    "aws.kinesis.stream_name",
    "aws.step_functions.state_machine.arn",
    "aws.eventbridge.event_bus",
    "aws.secretsmanager.secret.id",
    "aws.ssm.parameter.name",
    "aws.kms.key_id",
)


def dependency_of(span: Mapping[str, Any]) -> str | None:
    """The dependency a span waited on: ``"S3.GetObject my-bucket"`` for an AWS call (the
    resource when the span names one), ``"GET api.example.com"`` for an HTTP call; ``None``
    for the invocation span and internal spans."""
    attrs = span.get("attributes")
    if type(attrs) is not dict:
        if not isinstance(attrs, Mapping):
            return None
        attrs = dict(attrs)
    kind = span.get("kind")
    if attrs.get("rpc.system") == "aws-api":
        operation = str(span.get("name") or f"{attrs.get('rpc.service')}.{attrs.get('rpc.method')}")
        for key in _AWS_RESOURCE_KEYS:
            value = attrs.get(key)
            if value is None:
                continue
            if type(value) in (list, tuple):
                value = value[0] if value else None
            if type(value) is str and value:
                if key == "aws.sqs.queue_url":
                    value = value.rstrip("/").rsplit("/", 1)[-1]
                elif value.startswith("arn:"):
                    value = value.rsplit(":", 1)[-1]
                return f"{operation} {value}"[:200]
        return operation[:200] or None
    if kind is not None and kind != "client" and kind != "producer":
        return None
    method = attrs.get("http.request.method") or attrs.get("http.method")
    if not method:
        return None
    host = attrs.get("server.address") or attrs.get("net.peer.name")
    if not host:
        url = attrs.get("url.full") or attrs.get("http.url")
        if type(url) is str and "://" in url:
            host = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    if not host:
        return str(method)
    port = attrs.get("server.port") or attrs.get("net.peer.port")
    if port and port != 443 and port != 80 and str(port) not in ("80", "443") and (
        ":" not in str(host)
    ):
        host = f"{host}:{port}"
    return f"{method} {host}"[:200]


_INF = math.inf


def _num(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value if -_INF < value < _INF else None
    if kind is int and -1e300 < value < 1e300:
        return float(value)
    return None


#: Figures beyond these are clamped to them: schema-valid nonsense (a duration of 1e308 ms)
#: must not turn sums into infinities, which JSON cannot carry. Lambda's own limits are far
#: inside (15 minutes, 10,240 MB).
MAX_MS = 1e9
MAX_MB = 1e7
#: Latest start accepted (epoch ms, the year 5138): minutes must fit SQLite's integers.
MAX_EPOCH_MS = 1e14


def _ms(value: Any) -> float | None:
    """A duration: finite, clamped to 0..MAX_MS."""
    kind = type(value)
    if kind is float or kind is int:
        if value > MAX_MS:
            return MAX_MS
        if value >= 0:
            return float(value)
        return 0.0 if value > -_INF else None
    return None


def _mb(value: Any) -> float | None:
    """A memory figure: finite, clamped to -MAX_MB..MAX_MB."""
    kind = type(value)
    if kind is float or kind is int:
        if value > MAX_MB:
            return MAX_MB
        if value < -MAX_MB:
            return -MAX_MB
        return float(value)
    return None


def _str(value: Any) -> str | None:
    return value if type(value) is str and value else None


def _dict(value: Any) -> dict[str, Any]:
    if type(value) is dict:
        return value
    return dict(value) if isinstance(value, Mapping) else {}


# ASCII output (non-ASCII escaped) is the C encoder's fastest path, and its UTF-8 is a copy.
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _compress(data: bytes) -> bytes:
    return zlib.compress(data, COMPRESSION)


class _Prepared:
    """One agent report, turned into rows in the caller's thread."""

    __slots__ = ("diagnostics", "error", "imports", "logs", "request_id", "row", "spans")

    def __init__(self, row: list[Any], spans: list[tuple[Any, ...]],
                 logs: list[tuple[Any, ...]], error: tuple[str, str, str | None] | None,
                 diagnostics: DiagnosticsRow | None = None,
                 imports: list[ImportRow] | None = None) -> None:
        self.row = row
        self.request_id: str = row[I_REQUEST_ID]
        self.spans = spans
        self.logs = logs
        self.error = error  # (type, message shape, top frame) when the row has a fingerprint
        self.diagnostics = diagnostics  # a sandbox's first report: its diagnostics row
        self.imports = imports or []    # and its slowest imports


class _PreparedPlatform:
    __slots__ = ("error", "request_id", "row")

    def __init__(self, row: list[Any], error: tuple[str, str, str | None] | None) -> None:
        self.row = row
        self.request_id: str = row[I_REQUEST_ID]
        self.error = error


def prepare_report(report: Mapping[str, Any], raw: bytes | str | None = None) -> _Prepared:
    """The rows of one report; ``ValueError`` naming what is missing when it cannot be
    stored. ``raw``: the report's JSON as received, stored as it is instead of encoding
    ``report`` again. This runs in the caller's thread, once per report: keep it lean."""
    if type(report) is not dict:
        if not isinstance(report, Mapping):
            raise ValueError("a report must be a JSON object")
        report = dict(report)
    get = report.get
    inv = _dict(get("invocation"))
    fn = _dict(get("function"))
    request_id = inv.get("request_id")
    if type(request_id) is not str or not request_id:
        raise ValueError("invocation.request_id is missing")
    start = _num(inv.get("start_ms"))
    if start is None or start <= 0:
        raise ValueError("invocation.start_ms is missing")
    if start > MAX_EPOCH_MS:
        raise ValueError("invocation.start_ms is not a time in epoch ms")
    status = inv.get("status")
    rank = RANKS.get(status) if type(status) is str else None
    if rank is None:
        raise ValueError(f"invocation.status {status!r} is not one of ok, error, timeout, crashed")
    function = _str(fn.get("name")) or _str(fn.get("service")) or "unknown"
    resources = _dict(get("resources"))
    trace = _dict(get("trace"))
    overhead = _dict(_dict(get("agent")).get("overhead"))
    trigger = _dict(inv.get("trigger"))
    cold = 1 if inv.get("cold_start") is True else 0
    proactive = 1 if inv.get("proactive_init") is True else 0
    duration = _ms(inv.get("duration_ms"))
    timeout = _ms(inv.get("timeout_ms"))
    init_ms = _ms(inv.get("init_duration_ms"))
    init_type = _str(inv.get("init_type"))
    memory = _mb(fn.get("memory_limit_mb"))
    memory = int(memory) if memory and memory >= 1 else None
    billed = pricing.billed_ms(timeout if status == "timeout" and timeout else duration,
                               init_ms, init_type, bool(cold or proactive))
    error = get("error")
    error_type = fingerprint = error_info = None
    if error is not None and isinstance(error, Mapping):
        fingerprint, error_type, shape, frame = _fingerprint.fingerprint(function, error)
        error_info = (error_type, shape, frame)
    labels = get("labels")
    sandbox = _mb(resources.get("sandbox_memory_peak_mb"))
    if sandbox is None:
        sandbox = _mb(resources.get("sandbox_memory_mb"))
    row = [
        request_id, function, _str(fn.get("service")), _str(fn.get("version")),
        _str(fn.get("region")), _str(fn.get("architecture")), memory,
        _str(fn.get("log_stream")), start, duration, timeout, status, cold, proactive,
        init_type, init_ms, _str(trigger.get("type")), _str(trace.get("trace_id")),
        _str(trace.get("parent_span_id")), _mb(resources.get("rss_peak_mb")),
        _mb(resources.get("rss_end_mb")), _mb(resources.get("rss_growth_mb")), sandbox,
        1 if resources.get("leak_suspected") is True else 0, error_type, fingerprint,
        _ms(overhead.get("invocation_ms")), float(billed), None, None, None, None, "agent",
        rank,
        json.dumps(labels, ensure_ascii=False) if type(labels) is list and labels else None,
        _compress(_ENCODE(report).encode() if raw is None
                  else raw.encode("utf-8", "surrogatepass") if type(raw) is str else raw),
    ]
    spans = []
    root = trace.get("span_id")
    raw_spans = get("spans")
    if type(raw_spans) is list:
        for span in raw_spans:
            if type(span) is not dict:
                if not isinstance(span, Mapping):
                    continue
                span = dict(span)
            span_id = span.get("span_id")
            if type(span_id) is not str or span_id == root:
                continue  # the root span's figures are the invocation's own
            spans.append((
                request_id, span_id, _str(span.get("parent_span_id")), function,
                str(span.get("name") or ""), _str(span.get("kind")), _num(span.get("start_ms")),
                _ms(span.get("duration_ms")), _str(span.get("status")), dependency_of(span),
            ))
    logs = []
    raw_logs = get("logs")
    if type(raw_logs) is list:
        for seq, line in enumerate(raw_logs):
            if type(line) is not dict:
                if not isinstance(line, Mapping):
                    continue
                line = dict(line)
            ts = _num(line.get("timestamp_ms"))
            logs.append((
                request_id, function, start if ts is None else ts, _str(line.get("level")),
                _str(line.get("logger")), str(line.get("message") or ""), seq,
            ))
    diagnostics = get("diagnostics")
    if diagnostics is None:
        return _Prepared(row, spans, logs, error_info)
    diag, imports = diagnostics_rows(diagnostics, request_id, function, row[I_VERSION], start)
    return _Prepared(row, spans, logs, error_info, diag, imports)


def _version_from_stream(stream: str | None) -> str | None:
    # "2026/01/01/[$LATEST]0123…" or "2026/01/01/[42]0123…"
    if stream and "[" in stream and "]" in stream:
        version = stream[stream.index("[") + 1:stream.index("]")]
        return version or None
    return None


def prepare_platform(record: Mapping[str, Any]) -> _PreparedPlatform:
    """A row out of a Lambda REPORT line record (see ``Store.add_platform``)."""
    if not isinstance(record, Mapping):
        raise ValueError("a platform record must be a mapping")
    request_id = record.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("platform record without request_id")
    function = _str(record.get("function"))
    if function is None:
        raise ValueError("platform record without function")
    duration = _ms(record.get("duration_ms"))
    start = _num(record.get("start_ms"))
    if start is None:
        end = _num(record.get("timestamp_ms"))
        if end is None:
            end = _num(record.get("timestamp"))
        if end is None:
            raise ValueError("platform record without start_ms or timestamp")
        start = end - (duration or 0.0)
    if not 0 < start <= MAX_EPOCH_MS:
        raise ValueError("platform record whose start is not a time in epoch ms")
    billed = _ms(record.get("billed_ms"))
    memory = _mb(record.get("memory_mb"))
    init_ms = _ms(record.get("init_ms"))
    # Lambda's statuses (REPORT line "Status:", platform.report "status"): success, error,
    # failure, timeout; with an error type such as Runtime.OutOfMemory or Runtime.ExitError
    # when the process died.
    said = str(record.get("status") or "").strip().lower()
    error_type = _str(record.get("error_type"))
    if said in ("timeout", "timedout", "timed out"):
        status = "timeout"
    elif error_type and ("OutOfMemory" in error_type or "ExitError" in error_type):
        status = "crashed"
    elif said in ("error", "failure", "failed") or error_type:
        status = "error"
    elif said in RANKS:
        status = said
    else:
        status = "ok"
    stream = _str(record.get("log_stream"))
    version = _str(record.get("version")) or _version_from_stream(stream)
    row: list[Any] = [None] * len(INV_COLUMNS)
    row[I_REQUEST_ID] = request_id
    row[I_FUNCTION] = function
    row[I_VERSION] = version
    row[I_ARCHITECTURE] = _str(record.get("architecture"))
    row[I_MEMORY_MB] = int(memory) if memory and memory >= 1 else None
    row[I_LOG_STREAM] = stream
    row[I_START_MS] = start
    row[I_DURATION_MS] = duration
    row[I_STATUS] = status
    row[I_COLD_START] = 1 if init_ms is not None else 0
    row[I_PROACTIVE_INIT] = 0
    row[I_INIT_TYPE] = "on-demand" if init_ms is not None else None
    row[I_INIT_MS] = init_ms
    row[I_LEAK_SUSPECTED] = 0
    row[I_BILLED_MS] = billed if billed is not None else float(
        pricing.billed_ms(duration, init_ms, "on-demand", init_ms is not None))
    row[I_PLATFORM_DURATION_MS] = duration
    row[I_PLATFORM_BILLED_MS] = billed
    row[I_PLATFORM_MAX_MEMORY_MB] = _mb(record.get("max_memory_mb"))
    row[I_PLATFORM_INIT_MS] = init_ms
    row[I_SOURCE] = "platform"
    row[I_RANK] = 0
    trace_id = _str(record.get("trace_id"))
    if trace_id and len(trace_id) == 32:
        row[I_TRACE_ID] = trace_id.lower()
    error = None
    if status != "ok":
        kind = error_type or ("Timeout" if status == "timeout" else "Error")
        fp, kind, shape, frame = _fingerprint.fingerprint(
            function, {"type": kind, "message": f"{status} (Lambda's REPORT line)", "stack": []})
        row[I_ERROR_TYPE] = kind
        row[I_FINGERPRINT] = fp
        error = (kind, shape, frame)
    return _PreparedPlatform(row, error)


# --------------------------------------------------------------------------------------------
# Rollups


class _InvocationRollup:
    """One row of ``rollup`` (level 0, per minute) or ``rollup_hour`` (level 1), decoded."""

    __slots__ = (
        "agent", "architecture", "billed_gb_ms", "crashed", "dirty_max", "duration", "errors",
        "init", "leaks", "memory", "memory_mb", "n", "proactive", "rss_end_n", "rss_end_sum",
        "sandbox_peak_max", "timeout_ms_max", "timeouts",
    )

    def __init__(self, row: Sequence[Any] | None = None) -> None:
        self.dirty_max = False
        if row is None:
            self.n = self.errors = self.timeouts = self.crashed = self.proactive = 0
            self.leaks = self.rss_end_n = 0
            self.duration, self.init, self.memory, self.agent = (
                Sketch(), Sketch(), Sketch(), Sketch())
            self.rss_end_sum = self.billed_gb_ms = 0.0
            self.sandbox_peak_max = self.memory_mb = self.timeout_ms_max = None
            self.architecture = None
        else:
            (self.n, self.errors, self.timeouts, self.crashed, self.proactive, self.leaks,
             duration, init, memory, agent, self.rss_end_sum, self.rss_end_n,
             self.sandbox_peak_max, self.memory_mb, self.timeout_ms_max, self.architecture,
             self.billed_gb_ms) = row
            self.duration = Sketch.from_bytes(duration)
            self.init = Sketch.from_bytes(init)
            self.memory = Sketch.from_bytes(memory)
            self.agent = Sketch.from_bytes(agent)

    def apply(self, row: Sequence[Any], sign: int) -> None:
        """Add (``sign`` 1) or take out (-1) one invocation row's contribution (a list in
        ``INV_COLUMNS`` order)."""
        status = row[I_STATUS]
        self.n += sign
        if status == "error":
            self.errors += sign
        elif status == "timeout":
            self.timeouts += sign
        elif status == "crashed":
            self.crashed += sign
        cold = row[I_COLD_START]
        proactive = row[I_PROACTIVE_INIT]
        if proactive:
            self.proactive += sign
        if row[I_LEAK_SUSPECTED]:
            self.leaks += sign
        # Removal discards rather than removes: a rollup that somehow lacks the value (a file
        # edited by hand) must not make the replacement fail forever.
        op = "add" if sign > 0 else "discard"
        for sketch, index in (
            (self.duration, I_DURATION_MS), (self.memory, I_RSS_PEAK_MB), (self.agent, I_AGENT_MS),
        ):
            value = row[index]
            if value is not None:
                getattr(sketch, op)(value)
        value = row[I_INIT_MS]
        if value is not None and (cold or proactive):
            getattr(self.init, op)(value)
        value = row[I_RSS_END_MB]
        if value is not None and not cold:
            self.rss_end_sum += sign * value
            self.rss_end_n += sign
        memory = row[I_MEMORY_MB]
        self.billed_gb_ms += sign * (row[I_BILLED_MS] or 0.0) * (memory or 0) / 1024.0
        if sign > 0:
            peak = _max(row[I_SANDBOX_PEAK_MB], row[I_PLATFORM_MAX_MEMORY_MB])
            self.sandbox_peak_max = _max(self.sandbox_peak_max, peak)
            self.memory_mb = _max(self.memory_mb, memory)
            self.timeout_ms_max = _max(self.timeout_ms_max, row[I_TIMEOUT_MS])
            if row[I_ARCHITECTURE]:
                self.architecture = row[I_ARCHITECTURE]
        else:
            self.dirty_max = True
        if self.n == 0:
            self.rss_end_sum = self.billed_gb_ms = 0.0

    def merge_row(self, row: Sequence[Any]) -> None:
        """Add a whole stored rollup row (its columns from ``n`` on)."""
        self.merge(_InvocationRollup(row))

    def merge(self, other: _InvocationRollup) -> None:
        self.n += other.n
        self.errors += other.errors
        self.timeouts += other.timeouts
        self.crashed += other.crashed
        self.proactive += other.proactive
        self.leaks += other.leaks
        self.duration.merge(other.duration)
        self.init.merge(other.init)
        self.memory.merge(other.memory)
        self.agent.merge(other.agent)
        self.rss_end_sum += other.rss_end_sum
        self.rss_end_n += other.rss_end_n
        self.sandbox_peak_max = _max(self.sandbox_peak_max, other.sandbox_peak_max)
        self.memory_mb = _max(self.memory_mb, other.memory_mb)
        self.timeout_ms_max = _max(self.timeout_ms_max, other.timeout_ms_max)
        self.architecture = other.architecture or self.architecture
        self.billed_gb_ms += other.billed_gb_ms

    def values(self) -> tuple[Any, ...]:
        return (
            self.n, self.errors, self.timeouts, self.crashed, self.proactive, self.leaks,
            self.duration.to_bytes(), self.init.to_bytes(), self.memory.to_bytes(),
            self.agent.to_bytes(), self.rss_end_sum, self.rss_end_n, self.sandbox_peak_max,
            self.memory_mb, self.timeout_ms_max, self.architecture, self.billed_gb_ms,
        )


class _DependencyRollup:
    __slots__ = ("duration", "errors", "n", "total_ms")

    def __init__(self, row: Sequence[Any] | None = None) -> None:
        if row is None:
            self.n = self.errors = 0
            self.total_ms = 0.0
            self.duration = Sketch()
        else:
            self.n, self.errors, self.total_ms, blob = row
            self.duration = Sketch.from_bytes(blob)

    def apply(self, duration: float | None, status: str | None, sign: int) -> None:
        self.n += sign
        if status == "error":
            self.errors += sign
        if duration is not None:
            self.total_ms += sign * duration
            if sign > 0:
                self.duration.add(duration)
            else:
                self.duration.discard(duration)
        if self.n == 0:
            self.total_ms = 0.0

    def merge(self, other: _DependencyRollup) -> None:
        self.n += other.n
        self.errors += other.errors
        self.total_ms += other.total_ms
        self.duration.merge(other.duration)

    def values(self) -> tuple[Any, ...]:
        return self.n, self.errors, self.total_ms, self.duration.to_bytes()


def _max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


# Invocation rollup tables by level; key order is the table's primary key.
_INV_TABLES = (
    ("rollup", "minute", ("function", "version", "minute", "cold")),
    ("rollup_hour", "hour", ("function", "hour", "version", "cold")),
)
_DEP_TABLES = (
    ("dependency_rollup", "minute", ("function", "minute", "version", "dependency")),
    ("dependency_rollup_hour", "hour", ("function", "hour", "version", "dependency")),
)
_INV_VALUES = (
    "n, errors, timeouts, crashed, proactive, leaks, duration, init, memory, agent,"
    " rss_end_sum, rss_end_n, sandbox_peak_max, memory_mb, timeout_ms_max, architecture,"
    " billed_gb_ms"
)
_DEP_VALUES = "n, errors, total_ms, duration"


def _where(key_columns: Sequence[str]) -> str:
    return " AND ".join(f"{c} = ?" for c in key_columns)


class _Rollups:
    """The rollup rows one transaction touches, loaded once, written back at the end.

    ``cache`` (owned by the writer) keeps decoded rows between transactions; it is only valid
    while no other connection writes the database (the writer checks ``data_version``).
    """

    def __init__(self, conn: sqlite3.Connection,
                 cache: collections.OrderedDict[Any, Any] | None = None) -> None:
        self.conn = conn
        self.cache = cache
        self.inv: dict[tuple[int, tuple[Any, ...]], _InvocationRollup] = {}
        self.dep: dict[tuple[int, tuple[Any, ...]], _DependencyRollup] = {}
        # What the transaction adds, per minute: folded into the minute and the hour rows at
        # the end, so each value is bucketed once.
        self.inv_added: dict[tuple[Any, ...], _InvocationRollup] = {}
        self.dep_added: dict[tuple[Any, ...], _DependencyRollup] = {}

    def _load(self, kind: str, level: int, key: tuple[Any, ...]) -> Any:
        cache_key = (kind, level, key)
        if self.cache is not None:
            found = self.cache.get(cache_key)
            if found is not None:
                self.cache.move_to_end(cache_key)
                return found
        if kind == "inv":
            table, _, columns = _INV_TABLES[level]
            row = self.conn.execute(
                f"SELECT {_INV_VALUES} FROM {table} WHERE {_where(columns)}", key
            ).fetchone()
            found = _InvocationRollup(row)
        else:
            table, _, columns = _DEP_TABLES[level]
            row = self.conn.execute(
                f"SELECT {_DEP_VALUES} FROM {table} WHERE {_where(columns)}", key
            ).fetchone()
            found = _DependencyRollup(row)
        if self.cache is not None:
            self.cache[cache_key] = found
            while len(self.cache) > CACHE_ROWS:
                self.cache.popitem(last=False)
        return found

    def invocation(self, level: int, key: tuple[Any, ...]) -> _InvocationRollup:
        found = self.inv.get((level, key))
        if found is None:
            found = self.inv[(level, key)] = self._load("inv", level, key)
        return found

    def dependency(self, level: int, key: tuple[Any, ...]) -> _DependencyRollup:
        found = self.dep.get((level, key))
        if found is None:
            found = self.dep[(level, key)] = self._load("dep", level, key)
        return found

    def apply_invocation(self, row: Sequence[Any], sign: int) -> None:
        minute = int(row[I_START_MS] // MINUTE_MS)
        version = row[I_VERSION] or ""
        cold = 1 if row[I_COLD_START] else 0
        function = row[I_FUNCTION]
        if sign > 0:
            key = (function, version, minute, cold)
            added = self.inv_added.get(key)
            if added is None:
                added = self.inv_added[key] = _InvocationRollup()
            added.apply(row, 1)
            return
        self.invocation(0, (function, version, minute, cold)).apply(row, sign)
        self.invocation(1, (function, minute // 60, version, cold)).apply(row, sign)

    def apply_spans(self, row: Sequence[Any],
                    spans: Iterable[tuple[str, float | None, str | None]], sign: int) -> None:
        minute = int(row[I_START_MS] // MINUTE_MS)
        version = row[I_VERSION] or ""
        function = row[I_FUNCTION]
        for dependency, duration, status in spans:
            if sign > 0:
                key = (function, minute, version, dependency)
                added = self.dep_added.get(key)
                if added is None:
                    added = self.dep_added[key] = _DependencyRollup()
                added.apply(duration, status, 1)
                continue
            self.dependency(0, (function, minute, version, dependency)).apply(
                duration, status, sign)
            self.dependency(1, (function, minute // 60, version, dependency)).apply(
                duration, status, sign)

    def _fold(self) -> None:
        for (function, version, minute, cold), added in self.inv_added.items():
            self.invocation(0, (function, version, minute, cold)).merge(added)
            self.invocation(1, (function, minute // 60, version, cold)).merge(added)
        for (function, minute, version, dependency), added in self.dep_added.items():
            self.dependency(0, (function, minute, version, dependency)).merge(added)
            self.dependency(1, (function, minute // 60, version, dependency)).merge(added)
        self.inv_added.clear()
        self.dep_added.clear()

    def write(self) -> None:
        """Write every touched row (deleting the empty ones), then recompute the maxima of
        the rows something was taken out of."""
        self._fold()
        conn = self.conn
        for kind, accs, tables, values in (("inv", self.inv, _INV_TABLES, _INV_VALUES),
                                           ("dep", self.dep, _DEP_TABLES, _DEP_VALUES)):
            n_values = values.count(",") + 1
            for level in (0, 1):
                table, _, columns = tables[level]
                upserts = []
                deletes = []
                dirty = []
                for (lvl, key), acc in accs.items():
                    if lvl != level:
                        continue
                    if acc.n <= 0:
                        deletes.append(key)
                        if self.cache is not None:
                            self.cache.pop((kind, level, key), None)
                        continue
                    if getattr(acc, "dirty_max", False):  # (invocation rollups only)
                        dirty.append((key, acc))
                    upserts.append((*key, *acc.values()))
                if upserts:
                    conn.executemany(
                        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}, {values})"
                        f" VALUES ({', '.join('?' * (len(columns) + n_values))})",
                        upserts,
                    )
                if deletes:
                    conn.executemany(f"DELETE FROM {table} WHERE {_where(columns)}", deletes)
                for key, acc in dirty:
                    self._recompute_max(level, key, acc)
        self.inv.clear()
        self.dep.clear()

    def _recompute_max(self, level: int, key: tuple[Any, ...], acc: _InvocationRollup) -> None:
        # A maximum cannot be taken back: after a removal it is read again from what the
        # rollup still covers (the rows of the minute; the minute rows of the hour).
        if level == 0:
            function, version, minute, cold = key
            row = self.conn.execute(
                "SELECT MAX(MAX(COALESCE(sandbox_peak_mb, -1), COALESCE(platform_max_memory_mb,"
                " -1))), MAX(memory_mb), MAX(timeout_ms), MAX(architecture) FROM invocations"
                " WHERE function = ? AND start_ms >= ? AND start_ms < ?"
                " AND COALESCE(version, '') = ? AND cold_start = ?",
                (function, minute * MINUTE_MS, (minute + 1) * MINUTE_MS, version, cold),
            ).fetchone()
            peak = row[0] if row[0] is not None and row[0] >= 0 else None
        else:
            function, hour, version, cold = key
            row = self.conn.execute(
                "SELECT MAX(sandbox_peak_max), MAX(memory_mb), MAX(timeout_ms_max),"
                " MAX(architecture) FROM rollup WHERE function = ? AND version = ?"
                " AND minute >= ? AND minute < ? AND cold = ?",
                (function, version, hour * 60, hour * 60 + 60, cold),
            ).fetchone()
            peak = row[0]
        acc.sandbox_peak_max, acc.memory_mb, acc.timeout_ms_max = peak, row[1], row[2]
        acc.architecture = row[3]
        acc.dirty_max = False
        table, _, columns = _INV_TABLES[level]
        self.conn.execute(
            f"UPDATE {table} SET sandbox_peak_max = ?, memory_mb = ?, timeout_ms_max = ?,"
            f" architecture = ? WHERE {_where(columns)}",
            (peak, row[1], row[2], row[3], *key),
        )


# --------------------------------------------------------------------------------------------
# Opening and migrating


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection,
            migrations: Sequence[str | Callable[[sqlite3.Connection], None]] | None = None,
            ) -> int:
    """Bring the database of ``conn`` (autocommit mode) to the latest schema version, one
    migration per transaction; returns the version. A database from a newer lambdascope is
    refused."""
    steps = MIGRATIONS if migrations is None else migrations
    while True:
        version = _schema_version(conn)
        if version > len(steps):
            raise StoreError(
                f"the database has schema version {version}, newer than this lambdascope "
                f"understands ({len(steps)}): upgrade lambdascope"
            )
        if version == len(steps):
            return version
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _schema_version(conn) != version:  # another process migrated meanwhile
                conn.execute("ROLLBACK")
                continue
            step = steps[version]
            if callable(step):
                step(conn)
            else:
                for statement in _split_sql(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise


def _make_private(path: str) -> None:
    """Create the missing parent directories owner-only and the file 0600."""
    parent = os.path.dirname(os.path.abspath(path))
    missing = []
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)
    if not os.path.exists(path):
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)


def _connect(path: str, *, factory: type[sqlite3.Connection] = sqlite3.Connection,
             check_same_thread: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=30.0, factory=factory,
        check_same_thread=check_same_thread,
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


class ReadConnection(sqlite3.Connection):
    """A read-only connection; ``with store.reader() as conn:`` closes it at the end."""

    def __exit__(self, *exc: Any) -> bool:  # type: ignore[override]
        self.close()
        return False


def open_reader(path: str | os.PathLike[str], *, migrate_if_needed: bool = True
                ) -> ReadConnection:
    """A read connection to the store at ``path`` (the queries' ``conn``), usable from any
    thread but by one at a time. An older database is migrated first (unless told not to); a
    missing file is a ``StoreError``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise StoreError(f"no store at {path}")
    conn = _connect(path, factory=ReadConnection, check_same_thread=False)
    try:
        version = _schema_version(conn)
        if version != SCHEMA_VERSION:
            if version > SCHEMA_VERSION or not migrate_if_needed:
                raise StoreError(
                    f"{path} has schema version {version}; this lambdascope reads version "
                    f"{SCHEMA_VERSION}"
                )
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path} is not a lambdascope store: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# The store


class _Job:
    __slots__ = ("callback", "done", "error", "items", "kind", "result", "size", "waiter")

    def __init__(self, kind: str, items: Any, size: int, waiter: bool = True,
                 callback: Callable[[_Job], None] | None = None) -> None:
        self.kind = kind
        self.items = items
        self.size = size
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiter = waiter
        self.callback = callback

    def finish(self) -> None:
        """The job is over (``result`` or ``error`` set): wake whoever waits for it."""
        self.done.set()
        if self.callback is not None:
            try:
                self.callback(self)
            except Exception:  # the caller's hook must not stop the writer
                log.exception("lambdascope store: a completion callback failed")


_STOP = object()


class Store:
    """The SQLite store of one collector (see the module doc).

    ``retain`` (milliseconds, or a ``datetime.timedelta``): when given, the writer prunes
    what is older than that every minute, between writes.
    """

    def __init__(self, path: str | os.PathLike[str], *, retain: Any = None) -> None:
        self.path = os.fspath(path)
        if retain is not None and hasattr(retain, "total_seconds"):
            retain = retain.total_seconds() * 1000.0
        if retain is not None and (
            isinstance(retain, bool) or not isinstance(retain, (int, float)) or retain <= 0
        ):
            raise ValueError(f"retain must be a positive number of ms, not {retain!r}")
        self.retain_ms: float | None = float(retain) if retain is not None else None
        try:
            _make_private(self.path)
            conn = _connect(self.path, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: WAL mode is not available ({mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
            # Checkpoints run on a thread of their own (see _checkpoints), not in the commit of
            # whichever write crossed the threshold.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path} is not a lambdascope store: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._broken: StoreError | None = None
        self._retention: _Job | None = None
        self._close_lock = threading.Lock()
        self._cache: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._data_version = self._read_data_version()
        self._orphan_logs = True  # unknown until looked at
        self._next_retention = time.monotonic()
        self._unchecked = 0
        self._wal_too_big = False
        self._checkpoint_wanted = threading.Event()
        self._writer = threading.Thread(
            target=self._run, name="lambdascope-store-writer", daemon=True
        )
        self._checkpointer = threading.Thread(
            target=self._checkpoints, name="lambdascope-store-checkpoint", daemon=True
        )
        self._writer.start()
        self._checkpointer.start()

    # -- public ---------------------------------------------------------------------------

    def add(self, reports: Iterable[Mapping[str, Any]] | Mapping[str, Any],
            raw: Sequence[bytes | str] | None = None) -> AddResult:
        """Store agent reports (one, or an iterable); returns what was stored. Thread-safe.

        ``raw``, when given, holds each report's JSON text as received (same order): it is
        stored as it is, which spares encoding the report again.

        Every report is checked before any is written: one that cannot be stored raises
        ``ValueError`` naming it, and none of the batch is stored.
        """
        prepared = self._prepare(reports, raw)
        if not prepared:
            return AddResult()
        return self._submit(_Job("add", prepared, len(prepared)))

    def add_nowait(self, reports: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                   raw: Sequence[bytes | str] | None,
                   callback: Callable[[AddResult | None, BaseException | None], None]
                   ) -> None:
        """:meth:`add` without waiting: the reports are checked and turned into rows now
        (``ValueError`` as for :meth:`add`), written by the writer thread, and ``callback(result,
        error)`` is called from that thread once they are committed (or could not be). For
        an event loop, which then needs no thread of its own to wait."""
        prepared = self._prepare(reports, raw)
        if not prepared:
            callback(AddResult(), None)
            return
        if self._closed:
            raise self._broken or StoreError("the store is closed")
        self._queue.put(_Job("add", prepared, len(prepared),
                             callback=lambda job: callback(job.result, job.error)))

    def _prepare(self, reports: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                 raw: Sequence[bytes | str] | None) -> list[_Prepared]:
        if isinstance(reports, Mapping):
            reports = [reports]
            if isinstance(raw, (bytes, str)):
                raw = [raw]
        prepared = []
        for n, report in enumerate(reports):
            try:
                prepared.append(prepare_report(report, raw[n] if raw is not None else None))
            except ValueError as exc:
                raise ValueError(f"report {n}: {exc}") from None
            except IndexError:
                raise ValueError("raw must hold one text per report") from None
        return prepared

    def add_platform(self, records: Iterable[Mapping[str, Any]] | Mapping[str, Any]
                     ) -> AddResult:
        """Store Lambda REPORT-line records, each a dict with ``request_id``, ``function``,
        ``log_stream``, ``duration_ms``, ``billed_ms``, ``memory_mb``, ``max_memory_mb``,
        ``init_ms`` (or None) and ``start_ms`` or ``timestamp_ms``/``timestamp`` (when the
        line was logged, the end of the invocation); optionally ``version`` (else read from
        the log stream name), ``architecture`` and ``status`` (``timeout``, ``error``).

        A record for a request id with an agent report is merged into it (Lambda's billed
        duration becomes the billed duration); alone, it is stored as a minimal invocation.
        """
        if isinstance(records, Mapping):
            records = [records]
        prepared = []
        for n, record in enumerate(records):
            try:
                prepared.append(prepare_platform(record))
            except ValueError as exc:
                raise ValueError(f"record {n}: {exc}") from None
        if not prepared:
            return AddResult()
        return self._submit(_Job("add", prepared, len(prepared)))

    def add_logs(self, request_id: str, lines: Iterable[Any], *,
                 function: str | None = None) -> int:
        """Attach log lines found by ``ingest`` to ``request_id``; returns how many were new.

        Each line is a dict (``timestamp_ms``, ``level``, ``logger``, ``message``) or a string.
        A line already stored for the request id (the same message, from the report or an
        earlier ingest of the same file) is skipped. ``function`` is taken from the stored
        invocation when not given (lines that arrive before it are attached when it does).
        """
        if not isinstance(request_id, str) or not request_id:
            raise ValueError("add_logs needs a request id")
        rows = []
        for line in lines:
            if isinstance(line, str):
                rows.append((None, None, None, line))
            elif isinstance(line, Mapping):
                ts = _num(line.get("timestamp_ms"))
                if ts is None:
                    ts = _num(line.get("ts_ms"))
                rows.append((ts, _str(line.get("level")), _str(line.get("logger")),
                             str(line.get("message") or "")))
            else:
                raise ValueError(f"a log line must be a string or a dict, not {type(line)}")
        if not rows:
            return 0
        return self._submit(_Job("logs", (request_id, function, rows), len(rows)))

    def prune(self, older_than_ms: float) -> int:
        """Delete the invocations (with their spans and logs) and the rollup minutes older
        than ``older_than_ms`` (rounded down to a whole minute), in batches between writes;
        returns how many invocations were deleted."""
        cut = _num(older_than_ms)
        if cut is None:
            raise ValueError("prune needs a time in epoch ms")
        return self._submit(_Job("prune", [cut, 0], 0))

    def reader(self) -> ReadConnection:
        """A new read connection (close it, or use ``with``)."""
        return open_reader(self.path, migrate_if_needed=False)

    def close(self) -> None:
        """Write what is queued, stop the writer and close the database."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._writer.join()
        self._checkpoint_wanted.set()
        self._checkpointer.join()
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA optimize")
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the writer -----------------------------------------------------------------------

    def _submit(self, job: _Job) -> Any:
        if self._closed:
            raise self._broken or StoreError("the store is closed")
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _read_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug in the loop itself
            self._broken = StoreError(f"the store's writer stopped: {exc!r}")
            self._closed = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    item.error = self._broken
                    item.finish()

    def _loop(self) -> None:
        pending: list[_Job] = []
        stopping = False
        while True:
            if not pending:
                if stopping:
                    break
                timeout = None
                if self.retain_ms is not None:
                    timeout = max(0.0, self._next_retention - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    self._retention_job()
                    continue
                if item is _STOP:
                    stopping = True
                    continue
                pending.append(item)
            # Everything queued meanwhile joins the transaction, up to BATCH_REPORTS.
            size = sum(j.size for j in pending if j.kind != "prune")
            while size < BATCH_REPORTS and not stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                pending.append(item)
                if item.kind != "prune":
                    size += item.size
            batch, pending = pending, []
            writes = [j for j in batch if j.kind != "prune"]
            if writes:
                self._write(writes)
            for job in batch:
                if job.kind == "prune" and self._prune_step(job):
                    if not stopping:
                        self._queue.put(job)  # the rest after what is queued now
                    elif job.waiter:
                        pending.append(job)  # a caller waits: finish before stopping
                    else:
                        job.finish()
            if (self.retain_ms is not None and not stopping
                    and time.monotonic() >= self._next_retention):
                self._retention_job()
        # Whatever slipped in after close() is refused, never left waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item.error = StoreError("the store is closed")
                item.finish()

    def _retention_job(self) -> None:
        self._next_retention = time.monotonic() + RETENTION_INTERVAL_S
        if self._retention is not None and not self._retention.done.is_set():
            return  # the last one is still deleting
        cut = time.time() * 1000.0 - (self.retain_ms or 0.0)
        self._retention = _Job("prune", [cut, 0], 0, waiter=False)
        self._queue.put(self._retention)

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        version = self._read_data_version()
        if version != self._data_version:
            # Another connection wrote the database: what the writer cached may be stale.
            self._cache.clear()
            self._orphan_logs = True
            self._data_version = version

    def _commit(self, rows: int = 1) -> None:
        self._conn.execute("COMMIT")
        self._unchecked += rows
        if self._unchecked >= CHECKPOINT_ROWS:
            self._unchecked = 0
            self._checkpoint_wanted.set()
        if self._wal_too_big:
            # The checkpointer cannot keep up (or a reader holds an old snapshot): the writer
            # waits for a whole checkpoint rather than let the WAL grow without bound.
            self._wal_too_big = False
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(RESTART)")

    def _checkpoints(self) -> None:
        """Copy the WAL back into the database when the writer has written enough (or a few
        seconds after it wrote anything), on a connection of its own: SQLite does it without
        the GIL, beside the writer."""
        conn = None
        try:
            conn = _connect(self.path, check_same_thread=False)
            while True:
                woken = self._checkpoint_wanted.wait(CHECKPOINT_IDLE_S)
                self._checkpoint_wanted.clear()
                if self._closed and not self._writer.is_alive():
                    return
                if not woken and not self._unchecked:
                    continue
                if not woken:
                    self._unchecked = 0
                with contextlib.suppress(sqlite3.Error):
                    _, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log - done > CHECKPOINT_FORCE_PAGES:
                        self._wal_too_big = True
        except sqlite3.Error:
            return
        finally:
            if conn is not None:
                conn.close()

    def _rollback(self) -> None:
        self._cache.clear()
        self._orphan_logs = True
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")

    def _write(self, jobs: list[_Job]) -> None:
        try:
            self._begin()
            results = self._apply(jobs)
            self._commit(sum(job.size for job in jobs))
        except BaseException:
            self._rollback()
            if len(jobs) == 1:
                self._finish_error(jobs[0])
                return
            # One job failed the batch: write each alone so the others still succeed.
            for job in jobs:
                self._write([job])
            return
        for job, result in zip(jobs, results):
            job.result = result
            job.finish()

    def _finish_error(self, job: _Job) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, sqlite3.Error):
            exc = StoreError(f"writing to {self.path} failed: {exc}")
        job.error = exc if isinstance(exc, Exception) else StoreError("the writer stopped")
        job.finish()

    def _apply(self, jobs: list[_Job]) -> list[Any]:
        results: list[Any] = []
        adds = [(n, item) for n, job in enumerate(jobs) if job.kind == "add"
                for item in job.items]
        counts = [[0, 0, 0] for _ in jobs]
        if adds:
            self._apply_adds(adds, counts)
        for n, job in enumerate(jobs):
            if job.kind == "add":
                results.append(AddResult(*counts[n]))
            elif job.kind == "logs":
                results.append(self._apply_logs(*job.items))
            else:  # pragma: no cover - unknown kinds are a programming error
                raise AssertionError(job.kind)
        return results

    def _fetch_rows(self, ids: Sequence[str]) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        conn = self._conn
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            cursor = conn.execute(_SELECT_ROWS + f"({', '.join('?' * len(chunk))})", chunk)
            for values in cursor:
                found[values[I_REQUEST_ID]] = [*values, None]
        return found

    def _apply_adds(self, adds: list[tuple[int, Any]], counts: list[list[int]]) -> None:
        conn = self._conn
        ids = list(dict.fromkeys(item.request_id for _, item in adds))
        existing = self._fetch_rows(ids)
        state: dict[str, list[Any]] = dict(existing)
        reports: dict[str, _Prepared] = {}
        infos: dict[str, Any] = {}  # the error group of each final row with a fingerprint
        changed: dict[str, None] = {}  # insertion-ordered set
        for job_n, item in adds:
            rid = item.request_id
            current = state.get(rid)
            new = item.row
            if type(item) is _PreparedPlatform:
                if current is None:
                    state[rid] = new
                    infos[rid] = item.error
                elif current[I_SOURCE] == "platform" or _has_platform(current):
                    counts[job_n][1] += 1
                    continue
                else:
                    merged = list(current)
                    for i in _PLATFORM:
                        merged[i] = new[i]
                    if new[I_PLATFORM_BILLED_MS] is not None:
                        merged[I_BILLED_MS] = new[I_PLATFORM_BILLED_MS]
                    state[rid] = merged
                counts[job_n][0] += 1
                changed[rid] = None
                continue
            # An agent report.
            if current is None:
                state[rid] = new
            elif current[I_SOURCE] == "platform":
                state[rid] = _with_platform(new, current)
            elif new[I_RANK] > current[I_RANK]:
                state[rid] = _with_platform(new, current)
                counts[job_n][2] += 1
            else:
                counts[job_n][1] += 1
                continue
            counts[job_n][0] += 1
            reports[rid] = item
            infos[rid] = item.error
            changed[rid] = None
        if not changed:
            return
        rollups = _Rollups(conn, self._cache)
        # What was stored before goes out of the rollups, spans and error groups.
        dirty_fingerprints: set[str] = set()
        swapped = []
        for rid in changed:
            old = existing.get(rid)
            if old is None:
                continue
            rollups.apply_invocation(old, -1)
            if rid in reports and old[I_SOURCE] == "agent":
                old_spans = conn.execute(
                    "SELECT dependency, duration_ms, status FROM spans"
                    " WHERE request_id = ? AND dependency IS NOT NULL", (rid,)
                ).fetchall()
                rollups.apply_spans(old, old_spans, -1)
                swapped.append((rid,))
            if old[I_FINGERPRINT]:
                dirty_fingerprints.add(old[I_FINGERPRINT])
        import_rollups: _ImportRollups | None = None
        if swapped:
            conn.executemany("DELETE FROM spans WHERE request_id = ?", swapped)
            conn.executemany(
                f"DELETE FROM logs WHERE request_id = ? AND seq < {INGESTED_SEQ}", swapped)
            import_rollups = _ImportRollups(conn)
            _remove_diagnostics(conn, swapped, import_rollups)
        # The new rows.
        inserts = []
        updates = []
        span_rows = []
        log_rows = []
        diagnostics_rows_: list[DiagnosticsRow] = []
        import_rows: list[ImportRow] = []
        new_groups: dict[str, list[Any]] = {}
        for rid in changed:
            row = state[rid]
            rollups.apply_invocation(row, 1)
            item = reports.get(rid)
            if item is None and rid in existing:
                # A REPORT line merged into a stored report: new figures, same row.
                updates.append((*(row[i] for i in _PLATFORM), row[I_BILLED_MS], rid))
                continue
            inserts.append(row)
            if item is not None:
                spans = item.spans
                if spans:
                    span_rows.extend(spans)
                    deps = [(s[9], s[7], s[8]) for s in spans if s[9] is not None]
                    if deps:
                        rollups.apply_spans(row, deps, 1)
                if item.logs:
                    log_rows.extend(item.logs)
                if item.diagnostics is not None:
                    diagnostics_rows_.append(item.diagnostics)
                    import_rows.extend(item.imports)
            fp = row[I_FINGERPRINT]
            if fp:
                kind, shape, frame = infos[rid]
                if rid in existing:
                    dirty_fingerprints.add(fp)
                start = row[I_START_MS]
                group = new_groups.get(fp)
                if group is None:
                    new_groups[fp] = [row[I_FUNCTION], kind, shape, frame, 1, start, start, rid]
                else:
                    group[4] += 1
                    if start < group[5]:
                        group[5] = start
                    if start >= group[6]:
                        group[6] = start
                        group[7] = rid
        if inserts:
            conn.executemany(_INSERT_INVOCATION, inserts)
        if updates:
            conn.executemany(
                "UPDATE invocations SET platform_duration_ms = ?, platform_billed_ms = ?,"
                " platform_max_memory_mb = ?, platform_init_ms = ?, billed_ms = ?"
                " WHERE request_id = ?", updates)
        if span_rows:
            conn.executemany(
                "INSERT OR IGNORE INTO spans (request_id, span_id, parent_span_id, function,"
                " name, kind, start_ms, duration_ms, status, dependency)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", span_rows)
        if log_rows:
            conn.executemany(
                "INSERT OR REPLACE INTO logs (request_id, function, ts_ms, level, logger,"
                " message, seq) VALUES (?, ?, ?, ?, ?, ?, ?)", log_rows)
        if self._orphan_logs:
            # Lines ingest attached before their invocation arrived get its function now.
            if conn.execute("SELECT 1 FROM logs WHERE function = '' LIMIT 1").fetchone():
                conn.executemany(
                    "UPDATE logs SET function = ? WHERE request_id = ? AND function = ''",
                    [(state[rid][I_FUNCTION], rid) for rid in changed],
                )
            else:
                self._orphan_logs = False
        rollups.write()
        if diagnostics_rows_ or import_rollups is not None:
            if import_rollups is None:
                import_rollups = _ImportRollups(conn)
            _insert_diagnostics(conn, diagnostics_rows_, import_rows, import_rollups)
            import_rollups.write()
        # Error groups: counted up for new rows, recounted where a row was replaced.
        upserts = [(fp, *g) for fp, g in new_groups.items() if fp not in dirty_fingerprints]
        if upserts:
            conn.executemany(
                "INSERT INTO error_groups (fingerprint, function, type, message, top_frame,"
                " count, first_ms, last_ms, example_request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (fingerprint) DO UPDATE SET count = count + excluded.count,"
                " first_ms = MIN(first_ms, excluded.first_ms),"
                " example_request_id = CASE WHEN excluded.last_ms >= last_ms"
                " THEN excluded.example_request_id ELSE example_request_id END,"
                " last_ms = MAX(last_ms, excluded.last_ms)",
                upserts,
            )
        for fp in dirty_fingerprints:
            group = new_groups.get(fp)
            self._recount_group(fp, group[:4] if group else None)

    def _recount_group(self, fp: str, info: Sequence[Any] | None) -> None:
        conn = self._conn
        count, first, last = conn.execute(
            "SELECT COUNT(*), MIN(start_ms), MAX(start_ms) FROM invocations"
            " WHERE fingerprint = ?", (fp,)
        ).fetchone()
        if not count:
            conn.execute("DELETE FROM error_groups WHERE fingerprint = ?", (fp,))
            return
        example = conn.execute(
            "SELECT request_id FROM invocations WHERE fingerprint = ?"
            " ORDER BY start_ms DESC LIMIT 1", (fp,)
        ).fetchone()[0]
        if info is not None:
            function, kind, shape, frame = info
            conn.execute(
                "INSERT OR REPLACE INTO error_groups (fingerprint, function, type, message,"
                " top_frame, count, first_ms, last_ms, example_request_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fp, function, kind, shape, frame, count, first, last, example),
            )
        else:
            conn.execute(
                "UPDATE error_groups SET count = ?, first_ms = ?, last_ms = ?,"
                " example_request_id = ? WHERE fingerprint = ?",
                (count, first, last, example, fp),
            )

    def _apply_logs(self, request_id: str, function: str | None,
                    lines: list[tuple[Any, ...]]) -> int:
        conn = self._conn
        row = conn.execute(
            "SELECT function, start_ms FROM invocations WHERE request_id = ?", (request_id,)
        ).fetchone()
        if function is None:
            function = row[0] if row else ""
        if not function:
            self._orphan_logs = True
        start = row[1] if row else None
        seen: set[str] = set()
        top = INGESTED_SEQ - 1
        for message, seq in conn.execute(
            "SELECT message, seq FROM logs WHERE request_id = ?", (request_id,)
        ):
            seen.add((message or "").strip())
            top = max(top, seq)
        rows = []
        last_ts = start or 0.0
        for ts, level, logger, message in lines:
            key = message.strip()
            if key in seen:
                continue
            seen.add(key)
            top += 1
            if ts is None:
                ts = last_ts
            last_ts = ts
            rows.append((request_id, function or "", ts, level, logger, message, top))
        if rows:
            conn.executemany(
                "INSERT INTO logs (request_id, function, ts_ms, level, logger, message, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    # -- retention ------------------------------------------------------------------------

    def _prune_step(self, job: _Job) -> bool:
        """Delete one batch for a prune job; True when there is more to delete."""
        cut, deleted = job.items
        minute = int(cut // MINUTE_MS)
        aligned = minute * MINUTE_MS
        conn = self._conn
        try:
            self._begin()
            ids = conn.execute(
                "SELECT request_id, fingerprint FROM invocations WHERE start_ms < ?"
                " ORDER BY start_ms LIMIT ?", (aligned, PRUNE_BATCH)
            ).fetchall()
            if ids:
                keys = [(rid,) for rid, _ in ids]
                conn.executemany("DELETE FROM spans WHERE request_id = ?", keys)
                conn.executemany("DELETE FROM logs WHERE request_id = ?", keys)
                import_rollups = _ImportRollups(conn)
                _remove_diagnostics(conn, keys, import_rollups)
                import_rollups.write()
                conn.executemany("DELETE FROM invocations WHERE request_id = ?", keys)
                for fp in {fp for _, fp in ids if fp}:
                    self._recount_group(fp, None)
            more = len(ids) == PRUNE_BATCH
            if not more:
                more = self._prune_rollups_and_logs(minute, aligned)
            self._commit(len(ids))
        except BaseException:
            self._rollback()
            self._finish_error(job)
            return False
        job.items[1] = deleted + len(ids)
        if more:
            return True
        job.result = job.items[1]
        job.finish()
        return False

    def _prune_rollups_and_logs(self, minute: int, aligned: float) -> bool:
        conn = self._conn
        hour = minute // 60
        self._cache.clear()
        for table, unit, _ in _INV_TABLES + _DEP_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE {unit} < ?",
                         (minute if unit == "minute" else hour,))
        if minute % 60:
            # The hour the cut falls in: rebuilt from the minutes it still has.
            rollups = _Rollups(conn)
            conn.execute("DELETE FROM rollup_hour WHERE hour = ?", (hour,))
            for row in conn.execute(
                f"SELECT function, version, cold, {_INV_VALUES} FROM rollup"
                " WHERE minute >= ? AND minute < ?", (hour * 60, hour * 60 + 60)
            ).fetchall():
                rollups.invocation(1, (row[0], hour, row[1], row[2])).merge_row(row[3:])
            deps: dict[tuple[Any, ...], _DependencyRollup] = {}
            for function, version, dependency, n, errors, total, blob in conn.execute(
                "SELECT function, version, dependency, n, errors, total_ms, duration"
                " FROM dependency_rollup WHERE minute >= ? AND minute < ?",
                (hour * 60, hour * 60 + 60),
            ).fetchall():
                acc = deps.setdefault((function, hour, version, dependency), _DependencyRollup())
                acc.n += n
                acc.errors += errors
                acc.total_ms += total
                acc.duration.merge(Sketch.from_bytes(blob))
            conn.execute("DELETE FROM dependency_rollup_hour WHERE hour = ?", (hour,))
            for key, acc in deps.items():
                rollups.dep[(1, key)] = acc
            rollups.write()
        # Log lines whose invocation is gone or never came: one function at a time, in
        # batches, walking the (function, ts_ms) index.
        function = ""
        first = True
        while True:
            if first:
                row = conn.execute(
                    "SELECT MIN(function) FROM logs WHERE function >= ?", (function,)).fetchone()
                first = False
            else:
                row = conn.execute(
                    "SELECT MIN(function) FROM logs WHERE function > ?", (function,)).fetchone()
            if row is None or row[0] is None:
                return False
            function = row[0]
            cursor = conn.execute(
                "DELETE FROM logs WHERE (request_id, seq) IN (SELECT request_id, seq FROM logs"
                " WHERE function = ? AND ts_ms < ? LIMIT ?)", (function, aligned, PRUNE_BATCH)
            )
            if cursor.rowcount >= PRUNE_BATCH:
                return True


def _with_platform(new: list[Any], current: Sequence[Any]) -> list[Any]:
    """``new`` keeping the REPORT-line figures ``current`` had (Lambda's billed duration)."""
    if not _has_platform(current):
        return new
    merged = list(new)
    for i in _PLATFORM:
        merged[i] = current[i]
    if current[I_PLATFORM_BILLED_MS] is not None:
        merged[I_BILLED_MS] = current[I_PLATFORM_BILLED_MS]
    return merged


def _has_platform(row: Sequence[Any]) -> bool:
    return any(row[i] is not None for i in _PLATFORM)

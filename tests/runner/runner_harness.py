"""Helpers for the runner tests: where the test handlers are, and the embedded store read back
row by row."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import zlib
from typing import Any

HANDLERS = pathlib.Path(__file__).resolve().parent / "handlers"


def stored_rows(db: pathlib.Path, function: str) -> list[dict[str, Any]]:
    """The store's rows of ``function`` by start, each with its report (``None`` for a row the
    runner alone wrote)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute(
            "SELECT * FROM invocations WHERE function = ? ORDER BY start_ms", (function,))]
    finally:
        conn.close()
    for row in rows:
        blob = row.pop("report")
        row["report"] = json.loads(zlib.decompress(blob)) if blob else None
    return rows

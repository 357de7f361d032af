"""``lambdascope ingest FILE…|-``: fill the store from log files (collector/ingest.py does the
reading); progress on stderr, one line of counts at the end."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from ._common import die, out


def run(args: Any) -> int:
    paths: list[str] = list(args.files)
    if paths.count("-") > 1:
        die("'-' (standard input) can be given once")
    for path in paths:
        if path == "-":
            continue
        if not os.path.exists(path):
            die(f"{path}: no such file")
        if os.path.isdir(path):
            die(f"{path}: is a directory (give the files in it)")
        if not os.access(path, os.R_OK):
            die(f"{path}: not readable (permission denied)")
    function = args.function
    if function is not None and not function.strip():
        die("--function: empty name")
    db = args.db if args.db is not None else _default_db()
    if os.path.isdir(db):
        die(f"--db {db}: is a directory, not a store file")
    if os.path.isfile(db):
        from ._common import check_store_file

        check_store_file(db)  # not someone else's SQLite database

    from ..collector.ingest import Ingester
    from ..collector.store import StoreError

    show_progress = not args.quiet and (args.progress or _isatty(sys.stderr))
    bar = Progress(sys.stderr, tty=_isatty(sys.stderr)) if show_progress else None
    store = _open_store(db)
    ingester = Ingester(store, function, progress=bar.update if bar else None)
    try:
        try:
            for path in paths:
                if bar is not None:
                    bar.file(path, len(paths))
                try:
                    ingester.read_path(path)
                except OSError as exc:
                    die(f"{path}: {exc.strerror or exc}")
        except StoreError as exc:
            die(f"writing to the store {db} failed: {exc}")
        except KeyboardInterrupt:
            # Keep what was read: write it, say how much, exit 130.
            counts = ingester.close()
            if bar is not None:
                bar.done()
            sys.stderr.write(f"lambdascope ingest: interrupted; kept {counts.summary()}\n")
            return 130
        try:
            counts = ingester.close()
        except StoreError as exc:
            die(f"writing to the store {db} failed: {exc}")
    finally:
        ingester.shutdown()
        if bar is not None:
            bar.done()
        _close(store)
    if not args.quiet:
        out(counts.summary())
    return 0


def _default_db() -> str:
    from . import DEFAULT_DB

    return DEFAULT_DB


def _open_store(db: str) -> Any:
    from ..collector.store import Store

    try:
        return Store(db)
    except Exception as exc:
        if isinstance(exc, ImportError):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        die(f"cannot open the store {db}: {text}")


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress line on stderr: redrawn in place on a terminal, a line every few seconds
    otherwise (``--progress``). Shown only once the work has taken a moment."""

    def __init__(self, stream: TextIO, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.started = time.monotonic()
        self.shown = False
        self.last = 0.0
        self.name = ""
        self.files = ""
        self.index = 0
        self.width = 0

    def file(self, path: str, total: int) -> None:
        self.index += 1
        self.name = "<stdin>" if path == "-" else os.path.basename(path)
        self.files = f" [{self.index}/{total}]" if total > 1 else ""

    def update(self, counts: Any, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.started < 0.5:
            return
        if not self.tty and now - self.last < 2.0 and self.shown:
            return
        self.last = now
        if total:
            share = min(1.0, done / total)
            filled = int(share * 24)
            bar = f"[{'#' * filled}{'.' * (24 - filled)}] {share * 100:5.1f}% "
            size = f"{_mb(done)}/{_mb(total)}"
        else:
            bar = ""
            size = _mb(done) if done else ""
        text = (f"{self.name}{self.files} {bar}{size} · {counts.lines:,} lines · "
                f"{counts.reports:,} reports · {counts.platform:,} platform records")
        if self.tty:
            pad = max(0, self.width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
        self.shown = False


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB"

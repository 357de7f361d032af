"""The spool: reports an exporter could not deliver wait on disk for a later flush.

Under ``LAMBDASCOPE_SPOOL_DIR`` (a directory only its owner can read), one sub-directory per
exporter, one file per batch of serialised reports, named so that names sort oldest first. Safe
with several processes sharing the directory (Lambda Managed Instances run one process per
concurrent request with a shared ``/tmp``):

* a file is written under a temporary name and renamed into place, so no reader ever sees it half
  written;
* a process claims a file by renaming it to a name of its own; only one rename can win, so a
  report is sent by one process at a time; a claim older than ``STALE_CLAIM_S`` (its process died
  mid-flush) is taken back;
* a delivered file is removed; an undelivered one is renamed back, keeping its place in line.

The spool is bounded by ``LAMBDASCOPE_SPOOL_MAX_MB``: when a write would pass the bound, the
oldest files go first, and the reports they held are counted.
"""

from __future__ import annotations

import os
import re
import time

from ._guard import log_once

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

STALE_CLAIM_S = 120.0
_CARRIED = re.compile(rb'"dropped_reports":(\d+)')
MAX_BATCH_REPORTS = 100
MAX_BATCH_BYTES = 2 * 1024 * 1024


def private_dirs(path: str) -> None:
    """Make ``path`` and every missing parent owner-only (``os.makedirs`` gives its ``mode`` to
    the last directory only; the parents would get the umask's)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and parent != path:
        private_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


class Spool:
    def __init__(self, directory: str, max_mb: float) -> None:
        self.directory = directory
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.dropped = 0  # reports this process removed to respect the bound
        self._seq = 0

    def _dir(self, lane: str) -> str:
        path = os.path.join(self.directory, lane)
        private_dirs(path)
        return path

    def put(self, lane: str, lines: list[str]) -> None:
        """Keep ``lines`` (serialised reports) for ``lane``; raises ``OSError`` on failure."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        if len(data) > self.max_bytes:
            self.dropped += len(lines)
            return
        directory = self._dir(lane)
        self._make_room(len(data))
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.jsonl"
        tmp = os.path.join(directory, "." + name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(directory, name))

    def _entries(self) -> list[tuple[str, str, int]]:
        """(name, path, size) of every ready file, oldest first, across lanes."""
        out: list[tuple[str, str, int]] = []
        try:
            lanes = os.listdir(self.directory)
        except FileNotFoundError:
            return out
        for lane in lanes:
            directory = os.path.join(self.directory, lane)
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        if entry.name.endswith(".jsonl") and not entry.name.startswith("."):
                            try:
                                out.append((entry.name, entry.path, entry.stat().st_size))
                            except FileNotFoundError:
                                continue
            except (FileNotFoundError, NotADirectoryError):
                continue
        out.sort()
        return out

    def _make_room(self, incoming: int) -> None:
        entries = self._entries()
        total = sum(size for _, _, size in entries) + incoming
        for _, path, size in entries:
            if total <= self.max_bytes:
                break
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                os.unlink(path)
            except FileNotFoundError:
                continue  # another process took it
            total -= size
            # The reports dropped, and the drops those reports were carrying: none goes untold.
            self.dropped += data.count(b"\n") + sum(
                int(m) for m in _CARRIED.findall(data)
            )
            log_once(
                "spool-full",
                "lambdascope: the spool at %s is full (%g MB); the oldest reports are dropped "
                "and counted",
                self.directory,
                round(self.max_bytes / (1024 * 1024), 3),
            )

    def claim(self, lane: str) -> tuple[list[str], list[str]]:
        """Take the oldest waiting files of ``lane`` (up to a batch): (claimed paths, lines)."""
        directory = os.path.join(self.directory, lane)
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return [], []
        now = time.time()
        claimed: list[str] = []
        lines: list[str] = []
        size = 0
        me = f".claim-{os.getpid()}-"
        for name in names:
            path = os.path.join(directory, name)
            if name.startswith(".claim-"):
                # A claim whose process died mid-flush: put it back in line.
                try:
                    if now - os.stat(path).st_mtime > STALE_CLAIM_S:
                        os.rename(path, os.path.join(directory, name.split("-", 2)[2]))
                except (FileNotFoundError, IndexError):
                    pass
                continue
            if not name.endswith(".jsonl") or name.startswith("."):
                continue
            target = os.path.join(directory, me + name)
            try:
                os.rename(path, target)  # atomic: exactly one process wins
                os.utime(target)
                with open(target, encoding="utf-8") as fh:
                    chunk = [line for line in fh.read().split("\n") if line]
            except FileNotFoundError:
                continue
            claimed.append(target)
            lines.extend(chunk)
            size += sum(len(line) for line in chunk)
            if len(lines) >= MAX_BATCH_REPORTS or size >= MAX_BATCH_BYTES:
                break
        return claimed, lines

    def done(self, claimed: list[str]) -> None:
        for path in claimed:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def release(self, claimed: list[str]) -> None:
        for path in claimed:
            directory, name = os.path.split(path)
            try:
                os.rename(path, os.path.join(directory, name.split("-", 2)[2]))
            except (FileNotFoundError, IndexError):
                pass

    def pending(self, lane: str | None = None) -> int:
        """How many reports wait (all lanes, or one)."""
        count = 0
        for _, path, _ in self._entries():
            if lane is not None and os.path.basename(os.path.dirname(path)) != lane:
                continue
            try:
                with open(path, "rb") as fh:
                    count += fh.read().count(b"\n")
            except FileNotFoundError:
                continue
        return count


def lane_name(exporter: Any) -> str:
    return str(getattr(exporter, "name", "exporter"))

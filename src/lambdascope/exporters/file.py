"""``file``: JSON lines appended to ``LAMBDASCOPE_FILE``.

Safe with many processes writing at once (Lambda Managed Instances run one process per
concurrent request with a shared ``/tmp``): the file is opened with ``O_APPEND`` and each batch of
lines goes out in a single ``write``, so lines never interleave. The file is readable only by its
owner.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from . import ExportResult

_PERMANENT = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EEXIST
}


class FileExporter:
    name = "file"
    network = False

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    def _open(self) -> int:
        if self._fd is not None and self._pid == os.getpid():
            return self._fd
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o600)
        self._pid = os.getpid()
        return self._fd

    def export(
        self, reports: list[dict[str, Any]], lines: list[str], timeout_s: float
    ) -> ExportResult:
        data = "".join(line + "\n" for line in lines).encode("utf-8", "replace")
        try:
            fd = self._open()
        except OSError as exc:
            if exc.errno in _PERMANENT:  # retrying cannot help: say so once, drop the report
                from .._guard import log_once

                log_once(
                    "file-exporter-path",
                    "lambdascope: cannot write reports to %s (%s); the file exporter is off",
                    self.path,
                    exc.strerror or exc,
                )
                return ExportResult.REJECTED
            raise
        written = os.write(fd, data)
        while written < len(data):  # a regular file takes it whole; be thorough anyway
            written += os.write(fd, data[written:])
        return ExportResult.SUCCESS

    def reset(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None

    shutdown = reset

"""Attach the log records emitted during an invocation to its report (capped)."""

from __future__ import annotations

import logging

from ._guard import internal_error
from ._invocation import CURRENT, MAX_LOGS, PARENT

MAX_MESSAGE = 2048
# Their DEBUG lines carry request and response bodies (secret values, decrypted parameters,
# KMS plaintext): never captured.
_BODY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore", "requests")


class CaptureHandler(logging.Handler):
    """A root-logger handler that copies records into the current invocation."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.enabled = True

    def emit(self, record: logging.LogRecord) -> None:
        if not self.enabled:
            return
        try:
            inv = CURRENT.get()
            if inv is None or record.name == "lambdascope" or record.name.startswith(
                "lambdascope."
            ):
                return
            config = inv.config
            if (config is not None and not config.capture_logs) or len(inv.logs) >= MAX_LOGS:
                return
            if record.levelno < logging.INFO and record.name.split(".", 1)[0] in _BODY_LOGGERS:
                return
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message = f"{message} [{type(exc).__qualname__}: {exc}]"
            pipeline = inv.pipeline
            if pipeline is not None:  # scrubbed before it is cut, so no secret is cut in half
                message = pipeline.redactor.scrub(message)
            entry = {
                "timestamp_ms": round(record.created * 1000.0, 3),
                "level": record.levelname,
                "logger": record.name,
                "message": message[:MAX_MESSAGE],
            }
            span_id = PARENT.get() or (inv.root_span_id if inv.sampled else None)
            if span_id:
                entry["span_id"] = span_id
            inv.logs.append(entry)
        except Exception as exc:  # never let logging fail the caller
            internal_error("logs.capture", exc)

    # logging.Handler.handle takes a lock per record; this handler only appends to a list
    # owned by the current invocation, so the lock is not needed.
    def createLock(self) -> None:  # noqa: N802 - logging API
        self.lock = None

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        self.emit(record)
        return True


def install() -> CaptureHandler:
    handler = CaptureHandler()
    logging.getLogger().addHandler(handler)
    return handler

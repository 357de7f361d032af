"""Helpers for testing code that uses lambdascope.

>>> from lambdascope.testing import capture_reports, fake_context
>>> with capture_reports() as reports:
...     handler({}, fake_context())
>>> reports[0]["invocation"]["status"]
'ok'
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

from . import _guard, _state
from . import exporters as _exporters
from .exporters import extra
from .exporters.memory import MemoryExporter


@contextlib.contextmanager
def capture_reports(only: bool = True) -> Iterator[list[dict[str, Any]]]:
    """Collect the reports produced inside the block, as a collector would receive them.

    With ``only`` (the default) the configured exporters are muted inside the block.
    """
    memory = MemoryExporter()
    saved: list[tuple[Any, list[Any]]] = []
    extra.append(memory)
    for pipeline in _state.S.pipelines.values():
        saved.append((pipeline, pipeline.exporters))
        pipeline.exporters = [memory] if only else [*pipeline.exporters, memory]
    if only:
        _exporters.muted += 1
    try:
        yield memory.reports
    finally:
        extra.remove(memory)
        if only:
            _exporters.muted -= 1
        for pipeline, exporters in saved:
            pipeline.exporters = exporters
        for pipeline in _state.S.pipelines.values():
            pipeline.exporters = [e for e in pipeline.exporters if e is not memory]


class FakeContext:
    """A stand-in for the Lambda context object, with a real deadline."""

    def __init__(
        self,
        function_name: str = "test-function",
        memory_limit_in_mb: int = 128,
        timeout_s: float = 3.0,
        aws_request_id: str | None = None,
        region: str = "us-east-1",
        account: str = "123456789012",
        tenant_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef"
        self.tenant_id = tenant_id
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def fake_context(**kwargs: Any) -> FakeContext:
    """A Lambda-like context object (see :class:`FakeContext` for the fields)."""
    return FakeContext(**kwargs)


def reset() -> None:
    """Forget all process-wide agent state: the next invocation is a first (cold) one again,
    and the automatic instrumentation is removed (the next invocation applies it again)."""
    import sys

    if "lambdascope.instrumentation" in sys.modules:
        sys.modules["lambdascope.instrumentation"].uninstrument()
    _state.reset()
    _guard.reset()

"""Everything built once per configuration: exporters, redactor, static function facts, and
delivery of reports within the flush budget."""

from __future__ import annotations

import os
import time

from . import _coldstart
from ._config import DEFAULT_REDACT, Config
from ._guard import internal_error, log_once
from ._redact import Redactor
from ._report import MAX_REPORT_BYTES, dumps, function_info, prune
from .exporters import ExportResult, build
from .instrumentation._suppress import ALL
from .instrumentation._suppress import LEVEL as SUPPRESS

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

MAX_RETRY_QUEUE = 100
#: Time kept back from the invocation's deadline when delivering before the handler returns.
DEADLINE_MARGIN_MS = 50.0
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
#: How often a process looks for reports others left in the spool when it left none itself.
SPOOL_LOOK_S = 10.0


class _Lane:
    """One exporter with its own queue of undelivered reports and its back-off."""

    __slots__ = (
        "backoff_s", "exporter", "look_at", "queue", "retry_at", "spooled", "wants_lines",
    )  # fmt: skip

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        #: Exporters of report objects (emf, otlp) say False: the reports are then serialised
        #: only when they must wait (spool, retry queue).
        self.wants_lines = bool(getattr(exporter, "wants_lines", True))
        self.queue: list[tuple[dict[str, Any], str]] = []
        self.retry_at = 0.0
        self.backoff_s = 0.0
        # Whether this process left reports in the spool, and when to look at it anyway (other
        # processes sharing it, an earlier process of the sandbox): never a directory listing
        # per invocation.
        self.spooled = False
        self.look_at = 0.0


class Pipeline:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.redactor = Redactor(DEFAULT_REDACT + tuple(config.redact))
        self.function = function_info(config.service)
        self.memory_limit_mb = self.function["memory_limit_mb"]
        self.init_type = _coldstart.normalise_init_type(
            os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
        )
        self.warm_verdict = _coldstart.verdict(False, self.init_type, None)
        self.exporters = build(config)
        self.dropped_reports = 0  # reports dropped and not yet told in a report
        self.spool: Any = None
        try:
            from ._spool import Spool

            self.spool = Spool(config.spool_dir, config.spool_max_mb)
        except Exception as exc:
            internal_error("spool.init", exc)
        self.last_flush_ms = 0.0
        self._lanes: dict[int, _Lane] = {}

    @property
    def exporters(self) -> list[Any]:
        return self._exporters

    @exporters.setter
    def exporters(self, value: list[Any]) -> None:
        # Local exporters first: a slow collector must not hold back stdout or a file.
        self._exporters = sorted(value, key=lambda e: bool(getattr(e, "network", True)))
        # No exporter of ours uses the network between invocations: the end-of-invocation
        # network reading can serve as the next start.
        self.reuse_net = not any(getattr(e, "network", True) for e in self._exporters)

    @property
    def retry(self) -> list[tuple[Any, dict[str, Any], str]]:
        """Undelivered reports kept in memory (when the spool could not take them)."""
        return [(lane.exporter, r, line) for lane in self._lanes.values() for r, line in lane.queue]

    def take_dropped(self) -> int:
        """The count of dropped reports to tell in the next report (then zero)."""
        spool = self.spool
        if spool is not None and spool.dropped:
            self.dropped_reports += spool.dropped
            spool.dropped = 0
        count, self.dropped_reports = self.dropped_reports, 0
        return count

    def has_waiting(self) -> bool:
        if any(lane.queue for lane in self._lanes.values()):
            return True
        spool = self.spool
        if spool is None:
            return False
        try:
            return any(spool.pending(lane.exporter.name) for lane in self._lanes.values())
        except OSError:
            return False

    def _lane(self, exporter: Any) -> _Lane:
        lane = self._lanes.get(id(exporter))
        if lane is None or lane.exporter is not exporter:
            lane = self._lanes[id(exporter)] = _Lane(exporter)
        return lane

    def rebuild_redactor(self) -> None:
        """Read the environment's secrets again (after a SnapStart restore)."""
        self.redactor = Redactor(DEFAULT_REDACT + tuple(self.config.redact))

    def serialise(self, report: dict[str, Any]) -> str:
        line = dumps(report)
        if len(line) > MAX_REPORT_BYTES:
            line = prune(report, line)
        return self.redactor.text(line)

    def deliver(
        self,
        reports: list[dict[str, Any]],
        timeout_ms: float | None = None,
        remaining_ms: float | None = None,
        ignore_backoff: bool = False,
    ) -> bool:
        """Send ``reports`` (then earlier undelivered ones) to every exporter within the flush
        budget, and never past ``remaining_ms`` (the invocation's time left) minus a margin.
        ``ignore_backoff`` tries exporters that recently failed too (an explicit ``flush()``).
        Returns True when everything was delivered. Never raises."""
        t0 = time.perf_counter()
        budget_ms = self.config.flush_timeout_ms if timeout_ms is None else timeout_ms
        if remaining_ms is not None:
            budget_ms = min(budget_ms, remaining_ms - DEADLINE_MARGIN_MS)
        deadline = time.monotonic() + budget_ms / 1000.0
        ok = True
        token = SUPPRESS.set(ALL)  # the agent's own calls are never traced
        try:
            lanes = [self._lane(e) for e in self._exporters]
            # Serialised only when an exporter writes lines, or a report must wait (spool).
            lines: list[str] = (
                [self.serialise(r) for r in reports]
                if any(lane.wants_lines for lane in lanes)
                else []
            )
            if ignore_backoff:
                for lane in lanes:
                    lane.retry_at = lane.look_at = 0.0
            for lane in lanes:  # fresh reports first
                if reports and not self._send(lane, reports, lines, deadline):
                    ok = False
            for lane in lanes:  # then what waited, oldest first, in batches
                if not self._drain(lane, deadline):
                    ok = False
        except Exception as exc:
            internal_error("deliver", exc)
            ok = False
        finally:
            SUPPRESS.reset(token)
        self.last_flush_ms = (time.perf_counter() - t0) * 1000.0
        return ok

    def _call(self, lane: _Lane, reports: list[Any], lines: list[str], deadline: float) -> Any:
        now = time.monotonic()
        if deadline - now <= 0 or now < lane.retry_at:
            return ExportResult.RETRY
        exporter = lane.exporter
        try:
            result = exporter.export(reports, lines, deadline - now)
        except Exception as exc:
            internal_error(f"exporter.{exporter.name}", exc)
            result = ExportResult.RETRY
        if result is ExportResult.RETRY:
            lane.backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, lane.backoff_s * 2))
            lane.retry_at = time.monotonic() + lane.backoff_s
        else:
            lane.backoff_s, lane.retry_at = 0.0, 0.0
        return result

    def _send(
        self, lane: _Lane, reports: list[dict[str, Any]], lines: list[str], deadline: float
    ) -> bool:
        if self._call(lane, reports, lines, deadline) is ExportResult.RETRY:
            if len(lines) != len(reports):  # an exporter of report objects: serialise now
                lines[:] = [self.serialise(r) for r in reports]
            spool = self.spool
            if spool is not None:
                try:
                    spool.put(lane.exporter.name, lines)
                    lane.spooled = True
                    return False
                except OSError as exc:
                    log_once(
                        "spool-write",
                        "lambdascope: cannot write to the spool at %s (%s); undelivered reports "
                        "wait in memory instead",
                        spool.directory,
                        exc,
                    )
            lane.queue.extend(zip(reports, lines))
            overflow = len(lane.queue) - MAX_RETRY_QUEUE
            if overflow > 0:  # drop the oldest first, and count them
                del lane.queue[:overflow]
                self.dropped_reports += overflow
                log_once(
                    "retry-queue-full",
                    "lambdascope: reports could not be delivered for a while; the oldest are "
                    "being dropped (counted in dropped_reports)",
                )
            return False
        return True

    def _drain(self, lane: _Lane, deadline: float) -> bool:
        ok = True
        if lane.queue:
            queued = lane.queue
            lane.queue = []
            result = self._call(
                lane, [r for r, _ in queued], [line for _, line in queued], deadline
            )
            if result is ExportResult.RETRY:
                lane.queue = queued + lane.queue
                return False
        spool = self.spool
        now = time.monotonic()
        if spool is None or now < lane.retry_at or (not lane.spooled and now < lane.look_at):
            return ok
        lane.look_at = now + SPOOL_LOOK_S
        try:
            while time.monotonic() < deadline:
                claimed, lines = spool.claim(lane.exporter.name)
                if not claimed:
                    lane.spooled = False
                    break
                if self._call(lane, [], lines, deadline) is ExportResult.RETRY:
                    spool.release(claimed)
                    return False
                spool.done(claimed)  # delivered, or refused for good (400/401/413)
        except OSError as exc:
            internal_error("spool.drain", exc)
            return False
        return ok

    def reset_connections(self) -> None:
        for exporter in self._exporters:
            try:
                exporter.reset()
            except Exception as exc:
                internal_error(f"exporter.{exporter.name}.reset", exc)

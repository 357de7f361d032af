"""Resource figures per invocation, read cheaply from /proc and the cgroup.

Each source is read at most once at the start and once at the end of an invocation, through
file descriptors kept open across warm invocations (``pread`` at offset 0 makes the kernel
generate a fresh copy), so the whole sample costs a few tens of microseconds.

* RSS at start: ``/proc/self/statm``; RSS, per-invocation peak and threads at the end:
  ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``Threads``). The peak is made per invocation by
  writing ``5`` to ``/proc/self/clear_refs`` at the start, which resets ``VmHWM`` to the current
  RSS. Where that write is refused, the peak is the lifetime ``VmHWM`` when it rose during the
  invocation, else the larger of the start and end RSS.
* CPU: ``getrusage`` (user and system time of the process, microsecond resolution).
* Network: ``/proc/net/dev``, summed over every interface but loopback (the sandbox's traffic).
* ``/tmp``: ``statvfs``, never a walk of the tree.
* Sandbox memory: the memory cgroup (v2 ``memory.current``/``memory.peak`` or v1
  ``memory.usage_in_bytes``/``memory.max_usage_in_bytes``) where readable. This is the figure
  CloudWatch's "Max Memory Used" is close to: it counts every process of the sandbox and the page
  cache, not only this process's RSS. ``LAMBDASCOPE_SANDBOX_CGROUP`` names another directory of
  that layout (or ``none``), for a sandbox that is not the cgroup at /sys/fs/cgroup (the local
  runner's).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

try:
    from resource import RUSAGE_SELF as _RUSAGE_SELF
    from resource import getrusage as _getrusage
except ImportError:  # pragma: no cover - not POSIX
    _RUSAGE_SELF = 0

    def _getrusage(who: int) -> Any:
        class _Usage:
            ru_utime, ru_stime = os.times()[:2]

        return _Usage()

_MB = 1024.0 * 1024.0

_CGROUP_CANDIDATES = (
    ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.peak"),
    (
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
    ),
)


#: Where the sandbox's memory figure is, when the sandbox is not the cgroup the process sees
#: at /sys/fs/cgroup: a directory in the cgroup v2 layout (``memory.current``, ``memory.peak``,
#: each a number of bytes), or ``none`` for no figure. ``lambdascope invoke`` points it at files
#: it keeps up to date with its sandbox's memory (the host's cgroup is not the sandbox's).
SANDBOX_CGROUP_ENV = "LAMBDASCOPE_SANDBOX_CGROUP"


def _cgroup_candidates() -> tuple[tuple[str, str], ...]:
    override = os.environ.get(SANDBOX_CGROUP_ENV)
    if override is None:
        return _CGROUP_CANDIDATES
    if not override.strip() or override.strip().lower() == "none":
        return ()
    return ((os.path.join(override, "memory.current"), os.path.join(override, "memory.peak")),)


def _open(path: str, flags: int = os.O_RDONLY) -> int | None:
    try:
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


def _pread(fd: int | None, size: int = 4096) -> bytes | None:
    if fd is None:
        return None
    try:
        return os.pread(fd, size, 0)
    except OSError:
        return None


def _cgroup_mb(fd: int | None) -> float | None:
    raw = _pread(fd, 64)
    if raw:
        try:
            return round(int(raw) / _MB, 2)
        except ValueError:
            return None
    return None


def _status_kb(status: bytes, key: bytes) -> int | None:
    at = status.find(key)
    if at < 0:
        return None
    end = status.find(b"\n", at)
    try:
        return int(status[at + len(key) : end].split()[0])
    except (ValueError, IndexError):
        return None


def parse_net_dev(raw: bytes) -> tuple[int, int]:
    """Sum received and transmitted bytes over every interface except loopback."""
    rx = tx = 0
    for line in raw.splitlines()[2:]:
        name, sep, rest = line.partition(b":")
        if sep and name.strip() != b"lo":
            cols = rest.split(None, 9)
            if len(cols) >= 9:  # a line cut short by the read size is skipped
                rx += int(cols[0])
                tx += int(cols[8])
    return rx, tx


class Start:
    """What was read at the start of an invocation."""

    __slots__ = ("cpu_system", "cpu_user", "hwm_kb", "hwm_reset", "net", "rss_kb")

    def __init__(self) -> None:
        self.rss_kb: int | None = None
        self.hwm_reset = False
        self.hwm_kb: int | None = None
        self.net: tuple[int, int] | None = None
        self.cpu_user = 0.0
        self.cpu_system = 0.0


class Sampler:
    """Reads the resource figures; one per process (reopened after fork or restore)."""

    def __init__(self, tmp_dir: str = "/tmp") -> None:
        self.pid = os.getpid()
        self.tmp_dir = tmp_dir
        self.page_kb = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4
        self._statm = _open("/proc/self/statm")
        self._status = _open("/proc/self/status")
        self._net = _open("/proc/net/dev")
        self._clear_refs = _open("/proc/self/clear_refs", os.O_WRONLY)
        self._cg_current: int | None = None
        self._cg_peak: int | None = None
        for current, peak in _cgroup_candidates():
            fd = _open(current)
            if fd is not None and _pread(fd, 64):
                self._cg_current, self._cg_peak = fd, _open(peak)
                break
            if fd is not None:
                os.close(fd)
        self._lifetime_hwm_kb = 0
        self._fd_size_ok = True
        self._last_net: tuple[int, int] | None = None
        self.linux = self._status is not None
        self._psutil: Any = None

    def close(self) -> None:
        for fd in (
            self._statm,
            self._status,
            self._net,
            self._clear_refs,
            self._cg_current,
            self._cg_peak,
        ):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._statm = self._status = self._net = self._clear_refs = None
        self._cg_current = self._cg_peak = None

    # -- start -------------------------------------------------------------------------
    def start(self, reuse_net: bool = False) -> Start:
        """Read what the start of an invocation needs.

        With ``reuse_net``, the network counters read at the end of the previous invocation
        stand for this start (saving a read): right when nothing of the agent's own used the
        network in between and the sandbox was frozen, as Lambda freezes it.
        """
        s = Start()
        usage = _getrusage(_RUSAGE_SELF)  # microsecond resolution (os.times() has 10 ms)
        s.cpu_user, s.cpu_system = usage.ru_utime, usage.ru_stime
        if not self.linux:
            s.rss_kb = self._psutil_rss_kb()
            return s
        statm = _pread(self._statm, 256)
        if statm:
            try:
                s.rss_kb = int(statm.split()[1]) * self.page_kb
            except (ValueError, IndexError):
                pass
        if self._clear_refs is not None:
            try:
                os.write(self._clear_refs, b"5")
                s.hwm_reset = True
            except OSError:
                os.close(self._clear_refs)
                self._clear_refs = None
        if not s.hwm_reset:
            status = _pread(self._status)
            s.hwm_kb = _status_kb(status, b"VmHWM:") if status else None
        if reuse_net and self._last_net is not None:
            s.net = self._last_net
            return s
        raw = _pread(self._net, 16384)
        if raw:
            try:
                s.net = parse_net_dev(raw)
            except ValueError:
                s.net = None
        return s

    # -- end ---------------------------------------------------------------------------
    def end(self, s: Start, memory_limit_mb: float | None) -> dict[str, Any]:
        usage = _getrusage(_RUSAGE_SELF)
        rss_start = s.rss_kb
        rss_end = peak = threads = open_fds = None
        net_rx = net_tx = sandbox = sandbox_peak = None
        if self.linux:
            status = _pread(self._status)
            if status:
                rss_end = _status_kb(status, b"VmRSS:")
                hwm = _status_kb(status, b"VmHWM:")
                threads = _status_kb(status, b"Threads:")
                if s.hwm_reset:
                    peak = hwm
                elif hwm is not None and s.hwm_kb is not None and hwm > s.hwm_kb:
                    peak = hwm  # the lifetime peak rose during this invocation
            raw = _pread(self._net, 16384)
            self._last_net = None
            if raw:
                try:
                    self._last_net = rx, tx = parse_net_dev(raw)
                    if s.net is not None:
                        net_rx = max(0, rx - s.net[0])
                        net_tx = max(0, tx - s.net[1])
                except ValueError:
                    pass
            open_fds = self._open_fds()
            sandbox = _cgroup_mb(self._cg_current)
            sandbox_peak = _cgroup_mb(self._cg_peak)
        else:
            rss_end = self._psutil_rss_kb()
            threads = _threads_fallback()
        if peak is None or (rss_end is not None and rss_end > peak):
            peak = rss_end
        if rss_start is not None and (peak is None or rss_start > peak):
            peak = rss_start
        peak_mb = round(peak / 1024.0, 2) if peak is not None else None
        try:
            st = os.statvfs(self.tmp_dir)
            tmp_mb: float | None = round((st.f_blocks - st.f_bfree) * st.f_frsize / _MB, 2)
        except OSError:
            tmp_mb = None
        return {
            "rss_start_mb": round(rss_start / 1024.0, 2) if rss_start is not None else None,
            "rss_end_mb": round(rss_end / 1024.0, 2) if rss_end is not None else None,
            "rss_peak_mb": peak_mb,
            "memory_used_pct": (
                round(peak_mb / memory_limit_mb * 100.0, 2)
                if peak_mb is not None and memory_limit_mb
                else None
            ),
            "cpu_user_ms": round((usage.ru_utime - s.cpu_user) * 1000.0, 3),
            "cpu_system_ms": round((usage.ru_stime - s.cpu_system) * 1000.0, 3),
            "net_rx_bytes": net_rx,
            "net_tx_bytes": net_tx,
            "tmp_used_mb": tmp_mb,
            "open_fds": open_fds,
            "threads": threads,
            "sandbox_memory_mb": sandbox,
            "sandbox_memory_peak_mb": sandbox_peak,
        }

    def _open_fds(self) -> int | None:
        # Linux 6.2+ reports the number of open descriptors as the size of /proc/self/fd,
        # for the cost of one stat; older kernels say 0 and the directory is listed instead.
        try:
            if self._fd_size_ok:
                count = os.stat("/proc/self/fd").st_size
                if count > 0:
                    return count
                self._fd_size_ok = False
            return len(os.listdir("/proc/self/fd")) - 1  # minus listdir's own descriptor
        except OSError:
            return None

    def _psutil_rss_kb(self) -> int | None:
        try:
            if self._psutil is None:
                import psutil

                self._psutil = psutil.Process()
            return int(self._psutil.memory_info().rss // 1024)
        except Exception:
            return None


def _threads_fallback() -> int | None:
    try:
        import threading

        return threading.active_count()
    except Exception:  # pragma: no cover
        return None


def leak_suspected(history: list[float], memory_limit_mb: float | None) -> bool:
    """A steady rise of end-of-invocation RSS over recent warm invocations.

    Needs at least 8 samples. Suspected when the rise from the lowest of the first half to the
    last sample is at least max(2 MB, 1 % of the memory size), the least-squares slope is
    positive, at most 30 % of the steps went down, at least 3 steps went up, and no single step
    makes more than half of the rise (one late jump, such as a cache filled once, is not a leak).
    """
    n = len(history)
    if n < 8:
        return False
    # Cheap test first: most invocations see flat memory and stop here.
    rise = history[-1] - min(history[: n // 2])
    threshold = max(2.0, (memory_limit_mb or 0) * 0.01)
    if rise < threshold:
        return False
    steps = [b - a for a, b in zip(history, history[1:])]
    if max(steps) > 0.5 * rise:
        return False
    if sum(1 for d in steps if d < 0) > 0.3 * len(steps):
        return False
    if sum(1 for d in steps if d > 0) < 3:
        return False
    mean_x = (n - 1) / 2.0
    mean_y = sum(history) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(history))
    return num > 0

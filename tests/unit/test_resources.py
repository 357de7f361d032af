"""_resources: /proc/net/dev parsing, the sampler on this Linux machine, the leak signal."""

from __future__ import annotations

import gc
import os
import sys
import threading

import pytest

from lambdascope._resources import Sampler, leak_suspected, parse_net_dev

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/proc/self/status"),
    reason="needs Linux /proc",
)

NET_DEV = b"\n".join(
    [
        b"Inter-|   Receive                                                |  Transmit",
        b" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        b"errs drop fifo colls carrier compressed",
        b"    lo:   67802     282    0    0    0     0          0         0    67802     282    "
        b"0    0    0     0       0          0",
        b"  eth0: 97053097    3128    0    0    0     0          0         0   213009    1861    "
        b"0    0    0     0       0          0",
        b"vinternal_1:1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0",
        b"  ifb0:       0       0    0    0    0     0          0         0        0       0    "
        b"0    0    0     0       0          0",
        b"",
    ]
)


# -- parse_net_dev ----------------------------------------------------------------------------


def test_parse_net_dev_sums_all_but_loopback() -> None:
    assert parse_net_dev(NET_DEV) == (97053097 + 1000, 213009 + 2000)


def test_parse_net_dev_only_loopback_is_zero() -> None:
    head = b"".join(NET_DEV.splitlines(keepends=True)[:3])
    assert parse_net_dev(head) == (0, 0)


@pytest.mark.parametrize("raw", [b"", b"header only\n", b"a\nb\n\n"])
def test_parse_net_dev_tolerates_short_input(raw: bytes) -> None:
    assert parse_net_dev(raw) == (0, 0)


def test_parse_net_dev_skips_a_truncated_last_line() -> None:
    assert parse_net_dev(NET_DEV + b"  eth9:  12345  67") == (97053097 + 1000, 213009 + 2000)


def test_parse_net_dev_skips_header_lines() -> None:
    """The two header lines contain '|' but no ':'; they must never be counted."""
    raw = b"x: 1 2 3 4 5 6 7 8 9\ny: 1 2 3 4 5 6 7 8 9\n  eth0: 5 0 0 0 0 0 0 0 7\n"
    assert parse_net_dev(raw) == (5, 7)


@linux_only
def test_parse_net_dev_reads_this_machine() -> None:
    with open("/proc/net/dev", "rb") as fh:
        rx, tx = parse_net_dev(fh.read())
    assert rx >= 0 and tx >= 0


# -- Sampler ----------------------------------------------------------------------------------


@pytest.fixture
def sampler() -> Sampler:
    s = Sampler()
    yield s
    s.close()


@linux_only
def test_sampler_figures_are_sane(sampler: Sampler) -> None:
    start = sampler.start()
    sum(i * i for i in range(200_000))  # some CPU
    out = sampler.end(start, 1024)
    assert out["rss_start_mb"] > 0
    assert out["rss_end_mb"] > 0
    assert out["rss_peak_mb"] >= out["rss_end_mb"]
    assert out["rss_peak_mb"] >= out["rss_start_mb"]
    assert out["threads"] >= 1
    assert out["threads"] >= threading.active_count()
    assert out["open_fds"] >= 3
    assert out["cpu_user_ms"] >= 0 and out["cpu_system_ms"] >= 0
    assert out["cpu_user_ms"] + out["cpu_system_ms"] > 0
    assert out["net_rx_bytes"] >= 0 and out["net_tx_bytes"] >= 0
    assert out["tmp_used_mb"] >= 0
    assert out["memory_used_pct"] == pytest.approx(out["rss_peak_mb"] / 1024 * 100, abs=0.01)


@linux_only
def test_sampler_keys(sampler: Sampler) -> None:
    out = sampler.end(sampler.start(), None)
    assert set(out) == {
        "rss_start_mb", "rss_end_mb", "rss_peak_mb", "memory_used_pct", "cpu_user_ms",
        "cpu_system_ms", "net_rx_bytes", "net_tx_bytes", "tmp_used_mb", "open_fds", "threads",
        "sandbox_memory_mb", "sandbox_memory_peak_mb",
    }  # fmt: skip


@linux_only
@pytest.mark.parametrize("limit", [None, 0])
def test_memory_used_pct_needs_a_limit(sampler: Sampler, limit: int | None) -> None:
    assert sampler.end(sampler.start(), limit)["memory_used_pct"] is None


@linux_only
@pytest.mark.parametrize("limit", [128, 512, 10_240])
def test_memory_used_pct_against_given_limit(sampler: Sampler, limit: int) -> None:
    out = sampler.end(sampler.start(), limit)
    assert out["memory_used_pct"] == pytest.approx(out["rss_peak_mb"] / limit * 100, abs=0.01)


@linux_only
def test_open_fds_counts_descriptors_opened_during_the_invocation(sampler: Sampler) -> None:
    deltas = []
    for _ in range(3):  # another thread may open or close a descriptor meanwhile: retry
        before = sampler.end(sampler.start(), None)["open_fds"]
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
        try:
            after = sampler.end(sampler.start(), None)["open_fds"]
        finally:
            for fd in fds:
                os.close(fd)
        deltas.append(after - before)
        if deltas[-1] == 5:
            break
    assert deltas[-1] == 5, deltas


@linux_only
def test_threads_counts_a_running_thread(sampler: Sampler) -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        during = sampler.end(sampler.start(), None)["threads"]
        python_threads = threading.active_count()
    finally:
        stop.set()
        t.join()
    assert during >= python_threads >= 2


@linux_only
def test_peak_is_per_invocation(sampler: Sampler) -> None:
    """GIVEN ~50 MB allocated and freed inside the window THEN the peak shows it, the end not."""
    gc.collect()
    start = sampler.start()
    if not start.hwm_reset:
        pytest.skip("this kernel refuses to reset VmHWM (/proc/self/clear_refs)")
    block = b"\x01" * (50 * 1024 * 1024)  # written, so resident
    assert len(block) == 50 * 1024 * 1024
    del block  # a large block goes back to the OS at once
    out = sampler.end(start, 1024)
    assert out["rss_peak_mb"] - out["rss_start_mb"] >= 45
    assert out["rss_end_mb"] - out["rss_start_mb"] < 20
    assert out["rss_peak_mb"] - out["rss_end_mb"] >= 30

    # The next window does not inherit that peak.
    out2 = sampler.end(sampler.start(), 1024)
    assert out2["rss_peak_mb"] - out2["rss_end_mb"] < 20


@linux_only
def test_close_is_idempotent() -> None:
    s = Sampler()
    s.close()
    s.close()


def test_fallback_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off Linux (no /proc) the sampler still answers, through psutil and threading."""
    s = Sampler()
    s.close()
    s.linux = False
    out = s.end(s.start(), 256)
    assert out["rss_start_mb"] > 0 and out["rss_end_mb"] > 0
    assert out["rss_peak_mb"] >= out["rss_end_mb"]
    assert out["threads"] >= 1
    assert out["memory_used_pct"] is not None
    assert out["open_fds"] is None


# -- leak_suspected --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "limit", "expected"),
    [
        pytest.param([100.0 + i for i in range(10)], 128, True, id="steady-rise-1mb"),
        pytest.param([100.0 + 0.5 * i for i in range(30)], 128, True, id="slow-steady-rise"),
        pytest.param([100.0 + i for i in range(8)], 128, True, id="rise-8-samples"),
        pytest.param(
            [100, 101, 101, 102, 103, 103, 104, 105, 105, 106], 128, True, id="rise-with-plateaus"
        ),
        pytest.param(
            [100, 102, 101.5, 103, 104, 103.8, 105, 106, 107, 108], None, True,
            id="rise-with-dips-no-limit",
        ),
        pytest.param([100.0] * 10, 128, False, id="flat"),
        pytest.param([100.0] * 30, 128, False, id="flat-long"),
        pytest.param(
            [100, 103, 99, 102, 100, 103, 99, 102, 100, 101], 128, False, id="noisy"
        ),
        pytest.param([100.0 + i for i in range(7)], 128, False, id="short-7"),
        pytest.param([], 128, False, id="empty"),
        pytest.param([100.0 + 0.1 * i for i in range(10)], 128, False, id="rise-below-2mb"),
        pytest.param([100.0 + i for i in range(10)], 10_240, False, id="rise-below-1pct-of-10gb"),
        pytest.param([100.0 - i for i in range(10)], 128, False, id="falling"),
        pytest.param([100, 100, 100, 100, 100, 100, 100, 100, 100, 140], 128, False,
                     id="single-late-jump"),
        pytest.param([100, 100, 100, 100, 100, 100, 100, 100, 120, 140], 128, False,
                     id="two-late-jumps"),
        pytest.param([100, 100, 100, 100, 100, 120, 120, 120, 120, 120], 128, False,
                     id="one-step-then-flat"),
        pytest.param([100, 110, 100, 110, 100, 110, 100, 110, 100, 112], 128, False,
                     id="sawtooth"),
    ],
)  # fmt: skip
def test_leak_suspected(history: list[float], limit: float | None, expected: bool) -> None:
    assert leak_suspected(history, limit) is expected

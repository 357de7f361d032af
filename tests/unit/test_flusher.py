"""The after-response flusher outside the sandbox tests: the thread mode (Managed Instances) and
the SIGTERM handler's manners."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import lambdascope
from lambdascope import _state
from lambdascope._extension import Flusher
from lambdascope.testing import capture_reports, fake_context


def test_thread_mode_delivers_off_the_callers_path(monkeypatch: Any) -> None:
    flusher = Flusher("thread")
    flusher.start_thread()

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        return "ok"

    with capture_reports() as reports:
        _state.S.flusher, _state.S.flusher_chosen = flusher, True
        try:
            assert handler({}, fake_context()) == "ok"
            give_up = time.monotonic() + 5
            while not reports and time.monotonic() < give_up:
                time.sleep(0.01)
        finally:
            _state.S.flusher = None
    assert len(reports) == 1


def test_sigterm_handler_of_the_user_is_still_called() -> None:
    code = textwrap.dedent(
        """
        import os, signal, sys
        from lambdascope._extension import Flusher, install_sigterm
        called = []
        signal.signal(signal.SIGTERM, lambda s, f: called.append(s))
        install_sigterm(Flusher("extension"))
        os.kill(os.getpid(), signal.SIGTERM)
        print("user handler called" if called == [signal.SIGTERM] else "not called")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "user handler called", out.stderr


def test_sigterm_without_a_user_handler_still_ends_the_process() -> None:
    code = textwrap.dedent(
        """
        import os, signal, time
        from lambdascope._extension import Flusher, install_sigterm
        install_sigterm(Flusher("extension"))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("still alive")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == -signal.SIGTERM and "still alive" not in out.stdout


def test_ignored_sigterm_stays_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        from lambdascope._extension import install_sigterm

        install_sigterm(Flusher("extension"))
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)

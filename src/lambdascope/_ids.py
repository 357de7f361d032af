"""Trace and span ids: random, non-zero, re-seeded after fork and SnapStart restore.

A sandbox restored from a SnapStart snapshot resumes with the memory of the process that was
snapshotted, random generator state included. Without re-seeding, every sandbox restored from
one snapshot would produce the same sequence of ids.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import random

_rng: random.Random | None = None  # made with the first id: ``import lambdascope`` needs none


def _generator() -> random.Random:
    global _rng
    if _rng is None:
        import random

        _rng = random.Random(os.urandom(32))
    return _rng


def reseed() -> None:
    """Seed our generator, and the global one the OpenTelemetry SDK draws from, afresh."""
    if _rng is not None:
        _rng.seed(os.urandom(32))
    if "random" in sys.modules:  # a module never imported holds no state to repeat
        sys.modules["random"].seed(os.urandom(32))


def new_trace_id() -> str:
    rng = _rng or _generator()
    value = rng.getrandbits(128)
    while not value:  # pragma: no cover - one chance in 2**128
        value = rng.getrandbits(128)
    return f"{value:032x}"


def new_span_id() -> str:
    rng = _rng or _generator()
    value = rng.getrandbits(64)
    while not value:  # pragma: no cover
        value = rng.getrandbits(64)
    return f"{value:016x}"


def random_fraction() -> float:
    return (_rng or _generator()).random()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reseed)

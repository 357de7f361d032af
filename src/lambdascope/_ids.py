"""Trace and span ids: random, non-zero, re-seeded after fork and SnapStart restore.

A sandbox restored from a SnapStart snapshot resumes with the memory of the process that was
snapshotted, random generator state included. Without re-seeding, every sandbox restored from
one snapshot would produce the same sequence of ids.
"""

from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(32))


def reseed() -> None:
    """Seed our generator, and the global one the OpenTelemetry SDK draws from, afresh."""
    _rng.seed(os.urandom(32))
    random.seed(os.urandom(32))


def new_trace_id() -> str:
    value = _rng.getrandbits(128)
    while not value:  # pragma: no cover - one chance in 2**128
        value = _rng.getrandbits(128)
    return f"{value:032x}"


def new_span_id() -> str:
    value = _rng.getrandbits(64)
    while not value:  # pragma: no cover
        value = _rng.getrandbits(64)
    return f"{value:016x}"


def random_fraction() -> float:
    return _rng.random()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reseed)

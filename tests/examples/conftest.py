"""Fixtures of the example tests: the examples' local cloud (``examples/devstack.py``: moto and
the payment service, in a process of their own, as the demo starts them) once per session, and
a factory of example functions run under ``awslambdaric`` (:mod:`examples_harness`)."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from examples_harness import Function, Stack  # noqa: E402

#: How long the payment service takes to answer a ``tok_slow`` charge in the tests.
SLOW_PAYMENT_S = 2.5


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No huge image here: the out-of-memory kill is the runner's, tested end to end.
    running = Stack(tmp_path_factory.mktemp("devstack"), SLOW_PAYMENT_S).start()
    yield running
    running.stop()


@pytest.fixture
def function(stack: Stack, tmp_path: pathlib.Path) -> Iterator[Callable[..., Function]]:
    """Factory: ``function(example, "module.handler", name, memory_mb=256, env=None)``; every
    sandbox is stopped at teardown, and the agent must have swallowed no error in any."""
    made: list[Function] = []

    def make(example: str, handler: str, name: str, **kwargs: Any) -> Function:
        fn = Function(stack, example, handler, name, tmp_path / f"{name}-{len(made)}", **kwargs)
        made.append(fn)
        return fn

    yield make
    for fn in made:
        fn.stop()

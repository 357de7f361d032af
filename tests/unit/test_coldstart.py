"""_coldstart.verdict: the full table of first/not first x init type x gap after init."""

from __future__ import annotations

import pytest

from lambdascope._coldstart import (
    INIT_TYPES,
    PROACTIVE_GAP_MS,
    Verdict,
    normalise_init_type,
    verdict,
)

SHORT_GAPS = [None, 0.0, 250.0, 9_999.9, 10_000.0]  # unknown, or at most 10 s
LONG_GAPS = [10_000.1, 15_000.0, 3_600_000.0]  # more than 10 s
ALL_GAPS = SHORT_GAPS + LONG_GAPS
NOT_ON_DEMAND = ["provisioned-concurrency", "snap-start", "lambda-managed-instances"]


def test_proactive_gap_is_ten_seconds() -> None:
    assert PROACTIVE_GAP_MS == 10_000.0


def test_init_types_are_the_contracts() -> None:
    assert set(INIT_TYPES) == {"on-demand", *NOT_ON_DEMAND}


@pytest.mark.parametrize("gap_ms", SHORT_GAPS)
def test_first_on_demand_within_10s_is_cold_start(gap_ms: float | None) -> None:
    assert verdict(True, "on-demand", gap_ms) == Verdict(True, False, "on-demand")


@pytest.mark.parametrize("gap_ms", LONG_GAPS)
def test_first_on_demand_after_10s_is_proactive_init(gap_ms: float) -> None:
    assert verdict(True, "on-demand", gap_ms) == Verdict(False, True, "on-demand")


@pytest.mark.parametrize("gap_ms", ALL_GAPS)
@pytest.mark.parametrize("init_type", NOT_ON_DEMAND)
def test_first_of_other_init_types_is_never_cold_nor_proactive(
    init_type: str, gap_ms: float | None
) -> None:
    """Provisioned concurrency, SnapStart and managed instances put no init in a request's path."""
    assert verdict(True, init_type, gap_ms) == Verdict(False, False, init_type)


@pytest.mark.parametrize("gap_ms", ALL_GAPS)
@pytest.mark.parametrize("init_type", INIT_TYPES)
def test_warm_invocation_is_neither(init_type: str, gap_ms: float | None) -> None:
    assert verdict(False, init_type, gap_ms) == Verdict(False, False, init_type)


def test_unknown_future_init_type_is_not_cold() -> None:
    assert verdict(True, "some-new-type", 0.0) == Verdict(False, False, "some-new-type")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "on-demand"),
        ("", "on-demand"),
        ("  ", "on-demand"),
        ("on-demand", "on-demand"),
        ("provisioned-concurrency", "provisioned-concurrency"),
        (" Snap-Start\n", "snap-start"),
        ("lambda-managed-instances", "lambda-managed-instances"),
    ],
)
def test_normalise_init_type(raw: str | None, expected: str) -> None:
    assert normalise_init_type(raw) == expected

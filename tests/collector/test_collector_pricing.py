"""Lambda's billing rule (SPEC section 7) and the default on-demand prices."""

from __future__ import annotations

import pytest

from lambdascope.collector import pricing
from lambdascope.collector.pricing import Prices, billed_ms, cost_usd


class TestBilledDuration:
    """The duration rounded up to 1 ms, plus the init of an on-demand cold start."""

    @pytest.mark.parametrize(
        ("duration", "init", "init_type", "cold", "billed"),
        [
            (12.3, None, "on-demand", False, 13),
            (12.0, None, "on-demand", False, 12),
            (0.001, None, "on-demand", False, 1),
            (1.0001, None, "on-demand", False, 2),
            (2.0000000000000004, None, "on-demand", False, 2),  # float noise, not 1 ms more
            (12.3, 250.1, "on-demand", True, 13 + 251),  # cold start: init billed
            (12.3, 250.1, None, True, 13 + 251),  # init type unknown: on-demand
            (12.3, 250.1, "on-demand", False, 13),  # init figure but warm: not billed
            (12.3, 250.1, "provisioned-concurrency", True, 13),  # billed separately
            (12.3, 250.1, "snap-start", True, 13),
            (12.3, 250.1, "lambda-managed-instances", True, 13),
            (None, None, "on-demand", False, 0),  # a crashed invocation: no duration
            (None, 300.0, "on-demand", True, 300),
            (0.0, None, "on-demand", False, 0),
        ],
    )
    def test_table(self, duration: float | None, init: float | None, init_type: str | None,
                   cold: bool, billed: int) -> None:
        assert billed_ms(duration, init, init_type, cold) == billed

    def test_positional_signature(self) -> None:
        assert billed_ms(99.5, 800.2, "on-demand", True) == 100 + 801


class TestPrices:
    """AWS's published on-demand prices, overridable."""

    def test_published_defaults(self) -> None:
        prices = Prices()
        assert prices.per_gb_s("x86_64") == 0.0000166667
        assert prices.per_gb_s("arm64") == 0.0000133334
        assert prices.per_gb_s(None) == 0.0000166667
        assert prices.request * 1_000_000 == pytest.approx(0.20)
        assert pricing.REQUEST == 0.0000002

    def test_one_price_for_every_architecture(self) -> None:
        prices = Prices(gb_s=0.00001, request=0.0000003)
        assert prices.per_gb_s("arm64") == prices.per_gb_s("x86_64") == 0.00001
        assert prices.request == 0.0000003

    @pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "0.1", True])
    def test_bad_prices_are_refused(self, bad: object) -> None:
        with pytest.raises(ValueError):
            Prices(gb_s=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Prices(request=bad)  # type: ignore[arg-type]


class TestCost:
    """The cost of an invocation, computed by hand."""

    def test_hand_computed_x86(self) -> None:
        # 512 MB for 101 ms (100.2 rounded up): 0.5 GB x 0.101 s = 0.0505 GB-s.
        billed = billed_ms(100.2)
        assert billed == 101
        expected = 0.0505 * 0.0000166667 + 0.0000002
        assert cost_usd(billed, 512, "x86_64") == pytest.approx(expected, rel=1e-12)

    def test_hand_computed_arm_cold_start(self) -> None:
        # 1024 MB arm64, 40.5 ms + 350.2 ms init: 41 + 351 = 392 ms -> 0.392 GB-s.
        billed = billed_ms(40.5, 350.2, "on-demand", True)
        assert billed == 392
        expected = 0.392 * 0.0000133334 + 0.0000002
        assert cost_usd(billed, 1024, "arm64") == pytest.approx(expected, rel=1e-12)

    def test_overridden_prices(self) -> None:
        prices = Prices(gb_s=0.00002, request=0.000001)
        assert cost_usd(1000, 2048, "arm64", prices) == pytest.approx(2 * 0.00002 + 0.000001)

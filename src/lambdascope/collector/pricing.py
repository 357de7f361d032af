"""Lambda on-demand prices and the billing rule (SPEC section 7).

Lambda bills an invocation for its duration rounded up to the next millisecond, times the
configured memory in GB, at the price per GB-second of the function's architecture, plus a
price per request. Since 1 August 2025 the init phase of an on-demand sandbox is billed the
same way, so a cold start (or a proactive initialisation, whose init Lambda also ran for the
function) adds its init duration, rounded up to 1 ms, to the billed duration. Provisioned
concurrency and SnapStart bill their init separately and are not counted here.

The default prices are AWS's published on-demand prices for the first pricing tier in
us-east-1 (https://aws.amazon.com/lambda/pricing/): $0.0000166667 per GB-second on x86_64,
$0.0000133334 on arm64, $0.20 per million requests. Other regions, volume tiers and Savings
Plans differ: ``Prices`` takes overrides (``lambdascope stats --price-gb-s X --price-request
Y``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ARM64_GB_S",
    "REQUEST",
    "X86_64_GB_S",
    "Prices",
    "billed_ms",
    "cost_usd",
]

#: US dollars per GB-second, x86_64 (us-east-1, first tier).
X86_64_GB_S = 0.0000166667
#: US dollars per GB-second, arm64 (us-east-1, first tier).
ARM64_GB_S = 0.0000133334
#: US dollars per request ($0.20 per million).
REQUEST = 0.0000002

#: init types whose init phase is billed with the invocation that waited for it.
_ON_DEMAND = (None, "", "on-demand")


@dataclass(frozen=True)
class Prices:
    """Prices in US dollars. ``gb_s``, when given, applies to every architecture (the
    ``--price-gb-s`` flag); otherwise each architecture has its own."""

    gb_s: float | None = None
    request: float = REQUEST
    gb_s_x86_64: float = X86_64_GB_S
    gb_s_arm64: float = ARM64_GB_S

    def __post_init__(self) -> None:
        for name in ("gb_s", "request", "gb_s_x86_64", "gb_s_arm64"):
            value = getattr(self, name)
            if value is None and name == "gb_s":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"price {name} must be a finite number >= 0, not {value!r}")

    def per_gb_s(self, architecture: str | None) -> float:
        """The price of a GB-second on ``architecture`` (x86_64 when unknown)."""
        if self.gb_s is not None:
            return self.gb_s
        return self.gb_s_arm64 if architecture == "arm64" else self.gb_s_x86_64


def _ceil_ms(ms: float) -> int:
    # Reports carry durations to the microsecond; float noise such as 2.0000000000000004
    # must not bill a whole extra millisecond.
    return math.ceil(ms - 1e-7)


def billed_ms(
    duration_ms: float | None,
    init_ms: float | None = None,
    init_type: str | None = "on-demand",
    cold_or_proactive: bool = False,
) -> int:
    """The billed duration of one invocation, ms: its duration rounded up to 1 ms, plus its
    init duration rounded up to 1 ms when it is an on-demand cold start or proactive init.

    >>> billed_ms(12.3)
    13
    >>> billed_ms(12.3, init_ms=250.1, init_type="on-demand", cold_or_proactive=True)
    264
    >>> billed_ms(12.3, init_ms=250.1, init_type="provisioned-concurrency",
    ...           cold_or_proactive=True)
    13
    """
    billed = _ceil_ms(duration_ms) if duration_ms and duration_ms > 0 else 0
    if cold_or_proactive and init_ms and init_ms > 0 and init_type in _ON_DEMAND:
        billed += _ceil_ms(init_ms)
    return billed


def cost_usd(
    billed: float, memory_mb: float | None, architecture: str | None,
    prices: Prices | None = None,
) -> float:
    """The cost of one invocation: billed ms x memory GB x price per GB-s, plus the request."""
    prices = prices or Prices()
    gb_s = billed / 1000.0 * (memory_mb or 0) / 1024.0
    return gb_s * prices.per_gb_s(architecture) + prices.request

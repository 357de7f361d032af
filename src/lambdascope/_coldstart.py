"""The cold-start verdict, as a pure function of what the process knows at its first call.

Only an on-demand sandbox's first invocation is a cold start a caller waited for:

* provisioned-concurrency and SnapStart sandboxes are initialised before any request arrives;
* a Lambda Managed Instances worker process is started by asynchronous scaling, never in the
  path of a request;
* an on-demand sandbox whose first invocation arrives more than ``PROACTIVE_GAP_MS`` after init
  finished was initialised proactively by Lambda: nobody waited for that init.
"""

from __future__ import annotations

PROACTIVE_GAP_MS = 10_000.0

ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"
SNAP_START = "snap-start"
MANAGED_INSTANCES = "lambda-managed-instances"
INIT_TYPES = (ON_DEMAND, PROVISIONED, SNAP_START, MANAGED_INSTANCES)


class Verdict:
    """The verdict on one invocation (a plain class: cheaper to import than a NamedTuple)."""

    __slots__ = ("cold_start", "init_type", "proactive_init")

    def __init__(self, cold_start: bool, proactive_init: bool, init_type: str) -> None:
        self.cold_start = cold_start
        self.proactive_init = proactive_init
        self.init_type = init_type

    def __eq__(self, other: object) -> bool:
        if isinstance(other, tuple):
            return (self.cold_start, self.proactive_init, self.init_type) == other
        if isinstance(other, Verdict):
            return (self.cold_start, self.proactive_init, self.init_type) == (
                other.cold_start, other.proactive_init, other.init_type
            )
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.cold_start, self.proactive_init, self.init_type))

    def __repr__(self) -> str:
        return (
            f"Verdict(cold_start={self.cold_start}, proactive_init={self.proactive_init}, "
            f"init_type={self.init_type!r})"
        )


def normalise_init_type(raw: str | None) -> str:
    """``AWS_LAMBDA_INITIALIZATION_TYPE`` as reported; unset (outside Lambda) is on-demand."""
    text = (raw or "").strip().lower()
    return text or ON_DEMAND


_WARM: dict[str, Verdict] = {}  # verdicts are immutable: one per init type for warm invocations


def verdict(first_invocation: bool, init_type: str, gap_ms: float | None) -> Verdict:
    """Decide cold start and proactive initialisation.

    ``gap_ms`` is the time from the end of init to the start of the first invocation
    (``None`` when unknown).
    """
    if not first_invocation:
        warm = _WARM.get(init_type)
        if warm is None:
            warm = _WARM[init_type] = Verdict(False, False, init_type)
        return warm
    if init_type != ON_DEMAND:
        # provisioned-concurrency, snap-start, lambda-managed-instances, or a type Lambda adds
        # later: none of them puts init in the path of a request.
        return Verdict(False, False, init_type)
    if gap_ms is not None and gap_ms > PROACTIVE_GAP_MS:
        return Verdict(False, True, init_type)
    return Verdict(True, False, init_type)

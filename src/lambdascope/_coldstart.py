"""The cold-start verdict, as a pure function of what the process knows at its first call.

Only an on-demand sandbox's first invocation is a cold start a caller waited for:

* provisioned-concurrency and SnapStart sandboxes are initialised before any request arrives;
* a Lambda Managed Instances worker process is started by asynchronous scaling, never in the
  path of a request;
* an on-demand sandbox whose first invocation arrives more than ``PROACTIVE_GAP_MS`` after init
  finished was initialised proactively by Lambda: nobody waited for that init.
"""

from __future__ import annotations

from typing import NamedTuple

PROACTIVE_GAP_MS = 10_000.0

ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"
SNAP_START = "snap-start"
MANAGED_INSTANCES = "lambda-managed-instances"
INIT_TYPES = (ON_DEMAND, PROVISIONED, SNAP_START, MANAGED_INSTANCES)


class Verdict(NamedTuple):
    cold_start: bool
    proactive_init: bool
    init_type: str


def normalise_init_type(raw: str | None) -> str:
    """``AWS_LAMBDA_INITIALIZATION_TYPE`` as reported; unset (outside Lambda) is on-demand."""
    text = (raw or "").strip().lower()
    return text or ON_DEMAND


def verdict(first_invocation: bool, init_type: str, gap_ms: float | None) -> Verdict:
    """Decide cold start and proactive initialisation.

    ``gap_ms`` is the time from the end of init to the start of the first invocation
    (``None`` when unknown).
    """
    if not first_invocation:
        return Verdict(False, False, init_type)
    if init_type != ON_DEMAND:
        # provisioned-concurrency, snap-start, lambda-managed-instances, or a type Lambda adds
        # later: none of them puts init in the path of a request.
        return Verdict(False, False, init_type)
    if gap_ms is not None and gap_ms > PROACTIVE_GAP_MS:
        return Verdict(False, True, init_type)
    return Verdict(True, False, init_type)

"""Handlers for benchmarks/after_response.py: the same trivial handler, monitored and bare.

The bare ones live in their own modules, which never import lambdascope (:mod:`bench_bare`,
and :mod:`bench_bare_ext` with an idle internal extension as a control for the emulator's work).
"""

import lambdascope


@lambdascope.monitor
def monitored(event, context):
    return {"ok": True}


def unmonitored(event, context):
    """The control: the agent's extension is registered (this module decorates ``monitored``)
    but idle, since this handler is not monitored."""
    return {"ok": True}

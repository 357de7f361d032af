"""Handlers for benchmarks/after_response.py: the same trivial handler, bare and monitored."""

import lambdascope


def bare(event, context):
    return {"ok": True}


@lambdascope.monitor
def monitored(event, context):
    return {"ok": True}

"""A module with a monitored handler and a plain one; the sandbox is configured with the plain."""

import lambdascope


@lambdascope.monitor
def monitored(event, context):
    return {"monitored": True}


def plain(event, context):
    return {"monitored": False}

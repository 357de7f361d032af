"""A bare handler in a module that does not import lambdascope."""


def bare(event, context):
    return {"ok": True}

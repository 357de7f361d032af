"""Its import fails in the sandbox (an init error): a dependency that is not installed."""

import lambdascope_tests_no_such_dependency  # noqa: F401


def handler(event, context):
    return "never"

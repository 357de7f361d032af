"""Run handlers the way AWS Lambda does, on one machine, without an AWS account.

:mod:`lambdascope.runner.runtime_api` holds a local Lambda Runtime API (and Extensions API)
emulator and :class:`~lambdascope.runner.runtime_api.Sandbox`, which starts one process per
sandbox under the real ``awslambdaric`` runtime interface client. The ``local`` extra builds
the ``lambdascope invoke`` runner on top of them.
"""

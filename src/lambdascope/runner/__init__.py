"""Run handlers the way AWS Lambda does, on one machine, without an AWS account.

:mod:`lambdascope.runner.runtime_api` holds a local Lambda Runtime API (and Extensions API)
emulator and :class:`~lambdascope.runner.runtime_api.Sandbox`, which starts one process per
sandbox under the real ``awslambdaric`` runtime interface client. The ``local`` extra builds
the ``lambdascope invoke`` runner on top of them: :mod:`~lambdascope.runner.invoke` (Lambda's
rules: cold and warm sandboxes, concurrency, freeze, deadline and memory enforced),
:mod:`~lambdascope.runner.receiver` (reports into the embedded store),
:mod:`~lambdascope.runner.target` (``FILE_OR_MODULE:FUNC``) and
:mod:`~lambdascope.runner.samples` (the bundled sample events). See docs/runner.md.
"""

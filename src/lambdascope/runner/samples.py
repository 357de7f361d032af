"""The sample events bundled with the runner (``runner/events/*.json``) and the reading of
``invoke --event``: a JSON file, ``-`` for standard input, or the name of a sample.

Each sample is shaped as AWS documents the event of its source, so the agent's trigger detection
(:mod:`lambdascope._triggers`) classifies it as that source, and a handler written for the real
event can be tried on it unchanged.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from typing import IO, Any

__all__ = ["SAMPLES", "EventError", "load_sample", "read_event", "sample_names"]

#: Name → (the trigger type the agent reports for it, a one-line description).
SAMPLES: dict[str, tuple[str, str]] = {
    "api_gateway_v1": (
        "api_gateway",
        "API Gateway REST API (proxy integration, payload 1.0): GET /orders/{id}",
    ),
    "api_gateway_v2": (
        "api_gateway_v2",
        "API Gateway HTTP API (payload 2.0): POST /orders with a JSON body",
    ),
    "alb": ("alb", "Application Load Balancer target: GET /health"),
    "function_url": ("function_url", "Lambda function URL: GET /reports/daily?format=csv"),
    "sqs": ("sqs", "SQS: a batch of two messages from the queue orders-queue"),
    "sns": ("sns", "SNS: one notification from the topic order-events"),
    "s3": ("s3", "S3: ObjectCreated:Put of images/cat.png in uploads-bucket"),
    "dynamodb": ("dynamodb", "DynamoDB Streams: an INSERT and a MODIFY of the table orders"),
    "kinesis": ("kinesis", "Kinesis Data Streams: two records of the stream clickstream"),
    "eventbridge": ("eventbridge", "EventBridge: an 'Order Placed' event from com.example.orders"),
    "schedule": ("schedule", "EventBridge Scheduler / scheduled rule: the rule nightly-report"),
    "cloudwatch_logs": (
        "cloudwatch_logs",
        "CloudWatch Logs subscription: two log events, gzipped and base64-encoded",
    ),
}


class EventError(ValueError):
    """``--event`` names no readable JSON event (one line for the user)."""


def sample_names() -> list[str]:
    return list(SAMPLES)


def _sample_file(name: str) -> Any:
    return resources.files("lambdascope.runner").joinpath("events", f"{name}.json")


def load_sample(name: str) -> Any:
    """The bundled sample event ``name`` (see :data:`SAMPLES`), parsed."""
    if name not in SAMPLES:
        raise EventError(f"no sample event named {name!r} (lambdascope events lists them)")
    return _parse(_sample_file(name).read_text("utf-8"), f"the sample event {name}")


def sample_text(name: str) -> str:
    """The JSON text of the sample ``name``, as bundled."""
    if name not in SAMPLES:
        raise EventError(f"no sample event named {name!r} (lambdascope events lists them)")
    return str(_sample_file(name).read_text("utf-8"))


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def read_event(spec: str | None, stdin: IO[str] | None = None) -> Any:
    """The event ``--event`` names: ``None`` → ``{}``; ``-`` → JSON from standard input; an
    existing file → its JSON; text starting with ``{`` or ``[`` → that JSON; otherwise the
    name of a bundled sample (``.json`` optional).
    Raises :class:`EventError` with one line when it cannot."""
    if spec is None:
        return {}
    if spec == "-":
        stream = stdin if stdin is not None else sys.stdin
        if stream is None:
            raise EventError("--event -: there is no standard input to read")
        try:
            text = stream.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise EventError(f"--event -: cannot read standard input: {exc}") from None
        if not text.strip():
            raise EventError("--event -: standard input is empty (expected a JSON event)")
        return _parse(text, "the event on standard input")
    if os.path.isdir(spec):
        raise EventError(f"--event {spec}: is a directory, not a JSON file")
    if os.path.exists(spec):
        try:
            with open(spec, encoding="utf-8-sig") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise EventError(f"--event {spec}: cannot read it: {reason}") from None
        return _parse(text, f"--event {spec}")
    if spec.lstrip()[:1] in ("{", "["):  # the event itself, on the command line
        return _parse(spec, "the --event JSON")
    name = spec[:-5] if spec.endswith(".json") and os.sep not in spec else spec
    if name in SAMPLES:
        return load_sample(name)
    if os.sep in spec or "/" in spec or spec.endswith(".json"):
        raise EventError(f"--event {spec}: no such file")
    raise EventError(
        f"--event {spec}: no such file, and no sample event of that name "
        f"(the samples: {', '.join(SAMPLES)})"
    )

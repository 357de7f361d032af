"""What invoked the function, from the shape of the event (pure)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

BATCH_TYPES = frozenset(("sqs", "kinesis", "dynamodb"))

WARMUP_SOURCES = frozenset(("serverless-plugin-warmup", "lambda-warmer", "warmup"))


class Trigger:
    """What invoked the function (a plain class: cheaper to import than a NamedTuple)."""

    __slots__ = ("batch_size", "source", "type")

    def __init__(self, type: str, source: str | None, batch_size: int | None) -> None:  # noqa: A002
        self.type = type
        self.source = source
        self.batch_size = batch_size

    def __iter__(self) -> Any:
        return iter((self.type, self.source, self.batch_size))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Trigger, tuple)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return (
            f"Trigger(type={self.type!r}, source={self.source!r}, "
            f"batch_size={self.batch_size!r})"
        )


def _records(event: dict[str, Any]) -> Trigger | None:
    records = event.get("Records")
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        return None
    first = records[0]
    source = first.get("eventSource") or first.get("EventSource")
    n = len(records)
    if source == "aws:sqs":
        return Trigger("sqs", first.get("eventSourceARN"), n)
    if source == "aws:sns":
        sns = first.get("Sns") if isinstance(first.get("Sns"), dict) else {}
        return Trigger("sns", sns.get("TopicArn") or first.get("EventSubscriptionArn"), n)
    if source == "aws:s3":
        s3 = first.get("s3") if isinstance(first.get("s3"), dict) else {}
        bucket = s3.get("bucket") if isinstance(s3.get("bucket"), dict) else {}
        arn = bucket.get("arn") or (f"arn:aws:s3:::{bucket['name']}" if "name" in bucket else None)
        return Trigger("s3", arn, n)
    if source == "aws:dynamodb":
        return Trigger("dynamodb", first.get("eventSourceARN"), n)
    if source == "aws:kinesis":
        return Trigger("kinesis", first.get("eventSourceARN"), n)
    return None


def _http(event: dict[str, Any]) -> Trigger | None:
    ctx = event.get("requestContext")
    if not isinstance(ctx, dict):
        return None
    if isinstance(ctx.get("elb"), dict):
        return Trigger("alb", ctx["elb"].get("targetGroupArn"), None)
    if event.get("version") == "2.0" or isinstance(ctx.get("http"), dict):
        domain = str(ctx.get("domainName") or "")
        if ".lambda-url." in domain:
            return Trigger("function_url", domain.split(".", 1)[0] or None, None)
        route = event.get("routeKey") or ctx.get("routeKey")
        return Trigger("api_gateway_v2", str(route) if route else ctx.get("apiId"), None)
    if "httpMethod" in event or "resourcePath" in ctx:
        # The route: method and resource template ("GET /orders/{id}"), else the API id.
        method = event.get("httpMethod") or ctx.get("httpMethod")
        resource = event.get("resource") or ctx.get("resourcePath")
        route = f"{method} {resource}" if method and resource else None
        return Trigger("api_gateway", route or ctx.get("apiId"), None)
    return None


def detect(event: Any) -> Trigger:
    """Classify ``event`` as one of the contract's trigger types."""
    if not isinstance(event, dict):
        return Trigger("direct", None, None)
    found = _records(event) or _http(event)
    if found:
        return found
    if "awslogs" in event and isinstance(event["awslogs"], dict):
        return Trigger("cloudwatch_logs", None, None)
    source = event.get("source")
    if "detail-type" in event and isinstance(source, str):
        resources = event.get("resources")
        first = resources[0] if isinstance(resources, list) and resources else None
        if event.get("detail-type") == "Scheduled Event" and source == "aws.events":
            return Trigger("schedule", first, None)
        return Trigger("eventbridge", source, None)
    if (isinstance(source, str) and source in WARMUP_SOURCES) or event.get("warmer") is True:
        return Trigger("warmup", source if isinstance(source, str) else None, None)
    return Trigger("direct", None, None)


def batch_failures(trigger_type: str, result: Any) -> int:
    """Items a batch handler reported as failed (partial batch response)."""
    if trigger_type in BATCH_TYPES and isinstance(result, dict):
        failures = result.get("batchItemFailures")
        if isinstance(failures, list):
            return len(failures)
    return 0

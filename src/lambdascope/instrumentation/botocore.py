"""``botocore``: every AWS SDK call (boto3 clients and resources alike) is one client span named
``Service.Operation``, with the RPC attributes, the region, the request id, the HTTP status, the
retry count and the resource it touched. The HTTP requests botocore makes beneath are not counted
again (they only report their connection timing into this span).

Request and response payloads are never recorded. Secrets Manager, SSM Parameter Store and KMS
calls get no resource attributes beyond their identifiers, and DynamoDB expression attribute
values are never read.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from .._propagation import MAX_MESSAGE_ATTRIBUTES, xray_header
from . import _http, _spans, _suppress
from ._base import Instrumentor
from ._spans import traceparent

#: Services whose calls carry the trace context on to a consumer.
_CARRIERS = frozenset(("sqs", "sns", "events"))


def _s3(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    bucket = params.get("Bucket")
    if isinstance(bucket, str):
        attrs["aws.s3.bucket"] = bucket
    key = params.get("Key")
    if isinstance(key, str):
        attrs["aws.s3.key"] = key
    source = params.get("CopySource")
    if isinstance(source, str):
        attrs["aws.s3.copy_source"] = source.split("?", 1)[0]
    elif isinstance(source, dict) and "Bucket" in source:
        attrs["aws.s3.copy_source"] = f"{source.get('Bucket')}/{source.get('Key', '')}"
    upload = params.get("UploadId")
    if isinstance(upload, str):
        attrs["aws.s3.upload_id"] = upload


def _dynamodb(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    tables: list[str] = []
    name = params.get("TableName")
    if isinstance(name, str):
        tables.append(name)
    items = params.get("RequestItems")
    if isinstance(items, dict):
        tables.extend(str(t) for t in items)
    transact = params.get("TransactItems")
    if isinstance(transact, list):
        for item in transact:
            if isinstance(item, dict):
                for op in item.values():
                    if isinstance(op, dict) and isinstance(op.get("TableName"), str):
                        tables.append(op["TableName"])
    if tables:
        attrs["aws.dynamodb.table_names"] = list(dict.fromkeys(tables))
    for key, attr in (("IndexName", "aws.dynamodb.index_name"), ("Limit", "aws.dynamodb.limit"),
                      ("Select", "aws.dynamodb.select"),
                      ("ConsistentRead", "aws.dynamodb.consistent_read")):
        value = params.get(key)
        if isinstance(value, (str, int, bool)):
            attrs[attr] = value


def _sqs(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    url = params.get("QueueUrl")
    if isinstance(url, str):
        attrs["aws.sqs.queue_url"] = url
        attrs["messaging.system"] = "aws_sqs"
        attrs["messaging.destination.name"] = url.rstrip("/").rsplit("/", 1)[-1]
    name = params.get("QueueName")
    if isinstance(name, str):
        attrs["messaging.destination.name"] = name


def _sns(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    arn = params.get("TopicArn") or params.get("TargetArn")
    if isinstance(arn, str):
        attrs["aws.sns.topic.arn"] = arn
        attrs["messaging.system"] = "aws_sns"
        attrs["messaging.destination.name"] = arn.rsplit(":", 1)[-1]


def lambda_function_name(value: str) -> str:
    """The function's name from any form ``FunctionName`` takes: a name, ``name:qualifier``, a
    partial ARN (``123456789012:function:name``) or a full ARN, qualified or not."""
    if ":function:" in value:
        value = value.split(":function:", 1)[1]
    return value.split(":", 1)[0]


def _lambda(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    name = params.get("FunctionName")
    if isinstance(name, str):
        attrs["faas.invoked_name"] = lambda_function_name(name)
        attrs["faas.invoked_provider"] = "aws"
        if name.startswith("arn:"):
            attrs["aws.lambda.invoked_arn"] = name


def _kinesis(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    name = params.get("StreamName")
    arn = params.get("StreamARN")
    if isinstance(name, str):
        attrs["aws.kinesis.stream_name"] = name
    if isinstance(arn, str):
        attrs["aws.kinesis.stream_arn"] = arn
        attrs.setdefault("aws.kinesis.stream_name", arn.rsplit("/", 1)[-1])


def _sfn(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    for key, attr in (("stateMachineArn", "aws.step_functions.state_machine.arn"),
                      ("executionArn", "aws.step_functions.execution.arn"),
                      ("activityArn", "aws.step_functions.activity.arn")):
        value = params.get(key)
        if isinstance(value, str):
            attrs[attr] = value


def _events(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    buses: list[str] = []
    entries = params.get("Entries")
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict):
                buses.append(str(entry.get("EventBusName") or "default"))
    name = params.get("EventBusName") or params.get("Name")
    if isinstance(name, str):
        buses.append(name)
    if buses:
        unique = sorted(set(buses))
        attrs["aws.eventbridge.event_bus"] = unique[0] if len(unique) == 1 else unique


def _secrets(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    secret = params.get("SecretId")
    if isinstance(secret, str):
        attrs["aws.secretsmanager.secret.id"] = secret


def _ssm(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    name = params.get("Name")
    if isinstance(name, str):
        attrs["aws.ssm.parameter.name"] = name
    names = params.get("Names")
    if isinstance(names, list):
        attrs["aws.ssm.parameter.names"] = [str(n) for n in names[:20]]


def _kms(params: dict[str, Any], attrs: dict[str, Any]) -> None:
    key = params.get("KeyId")
    if isinstance(key, str):
        attrs["aws.kms.key_id"] = key


#: By botocore service name (``client.meta.service_model.service_name``).
EXTRACTORS = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "sns": _sns,
    "lambda": _lambda,
    "kinesis": _kinesis,
    "stepfunctions": _sfn,
    "events": _events,
    "secretsmanager": _secrets,
    "ssm": _ssm,
    "kms": _kms,
}


def _add_attribute(attributes: Any, value: str, shape: str) -> tuple[Any, bool]:
    """A copy of ``attributes`` with ``traceparent``; (attributes, False) when there is no room
    (the services take at most 10 message attributes) or the caller set one already."""
    attributes = dict(attributes) if isinstance(attributes, dict) else {}
    if "traceparent" in attributes:
        return attributes, True
    if len(attributes) >= MAX_MESSAGE_ATTRIBUTES:
        return attributes, False
    attributes["traceparent"] = {"DataType": "String", shape: value}
    return attributes, True


def _add_to_entries(entries: Any, value: str) -> tuple[list[Any], int]:
    """Copies of a batch's entries, each with ``traceparent``; and how many had no room."""
    out: list[Any] = []
    skipped = 0
    for entry in entries or []:
        if isinstance(entry, dict):
            entry = dict(entry)
            entry["MessageAttributes"], ok = _add_attribute(
                entry.get("MessageAttributes"), value, "StringValue"
            )
            skipped += not ok
        out.append(entry)
    return out, skipped


def inject(service: str, operation: str, params: Any, inv: Any, span_id: str) -> tuple[Any, int]:
    """``params`` with the trace context added where the operation carries it to a consumer.

    Returns the (copied, never mutated) parameters and how many messages had no room for it.
    """
    if not isinstance(params, dict):
        return params, 0
    value = traceparent(inv, span_id)
    skipped = 0
    if (service, operation) in (("sqs", "SendMessage"), ("sns", "Publish")):
        params = dict(params)
        params["MessageAttributes"], ok = _add_attribute(
            params.get("MessageAttributes"), value, "StringValue"
        )
        skipped += not ok
    elif service == "sqs" and operation == "SendMessageBatch":
        params = dict(params)
        params["Entries"], skipped = _add_to_entries(params.get("Entries"), value)
    elif service == "sns" and operation == "PublishBatch":
        params = dict(params)
        params["PublishBatchRequestEntries"], skipped = _add_to_entries(
            params.get("PublishBatchRequestEntries"), value
        )
    elif service == "events" and operation == "PutEvents":
        # EventBridge entries carry no message attributes: the X-Ray TraceHeader is their
        # trace context.
        header = xray_header(os.environ.get("_X_AMZN_TRACE_ID"), inv.trace_id, span_id,
                             inv.sampled)
        params = dict(params)
        params["Entries"] = [
            dict(entry, TraceHeader=header) if "TraceHeader" not in entry else entry
            for entry in params.get("Entries") or []
            if isinstance(entry, dict)
        ]
    return params, skipped


class BotocoreInstrumentor(Instrumentor):
    name = "botocore"
    modules = ("botocore.client",)

    def patch(self, module_name: str, module: ModuleType) -> None:
        self.wrap(module.BaseClient, "_make_api_call", self._api_call)

    def _api_call(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.enabled or _suppress.LEVEL.get() >= _suppress.ALL:
            return wrapped(*args, **kwargs)
        handle = None
        try:
            operation = args[0] if args else kwargs.get("operation_name")
            params = args[1] if len(args) > 1 else kwargs.get("api_params") or {}
            meta = instance.meta
            model = meta.service_model
            service_id = str(model.service_id)
            attrs: dict[str, Any] = {
                "rpc.system": "aws-api",
                "rpc.service": service_id,
                "rpc.method": operation,
                "cloud.region": meta.region_name,
            }
            extract = EXTRACTORS.get(model.service_name)
            if extract is not None and isinstance(params, dict):
                extract(params, attrs)
            handle = _spans.start(f"{service_id}.{operation}", attrs)
            if handle is not None:
                if model.service_name in _CARRIERS and _http.INJECT_W3C:
                    params, skipped = inject(
                        model.service_name, operation, params, handle[0], handle[1].span_id
                    )
                    if skipped:
                        attrs["lambdascope.propagation.skipped"] = skipped
                    if len(args) > 1:
                        args = (args[0], params, *args[2:])
                    else:
                        kwargs = dict(kwargs, api_params=params)
                if not getattr(instance, "_lambdascope_hooked", False):
                    instance.meta.events.register("before-send", self._before_send)
                    instance._lambdascope_hooked = True
        except Exception as exc:
            from .._guard import internal_error

            internal_error("botocore.api_call", exc)
            handle = None
        if handle is None:
            return wrapped(*args, **kwargs)
        record = handle[1]
        token = _http.ACTIVE.set(record)
        try:
            with _suppress.suppressed(_suppress.HTTP):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            error_response = getattr(exc, "response", None)
            if isinstance(error_response, dict):
                _response_attrs(record, error_response)
                code = (error_response.get("Error") or {}).get("Code")
                if code:
                    record.attributes["aws.error_code"] = str(code)
                    record.attributes["error.type"] = str(code)
            else:
                _http.set_error(record, exc)
            _spans.finish_safely(handle, exc)
            raise
        finally:
            _http.ACTIVE.reset(token)
        error = False
        if isinstance(result, dict):
            try:
                error = _response_attrs(record, result)
            except Exception:
                error = False
        _spans.finish_safely(handle, error=error)
        return result


    def _before_send(self, request: Any = None, **kwargs: Any) -> None:
        """Carry the call's own span as the X-Ray ``Parent``, keeping the ``Root`` and
        ``Lineage`` the Lambda runtime set (recursive-loop detection relies on them). The
        header is not signed by SigV4, so it can change after signing."""
        if not self.enabled or request is None:
            return
        if not (_http.INJECT_W3C or _http.INJECT_XRAY):  # OTEL_PROPAGATORS=none: hands off
            return
        try:
            record = _http.ACTIVE.get()
            env_header = os.environ.get("_X_AMZN_TRACE_ID")
            if record is None or not env_header:
                return
            from .._invocation import CURRENT

            inv = CURRENT.get()
            if inv is None:
                return
            header = xray_header(env_header, inv.trace_id, record.span_id, inv.sampled)
            if header:
                request.headers["X-Amzn-Trace-Id"] = header
        except Exception as exc:
            from .._guard import internal_error

            internal_error("botocore.before_send", exc)


def _response_attrs(record: Any, response: dict[str, Any]) -> bool:
    meta = response.get("ResponseMetadata")
    if not isinstance(meta, dict):
        return False
    attrs = record.attributes
    request_id = meta.get("RequestId") or (meta.get("HTTPHeaders") or {}).get("x-amz-request-id")
    if request_id:
        attrs["aws.request_id"] = request_id
    retries = meta.get("RetryAttempts")
    if isinstance(retries, int):
        attrs["retry_attempts"] = retries
        attrs["http.request.resend_count"] = retries
    status = meta.get("HTTPStatusCode")
    if isinstance(status, int):
        return _http.set_status(record, status)
    return False

"""botocore instrumentation, against a real AWS peer: moto in server mode on loopback.

Every AWS SDK call (client or resource API) is one client span named ``Service.Operation``
carrying the RPC attributes, the region, the request id, the HTTP status, the retry count and
the resource it touched; the HTTP layers beneath botocore make no span of their own. Errors mark
the span and propagate untouched; secrets never reach the report; ``uninstrument()`` puts the
original function back.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

import botocore.client
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError
from moto_server import ACCOUNT, REGION, MotoServer

import lambdascope
from lambdascope.testing import capture_reports, fake_context

BUCKET = "lambdascope-orders"
TABLE = "orders"
TABLE_2 = "customers"
QUEUE = "orders-queue"
TOPIC = "orders-topic"
STREAM = "orders-stream"
STATE_MACHINE = "orders-flow"
EVENT_BUS = "orders-bus"
SECRET_ID = "prod/db-password"
PARAMETER = "/prod/api-key"

# Planted secrets: none of them may appear anywhere in a serialised report.
SECRET_STRING = "s3cr3t-Secrets-Manager-Value-7f1c"
PARAMETER_VALUE = "ssm-Decrypted-Parameter-Value-93ab"
PLAINTEXT = b"kms-Plaintext-Value-44de"
EXPRESSION_SECRET = "ddb-Expression-Value-c0ffee"


def _with_b64(*values: str | bytes) -> list[str]:
    """Each value as text and as base64 (how KMS and binary payloads travel in JSON)."""
    found: list[str] = []
    for value in values:
        raw = value.encode() if isinstance(value, str) else value
        found += [raw.decode(), base64.b64encode(raw).decode()]
    return found


class AWS:
    """The moto server and one client per service, with the resources the tests touch."""

    def __init__(self, server: MotoServer) -> None:
        self.server = server
        self.s3 = server.client("s3")
        self.dynamodb = server.client("dynamodb")
        self.sqs = server.client("sqs")
        self.sns = server.client("sns")
        self.lambda_ = server.client("lambda")
        self.kinesis = server.client("kinesis")
        self.sfn = server.client("stepfunctions")
        self.events = server.client("events")
        self.secrets = server.client("secretsmanager")
        self.ssm = server.client("ssm")
        self.kms = server.client("kms")

    def create(self) -> None:
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_object(Bucket=BUCKET, Key="existing.json", Body=b"{}")
        for name in (TABLE, TABLE_2):
            self.dynamodb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        self.queue_url = self.sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        self.topic_arn = self.sns.create_topic(Name=TOPIC)["TopicArn"]
        self.kinesis.create_stream(StreamName=STREAM, ShardCount=1)
        self.state_machine_arn = self.sfn.create_state_machine(
            name=STATE_MACHINE,
            definition=json.dumps(
                {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
            ),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/orders-flow",
        )["stateMachineArn"]
        self.events.create_event_bus(Name=EVENT_BUS)
        self.secrets.create_secret(Name=SECRET_ID, SecretString=SECRET_STRING)
        self.ssm.put_parameter(Name=PARAMETER, Value=PARAMETER_VALUE, Type="SecureString")
        self.key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]


@pytest.fixture(scope="module")
def aws() -> Iterator[AWS]:
    with MotoServer() as server:
        peers = AWS(server)
        peers.create()
        yield peers


def run(handler: Callable[..., Any], validate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Invoke a monitored handler once; its one report, checked against the schema."""
    with capture_reports() as reports:
        handler({}, fake_context())
    assert len(reports) == 1, reports
    return validate(reports[0])


def client_spans(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in report["spans"] if s["kind"] == "client"]


def one_span(report: dict[str, Any]) -> dict[str, Any]:
    """The single span beside the invocation span."""
    assert len(report["spans"]) == 2, [s["name"] for s in report["spans"]]
    (span,) = client_spans(report)
    return span


ORIGINAL_MAKE_API_CALL = botocore.client.BaseClient.__dict__["_make_api_call"]


# -- one span per call ----------------------------------------------------------------------
def test_each_aws_call_is_one_client_span_with_the_rpc_attributes(
    aws: AWS, validate_report: Any
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        aws.s3.put_object(Bucket=BUCKET, Key="a.json", Body=b"{}")
        aws.s3.get_object(Bucket=BUCKET, Key="a.json")["Body"].read()
        aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "1"}})
        aws.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "1"}})
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="hello")
        aws.sns.publish(TopicArn=aws.topic_arn, Message="hello")

    report = run(handler, validate_report)
    expected = [
        ("S3.PutObject", "S3", "PutObject"),
        ("S3.GetObject", "S3", "GetObject"),
        ("DynamoDB.PutItem", "DynamoDB", "PutItem"),
        ("DynamoDB.GetItem", "DynamoDB", "GetItem"),
        ("SQS.SendMessage", "SQS", "SendMessage"),
        ("SNS.Publish", "SNS", "Publish"),
    ]
    # The invocation span and one span per call: nothing from urllib3 / http.client beneath.
    assert len(report["spans"]) == 1 + len(expected), [s["name"] for s in report["spans"]]
    (root,) = [s for s in report["spans"] if s["kind"] == "server"]
    assert root["span_id"] == report["trace"]["span_id"]
    spans = client_spans(report)
    assert [s["name"] for s in spans] == [name for name, _, _ in expected]
    for span, (_, service, method) in zip(spans, expected):
        attrs = span["attributes"]
        assert span["status"] == "ok", span
        assert span["parent_span_id"] == root["span_id"], span
        assert attrs["rpc.system"] == "aws-api"
        assert attrs["rpc.service"] == service
        assert attrs["rpc.method"] == method
        assert attrs["cloud.region"] == REGION
        assert isinstance(attrs["aws.request_id"], str) and attrs["aws.request_id"], span
        assert attrs["http.response.status_code"] == 200
        assert attrs["retry_attempts"] == 0
        assert "url.full" not in attrs and "http.request.method" not in attrs, span
        assert span["duration_ms"] >= 0


def _retry_once_then_pass(event_name: str, client: Any) -> list[int]:
    """Answer the first attempt with a throttling error (botocore retries it), let the second
    reach the server."""
    calls: list[int] = []

    class Raw:
        def stream(self, **kwargs: Any) -> Iterator[bytes]:
            yield json.dumps(
                {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                 "message": "Rate of requests exceeds the allowed throughput."}
            ).encode()

    def before_send(request: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return AWSResponse(
                request.url, 400,
                {"x-amzn-RequestId": "THROTTLED1", "Content-Type": "application/x-amz-json-1.0"},
                Raw(),
            )
        return None

    client.meta.events.register(event_name, before_send)
    return calls


def test_a_retried_call_is_still_one_span_and_counts_its_retries(
    aws: AWS, validate_report: Any
) -> None:
    client = aws.server.client(
        "dynamodb", config=aws.server.config(retries={"total_max_attempts": 2, "mode": "standard"})
    )
    calls = _retry_once_then_pass("before-send.dynamodb.GetItem", client)

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        client.get_item(TableName=TABLE, Key={"pk": {"S": "nope"}})

    span = one_span(run(handler, validate_report))
    assert len(calls) == 2
    assert span["name"] == "DynamoDB.GetItem"
    assert span["status"] == "ok"
    assert span["attributes"]["retry_attempts"] == 1
    assert span["attributes"]["http.response.status_code"] == 200


# -- the resource each call touched -----------------------------------------------------------
LAMBDA_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:missing-fn"

RESOURCE_CASES: list[tuple[str, Callable[[AWS], Any], str, dict[str, Any]]] = [
    ("s3-put", lambda a: a.s3.put_object(Bucket=BUCKET, Key="in/put.json", Body=b"1"),
     "S3.PutObject", {"aws.s3.bucket": BUCKET, "aws.s3.key": "in/put.json"}),
    ("s3-get", lambda a: a.s3.get_object(Bucket=BUCKET, Key="existing.json"),
     "S3.GetObject", {"aws.s3.bucket": BUCKET, "aws.s3.key": "existing.json"}),
    ("dynamodb-put", lambda a: a.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "p"}}),
     "DynamoDB.PutItem", {"aws.dynamodb.table_names": [TABLE]}),
    ("dynamodb-get", lambda a: a.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "p"}}),
     "DynamoDB.GetItem", {"aws.dynamodb.table_names": [TABLE]}),
    ("dynamodb-query", lambda a: a.dynamodb.query(
        TableName=TABLE, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "p"}}),
     "DynamoDB.Query", {"aws.dynamodb.table_names": [TABLE]}),
    ("dynamodb-batch-write", lambda a: a.dynamodb.batch_write_item(RequestItems={
        TABLE: [{"PutRequest": {"Item": {"pk": {"S": "b1"}}}}],
        TABLE_2: [{"PutRequest": {"Item": {"pk": {"S": "b2"}}}}]}),
     "DynamoDB.BatchWriteItem", {"aws.dynamodb.table_names": [TABLE, TABLE_2]}),
    ("sqs-send", lambda a: a.sqs.send_message(QueueUrl=a.queue_url, MessageBody="m"),
     "SQS.SendMessage", {"aws.sqs.queue_url": "QUEUE_URL"}),
    ("sqs-receive", lambda a: a.sqs.receive_message(QueueUrl=a.queue_url, WaitTimeSeconds=0),
     "SQS.ReceiveMessage", {"aws.sqs.queue_url": "QUEUE_URL"}),
    ("sns-publish", lambda a: a.sns.publish(TopicArn=a.topic_arn, Message="m"),
     "SNS.Publish", {"aws.sns.topic.arn": "TOPIC_ARN"}),
    ("kinesis-put", lambda a: a.kinesis.put_record(
        StreamName=STREAM, Data=b"d", PartitionKey="k"),
     "Kinesis.PutRecord", {"aws.kinesis.stream_name": STREAM}),
    ("sfn-start", lambda a: a.sfn.start_execution(stateMachineArn=a.state_machine_arn),
     "SFN.StartExecution", {"aws.step_functions.state_machine.arn": "STATE_MACHINE_ARN"}),
    ("eventbridge-put", lambda a: a.events.put_events(Entries=[{
        "Source": "orders", "DetailType": "created", "Detail": "{}",
        "EventBusName": EVENT_BUS}]),
     "EventBridge.PutEvents", {"aws.eventbridge.event_bus": EVENT_BUS}),
]


def _expected(aws: AWS, attrs: dict[str, Any]) -> dict[str, Any]:
    values = {"QUEUE_URL": aws.queue_url, "TOPIC_ARN": aws.topic_arn,
              "STATE_MACHINE_ARN": aws.state_machine_arn}
    return {k: values.get(v, v) if isinstance(v, str) else v for k, v in attrs.items()}


@pytest.mark.parametrize(
    ("call", "name", "attrs"),
    [case[1:] for case in RESOURCE_CASES],
    ids=[case[0] for case in RESOURCE_CASES],
)
def test_span_carries_the_resource_the_call_touched(
    aws: AWS, validate_report: Any, call: Callable[[AWS], Any], name: str,
    attrs: dict[str, Any],
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        call(aws)

    span = one_span(run(handler, validate_report))
    assert span["name"] == name
    assert span["status"] == "ok", span
    for key, value in _expected(aws, attrs).items():
        got = span["attributes"].get(key)
        if isinstance(value, list):
            assert isinstance(got, list), (key, got)
            assert sorted(got) == sorted(value), (key, got)
        else:
            assert got == value, (key, got)


@pytest.mark.parametrize(
    "function_name",
    ["missing-fn", LAMBDA_ARN, f"{LAMBDA_ARN}:prod", f"{ACCOUNT}:function:missing-fn",
     "missing-fn:prod"],
    ids=["name", "arn", "qualified-arn", "partial-arn", "name-with-alias"],
)
def test_lambda_invoke_names_the_invoked_function(
    aws: AWS, validate_report: Any, function_name: str
) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        with pytest.raises(ClientError):
            aws.lambda_.invoke(FunctionName=function_name, Payload=b"{}")

    span = one_span(run(handler, validate_report))
    attrs = span["attributes"]
    assert span["name"] == "Lambda.Invoke"
    assert span["status"] == "error"
    assert attrs.get("aws.error_code"), attrs  # moto answers a partial ARN with a 500
    # faas.invoked_name is the function's name, whichever of the forms Lambda accepts for
    # FunctionName the caller used (name, name:qualifier, partial ARN, ARN, qualified ARN).
    assert attrs["faas.invoked_name"] == "missing-fn", attrs
    assert attrs["faas.invoked_provider"] == "aws"


def test_boto3_resource_api_makes_the_same_spans(aws: AWS, validate_report: Any) -> None:
    s3 = aws.server.resource("s3")
    table = aws.server.resource("dynamodb").Table(TABLE)

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        s3.Bucket(BUCKET).put_object(Key="res/obj.txt", Body=b"resource")
        assert s3.Object(BUCKET, "res/obj.txt").get()["Body"].read() == b"resource"
        table.put_item(Item={"pk": "res-1", "total": 3})
        assert table.get_item(Key={"pk": "res-1"})["Item"]["total"] == 3

    report = run(handler, validate_report)
    assert len(report["spans"]) == 5, [s["name"] for s in report["spans"]]
    spans = client_spans(report)
    assert [s["name"] for s in spans] == [
        "S3.PutObject", "S3.GetObject", "DynamoDB.PutItem", "DynamoDB.GetItem"]
    for span in spans[:2]:
        assert span["attributes"]["aws.s3.bucket"] == BUCKET
        assert span["attributes"]["aws.s3.key"] == "res/obj.txt"
    for span in spans[2:]:
        assert span["attributes"]["aws.dynamodb.table_names"] == [TABLE]
    for span in spans:
        assert span["attributes"]["rpc.system"] == "aws-api"
        assert span["attributes"]["http.response.status_code"] == 200
        assert span["attributes"]["aws.request_id"]


# -- errors -----------------------------------------------------------------------------------
def test_client_error_marks_the_span_and_propagates_the_same_object(
    aws: AWS, validate_report: Any
) -> None:
    seen: list[BaseException] = []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        try:
            aws.s3.get_object(Bucket=BUCKET, Key="no/such/key")
        except ClientError as exc:
            seen.append(exc)
            raise

    with capture_reports() as reports, pytest.raises(ClientError) as raised:
        handler({}, fake_context())
    assert seen and raised.value is seen[0]
    assert isinstance(raised.value, aws.s3.exceptions.NoSuchKey)
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"

    report = validate_report(reports[0])
    assert report["invocation"]["status"] == "error"
    assert report["error"]["type"].rsplit(".", 1)[-1] == "NoSuchKey"
    span = one_span(report)
    attrs = span["attributes"]
    assert span["name"] == "S3.GetObject"
    assert span["status"] == "error"
    assert attrs["aws.error_code"] == "NoSuchKey"
    assert attrs["error.type"] == "NoSuchKey"
    assert attrs["http.response.status_code"] == 404
    assert attrs["aws.request_id"]
    assert attrs["aws.s3.key"] == "no/such/key"


def test_a_handled_client_error_still_marks_its_span(aws: AWS, validate_report: Any) -> None:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> str:
        try:
            aws.dynamodb.get_item(TableName="no-such-table", Key={"pk": {"S": "x"}})
        except aws.dynamodb.exceptions.ResourceNotFoundException:
            return "handled"
        return "not raised"

    with capture_reports() as reports:
        assert handler({}, fake_context()) == "handled"
    report = validate_report(reports[0])
    assert report["invocation"]["status"] == "ok"
    span = one_span(report)
    assert span["status"] == "error"
    assert span["attributes"]["aws.error_code"] == "ResourceNotFoundException"
    assert span["attributes"]["aws.dynamodb.table_names"] == ["no-such-table"]
    assert span["attributes"]["http.response.status_code"] == 400


def test_throttling_marks_the_span_with_the_aws_error_code(
    aws: AWS, validate_report: Any
) -> None:
    client = aws.server.client("dynamodb")  # one attempt: the throttle is not retried
    _retry_once_then_pass("before-send.dynamodb.PutItem", client)

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        with pytest.raises(ClientError) as raised:
            client.put_item(TableName=TABLE, Item={"pk": {"S": "t"}})
        assert raised.value.response["Error"]["Code"] == "ThrottlingException"

    span = one_span(run(handler, validate_report))
    assert span["name"] == "DynamoDB.PutItem"
    assert span["status"] == "error"
    assert span["attributes"]["aws.error_code"] == "ThrottlingException"
    assert span["attributes"]["http.response.status_code"] == 400


def test_connection_error_marks_the_span_and_propagates(
    aws: AWS, validate_report: Any
) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = aws.server.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    seen: list[BaseException] = []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        try:
            client.list_buckets()
        except EndpointConnectionError as exc:
            seen.append(exc)
            raise

    with capture_reports() as reports, pytest.raises(EndpointConnectionError) as raised:
        handler({}, fake_context())
    assert raised.value is seen[0]
    span = one_span(validate_report(reports[0]))
    assert span["name"] == "S3.ListBuckets"
    assert span["status"] == "error"
    assert span["attributes"]["error.type"] == "EndpointConnectionError"


# -- secrets ----------------------------------------------------------------------------------
def _secret_calls(aws: AWS) -> None:
    secret = aws.secrets.get_secret_value(SecretId=SECRET_ID)
    assert secret["SecretString"] == SECRET_STRING
    parameter = aws.ssm.get_parameter(Name=PARAMETER, WithDecryption=True)
    assert parameter["Parameter"]["Value"] == PARAMETER_VALUE
    blob = aws.kms.encrypt(KeyId=aws.key_id, Plaintext=PLAINTEXT)["CiphertextBlob"]
    assert aws.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
    aws.dynamodb.query(
        TableName=TABLE, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": EXPRESSION_SECRET}},
    )
    aws.dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": "guarded"}},
        ConditionExpression="attribute_not_exists(pk) OR secret <> :s",
        ExpressionAttributeValues={":s": {"S": EXPRESSION_SECRET}},
    )


# Named by botocore's service id, as OpenTelemetry's botocore instrumentation names them.
SECRET_SPANS = [
    "Secrets Manager.GetSecretValue", "SSM.GetParameter", "KMS.Encrypt", "KMS.Decrypt",
    "DynamoDB.Query", "DynamoDB.PutItem",
]


def _assert_no_secret(report: dict[str, Any]) -> None:
    text = json.dumps(report)
    for value in _with_b64(SECRET_STRING, PARAMETER_VALUE, PLAINTEXT, EXPRESSION_SECRET):
        assert value not in text, f"planted secret {value!r} found in the report"


def test_secret_payloads_never_reach_the_report(aws: AWS, validate_report: Any) -> None:
    @lambdascope.monitor(capture_event=True)
    def handler(event: Any, context: Any) -> None:
        _secret_calls(aws)

    report = run(handler, validate_report)
    assert [s["name"] for s in client_spans(report)] == SECRET_SPANS
    _assert_no_secret(report)


def test_secret_calls_keep_the_identifiers_of_what_they_read(
    aws: AWS, validate_report: Any
) -> None:
    """The payloads stay out, but which secret, parameter or key was read is recorded."""

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        _secret_calls(aws)

    report = run(handler, validate_report)
    by_name = {s["name"]: s["attributes"] for s in client_spans(report)}
    assert by_name["Secrets Manager.GetSecretValue"]["rpc.service"] == "Secrets Manager"
    assert by_name["SSM.GetParameter"]["aws.ssm.parameter.name"] == PARAMETER
    assert by_name["KMS.Encrypt"]["aws.kms.key_id"] == aws.key_id
    assert by_name["Secrets Manager.GetSecretValue"]["aws.secretsmanager.secret.id"] == SECRET_ID


def test_secret_payloads_stay_out_even_with_botocore_debug_logging(
    aws: AWS, validate_report: Any
) -> None:
    """botocore logs request and response bodies at DEBUG; a function that turns that on (as
    ``boto3.set_stream_logger()`` does) must still not ship its secrets in the report's logs."""
    botocore_logger = logging.getLogger("botocore")
    previous = botocore_logger.level
    botocore_logger.setLevel(logging.DEBUG)
    try:

        @lambdascope.monitor
        def handler(event: Any, context: Any) -> None:
            _secret_calls(aws)

        report = run(handler, validate_report)
    finally:
        botocore_logger.setLevel(previous)
    assert [s["name"] for s in client_spans(report)] == SECRET_SPANS
    _assert_no_secret(report)


# -- instrument / uninstrument ----------------------------------------------------------------
def _two_calls_handler(aws: AWS) -> Callable[..., None]:
    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        aws.s3.head_object(Bucket=BUCKET, Key="existing.json")
        aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])

    return handler


def test_uninstrument_restores_the_original_function_object(
    aws: AWS, validate_report: Any
) -> None:
    owner = botocore.client.BaseClient
    assert owner.__dict__["_make_api_call"] is ORIGINAL_MAKE_API_CALL
    assert type(ORIGINAL_MAKE_API_CALL) is types.FunctionType

    report = run(_two_calls_handler(aws), validate_report)  # monitor instruments on first use
    assert len(client_spans(report)) == 2
    patched = owner.__dict__["_make_api_call"]
    assert patched is not ORIGINAL_MAKE_API_CALL
    assert patched.__wrapped__ is ORIGINAL_MAKE_API_CALL

    lambdascope.uninstrument()
    assert owner.__dict__["_make_api_call"] is ORIGINAL_MAKE_API_CALL
    lambdascope.uninstrument()  # idempotent
    assert owner.__dict__["_make_api_call"] is ORIGINAL_MAKE_API_CALL


def test_instrument_twice_gives_one_span_per_call(aws: AWS, validate_report: Any) -> None:
    lambdascope.instrument()
    lambdascope.instrument()
    wrapper = botocore.client.BaseClient.__dict__["_make_api_call"]
    assert wrapper.__wrapped__ is ORIGINAL_MAKE_API_CALL  # one layer, not two

    report = run(_two_calls_handler(aws), validate_report)  # and monitor instruments again
    assert [s["name"] for s in client_spans(report)] == [
        "S3.HeadObject", "SQS.GetQueueAttributes"]
    assert len(report["spans"]) == 3

    # Off and on again: still one layer, one span per call.
    lambdascope.uninstrument()
    lambdascope.instrument()
    assert botocore.client.BaseClient.__dict__["_make_api_call"].__wrapped__ is (
        ORIGINAL_MAKE_API_CALL)
    report = run(_two_calls_handler(aws), validate_report)
    assert len(report["spans"]) == 3


def test_client_created_before_instrument_is_traced(aws: AWS, validate_report: Any) -> None:
    assert botocore.client.BaseClient.__dict__["_make_api_call"] is ORIGINAL_MAKE_API_CALL
    early = aws.server.client("s3")
    lambdascope.instrument()

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        early.list_objects_v2(Bucket=BUCKET)

    span = one_span(run(handler, validate_report))
    assert span["name"] == "S3.ListObjectsV2"
    assert span["attributes"]["aws.s3.bucket"] == BUCKET


def test_botocore_imported_after_instrument_is_traced(aws: AWS) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import lambdascope
        from lambdascope.testing import capture_reports, fake_context

        lambdascope.instrument()
        assert "botocore" not in sys.modules, "lambdascope imported botocore itself"
        assert "botocore.client" not in sys.modules

        import boto3  # imported only now: a post-import hook patches it

        client = boto3.client(
            "s3", endpoint_url=sys.argv[1], region_name="us-east-1",
            aws_access_key_id="AKIALAMBDASCOPETEST1", aws_secret_access_key="fake-secret-key",
        )

        @lambdascope.monitor
        def handler(event, context):
            return client.list_objects_v2(Bucket=sys.argv[2])["KeyCount"]

        with capture_reports() as reports:
            handler({}, fake_context())
        wrapped = getattr(sys.modules["botocore.client"].BaseClient.__dict__["_make_api_call"],
                          "__wrapped__", None)
        print(json.dumps({"spans": [s["name"] for s in reports[0]["spans"]
                                    if s["kind"] == "client"],
                          "bucket": [s["attributes"].get("aws.s3.bucket")
                                     for s in reports[0]["spans"] if s["kind"] == "client"],
                          "patched": wrapped is not None}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDASCOPE_", "AWS_"))}
    done = subprocess.run(
        [sys.executable, "-c", script, aws.server.endpoint, BUCKET],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"spans": ["S3.ListObjectsV2"], "bucket": [BUCKET], "patched": True}


def test_calls_outside_an_invocation_make_no_spans(aws: AWS, validate_report: Any) -> None:
    lambdascope.instrument()
    with capture_reports() as reports:
        # Before any invocation, e.g. at import time of the handler module.
        assert aws.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] >= 1
    assert reports == []

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        return None

    report = run(handler, validate_report)
    aws.sqs.get_queue_url(QueueName=QUEUE)  # after the invocation has ended
    report_after = run(handler, validate_report)
    for each in (report, report_after):
        assert [s["kind"] for s in each["spans"]] == ["server"], each["spans"]


def test_lambdascope_instrument_env_can_leave_botocore_alone(
    aws: AWS, validate_report: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMBDASCOPE_INSTRUMENT", "requests")

    @lambdascope.monitor
    def handler(event: Any, context: Any) -> None:
        aws.s3.list_objects_v2(Bucket=BUCKET)

    report = run(handler, validate_report)
    assert botocore.client.BaseClient.__dict__["_make_api_call"] is ORIGINAL_MAKE_API_CALL
    # No AWS span, and the layers beneath (instrumented for requests' timing) make none either.
    assert [s["kind"] for s in report["spans"]] == ["server"], report["spans"]

"""The bundled sample events: each is the event of its source as the agent recognises it, and
``lambdascope events`` lists and prints them."""

from __future__ import annotations

import base64
import gzip
import io
import json
import pathlib

import pytest

from lambdascope import _triggers
from lambdascope.cli import main
from lambdascope.runner import samples

EVENTS_DIR = pathlib.Path(samples.__file__).resolve().parent / "events"


def test_every_bundled_file_is_listed_and_every_listed_sample_is_bundled() -> None:
    assert sorted(p.stem for p in EVENTS_DIR.glob("*.json")) == sorted(samples.SAMPLES)
    assert list(samples.SAMPLES) == [
        "api_gateway_v1", "api_gateway_v2", "alb", "function_url", "sqs", "sns", "s3",
        "dynamodb", "kinesis", "eventbridge", "schedule", "cloudwatch_logs",
    ]


@pytest.mark.parametrize("name", list(samples.SAMPLES))
def test_each_sample_is_detected_as_its_trigger_type(name: str) -> None:
    event = samples.load_sample(name)
    expected_type, _ = samples.SAMPLES[name]
    trigger = _triggers.detect(event)
    assert trigger.type == expected_type
    if expected_type in _triggers.BATCH_TYPES:
        assert trigger.batch_size == len(event["Records"]) >= 1
        assert trigger.source and trigger.source.startswith("arn:aws:")


def test_samples_carry_what_handlers_read() -> None:
    """Payloads a handler decodes are real: the Kinesis data, the CloudWatch Logs data, the
    JSON bodies."""
    kinesis = samples.load_sample("kinesis")
    for record in kinesis["Records"]:
        assert json.loads(base64.b64decode(record["kinesis"]["data"]))["order_id"]
    logs = json.loads(gzip.decompress(base64.b64decode(
        samples.load_sample("cloudwatch_logs")["awslogs"]["data"])))
    assert logs["messageType"] == "DATA_MESSAGE" and len(logs["logEvents"]) == 2
    assert json.loads(samples.load_sample("api_gateway_v2")["body"])["item"] == "book"
    for record in samples.load_sample("sqs")["Records"]:
        assert json.loads(record["body"])["action"] == "ship"
    assert json.loads(samples.load_sample("sns")["Records"][0]["Sns"]["Message"])


def test_read_event_forms(tmp_path: pathlib.Path) -> None:
    assert samples.read_event(None) == {}
    assert samples.read_event("sqs") == samples.load_sample("sqs")
    assert samples.read_event("sqs.json") == samples.load_sample("sqs")
    own = tmp_path / "mine.json"
    own.write_text('{"x": [1, 2]}')
    assert samples.read_event(str(own)) == {"x": [1, 2]}
    assert samples.read_event("-", stdin=io.StringIO('"just a string"')) == "just a string"
    assert samples.read_event('{"inline": true}') == {"inline": True}
    with pytest.raises(samples.EventError, match="the --event JSON is not valid JSON"):
        samples.read_event('{"inline": tru}')
    with pytest.raises(samples.EventError, match="is a directory"):
        samples.read_event(str(tmp_path))


def test_events_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split()[1] for line in lines[1:] if line.strip()
              and not line.strip().startswith("lambdascope")}
    assert listed == {name: trigger for name, (trigger, _) in samples.SAMPLES.items()}
    assert main(["events", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in doc] == list(samples.SAMPLES)
    assert all(d["description"] for d in doc)


def test_events_command_prints_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "eventbridge"]) == 0
    assert json.loads(capsys.readouterr().out) == samples.load_sample("eventbridge")
    assert main(["events", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == ("lambdascope events: error: no sample event named 'nope' "
                   "(lambdascope events lists them)\n")

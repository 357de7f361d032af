"""_redact: sensitive keys, URLs, and secret environment values in serialised reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdascope._config import DEFAULT_REDACT
from lambdascope._redact import REDACTED, Redactor, redact_url
from lambdascope._report import dumps

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+abc=="
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"

FAKE_ENV = {
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "LAMBDASCOPE_TOKEN": "collector-token-123",
    "DB_PASSWORD": "hunter2hunter2",
    "STRIPE_API_KEY": "sk_live_51Habcdef",
    "AWS_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "orders-api",
    "TABLE_NAME": "orders-table",
    "SHORT_SECRET": "abc",
}


def redactor(extra: tuple[str, ...] = (), environ: dict[str, str] | None = None) -> Redactor:
    return Redactor((*DEFAULT_REDACT, *extra), {} if environ is None else environ)


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "Authorization", "authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
        "X-Api-Key", "x_api_key", "apiKey", "api.key", "password", "Password", "db_passwd",
        "client_secret", "CLIENT_SECRET", "session_token", "SessionToken", "X-Amz-Security-Token",
        "refresh_token", "aws_credentials", "X-Amz-Signature", "private_key", "session",
    ],
)  # fmt: skip
def test_builtin_sensitive_keys(key: str) -> None:
    assert redactor().is_sensitive(key)


@pytest.mark.parametrize(
    "key",
    [
        "Content-Type", "Accept", "Host", "User-Agent", "order_id", "sku", "email", "path",
        "http.request.method", "url.full", "aws.s3.bucket", "keyboard", "author",
    ],
)  # fmt: skip
def test_non_sensitive_keys(key: str) -> None:
    assert not redactor().is_sensitive(key)


@pytest.mark.parametrize(
    ("patterns", "key", "sensitive"),
    [
        (("ssn",), "customer_ssn", True),
        (("card number",), "Card-Number", True),
        (("card number",), "card_number", True),
        (("card number",), "cardnumber", True),
        (("card number",), "card", False),
        (("iban",), "IBAN", True),
        ((), "customer_ssn", False),
    ],
)
def test_custom_patterns(patterns: tuple[str, ...], key: str, sensitive: bool) -> None:
    assert redactor(patterns).is_sensitive(key) is sensitive


def test_mapping_redacts_recursively_and_keeps_the_rest() -> None:
    event = {
        "headers": {
            "Authorization": "Bearer abc.def.ghi",
            "Cookie": "sid=123",
            "X-Api-Key": "k-123",
            "Content-Type": "application/json",
        },
        "body": {
            "user": {"name": "jane", "password": "pw-1", "ssn": "123-45-6789"},
            "items": [{"sku": "A-1", "client_secret": "cs-1"}, {"session_token": "st-1"}],
        },
        "tuple": ("a", {"token": "t"}),
        "number": 5,
        "none": None,
        7: "int key",
    }
    out = redactor(("ssn",)).mapping(event)
    assert out == {
        "headers": {
            "Authorization": REDACTED,
            "Cookie": REDACTED,
            "X-Api-Key": REDACTED,
            "Content-Type": "application/json",
        },
        "body": {
            "user": {"name": "jane", "password": REDACTED, "ssn": REDACTED},
            "items": [{"sku": "A-1", "client_secret": REDACTED}, {"session_token": REDACTED}],
        },
        "tuple": ["a", {"token": REDACTED}],
        "number": 5,
        "none": None,
        7: "int key",
    }
    assert event["headers"]["Authorization"] == "Bearer abc.def.ghi"  # the input is not touched


def test_mapping_redacts_a_whole_sensitive_subtree() -> None:
    out = redactor().mapping({"credentials": {"user": "u", "pass": "p"}})
    assert out == {"credentials": REDACTED}


@pytest.mark.parametrize("value", ["plain", 3, 1.5, None, True])
def test_mapping_of_scalars_is_identity(value: Any) -> None:
    assert redactor().mapping(value) == value


def test_mapping_stops_at_depth_without_error() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    redactor().mapping(deep)  # no RecursionError


def test_mapping_hides_secrets_below_the_depth_limit() -> None:
    deep: dict[str, Any] = {"password": "hunter2-deep"}
    for _ in range(40):
        deep = {"n": deep}
    assert "hunter2-deep" not in json.dumps(redactor().mapping(deep))


def test_attributes_hide_sensitive_keys_and_scrub_urls() -> None:
    attrs = {
        "http.request.header.authorization": "Bearer x",
        "http.request.method": "GET",
        "url.full": "https://user:pw@api.example.com/v1/orders?page=2&api_key=abc",
        "http.url": "https://example.com/a?sig=1",
        "server.port": 443,
        "note": "https://example.com/?q=kept because not a url.* key",
    }
    assert redactor().attributes(attrs) == {
        "http.request.header.authorization": REDACTED,
        "http.request.method": "GET",
        "url.full": "https://api.example.com/v1/orders?page=REDACTED&api_key=REDACTED",
        "http.url": "https://example.com/a?sig=REDACTED",
        "server.port": 443,
        "note": "https://example.com/?q=REDACTED because not a url.* key",
    }


def test_attributes_redact_nested_values() -> None:
    attrs = {"request": {"headers": {"Authorization": "Bearer abc"}, "path": "/"}}
    out = redactor().attributes(attrs)
    assert out == {"request": {"headers": {"Authorization": REDACTED}, "path": "/"}}


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/v1/orders", "https://api.example.com/v1/orders"),
        (
            "https://api.example.com/v1/orders?page=2&size=10",
            "https://api.example.com/v1/orders?page=REDACTED&size=REDACTED",
        ),
        (
            "https://user:pass@host.example.com:8443/p?x=1#frag",
            "https://host.example.com:8443/p?x=REDACTED",
        ),
        ("http://admin@host/p", "http://host/p"),
        (
            "https://bucket.s3.amazonaws.com/key.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260312&X-Amz-Signature=deadbeef",
            "https://bucket.s3.amazonaws.com/key.txt?X-Amz-Algorithm=REDACTED"
            "&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED",
        ),
        ("/relative/path?token=abc", "/relative/path?token=REDACTED"),
        ("https://host/p#section", "https://host/p"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://host.example.com?token=abc", "https://host.example.com?token=REDACTED"),
        ("https://host.example.com?email=a@b.com", "https://host.example.com?email=REDACTED"),
    ],
)
def test_redact_url_without_path(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# -- secret environment values in serialised reports -------------------------------------------


def report_with(*texts: str) -> dict[str, Any]:
    return {
        "schema": "lambdascope/1",
        "function": {"region": "us-east-1", "name": "orders-api"},
        "error": {"type": "RuntimeError", "message": texts[0], "stack": []},
        "logs": [{"message": t} for t in texts],
        "spans": [{"attributes": {"db.statement": f"SELECT '{texts[-1]}'"}}],
    }


@pytest.mark.parametrize(
    "secret",
    [SECRET_KEY, SESSION_TOKEN, ACCESS_KEY, "collector-token-123", "hunter2hunter2",
     "sk_live_51Habcdef"],
)  # fmt: skip
def test_text_replaces_secret_env_values_everywhere(secret: str) -> None:
    r = redactor(environ=FAKE_ENV)
    payload = dumps(report_with(f"boom with {secret} inside", f"env dump: {secret}"))
    assert secret in payload
    out = r.text(payload)
    assert secret not in out
    parsed = json.loads(out)
    assert parsed["error"]["message"] == f"boom with {REDACTED} inside"
    assert parsed["logs"][1]["message"] == f"env dump: {REDACTED}"
    assert parsed["spans"][0]["attributes"]["db.statement"] == f"SELECT 'env dump: {REDACTED}'"


def test_text_replaces_json_escaped_secret() -> None:
    secret = 'p@ss"word\\with\\escapes/and\u00e9'
    r = redactor(environ={"AWS_SECRET_ACCESS_KEY": secret})
    payload = dumps(report_with(f"leaked {secret} here"))
    assert json.dumps(secret)[1:-1] in payload  # it is in the payload, escaped
    out = r.text(payload)
    parsed = json.loads(out)
    assert parsed["error"]["message"] == f"leaked {REDACTED} here"
    assert secret not in json.dumps(parsed, ensure_ascii=False)


def test_text_replaces_longest_secret_first() -> None:
    r = redactor(environ={"AWS_SESSION_TOKEN": "abcdef", "LAMBDASCOPE_TOKEN": "abcdef-long-123"})
    out = r.text(dumps(report_with("x abcdef-long-123 y")))
    assert json.loads(out)["error"]["message"] == f"x {REDACTED} y"


@pytest.mark.parametrize(
    "value",
    ["us-east-1", "orders-api", "orders-table"],
)
def test_text_keeps_non_secret_env_values(value: str) -> None:
    r = redactor(environ=FAKE_ENV)
    payload = dumps(report_with(f"region {value}"))
    assert r.text(payload) == payload


def test_text_ignores_short_values() -> None:
    r = redactor(environ=FAKE_ENV)
    payload = dumps(report_with("abc is too short to be a secret"))
    assert r.text(payload) == payload


def test_text_ignores_aws_lambda_variables_with_sensitive_looking_names() -> None:
    env = {"AWS_LAMBDA_RUNTIME_API_TOKENISH": "127.0.0.1:9001"}
    assert redactor(environ=env).text('{"a":"127.0.0.1:9001"}') == '{"a":"127.0.0.1:9001"}'


def test_text_uses_custom_patterns_for_env_names() -> None:
    r = Redactor((*DEFAULT_REDACT, "iban"), {"CUSTOMER_IBAN": "DE89370400440532013000"})
    out = r.text('{"message":"pay to DE89370400440532013000"}')
    assert json.loads(out) == {"message": f"pay to {REDACTED}"}


def test_text_without_secrets_is_identity() -> None:
    payload = dumps(report_with("nothing to hide"))
    assert redactor(environ={}).text(payload) == payload


def test_text_with_numeric_secret_keeps_json_valid() -> None:
    r = redactor(environ={"SESSION_TIMEOUT_MS": "3600000"})
    report = {"invocation": {"timeout_ms": 3600000, "start_ms": 1773600000123.5}}
    assert json.loads(r.text(json.dumps(report))) == report

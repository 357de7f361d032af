"""_config.Config: every LAMBDASCOPE_* variable of the contract, options, invalid values."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lambdascope import _guard
from lambdascope._config import DEFAULT_INSTRUMENT, KEYS, Config

SPEC_VARS = (
    "LAMBDASCOPE_DISABLED", "LAMBDASCOPE_SERVICE", "LAMBDASCOPE_EXPORTERS",
    "LAMBDASCOPE_COLLECTOR_URL", "LAMBDASCOPE_TOKEN", "LAMBDASCOPE_OTLP_ENDPOINT",
    "LAMBDASCOPE_FILE", "LAMBDASCOPE_FLUSH", "LAMBDASCOPE_FLUSH_TIMEOUT_MS",
    "LAMBDASCOPE_TIMEOUT_WARNING_MS", "LAMBDASCOPE_SAMPLE_RATE", "LAMBDASCOPE_SPOOL_DIR",
    "LAMBDASCOPE_SPOOL_MAX_MB", "LAMBDASCOPE_CAPTURE_EVENT", "LAMBDASCOPE_CAPTURE_LOGS",
    "LAMBDASCOPE_REDACT", "LAMBDASCOPE_INSTRUMENT", "LAMBDASCOPE_MAX_SPANS",
    "LAMBDASCOPE_PROFILE_RATE", "LAMBDASCOPE_PROFILE_INTERVAL_MS",
)  # fmt: skip


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "lambdascope" and r.levelno >= logging.WARNING
    ]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="lambdascope")
    return caplog


def test_keys_are_the_contracts_variables() -> None:
    assert tuple("LAMBDASCOPE_" + k.upper() for k in KEYS) == SPEC_VARS


def test_defaults_with_empty_environment(logs: pytest.LogCaptureFixture) -> None:
    c = Config(environ={})
    assert c.as_dict() == {
        "disabled": False,
        "service": None,
        "exporters": ("stdout",),
        "collector_url": None,
        "token": None,
        "otlp_endpoint": "http://localhost:4318",
        "file": "/tmp/lambdascope/reports.jsonl",
        "flush": "auto",
        "flush_timeout_ms": 1000,
        "timeout_warning_ms": 200,
        "sample_rate": 1.0,
        "spool_dir": "/tmp/lambdascope/spool",
        "spool_max_mb": 10.0,
        "capture_event": False,
        "capture_logs": True,
        "redact": (),
        "instrument": DEFAULT_INSTRUMENT,
        "max_spans": 500,
        "profile_rate": 0.0,
        "profile_interval_ms": 10,
    }
    assert DEFAULT_INSTRUMENT == (
        "botocore", "requests", "urllib3", "http.client", "httpx", "threading", "subprocess",
    )
    assert warnings_of(logs) == []


@pytest.mark.parametrize(
    ("var", "raw", "attr", "expected"),
    [
        ("LAMBDASCOPE_DISABLED", "true", "disabled", True),
        ("LAMBDASCOPE_DISABLED", "TRUE", "disabled", True),
        ("LAMBDASCOPE_DISABLED", "1", "disabled", True),
        ("LAMBDASCOPE_DISABLED", "yes", "disabled", True),
        ("LAMBDASCOPE_DISABLED", "false", "disabled", False),
        ("LAMBDASCOPE_DISABLED", "0", "disabled", False),
        ("LAMBDASCOPE_SERVICE", "orders-api", "service", "orders-api"),
        ("LAMBDASCOPE_SERVICE", "  orders-api  ", "service", "orders-api"),
        ("LAMBDASCOPE_EXPORTERS", "stdout", "exporters", ("stdout",)),
        ("LAMBDASCOPE_EXPORTERS", "otlp, emf,file", "exporters", ("otlp", "emf", "file")),
        ("LAMBDASCOPE_EXPORTERS", "FILE,file,stdout", "exporters", ("file", "stdout")),
        (
            "LAMBDASCOPE_COLLECTOR_URL",
            "http://localhost:8585",
            "collector_url",
            "http://localhost:8585",
        ),
        (
            "LAMBDASCOPE_COLLECTOR_URL",
            "https://collector.example.com/",
            "collector_url",
            "https://collector.example.com",
        ),
        ("LAMBDASCOPE_TOKEN", "s3cr3t-token", "token", "s3cr3t-token"),
        ("LAMBDASCOPE_OTLP_ENDPOINT", "http://otel:4318", "otlp_endpoint", "http://otel:4318"),
        ("LAMBDASCOPE_FILE", "/tmp/out.jsonl", "file", "/tmp/out.jsonl"),
        ("LAMBDASCOPE_FLUSH", "sync", "flush", "sync"),
        ("LAMBDASCOPE_FLUSH", "after_response", "flush", "after_response"),
        ("LAMBDASCOPE_FLUSH", "After-Response", "flush", "after_response"),
        ("LAMBDASCOPE_FLUSH", "auto", "flush", "auto"),
        ("LAMBDASCOPE_FLUSH_TIMEOUT_MS", "250", "flush_timeout_ms", 250),
        ("LAMBDASCOPE_TIMEOUT_WARNING_MS", "0", "timeout_warning_ms", 0),
        ("LAMBDASCOPE_TIMEOUT_WARNING_MS", "500", "timeout_warning_ms", 500),
        ("LAMBDASCOPE_SAMPLE_RATE", "0.25", "sample_rate", 0.25),
        ("LAMBDASCOPE_SAMPLE_RATE", "0", "sample_rate", 0.0),
        ("LAMBDASCOPE_SAMPLE_RATE", "1", "sample_rate", 1.0),
        ("LAMBDASCOPE_SPOOL_DIR", "/tmp/spool2", "spool_dir", "/tmp/spool2"),
        ("LAMBDASCOPE_SPOOL_MAX_MB", "2.5", "spool_max_mb", 2.5),
        ("LAMBDASCOPE_CAPTURE_EVENT", "true", "capture_event", True),
        ("LAMBDASCOPE_CAPTURE_LOGS", "false", "capture_logs", False),
        ("LAMBDASCOPE_REDACT", "ssn, card number,iban", "redact", ("ssn", "card number", "iban")),
        ("LAMBDASCOPE_INSTRUMENT", "requests, botocore", "instrument", ("requests", "botocore")),
        ("LAMBDASCOPE_INSTRUMENT", "none", "instrument", ()),
        ("LAMBDASCOPE_INSTRUMENT", "NONE", "instrument", ()),
        ("LAMBDASCOPE_MAX_SPANS", "50", "max_spans", 50),
        ("LAMBDASCOPE_PROFILE_RATE", "0.1", "profile_rate", 0.1),
        ("LAMBDASCOPE_PROFILE_INTERVAL_MS", "5", "profile_interval_ms", 5),
    ],
)
def test_env_var_is_parsed(
    var: str, raw: str, attr: str, expected: Any, logs: pytest.LogCaptureFixture
) -> None:
    """GIVEN a valid LAMBDASCOPE_* value WHEN the config is read THEN it is used, silently."""
    env = {var: raw}
    if attr == "exporters":  # keep the http fallback out of the picture
        env["LAMBDASCOPE_COLLECTOR_URL"] = "http://localhost:8585"
    assert getattr(Config(environ=env), attr) == expected
    assert warnings_of(logs) == []


@pytest.mark.parametrize("var", SPEC_VARS)
def test_blank_value_means_default(var: str, logs: pytest.LogCaptureFixture) -> None:
    assert Config(environ={var: "  "}).as_dict() == Config(environ={}).as_dict()
    assert warnings_of(logs) == []


@pytest.mark.parametrize(
    ("option", "value", "var", "raw"),
    [
        ("service", "from-option", "LAMBDASCOPE_SERVICE", "from-env"),
        ("sample_rate", 0.5, "LAMBDASCOPE_SAMPLE_RATE", "0.1"),
        ("disabled", False, "LAMBDASCOPE_DISABLED", "true"),
        ("flush", "sync", "LAMBDASCOPE_FLUSH", "after_response"),
        ("max_spans", 7, "LAMBDASCOPE_MAX_SPANS", "100"),
        ("exporters", ["file"], "LAMBDASCOPE_EXPORTERS", "stdout"),
        ("instrument", (), "LAMBDASCOPE_INSTRUMENT", "requests"),
        ("capture_event", True, "LAMBDASCOPE_CAPTURE_EVENT", "false"),
        ("collector_url", "http://option:8585", "LAMBDASCOPE_COLLECTOR_URL", "http://env:8585"),
    ],
)
def test_option_beats_env(option: str, value: Any, var: str, raw: str) -> None:
    c = Config({option: value}, environ={var: raw})
    expected = tuple(value) if isinstance(value, list) else value
    assert getattr(c, option) == expected


@pytest.mark.parametrize(
    ("var", "raw", "attr", "default", "expected_text", "used_text"),
    [
        ("LAMBDASCOPE_SAMPLE_RATE", "abc", "sample_rate", 1.0, "a number from 0 to 1", "1.0"),
        ("LAMBDASCOPE_SAMPLE_RATE", "2", "sample_rate", 1.0, "a number from 0 to 1", "1.0"),
        ("LAMBDASCOPE_SAMPLE_RATE", "nan", "sample_rate", 1.0, "a number from 0 to 1", "1.0"),
        ("LAMBDASCOPE_SAMPLE_RATE", "-0.5", "sample_rate", 1.0, "a number from 0 to 1", "1.0"),
        (
            "LAMBDASCOPE_FLUSH_TIMEOUT_MS",
            "-1",
            "flush_timeout_ms",
            1000,
            "a whole number from 1 to 60000",
            "1000",
        ),
        (
            "LAMBDASCOPE_FLUSH_TIMEOUT_MS",
            "1s",
            "flush_timeout_ms",
            1000,
            "a whole number from 1 to 60000",
            "1000",
        ),
        (
            "LAMBDASCOPE_TIMEOUT_WARNING_MS",
            "-5",
            "timeout_warning_ms",
            200,
            "a whole number from 0 to 900000",
            "200",
        ),
        ("LAMBDASCOPE_MAX_SPANS", "1.5", "max_spans", 500, "a whole number", "500"),
        ("LAMBDASCOPE_PROFILE_RATE", "10%", "profile_rate", 0.0, "a number from 0 to 1", "0.0"),
        (
            "LAMBDASCOPE_PROFILE_INTERVAL_MS",
            "0",
            "profile_interval_ms",
            10,
            "a whole number from 1 to 10000",
            "10",
        ),
        ("LAMBDASCOPE_SPOOL_MAX_MB", "lots", "spool_max_mb", 10.0, "a number from 0", "10.0"),
        ("LAMBDASCOPE_DISABLED", "maybe", "disabled", False, "true or false", "false"),
        (
            "LAMBDASCOPE_CAPTURE_EVENT",
            "sometimes",
            "capture_event",
            False,
            "true or false",
            "false",
        ),
        ("LAMBDASCOPE_CAPTURE_LOGS", "2", "capture_logs", True, "true or false", "true"),
        (
            "LAMBDASCOPE_FLUSH",
            "later",
            "flush",
            "auto",
            "one of auto, after_response, sync",
            "auto",
        ),
        (
            "LAMBDASCOPE_INSTRUMENT",
            "django",
            "instrument",
            DEFAULT_INSTRUMENT,
            "a comma list of botocore",
            "botocore,requests,urllib3,http.client,httpx,threading,subprocess",
        ),
        (
            "LAMBDASCOPE_EXPORTERS",
            "kafka",
            "exporters",
            ("stdout",),
            "a comma list of http, otlp, emf, stdout, file",
            "stdout",
        ),
        (
            "LAMBDASCOPE_EXPORTERS",
            "stdout,kafka",
            "exporters",
            ("stdout",),
            "a comma list of http, otlp, emf, stdout, file",
            "stdout",
        ),
        (
            "LAMBDASCOPE_COLLECTOR_URL",
            "localhost:8585",
            "collector_url",
            None,
            "an http:// or https:// URL",
            "unset",
        ),
    ],
)
def test_invalid_env_value_logs_one_line_and_uses_default(
    var: str,
    raw: str,
    attr: str,
    default: Any,
    expected_text: str,
    used_text: str,
    logs: pytest.LogCaptureFixture,
) -> None:
    """GIVEN a bad value WHEN the config is read THEN one warning names the variable, the bad
    value, what was expected and the value used, and the default applies."""
    c = Config(environ={var: raw})
    assert getattr(c, attr) == default
    lines = warnings_of(logs)
    assert len(lines) == 1, lines
    line = lines[0]
    assert "\n" not in line
    assert var in line
    assert repr(raw) in line
    assert f"expected {expected_text}" in line
    assert "; using " in line
    assert line.endswith(f"; using {used_text}")


def test_invalid_value_is_logged_once_per_variable(logs: pytest.LogCaptureFixture) -> None:
    Config(environ={"LAMBDASCOPE_SAMPLE_RATE": "abc"})
    Config(environ={"LAMBDASCOPE_SAMPLE_RATE": "abc"})
    assert len(warnings_of(logs)) == 1
    _guard.reset()
    Config(environ={"LAMBDASCOPE_SAMPLE_RATE": "abc"})
    assert len(warnings_of(logs)) == 2


def test_several_invalid_values_log_one_line_each(logs: pytest.LogCaptureFixture) -> None:
    Config(environ={"LAMBDASCOPE_SAMPLE_RATE": "abc", "LAMBDASCOPE_FLUSH_TIMEOUT_MS": "-1"})
    lines = warnings_of(logs)
    assert len(lines) == 2
    assert any("LAMBDASCOPE_SAMPLE_RATE" in x for x in lines)
    assert any("LAMBDASCOPE_FLUSH_TIMEOUT_MS" in x for x in lines)


def test_invalid_option_logs_the_option_and_uses_default(logs: pytest.LogCaptureFixture) -> None:
    c = Config({"sample_rate": 2}, environ={})
    assert c.sample_rate == 1.0
    (line,) = warnings_of(logs)
    assert "monitor option 'sample_rate'" in line
    assert "=2 " in line and "expected a number from 0 to 1" in line and "using 1.0" in line


def test_invalid_option_does_not_fall_back_to_env(logs: pytest.LogCaptureFixture) -> None:
    """An explicit but bad option gives the built-in default, as its log line says."""
    c = Config({"sample_rate": "abc"}, environ={"LAMBDASCOPE_SAMPLE_RATE": "0.3"})
    assert c.sample_rate == 1.0
    assert len(warnings_of(logs)) == 1


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number_option(value: bool, logs: pytest.LogCaptureFixture) -> None:
    assert Config({"max_spans": value}, environ={}).max_spans == 500
    assert len(warnings_of(logs)) == 1


def test_unknown_option_is_logged_and_ignored(logs: pytest.LogCaptureFixture) -> None:
    c = Config({"colector_url": "http://localhost:8585"}, environ={})
    assert not hasattr(c, "colector_url")
    assert c.collector_url is None
    (line,) = warnings_of(logs)
    assert "unknown monitor option 'colector_url'" in line
    assert "collector_url" in line.split("known options", 1)[1]


# -- exporters ------------------------------------------------------------------------------


def test_exporters_default_http_when_collector_url_set() -> None:
    c = Config(environ={"LAMBDASCOPE_COLLECTOR_URL": "http://localhost:8585"})
    assert c.exporters == ("http",)


def test_exporters_default_http_when_collector_url_option_set() -> None:
    assert Config({"collector_url": "http://localhost:8585"}, environ={}).exporters == ("http",)


def test_exporters_default_stdout_without_collector_url() -> None:
    assert Config(environ={}).exporters == ("stdout",)


def test_http_without_url_falls_back_to_stdout(logs: pytest.LogCaptureFixture) -> None:
    assert Config(environ={"LAMBDASCOPE_EXPORTERS": "http"}).exporters == ("stdout",)
    (line,) = warnings_of(logs)
    assert "LAMBDASCOPE_COLLECTOR_URL" in line and "http" in line


def test_http_without_url_keeps_the_other_exporters(logs: pytest.LogCaptureFixture) -> None:
    c = Config(environ={"LAMBDASCOPE_EXPORTERS": "http,file"})
    assert c.exporters == ("file",)
    assert len(warnings_of(logs)) == 1


def test_invalid_exporters_with_collector_url_default_to_http(
    logs: pytest.LogCaptureFixture,
) -> None:
    c = Config(
        environ={"LAMBDASCOPE_EXPORTERS": "kafka", "LAMBDASCOPE_COLLECTOR_URL": "http://c:8585"}
    )
    assert c.exporters == ("http",)
    (line,) = warnings_of(logs)
    assert line.endswith("; using http")  # the derived value actually used


# -- derived values ---------------------------------------------------------------------------


def test_otlp_endpoint_from_standard_otel_variable() -> None:
    c = Config(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert c.otlp_endpoint == "http://collector:4318"


def test_lambdascope_otlp_endpoint_beats_otel_variable() -> None:
    c = Config(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "LAMBDASCOPE_OTLP_ENDPOINT": "http://mine:4318",
        }
    )
    assert c.otlp_endpoint == "http://mine:4318"


def test_service_defaults_to_function_name() -> None:
    assert Config(environ={"AWS_LAMBDA_FUNCTION_NAME": "orders"}).service == "orders"


def test_service_env_beats_function_name() -> None:
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders", "LAMBDASCOPE_SERVICE": "shop"}
    assert Config(environ=env).service == "shop"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDASCOPE_SAMPLE_RATE", "0.75")
    assert Config().sample_rate == 0.75


# -- read-only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attr", [*KEYS, "new_attribute"])
def test_config_is_read_only(attr: str) -> None:
    c = Config(environ={})
    with pytest.raises(AttributeError):
        setattr(c, attr, "x")


def test_config_attributes_cannot_be_deleted() -> None:
    c = Config(environ={})
    with pytest.raises(AttributeError):
        del c.sample_rate
    assert c.sample_rate == 1.0


def test_repr_hides_token() -> None:
    c = Config(environ={"LAMBDASCOPE_TOKEN": "tok-abcdef123456"})
    assert "tok-abcdef123456" not in repr(c)
    assert c.token == "tok-abcdef123456"

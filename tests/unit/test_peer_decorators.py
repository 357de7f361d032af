"""@monitor stacks with the decorators of the peers users already have on their handlers:
Powertools' Logger and Metrics, and Sentry's serverless decorator, in either order."""

from __future__ import annotations

import json
from typing import Any

import pytest

import lambdascope
from lambdascope.testing import capture_reports, fake_context

powertools_logging = pytest.importorskip("aws_lambda_powertools.logging")
powertools_metrics = pytest.importorskip("aws_lambda_powertools.metrics")
sentry_serverless = pytest.importorskip("sentry_sdk.integrations.serverless")


@pytest.fixture
def powertools(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shop")
    logger = powertools_logging.Logger()
    metrics = powertools_metrics.Metrics()
    return logger, metrics


@pytest.mark.parametrize("order", ["monitor-outermost", "monitor-innermost"])
def test_with_powertools_logger_and_metrics(
    powertools: Any, order: str, capsys: Any, validate_report: Any
) -> None:
    logger, metrics = powertools

    def handler(event: Any, context: Any) -> dict:
        metrics.add_metric(name="orders", unit="Count", value=1)
        lambdascope.metric("orders", 1, "Count")
        logger.info("order placed")
        return {"statusCode": 200}

    if order == "monitor-outermost":
        wrapped = lambdascope.monitor(
            logger.inject_lambda_context(metrics.log_metrics(handler))
        )
    else:
        wrapped = logger.inject_lambda_context(
            metrics.log_metrics(lambdascope.monitor(handler))
        )
    with capture_reports() as reports:
        assert wrapped({}, fake_context()) == {"statusCode": 200}
        assert wrapped({}, fake_context()) == {"statusCode": 200}
    assert [r["invocation"]["cold_start"] for r in reports] == [True, False]
    for report in reports:
        validate_report(report)
        assert [m["name"] for m in report["metrics"]] == ["orders"]
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert len(emf) == 2  # Powertools still flushed its own metrics, once per invocation


@pytest.mark.parametrize("order", ["monitor-outermost", "monitor-innermost"])
def test_with_sentry_serverless_function(order: str) -> None:
    import sentry_sdk

    # No transport (nothing leaves the test) and no integrations (they would patch botocore and
    # the standard library for the rest of the test session).
    sentry_sdk.init(dsn=None, default_integrations=False, auto_enabling_integrations=False)
    err = RuntimeError("boom")

    def handler(event: Any, context: Any) -> None:
        raise err

    if order == "monitor-outermost":
        wrapped = lambdascope.monitor(sentry_serverless.serverless_function(handler))
    else:
        wrapped = sentry_serverless.serverless_function(lambdascope.monitor(handler))
    with capture_reports() as reports, pytest.raises(RuntimeError) as info:
        wrapped({}, fake_context())
    assert info.value is err
    assert len(reports) == 1
    assert reports[0]["error"]["message"] == "boom"

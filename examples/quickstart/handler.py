"""A small monitored handler: a custom metric, a label, nested spans, a log line, and an error
now and then."""

import logging
import time

import lambdascope

log = logging.getLogger("quickstart")
log.setLevel(logging.INFO)

CATALOGUE = {f"sku-{i}": i * 1.5 for i in range(1000)}  # built at init, like real handlers do
lambdascope.metric("catalogue_size", len(CATALOGUE), "Count")  # import time: goes to report 1


@lambdascope.span("price")
def price(items: list[str]) -> float:
    with lambdascope.span("lookup", items=len(items)):
        time.sleep(0.002)
        return sum(CATALOGUE.get(sku, 0.0) for sku in items)


@lambdascope.monitor(service="quickstart")
def handler(event: dict, context: object) -> dict:
    items = event.get("items", [])
    if not items:
        raise ValueError("an order needs at least one item")
    if event.get("beta"):
        lambdascope.label("beta-user")
    total = price(items)
    lambdascope.metric("order_total", total, "None", currency="EUR")
    log.info("priced %d items", len(items))
    return {"statusCode": 200, "body": f"{total:.2f}"}

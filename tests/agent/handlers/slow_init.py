"""A handler whose module keeps working after @monitor: init ends when the module is done,
not at the decorator."""

import os
import time

import lambdascope


@lambdascope.monitor
def handler(event, context):
    return {"ok": True}


time.sleep(float(os.environ.get("SLOW_INIT_S", "1.0")))  # e.g. loading a model

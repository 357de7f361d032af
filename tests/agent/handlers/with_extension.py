"""A monitored handler beside an internal extension that registers at import time (as Lambda
requires: registration closes at the end of init) and records every INVOKE event it gets."""

import http.client
import json
import os
import threading

import lambdascope

_API = os.environ["AWS_LAMBDA_RUNTIME_API"]
_LOG = os.environ["EXTENSION_LOG"]


def _call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(_API)
    conn.request(method, "/2020-01-01/extension" + path, body, headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp, data


_resp, _ = _call(
    "POST",
    "/register",
    json.dumps({"events": ["INVOKE"]}),
    {"Lambda-Extension-Name": "tests-internal"},
)
_ID = _resp.getheader("Lambda-Extension-Identifier")


def _loop():
    while True:
        resp, data = _call("GET", "/event/next", headers={"Lambda-Extension-Identifier": _ID})
        if resp.status != 200:
            return
        event = json.loads(data)
        with open(_LOG, "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "request_id": event.get("requestId"),
                        "type": event["eventType"],
                        "deadline_ms": event.get("deadlineMs"),
                    }
                )
                + "\n"
            )


threading.Thread(target=_loop, name="tests-internal-extension", daemon=True).start()


@lambdascope.monitor
def handler(event, context):
    return {"request_id": context.aws_request_id}

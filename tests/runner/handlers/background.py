"""A monitored handler with a background thread that counts every 10 ms, and an internal
extension of its own (a thread registered with the Extensions API at import, as Lambda
requires) that logs each INVOKE event it gets to ``EXTENSION_LOG``."""

import http.client
import json
import os
import threading
import time

import lambdascope

ticks = 0


def _tick():
    global ticks
    while True:
        ticks += 1
        time.sleep(0.01)


threading.Thread(target=_tick, name="ticker", daemon=True).start()

_API = os.environ["AWS_LAMBDA_RUNTIME_API"]


def _call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(_API)
    conn.request(method, "/2020-01-01/extension" + path, body, headers or {})
    resp = conn.getresponse()
    return resp, resp.read()


_resp, _ = _call("POST", "/register", json.dumps({"events": ["INVOKE"]}),
                 {"Lambda-Extension-Name": "tests-logger"})
_ID = _resp.getheader("Lambda-Extension-Identifier")


def _extension():
    while True:
        resp, data = _call("GET", "/event/next", headers={"Lambda-Extension-Identifier": _ID})
        if resp.status != 200:
            return
        event = json.loads(data)
        time.sleep(0.05)  # work after the response: the sandbox is frozen only after it
        with open(os.environ["EXTENSION_LOG"], "a") as fh:
            fh.write(json.dumps({"type": event["eventType"], "request_id": event.get("requestId"),
                                 "ticks": ticks}) + "\n")


threading.Thread(target=_extension, name="tests-logger", daemon=True).start()


@lambdascope.monitor
def handler(event, context):
    return {"ticks": ticks, "pid": os.getpid(), "at": time.time()}

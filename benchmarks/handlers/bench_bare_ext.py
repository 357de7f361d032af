"""A bare handler beside an idle internal extension: a control for after_response.py.

The extension registers during init for ``INVOKE`` and asks for its next event as soon as it
gets one, doing nothing else. The sandbox then costs the Runtime API emulator what any sandbox
with an extension costs it (an event sent to the extension, its next request served), so the
difference to the monitored sandbox is the agent's own share.
"""

import http.client
import json
import os
import threading


def _extension() -> None:
    api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    conn = http.client.HTTPConnection(api, timeout=5.0)
    conn.request(
        "POST",
        "/2020-01-01/extension/register",
        json.dumps({"events": ["INVOKE"]}),
        {"Lambda-Extension-Name": "idle-control"},
    )
    resp = conn.getresponse()
    resp.read()
    ext_id = resp.getheader("Lambda-Extension-Identifier")
    conn.close()
    conn = http.client.HTTPConnection(api)

    def loop() -> None:
        while True:
            conn.request(
                "GET",
                "/2020-01-01/extension/event/next",
                headers={"Lambda-Extension-Identifier": ext_id},
            )
            resp = conn.getresponse()
            resp.read()

    threading.Thread(target=loop, name="idle-extension", daemon=True).start()


_extension()


def bare(event, context):
    return {"ok": True}

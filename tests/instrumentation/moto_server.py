"""A real AWS peer for the botocore instrumentation tests: moto in server mode on loopback.

The server runs in a thread of the test process (``moto.server.ThreadedMotoServer``) on
``127.0.0.1`` and a free port; boto3 reaches it over HTTP through ``endpoint_url``, so every call
goes through botocore's whole stack (signing, retries, urllib3, http.client) exactly as it does
against AWS. Credentials are fake and passed to the session, never read from the environment.
"""

from __future__ import annotations

import logging
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
ACCESS_KEY_ID = "AKIALAMBDASCOPETEST1"
SECRET_ACCESS_KEY = "lambdascope-fake-secret-access-key"


class MotoServer:
    """``with MotoServer() as aws: aws.client("s3").list_buckets()``."""

    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint = ""

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        # Werkzeug logs one line per request on its own logger; keep the test output readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ---------------------------------------------------------------------------
    def session(self) -> Any:
        import boto3

        return boto3.Session(
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )

    def config(self, **kwargs: Any) -> Any:
        from botocore.config import Config

        options: dict[str, Any] = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
        options.update(kwargs)
        return Config(**options)

    def client(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint)
        kwargs.setdefault("config", self.config())
        return self.session().client(service, **kwargs)

    def resource(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint)
        kwargs.setdefault("config", self.config())
        return self.session().resource(service, **kwargs)

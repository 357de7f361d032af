"""The examples' local cloud: AWS (moto in server mode) and the payment service, on loopback.

    python examples/devstack.py [--env-file FILE] [--huge-image-mb 80]

starts both, creates what the examples use (buckets, a table, a queue, sample images), writes
the environment the functions need to ``FILE`` as ``export NAME=VALUE`` lines (default
``.lambdascope/devstack.env``), prints one ``devstack ready`` line and runs until it gets
SIGINT or SIGTERM. Then, in another shell::

    source .lambdascope/devstack.env
    lambdascope invoke examples/orders_api/orders.py:handler \
        --event examples/orders_api/events/create_order.json

The functions use boto3's ``AWS_ENDPOINT_URL`` (every client goes to moto: no change to their
code) and fake credentials. ``scripts/demo.sh`` and ``tests/examples/`` use the same stack;
tests use :class:`Devstack` in-process.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "orders_api"))
from payment_service import PaymentService  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"
#: Fake credentials: moto accepts any, and nothing real is ever read or sent.
ACCESS_KEY_ID = "AKIAEXAMPLESDEVSTACK"
SECRET_ACCESS_KEY = "examples-devstack-fake-secret-key"

# image_pipeline
INPUT_BUCKET = "photos-incoming"
THUMBNAIL_BUCKET = "photos-thumbnails"
SAMPLE_PHOTOS = {  # key -> (width, height, colour)
    "uploads/harbour.ppm": (320, 240, True),
    "uploads/portrait.pgm": (180, 240, False),
    "uploads/tiny icon.ppm": (64, 48, True),
}
NOT_AN_IMAGE = "uploads/notes.txt"
HUGE_IMAGE = "uploads/panorama-huge.ppm"
HUGE_IMAGE_MB = 80
# orders_api
ORDERS_TABLE = "orders"
PAYMENT_PORT = 8686
# queue_pipeline
QUEUE_NAME = "shipments"
LABELS_BUCKET = "shipping-labels"


def make_image(width: int, height: int, colour: bool = True) -> bytes:
    """A binary PPM (colour) or PGM image: gradients and a ring, the same every time."""
    cx, cy, r2 = width // 2, height // 2, (min(width, height) // 3) ** 2
    rows = []
    for y in range(height):
        dy = (y - cy) ** 2
        if colour:
            rows.append(bytes(
                v for x in range(width)
                for v in ((x * 255) // width, (y * 255) // height,
                          255 if abs((x - cx) ** 2 + dy - r2) < r2 // 8 else 64)
            ))
        else:
            rows.append(bytes(
                230 if abs((x - cx) ** 2 + dy - r2) < r2 // 8 else ((x + y) * 255)
                // (width + height) for x in range(width)
            ))
    magic = b"P6" if colour else b"P5"
    return b"%s\n# lambdascope example\n%d %d\n255\n" % (magic, width, height) + b"".join(rows)


def make_huge_image(megabytes: int) -> bytes:
    """A colour PPM of about ``megabytes`` MB (a stripe pattern: quick to build)."""
    width = 4000
    height = max(1, megabytes * 1024 * 1024 // (width * 3))
    stripe = bytes(range(256)) * (width * 3 // 256) + bytes(width * 3 % 256)
    return b"P6\n%d %d\n255\n" % (width, height) + stripe * height


class Devstack:
    """moto (``ThreadedMotoServer``) and the payment service, each on a free loopback port
    unless one is given, with the examples' resources."""

    def __init__(self, moto_port: int = 0, payment_port: int = 0, slow_payment_s: float = 3.0,
                 huge_image_mb: int = HUGE_IMAGE_MB) -> None:
        self.moto_port = moto_port
        self.huge_image_mb = huge_image_mb
        try:
            self.payments = PaymentService(port=payment_port, slow_s=slow_payment_s)
        except OSError:  # the port is taken: any free one will do
            self.payments = PaymentService(port=0, slow_s=slow_payment_s)
        self.endpoint = ""
        self.queue_url = ""
        self._moto: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Devstack:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port,
                                        verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.payments.start()
        self.seed()
        return self

    def stop(self) -> None:
        self.payments.close()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> Devstack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients and environment -----------------------------------------------------------
    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        ).client(service, endpoint_url=self.endpoint)

    @property
    def env(self) -> dict[str, str]:
        """What the functions' environment needs (the runner passes its own on)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,  # the resources are there (and the runner follows it)
            "AWS_DEFAULT_REGION": REGION,
            "THUMBNAIL_BUCKET": THUMBNAIL_BUCKET,
            "ORDERS_TABLE": ORDERS_TABLE,
            "PAYMENT_URL": self.payments.url,
            "QUEUE_URL": self.queue_url,
            "LABELS_BUCKET": LABELS_BUCKET,
        }

    def env_file_text(self) -> str:
        lines = ["# written by examples/devstack.py: source it before lambdascope invoke",
                 "unset AWS_SESSION_TOKEN AWS_PROFILE AWS_SECURITY_TOKEN"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.env.items()]
        return "\n".join(lines) + "\n"

    # -- resources --------------------------------------------------------------------------
    def seed(self) -> None:
        s3 = self.client("s3")
        for bucket in (INPUT_BUCKET, THUMBNAIL_BUCKET, LABELS_BUCKET):
            s3.create_bucket(Bucket=bucket)
        for key, (width, height, colour) in SAMPLE_PHOTOS.items():
            s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=make_image(width, height, colour))
        s3.put_object(Bucket=INPUT_BUCKET, Key=NOT_AN_IMAGE,
                      Body=b"shopping list: milk, eggs, a better camera\n")
        if self.huge_image_mb > 0:
            s3.put_object(Bucket=INPUT_BUCKET, Key=HUGE_IMAGE,
                          Body=make_huge_image(self.huge_image_mb))
        self.client("dynamodb").create_table(
            TableName=ORDERS_TABLE,
            KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.queue_url = self.client("sqs").create_queue(
            QueueName=QUEUE_NAME, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", default=os.path.join(".lambdascope", "devstack.env"),
                        help="where to write the functions' environment")
    parser.add_argument("--moto-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--payment-port", type=int, default=PAYMENT_PORT,
                        help=f"default {PAYMENT_PORT} (one host on the service map, run after "
                             f"run), or a free port when it is taken")
    parser.add_argument("--slow-payment-s", type=float, default=3.0,
                        help="how long a tok_slow charge takes (default 3)")
    parser.add_argument("--huge-image-mb", type=int, default=HUGE_IMAGE_MB,
                        help=f"size of {HUGE_IMAGE} (default {HUGE_IMAGE_MB}; 0: none)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    began = time.monotonic()
    with Devstack(args.moto_port, args.payment_port, args.slow_payment_s,
                  args.huge_image_mb) as stack:
        path = Path(args.env_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(stack.env_file_text())
        tmp.replace(path)  # whoever waits for the file never reads half of it
        print(f"devstack ready in {time.monotonic() - began:.1f}s: AWS (moto) at "
              f"{stack.endpoint}, payments at {stack.payments.url}; environment in {path}",
              flush=True)
        stop.wait()
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

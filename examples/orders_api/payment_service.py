"""A stand-in for a card payment provider, for the orders API example: a small HTTP server on
loopback (standard library only).

``POST /charges`` with a JSON body ``{"order_id", "amount_cents", "currency", "card"}``:

* ``card`` ``tok_declined``: ``402 {"status": "declined", "reason": "insufficient_funds"}``;
* ``card`` ``tok_slow``: answers like a good card, but only after ``slow_s`` seconds (3 by
  default: longer than the function's timeout in the demo);
* a body that is not such JSON: ``400``;
* any other card: ``201 {"id": "ch_…", "status": "succeeded", …}``.

``GET /charges`` lists the charges received, each with the ``traceparent`` header it came with
(so a test can see the trace carried over HTTP).

Run it alone with ``python examples/orders_api/payment_service.py [--port 8686]``; it prints its
URL, the value the function wants in ``PAYMENT_URL``. ``examples/devstack.py`` starts it with
moto for the demo.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DECLINED_CARD = "tok_declined"
SLOW_CARD = "tok_slow"


class PaymentService(ThreadingHTTPServer):
    """``with PaymentService() as payments: ... payments.url ...``"""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0, slow_s: float = 3.0) -> None:
        super().__init__((host, port), _Handler)
        self.slow_s = slow_s
        self.lock = threading.Lock()
        self.charges: list[dict[str, Any]] = []
        self.url = f"http://{host}:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> PaymentService:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="payment-service", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self.server_close()

    def __enter__(self) -> PaymentService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def charge(self, order: dict[str, Any], traceparent: str | None) -> tuple[int, dict[str, Any]]:
        """The answer to one charge request, and a record of it."""
        card = order.get("card")
        amount = order.get("amount_cents")
        if not isinstance(card, str) or not isinstance(amount, int) or amount <= 0:
            return 400, {"status": "invalid", "reason": "card and a positive amount_cents"}
        if card == SLOW_CARD:
            time.sleep(self.slow_s)
        answer: dict[str, Any]
        if card == DECLINED_CARD:
            status, answer = 402, {"status": "declined", "reason": "insufficient_funds"}
        else:
            status, answer = 201, {"id": "ch_" + secrets.token_hex(8), "status": "succeeded",
                                   "amount_cents": amount,
                                   "currency": order.get("currency", "EUR")}
        with self.lock:
            self.charges.append({"order_id": order.get("order_id"), "card": card,
                                 "amount_cents": amount, "status": answer["status"],
                                 "traceparent": traceparent})
        return status, answer


class _Handler(BaseHTTPRequestHandler):
    server: PaymentService
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.split("?", 1)[0] != "/charges":
            self._answer(404, {"status": "not_found"})
            return
        try:
            order = json.loads(body)
        except ValueError:
            order = None
        if not isinstance(order, dict):
            self._answer(400, {"status": "invalid", "reason": "a JSON object is expected"})
            return
        self._answer(*self.server.charge(order, self.headers.get("traceparent")))

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] != "/charges":
            self._answer(404, {"status": "not_found"})
            return
        with self.server.lock:
            charges = list(self.server.charges)
        self._answer(200, {"charges": charges})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the caller gave up (a function killed at its deadline)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the orders example's fake payment provider")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--slow-s", type=float, default=3.0,
                        help=f"how long a {SLOW_CARD} charge takes (default 3)")
    args = parser.parse_args(argv)
    with PaymentService(port=args.port, slow_s=args.slow_s) as service:
        print(f"payment service listening on {service.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

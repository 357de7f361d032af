"""``lambdascope collector``: the collector service (arguments, start-up checks, uvicorn, the
retention, a clean shutdown).

Entry points, for the command line and for tests:

* ``main(argv: Sequence[str] | None = None) -> int``: parses ``argv`` (the words after
  ``lambdascope collector``; ``sys.argv[1:]`` when ``None``) and runs the service until SIGINT
  or SIGTERM. Returns the exit status: 0 after a clean shutdown, 2 on bad arguments or when the
  service cannot start (one line on stderr, never a traceback).
* ``run(host, port, db, token, retain_ms, alerts, public_url) -> int``: the same with the
  values already parsed (``retain_ms``: the retention in ms, or ``None`` to keep everything;
  ``alerts``: a rules file or ``None``, see docs/alerts.md; ``public_url``: the base of the
  dashboard links in alerts, or ``None`` for the address it listens on).
* ``add_arguments(parser)`` declares the flags on an ``argparse`` parser;
  ``run_args(namespace) -> int`` runs with what it parsed.

``python -m lambdascope.collector.server ...`` works too. With ``--port 0`` the system picks a
free port; the line printed when the service is ready gives the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8585
DEFAULT_DB = os.path.join(".lambdascope", "reports.db")
TOKEN_ENV = "LAMBDASCOPE_TOKEN"

PROG = "lambdascope collector"

log = logging.getLogger("lambdascope.collector")


class StartError(Exception):
    """The service cannot start: the message is the one line to print."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}); any address but "
                             f"loopback needs a token")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--db", metavar="FILE", default=DEFAULT_DB,
                        help=f"the store (default {DEFAULT_DB}; created if missing)")
    parser.add_argument("--token", metavar="T", default=None,
                        help=f"bearer token required on POST /v1/reports and /api/* (default: "
                             f"${TOKEN_ENV}; prefer the variable: a flag shows in ps)")
    parser.add_argument("--retain", metavar="AGE", type=_retain, default=None,
                        help="delete what is older than AGE (30m, 12h, 7d, 2w), checked every "
                             "minute while running (default: keep everything)")
    parser.add_argument("--alerts", metavar="FILE", type=_alerts_file, default=None,
                        help="alert rules (TOML, docs/alerts.md): evaluated every interval, "
                             "breaches and recoveries posted to the webhook once each; a file "
                             "with a mistake is refused at start with its line")
    parser.add_argument("--public-url", metavar="URL", type=_public_url, default=None,
                        help="the collector's address as people reach it, for the dashboard "
                             "links in alerts (default: the address it listens on)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="The collector service: POST /v1/reports for the agents' reports, a SQLite "
                    "store, the JSON API under /api/ (described at /openapi.json). Stops "
                    "cleanly on Ctrl-C or SIGTERM.",
    )
    add_arguments(parser)
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range (0-65535): {value}")
    return value


def _retain(text: str) -> float:
    from .app import parse_duration_ms

    try:
        value = parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the retention must be longer than 0")
    return value


def _alerts_file(text: str) -> str:
    try:
        check_alerts(text)
    except StartError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _public_url(text: str) -> str:
    from .alerts import check_url

    try:
        return check_url(text, "--public-url").rstrip("/")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_alerts(path: str) -> Any:
    """The alert rules file, read and checked (a :class:`~.alerts.RuleSet`); a mistake is a
    StartError naming the file, the line and the reason."""
    from .alerts import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        raise StartError(f"alert rules {exc}") from None


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback address."""
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
    except OSError as exc:
        raise StartError(f"cannot resolve --host {host!r}: {exc.strerror or exc}") from None
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def bind(host: str, port: int) -> socket.socket:
    name = host.strip("[]")
    try:
        infos = socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except OSError as exc:
        raise StartError(f"cannot resolve --host {host!r}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    address = sock.getsockname()
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def open_store(db: str, retain_ms: float | None = None) -> Any:
    """The store at ``db``; with ``retain_ms``, its writer prunes what is older every minute
    (between writes, starting now)."""
    from .store import Store, StoreError

    try:
        return Store(db, retain=retain_ms)
    except StoreError as exc:
        raise StartError(" ".join(str(exc).split())) from None
    except (OSError, ValueError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise StartError(f"cannot open the store {db}: {text}") from None



def _fast_event_loop() -> None:
    """uvloop's event loop where it is installed (the ``collector`` extra brings it on Linux);
    asyncio's own otherwise. uvicorn picks httptools for HTTP by itself when it is there."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db: str = DEFAULT_DB,
    token: str | None = None,
    retain_ms: float | None = None,
    alerts: str | None = None,
    public_url: str | None = None,
) -> int:
    """Run the collector until SIGINT or SIGTERM; 0 after a clean shutdown, 2 (with one line on
    stderr) when it cannot start. ``public_url``: the base of the dashboard links in alerts
    (default: the address it listens on)."""
    try:
        return _run(host, port, db, token, retain_ms, alerts, public_url)
    except StartError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2


def _run(
    host: str, port: int, db: str, token: str | None, retain_ms: float | None,
    alerts: str | None, public_url: str | None = None,
) -> int:
    import uvicorn

    from .app import create_app

    if token is not None and not token.strip():
        raise StartError("the token is empty")
    if not token and not is_loopback(host):
        raise StartError(
            f"refusing to listen on {host} without a token: anyone who can reach it could send "
            f"and read reports (set --token or {TOKEN_ENV}, or listen on 127.0.0.1)"
        )
    rules = check_alerts(alerts) if alerts is not None else None
    # Our own handlers for SIGINT and SIGTERM, under uvicorn's: a signal that arrives before
    # uvicorn listens (or while the store closes) is noted rather than killing the process, and
    # after its graceful shutdown uvicorn re-raises the signal it caught, which lands here too
    # instead of ending the process before the store is closed.
    _signals.clear()
    previous = {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    sock = store = app = engine = None
    try:
        sock = bind(host, port)
        store = open_store(db, retain_ms)
        if rules is not None:
            from .alerts import AlertEngine, state_path_for

            # Evaluated in a thread of its own on a read connection: never in the way of
            # ingestion; the state file sits beside the store.
            engine = AlertEngine(rules, store.reader, state_path=state_path_for(db),
                                 base_url=public_url or url_of(sock))
        app = create_app(store, token, alerts=engine)
        config = uvicorn.Config(
            app, access_log=False, log_level="warning", lifespan="off", server_header=False,
            proxy_headers=False, timeout_graceful_shutdown=10,
        )
        server = _Server(config)
        server.ready_line = (
            f"lambdascope collector listening on {url_of(sock)} (store {db}"
            + (", token required" if token else ", no token")
            + (f", keeping {_age(retain_ms)}" if retain_ms else "")
            + ")"
        )
        if rules is not None:
            from .alerts import describe

            server.ready_line += f"; {describe(rules)}"
        if engine is not None:
            engine.start()
        if not _signals:
            _fast_event_loop()
            asyncio.run(server.serve(sockets=[sock]))
    finally:
        if sock is not None:
            sock.close()
        if engine is not None:
            engine.stop()  # before the store closes: it reads it
        if app is not None:
            app.state.close_readers()
        if store is not None:
            store.close()  # what is queued is written first
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


_signals: list[int] = []


def _note_signal(signum: int, frame: Any) -> None:
    _signals.append(signum)


def _age(ms: float | None) -> str:
    if not ms:
        return "everything"
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000),
                       ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{int(ms // size)}{unit}"
    return f"{ms:g}ms"


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        ready_line = ""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if _signals:  # asked to stop before uvicorn caught signals itself
                self.should_exit = True
            elif self.started and self.ready_line:
                print(self.ready_line, flush=True)

    return Server


def _Server(config: Any) -> Any:  # noqa: N802 - a class made on first use (uvicorn is optional)
    return _server_class()(config)


def run_args(args: argparse.Namespace) -> int:
    token = args.token if args.token is not None else (os.environ.get(TOKEN_ENV) or None)
    return run(args.host, args.port, args.db, token, args.retain, args.alerts,
               getattr(args, "public_url", None))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_args(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


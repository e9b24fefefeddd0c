"""`ordersaga serve`: the service over HTTP and WebSocket, from one process or several (--workers)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import importlib.util
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from api.settings import Settings
from api.subcommands.database import database_failures_in_one_line, on_database
from api.subcommands.serve_options import add_options, settings_from
from persistence.database import is_sqlite

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# `serve --workers N` hands its command line to the worker processes through the environment.
WORKER_ARGS = "ORDERSAGA_SERVE_ARGS"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `serve` to `commands`."""
    serve = commands.add_parser("serve", help="serve GraphQL (and GraphiQL) over HTTP and WebSocket")
    add_options(serve)
    serve.set_defaults(run=_serve)


def is_loopback(host: str) -> bool:
    """Whether `host` (a --host value) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def uncollected() -> Iterator[None]:
    """No garbage collection in the block, which imports the service: its modules make objects by
    the hundred thousand, none of them garbage, and the collector went through them again and again,
    about a tenth of a second of CPU of every start. A started service collects once (Service.start)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _serve(args: argparse.Namespace) -> None:
    settings = settings_from(args)
    if settings.otel and importlib.util.find_spec("opentelemetry.sdk") is None:
        sys.exit("tracing needs the otel extra: pip install 'ordersaga[otel]'")
    with database_failures_in_one_line(settings.database_url):  # a URL that does not parse
        # On SQLite the one process drives every saga, so a server needs the file alone.
        alone = is_sqlite(settings.database_url)
    if alone and args.workers > 1:
        sys.exit(
            "--workers needs PostgreSQL: a SQLite database is served by one process, which "
            "drives every saga; serve several processes over PostgreSQL (--database-url)"
        )
    if not settings.auth.configured and not is_loopback(args.host) and not args.allow_anonymous:
        sys.exit(
            f"refusing to serve {args.host} without authentication: configure --auth-secret-file or "
            "--auth-jwks-url, or pass --allow-anonymous to let anyone who reaches it act as admin"
        )
    # The service only now, once the options are checked: a command refused for its options answers
    # without the second or so of CPU that importing it takes.
    with uncollected():
        from api.service import Service
        from api.web.app import create_app
        from api.web.http_server import AnnouncingServer, server_config
        from persistence.migrate import upgrade
        from persistence.serving import DatabaseInUse, claim_database

    try:
        with database_failures_in_one_line(settings.database_url):  # a driver missing or not async
            app = create_app(Service(settings))
    except ValueError as error:  # a rate limit that does not parse, a storage it cannot use
        sys.exit(f"cannot serve: {error}")
    # Bound before the database is touched: a port already taken leaves no database made or migrated.
    # Listening at once, so that a request sent as soon as the URL is printed waits, not refused.
    bound = listen(args.host, args.port)

    async def prepare(engine: AsyncEngine) -> None:
        # Here rather than in the service's start, so that a failure is one line, not a traceback.
        async with claim_database(settings.database_url, exclusive=alone):
            await upgrade(engine)

    try:
        on_database(settings.database_url, prepare)
    except DatabaseInUse:
        if alone:
            sys.exit(
                f"{make_url(settings.database_url).database} is already served by another ordersaga "
                "process (or rebuilt): a SQLite database takes one; stop that one, or serve several "
                "processes over PostgreSQL"
            )
        sys.exit("a projections rebuild is using the database: serve once it has finished")

    if args.workers > 1:
        _serve_workers(args, settings, bound)  # each worker builds its own; `app` only checked
        return

    def listening(base_url: str) -> None:
        print(f"GraphiQL: {base_url}/graphql")
        print(f"Console: {base_url}/dashboard")
        if args.enable_fault_injection:
            print("Fault injection is on: setParticipantFault makes a participant slow or failing")
        sys.stdout.flush()

    AnnouncingServer(server_config(app, settings, args.host, args.port), listening).run(sockets=bound)


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to `host:port` and listening, as asyncio's create_server binds them for uvicorn:
    one for each address the host resolves to (a family the system lacks skipped), an IPv6 one for
    IPv6 alone when an IPv4 one is beside it (`::` alone takes both); with port 0, every one on the
    port the system gave the first. A port that cannot be had ends the command with one line."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        sys.exit(f"cannot serve on {host}:{port}: {error.strerror}")
    families = {family for family, *_ in addresses}
    bound: list[socket.socket] = []
    for family, kind, protocol, _, address in dict.fromkeys(addresses):
        try:
            listening = socket.socket(family, kind, protocol)
        except OSError:  # a family the system lacks
            continue
        bound.append(listening)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listening.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, socket.AF_INET in families)
        if bound[1:]:  # port 0 takes the first's port for all
            address = (address[0], bound[0].getsockname()[1], *address[2:])
        try:
            listening.bind(address)
        except OSError as error:
            if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):  # IPv6 turned off, say
                bound.pop().close()
                continue
            for each in bound:
                each.close()
            sys.exit(f"cannot serve on {host}:{port}: {error.strerror or error}")
        listening.set_inheritable(True)  # for `--workers`' processes
        listening.listen(2048)  # uvicorn's default backlog
    if not bound:
        sys.exit(f"cannot serve on {host}:{port}: no address of it can be had on this system")
    return bound


def _serve_workers(args: argparse.Namespace, settings: Settings, bound: list[socket.socket]) -> None:
    """N processes accepting on `bound` (uvicorn's supervisor), each building its own service from
    this command line (`worker_app`)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api.web.http_server import base_url, server_options

    os.environ[WORKER_ARGS] = json.dumps(args.argv)
    config = uvicorn.Config(
        "api.cli:worker_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        # The same protocol and limits as one process; see worker_app for the header timeout.
        http="api.web.http_server:HeaderDeadline",
        **server_options(settings),
    )
    # The URL printed has the port the socket holds (the system's choice for --port 0).
    url = base_url(bound[0])
    print(f"GraphiQL: {url}/graphql ({args.workers} workers)")
    print(f"Console: {url}/dashboard", flush=True)
    Multiprocess(config, sockets=bound).run()

"""The `ordersaga` command: serve, migrate, projections rebuild, export-schema, token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import ipaddress
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.access.auth import DEFAULT_LEEWAY, AuthConfig, Role, mint_token, read_secret
from api.access.rate_limits import IN_MEMORY
from api.observability.logs import LOG_FORMATS, configure_logging
from api.settings import DEFAULT_LEASE_TTL, OTLP_SETTINGS, Settings, StreamSettings, default_instance
from domain.model.problems import is_storable
from domain.model.saga import SagaPolicy
from persistence.database import default_database_url, is_sqlite

if TYPE_CHECKING:
    from starlette.applications import Starlette

T = TypeVar("T")

# What a database URL that names nothing usable, or a database that does not answer, raises: the URL
# (ArgumentError, a missing driver), the network (OSError; OverflowError for a port past 65535), the
# database itself (DBAPIError), or its migrations (CommandError: a revision this version does not know).
DATABASE_FAILURES = (SQLAlchemyError, OSError, OverflowError, ImportError, CommandError)
# `serve --workers N` hands its command line to the worker processes through the environment.
_WORKER_ARGS = "ORDERSAGA_SERVE_ARGS"
# Set to 0, the same as `serve --no-fast-paths`.
FAST_PATHS_SETTING = "ORDERSAGA_FAST_PATHS"
# What NATS takes as a stream name and as literal subject tokens, narrowed to characters every client
# and tool handles (no wildcards, dots in names, spaces or path separators).
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
NATS_SCHEMES = ("nats", "tls")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv
    configure_logging(getattr(args, "log_format", "text"), default_instance())
    args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ordersaga", description="A GraphQL order service run by sagas.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve GraphQL (and GraphiQL) over HTTP and WebSocket")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8000, help="port to listen on, 0 for any free one (default %(default)s)"
    )
    _database_option(serve)
    serve.add_argument("--demo", action="store_true", help="load a small demo catalog once (default off)")
    serve.add_argument(
        "--otel",
        action="store_true",
        help="send OpenTelemetry spans per saga and step over OTLP (default off, on when "
        "OTEL_EXPORTER_OTLP_ENDPOINT is set; needs the otel extra)",
    )
    serve.add_argument(
        "--log-format", choices=LOG_FORMATS, default="text", help="log lines as text or JSON (default text)"
    )
    defaults = SagaPolicy()
    for name, default in [
        ("reserve-timeout", defaults.reserve_timeout),
        ("confirm-timeout", defaults.confirm_timeout),
        ("shipment-timeout", defaults.shipment_timeout),
        ("compensation-timeout", defaults.compensation_timeout),
    ]:
        serve.add_argument(
            f"--{name}",
            type=float,
            default=default.total_seconds(),
            metavar="S",
            help=f"seconds (default {default.total_seconds():g})",
        )
    serve.add_argument(
        "--max-retries",
        type=int,
        default=defaults.max_attempts,
        metavar="N",
        help=f"attempts per step, the first included (default {defaults.max_attempts})",
    )
    serve.add_argument(
        "--retry-backoff",
        type=float,
        default=defaults.retry_backoff.total_seconds(),
        metavar="S",
        help="seconds to wait after attempt n, times n (default %(default)s)",
    )
    serve.add_argument(
        "--enable-fault-injection",
        action="store_true",
        help="let GraphQL stage slow or failing participants (setParticipantFault; default off)",
    )
    serve.add_argument(
        "--fault-seed",
        type=int,
        metavar="N",
        help="seed the draws of a staged failureRate, to repeat a run (default: a fresh seed each run)",
    )
    limits = Settings(database_url="")
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=limits.max_body_bytes,
        metavar="N",
        help="largest request body (and WebSocket message) accepted; larger ones get 413 "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=limits.body_timeout,
        metavar="S",
        help="seconds a request body may take to arrive; slower ones get 408 (default %(default)g)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=limits.header_timeout,
        metavar="S",
        help="seconds a request's headers may take to arrive before the connection is closed "
        "(default %(default)g)",
    )
    serve.add_argument(
        "--no-fast-paths",
        dest="fast_paths",
        action="store_false",
        default=os.environ.get(FAST_PATHS_SETTING, "1") != "0",
        help="run on the libraries' public paths only, without the shortcuts that reach into their "
        f"internals (docs/library-internals.md); answers are the same (default on; {FAST_PATHS_SETTING}=0 "
        "turns them off too)",
    )
    _auth_options(serve)
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve a non-loopback --host without authentication, everyone admin (default off)",
    )
    serve.add_argument(
        "--mutation-rate-limit",
        default=os.environ.get("ORDERSAGA_MUTATION_RATE_LIMIT"),
        metavar="LIMITS",
        help="mutations per principal, e.g. '5/second;100/minute'; env ORDERSAGA_MUTATION_RATE_LIMIT "
        "(default: '20/second;600/minute' with authentication, none without)",
    )
    serve.add_argument(
        "--rate-limit-storage",
        default=os.environ.get("ORDERSAGA_RATE_LIMIT_STORAGE", IN_MEMORY),
        metavar="URI",
        help="where the mutation rate limits are counted: 'memory://' (this process; the default) or "
        "a store several processes share, so that a limit holds for the whole deployment, e.g. "
        "'redis://127.0.0.1:6379/0' (any asynchronous storage of the limits library); env "
        "ORDERSAGA_RATE_LIMIT_STORAGE",
    )
    serve.add_argument(
        "--lease-ttl",
        type=float,
        default=DEFAULT_LEASE_TTL.total_seconds(),
        metavar="S",
        help="PostgreSQL: seconds a saga's lease lasts unless renewed, so how long a dead process's "
        "sagas wait before another takes them over (default %(default)g)",
    )
    _stream_options(serve)
    serve.add_argument(
        "--warehouse-service-url",
        default=os.environ.get("ORDERSAGA_WAREHOUSE_SERVICE_URL"),
        metavar="URL",
        help="send every warehouse's shipment commands to this warehouse service over HTTP, unless the "
        "catalog gives the warehouse a serviceUrl of its own (default: the built-in warehouse); needs "
        "--warehouse-service-secret-file; env ORDERSAGA_WAREHOUSE_SERVICE_URL",
    )
    serve.add_argument(
        "--warehouse-service-secret-file",
        default=os.environ.get("ORDERSAGA_WAREHOUSE_SERVICE_SECRET_FILE"),
        metavar="PATH",
        help="the secret (whsec_ and base64, as for webhooks) that signs every command sent to a "
        "warehouse service (default: none, and then no warehouse may be remote); env "
        "ORDERSAGA_WAREHOUSE_SERVICE_SECRET_FILE",
    )
    serve.add_argument(
        "--allow-private-webhook-urls",
        action="store_true",
        help="let webhook endpoints resolve to loopback, private or link-local addresses (default off: "
        "refused when authentication is configured, loopback allowed in development mode)",
    )
    for name, seconds, what in [
        ("connect-timeout", limits.webhook_connect_timeout, "seconds a webhook POST may take to connect"),
        ("timeout", limits.webhook_timeout, "seconds a webhook POST may take in all, or it failed"),
        (
            "retry-for",
            limits.webhook_retry_for.total_seconds(),
            "seconds a failed webhook delivery is retried",
        ),
        (
            "keep-succeeded",
            limits.webhook_keep_succeeded.total_seconds(),
            "seconds a webhook delivery that succeeded after failing stays listed",
        ),
    ]:
        serve.add_argument(
            f"--webhook-{name}",
            type=float,
            default=seconds,
            metavar="S",
            help=f"{what} (default %(default)g)",
        )
    serve.add_argument(
        "--webhook-disable-after",
        type=float,
        metavar="S",
        help="seconds a webhook endpoint may fail without one success before it is disabled "
        "(default: --webhook-retry-for)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="PostgreSQL: serve from N processes sharing the port (default 1)",
    )
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    _database_option(migrate)
    migrate.set_defaults(run=_migrate)

    projections = commands.add_parser("projections", help="maintain the read tables")
    projection_commands = projections.add_subparsers(required=True, metavar="COMMAND")
    rebuild = projection_commands.add_parser(
        "rebuild",
        help="replay the journal into fresh read tables and check stock against it (service stopped)",
    )
    _database_option(rebuild)
    rebuild.add_argument(
        "--batch-size", type=int, default=500, metavar="N", help="sagas per transaction (default 500)"
    )
    rebuild.set_defaults(run=_rebuild_projections)

    export = commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    export.add_argument("--output", type=Path, help="write to this file instead")
    export.set_defaults(run=_export_schema)

    token = commands.add_parser("token", help="print a signed token (HS256) for trying roles out")
    token.add_argument("--subject", required=True, help="the token's sub: for a customer, its customer id")
    token.add_argument(
        "--role", action="append", required=True, choices=[r.value for r in Role], help="repeat for several"
    )
    token.add_argument(
        "--warehouse",
        action="append",
        metavar="CODE",
        help="for a warehouse token: a warehouse it speaks for, repeat for several (default: every one)",
    )
    token.add_argument("--ttl", type=float, default=3600, metavar="SECONDS", help="lifetime (default 3600)")
    _auth_secret_option(token)
    for claim, metavar in [("issuer", "ISS"), ("audience", "AUD")]:
        env = f"ORDERSAGA_AUTH_{claim.upper()}"
        token.add_argument(f"--auth-{claim}", default=os.environ.get(env), metavar=metavar, help=f"env {env}")
    token.set_defaults(run=_token)
    return parser


def _stream_options(parser: argparse.ArgumentParser) -> None:
    defaults = StreamSettings(url="")
    parser.add_argument(
        "--nats-url",
        metavar="URL",
        help="publish every journal event to a NATS JetStream stream on this server, e.g. "
        "nats://127.0.0.1:4222 (default: no stream)",
    )
    parser.add_argument(
        "--nats-stream",
        default=defaults.stream,
        metavar="NAME",
        help="the JetStream stream, made if missing (default %(default)s)",
    )
    parser.add_argument(
        "--nats-subject-prefix",
        default=defaults.subject_prefix,
        metavar="P",
        help="events go out on P.sagas.<sagaId>; a stream made here takes P.> (default %(default)s)",
    )
    parser.add_argument(
        "--nats-duplicate-window",
        type=float,
        default=defaults.duplicate_window.total_seconds(),
        metavar="S",
        help="seconds a stream made here drops a repeated event; longer than any pause between a "
        "publish and its repeat: a restart, --lease-ttl (default %(default)g)",
    )


def _stream_settings(args: argparse.Namespace) -> StreamSettings | None:
    """The stream `serve` publishes to, None without --nats-url. Ends the command with one line for a
    value NATS would refuse, or a duplicate window that a lease takeover would outlast."""
    if args.nats_url is None:
        return None
    url = urlsplit(args.nats_url)
    if url.scheme not in NATS_SCHEMES or not url.hostname:
        sys.exit(f"--nats-url must be a URL such as nats://127.0.0.1:4222, not {args.nats_url!r}")
    if not _STREAM_NAME.fullmatch(args.nats_stream):
        sys.exit("--nats-stream must be letters, digits, '-' and '_' only")
    if not _SUBJECT_PREFIX.fullmatch(args.nats_subject_prefix):
        sys.exit("--nats-subject-prefix must be tokens of letters, digits, '-' and '_', joined by dots")
    if args.nats_duplicate_window <= args.lease_ttl:
        sys.exit(
            "--nats-duplicate-window must be longer than --lease-ttl: a process that takes the stream "
            "over after a lease time repeats the publishes in flight, and the window must drop them"
        )
    return StreamSettings(
        url=args.nats_url,
        stream=args.nats_stream,
        subject_prefix=args.nats_subject_prefix,
        duplicate_window=timedelta(seconds=args.nats_duplicate_window),
    )


def _auth_secret_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--auth-secret-file",
        type=Path,
        default=os.environ.get("ORDERSAGA_AUTH_SECRET_FILE"),
        metavar="PATH",
        help="a file holding the HS256 secret (at least 32 bytes); env ORDERSAGA_AUTH_SECRET_FILE "
        "(default: none; with no --auth-jwks-url either, development mode: everyone is admin)",
    )


def _auth_options(parser: argparse.ArgumentParser) -> None:
    _auth_secret_option(parser)
    for name, metavar, what in [
        ("jwks-url", "URL", "the OIDC provider's JWKS URL (RS256/ES256 keys)"),
        ("issuer", "ISS", "the iss every token must carry"),
        ("audience", "AUD", "the aud every token must carry"),
    ]:
        env = f"ORDERSAGA_AUTH_{name.replace('-', '_').upper()}"
        parser.add_argument(
            f"--auth-{name}",
            default=os.environ.get(env),
            metavar=metavar,
            help=f"{what}; env {env} (default: none)",
        )
    parser.add_argument(
        "--auth-leeway",
        type=float,
        # A string default goes through `type` too, so a bad environment value is refused like an option.
        default=os.environ.get("ORDERSAGA_AUTH_LEEWAY", str(DEFAULT_LEEWAY.total_seconds())),
        metavar="SECONDS",
        help="how long past its exp a token is still taken, for clock skew; a WebSocket ends then; "
        f"env ORDERSAGA_AUTH_LEEWAY (default {DEFAULT_LEEWAY.total_seconds():g})",
    )


def _auth_config(args: argparse.Namespace) -> AuthConfig:
    if args.auth_secret_file and args.auth_jwks_url:
        sys.exit("choose one of --auth-secret-file and --auth-jwks-url")
    secret = _secret(args.auth_secret_file) if args.auth_secret_file else None
    if args.auth_leeway < 0:
        sys.exit("--auth-leeway must be 0 seconds or more")
    return AuthConfig(
        secret=secret,
        jwks_url=args.auth_jwks_url,
        issuer=args.auth_issuer,
        audience=args.auth_audience,
        leeway=timedelta(seconds=args.auth_leeway),
    )


def _secret(path: str | Path) -> str:
    try:
        return read_secret(Path(path))
    except (OSError, ValueError) as error:
        sys.exit(f"cannot use the auth secret: {error}")


def _warehouse_secret(args: argparse.Namespace) -> str | None:
    """The warehouse service's signing secret, checked; exits when the options do not fit."""
    from api.outbound.addresses import url_problem
    from api.outbound.signing import Signer

    url, path = args.warehouse_service_url, args.warehouse_service_secret_file
    if url is not None and (problem := url_problem(url)) is not None:
        sys.exit(f"--warehouse-service-url: {problem}")
    if path is None:
        if url is not None:
            sys.exit("--warehouse-service-url needs --warehouse-service-secret-file: every command is signed")
        return None
    try:
        secret = Path(path).read_text().strip()
        Signer(secret)
    except Exception as error:  # unreadable, or not a whsec_ secret: standardwebhooks says which
        sys.exit(f"cannot use the warehouse service secret: {type(error).__name__}: {error}")
    return secret


def is_loopback(host: str) -> bool:
    """Whether `host` (a --host value) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db (default: SQLite, ordersaga.db "
        "in the working directory)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    policy = SagaPolicy(
        reserve_timeout=timedelta(seconds=args.reserve_timeout),
        confirm_timeout=timedelta(seconds=args.confirm_timeout),
        shipment_timeout=timedelta(seconds=args.shipment_timeout),
        compensation_timeout=timedelta(seconds=args.compensation_timeout),
        max_attempts=args.max_retries,
        retry_backoff=timedelta(seconds=args.retry_backoff),
    )
    return Settings(
        database_url=args.database_url or default_database_url(),
        policy=policy,
        demo=args.demo,
        otel=args.otel or any(os.environ.get(name) for name in OTLP_SETTINGS),
        fault_injection=args.enable_fault_injection,
        fault_seed=args.fault_seed,
        max_body_bytes=args.max_body_bytes,
        body_timeout=args.body_timeout,
        header_timeout=args.header_timeout,
        auth=_auth_config(args),
        mutation_limits=args.mutation_rate_limit,
        rate_limit_storage=args.rate_limit_storage,
        lease_ttl=timedelta(seconds=args.lease_ttl),
        freeze_start_up=True,
        fast_paths=args.fast_paths,
        stream=_stream_settings(args),
        warehouse_service_url=args.warehouse_service_url,
        warehouse_service_secret=_warehouse_secret(args),
        allow_private_webhook_urls=args.allow_private_webhook_urls,
        webhook_connect_timeout=args.webhook_connect_timeout,
        webhook_timeout=args.webhook_timeout,
        webhook_retry_for=timedelta(seconds=args.webhook_retry_for),
        webhook_disable_after=(
            None if args.webhook_disable_after is None else timedelta(seconds=args.webhook_disable_after)
        ),
        webhook_keep_succeeded=timedelta(seconds=args.webhook_keep_succeeded),
    )


def _serve(args: argparse.Namespace) -> None:
    from api.service import Service
    from api.web.app import create_app
    from api.web.http_server import AnnouncingServer, server_config
    from persistence.migrate import upgrade
    from persistence.serving import DatabaseInUse, claim_database

    if args.max_retries < 1:
        sys.exit("--max-retries must be at least 1")
    if args.workers < 1:
        sys.exit("--workers must be at least 1")
    if args.lease_ttl <= 0:
        sys.exit("--lease-ttl must be more than 0 seconds")
    webhook_seconds = [
        ("--webhook-connect-timeout", args.webhook_connect_timeout),
        ("--webhook-timeout", args.webhook_timeout),
        ("--webhook-retry-for", args.webhook_retry_for),
        ("--webhook-disable-after", args.webhook_disable_after),
        ("--webhook-keep-succeeded", args.webhook_keep_succeeded),
    ]
    for option, seconds in webhook_seconds:
        if seconds is not None and seconds <= 0:
            sys.exit(f"{option} must be more than 0 seconds")
    settings = _settings(args)
    if settings.otel and importlib.util.find_spec("opentelemetry.sdk") is None:
        sys.exit("tracing needs the otel extra: pip install 'ordersaga[otel]'")
    with _database_failures_in_one_line(settings.database_url):  # a URL that does not parse
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
    try:
        with _database_failures_in_one_line(settings.database_url):  # a driver missing or not async
            app = create_app(Service(settings))
    except ValueError as error:  # a rate limit that does not parse, a storage it cannot use
        sys.exit(f"cannot serve: {error}")

    async def prepare(engine: AsyncEngine) -> None:
        # Here rather than in the service's start, so that a failure is one line, not a traceback.
        async with claim_database(settings.database_url, exclusive=alone):
            await upgrade(engine)

    try:
        _on_database(settings.database_url, prepare)
    except DatabaseInUse:
        if alone:
            sys.exit(
                f"{make_url(settings.database_url).database} is already served by another ordersaga "
                "process (or rebuilt): a SQLite database takes one; stop that one, or serve several "
                "processes over PostgreSQL"
            )
        sys.exit("a projections rebuild is using the database: serve once it has finished")

    if args.workers > 1:
        _serve_workers(args, settings)  # each worker builds its own; `app` only checked the settings
        return

    def listening(base_url: str) -> None:
        print(f"GraphiQL: {base_url}/graphql")
        print(f"Console: {base_url}/dashboard")
        if args.enable_fault_injection:
            print("Fault injection is on: setParticipantFault makes a participant slow or failing")
        sys.stdout.flush()

    AnnouncingServer(server_config(app, settings, args.host, args.port), listening).run()


def _serve_workers(args: argparse.Namespace, settings: Settings) -> None:
    """N processes accepting on one socket (uvicorn's supervisor), each building its own service
    from this command line (`worker_app`)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api.web.http_server import base_url

    os.environ[_WORKER_ARGS] = json.dumps(args.argv)
    config = uvicorn.Config(
        "api.cli:worker_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="warning",
        # The same protocol and limits as one process; see worker_app for the header timeout.
        http="api.web.http_server:HeaderDeadline",
        ws_max_size=settings.max_body_bytes,
    )
    # Bound here, as uvicorn.run would, so that the URL printed has the port the socket holds (the
    # system's choice for --port 0); listening at once, so that a request sent as soon as it is
    # printed waits for the workers instead of being refused.
    listening = config.bind_socket()
    listening.listen(config.backlog)
    url = base_url(listening)
    print(f"GraphiQL: {url}/graphql ({args.workers} workers)")
    print(f"Console: {url}/dashboard", flush=True)
    Multiprocess(config, sockets=[listening]).run()


def worker_app() -> Starlette:
    """The application of one `serve --workers N` process, from the command line `serve` was given."""
    from api.service import Service
    from api.web.app import create_app
    from api.web.http_server import HeaderDeadline

    args = _parser().parse_args(json.loads(os.environ[_WORKER_ARGS]))
    configure_logging(args.log_format, default_instance())
    settings = _settings(args)
    # uvicorn loads the protocol by name in each worker; its deadline is set here, in that worker.
    HeaderDeadline.header_timeout = settings.header_timeout
    return create_app(Service(settings))


def _migrate(args: argparse.Namespace) -> None:
    from persistence.migrate import current_revision, upgrade

    async def migrate(engine: AsyncEngine) -> tuple[list[str], str | None]:
        applied = await upgrade(engine)
        return [f"applied {m.revision}: {m.doc}" for m in applied], await current_revision(engine)

    applied, revision = _on_database(args.database_url or default_database_url(), migrate)
    print("\n".join(applied) if applied else f"database is up to date (revision {revision})")


def _rebuild_projections(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from persistence.codec import UnreadableEvent
    from persistence.migrate import upgrade
    from persistence.read.rebuild import RebuildReport, count_events, rebuild_projections
    from persistence.serving import DatabaseInUse, claim_database

    if args.batch_size < 1:
        sys.exit("--batch-size must be at least 1")
    url = args.database_url or default_database_url()

    async def rebuild(engine: AsyncEngine) -> RebuildReport:
        # Alone: a server's projection would write the read tables while they are rebuilt.
        async with claim_database(url, exclusive=True):
            await upgrade(engine)
            # On a terminal, the events replayed so far, their rate and the time left.
            with tqdm(
                total=await count_events(engine), unit=" events", disable=not sys.stderr.isatty()
            ) as bar:
                return await rebuild_projections(engine, args.batch_size, bar.update)

    try:
        report = _on_database(url, rebuild)
    except DatabaseInUse:
        sys.exit("a server is using the database: stop every ordersaga serve on it, then rebuild")
    except UnreadableEvent as unreadable:
        sys.exit(f"the journal holds an event this release cannot read: {unreadable}")
    print(f"rebuilt the read tables from {report.sagas} sagas in {report.batches} batches")
    problems = []
    if report.stock_mismatches:
        lines = "\n".join(f"  {m.describe()}" for m in report.stock_mismatches)
        problems.append(f"stock disagrees with the journal's unreleased reservations:\n{lines}")
    if report.unexplained_stock:
        lines = "\n".join(f"  {u.describe()}" for u in report.unexplained_stock)
        problems.append(f"stock disagrees with its movements:\n{lines}")
    if problems:
        sys.exit("\n".join(problems))
    print("stock agrees with the journal and with its movements")


def _on_database(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work` on an engine for `url`. A URL that names no usable database, or a database that
    cannot be reached, ends the command with one line saying so (exit status 1), not a traceback."""
    from persistence.database import make_engine

    async def run() -> T:
        engine = make_engine(url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with _database_failures_in_one_line(url):
        _check_sqlite_directory(url)
        return asyncio.run(run())


@contextlib.contextmanager
def _database_failures_in_one_line(url: str) -> Iterator[None]:
    """Ends the command with one line (exit status 1) when the block fails for want of a usable
    database at `url`, not with a traceback."""
    try:
        yield
    except DATABASE_FAILURES as failure:
        sys.exit(f"cannot use the database {_shown(url)}: {_reason(failure)}")


def _check_sqlite_directory(url: str) -> None:
    # Said plainly here; SQLite itself only says "unable to open database file".
    if is_sqlite(url) and (database := make_url(url).database) and database != ":memory:":
        directory = Path(database).parent
        if not directory.is_dir():
            raise OSError(f"no directory {directory} to hold the SQLite database")


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _reason(failure: BaseException) -> str:
    """The first line of what went wrong, without SQLAlchemy's wrapping (statement, parameters, link)."""
    cause = failure.orig if isinstance(failure, DBAPIError) and failure.orig is not None else failure
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _token(args: argparse.Namespace) -> None:
    if args.auth_secret_file is None:
        sys.exit("--auth-secret-file (or ORDERSAGA_AUTH_SECRET_FILE) is needed to sign a token")
    if args.ttl <= 0:
        sys.exit("--ttl must be positive")
    if not args.subject.strip() or not is_storable(args.subject):
        # The server refuses such a subject (UNAUTHENTICATED), so a token for it would be of no use.
        sys.exit("--subject must be text with no NUL, lone surrogate or nothing but spaces")
    secret = _secret(args.auth_secret_file)
    roles = [Role(role) for role in dict.fromkeys(args.role)]
    ttl = timedelta(seconds=args.ttl)
    warehouses = None if args.warehouse is None else list(dict.fromkeys(args.warehouse))
    print(
        mint_token(
            secret,
            args.subject,
            roles,
            ttl,
            issuer=args.auth_issuer,
            audience=args.auth_audience,
            warehouses=warehouses,
        )
    )


def _export_schema(args: argparse.Namespace) -> None:
    from api.graphql.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output:
        args.output.write_text(sdl)
    else:
        sys.stdout.write(sdl)

"""The `ordersaga` command: serve, migrate, projections rebuild, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from api.logs import LOG_FORMATS, configure_logging
from api.settings import DEFAULT_LEASE_TTL, OTLP_SETTINGS, Settings, default_instance
from domain.saga import SagaPolicy
from persistence.database import DatabaseInUse, default_database_url, hold_sqlite_database, is_sqlite

if TYPE_CHECKING:
    from starlette.applications import Starlette

# `serve --workers N` hands its command line to the worker processes through the environment.
_WORKER_ARGS = "ORDERSAGA_SERVE_ARGS"


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
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _database_option(serve)
    serve.add_argument("--demo", action="store_true", help="load a small demo catalog once")
    serve.add_argument(
        "--otel",
        action="store_true",
        help="send OpenTelemetry spans per saga and step over OTLP (on too when "
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
        help="let GraphQL stage slow or failing participants (setParticipantFault)",
    )
    serve.add_argument(
        "--fault-seed", type=int, metavar="N", help="seed the draws of a staged failureRate, to repeat a run"
    )
    serve.add_argument(
        "--lease-ttl",
        type=float,
        default=DEFAULT_LEASE_TTL.total_seconds(),
        metavar="S",
        help="PostgreSQL: seconds a saga's lease lasts unless renewed, so how long a dead process's "
        "sagas wait before another takes them over (default %(default)g)",
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
    return parser


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default=None, help="SQLAlchemy async URL (default: ordersaga.db here, SQLite)"
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
        lease_ttl=timedelta(seconds=args.lease_ttl),
    )


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app
    from api.service import Service

    if args.max_retries < 1:
        sys.exit("--max-retries must be at least 1")
    if args.workers < 1:
        sys.exit("--workers must be at least 1")
    if args.lease_ttl <= 0:
        sys.exit("--lease-ttl must be more than 0 seconds")
    settings = _settings(args)
    if settings.otel and importlib.util.find_spec("opentelemetry.sdk") is None:
        sys.exit("tracing needs the otel extra: pip install 'ordersaga[otel]'")
    if is_sqlite(settings.database_url):
        if args.workers > 1:
            sys.exit(
                "--workers needs PostgreSQL: a SQLite database is served by one process, which "
                "drives every saga; serve several processes over PostgreSQL (--database-url)"
            )
        try:
            # Kept on `args`, which lives as long as `serve` does: the lock is the open file.
            args.database_lock = hold_sqlite_database(settings.database_url)
        except DatabaseInUse as in_use:
            sys.exit(
                f"{in_use} is already served by another ordersaga process; a SQLite database "
                "takes one: stop that one, or serve several processes over PostgreSQL"
            )
    print(f"GraphiQL: http://{args.host}:{args.port}/graphql", flush=True)
    if args.enable_fault_injection:
        print("Fault injection is on: setParticipantFault makes a participant slow or failing", flush=True)
    if args.workers > 1:
        os.environ[_WORKER_ARGS] = json.dumps(args.argv)
        uvicorn.run(
            "api.cli:worker_app",
            factory=True,
            workers=args.workers,
            host=args.host,
            port=args.port,
            log_level="warning",
        )
        return
    uvicorn.run(create_app(Service(settings)), host=args.host, port=args.port, log_level="warning")


def worker_app() -> Starlette:
    """The application of one `serve --workers N` process, from the command line `serve` was given."""
    from api.app import create_app
    from api.service import Service

    args = _parser().parse_args(json.loads(os.environ[_WORKER_ARGS]))
    configure_logging(args.log_format, default_instance())
    return create_app(Service(_settings(args)))


def _migrate(args: argparse.Namespace) -> None:
    from persistence.database import make_engine
    from persistence.migrate import upgrade

    async def run() -> None:
        engine = make_engine(args.database_url or default_database_url())
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(run())
    print("database is up to date")


def _rebuild_projections(args: argparse.Namespace) -> None:
    from persistence.database import make_engine
    from persistence.migrate import upgrade
    from persistence.rebuild import RebuildReport, rebuild_projections

    if args.batch_size < 1:
        sys.exit("--batch-size must be at least 1")

    async def run() -> RebuildReport:
        engine = make_engine(args.database_url or default_database_url())
        try:
            await upgrade(engine)
            return await rebuild_projections(engine, args.batch_size)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    print(f"rebuilt the read tables from {report.sagas} sagas in {report.batches} batches")
    if report.stock_mismatches:
        lines = "\n".join(f"  {m.describe()}" for m in report.stock_mismatches)
        sys.exit(f"stock disagrees with the journal's unreleased reservations:\n{lines}")
    print("stock agrees with the journal")


def _export_schema(args: argparse.Namespace) -> None:
    from api.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output:
        args.output.write_text(sdl)
    else:
        sys.stdout.write(sdl)

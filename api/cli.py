"""The `ordersaga` command: serve, migrate, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import timedelta
from pathlib import Path

from api.settings import Settings
from domain.saga import SagaPolicy
from persistence.database import default_database_url


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ordersaga", description="A GraphQL order service run by sagas.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve GraphQL (and GraphiQL) over HTTP and WebSocket")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _database_option(serve)
    serve.add_argument("--demo", action="store_true", help="load a small demo catalog once")
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
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    _database_option(migrate)
    migrate.set_defaults(run=_migrate)

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
        fault_injection=args.enable_fault_injection,
        fault_seed=args.fault_seed,
    )


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app
    from api.service import Service

    if args.max_retries < 1:
        sys.exit("--max-retries must be at least 1")
    app = create_app(Service(_settings(args)))
    print(f"GraphiQL: http://{args.host}:{args.port}/graphql", flush=True)
    if args.enable_fault_injection:
        print("Fault injection is on: setParticipantFault makes a participant slow or failing", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _migrate(args: argparse.Namespace) -> None:
    from persistence.database import make_engine
    from persistence.migrate import upgrade

    async def run() -> None:
        engine = make_engine(args.database_url or default_database_url())
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(run())
    print("database is up to date")


def _export_schema(args: argparse.Namespace) -> None:
    from api.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output:
        args.output.write_text(sdl)
    else:
        sys.stdout.write(sdl)

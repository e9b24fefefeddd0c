"""The `ordersaga` command: serve, migrate, projections rebuild, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from datetime import timedelta
from pathlib import Path

from api.logs import LOG_FORMATS, configure_logging
from api.settings import OTLP_SETTINGS, Settings
from domain.saga import SagaPolicy
from persistence.database import default_database_url


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    configure_logging(getattr(args, "log_format", "text"))
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
    )


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app
    from api.service import Service

    if args.max_retries < 1:
        sys.exit("--max-retries must be at least 1")
    settings = _settings(args)
    if settings.otel and importlib.util.find_spec("opentelemetry.sdk") is None:
        sys.exit("tracing needs the otel extra: pip install 'ordersaga[otel]'")
    app = create_app(Service(settings))
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


def _rebuild_projections(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from persistence.codec import UnreadableEvent
    from persistence.database import make_engine
    from persistence.migrate import upgrade
    from persistence.rebuild import RebuildReport, count_events, rebuild_projections

    if args.batch_size < 1:
        sys.exit("--batch-size must be at least 1")

    async def run() -> RebuildReport:
        engine = make_engine(args.database_url or default_database_url())
        try:
            await upgrade(engine)
            # On a terminal, the events replayed so far, their rate and the time left.
            with tqdm(
                total=await count_events(engine), unit=" events", disable=not sys.stderr.isatty()
            ) as bar:
                return await rebuild_projections(engine, args.batch_size, bar.update)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
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


def _export_schema(args: argparse.Namespace) -> None:
    from api.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output:
        args.output.write_text(sdl)
    else:
        sys.stdout.write(sdl)

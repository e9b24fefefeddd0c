"""The `ordersaga` command: `main`, its entry point, puts together the subcommands of api/subcommands/
(serve, migrate, projections rebuild, export-schema, token); `worker_app` is each `serve --workers N`
process's."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from api.observability.logs import configure_logging
from api.settings import default_instance
from api.subcommands import database, schema, serve, tokens
from api.subcommands.serve import WORKER_ARGS, uncollected
from api.subcommands.serve_options import settings_from

if TYPE_CHECKING:
    from starlette.applications import Starlette


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args, unknown = parser().parse_known_args(argv)
    if unknown:
        # Said with the usage of the command given, not only the top level's.
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv
    configure_logging(getattr(args, "log_format", "text"), default_instance())
    args.run(args)


def parser() -> argparse.ArgumentParser:
    """The command line: each subcommand's options, and `run`, the function that carries it out."""
    ordersaga = argparse.ArgumentParser(prog="ordersaga", description="A GraphQL order service run by sagas.")
    ordersaga.add_argument("--version", action=_Version)
    commands = ordersaga.add_subparsers(required=True, metavar="COMMAND")
    serve.add_parser(commands)
    database.add_parsers(commands)
    schema.add_parser(commands)
    tokens.add_parser(commands)
    _know_their_parsers(commands)
    return ordersaga


class _Version(argparse.Action):
    """--version: the installed release, read only when asked (reading it costs every command some
    tens of milliseconds)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the release")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {version('ordersaga')}")
        parser.exit()


def _know_their_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Each command, nested ones too, records its own parser as `command_parser`, for `main` to
    refuse what it does not know with that command's usage."""
    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _know_their_parsers(action)


def worker_app() -> Starlette:
    """The application of one `serve --workers N` process, from the command line `serve` was given."""
    with uncollected():
        from api.service import Service
        from api.web.app import create_app
        from api.web.http_server import HeaderDeadline

    args = parser().parse_args(json.loads(os.environ[WORKER_ARGS]))
    configure_logging(args.log_format, default_instance())
    settings = settings_from(args)
    # uvicorn loads the protocol by name in each worker; its deadline is set here, in that worker.
    HeaderDeadline.header_timeout = settings.header_timeout
    return create_app(Service(settings))

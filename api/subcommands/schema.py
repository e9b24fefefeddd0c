"""`ordersaga export-schema`: the GraphQL schema as SDL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `export-schema` to `commands`."""
    export = commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    export.add_argument("--output", type=Path, help="write to this file instead")
    export.set_defaults(run=_export_schema)


def _export_schema(args: argparse.Namespace) -> None:
    from api.graphql.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output:
        try:
            args.output.write_text(sdl)
        except OSError as error:
            sys.exit(f"cannot write the schema to {args.output}: {error.strerror or error}")
    else:
        sys.stdout.write(sdl)

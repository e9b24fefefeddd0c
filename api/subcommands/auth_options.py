"""The --auth-* options (`serve`'s, and the secret `token` signs with) and the `AuthConfig` they make."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

from api.access.auth import DEFAULT_LEEWAY, AuthConfig, read_secret
from api.subcommands.numbers import add_seconds


def add_auth_secret_option(parser: argparse.ArgumentParser, without: str) -> None:
    """--auth-secret-file, the HS256 secret's file (env ORDERSAGA_AUTH_SECRET_FILE); `without` says
    in its help what the command does when it is not given."""
    parser.add_argument(
        "--auth-secret-file",
        type=Path,
        default=os.environ.get("ORDERSAGA_AUTH_SECRET_FILE"),
        metavar="PATH",
        help="a file holding the HS256 secret (at least 32 bytes); env ORDERSAGA_AUTH_SECRET_FILE "
        f"({without})",
    )


def add_auth_options(parser: argparse.ArgumentParser) -> None:
    """Every --auth-* option `serve` takes: the secret file, or a JWKS URL; issuer, audience, leeway."""
    add_auth_secret_option(
        parser, without="default: none; with no --auth-jwks-url either, development mode: everyone is admin"
    )
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
    add_seconds(
        parser,
        "--auth-leeway",
        above=False,
        # A string default goes through `type` too, so a bad environment value is refused like an option.
        default=os.environ.get("ORDERSAGA_AUTH_LEEWAY", str(DEFAULT_LEEWAY.total_seconds())),
        metavar="SECONDS",
        help="how long past its exp a token is still taken, for clock skew; a WebSocket ends then; "
        f"env ORDERSAGA_AUTH_LEEWAY (default {DEFAULT_LEEWAY.total_seconds():g})",
    )


def auth_config(args: argparse.Namespace) -> AuthConfig:
    """The `AuthConfig` of the --auth-* options; ends the command with one line when they do not fit."""
    if args.auth_secret_file and args.auth_jwks_url:
        sys.exit("choose one of --auth-secret-file and --auth-jwks-url")
    secret = auth_secret(args.auth_secret_file) if args.auth_secret_file else None
    return AuthConfig(
        secret=secret,
        jwks_url=args.auth_jwks_url,
        issuer=args.auth_issuer,
        audience=args.auth_audience,
        leeway=timedelta(seconds=args.auth_leeway),
    )


def auth_secret(path: str | Path) -> str:
    """The HS256 secret held in the file at `path`; ends the command with one line when it is unreadable
    or too short."""
    try:
        return read_secret(Path(path))
    except (OSError, ValueError) as error:
        sys.exit(f"cannot use the auth secret: {error}")

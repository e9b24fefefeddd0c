"""`ordersaga token`: a signed token (HS256) for trying roles out."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

from api.access.auth import Role, mint_token
from api.subcommands.auth_options import add_auth_secret_option, auth_secret
from api.subcommands.numbers import MAX_PERIOD_SECONDS, add_seconds
from domain.model.problems import is_storable


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `token` to `commands`."""
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
    add_seconds(
        token,
        "--ttl",
        most=MAX_PERIOD_SECONDS,
        default=3600,
        metavar="SECONDS",
        help="lifetime (default 3600)",
    )
    add_auth_secret_option(token, without="needed: the token is signed with it")
    for claim, metavar in [("issuer", "ISS"), ("audience", "AUD")]:
        env = f"ORDERSAGA_AUTH_{claim.upper()}"
        token.add_argument(f"--auth-{claim}", default=os.environ.get(env), metavar=metavar, help=f"env {env}")
    token.set_defaults(run=_token)


def _token(args: argparse.Namespace) -> None:
    if args.auth_secret_file is None:
        sys.exit("--auth-secret-file (or ORDERSAGA_AUTH_SECRET_FILE) is needed to sign a token")
    if not args.subject.strip() or not is_storable(args.subject):
        # The server refuses such a subject (UNAUTHENTICATED), so a token for it would be of no use.
        sys.exit("--subject must be text with no NUL, lone surrogate or nothing but spaces")
    secret = auth_secret(args.auth_secret_file)
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

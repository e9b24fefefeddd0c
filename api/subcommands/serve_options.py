"""`serve`'s options, and the `Settings` they make (`settings_from`)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from api.access.rate_limits import IN_MEMORY
from api.observability.logs import LOG_FORMATS
from api.settings import DEFAULT_LEASE_TTL, OTLP_SETTINGS, Settings, StreamSettings
from api.subcommands.auth_options import add_auth_options, auth_config
from api.subcommands.database import add_database_option
from api.subcommands.numbers import MAX_PERIOD_SECONDS, MAX_WAIT_SECONDS, add_number, add_seconds
from domain.model.saga import SagaPolicy
from persistence.database import default_database_url

# Set to 0, the same as `serve --no-fast-paths`.
FAST_PATHS_SETTING = "ORDERSAGA_FAST_PATHS"
# What NATS takes as a stream name and as literal subject tokens, narrowed to characters every client
# and tool handles (no wildcards, dots in names, spaces or path separators).
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
NATS_SCHEMES = ("nats", "tls")


def add_options(serve: argparse.ArgumentParser) -> None:
    """Every option `serve` takes, with its default (some from the environment)."""
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    add_number(
        serve,
        "--port",
        int,
        least=0,
        most=65535,
        default=8000,
        help="port to listen on, 0 for any free one (default %(default)s)",
    )
    add_database_option(serve)
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
        add_seconds(
            serve,
            f"--{name}",
            default=default.total_seconds(),
            metavar="S",
            help=f"seconds (default {default.total_seconds():g})",
        )
    add_number(
        serve,
        "--max-retries",
        int,
        least=1,
        # More attempts than anyone waits for: a step's retries are meant to ride out a blip.
        most=1000,
        default=defaults.max_attempts,
        metavar="N",
        help=f"attempts per step, the first included (default {defaults.max_attempts})",
    )
    add_seconds(
        serve,
        "--retry-backoff",
        above=False,
        default=defaults.retry_backoff.total_seconds(),
        metavar="S",
        help="seconds to wait after attempt n, times n (default %(default)s)",
    )
    serve.add_argument(
        "--enable-fault-injection",
        action="store_true",
        help="let GraphQL stage slow or failing participants (setParticipantFault; default off)",
    )
    add_number(
        serve,
        "--fault-seed",
        int,
        least=0,
        most=2**64 - 1,
        metavar="N",
        help="seed the draws of a staged failureRate, to repeat a run (default: a fresh seed each run)",
    )
    limits = Settings(database_url="")
    add_number(
        serve,
        "--max-body-bytes",
        int,
        least=1,
        # A GiB: far past any order or bulk request, and still a size a request may be read into.
        most=2**30,
        unit="bytes",
        default=limits.max_body_bytes,
        metavar="N",
        help="largest request body (and WebSocket message) accepted; larger ones get 413 "
        "(default %(default)s)",
    )
    add_seconds(
        serve,
        "--body-timeout",
        default=limits.body_timeout,
        metavar="S",
        help="seconds a request body may take to arrive; slower ones get 408 (default %(default)g)",
    )
    add_seconds(
        serve,
        "--header-timeout",
        default=limits.header_timeout,
        metavar="S",
        help="seconds a request's headers may take to arrive before the connection is closed "
        "(default %(default)g)",
    )
    add_seconds(
        serve,
        "--keep-alive-timeout",
        default=limits.keep_alive_timeout,
        metavar="S",
        help="seconds an idle connection is kept open between requests; set it above the idle "
        "timeout of the clients and proxies in front, so that they, not the server, close it "
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
    add_auth_options(serve)
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
    add_seconds(
        serve,
        "--lease-ttl",
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
        "--allow-private-warehouse-urls",
        action="store_true",
        help="let a warehouse's serviceUrl resolve to loopback, private or link-local addresses, as a "
        "warehouse service on the same network does (default off: refused when authentication is "
        "configured, loopback allowed in development mode); --warehouse-service-url is not checked",
    )
    serve.add_argument(
        "--allow-private-webhook-urls",
        action="store_true",
        help="let webhook endpoints resolve to loopback, private or link-local addresses (default off: "
        "refused when authentication is configured, loopback allowed in development mode)",
    )
    for name, seconds, most, what in [
        (
            "connect-timeout",
            limits.webhook_connect_timeout,
            MAX_WAIT_SECONDS,
            "seconds a webhook POST may take to connect",
        ),
        (
            "timeout",
            limits.webhook_timeout,
            MAX_WAIT_SECONDS,
            "seconds a webhook POST may take in all, or it failed",
        ),
        (
            "retry-for",
            limits.webhook_retry_for.total_seconds(),
            MAX_PERIOD_SECONDS,
            "seconds a failed webhook delivery is retried",
        ),
        (
            "keep-succeeded",
            limits.webhook_keep_succeeded.total_seconds(),
            MAX_PERIOD_SECONDS,
            "seconds a webhook delivery that succeeded after failing stays listed",
        ),
    ]:
        add_seconds(
            serve,
            f"--webhook-{name}",
            most=most,
            default=seconds,
            metavar="S",
            help=f"{what} (default %(default)g)",
        )
    add_seconds(
        serve,
        "--webhook-disable-after",
        most=MAX_PERIOD_SECONDS,
        metavar="S",
        help="seconds a webhook endpoint may fail without one success before it is disabled "
        "(default: --webhook-retry-for)",
    )
    add_number(
        serve,
        "--workers",
        int,
        least=1,
        most=256,
        default=1,
        metavar="N",
        help="PostgreSQL: serve from N processes sharing the port (default 1)",
    )


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
    add_seconds(
        parser,
        "--nats-duplicate-window",
        most=MAX_PERIOD_SECONDS,
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


def _warehouse_secret(args: argparse.Namespace) -> str | None:
    """The warehouse service's signing secret, checked; exits when the options do not fit."""
    from api.outbound.addresses import url_problem
    from api.outbound.signing import secret_problem

    url, path = args.warehouse_service_url, args.warehouse_service_secret_file
    if url is not None and (problem := url_problem(url)) is not None:
        sys.exit(f"--warehouse-service-url: {problem}")
    if path is None:
        if url is not None:
            sys.exit("--warehouse-service-url needs --warehouse-service-secret-file: every command is signed")
        return None
    try:
        secret = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        sys.exit(f"cannot use the warehouse service secret: {type(error).__name__}: {error}")
    if (problem := secret_problem(secret)) is not None:
        sys.exit(f"cannot use the warehouse service secret in {path}: {problem}")
    return secret


def settings_from(args: argparse.Namespace) -> Settings:
    """The service's `Settings` from `serve`'s parsed options (seconds become timedeltas); ends the
    command with one line when the auth, stream or warehouse service options do not fit."""
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
        keep_alive_timeout=args.keep_alive_timeout,
        auth=auth_config(args),
        mutation_limits=args.mutation_rate_limit,
        rate_limit_storage=args.rate_limit_storage,
        lease_ttl=timedelta(seconds=args.lease_ttl),
        freeze_start_up=True,
        fast_paths=args.fast_paths,
        stream=_stream_settings(args),
        warehouse_service_url=args.warehouse_service_url,
        warehouse_service_secret=_warehouse_secret(args),
        allow_private_webhook_urls=args.allow_private_webhook_urls,
        allow_private_warehouse_urls=args.allow_private_warehouse_urls,
        webhook_connect_timeout=args.webhook_connect_timeout,
        webhook_timeout=args.webhook_timeout,
        webhook_retry_for=timedelta(seconds=args.webhook_retry_for),
        webhook_disable_after=(
            None if args.webhook_disable_after is None else timedelta(seconds=args.webhook_disable_after)
        ),
        webhook_keep_succeeded=timedelta(seconds=args.webhook_keep_succeeded),
    )

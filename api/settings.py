"""What a running service is configured with; filled from the command line."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta

from api.access.auth import AuthConfig
from api.access.rate_limits import IN_MEMORY
from domain.model.saga import SagaPolicy

# Where to send spans; setting either turns tracing on, as `serve --otel` does.
OTLP_SETTINGS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
DEFAULT_LEASE_TTL = timedelta(seconds=10)
# How long the event stream remembers a message id: a publish repeated within it is dropped. It must
# outlast the longest pause between a publish and its repeat (docs/decisions/0021-event-stream.md).
DEFAULT_DUPLICATE_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Where `serve --nats-url` publishes the journal (api/outbound/stream.py): the NATS server, the
    JetStream stream's name, the subjects' first tokens, and the duplicate window the stream is made
    with when it is missing."""

    url: str
    stream: str = "ORDERSAGA"
    subject_prefix: str = "ordersaga"
    duplicate_window: timedelta = DEFAULT_DUPLICATE_WINDOW


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    policy: SagaPolicy = field(default_factory=SagaPolicy)
    demo: bool = False
    # Let users stage participant faults through GraphQL (setParticipantFault); seed for failureRate.
    fault_injection: bool = False
    fault_seed: int | None = None
    # Transactions written at once. SQLite has one writer, so one lane; PostgreSQL can take more.
    commit_lanes: int | None = None
    # OpenTelemetry spans per saga and step (needs the `otel` extra).
    otel: bool = False
    # A WebSocket that has not sent connection_init by then is closed (4408), so idle sockets that
    # never speak cannot pile up.
    connection_init_timeout: timedelta = timedelta(seconds=10)
    # A WebSocket message that cannot be handed to the socket within this long (its client has not
    # read what the server's buffers hold) closes the socket with 1013, so a client that stopped
    # reading holds no more than those buffers (api/web/ws_session.py).
    send_timeout: timedelta = timedelta(seconds=10)
    # Work that finds every connection of the read pool busy waits this long for one, then is answered
    # SERVICE_UNAVAILABLE (retry later) rather than queue without bound; on PostgreSQL a read waits no
    # longer for a table lock (a LOCK TABLE, a migration's DDL) either.
    pool_timeout: timedelta = timedelta(seconds=5)
    # Write work that no commit lane has taken within this long is withdrawn (it never runs) and
    # answered SERVICE_UNAVAILABLE. Longer than the read pool's: a burst on one hot SKU queues writes
    # for seconds and should still go through.
    write_timeout: timedelta = timedelta(seconds=30)
    # Connections the read pool holds; None keeps the engine's default for the database. On SQLite
    # reads of one statement have as many again, each with a thread (persistence/read/reader.py).
    read_pool_size: int | None = None
    # Request bodies (and WebSocket messages) larger than this are refused (413); bodies must arrive
    # within body_timeout of the request's start (408), headers within header_timeout of the
    # connection's or the request's start, so a slow client cannot hold a connection.
    max_body_bytes: int = 1024 * 1024
    body_timeout: float = 30.0
    header_timeout: float = 10.0
    # Seconds an idle connection is kept between requests. Longer than many clients' pools keep an
    # idle connection (httpx 5 s, Node's undici 4 s, aiohttp 15 s; nginx's own default is 75 s): a
    # server that closes first races the client's next request on that connection, which the client
    # then sees fail (a reset or an empty answer) although the service never read it. In front of
    # clients or proxies that keep theirs longer, it is set above their idle timeout.
    keep_alive_timeout: float = 75.0
    # How bearer tokens are trusted; unconfigured, the service is in development mode (all admin).
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Per-principal limits on mutations in the `limits` notation; None: DEFAULT_MUTATION_LIMITS when
    # auth is configured, no limit in development mode.
    mutation_limits: str | None = None
    # Where they are counted (api/access/rate_limits.py): this process's memory, or a store several
    # processes share, so that N processes do not admit N times the limit.
    rate_limit_storage: str = IN_MEMORY
    # With several processes over one PostgreSQL: how long a saga's lease lasts unless its owner
    # renews it, which is how long a dead process's sagas wait before another takes them over.
    lease_ttl: timedelta = DEFAULT_LEASE_TTL
    # The shortcuts that make the hot paths cheaper by reaching into libraries' internals (the
    # parse and validation caches, strawberry's HTTP view and execute without their general
    # machinery, subscription messages rendered once per selection, the hot statements prepared
    # on the driver; docs/library-internals.md). Off, the service runs on the libraries' public
    # paths alone and answers the same: the way out when a library upgrade breaks one.
    fast_paths: bool = True
    # This process's name among several: in leases, logs and metrics.
    instance: str = field(default_factory=lambda: default_instance())
    # Webhooks (docs/decisions/0020-webhooks.md): the seconds each POST may take to connect and in
    # all; how long a delivery is retried before it fails; how long an endpoint may fail without a
    # single success before it is disabled (None: as long as a delivery is retried); whether endpoint
    # URLs may resolve to private addresses (loopback, private networks, link-local), which only this
    # machine or its network reaches. Without authentication (development mode) loopback is allowed.
    webhook_connect_timeout: float = 2.0
    webhook_timeout: float = 10.0
    webhook_retry_for: timedelta = timedelta(days=1)
    webhook_disable_after: timedelta | None = None
    # How long a delivery that once failed and then succeeded stays listed (`deliveries`) before it
    # is pruned; those still PENDING or FAILED stay until sent, redelivered or their endpoint deleted.
    webhook_keep_succeeded: timedelta = timedelta(days=7)
    allow_private_webhook_urls: bool = False
    # A warehouse's serviceUrl (set by an admin over the API) may resolve to non-public addresses.
    allow_private_warehouse_urls: bool = False
    # Freeze what start-up made out of the collector's generations (docs/performance.md, lever 13),
    # and raise the collector's first threshold (lever 27), for a process that serves for long:
    # `ordersaga serve` turns it on. Off, for a service started inside another program (the tests
    # start hundreds), whose start would pay a full collection.
    freeze_start_up: bool = False
    # Publish every journal event to a NATS JetStream stream; None: no stream.
    stream: StreamSettings | None = None
    # A remote warehouse service (api/outbound/warehouse.py): where every warehouse without a URL of
    # its own sends its shipments' commands (None: the built-in warehouse), and the secret that
    # signs every command (`whsec_…`), without which no warehouse may be given a URL.
    warehouse_service_url: str | None = None
    warehouse_service_secret: str | None = None


def default_instance() -> str:
    """host:pid, unique among the processes of one database while they run."""
    return f"{socket.gethostname()}:{os.getpid()}"

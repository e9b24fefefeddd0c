"""What a running service is configured with; filled from the command line."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta

from domain.saga import SagaPolicy

# Where to send spans; setting either turns tracing on, as `serve --otel` does.
OTLP_SETTINGS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
DEFAULT_LEASE_TTL = timedelta(seconds=10)


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
    # With several processes over one PostgreSQL: how long a saga's lease lasts unless its owner
    # renews it, which is how long a dead process's sagas wait before another takes them over.
    lease_ttl: timedelta = DEFAULT_LEASE_TTL
    # This process's name among several: in leases, logs and metrics.
    instance: str = field(default_factory=lambda: default_instance())


def default_instance() -> str:
    """host:pid, unique among the processes of one database while they run."""
    return f"{socket.gethostname()}:{os.getpid()}"

"""Which PostgreSQL errors say the database is busy or away (the work may be sent again, and the edge
answers SERVICE_UNAVAILABLE) and which say the work itself is wrong, by SQLSTATE; and what the log
says of them."""

from __future__ import annotations

import pytest
from graphql import GraphQLError
from sqlalchemy import exc as sa_errors

from api.graphql.edge.errors import report
from domain.ports import OutcomeUnknown
from persistence.database import is_transient


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def failed(sqlstate: str) -> sa_errors.DBAPIError:
    """What SQLAlchemy raises for a driver error of `sqlstate` that it maps to no subclass (asyncpg's
    errors outside its integrity and syntax classes)."""
    return sa_errors.DBAPIError("SELECT 1", None, DriverError(sqlstate))


@pytest.mark.parametrize(
    "sqlstate",
    [
        "53300",  # too_many_connections: the server, a role or a database at its connection limit
        "53200",  # out_of_memory
        "57014",  # query_canceled: a statement timeout
        "57P01",  # admin_shutdown
        "57P03",  # cannot_connect_now: the server is starting up
        "08006",  # connection_failure
        "55P03",  # lock_not_available: a lock timeout
        "40P01",  # deadlock_detected
        "40001",  # serialization_failure
    ],
)
def test_a_server_that_is_full_away_or_contended_is_transient(sqlstate: str) -> None:
    assert is_transient(failed(sqlstate))


@pytest.mark.parametrize(
    "sqlstate",
    [
        "23505",  # unique_violation
        "42P01",  # undefined_table
        "22P02",  # invalid_text_representation
        "XX000",  # internal_error
        "08P01",  # protocol_violation: in the connection class, but a fault
        "08007",  # transaction_resolution_unknown: an unknown outcome, not "nothing was done"
        "53400",  # configuration_limit_exceeded: fails the same way each time
        "40003",  # statement_completion_unknown
        "58030",  # io_error
        "55000",  # object_not_in_prerequisite_state: its class holds the lock timeout, not this
    ],
)
def test_work_that_is_wrong_is_not_transient(sqlstate: str) -> None:
    assert not is_transient(failed(sqlstate))


def test_an_unknown_outcome_is_logged_without_the_statements_parameters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database error's text quotes the statement's parameters, a webhook secret among them.
    lost = sa_errors.DBAPIError("INSERT INTO webhook_endpoints ...", ("whsec_secret",), DriverError("08006"))
    unknown = OutcomeUnknown("the commit failed; it may have committed")
    unknown.__cause__ = lost
    for original in (unknown, lost):
        error = GraphQLError("failed", path=["createWebhookEndpoint"], original_error=original)
        report(error, change_made=True)
        assert error.extensions == {"code": "OUTCOME_UNKNOWN"}
    assert "whsec_secret" not in caplog.text
    assert "08006" in caplog.text

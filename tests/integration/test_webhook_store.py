"""The webhook endpoints' store on each database: an admin's change sets only the columns it names,
so what a relay recorded meanwhile (a disabling, the endpoint's health) is kept; deliveries that
succeeded are pruned after a while, the others kept; a deleted endpoint's relay leaves no row, and
its last round's deliveries are not stored; a write whose commit answer is lost is reported as of
unknown outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.ports import OutcomeUnknown
from persistence.connection import EngineWriter
from persistence.database import make_engine
from persistence.fleet.relays import Relays
from persistence.read.paging import Window
from persistence.tables import relays as relays_table
from persistence.webhooks import Delivery, DeliveryStatus, WebhookStore, relay_name
from persistence.write.commit_faults import commit_losing_answer

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url)
    yield made
    await made.dispose()


async def test_a_change_sets_only_what_it_names(engine: AsyncEngine) -> None:
    store = WebhookStore(engine, EngineWriter(engine))
    created = await store.create("https://example.com/a", None, "first", "whsec_one", NOW)
    # The relay disables it while an admin edits the description from what they read before.
    await store.note_health(created.id, False, NOW)
    assert await store.disable(created.id, "failing for a day", NOW, NOW)
    changed = await store.change(created.id, {"description": "second", "events": frozenset({"B", "A"})})
    assert changed is not None
    assert (changed.description, changed.events) == ("second", frozenset({"A", "B"}))
    assert (changed.enabled, changed.disabled_reason) == (False, "failing for a day")
    assert changed.secret == "whsec_one"
    assert await store.change("no-such-endpoint", {"description": "x"}) is None
    unchanged = await store.change(created.id, {})  # an update that names nothing changes nothing
    assert unchanged is not None and unchanged.description == "second"


async def test_an_endpoint_is_disabled_only_while_it_has_been_failing_that_long(engine: AsyncEngine) -> None:
    store = WebhookStore(engine, EngineWriter(engine))
    created = await store.create("https://example.com/a", None, None, "whsec_one", NOW)
    assert not await store.disable(created.id, "stale", NOW, NOW)  # not failing (a success cleared it)
    await store.note_health(created.id, False, NOW)
    assert not await store.disable(created.id, "stale", NOW, NOW - timedelta(hours=1))  # not that long
    assert await store.disable(created.id, "failing", NOW, NOW)
    endpoint = await store.endpoint(created.id)
    assert endpoint is not None and (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")


def delivery(endpoint_id: str, position: int, status: DeliveryStatus, updated_at: datetime) -> Delivery:
    return Delivery(
        endpoint_id=endpoint_id,
        position=position,
        event_id=f"evt_s{position}_1",
        event_type="SagaStarted",
        saga_id=f"s{position}",
        body="{}",
        status=status.value,
        attempts=1,
        response_code=None,
        latency_ms=None,
        error=None,
        failing_since=None,
        next_attempt_at=None,
        updated_at=updated_at,
    )


async def test_pruning_deletes_only_what_succeeded_before_the_cutoff_in_batches(engine: AsyncEngine) -> None:
    store = WebhookStore(engine, EngineWriter(engine))
    mine = await store.create("https://example.com/a", None, None, "whsec_one", NOW)
    other = await store.create("https://example.com/b", None, None, "whsec_two", NOW)
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=1)
    await store.store(
        [
            *(delivery(mine.id, n, DeliveryStatus.SUCCEEDED, old) for n in (1, 2, 3)),
            delivery(mine.id, 4, DeliveryStatus.SUCCEEDED, recent),
            delivery(mine.id, 5, DeliveryStatus.FAILED, old),
            delivery(mine.id, 6, DeliveryStatus.PENDING, old),
            delivery(other.id, 7, DeliveryStatus.SUCCEEDED, old),
        ]
    )
    cutoff = NOW - timedelta(days=7)
    assert await store.prune(mine.id, cutoff, 2) == 2
    assert await store.prune(mine.id, cutoff, 2) == 1
    assert await store.prune(mine.id, cutoff, 2) == 0
    left = await store.page(mine.id, [], Window(10))
    assert [d.position for d in left] == [6, 5, 4]
    assert [d.position for d in await store.page(other.id, [], Window(10))] == [7]


async def test_a_relay_still_running_after_its_endpoint_was_deleted_leaves_no_row(
    engine: AsyncEngine,
) -> None:
    store, relays = WebhookStore(engine, EngineWriter(engine)), Relays(EngineWriter(engine))
    endpoint = await store.create("https://example.com/a", None, None, "whsec_one", NOW)
    assert await relays.take(relay_name(endpoint.id)) is not None
    assert await store.delete(endpoint.id)
    assert await relays.take(relay_name(endpoint.id)) is None
    await relays.advance(relay_name(endpoint.id), 10)
    async with engine.connect() as conn:
        names = (await conn.scalars(select(relays_table.c.name))).all()
    assert names == []
    # A relay whose row nobody else makes (the event stream's) opens it first, once.
    await relays.open("stream:ORDERSAGA")
    await relays.open("stream:ORDERSAGA")
    assert await relays.take("stream:ORDERSAGA") == 0


async def test_deliveries_of_a_deleted_endpoint_are_not_stored(engine: AsyncEngine) -> None:
    store = WebhookStore(engine, EngineWriter(engine))
    kept = await store.create("https://example.com/kept", None, None, "whsec_one", NOW)
    deleted = await store.create("https://example.com/deleted", None, None, "whsec_two", NOW)
    assert await store.delete(deleted.id)
    await store.store([delivery(deleted.id, 1, DeliveryStatus.PENDING, NOW)])  # its relay's last round
    await store.store([delivery(kept.id, 1, DeliveryStatus.PENDING, NOW)])
    assert await store.page(deleted.id, [], Window(10)) == []
    assert [d.endpoint_id for d in await store.page(kept.id, [], Window(10))] == [kept.id]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the outbound writer's database
async def test_an_endpoint_whose_commit_answer_is_lost_is_reported_unknown_not_as_not_made(
    engine: AsyncEngine,
) -> None:
    # No key makes creating an endpoint safe to repeat: told "nothing was done", a client would make a
    # second endpoint, and every event would be sent twice.
    losing = WebhookStore(engine, EngineWriter(engine, commit=commit_losing_answer))
    with pytest.raises(OutcomeUnknown):
        await losing.create("https://example.com/a", None, None, "whsec_one", NOW)
    assert [e.url for e in await WebhookStore(engine, EngineWriter(engine)).endpoints()] == [
        "https://example.com/a"
    ]

"""Live updates read from the timeline on a real database (SQLite and PostgreSQL): a subscriber that
was not reading while sagas moved on gets every transition it missed, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from api.graphql.subscriptions import SagaUpdate, updates_of_all_sagas, updates_of_saga
from api.live.hub import Committed, TransitionHub
from api.live.recent_transitions import RecentTransitions, Wanted
from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.saga import Participant, SagaStatus
from domain.model.values import OrderLine
from tests.gates import Hold
from tests.integration.support import start_service, stock_catalog, wait_for_status
from tests.polling import eventually

ENDED = (SagaStatus.COMPLETED, SagaStatus.FAILED)


@pytest.fixture
async def held(database_url: str) -> AsyncIterator[tuple[Service, Hold]]:
    gate = Hold(Participant.INVENTORY)
    service = await start_service(database_url, gate=gate)
    await stock_catalog(service)
    yield service, gate
    await service.stop()


async def place(svc: Service, quantity: int) -> str:
    return (await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", quantity),)))).saga_id


async def ended(svc: Service, gate: Hold, *quantities: int) -> list[str]:
    """Sagas of these quantities, run to their end; their ids."""
    gate.release(Participant.INVENTORY)
    saga_ids = [await place(svc, quantity) for quantity in quantities]
    for saga_id in saga_ids:
        await wait_for_status(svc, saga_id, *ENDED)
    return saga_ids


async def test_the_read_model_gives_each_sagas_transitions_past_its_own_cursor(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    first, second = await ended(svc, gate, 1, 20)

    latest = await svc.read.latest_transition(first)
    assert latest is not None and (latest.sequence, latest.status) == (7, "COMPLETED")
    assert await svc.read.latest_transition("no-such-saga") is None
    rows = await svc.read.transitions_after({first: 5, second: 2})
    assert [(r.saga_id, r.sequence) for r in rows if r.saga_id == first] == [(first, 6), (first, 7)]
    assert [r.sequence for r in rows if r.saga_id == second] == [3, 4, 5, 6]
    assert await svc.read.transitions_after({}) == []


async def test_a_saga_subscriber_that_paused_gets_every_missed_transition_then_completes(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    saga_id = await place(svc, 2)
    updates = updates_of_saga(svc.live, svc.hub, saga_id)
    current = await anext(updates)
    assert (current.sequence, current.status) == (2, SagaStatus.STOCK_RESERVING)

    gate.release(Participant.INVENTORY)
    await wait_for_status(svc, saga_id, SagaStatus.COMPLETED)  # all of it committed while not reading
    rest = [update async for update in updates]

    assert [u.sequence for u in rest] == [3, 4, 5, 6, 7]
    assert rest[-1].status is SagaStatus.COMPLETED
    assert svc.hub.subscribers == 0


async def test_a_feed_that_paused_gets_every_sagas_missed_transitions_once(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    gate.release(Participant.INVENTORY)
    feed = updates_of_all_sagas(svc.live, svc.hub, None)
    first = asyncio.ensure_future(anext(feed))
    await eventually(lambda: svc.hub.subscribers == 1, "the feed to subscribe")
    completing, failing = await place(svc, 1), await place(svc, 20)
    for saga_id in (completing, failing):
        await wait_for_status(svc, saga_id, *ENDED)

    seen: list[SagaUpdate] = [await first]
    async with asyncio.timeout(10):
        while len(seen) < 7 + 6:
            seen.append(await anext(feed))
        later = await place(svc, 1)
        following = await anext(feed)
    await feed.aclose()

    assert [u.sequence for u in seen if u.saga_id == completing] == [1, 2, 3, 4, 5, 6, 7]
    assert [u.sequence for u in seen if u.saga_id == failing] == [1, 2, 3, 4, 5, 6]
    assert (following.saga_id, following.sequence) == (later, 1)
    assert svc.hub.subscribers == 0


HandFedFeed = tuple[str, str, TransitionHub, AsyncGenerator[SagaUpdate, None], asyncio.Future[SagaUpdate]]


async def hand_fed_feed(svc: Service, gate: Hold) -> HandFedFeed:
    """Two completed sagas, and a feed subscribed to a hub of its own, which the test feeds notices
    by hand; the feed's first update is awaited in the future."""
    saga_id, other = await ended(svc, gate, 1, 1)
    hub = TransitionHub()
    feed = updates_of_all_sagas(svc.live, hub, None)
    first = asyncio.ensure_future(anext(feed))
    await eventually(lambda: hub.subscribers == 1, "the feed to subscribe")
    return saga_id, other, hub, feed, first


async def test_transitions_read_before_their_notice_arrives_are_not_sent_again(
    held: tuple[Service, Hold],
) -> None:
    # A read can see commits whose notices are still on their way; this hub is fed by hand to hold
    # the notices back on purpose.
    saga_id, other, hub, feed, first = await hand_fed_feed(*held)

    hub.publish(Committed(saga_id, 1, 2, SagaStatus.STOCK_RESERVING))
    seen = [await first] + [await anext(feed) for _ in range(6)]
    hub.publish(Committed(saga_id, 3, 7, SagaStatus.COMPLETED))
    hub.publish(Committed(other, 1, 2, SagaStatus.STOCK_RESERVING))
    following = await anext(feed)
    await feed.aclose()

    assert [(u.saga_id, u.sequence) for u in seen] == [(saga_id, n) for n in range(1, 8)]
    assert (following.saga_id, following.sequence) == (other, 1)


async def test_a_late_notice_of_a_saga_whose_end_was_sent_sends_nothing_again(
    held: tuple[Service, Hold],
) -> None:
    # After another process's listener reconnected, it may announce again, from its first
    # sequence, a saga that has finished since: the feed has sent that end already.
    saga_id, other, hub, feed, first = await hand_fed_feed(*held)

    hub.publish(Committed(saga_id, 1, 7, SagaStatus.COMPLETED))
    seen = [await first] + [await anext(feed) for _ in range(6)]
    hub.publish(Committed(saga_id, 1, 7, SagaStatus.COMPLETED))  # the catch-up, late
    hub.publish(Committed(other, 1, 7, SagaStatus.COMPLETED))
    following = await anext(feed)
    await feed.aclose()

    assert [(u.saga_id, u.sequence) for u in seen] == [(saga_id, n) for n in range(1, 8)]
    assert (following.saga_id, following.sequence) == (other, 1)


async def test_subscribers_asking_at_once_share_one_read_and_older_transitions_are_read_again(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    first, second = await ended(svc, gate, 1, 1)
    recent = RecentTransitions(svc.read, SagaUpdate.of, sagas=1, per_saga=3)

    answers = await asyncio.gather(*(recent.past({first: Wanted(0, 7)}) for _ in range(5)))
    shared = answers[0][first]
    assert recent.reads == 1
    assert [u.sequence for u in shared] == [1, 2, 3, 4, 5, 6, 7]
    assert all(a[first][n] is shared[n] for a in answers for n in range(7))
    assert all(u.saga_row is not None and u.saga_row.status == "COMPLETED" for u in shared)
    assert {u.customer_id for u in shared} == {"c-1"}

    # The last three are kept; a notice that came late reads nothing either.
    assert (await recent.past({first: Wanted(4, 7)}))[first] == shared[4:]
    assert (await recent.past({first: Wanted(7, 7)}))[first] == []
    assert recent.reads == 1
    # Older ones are read again, around the kept ones, which stay the objects subscribers had.
    older = (await recent.past({first: Wanted(2, 7)}))[first]
    assert recent.reads == 2 and [u.sequence for u in older] == [3, 4, 5, 6, 7]
    assert all(a is b for a, b in zip(older[2:], shared[4:], strict=True))
    # One saga is kept: asking about another forgets the first.
    assert [u.sequence for u in (await recent.past({second: Wanted(5, 7)}))[second]] == [6, 7]
    await recent.past({first: Wanted(5, 7)})
    assert recent.reads == 4


async def test_subscribers_whom_a_shared_read_did_not_serve_share_the_next_one(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    (saga,) = await ended(svc, gate, 1)
    recent = RecentTransitions(svc.read, SagaUpdate.of)

    # The first read is of the transitions past 4; those asking meanwhile for all of them wait for it,
    # find it did not reach back far enough, and then wait for one read among them.
    later, *whole = await asyncio.gather(
        recent.past({saga: Wanted(4, 7)}), *(recent.past({saga: Wanted(0, 7)}) for _ in range(5))
    )
    assert [u.sequence for u in later[saga]] == [5, 6, 7]
    assert all([u.sequence for u in answer[saga]] == [1, 2, 3, 4, 5, 6, 7] for answer in whole)
    assert recent.reads == 2

"""Live updates read from the timeline on a real database (SQLite and PostgreSQL): a subscriber that
was not reading while sagas moved on gets every transition it missed, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import pytest

from api.graphql.journal import SagaUpdate, updates_after
from api.graphql.subscriptions import updates_of_all_sagas, updates_of_saga
from api.live.hub import Committed, TransitionHub
from api.live.journal_tail import JournalTail
from api.live.pacing import Pacer
from api.live.recent_transitions import RecentTransitions, Wanted
from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.saga import Participant, SagaStatus
from domain.model.values import OrderLine
from persistence.read.event_log import head
from persistence.read.paging import Window
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

    latest = await svc.timeline.latest_transition(first)
    assert latest is not None and (latest.sequence, latest.status) == (7, "COMPLETED")
    assert await svc.timeline.latest_transition("no-such-saga") is None
    rows = await svc.timeline.transitions_after({first: 5, second: 2})
    assert [(r.saga_id, r.sequence) for r in rows if r.saga_id == first] == [(first, 6), (first, 7)]
    assert [r.sequence for r in rows if r.saga_id == second] == [3, 4, 5, 6]
    assert await svc.timeline.transitions_after({}) == []


async def test_a_saga_subscriber_that_paused_gets_every_missed_transition_then_completes(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    saga_id = await place(svc, 2)
    updates = updates_of_saga(svc.live, svc.hub, svc.pacer, saga_id)
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
    feed = updates_of_all_sagas(svc.tail, svc.pacer, None, None)
    first = asyncio.ensure_future(anext(feed))
    await eventually(lambda: svc.tail.followers == 1, "the feed to follow the journal")
    completing, failing = await place(svc, 1), await place(svc, 20)
    for saga_id in (completing, failing):
        await wait_for_status(svc, saga_id, *ENDED)

    # What the journal holds, as committed: on a loaded machine a step may time out and add events.
    journal = await svc.timeline.journal_page(Window(100, after=0))
    async with asyncio.timeout(10):
        seen: list[SagaUpdate] = [await first]
        while len(seen) < len(journal):
            seen.append(await anext(feed))
        later = await place(svc, 1)
        following = await anext(feed)
    await feed.aclose()

    assert [(u.saga_id, u.sequence, u.position) for u in seen] == [
        (row.saga_id, row.sequence, row.position) for row in journal
    ]
    assert {u.saga_id for u in seen} == {completing, failing}
    assert (following.saga_id, following.sequence) == (later, 1)
    assert svc.tail.followers == 0


async def take(feed: AsyncIterator[SagaUpdate], count: int) -> list[SagaUpdate]:
    async with asyncio.timeout(10):
        return [await anext(feed) for _ in range(count)]


def hand_fed_tail(svc: Service, **bounds: int) -> tuple[TransitionHub, JournalTail[SagaUpdate]]:
    """A journal tail over the service's database, woken only by a hub the test feeds by hand (its
    poll is too slow to matter here)."""
    hub = TransitionHub()
    read_head, read_updates = partial(head, svc.read_engine), partial(updates_after, svc.timeline, svc.read)
    return hub, JournalTail(read_updates, read_head, hub, poll_s=60, **bounds)


async def last_position(svc: Service, saga_id: str) -> int:
    latest = await svc.timeline.latest_transition(saga_id)
    assert latest is not None
    return int(latest.position)


async def test_a_feed_from_a_cursor_sends_what_followed_it_then_goes_on_live_none_twice(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    (done,) = await ended(svc, gate, 1)
    resumed_in = await place(svc, 1)  # every transition of it after done's
    await wait_for_status(svc, resumed_in, *ENDED)
    hub, tail = hand_fed_tail(svc)
    running = asyncio.create_task(tail.run())
    try:
        feed = updates_of_all_sagas(tail, Pacer(), await last_position(svc, done), None)
        caught_up = await take(feed, 7)
        # Live from here: a notice sends what committed, and notices repeated late send nothing again.
        later = await place(svc, 1)
        await wait_for_status(svc, later, *ENDED)
        hub.publish(Committed(later, 1, 7, SagaStatus.COMPLETED))
        live = await take(feed, 7)
        hub.publish(Committed(later, 1, 7, SagaStatus.COMPLETED))
        hub.publish(Committed(done, 1, 7, SagaStatus.COMPLETED))
        another = await place(svc, 1)
        await wait_for_status(svc, another, *ENDED)
        hub.publish(Committed(another, 1, 7, SagaStatus.COMPLETED))
        (following,) = await take(feed, 1)
        await feed.aclose()
    finally:
        running.cancel()
    assert [(u.saga_id, u.sequence) for u in caught_up] == [(resumed_in, n) for n in range(1, 8)]
    assert [(u.saga_id, u.sequence) for u in live] == [(later, n) for n in range(1, 8)]
    assert (following.saga_id, following.sequence) == (another, 1)
    assert tail.followers == 0


async def test_a_follower_busy_past_the_window_reads_what_it_missed_from_the_journal(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    gate.release(Participant.INVENTORY)
    hub, tail = hand_fed_tail(svc, kept=3, batch=4)
    running = asyncio.create_task(tail.run())
    try:
        pacer = Pacer()
        slow, prompt = (updates_of_all_sagas(tail, pacer, None, None) for _ in range(2))
        pending = [asyncio.ensure_future(anext(slow)), asyncio.ensure_future(anext(prompt))]
        await eventually(lambda: tail.followers == 2, "both to follow")
        saga_ids = [await place(svc, 1) for _ in range(3)]
        for saga_id in saga_ids:
            await wait_for_status(svc, saga_id, *ENDED)
        hub.publish(Committed(saga_ids[-1], 1, 7, SagaStatus.COMPLETED))
        # The prompt one takes all 21 as the tail reads them, 4 at a time; the slow one, which
        # took only the first, finds the rest gone from the window of 3 and reads them itself.
        prompt_seen = [await pending[1], *await take(prompt, 20)]
        reads_by_the_tail = tail.reads
        slow_seen = [await pending[0], *await take(slow, 20)]
        await slow.aclose()
        await prompt.aclose()
    finally:
        running.cancel()
    everything = [(u.saga_id, u.sequence) for u in await updates_after(svc.timeline, svc.read, 0, 100)]
    assert sorted(everything) == sorted((s, n) for s in saga_ids for n in range(1, 8))
    assert [(u.saga_id, u.sequence) for u in prompt_seen] == everything
    assert [(u.saga_id, u.sequence) for u in slow_seen] == everything
    assert tail.reads == reads_by_the_tail  # the slow one's reads were its own


async def test_a_follower_counted_gets_every_event_committed_after(held: tuple[Service, Hold]) -> None:
    """Whoever sees a follower counted (a client told its subscription is live) may commit at once;
    that commit must reach it. The head read is held until the test finds the follower not counted."""
    svc, gate = held
    gate.release(Participant.INVENTORY)
    hub = TransitionHub()
    reading, looked, real_head = asyncio.Event(), asyncio.Event(), partial(head, svc.read_engine)

    async def read_head_once_looked() -> int:
        reading.set()
        await looked.wait()
        return await real_head()

    tail = JournalTail(partial(updates_after, svc.timeline, svc.read), read_head_once_looked, hub, poll_s=60)
    running = asyncio.create_task(tail.run())
    try:
        feed = updates_of_all_sagas(tail, Pacer(), None, None)
        first = asyncio.ensure_future(anext(feed))

        def counted() -> bool:
            if tail.followers == 1:
                return True
            looked.set()  # not counted yet: the head read may go on
            return False

        await reading.wait()
        await eventually(counted, "the feed to follow the journal")
        placed = await place(svc, 1)
        await wait_for_status(svc, placed, *ENDED)
        looked.set()  # a follower counted before its head read reads it only now, past `placed`
        hub.publish(Committed(placed, 1, 7, SagaStatus.COMPLETED))
        async with asyncio.timeout(10):
            seen = await first
        await feed.aclose()
    finally:
        running.cancel()
    assert (seen.saga_id, seen.sequence) == (placed, 1)


async def test_a_customers_follower_gets_its_own_sagas_only(held: tuple[Service, Hold]) -> None:
    svc, gate = held
    gate.release(Participant.INVENTORY)
    hub, tail = hand_fed_tail(svc)
    running = asyncio.create_task(tail.run())
    try:
        mine = updates_of_all_sagas(tail, Pacer(), None, None, customer_id="c-2")
        first = asyncio.ensure_future(anext(mine))
        await eventually(lambda: tail.followers == 1, "the customer to follow")
        other = await place(svc, 1)
        own = (await svc.orchestrator.place_order(PlaceOrder("c-2", (OrderLine("SKU-1", 1),)))).saga_id
        for saga_id in (other, own):
            await wait_for_status(svc, saga_id, *ENDED)
        hub.publish(Committed(own, 1, 7, SagaStatus.COMPLETED))
        seen = [await first, *await take(mine, 6)]
        await mine.aclose()
    finally:
        running.cancel()
    assert [(u.saga_id, u.sequence) for u in seen] == [(own, n) for n in range(1, 8)]


async def test_subscribers_asking_at_once_share_one_read_and_older_transitions_are_read_again(
    held: tuple[Service, Hold],
) -> None:
    svc, gate = held
    first, second = await ended(svc, gate, 1, 1)
    recent = RecentTransitions(svc.timeline, svc.read, SagaUpdate.of, sagas=1, per_saga=3)

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
    recent = RecentTransitions(svc.timeline, svc.read, SagaUpdate.of)

    # The first read is of the transitions past 4; those asking meanwhile for all of them wait for it,
    # find it did not reach back far enough, and then wait for one read among them.
    later, *whole = await asyncio.gather(
        recent.past({saga: Wanted(4, 7)}), *(recent.past({saga: Wanted(0, 7)}) for _ in range(5))
    )
    assert [u.sequence for u in later[saga]] == [5, 6, 7]
    assert all([u.sequence for u in answer[saga]] == [1, 2, 3, 4, 5, 6, 7] for answer in whole)
    assert recent.reads == 2

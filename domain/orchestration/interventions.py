"""Interventions on a running saga (retry, abort, cancel, a warehouse's report, dispatch): stop its
driver, decide on the journal as it stands (domain/model/interventions.py, domain/model/shipment.py),
commit the decision at the expected version with its effect on the participants, and drive the saga
on from there. Interventions on one saga take turns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from domain.model import interventions, shipment
from domain.model.interventions import Actor, Decision, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import (
    Rejected,
    SagaChange,
    SagaPolicy,
    SagaState,
    ShipmentDispatched,
    ShipmentStatus,
    Succeeded,
    fold,
)
from domain.orchestration.attempts import until_settled
from domain.orchestration.drivers import Drivers
from domain.orchestration.steps import Steps, shipment_command
from domain.ports import Clock, IdempotencyKeyReused, KeyedRequest, Transaction

# What a decision does to the participants, in its transaction: given the saga before it, and the time.
Effect = Callable[[Transaction, SagaState, datetime], Awaitable[None]]


class Interventions:
    def __init__(
        self,
        steps: Steps,
        drivers: Drivers,
        clock: Clock,
        policy: SagaPolicy,
        publish: Callable[[SagaChange], None],
    ) -> None:
        self._steps = steps
        self._policy = policy
        self._drivers = drivers
        self._clock = clock
        self._publish = publish
        self._claims = _SagaClaims()

    async def retry(self, saga_id: str, actor: Actor, reroute: bool = False) -> SagaState | Refused:
        """An operator (`actor`, recorded in the journal) sends a parked saga on: its parked step gets
        a fresh series of attempts. With `reroute`, the shipments a remote warehouse may hold go to
        their warehouse's service as the catalog names it now (domain/model/interventions.py)."""
        return await self._intervene(
            saga_id,
            lambda state, now: interventions.retry(
                state, now, actor, self._steps.services_of(state) if reroute else None
            ),
        )

    async def abort(self, saga_id: str, reason: str, actor: Actor) -> SagaState | Refused:
        """An operator (`actor`) turns a running or parked saga back now, whatever step is in flight."""
        return await self._intervene(
            saga_id, lambda state, now: interventions.abort(state, reason, now, actor)
        )

    async def cancel_order(self, saga_id: str, actor: Actor) -> SagaState | Refused:
        """The customer (or an operator, `actor`) cancels the order of this saga, which is compensated
        if it is not dispatched."""
        return await self._intervene(
            saga_id, lambda state, now: interventions.cancel_order(state, now, actor)
        )

    async def report_shipment_outcome(
        self, saga_id: str, shipment_id: str, outcome: Succeeded | Rejected
    ) -> SagaState | Refused:
        """A remote warehouse reports the outcome of a shipment's command it accepted earlier
        (domain/model/shipment.py `report`): a refusal turns the saga back, the last creation
        completes it. The same report again answers the saga as it stands."""
        return await self._intervene(
            saga_id, lambda state, now: shipment.report(state, shipment_id, outcome, now, self._policy)
        )

    async def dispatch_shipment(
        self, saga_id: str, shipment_id: str, request: KeyedRequest | None = None, lock_order: str = ""
    ) -> SagaState | Refused:
        """The warehouse dispatched one of the saga's shipments: in the transaction that journals it,
        its picked stock leaves its sections, the shipment is dispatched and the order shipped (if it
        was the last) or partially shipped.
        `request`'s key, if any, is bound in that transaction: the same request again answers the
        saga as it stands, doing nothing (IdempotencyKeyReused for another request under the key).
        `lock_order`: the first SKU of the picks (see TransactionRunner)."""

        async def dispatched(tx: Transaction, state: SagaState, now: datetime) -> None:
            if request is not None:
                await tx.requests.bind(request, now)
            dispatching = state.shipment(shipment_id)
            assert dispatching is not None  # the decision refuses an unknown shipment
            command = shipment_command(state, ShipmentDispatched.type_name, dispatching, now)
            # The shipment first: racing dispatches of it queue on its row, and the later one finds it
            # dispatched (a conflict) before it moves any stock.
            await tx.shipments.dispatch_shipment(command)
            await tx.inventory.dispatch_stock(command)
            others = (s for s in state.shipments if s.shipment_id != shipment_id)
            await tx.orders.ship_order(command, all(s.status is ShipmentStatus.DISPATCHED for s in others))

        return await self._intervene(
            saga_id,
            lambda state, now: shipment.dispatch(state, shipment_id, now),
            dispatched,
            request,
            lock_order,
        )

    async def redrive(self, saga_id: str) -> None:
        """Another process changed a saga this one drives (an operator's intervention sent to it):
        restart the driver from the journal, so that it acts on the change now rather than when its
        own next commit is refused."""
        async with self._claims.hold(saga_id):
            if self._drivers.driving(saga_id):
                await self._drivers.halt(saga_id)
                self._drivers.spawn(saga_id, None)

    async def _intervene(
        self,
        saga_id: str,
        decide: Callable[[SagaState, datetime], Decision],
        effect: Effect | None = None,
        request: KeyedRequest | None = None,
        lock_order: str = "",
    ) -> SagaState | Refused:
        """Stop the saga's driver, decide on the journal as it stands and record the decision at the
        expected version (with the participants' `effect` of it, if any, in the same transaction),
        then drive the saga on from there. A `request` whose key is bound already is answered the
        saga as it stands (`effect` binds the key). The stopped driver's commit, if one was under
        way, lands or not; either way the decision is made on what the journal holds.
        A driver is started only for a saga the journal holds: by the commit of a decision, or, when
        nothing was decided (a refusal, an error), again for the saga whose driver was stopped. An id
        that is malformed or unknown thus leaves nothing running."""
        async with self._claims.hold(saga_id):
            halted = await self._drivers.halt(saga_id)
            try:
                return await self._decide(saga_id, decide, effect, request, lock_order)
            finally:
                if halted and not self._drivers.driving(saga_id):
                    self._drivers.spawn(saga_id, None)  # from the journal, which says where the saga is

    async def _decide(
        self,
        saga_id: str,
        decide: Callable[[SagaState, datetime], Decision],
        effect: Effect | None,
        request: KeyedRequest | None,
        lock_order: str,
    ) -> SagaState | Refused:
        """The saga after the decision, whose commit starts its driver, or the refusal."""

        async def work(tx: Transaction) -> tuple[SagaState | Refused, SagaChange | None]:
            journal = await tx.sagas.load(saga_id)
            if not journal:
                return Refused(ProblemCode.UNKNOWN_SAGA, f"no saga {saga_id}"), None
            before, now = fold(saga_id, journal), self._clock.now()
            if request is not None:
                earlier = await tx.requests.bound(request.idempotency_key)
                if earlier is not None:
                    if earlier != request.fingerprint:
                        raise IdempotencyKeyReused(request.idempotency_key)
                    return before, None  # a replay: the saga as it stands, nothing done again
            decision = decide(before, now)
            if isinstance(decision, Refused):
                return decision, None
            if not decision:
                return before, None  # nothing to record: a report repeated, say
            if effect is not None:
                await effect(tx, before, now)
            change = self._steps.settle(SagaChange.from_state(before).apply(decision), now)
            await tx.sagas.append(change, None)
            return change.after, change

        def decided(result: tuple[SagaState | Refused, SagaChange | None]) -> None:
            change = result[1]
            if change is not None:
                self._publish(change)
                self._drivers.spawn(saga_id, change.after)

        async def attempt() -> SagaState | Refused:
            answer, _ = await self._steps.committed(work, decided, lock_order)
            return answer

        # A conflict: the stopped driver's last commit landed meanwhile; decided again, on that.
        return await until_settled(attempt, f"saga {saga_id}: an intervention", keyed=request is not None)


class _SagaClaims:
    """One lock per saga, kept only while someone holds or awaits it: interventions on one saga take
    turns, so that each stops the one driver there is and starts the next."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, saga_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(saga_id, (asyncio.Lock(), 0))
        self._locks[saga_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[saga_id]
            if users == 1:
                del self._locks[saga_id]
            else:
                self._locks[saga_id] = (lock, users - 1)

"""The in-process orchestrator: drives every saga from its journal to a terminal state.

This is the facade the edge calls. It places orders and passes the rest on to its parts: the
drivers (drivers.py), running a step (steps.py), interventions (interventions.py) and what a
commit announces, to listeners and to those waiting for an outcome (outcomes.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from functools import partial

from domain.model.commands import OrderPlaced, PlaceOrder
from domain.model.saga import SagaChange, SagaPolicy, SagaStarted, Step
from domain.orchestration.attempts import until_settled
from domain.orchestration.drivers import Drivers
from domain.orchestration.interventions import Interventions
from domain.orchestration.outcomes import Outcomes, SagaListener
from domain.orchestration.steps import Steps, step_command
from domain.ports import (
    Clock,
    IdempotencyKeyReused,
    OutcomeUnknown,
    ParticipantGate,
    Placement,
    RemoteWarehouses,
    SagaLeases,
    Transaction,
    TransactionRunner,
)

log = logging.getLogger("ordersaga.saga")


class _StepsFailed(Exception):
    """A call made in a placement's transaction failed (the cause)."""


class Orchestrator:
    def __init__(
        self,
        runner: TransactionRunner,
        clock: Clock,
        policy: SagaPolicy,
        gate: ParticipantGate | None = None,
        listeners: Iterable[SagaListener] = (),
        leases: SagaLeases | None = None,
        warehouses: RemoteWarehouses | None = None,
        chain_placement: bool = False,
    ) -> None:
        if chain_placement and leases is not None:
            # A placement that made its calls would hold its stock rows for its whole batch, while
            # other processes' writers wait for them (decision 0004). Only SQLite's one writer takes
            # no row lock at all, so only it chains placements; a call's error is wrapped below,
            # which a runner that steps work aside on a held row (StockBusy) must not meet.
            raise ValueError("a placement makes its saga's calls only where one process writes")
        self._clock = clock
        # Whether a placement makes its saga's first calls in its own transaction (decision 0004).
        self._chain_placement = chain_placement
        self._outcomes = Outcomes(listeners)
        self._steps = Steps(runner, clock, policy, self._outcomes.publish, gate, leases, warehouses)
        self._drivers = Drivers(self._steps, clock, policy)
        self._interventions = Interventions(self._steps, self._drivers, clock, policy, self._outcomes.publish)
        self.add_listener = self._outcomes.add_listener
        self.watch = self._outcomes.watch
        self.unwatch = self._outcomes.unwatch
        self.watching = self._outcomes.watching
        self.resume = self._drivers.resume
        self.stop = self._drivers.stop
        self.retry = self._interventions.retry
        self.abort = self._interventions.abort
        self.cancel_order = self._interventions.cancel_order
        self.dispatch_shipment = self._interventions.dispatch_shipment
        self.report_shipment_outcome = self._interventions.report_shipment_outcome
        self.redrive = self._interventions.redrive

    @property
    def running(self) -> int:
        return self._drivers.running

    async def place_order(self, command: PlaceOrder) -> OrderPlaced:
        """Create the order and start its saga in one transaction; once this returns the order is
        durable, and the saga runs on in the background. With `chain_placement`, the saga's calls
        are made in that transaction too (up to a wait, the end, or a remote warehouse), so the saga
        returned is usually settled; a call that fails there rolls the placement back, and the
        order is placed alone (decision 0004)."""
        # Only a keyed placement is compared or bound by its fingerprint.
        fingerprint = command.fingerprint() if command.idempotency_key is not None else ""
        # The same ids on every attempt: only one of them commits, and a log line names that one.
        saga_id, order_id = str(uuid.uuid4()), str(uuid.uuid4())

        async def work(tx: Transaction, chain: bool) -> tuple[OrderPlaced, SagaChange | None]:
            key = command.idempotency_key
            if key is not None:
                earlier = await tx.sagas.find_placement(key, command.unscoped_key, command.customer_id)
                if earlier is not None:
                    if earlier.fingerprint != fingerprint:
                        raise IdempotencyKeyReused(key)
                    return OrderPlaced(earlier.saga_id, earlier.order_id, replayed=True), None
            now = self._clock.now()
            started = SagaStarted(order_id, command.customer_id, command.lines, now)
            change = SagaChange.started(saga_id, started)
            await tx.orders.create_order(step_command(change.after, Step.CREATE_ORDER.value, now))
            change = self._steps.settle(change, now)
            if chain and (call := self._steps.next_in_chain(change.after, now)) is not None:
                try:
                    change = await self._steps.run(tx, change, call, now, chain=True)
                except Exception as error:
                    raise _StepsFailed from error
            placement = None if key is None else Placement(key, fingerprint, saga_id, order_id)
            await tx.sagas.append(change, placement)
            return OrderPlaced(saga_id, order_id, replayed=False, state=change.after), change

        def started(result: tuple[OrderPlaced, SagaChange | None]) -> None:
            change = result[1]
            if change is not None:
                self._outcomes.publish(change)
                if not change.after.is_terminal:  # one the placement ended needs no driver
                    self._drivers.spawn(change.after.saga_id, change.after)

        lost, chain = False, self._chain_placement

        async def attempt() -> OrderPlaced:
            nonlocal lost, chain
            while True:
                try:
                    placed, _ = await self._steps.committed(partial(work, chain=chain), started)
                except OutcomeUnknown:
                    lost = True
                    raise
                except _StepsFailed as failed:
                    # The call's failure rolled the placement back with it: place the order alone,
                    # and its driver makes the calls again, charging a failure to the step that
                    # failed. One line, as a driver's failed call logs: in an outage, one a placement.
                    log.warning(
                        "saga %s: a call failed in its placement's transaction (%r); placing it alone",
                        saga_id,
                        failed.__cause__,
                    )
                    chain = False
                    continue
                return placed

        # A conflict: a request with the same key bound it first; looked at again, that one replays.
        placed = await until_settled(attempt, "placing an order", keyed=command.idempotency_key is not None)
        if lost and placed.replayed:
            # The commit that started the saga lost its answer, so nothing here drives it yet. (With
            # leases, that driver steps back until a lease round finds the saga's lease here.)
            self.resume([placed.saga_id])
        return placed

    async def settled_elsewhere(self, saga_id: str) -> None:
        """Another process's commit settled a saga watched here (a replayed placement, a saga driven
        there): read it from the journal and tell the watchers."""
        if not self.watching(saga_id):
            return
        state = await self._steps.load(saga_id)
        if state is not None and state.is_settled:
            self._outcomes.answer(state)

    async def let_go(self, saga_ids: Iterable[str]) -> None:
        """Stop driving these sagas: their leases went to another process. A commit already queued
        lands or not; if the new owner wrote first, the journal's expected version refuses it."""
        await asyncio.gather(*(self._drivers.halt(saga_id) for saga_id in saga_ids))

"""Running a step: admit the call (the gate), make it, record its outcome and what follows from it
in one transaction with the participant's effect, commit, and announce what committed.

A participant call, the events it produces and their projection share one transaction, so a
participant's effect is never kept without its journal entry, or the reverse. With no gate to
consult between steps, the calls that follow one another share that transaction too (`advance`).

A remote warehouse is the exception: its commands go over the network first, all of a step's at
once, and their answers are then recorded in one transaction (with the built-in warehouse's, if the
order's picks come from both). Nothing holds a transaction open while a warehouse thinks. A crash
between the two sends them again under the same command ids, which the warehouse acts on once. Where
each shipment's commands go is journalled before the first leaves (`settle`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from domain.model.saga import (
    Call,
    Emit,
    Outcome,
    Participant,
    Rejected,
    SagaChange,
    SagaEvent,
    SagaPolicy,
    SagaState,
    Shipment,
    ShipmentRouted,
    Step,
    Unavailable,
    fold,
    next_action,
    on_outcome,
    on_shipment_outcomes,
    on_timeout,
)
from domain.model.shipment import command_id
from domain.ports import (
    Clock,
    ConcurrencyConflict,
    ParticipantGate,
    ParticipantUnavailable,
    RemoteWarehouses,
    SagaLeases,
    StepCommand,
    Transaction,
    TransactionRunner,
)

R = TypeVar("R")
log = logging.getLogger("ordersaga.saga")


class LeaseLost(Exception):
    """This process does not hold the saga's lease, so it must not write to the saga."""


class Steps:
    def __init__(
        self,
        runner: TransactionRunner,
        clock: Clock,
        policy: SagaPolicy,
        publish: Callable[[SagaChange], None],
        gate: ParticipantGate | None = None,
        leases: SagaLeases | None = None,
        warehouses: RemoteWarehouses | None = None,
    ) -> None:
        self._runner = runner
        self._clock = clock
        self._policy = policy
        self._publish = publish
        self._gate = gate
        # None: this process is the only one (SQLite) and drives every saga.
        self._leases = leases
        # None: every warehouse is the built-in one.
        self._warehouses = warehouses

    async def call(self, state: SagaState, call: Call, chain: bool = True) -> SagaState:
        """Make the step's call (after the gate admits it) and record its outcome; a call that fails
        is recorded as an unavailable participant, so the retry policy decides what follows."""
        chain = chain and self._gate is None
        if self._gate is not None:
            try:
                await self._admit(self._gate, call)
            except ParticipantUnavailable as refused:
                return await self.advance(state, None, Unavailable(str(refused) or "participant unavailable"))
        try:
            state = await self._routed(state, call)
            answered = await self._send_remote(state, call)
            return await self.advance(state, call, chain=chain and not answered, answered=answered)
        except (ConcurrencyConflict, LeaseLost):
            raise
        except Exception as error:
            if chain:
                # A chain rolls back whole; run this one step alone, so a failure is charged to
                # the step that failed.
                return await self.call(state, call, chain=False)
            # The participant's work was rolled back with the transaction; count it as a failed
            # attempt so the retry policy, not a tight loop, decides what happens next.
            log.warning("saga %s: %s failed: %r", state.saga_id, call.step.value, error)
            return await self.advance(state, None, Unavailable(f"{type(error).__name__}: {error}"))

    def _remote(self, state: SagaState, step: Step) -> list[Shipment]:
        """The shipments of a shipment step that were routed to a remote warehouse (`settle`)."""
        if self._warehouses is None or step not in (Step.CREATE_SHIPMENT, Step.CANCEL_SHIPMENT):
            return []
        return [s for s in state.shipments_for(step) if s.is_remote]

    def services_of(self, state: SagaState) -> dict[str, str | None]:
        """The service URL of each warehouse the saga's shipments come from, as the catalog names it
        now, by warehouse code; None: the built-in warehouse."""
        return {
            s.warehouse_code: self._warehouses.url_of(s.warehouse_code) if self._warehouses else None
            for s in state.shipments
        }

    def _routes(self, state: SagaState, now: datetime) -> tuple[ShipmentRouted, ...]:
        """The shipments CREATE_SHIPMENT is about to send for the first time to a remote warehouse,
        each routed to its warehouse's service as the catalog says now."""
        if self._warehouses is None:
            return ()
        return tuple(
            ShipmentRouted(s.shipment_id, url, now)
            for s in state.shipments_for(Step.CREATE_SHIPMENT)
            if not s.is_remote and (url := self._warehouses.url_of(s.warehouse_code)) is not None
        )

    async def _routed(self, state: SagaState, call: Call) -> SagaState:
        """The saga with the routes of the shipments `call` sends to a remote warehouse, committed
        before any command leaves. `settle` journals them with the step's start; only a step started
        under a journal written before routes existed (resumed after an upgrade) needs this extra
        transaction, so that its resent command, its cancel and an early report follow one route."""
        if call.step is not Step.CREATE_SHIPMENT or not (routes := self._routes(state, self._clock.now())):
            return state
        self.check_lease(state.saga_id)

        async def work(tx: Transaction) -> SagaChange:
            change = SagaChange.from_state(state).apply(routes)
            await tx.sagas.append(change, None)
            return change

        change = await self.committed(work, self._publish, min(line.sku for line in state.lines))
        return change.after

    async def _send_remote(self, state: SagaState, call: Call) -> dict[str, Outcome]:
        """The remote warehouses' answers to the step's commands, sent all at once, each within the
        step's deadline; by shipment id."""
        remote = self._remote(state, call.step)
        if not remote:
            return {}
        assert self._warehouses is not None
        self.check_lease(state.saga_id)
        now = self._clock.now()
        timeout_s = max((call.deadline - now).total_seconds(), 0.0)
        answers = await asyncio.gather(
            *(
                self._warehouses.send(
                    call.step, shipment_command(state, call.step.value, s, now), s.service_url, timeout_s
                )
                for s in remote
            )
        )
        return {s.shipment_id: answer for s, answer in zip(remote, answers, strict=True)}

    async def _admit(self, gate: ParticipantGate, call: Call) -> None:
        """Wait for the gate, but no longer than the step's deadline: a participant slower than its
        deadline is a timeout, which the transaction then records."""
        admitted = asyncio.ensure_future(gate.admit(call.participant))
        deadline = asyncio.ensure_future(self._clock.sleep_until(call.deadline))
        try:
            await asyncio.wait({admitted, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (admitted, deadline):
                waiter.cancel()
        if admitted.done() and not admitted.cancelled():
            admitted.result()

    async def advance(
        self,
        state: SagaState,
        call: Call | None,
        outcome: Outcome | None = None,
        chain: bool = False,
        answered: Mapping[str, Outcome] | None = None,
    ) -> SagaState:
        """One transaction: the outcome given, or the call's, and what follows from it. With `chain`,
        each following call is made in the same transaction too, up to a wait, the end, or a call to
        a remote warehouse: with no gate to consult between steps, one commit then carries the rest
        of the saga. `answered`: the call's remote warehouses' answers, by shipment id."""
        # Checked again here: a participant (or the gate) may have kept the driver past its lease.
        self.check_lease(state.saga_id)

        async def work(tx: Transaction) -> SagaChange:
            now = self._clock.now()
            change = SagaChange.from_state(state)
            if outcome is not None:
                change = change.apply(on_outcome(state, outcome, now, self._policy))
            change = await self.run(tx, change, call, now, chain, answered)
            await tx.sagas.append(change, None)
            return change

        change = await self.committed(work, self._publish, min(line.sku for line in state.lines))
        return change.after

    async def run(
        self,
        tx: Transaction,
        change: SagaChange,
        call: Call | None,
        now: datetime,
        chain: bool,
        answered: Mapping[str, Outcome] | None = None,
    ) -> SagaChange:
        """`change` and, in `tx`, what `call` makes of the saga: its participant's answer (or its
        timeout) and what follows from it (`settle`). With `chain`, each following call is made in
        `tx` too, up to a wait, the end, or a call to a remote warehouse. `answered`: the call's
        remote warehouses' answers, by shipment id."""
        next_call, answers = call, answered or {}
        while next_call is not None:
            current = change.after
            if now >= next_call.deadline:
                produced = on_timeout(current, now, self._policy)
            else:
                produced = await _execute(tx, current, next_call.step, now, self._policy, self._gate, answers)
            change, answers = self.settle(change.apply(produced), now), {}
            next_call = self.next_in_chain(change.after, now) if chain else None
        return self.settle(change, now)

    def next_in_chain(self, state: SagaState, now: datetime) -> Call | None:
        """The call that comes next for the saga, if it may be made in the transaction that brought
        the saga here: none when a gate is consulted before each call, or when it goes to a remote
        warehouse (whose answer comes over the network, outside any transaction)."""
        following = next_action(state, now, self._policy)
        if self._gate is not None or not isinstance(following, Call):
            return None
        return None if self._remote(state, following.step) else following

    async def committed(
        self, work: Callable[[Transaction], Awaitable[R]], settled: Callable[[R], None], lock_order: str = ""
    ) -> R:
        """Run `work` in a transaction and, once it has committed, `settled` with its result, even when
        the caller stopped waiting meanwhile (a driver halted by an intervention, a client gone): what
        has committed is always announced, and a placed order always driven."""
        transaction = asyncio.ensure_future(self._runner.run(work, lock_order))

        def on_commit(done: asyncio.Future[R]) -> None:
            if not done.cancelled() and done.exception() is None:
                settled(done.result())

        transaction.add_done_callback(on_commit)
        return await asyncio.shield(transaction)

    def settle(self, change: SagaChange, now: datetime) -> SagaChange:
        """Record the transitions that need no participant (starting the next step, say), up to the
        next call or wait, so they share the transaction of what led to them. Before a call to
        CREATE_SHIPMENT, the routes of the shipments it sends to a remote warehouse for the first
        time: they commit before any command leaves, so that the shipment's retries and cancel go
        where its first command went, and a turn back cancels it even if no answer ever came."""
        while isinstance(action := next_action(change.after, now, self._policy), Emit):
            change = change.apply(action.events)
        if isinstance(action, Call) and action.step is Step.CREATE_SHIPMENT:
            change = change.apply(self._routes(change.after, now))
        return change

    async def load(self, saga_id: str) -> SagaState | None:
        """The saga as its journal holds it; None if there is no such saga."""

        async def work(tx: Transaction) -> list[SagaEvent]:
            return await tx.sagas.load(saga_id)

        journal = await self._runner.run(work)
        return fold(saga_id, journal) if journal else None

    def check_lease(self, saga_id: str) -> None:
        """Raises LeaseLost unless this process may write to the saga."""
        if self._leases is not None and not self._leases.holds(saga_id):
            raise LeaseLost(saga_id)


def step_command(state: SagaState, action: str, now: datetime) -> StepCommand:
    """The command for `action` (a step's name, or an intervention's event) of the saga."""
    return StepCommand(
        command_id=f"{state.saga_id}:{action}",
        saga_id=state.saga_id,
        order_id=state.order_id,
        customer_id=state.customer_id,
        lines=state.lines,
        picks=state.picks,
        reservation_id=f"{state.saga_id}:{Step.RESERVE_STOCK.value}",
        at=now,
    )


def shipment_command(state: SagaState, action: str, shipment: Shipment, now: datetime) -> StepCommand:
    """The command for `action` on one of the saga's shipments: its id names the warehouse, so each
    shipment's command keeps its id on every attempt and after a restart."""
    return replace(
        step_command(state, action, now),
        command_id=command_id(state.saga_id, action, shipment.warehouse_code),
        picks=shipment.picks,
        shipment_id=shipment.shipment_id,
        warehouse_code=shipment.warehouse_code,
    )


async def _execute(
    tx: Transaction,
    state: SagaState,
    step: Step,
    now: datetime,
    policy: SagaPolicy,
    gate: ParticipantGate | None,
    answered: Mapping[str, Outcome],
) -> tuple[SagaEvent, ...]:
    """The events of one attempt at `step`: its participant's answer and what follows from it.
    `answered`: remote warehouses' answers already in, by shipment id."""
    if step in (Step.CREATE_SHIPMENT, Step.CANCEL_SHIPMENT):
        outcomes = {
            s.shipment_id: answered.get(s.shipment_id)
            or await _shipment_answer(tx, state, step, s, now, gate)
            for s in state.shipments_for(step)
        }
        return on_shipment_outcomes(state, outcomes, now, policy)
    return on_outcome(state, await _answer(tx, state, step, now), now, policy)


async def _shipment_answer(
    tx: Transaction,
    state: SagaState,
    step: Step,
    shipment: Shipment,
    now: datetime,
    gate: ParticipantGate | None,
) -> Outcome:
    """One shipment's command to the built-in warehouse, in this transaction with the others, so that
    they commit together with their answers in the journal (decision 0022 says why they are not sent
    concurrently here)."""
    command = shipment_command(state, step.value, shipment, now)
    if step is Step.CANCEL_SHIPMENT:
        return await tx.shipments.cancel_shipment(command)
    refused = gate.refusal(Participant.SHIPMENT, shipment.warehouse_code) if gate is not None else None
    return Rejected(refused) if refused else await tx.shipments.create_shipment(command)


async def _answer(tx: Transaction, state: SagaState, step: Step, now: datetime) -> Outcome:
    command = step_command(state, step.value, now)
    match step:
        case Step.RESERVE_STOCK:
            return await tx.inventory.reserve_stock(command)
        case Step.CONFIRM_ORDER:
            return await tx.orders.confirm_order(command)
        case Step.RELEASE_STOCK:
            return await tx.inventory.release_stock(command)
        case Step.CANCEL_ORDER:
            return await tx.orders.cancel_order(command)
        case _:
            raise ValueError(f"{step.value} is not a step of one command")

"""The in-process orchestrator: drives every saga from its journal to a terminal state.

Each running saga has one driver task. A driver asks `next_action` what to do, waits where the saga
must wait (its durable timers are its deadlines and retry times, kept in the journal), and advances
the saga: a participant call, the events it produces and their projection share one transaction, so a
participant's effect is never kept without its journal entry, or the reverse. With no gate to consult
between steps, the calls that follow one another share that transaction too (see `_advance`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from domain import interventions, shipment
from domain.attempts import CONFLICT_ATTEMPTS, until_settled
from domain.interventions import Actor, Decision, Refused
from domain.model import OrderLine
from domain.ports import (
    Clock,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    KeyedRequest,
    OutcomeUnknown,
    ParticipantGate,
    ParticipantUnavailable,
    Placement,
    SagaLeases,
    StepCommand,
    Transaction,
    TransactionRunner,
)
from domain.problems import ProblemCode
from domain.saga import (
    Call,
    Emit,
    Finished,
    Outcome,
    SagaChange,
    SagaEvent,
    SagaPolicy,
    SagaStarted,
    SagaState,
    Step,
    Unavailable,
    Wait,
    fold,
    next_action,
    on_outcome,
    on_timeout,
)

R = TypeVar("R")
log = logging.getLogger("ordersaga.saga")

# The saga (and step) the current task is working on, so that whoever records what happens (logs,
# traces) can tell which saga it is about without every call passing it along.
current_saga: ContextVar[str | None] = ContextVar("current_saga", default=None)
current_step: ContextVar[str | None] = ContextVar("current_step", default=None)


# Listeners receive each committed SagaChange (domain/saga.py) after the commit.
SagaListener = Callable[[SagaChange], None]

# After an unexpected error (the database away, a bug) a driver backs off this long, doubling up to
# the cap, and reloads the saga from its journal before trying again.
_ERROR_BACKOFF = timedelta(milliseconds=50)
_ERROR_BACKOFF_CAP = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    customer_id: str
    lines: tuple[OrderLine, ...]
    idempotency_key: str | None = None
    # The client's key as sent, under which release 0.1.0 bound it for the order's customer: looked
    # up with `idempotency_key`, never bound anew (SagaStore.find_placement).
    unscoped_key: str | None = None

    def canonical(self) -> str:
        """The request as canonical JSON (sorted keys, no spaces, ASCII escapes), its lines sorted,
        as their order carries no meaning: equal requests give equal text, and the text decodes back
        to the request, so no customer id or SKU can pass for another field the way it could for a
        separator in joined text."""
        request = {"customerId": self.customer_id, "lines": sorted([x.sku, x.quantity] for x in self.lines)}
        return json.dumps(request, sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        """SHA-256 (hex) of `canonical()`: what an idempotency key's placement is compared by."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    saga_id: str
    order_id: str
    replayed: bool
    # The saga as this placement committed it; None when the idempotency key replayed an earlier one.
    state: SagaState | None = None


class Orchestrator:
    def __init__(
        self,
        runner: TransactionRunner,
        clock: Clock,
        policy: SagaPolicy,
        gate: ParticipantGate | None = None,
        listeners: Iterable[SagaListener] = (),
        leases: SagaLeases | None = None,
    ) -> None:
        self._runner = runner
        # None: this process is the only one (SQLite) and drives every saga.
        self._leases = leases
        self._clock = clock
        self._policy = policy
        self._gate = gate
        self._listeners = list(listeners)
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._claims = _SagaClaims()
        self._watchers: dict[str, list[asyncio.Future[SagaState]]] = {}

    @property
    def running(self) -> int:
        return len(self._drivers)

    def add_listener(self, listener: SagaListener) -> None:
        self._listeners.append(listener)

    async def place_order(self, command: PlaceOrder) -> OrderPlaced:
        """Create the order and start its saga in one transaction; once this returns the order is
        durable, and the saga runs on in the background."""
        fingerprint = command.fingerprint()

        async def work(tx: Transaction) -> tuple[OrderPlaced, SagaChange | None]:
            key = command.idempotency_key
            if key is not None:
                earlier = await tx.sagas.find_placement(key, command.unscoped_key, command.customer_id)
                if earlier is not None:
                    if earlier.fingerprint != fingerprint:
                        raise IdempotencyKeyReused(key)
                    return OrderPlaced(earlier.saga_id, earlier.order_id, replayed=True), None
            saga_id, order_id, now = str(uuid.uuid4()), str(uuid.uuid4()), self._clock.now()
            started = SagaStarted(order_id, command.customer_id, command.lines, now)
            change = SagaChange.started(saga_id, started)
            await tx.orders.create_order(self._command(change.after, Step.CREATE_ORDER.value, now))
            change = self._settle(change, now)
            placement = None if key is None else Placement(key, fingerprint, saga_id, order_id)
            await tx.sagas.append(change, placement)
            return OrderPlaced(saga_id, order_id, replayed=False, state=change.after), change

        def started(result: tuple[OrderPlaced, SagaChange | None]) -> None:
            change = result[1]
            if change is not None:
                self._publish(change)
                self._spawn(change.after.saga_id, change.after)

        lost = False

        async def attempt() -> OrderPlaced:
            nonlocal lost
            try:
                placed, _ = await self._committed(work, started)
            except OutcomeUnknown:
                lost = True
                raise
            return placed

        # A conflict: a request with the same key bound it first; looked at again, that one replays.
        placed = await until_settled(attempt, "placing an order", keyed=command.idempotency_key is not None)
        if lost and placed.replayed:
            # The commit that started the saga lost its answer, so nothing here drives it yet. (With
            # leases, that driver steps back until a lease round finds the saga's lease here.)
            self.resume([placed.saga_id])
        return placed

    def watch(self, saga_id: str) -> asyncio.Future[SagaState]:
        """A future of the saga once a commit settles it (finished, or parked for an operator). Only
        commits after this call count, so watch a new saga before its driver runs (right after
        `place_order` returns), and `unwatch` when no longer waiting."""
        watcher: asyncio.Future[SagaState] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(saga_id, []).append(watcher)
        return watcher

    def unwatch(self, saga_id: str, watcher: asyncio.Future[SagaState]) -> None:
        watchers = self._watchers.get(saga_id, [])
        if watcher in watchers:
            watchers.remove(watcher)
        if not watchers:
            self._watchers.pop(saga_id, None)

    def watching(self, saga_id: str) -> bool:
        return saga_id in self._watchers

    async def settled_elsewhere(self, saga_id: str) -> None:
        """Another process's commit settled a saga watched here (a replayed placement, a saga driven
        there): read it from the journal and tell the watchers."""
        if not self.watching(saga_id):
            return
        state = await self._load(saga_id)
        if state is not None and state.is_settled:
            for watcher in self._watchers.pop(saga_id, []):
                if not watcher.done():
                    watcher.set_result(state)

    def resume(self, saga_ids: Iterable[str]) -> None:
        """Pick up sagas left unfinished (by a crash, a restart): each continues from its journal."""
        for saga_id in saga_ids:
            if saga_id not in self._drivers:
                self._spawn(saga_id, None)

    async def let_go(self, saga_ids: Iterable[str]) -> None:
        """Stop driving these sagas: their leases went to another process. A commit already queued
        lands or not; if the new owner wrote first, the journal's expected version refuses it."""
        await asyncio.gather(*(self._halt(saga_id) for saga_id in saga_ids))

    async def redrive(self, saga_id: str) -> None:
        """Another process changed a saga this one drives (an operator's intervention sent to it):
        restart the driver from the journal, so that it acts on the change now rather than when its
        own next commit is refused."""
        async with self._claims.hold(saga_id):
            if saga_id in self._drivers:
                await self._halt(saga_id)
                self._spawn(saga_id, None)

    async def retry(self, saga_id: str, actor: Actor) -> SagaState | Refused:
        """An operator (`actor`, recorded in the journal) sends a parked saga on: its parked step gets
        a fresh series of attempts."""
        return await self._intervene(saga_id, lambda state, now: interventions.retry(state, now, actor))

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

    async def dispatch_shipment(
        self, saga_id: str, shipment_id: str, request: KeyedRequest | None = None, lock_order: str = ""
    ) -> SagaState | Refused:
        """The warehouse dispatched the saga's shipment: in the transaction that journals it, the
        picked stock leaves its sections, the shipment is dispatched and the order shipped.
        `request`'s key, if any, is bound in that transaction: the same request again answers the
        saga as it stands, doing nothing (IdempotencyKeyReused for another request under the key).
        `lock_order`: the first SKU of the picks (see TransactionRunner)."""

        async def dispatched(tx: Transaction, command: StepCommand) -> None:
            if request is not None:
                await tx.requests.bind(request, command.at)
            await tx.inventory.dispatch_stock(command)
            await tx.shipments.dispatch_shipment(command)
            await tx.orders.ship_order(command)

        return await self._intervene(
            saga_id,
            lambda state, now: shipment.dispatch(state, shipment_id, now),
            dispatched,
            request,
            lock_order,
        )

    async def stop(self) -> None:
        drivers = list(self._drivers.values())
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

    # ------------------------------------------------------------------------------------ interventions

    async def _intervene(
        self,
        saga_id: str,
        decide: Callable[[SagaState, datetime], Decision],
        effect: Callable[[Transaction, StepCommand], Awaitable[None]] | None = None,
        request: KeyedRequest | None = None,
        lock_order: str = "",
    ) -> SagaState | Refused:
        """Stop the saga's driver, decide on the journal as it stands and record the decision at the
        expected version (with the participants' `effect` of it, if any, in the same transaction),
        then drive the saga on from there. A `request` whose key is bound already is answered the
        saga as it stands (`effect` binds the key). The stopped driver's commit, if one was under way, lands
        or not; either way the decision is made on what the journal holds.
        A driver is started only for a saga the journal holds: by the commit of a decision, or, when
        nothing was decided (a refusal, an error), again for the saga whose driver was stopped. An id
        that is malformed or unknown thus leaves nothing running."""
        async with self._claims.hold(saga_id):
            halted = await self._halt(saga_id)
            try:
                return await self._decide(saga_id, decide, effect, request, lock_order)
            finally:
                if halted and saga_id not in self._drivers:
                    self._spawn(saga_id, None)  # from the journal, which says where the saga is

    async def _decide(
        self,
        saga_id: str,
        decide: Callable[[SagaState, datetime], Decision],
        effect: Callable[[Transaction, StepCommand], Awaitable[None]] | None,
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
            if effect is not None:
                await effect(tx, self._command(before, decision[0].type_name, now))
            change = self._settle(SagaChange.from_state(before).apply(decision), now)
            await tx.sagas.append(change, None)
            return change.after, change

        def decided(result: tuple[SagaState | Refused, SagaChange | None]) -> None:
            change = result[1]
            if change is not None:
                self._publish(change)
                self._spawn(saga_id, change.after)

        async def attempt() -> SagaState | Refused:
            answer, _ = await self._committed(work, decided, lock_order)
            return answer

        # A conflict: the stopped driver's last commit landed meanwhile; decided again, on that.
        return await until_settled(attempt, f"saga {saga_id}: an intervention", keyed=request is not None)

    async def _halt(self, saga_id: str) -> bool:
        """Stop the saga's driver; whether it had one."""
        driver = self._drivers.pop(saga_id, None)
        if driver is None:
            return False
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        return True

    # ------------------------------------------------------------------------------------------ driving

    def _spawn(self, saga_id: str, state: SagaState | None) -> None:
        """Start the saga's driver, from `state` or, when None, from its journal, in place of any it
        has: one driver per saga (a stopped one's commit in flight still lands, and the journal's
        expected version makes the new one reload)."""
        earlier = self._drivers.get(saga_id)
        if earlier is not None:
            earlier.cancel()
        task = asyncio.create_task(self._drive(saga_id, state), name=f"saga-{saga_id}")
        self._drivers[saga_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._drivers.get(saga_id) is done:
                del self._drivers[saga_id]

        task.add_done_callback(forget)

    async def _drive(self, saga_id: str, state: SagaState | None) -> None:
        # The task runs in a copy of its creator's context, so these are the driver's alone.
        current_saga.set(saga_id)
        backoff, conflicts = _ERROR_BACKOFF, 0
        while True:
            current_step.set(state.step.value if state is not None and state.step else None)
            try:
                self._check_lease(saga_id)
                if state is None:
                    state = await self._load(saga_id)
                    if state is None:
                        return  # an intervention on an unknown id that failed: nothing to drive
                match next_action(state, self._clock.now(), self._policy):
                    case Finished():
                        return
                    case Wait(until):
                        await self._clock.sleep_until(until)
                        continue
                    case Emit():
                        state = await self._advance(state, None)
                    case Call() as call:
                        state = await self._call(state, call)
                backoff, conflicts = _ERROR_BACKOFF, 0
            except asyncio.CancelledError:
                raise
            except _LeaseLost:
                # Another process drives it (or will, once the lease this one lost has expired):
                # step back rather than write, or retry against its commits forever.
                log.info("saga %s: not leased to this process; leaving it to its owner", saga_id)
                return
            except ConcurrencyConflict:
                # Another writer moved the saga on: reload it. One that keeps doing so (a stale
                # driver racing the live one) is paced like an error rather than spun on.
                state, conflicts = None, conflicts + 1
                if conflicts >= CONFLICT_ATTEMPTS:
                    log.warning(
                        "saga %s: %d conflicts in a row; next try in %.1f s",
                        saga_id,
                        conflicts,
                        backoff.total_seconds(),
                    )
                    await asyncio.sleep(backoff.total_seconds())
                    backoff = min(backoff * 2, _ERROR_BACKOFF_CAP)
            except Exception as error:
                # The first failure of a run is logged with its traceback; those that follow, one line
                # per backoff, so a saga that keeps failing does not flood the log.
                if backoff == _ERROR_BACKOFF:
                    log.exception("saga %s: advancing failed; retrying from its journal", saga_id)
                else:
                    log.warning(
                        "saga %s: advancing still fails (%s); next try in %.1f s",
                        saga_id,
                        type(error).__name__,
                        backoff.total_seconds(),
                    )
                await asyncio.sleep(backoff.total_seconds())
                backoff = min(backoff * 2, _ERROR_BACKOFF_CAP)
                state = None

    async def _call(self, state: SagaState, call: Call, chain: bool = True) -> SagaState:
        chain = chain and self._gate is None
        if self._gate is not None:
            try:
                await self._admit(call)
            except ParticipantUnavailable as refused:
                return await self._advance(
                    state, None, Unavailable(str(refused) or "participant unavailable")
                )
        try:
            return await self._advance(state, call, chain=chain)
        except (ConcurrencyConflict, _LeaseLost):
            raise
        except Exception as error:
            if chain:
                # A chain rolls back whole; run this one step alone, so a failure is charged to
                # the step that failed.
                return await self._call(state, call, chain=False)
            # The participant's work was rolled back with the transaction; count it as a failed
            # attempt so the retry policy, not a tight loop, decides what happens next.
            log.warning("saga %s: %s failed: %r", state.saga_id, call.step.value, error)
            return await self._advance(state, None, Unavailable(f"{type(error).__name__}: {error}"))

    async def _admit(self, call: Call) -> None:
        """Wait for the gate, but no longer than the step's deadline: a participant slower than its
        deadline is a timeout, which the transaction then records."""
        assert self._gate is not None
        admitted = asyncio.ensure_future(self._gate.admit(call.participant))
        deadline = asyncio.ensure_future(self._clock.sleep_until(call.deadline))
        try:
            await asyncio.wait({admitted, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (admitted, deadline):
                waiter.cancel()
        if admitted.done() and not admitted.cancelled():
            admitted.result()

    async def _advance(
        self, state: SagaState, call: Call | None, outcome: Outcome | None = None, chain: bool = False
    ) -> SagaState:
        """One transaction: the outcome given, or the call's, and what follows from it. With `chain`,
        each following call is made in the same transaction too, up to a wait or the end: with no
        gate to consult between steps, one commit then carries the rest of the saga."""
        # Checked again here: a participant (or the gate) may have kept the driver past its lease.
        self._check_lease(state.saga_id)

        async def work(tx: Transaction) -> SagaChange:
            now = self._clock.now()
            change = SagaChange.from_state(state)
            if outcome is not None:
                change = change.apply(on_outcome(state, outcome, now, self._policy))
            next_call = call
            while next_call is not None:
                current = change.after
                if now >= next_call.deadline:
                    produced = on_timeout(current, now, self._policy)
                else:
                    done = await self._execute(tx, current, next_call.step, now)
                    produced = on_outcome(current, done, now, self._policy)
                change = self._settle(change.apply(produced), now)
                following = next_action(change.after, now, self._policy)
                next_call = following if chain and isinstance(following, Call) else None
            change = self._settle(change, now)
            await tx.sagas.append(change, None)
            return change

        change = await self._committed(work, self._publish, min(line.sku for line in state.lines))
        return change.after

    async def _committed(
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

    def _settle(self, change: SagaChange, now: datetime) -> SagaChange:
        """Record the transitions that need no participant (starting the next step, say), up to the
        next call or wait, so they share the transaction of what led to them."""
        while isinstance(action := next_action(change.after, now, self._policy), Emit):
            change = change.apply(action.events)
        return change

    async def _execute(self, tx: Transaction, state: SagaState, step: Step, now: datetime) -> Outcome:
        command = self._command(state, step.value, now)
        match step:
            case Step.RESERVE_STOCK:
                return await tx.inventory.reserve_stock(command)
            case Step.CONFIRM_ORDER:
                return await tx.orders.confirm_order(command)
            case Step.CREATE_SHIPMENT:
                return await tx.shipments.create_shipment(command)
            case Step.RELEASE_STOCK:
                return await tx.inventory.release_stock(command)
            case Step.CANCEL_ORDER:
                return await tx.orders.cancel_order(command)
            case Step.CANCEL_SHIPMENT:
                return await tx.shipments.cancel_shipment(command)
            case Step.CREATE_ORDER:
                raise ValueError("orders are created when the saga starts")

    @staticmethod
    def _command(state: SagaState, action: str, now: datetime) -> StepCommand:
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
            shipment_id=state.shipment_id,
        )

    async def _load(self, saga_id: str) -> SagaState | None:
        """The saga as its journal holds it; None if there is no such saga."""

        async def work(tx: Transaction) -> list[SagaEvent]:
            return await tx.sagas.load(saga_id)

        journal = await self._runner.run(work)
        return fold(saga_id, journal) if journal else None

    def _check_lease(self, saga_id: str) -> None:
        if self._leases is not None and not self._leases.holds(saga_id):
            raise _LeaseLost(saga_id)

    def _publish(self, change: SagaChange) -> None:
        saga = current_saga.set(change.after.saga_id)
        try:
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("saga %s: a listener failed", change.after.saga_id)
        finally:
            current_saga.reset(saga)
        if change.after.is_settled:
            for watcher in self._watchers.pop(change.after.saga_id, []):
                if not watcher.done():
                    watcher.set_result(change.after)


class _LeaseLost(Exception):
    """This process does not hold the saga's lease, so it must not write to the saga."""


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

"""Group commit: many sagas' steps in one database transaction.

Work queued while a transaction is being written joins the next one, so under load one commit (one
fsync) carries dozens of sagas' steps, and with one saga alone nothing waits. If anything in a batch
fails, the batch is rolled back and each piece of work runs again in a transaction of its own, so one
failure only ever fails its own work.

With an async engine (PostgreSQL) a lane writes its batches on the event loop; with a blocking one
(SQLite) it writes each whole batch in a thread of its own (see persistence/connection.py).

Under overload, work that no lane has taken within `admission_timeout` is withdrawn and answered
`WritersBusy`: it never runs, so a caller told so may send it again without doing it twice. Work a
lane has taken is left to commit, however long its batch takes.

On PostgreSQL no batch waits for a stock row: work that finds one held (persistence/write/
stock_locks.py) steps out of its batch, which goes on without it (or, if the work had written
something already, is rolled back and written again without it), and joins the queue of the one
writer this process has for that SKU while one is needed. That writer's transactions carry only such
work and wait for the row; later work whose lock order names the SKU queues there directly while it
runs. Saga work waits there as long as the row is held; other work (an administrative write) fails
with the lock's error when a wait times out, as below.

Work rolled back by contention (a lock wait past the lock timeout, a deadlock, a serialization
failure: what other transactions did, not what it says) runs again, up to CONTENTION_ATTEMPTS times
with a jittered, growing pause; then its caller gets the error, which the edge answers as the
service being busy. A commit whose connection is lost has an unknown outcome: every piece of work in
that batch is answered OutcomeUnknown, and none runs again, as it may have committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.orchestration.attempts import jittered_pause
from domain.ports import OutcomeUnknown, Transaction
from persistence.connection import AsyncDb, BlockingDb, Commit, Db, run_blocking
from persistence.database import is_contention, sqlstate
from persistence.metrics import StoreMetrics
from persistence.write.stock_locks import StockBusy

T = TypeVar("T")
log = logging.getLogger("ordersaga.store")

Work = Callable[[Db], Awaitable[Any]]

CONTENTION_ATTEMPTS = 3
CONTENTION_BACKOFF_S = 0.05


class WritersBusy(TimeoutError):
    """No commit lane took the work within the admission timeout; it was withdrawn and never ran.
    A TimeoutError, so the edge reads it as the database being busy: retry later."""


@dataclass(slots=True, eq=False)
class _Job:
    work: Work
    lock_order: str = ""
    # Saga work waits for a held stock row however long it is held; its caller never sees the wait
    # fail (see the module's note).
    queues: bool = False
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    expiry: asyncio.TimerHandle | None = None
    # In a transaction that may commit (a lane took it); a job put aside, having written nothing, is not.
    taken: bool = False


class GroupCommitRunner:
    def __init__(
        self,
        engine: AsyncEngine | Engine,
        make_transaction: Callable[[Db], Transaction],
        metrics: StoreMetrics,
        *,
        lanes: int = 1,
        max_batch: int = 128,
        admission_timeout: float | None = None,
        commit: Commit | None = None,
        prepared: bool = True,
    ) -> None:
        """`admission_timeout`: seconds work may wait for a lane before it is withdrawn (None: no
        limit). `commit`: how a batch on the async engine commits (api/staged_faults.py stages a
        lost answer there). `prepared`: whether the hot statements go straight to the driver, sqlite3
        or asyncpg (persistence/prepared.py), rather than through SQLAlchemy."""
        self._engine = engine
        self._make_transaction = make_transaction
        self._metrics = metrics
        self._lanes = lanes
        self._max_batch = max_batch
        self._admission_timeout = admission_timeout
        self._commit_batch = commit or _commit
        self._prepared = prepared
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # Every job not answered yet, wherever it is (queued, held, in a batch), for `stop`.
        self._waiting: set[_Job] = set()
        # Work waiting for a held stock row, and the writer that serves it, by SKU.
        self._held: dict[str, list[_Job]] = {}
        self._stock_writers: dict[str, asyncio.Task[None]] = {}
        self._threads = ThreadPoolExecutor(lanes, "ordersaga-writer") if isinstance(engine, Engine) else None

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lane(), name=f"commit-lane-{i}") for i in range(self._lanes)]

    async def stop(self) -> None:
        """Stop writing. Work in a batch that was being written is answered OutcomeUnknown (a batch
        already in the writer's thread may still commit: its callers cannot know, as after a crash);
        work not taken yet (queued, or waiting for a stock row), RuntimeError. The runner takes no
        work afterwards (RuntimeError: not started)."""
        tasks, self._tasks = [*self._tasks, *self._stock_writers.values()], []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Answered here, whatever the cancelled lanes and writers were doing with them: a job's
        # caller waits for its answer alone, and would otherwise wait for ever.
        unknown = "the transaction runner stopped while the work was written"
        for job in list(self._waiting):
            _answer(
                job,
                error=OutcomeUnknown(unknown)
                if job.taken
                else RuntimeError("the transaction runner stopped"),
            )
        self._held.clear()
        self._stock_writers.clear()  # a writer cancelled before it ran never reached its `finally`
        while not self._queue.empty():
            self._queue.get_nowait()
        if self._threads is not None:
            self._threads.shutdown(wait=True)

    async def run(self, work: Callable[[Transaction], Awaitable[T]], lock_order: str = "") -> T:
        """TransactionRunner: `work` sees the participants and the saga store in one transaction. It
        waits for a held stock row as long as the row is held (see the module's note)."""
        return await self._run(lambda conn: work(self._make_transaction(conn)), lock_order, queues=True)

    async def run_on_connection(self, work: Callable[[Db], Awaitable[T]], lock_order: str = "") -> T:
        """Run `work` on the transaction's connection, again after contention (see above). A caller
        that stops waiting before its batch is written withdraws the work (it never runs); one that
        stops while the batch is written leaves it to commit or not with the batch, as after a
        crash. Raises OutcomeUnknown when the commit's connection was lost; the lock's DBAPIError
        when a stock row stayed held through every attempt."""
        return await self._run(work, lock_order, queues=False)

    async def _run(self, work: Callable[[Db], Awaitable[T]], lock_order: str, queues: bool) -> T:
        attempt = 1
        while True:
            try:
                return await self._run_once(work, lock_order, queues)
            except Exception as error:
                if attempt == CONTENTION_ATTEMPTS or not is_contention(error):
                    raise
                log.info("contention (SQLSTATE %s); running the work again", sqlstate(error))
            self._metrics.contention_retries += 1
            await asyncio.sleep(jittered_pause(CONTENTION_BACKOFF_S, attempt))
            attempt += 1

    async def _run_once(self, work: Callable[[Db], Awaitable[T]], lock_order: str, queues: bool) -> T:
        if not self._tasks:
            raise RuntimeError("the transaction runner is not started")
        job = _Job(work, lock_order, queues)
        self._waiting.add(job)
        if lock_order in self._stock_writers:
            # Its SKU's row was held a moment ago: in a batch it would most likely only meet the
            # row again and step aside.
            self._hold(lock_order, [job])
        else:
            if self._admission_timeout is not None:
                job.expiry = asyncio.get_running_loop().call_later(self._admission_timeout, _expire, job)
            self._queue.put_nowait(job)
        try:
            # Awaited as it is: cancelling the caller cancels `done`, which is how the lane knows.
            result: T = await job.done
            return result
        finally:
            self._waiting.discard(job)

    async def _lane(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    def _hold(self, sku: str, jobs: list[_Job]) -> None:
        """Queue `jobs` for the writer of `sku`'s stock, starting it if there is none."""
        for job in jobs:  # out of any transaction, until the writer takes it
            job.taken = False
        self._held.setdefault(sku, []).extend(jobs)
        # Not once stopped (a batch cancelled by `stop` puts its work aside): `stop` answers it.
        if sku not in self._stock_writers and self._tasks:
            self._stock_writers[sku] = asyncio.create_task(self._stock_writer(sku), name=f"stock-{sku}")

    async def _stock_writer(self, sku: str) -> None:
        """Write the work held for `sku` in batches that wait for its rows, until none is left."""
        try:
            while jobs := self._held.pop(sku, None):
                if len(jobs) > self._max_batch:
                    self._held[sku] = jobs[self._max_batch :]
                await self._commit(jobs[: self._max_batch], waits=True)
        finally:
            del self._stock_writers[sku]

    async def _commit(self, batch: list[_Job], waits: bool = False) -> None:
        """Write `batch` in one transaction and answer its jobs; `waits`: the transaction waits for
        held stock rows (a SKU's writer) rather than going on without the work that met one."""
        # A job already answered was withdrawn by its caller (cancelled) or stopped with the runner.
        jobs = sorted((job for job in batch if not job.done.done()), key=lambda job: job.lock_order)
        if not jobs:
            return
        for job in jobs:  # taken: from here on the work commits or fails with its batch
            job.taken = True
            if job.expiry is not None:
                job.expiry.cancel()
        # Work that met a held stock row and wrote nothing, for its SKU's writer once this batch
        # is done (were it handed over sooner, a batch run again could run it twice).
        aside: dict[_Job, str] = {}
        try:
            written = await self._write(jobs, waits, aside)
        except _StockHeld as held:
            self._metrics.stock_conflicts += 1
            if waits:
                # Waited past the lock timeout or into a deadlock: saga work waits again; an
                # administrative write is answered with the lock's error (so that an outside lock
                # held for long answers it), and its caller retries.
                self._hold(held.sku, [job for job in jobs if job.queues])
                for job in jobs:
                    if not job.queues:
                        _answer(job, error=held.error)
                return
            # The work had written something already, so the transaction went with it: write the
            # rest again without it, nor the work whose lock order names the held SKU, which would
            # most likely meet the row too.
            aside.update((job, held.sku) for job in jobs if job is held.job or job.lock_order == held.sku)
            await self._commit([job for job in jobs if job not in aside])
            return
        except Exception as error:
            rest = [job for job in jobs if job not in aside]
            if len(rest) == 1 or isinstance(error, OutcomeUnknown):
                # Run again, work that may have committed could take effect twice.
                for job in rest:
                    _answer(job, error=error)
                return
            log.debug("batch of %d failed (%r); running each alone", len(rest), error)
            self._metrics.isolated_batches += 1
            for job in rest:  # rolled back: out of any transaction until its own
                job.taken = False
            for job in rest:
                await self._commit([job], waits)
            return
        finally:
            for job, sku in aside.items():
                self._hold(sku, [job])
        self._metrics.commits += 1
        self._metrics.committed_work += len(written)
        for job, result in written:
            _answer(job, result=result)

    async def _write(self, jobs: list[_Job], waits: bool, aside: dict[_Job, str]) -> list[tuple[_Job, Any]]:
        """Run every job in one transaction and commit it; each job written, with its result. Raises
        OutcomeUnknown if the commit itself fails: whatever failed there (the connection, its
        answer), the transaction may have committed, and a failure the database reports at commit
        needs a deferred constraint, which no table has.

        On PostgreSQL, a job that met a held stock row having written nothing goes into `aside` (by
        the row's SKU), as does every later job whose lock order names that SKU, and the rest goes
        on. Raises _StockHeld when a job met one after writing, or (`waits`) waited for one in vain:
        the transaction has failed."""
        if isinstance(self._engine, AsyncEngine):
            async with self._engine.connect() as conn:
                await conn.begin()
                db = AsyncDb(conn, waits_for_stock=waits, prepared=self._prepared)
                results = []
                for job in jobs:
                    if job.lock_order in aside.values():
                        aside[job] = job.lock_order
                        continue
                    before = db.writes_so_far()
                    try:
                        results.append((job, await job.work(db)))
                    except StockBusy as busy:
                        if busy.failed or db.writes_so_far() != before:
                            raise _StockHeld(job, busy) from busy
                        self._metrics.stock_conflicts += 1
                        aside[job] = busy.sku
                await db.before_commit()
                try:
                    await self._commit_batch(conn)
                except Exception as lost:
                    raise OutcomeUnknown("the connection was lost while the transaction committed") from lost
                return results
        engine = self._engine

        def write() -> list[tuple[_Job, Any]]:
            with engine.connect() as conn:
                conn.begin()
                db = BlockingDb(conn, self._prepared)
                try:
                    results = [(job, run_blocking(job.work(db))) for job in jobs]
                    run_blocking(db.before_commit())
                    try:
                        conn.commit()
                    except Exception as lost:
                        unknown = "the transaction's commit failed; it may have committed"
                        raise OutcomeUnknown(unknown) from lost
                    return results
                finally:
                    db.close()

        return await asyncio.get_running_loop().run_in_executor(self._threads, write)


class _StockHeld(Exception):
    """`job` met a stock row another transaction holds (StockBusy); its transaction has failed."""

    def __init__(self, job: _Job, busy: StockBusy) -> None:
        super().__init__(str(busy))
        self.job = job
        self.sku = busy.sku
        # What the caller of an administrative write is answered: the database's own error, which it
        # reads as contention.
        self.error = busy.__cause__ or busy


async def _commit(conn: AsyncConnection) -> None:
    await conn.commit()


def _expire(job: _Job) -> None:
    """Withdraw `job`, which no lane has taken in time (a taken job's expiry is cancelled)."""
    if not job.done.done():
        job.done.set_exception(WritersBusy("every commit lane stayed busy; the work was not done"))


def _answer(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    """Answer `job`, unless its caller stopped waiting (its future is cancelled) while it was written."""
    if job.done.done():
        return
    if error is not None:
        job.done.set_exception(error)
    else:
        job.done.set_result(result)

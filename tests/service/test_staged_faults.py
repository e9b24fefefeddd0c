"""The fault injection gate: delays on the (fake) clock, a count of failures, a seeded failure rate."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from api.staged_faults import Fault, FaultInjector
from domain.model.saga import Participant
from domain.ports import ParticipantUnavailable
from tests.service.fakes import FakeClock, settle


async def outcomes(gate: FaultInjector, participant: Participant, calls: int) -> list[bool]:
    """Whether each of `calls` calls was admitted."""
    admitted = []
    for _ in range(calls):
        try:
            await gate.admit(participant)
            admitted.append(True)
        except ParticipantUnavailable:
            admitted.append(False)
    return admitted


async def test_a_healthy_participant_is_admitted_at_once() -> None:
    gate = FaultInjector(FakeClock())
    assert await outcomes(gate, Participant.ORDERS, 3) == [True, True, True]
    assert gate.faults == {}


async def test_fail_next_fails_that_many_calls_then_heals() -> None:
    gate = FaultInjector(FakeClock())
    await gate.stage(Participant.SHIPMENT, Fault(fail_next=2))

    assert await outcomes(gate, Participant.SHIPMENT, 3) == [False, False, True]
    assert await outcomes(gate, Participant.ORDERS, 1) == [True]
    assert gate.faults == {}


async def test_a_delay_holds_every_call_for_that_long() -> None:
    clock = FakeClock()
    gate = FaultInjector(clock)
    await gate.stage(Participant.INVENTORY, Fault(delay=timedelta(seconds=2)))

    call = asyncio.create_task(gate.admit(Participant.INVENTORY))
    await settle()
    await clock.advance(1.9)
    assert not call.done()
    await clock.advance(0.1)
    assert call.done() and call.exception() is None
    assert gate.faults == {Participant.INVENTORY: Fault(delay=timedelta(seconds=2))}


async def test_a_call_waiting_out_a_delay_meets_the_faults_staged_when_it_ends() -> None:
    clock = FakeClock()
    gate = FaultInjector(clock)
    await gate.stage(Participant.ORDERS, Fault(delay=timedelta(seconds=1), fail_next=1))

    call = asyncio.create_task(gate.admit(Participant.ORDERS))
    await settle()
    await gate.clear()
    await clock.advance(1)
    assert call.done() and call.exception() is None


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 200)])
async def test_a_failure_rate_of_zero_or_one_never_or_always_fails(rate: float, expected: int) -> None:
    gate = FaultInjector(FakeClock())
    await gate.stage(Participant.ORDERS, Fault(failure_rate=rate))
    assert (await outcomes(gate, Participant.ORDERS, 200)).count(False) == expected


async def test_a_seeded_failure_rate_fails_the_calls_its_random_draws_say() -> None:
    gate = FaultInjector(FakeClock(), seed=7)
    await gate.stage(Participant.ORDERS, Fault(failure_rate=0.3))

    draws = random.Random(7)
    expected = [draws.random() >= 0.3 for _ in range(200)]
    assert await outcomes(gate, Participant.ORDERS, 200) == expected
    assert 20 < expected.count(False) < 100


async def test_staging_all_zeros_makes_a_participant_healthy_again() -> None:
    gate = FaultInjector(FakeClock())
    await gate.stage(Participant.SHIPMENT, Fault(fail_next=1))
    await gate.stage(Participant.ORDERS, Fault(failure_rate=0.5))
    assert list(gate.faults) == [Participant.ORDERS, Participant.SHIPMENT]

    await gate.stage(Participant.SHIPMENT, Fault())
    assert list(gate.faults) == [Participant.ORDERS]

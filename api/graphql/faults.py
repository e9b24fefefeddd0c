"""Staging participant faults through GraphQL, when the service runs with --enable-fault-injection."""

from __future__ import annotations

from datetime import timedelta

import strawberry
from strawberry.types import Info

from api.graphql.types import UserError, service, user_errors
from api.staged_faults import Fault
from domain.problems import Problem, ProblemCode
from domain.saga import Participant as DomainParticipant

Participant = strawberry.enum(DomainParticipant, name="Participant", description="A saga participant.")

MAX_DELAY_MS = 10 * 60 * 1000
MAX_FAIL_NEXT = 1_000_000
DISABLED = Problem(
    ProblemCode.FAULT_INJECTION_DISABLED,
    None,
    "fault injection is off; start the service with `ordersaga serve --enable-fault-injection`",
)


@strawberry.type(description="A fault staged on one participant.")
class ParticipantFault:
    participant: Participant  # type: ignore[valid-type]
    delay_ms: int = strawberry.field(description="Every call to the participant waits this long first.")
    fail_next: int = strawberry.field(description="This many of the next calls fail.")
    failure_rate: float = strawberry.field(description="After those, each call fails with this probability.")


@strawberry.input
class SetParticipantFaultInput:
    participant: Participant  # type: ignore[valid-type]
    delay_ms: int = 0
    fail_next: int = 0
    failure_rate: float = 0.0


@strawberry.type
class ParticipantFaultsPayload:
    faults: list[ParticipantFault] | None = strawberry.field(
        default=None, description="Every fault staged now."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _staged(info: Info) -> list[ParticipantFault]:
    faults = service(info).faults
    if faults is None:
        return []
    return [
        ParticipantFault(
            participant=participant,
            delay_ms=int(fault.delay / timedelta(milliseconds=1)),
            fail_next=fault.fail_next,
            failure_rate=fault.failure_rate,
        )
        for participant, fault in faults.faults.items()
    ]


def _check(fault: SetParticipantFaultInput) -> list[Problem]:
    problems = []
    if not 0 <= fault.delay_ms <= MAX_DELAY_MS:
        problems.append(
            Problem(ProblemCode.OUT_OF_RANGE, "delayMs", f"delayMs must be between 0 and {MAX_DELAY_MS}")
        )
    if not 0 <= fault.fail_next <= MAX_FAIL_NEXT:
        problems.append(
            Problem(ProblemCode.OUT_OF_RANGE, "failNext", f"failNext must be between 0 and {MAX_FAIL_NEXT}")
        )
    if not 0 <= fault.failure_rate <= 1:
        problems.append(
            Problem(ProblemCode.OUT_OF_RANGE, "failureRate", "failureRate must be between 0 and 1")
        )
    return problems


@strawberry.type
class FaultQueries:
    @strawberry.field(description="The participant faults staged now (none unless fault injection is on).")
    def participant_faults(self, info: Info) -> list[ParticipantFault]:
        return _staged(info)


@strawberry.type
class FaultMutations:
    @strawberry.mutation(
        description="Make a participant slow or failing, replacing its fault; all zeros makes it healthy. "
        "Needs `ordersaga serve --enable-fault-injection`."
    )
    def set_participant_fault(self, info: Info, input: SetParticipantFaultInput) -> ParticipantFaultsPayload:
        faults = service(info).faults
        problems = [DISABLED] if faults is None else _check(input)
        if faults is None or problems:
            return ParticipantFaultsPayload(user_errors=user_errors(problems))
        fault = Fault(timedelta(milliseconds=input.delay_ms), input.fail_next, input.failure_rate)
        faults.stage(DomainParticipant(input.participant), fault)
        return ParticipantFaultsPayload(faults=_staged(info))

    @strawberry.mutation(description="Make every participant healthy again.")
    def clear_participant_faults(self, info: Info) -> ParticipantFaultsPayload:
        faults = service(info).faults
        if faults is None:
            return ParticipantFaultsPayload(user_errors=user_errors([DISABLED]))
        faults.clear()
        return ParticipantFaultsPayload(faults=[])

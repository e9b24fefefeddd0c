"""Staging participant faults through GraphQL, when the service runs with --enable-fault-injection."""

from __future__ import annotations

from datetime import timedelta

import strawberry
from strawberry.types import Info

from api.graphql.enums import described
from api.graphql.types import Input, UserError, service, user_errors, user_errors_field
from api.staged_faults import Fault
from domain.model.problems import Problem, ProblemCode
from domain.model.saga import Participant as DomainParticipant
from persistence.database import is_sqlite

Participant = described(
    DomainParticipant,
    "Participant",
    "A saga participant: the part of the service a step calls.",
    {
        "ORDERS": "Records, confirms and cancels orders (CREATE_ORDER, CONFIRM_ORDER, CANCEL_ORDER).",
        "INVENTORY": "Reserves and releases stock (RESERVE_STOCK, RELEASE_STOCK).",
        "SHIPMENT": "Creates and cancels shipment instructions (CREATE_SHIPMENT, CANCEL_SHIPMENT).",
    },
)

MAX_DELAY_MS = 10 * 60 * 1000
MAX_FAIL_NEXT = 1_000_000
MAX_LOST_COMMITS = 1000
MAX_REJECTED = 100
MAX_CODE = 64  # a warehouse code's length (persistence/tables.py's CODE)
DISABLED = Problem(
    ProblemCode.FAULT_INJECTION_DISABLED,
    None,
    "fault injection is off; start the service with `ordersaga serve --enable-fault-injection`",
)


@strawberry.type(description="A fault staged on one participant.")
class ParticipantFault:
    participant: Participant = strawberry.field(description="The participant it applies to.")  # type: ignore[valid-type]
    delay_ms: int = strawberry.field(
        description="Every call to the participant waits this long first, in milliseconds."
    )
    fail_next: int = strawberry.field(description="This many of the next calls fail.")
    failure_rate: float = strawberry.field(description="After those, each call fails with this probability.")
    rejected_warehouses: list[str] = strawberry.field(
        description="SHIPMENT only: the warehouses whose shipments are refused (the saga turns back)."
    )


@strawberry.input(description="A fault to stage on one participant, replacing the one it has.")
class SetParticipantFaultInput:
    participant: Participant = strawberry.field(description="The participant to make slow or failing.")  # type: ignore[valid-type]
    delay_ms: int = strawberry.field(
        default=0, description=f"Milliseconds every call waits first, 0 to {MAX_DELAY_MS} (OUT_OF_RANGE)."
    )
    fail_next: int = strawberry.field(
        default=0, description=f"How many of the next calls fail, 0 to {MAX_FAIL_NEXT} (OUT_OF_RANGE)."
    )
    failure_rate: float = strawberry.field(
        default=0.0,
        description="After those, the probability that a call fails, 0 to 1 (OUT_OF_RANGE).",
    )
    rejected_warehouses: list[str] = strawberry.field(
        default_factory=list,
        description="SHIPMENT only: refuse every shipment from these warehouse codes (a business "
        "refusal: the saga cancels the shipments created, releases the stock and cancels the order); "
        "each must be a warehouse's (UNKNOWN_WAREHOUSE).",
    )


@strawberry.type(description="The faults staged now, or why the change was refused.")
class ParticipantFaultsPayload:
    faults: list[ParticipantFault] | None = strawberry.field(
        default=None, description="Every fault staged now."
    )
    user_errors: list[UserError] = user_errors_field()


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
            rejected_warehouses=sorted(fault.rejected_warehouses),
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
    if fault.rejected_warehouses and DomainParticipant(fault.participant) is not DomainParticipant.SHIPMENT:
        message = "rejectedWarehouses is for the SHIPMENT participant only"
        problems.append(Problem(ProblemCode.OUT_OF_RANGE, "rejectedWarehouses", message))
    if len(fault.rejected_warehouses) > MAX_REJECTED or any(
        not 0 < len(w) <= MAX_CODE for w in fault.rejected_warehouses
    ):
        message = f"rejectedWarehouses takes up to {MAX_REJECTED} codes of 1 to {MAX_CODE} characters"
        problems.append(Problem(ProblemCode.OUT_OF_RANGE, "rejectedWarehouses", message))
    return problems


@strawberry.input(description="How many commits should lose their answer.")
class LoseCommitAnswersInput:
    count: int = strawberry.field(
        description=f"How many of the next commits lose their answer, 0 (none) to {MAX_LOST_COMMITS}."
    )


@strawberry.type(description="How many commits will lose their answer, or why the change was refused.")
class LoseCommitAnswersPayload:
    pending: int | None = strawberry.field(
        default=None, description="How many of the next commits will lose their answer."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.type
class FaultQueries:
    @strawberry.field(
        description="The participant faults staged now in the deployment, on every process (none "
        "unless fault injection is on)."
    )
    async def participant_faults(self, info: Info) -> list[ParticipantFault]:
        faults = service(info).faults
        if faults is not None:
            await faults.refresh()
        return _staged(info)


@strawberry.type
class FaultMutations:
    @strawberry.mutation(
        description="Make a participant slow or failing, replacing its fault; all zeros makes it healthy. "
        "It holds on every process of the deployment (within half a second on the others), and "
        "`failNext` counts failures across all of them. Needs `ordersaga serve --enable-fault-injection` "
        "(FAULT_INJECTION_DISABLED otherwise); OUT_OF_RANGE for a value past its range, UNKNOWN_WAREHOUSE "
        "for a rejected warehouse that does not exist, in userErrors."
    )
    async def set_participant_fault(
        self, info: Info, input: Input[SetParticipantFaultInput]
    ) -> ParticipantFaultsPayload:
        svc = service(info)
        faults = svc.faults
        problems = [DISABLED] if faults is None else _check(input)
        if not problems and input.rejected_warehouses:
            # A code of no warehouse would be staged and never match: the fault would silently do nothing.
            known = await svc.catalog.known_warehouses(input.rejected_warehouses)
            problems = [
                Problem(ProblemCode.UNKNOWN_WAREHOUSE, f"rejectedWarehouses[{i}]", f"no warehouse {code}")
                for i, code in enumerate(input.rejected_warehouses)
                if code not in known
            ]
        if faults is None or problems:
            return ParticipantFaultsPayload(user_errors=user_errors(problems))
        delay = timedelta(milliseconds=input.delay_ms)
        fault = Fault(delay, input.fail_next, input.failure_rate, frozenset(input.rejected_warehouses))
        await faults.stage(DomainParticipant(input.participant), fault)
        return ParticipantFaultsPayload(faults=_staged(info))

    @strawberry.mutation(
        description="PostgreSQL only: each of the next `count` commits takes effect, but its connection "
        "is terminated (pg_terminate_backend) before the answer is read, so the service cannot tell "
        "whether it did. Staged on the process that receives this mutation, for its own commits. Needs "
        "`ordersaga serve --enable-fault-injection` (FAULT_INJECTION_DISABLED otherwise; "
        "FAULT_NOT_SUPPORTED on SQLite; OUT_OF_RANGE, in userErrors); clearParticipantFaults undoes it too."
    )
    def lose_commit_answers(
        self, info: Info, input: Input[LoseCommitAnswersInput]
    ) -> LoseCommitAnswersPayload:
        svc = service(info)
        problems = [DISABLED] if svc.faults is None else []
        if not problems and is_sqlite(svc.settings.database_url):
            message = "SQLite has no connection to lose; the fault needs PostgreSQL"
            problems.append(Problem(ProblemCode.FAULT_NOT_SUPPORTED, None, message))
        if not problems and not 0 <= input.count <= MAX_LOST_COMMITS:
            message = f"count must be between 0 and {MAX_LOST_COMMITS}"
            problems.append(Problem(ProblemCode.OUT_OF_RANGE, "count", message))
        if svc.faults is None or problems:
            return LoseCommitAnswersPayload(user_errors=user_errors(problems))
        svc.faults.lost_commit_answers = input.count
        return LoseCommitAnswersPayload(pending=input.count)

    @strawberry.mutation(
        description="Make every participant healthy again, on every process (FAULT_INJECTION_DISABLED, "
        "in userErrors, without fault injection)."
    )
    async def clear_participant_faults(self, info: Info) -> ParticipantFaultsPayload:
        faults = service(info).faults
        if faults is None:
            return ParticipantFaultsPayload(user_errors=user_errors([DISABLED]))
        await faults.clear()
        return ParticipantFaultsPayload(faults=[])

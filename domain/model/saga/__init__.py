"""The order saga as data plus pure functions. Nothing here performs I/O, so every state and message
pair is a plain unit test.

- steps.py: the steps, the participant each calls, their order forward and what undoes each;
- policy.py: how long an attempt may take, how many attempts a step gets (`SagaPolicy`);
- events.py: the facts the saga's journal records;
- shipments.py: its shipments, one per warehouse, and their life;
- state.py: its state (`SagaState`), statuses and steps' history;
- fold.py: applying events to the state (`evolve`, `SagaChange`, `replay`, `fold`);
- outcomes.py: what a participant answers a step's command;
- decider.py: what the saga does next (`next_action`) and the events a participant's answer or a
  timeout leads to (`on_outcome`, `on_shipment_outcomes`, `on_timeout`).

Its names are imported from here; the modules import one another directly.
"""

from domain.model.saga.decider import (
    Action,
    Call,
    Emit,
    Finished,
    Wait,
    next_action,
    on_outcome,
    on_shipment_outcomes,
    on_timeout,
    refusal,
)
from domain.model.saga.events import (
    CUSTOMER_CANCELLED,
    TURNING_BACK,
    CompensationStarted,
    CustomerCancelled,
    SagaAborted,
    SagaEvent,
    SagaParked,
    SagaRetried,
    SagaStarted,
    ShipmentAccepted,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentRejected,
    ShipmentRouted,
    StepFailed,
    StepStarted,
    StepSucceeded,
    StepTimedOut,
)
from domain.model.saga.fold import (
    SagaChange,
    evolve,
    fold,
    replay,
    start,
)
from domain.model.saga.outcomes import (
    Accepted,
    Outcome,
    Rejected,
    Succeeded,
    Unavailable,
)
from domain.model.saga.policy import (
    SagaPolicy,
)
from domain.model.saga.shipments import (
    Shipment,
    ShipmentStatus,
    requested_shipments,
    shipment_id_of,
)
from domain.model.saga.state import (
    SETTLED_STATUSES,
    TERMINAL_STATUSES,
    FailureKind,
    SagaState,
    SagaStatus,
    StepRecord,
    StepStatus,
)
from domain.model.saga.steps import (
    COMPENSATION_OF,
    FORWARD_STEPS,
    PARTICIPANT_OF,
    Participant,
    Step,
)

__all__ = [
    "Accepted",
    "Action",
    "COMPENSATION_OF",
    "CUSTOMER_CANCELLED",
    "Call",
    "CompensationStarted",
    "CustomerCancelled",
    "Emit",
    "FORWARD_STEPS",
    "FailureKind",
    "Finished",
    "Outcome",
    "PARTICIPANT_OF",
    "Participant",
    "Rejected",
    "SETTLED_STATUSES",
    "SagaAborted",
    "SagaChange",
    "SagaEvent",
    "SagaParked",
    "SagaPolicy",
    "SagaRetried",
    "SagaStarted",
    "SagaState",
    "SagaStatus",
    "Shipment",
    "ShipmentAccepted",
    "ShipmentCreated",
    "ShipmentDispatched",
    "ShipmentRejected",
    "ShipmentRouted",
    "ShipmentStatus",
    "Step",
    "StepFailed",
    "StepRecord",
    "StepStarted",
    "StepStatus",
    "StepSucceeded",
    "StepTimedOut",
    "Succeeded",
    "TERMINAL_STATUSES",
    "TURNING_BACK",
    "Unavailable",
    "Wait",
    "evolve",
    "fold",
    "next_action",
    "on_outcome",
    "on_shipment_outcomes",
    "on_timeout",
    "refusal",
    "replay",
    "requested_shipments",
    "shipment_id_of",
    "start",
]

"""The saga's steps: the participant each one calls, their order going forward, and the step that
undoes each on the way back."""

from __future__ import annotations

import enum


class Step(enum.Enum):
    CREATE_ORDER = "CREATE_ORDER"
    RESERVE_STOCK = "RESERVE_STOCK"
    CONFIRM_ORDER = "CONFIRM_ORDER"
    CREATE_SHIPMENT = "CREATE_SHIPMENT"
    RELEASE_STOCK = "RELEASE_STOCK"
    CANCEL_ORDER = "CANCEL_ORDER"
    CANCEL_SHIPMENT = "CANCEL_SHIPMENT"


class Participant(enum.Enum):
    ORDERS = "ORDERS"
    INVENTORY = "INVENTORY"
    SHIPMENT = "SHIPMENT"


FORWARD_STEPS = (Step.CREATE_ORDER, Step.RESERVE_STOCK, Step.CONFIRM_ORDER, Step.CREATE_SHIPMENT)

# What undoes a forward step. Confirming needs no undo of its own: cancelling the order undoes it.
# The shipments are undone each (one command per shipment created), when a warehouse refuses its
# shipment or the customer cancels before any was dispatched.
COMPENSATION_OF = {
    Step.CREATE_ORDER: Step.CANCEL_ORDER,
    Step.RESERVE_STOCK: Step.RELEASE_STOCK,
    Step.CREATE_SHIPMENT: Step.CANCEL_SHIPMENT,
}

PARTICIPANT_OF = {
    Step.CREATE_ORDER: Participant.ORDERS,
    Step.CONFIRM_ORDER: Participant.ORDERS,
    Step.CANCEL_ORDER: Participant.ORDERS,
    Step.RESERVE_STOCK: Participant.INVENTORY,
    Step.RELEASE_STOCK: Participant.INVENTORY,
    Step.CREATE_SHIPMENT: Participant.SHIPMENT,
    Step.CANCEL_SHIPMENT: Participant.SHIPMENT,
}

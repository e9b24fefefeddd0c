"""Placing an order: the request (`PlaceOrder`) and its answer (`OrderPlaced`), pure data.

A placement's idempotency key is bound to the request's fingerprint, so the canonical form below is
persisted in effect: changing it would make every stored key look reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from domain.model.saga import SagaState
from domain.model.values import OrderLine


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

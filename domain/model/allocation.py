"""Inventory allocation: decide which storage sections serve an order.

This is pure decision logic. Given the order lines, a snapshot of the stock in
every storage section and each product's storage condition, ``allocate``
returns either the complete set of picks that serves the whole order
(``Allocation``) or every SKU that cannot be served (``Shortfall``). Nothing
here reads or changes stock; the caller applies the picks.

Rules
-----
* A slot is usable for a SKU only if its section's storage condition equals
  the product's condition and it holds stock (``available > 0``). A SKU with
  no known condition therefore has no usable stock. Slots of SKUs that are
  not in the order are ignored.
* Lines with the same SKU are merged (quantities summed) first.
* All or nothing: if any SKU is short, no picks are proposed and the
  ``Shortfall`` names every short SKU.

Strategy and tie-breaks
-----------------------
"Largest first" below means: slots ordered by ``available`` descending, then
``warehouse_code``, then ``section_code``. Taking slots in that order and
stopping once the quantity is reached yields the fewest possible picks for
one SKU from a given set of slots; only the last pick may be partial.

1. Single warehouse. A warehouse qualifies if its usable stock covers every
   SKU of the order. Each qualifying warehouse is planned largest first per
   SKU; the one with the fewest picks in total wins, ties going to the lowest
   ``warehouse_code``.
2. Split. If no warehouse qualifies, every SKU is planned on its own (the
   SKUs cannot affect each other any more):

   a. The fewest picks over all warehouses is the largest-first plan over all
      usable slots of the SKU; call its pick count ``n``.
   b. If some warehouse can serve the whole line alone with ``n`` picks, the
      lowest such ``warehouse_code`` serves it (same number of picks, but no
      split of the line across warehouses).
   c. Otherwise the largest-first plan of (a) is used.

   So the pick count is never traded for fewer splits; a single warehouse
   only wins a tie.

The result is a function of the set of slots: the order in which the slots
are supplied never changes the picks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from domain.model.values import OrderLine, Pick, StorageCondition


@dataclass(frozen=True, slots=True)
class StockSlot:
    """One product's stock in one storage section of one warehouse."""

    warehouse_code: str
    section_code: str
    sku: str
    condition: StorageCondition  # the section's storage condition
    available: int


@dataclass(frozen=True, slots=True)
class Shortage:
    """A SKU whose usable stock does not cover the requested quantity."""

    sku: str
    requested: int
    available: int  # usable stock (matching condition) for that SKU

    @property
    def missing(self) -> int:
        return self.requested - self.available


@dataclass(frozen=True, slots=True)
class Allocation:
    """The picks that together serve the whole order."""

    picks: tuple[Pick, ...]


@dataclass(frozen=True, slots=True)
class Shortfall:
    """The order cannot be served; lists every short SKU."""

    shortages: tuple[Shortage, ...]  # one per short SKU, sorted by sku

    def describe(self) -> str:
        details = "; ".join(
            f"{s.sku} short by {s.missing} (requested {s.requested}, available {s.available})"
            for s in self.shortages
        )
        return f"insufficient stock: {details}"


def allocate(
    lines: Sequence[OrderLine],
    slots: Iterable[StockSlot],
    conditions: Mapping[str, StorageCondition],
) -> Allocation | Shortfall:
    """Allocate the order ``lines`` from ``slots``, all or nothing.

    ``conditions`` maps each SKU to its product's storage condition. See the
    module docstring for the strategy and the exact tie-breaks.

    Raises ``ValueError`` if a line's quantity is below 1 or if two slots
    share the same (warehouse_code, section_code, sku): a duplicated slot
    would make the result depend on which copy is seen first.
    """
    requested = _merge_lines(lines)
    usable = _usable_slots(slots, requested, conditions)

    shortages = []
    for sku in sorted(requested):
        available = sum(slot.available for slot in usable[sku])
        if available < requested[sku]:
            shortages.append(Shortage(sku, requested[sku], available))
    if shortages:
        return Shortfall(tuple(shortages))

    picks = _single_warehouse_plan(requested, usable)
    if picks is None:
        picks = _split_plan(requested, usable)

    # This is also the fixed order in which the persistence layer locks and
    # updates the stock rows; every transaction taking the same global order
    # is what keeps concurrent allocations from deadlocking each other.
    picks.sort(key=lambda p: (p.warehouse_code, p.section_code, p.sku))
    return Allocation(tuple(picks))


def _merge_lines(lines: Sequence[OrderLine]) -> dict[str, int]:
    requested: dict[str, int] = {}
    for line in lines:
        if line.quantity < 1:
            raise ValueError(f"order line for {line.sku} has quantity {line.quantity}; must be >= 1")
        requested[line.sku] = requested.get(line.sku, 0) + line.quantity
    return requested


def _usable_slots(
    slots: Iterable[StockSlot],
    requested: Mapping[str, int],
    conditions: Mapping[str, StorageCondition],
) -> dict[str, list[StockSlot]]:
    """Usable slots per requested SKU, each list in largest-first order."""
    usable: dict[str, list[StockSlot]] = {sku: [] for sku in requested}
    seen: set[tuple[str, str, str]] = set()
    for slot in slots:
        key = (slot.warehouse_code, slot.section_code, slot.sku)
        if key in seen:
            raise ValueError(f"duplicate stock slot {key}")
        seen.add(key)
        if slot.sku not in usable or slot.available <= 0:
            continue
        # A product stored outside its condition (e.g. frozen goods in an
        # ambient section) must never be shipped, so such stock does not count.
        if conditions.get(slot.sku) != slot.condition:
            continue
        usable[slot.sku].append(slot)
    for candidates in usable.values():
        # Sorting on the full identity makes the plan independent of the
        # order in which the slots were supplied.
        candidates.sort(key=lambda s: (-s.available, s.warehouse_code, s.section_code))
    return usable


def _largest_first(sku: str, quantity: int, ordered: Iterable[StockSlot]) -> list[Pick] | None:
    """Take ``quantity`` from ``ordered`` (already largest first), or None if it runs out.

    Taking the largest slots first gives the fewest picks for this SKU.
    """
    picks: list[Pick] = []
    remaining = quantity
    for slot in ordered:
        if remaining == 0:
            break
        take = min(slot.available, remaining)
        picks.append(Pick(slot.warehouse_code, slot.section_code, sku, take))
        remaining -= take
    return picks if remaining == 0 else None


def _in_warehouse(ordered: Iterable[StockSlot], warehouse_code: str) -> list[StockSlot]:
    # Filtering keeps the largest-first order, so within one warehouse the
    # tie-break reduces to section_code.
    return [slot for slot in ordered if slot.warehouse_code == warehouse_code]


def _single_warehouse_plan(
    requested: Mapping[str, int], usable: Mapping[str, list[StockSlot]]
) -> list[Pick] | None:
    """Fewest-picks plan that serves the whole order from one warehouse, if any."""
    if not requested:
        return []
    # Only a warehouse holding usable stock of every SKU can qualify.
    per_sku = [{slot.warehouse_code for slot in usable[sku]} for sku in requested]
    candidates = set.intersection(*per_sku)

    best: list[Pick] | None = None
    for warehouse_code in sorted(candidates):
        plan: list[Pick] = []
        for sku, quantity in requested.items():
            picks = _largest_first(sku, quantity, _in_warehouse(usable[sku], warehouse_code))
            if picks is None:
                break
            plan.extend(picks)
        else:
            # Strictly fewer only: warehouses are visited in code order, so an
            # equal count keeps the lower warehouse_code.
            if best is None or len(plan) < len(best):
                best = plan
    return best


def _split_plan(requested: Mapping[str, int], usable: Mapping[str, list[StockSlot]]) -> list[Pick]:
    """Plan each SKU separately with the fewest picks across warehouses."""
    plan: list[Pick] = []
    for sku, quantity in requested.items():
        overall = _largest_first(sku, quantity, usable[sku])
        # The caller has ruled out shortages, so the full slot list suffices.
        assert overall is not None
        chosen = overall
        # Serving a line from one warehouse avoids a split shipment, but only
        # when it costs no extra picks.
        for warehouse_code in sorted({slot.warehouse_code for slot in usable[sku]}):
            alone = _largest_first(sku, quantity, _in_warehouse(usable[sku], warehouse_code))
            if alone is not None and len(alone) == len(overall):
                chosen = alone
                break
        plan.extend(chosen)
    return plan

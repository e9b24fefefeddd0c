"""Behaviour of inventory allocation: which sections serve an order, or why it cannot be served."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.model.allocation import Allocation, Shortage, Shortfall, StockSlot, allocate
from domain.model.values import OrderLine, Pick, StorageCondition

AMBIENT = StorageCondition.AMBIENT
CHILLED = StorageCondition.REFRIGERATED
FROZEN = StorageCondition.FROZEN


def slot(
    warehouse: str, section: str, sku: str, available: int, condition: StorageCondition = AMBIENT
) -> StockSlot:
    return StockSlot(warehouse, section, sku, condition, available)


def picks_of(result: Allocation | Shortfall) -> tuple[Pick, ...]:
    assert isinstance(result, Allocation), result
    return result.picks


# --- basic allocation -------------------------------------------------------------------------------


def test_allocates_a_line_from_a_single_section() -> None:
    result = allocate([OrderLine("SKU-1", 3)], [slot("W1", "A", "SKU-1", 10)], {"SKU-1": AMBIENT})

    assert result == Allocation((Pick("W1", "A", "SKU-1", 3),))


def test_empty_order_allocates_nothing() -> None:
    assert allocate([], [slot("W1", "A", "SKU-1", 10)], {"SKU-1": AMBIENT}) == Allocation(())


def test_merges_lines_with_the_same_sku_before_allocating() -> None:
    lines = [OrderLine("SKU-1", 2), OrderLine("SKU-1", 3)]

    result = allocate(lines, [slot("W1", "A", "SKU-1", 5)], {"SKU-1": AMBIENT})

    assert result == Allocation((Pick("W1", "A", "SKU-1", 5),))


def test_merged_lines_are_short_as_a_whole() -> None:
    lines = [OrderLine("SKU-1", 2), OrderLine("SKU-1", 3)]

    result = allocate(lines, [slot("W1", "A", "SKU-1", 4)], {"SKU-1": AMBIENT})

    assert result == Shortfall((Shortage("SKU-1", requested=5, available=4),))


def test_never_picks_from_a_section_with_the_wrong_storage_condition() -> None:
    slots = [slot("W1", "A", "ICE", 100, AMBIENT), slot("W1", "F", "ICE", 4, FROZEN)]

    result = allocate([OrderLine("ICE", 4)], slots, {"ICE": FROZEN})

    assert result == Allocation((Pick("W1", "F", "ICE", 4),))


def test_ignores_empty_and_negative_slots() -> None:
    slots = [slot("W1", "A", "SKU-1", 0), slot("W1", "B", "SKU-1", -2), slot("W1", "C", "SKU-1", 1)]

    result = allocate([OrderLine("SKU-1", 1)], slots, {"SKU-1": AMBIENT})

    assert result == Allocation((Pick("W1", "C", "SKU-1", 1),))


def test_ignores_slots_of_skus_not_in_the_order() -> None:
    # W2 would be the only warehouse holding both SKUs, but SKU-2 is not ordered.
    slots = [slot("W1", "A", "SKU-1", 5), slot("W2", "A", "SKU-2", 5), slot("W2", "B", "SKU-1", 1)]

    result = allocate([OrderLine("SKU-1", 5)], slots, {"SKU-1": AMBIENT, "SKU-2": AMBIENT})

    assert result == Allocation((Pick("W1", "A", "SKU-1", 5),))


def test_rejects_a_non_positive_quantity() -> None:
    with pytest.raises(ValueError, match="SKU-1"):
        allocate([OrderLine("SKU-1", 0)], [slot("W1", "A", "SKU-1", 5)], {"SKU-1": AMBIENT})


def test_rejects_duplicate_slots() -> None:
    slots = [slot("W1", "A", "SKU-1", 5), slot("W1", "A", "SKU-1", 7)]

    with pytest.raises(ValueError, match="duplicate"):
        allocate([OrderLine("SKU-1", 1)], slots, {"SKU-1": AMBIENT})


# --- shortfall --------------------------------------------------------------------------------------


def test_shortfall_names_every_short_sku_sorted_by_sku() -> None:
    lines = [OrderLine("SKU-9", 1), OrderLine("SKU-5", 1), OrderLine("SKU-1", 5)]
    slots = [slot("W1", "A", "SKU-1", 2), slot("W1", "A", "SKU-5", 1)]

    result = allocate(lines, slots, {"SKU-1": AMBIENT, "SKU-5": AMBIENT, "SKU-9": AMBIENT})

    assert result == Shortfall((Shortage("SKU-1", 5, 2), Shortage("SKU-9", 1, 0)))


def test_shortfall_counts_only_stock_with_the_matching_condition_as_available() -> None:
    slots = [slot("W1", "A", "FISH", 10, AMBIENT), slot("W1", "C", "FISH", 2, CHILLED)]

    result = allocate([OrderLine("FISH", 3)], slots, {"FISH": CHILLED})

    assert result == Shortfall((Shortage("FISH", requested=3, available=2),))


def test_sku_without_a_known_storage_condition_has_no_usable_stock() -> None:
    result = allocate([OrderLine("NEW", 1)], [slot("W1", "A", "NEW", 5)], {})

    assert result == Shortfall((Shortage("NEW", requested=1, available=0),))


def test_shortage_missing_is_requested_minus_available() -> None:
    assert Shortage("SKU-1", requested=5, available=2).missing == 3


def test_describe_lists_each_shortage() -> None:
    shortfall = Shortfall((Shortage("SKU-1", 5, 2), Shortage("SKU-9", 1, 0)))

    assert shortfall.describe() == (
        "insufficient stock: SKU-1 short by 3 (requested 5, available 2); "
        "SKU-9 short by 1 (requested 1, available 0)"
    )


# --- one warehouse for the whole order --------------------------------------------------------------


def test_prefers_one_warehouse_that_fills_the_whole_order() -> None:
    # W1 has the bigger sections for SKU-1, but only W2 holds the whole order.
    slots = [
        slot("W1", "A", "SKU-1", 50),
        slot("W2", "A", "SKU-1", 3),
        slot("W2", "B", "SKU-1", 3),
        slot("W2", "A", "SKU-2", 2),
        slot("W3", "A", "SKU-2", 40),
    ]

    result = allocate(
        [OrderLine("SKU-1", 5), OrderLine("SKU-2", 2)], slots, {"SKU-1": AMBIENT, "SKU-2": AMBIENT}
    )

    assert picks_of(result) == (
        Pick("W2", "A", "SKU-1", 3),
        Pick("W2", "A", "SKU-2", 2),
        Pick("W2", "B", "SKU-1", 2),
    )


def test_among_whole_order_warehouses_chooses_the_one_with_fewest_picks() -> None:
    slots = [
        slot("W1", "A", "SKU-1", 2),
        slot("W1", "B", "SKU-1", 2),
        slot("W1", "C", "SKU-1", 2),
        slot("W2", "A", "SKU-1", 3),
        slot("W2", "B", "SKU-1", 3),
    ]

    result = allocate([OrderLine("SKU-1", 6)], slots, {"SKU-1": AMBIENT})

    assert picks_of(result) == (Pick("W2", "A", "SKU-1", 3), Pick("W2", "B", "SKU-1", 3))


def test_whole_order_warehouses_with_equal_picks_tie_break_on_warehouse_code() -> None:
    slots = [slot("W2", "A", "SKU-1", 9), slot("W1", "Z", "SKU-1", 4)]

    result = allocate([OrderLine("SKU-1", 4)], slots, {"SKU-1": AMBIENT})

    assert picks_of(result) == (Pick("W1", "Z", "SKU-1", 4),)


def test_takes_the_largest_sections_first_within_a_warehouse() -> None:
    slots = [slot("W1", "A", "SKU-1", 1), slot("W1", "B", "SKU-1", 6), slot("W1", "C", "SKU-1", 4)]

    result = allocate([OrderLine("SKU-1", 8)], slots, {"SKU-1": AMBIENT})

    assert picks_of(result) == (Pick("W1", "B", "SKU-1", 6), Pick("W1", "C", "SKU-1", 2))


def test_equal_sections_tie_break_on_section_code() -> None:
    slots = [slot("W1", "C", "SKU-1", 3), slot("W1", "A", "SKU-1", 3), slot("W1", "B", "SKU-1", 3)]

    result = allocate([OrderLine("SKU-1", 4)], slots, {"SKU-1": AMBIENT})

    assert picks_of(result) == (Pick("W1", "A", "SKU-1", 3), Pick("W1", "B", "SKU-1", 1))


# --- split across warehouses ------------------------------------------------------------------------


def test_splits_across_warehouses_when_no_single_warehouse_fills_the_order() -> None:
    slots = [slot("W1", "A", "SKU-1", 5), slot("W2", "A", "SKU-2", 5)]

    result = allocate(
        [OrderLine("SKU-1", 5), OrderLine("SKU-2", 5)], slots, {"SKU-1": AMBIENT, "SKU-2": AMBIENT}
    )

    assert picks_of(result) == (Pick("W1", "A", "SKU-1", 5), Pick("W2", "A", "SKU-2", 5))


def test_split_uses_the_fewest_picks_even_if_that_splits_a_line() -> None:
    # W1 could serve the line alone but needs 3 picks; W2 + W3 need only 2.
    slots = [
        slot("W1", "A", "SKU-1", 3),
        slot("W1", "B", "SKU-1", 3),
        slot("W1", "C", "SKU-1", 3),
        slot("W2", "A", "SKU-1", 5),
        slot("W3", "A", "SKU-1", 4),
        slot("W3", "A", "SKU-2", 1),
    ]

    result = allocate(
        [OrderLine("SKU-1", 9), OrderLine("SKU-2", 1)], slots, {"SKU-1": AMBIENT, "SKU-2": AMBIENT}
    )

    assert picks_of(result) == (
        Pick("W2", "A", "SKU-1", 5),
        Pick("W3", "A", "SKU-1", 4),
        Pick("W3", "A", "SKU-2", 1),
    )


def test_split_prefers_a_warehouse_that_fills_the_line_alone_at_equal_pick_count() -> None:
    # Largest first across warehouses would take W2/A (7) and W1/A (3): 2 picks over 2 warehouses.
    # W1 alone also needs 2 picks, so the line stays in one warehouse.
    slots = [
        slot("W1", "A", "SKU-1", 6),
        slot("W1", "B", "SKU-1", 4),
        slot("W2", "A", "SKU-1", 7),
        slot("W3", "A", "SKU-2", 1),
    ]

    result = allocate(
        [OrderLine("SKU-1", 10), OrderLine("SKU-2", 1)], slots, {"SKU-1": AMBIENT, "SKU-2": AMBIENT}
    )

    assert picks_of(result) == (
        Pick("W1", "A", "SKU-1", 6),
        Pick("W1", "B", "SKU-1", 4),
        Pick("W3", "A", "SKU-2", 1),
    )


def test_split_line_that_no_warehouse_fills_alone_ties_on_warehouse_then_section() -> None:
    slots = [
        slot("W2", "A", "SKU-1", 2),
        slot("W1", "B", "SKU-1", 2),
        slot("W1", "A", "SKU-1", 1),
        slot("W3", "A", "SKU-2", 1),
    ]

    result = allocate(
        [OrderLine("SKU-1", 4), OrderLine("SKU-2", 1)], slots, {"SKU-1": AMBIENT, "SKU-2": AMBIENT}
    )

    assert picks_of(result) == (
        Pick("W1", "B", "SKU-1", 2),
        Pick("W2", "A", "SKU-1", 2),
        Pick("W3", "A", "SKU-2", 1),
    )


def test_picks_are_sorted_by_warehouse_section_and_sku() -> None:
    slots = [
        slot("W1", "B", "SKU-A", 1),
        slot("W1", "A", "SKU-B", 1),
        slot("W1", "A", "SKU-C", 1),
        slot("W1", "A", "SKU-A", 1),
    ]
    lines = [OrderLine("SKU-C", 1), OrderLine("SKU-A", 2), OrderLine("SKU-B", 1)]

    result = allocate(lines, slots, {"SKU-A": AMBIENT, "SKU-B": AMBIENT, "SKU-C": AMBIENT})

    assert picks_of(result) == (
        Pick("W1", "A", "SKU-A", 1),
        Pick("W1", "A", "SKU-B", 1),
        Pick("W1", "A", "SKU-C", 1),
        Pick("W1", "B", "SKU-A", 1),
    )


# --- properties -------------------------------------------------------------------------------------

SKUS = ("SKU-1", "SKU-2", "SKU-3")
WAREHOUSES = ("W1", "W2", "W3")
SECTIONS = ("A", "B", "C")

Scenario = tuple[list[OrderLine], list[StockSlot], dict[str, StorageCondition]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    conditions = draw(st.fixed_dictionaries({sku: st.sampled_from(StorageCondition) for sku in SKUS}))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(WAREHOUSES),
                st.sampled_from(SECTIONS),
                st.sampled_from(SKUS),
                # None stands for "the product's own condition": biasing towards it lets
                # allocations succeed often enough to exercise the strategy.
                st.none() | st.sampled_from(StorageCondition),
                st.integers(-1, 9),
            ),
            unique_by=lambda row: row[:3],
            min_size=3,
            max_size=18,
        )
    )
    slots = [
        StockSlot(warehouse, section, sku, condition or conditions[sku], available)
        for warehouse, section, sku, condition, available in rows
    ]
    lines = draw(
        st.lists(st.builds(OrderLine, st.sampled_from(SKUS), st.integers(1, 6)), min_size=1, max_size=3)
    )
    return lines, slots, conditions


PROPERTY = settings(max_examples=200, deadline=None)


def requested_of(lines: Iterable[OrderLine]) -> Counter[str]:
    requested: Counter[str] = Counter()
    for line in lines:
        requested[line.sku] += line.quantity
    return requested


def usable_of(slots: Iterable[StockSlot], conditions: Mapping[str, StorageCondition]) -> list[StockSlot]:
    return [s for s in slots if s.available > 0 and conditions.get(s.sku) == s.condition]


def fewest_picks(quantity: int, amounts: Sequence[int]) -> int | None:
    """Smallest number of slots whose stock together reaches ``quantity``, by brute force."""
    for size in range(len(amounts) + 1):
        if any(sum(chosen) >= quantity for chosen in combinations(amounts, size)):
            return size
    return None


def fewest_picks_in_warehouse(
    warehouse: str, requested: Mapping[str, int], usable: Sequence[StockSlot]
) -> int | None:
    total = 0
    for sku, quantity in requested.items():
        count = fewest_picks(
            quantity, [s.available for s in usable if s.sku == sku and s.warehouse_code == warehouse]
        )
        if count is None:
            return None
        total += count
    return total


@PROPERTY
@given(scenarios())
def test_property_never_picks_more_than_a_slot_holds(scenario: Scenario) -> None:
    lines, slots, conditions = scenario
    result = allocate(lines, slots, conditions)

    if isinstance(result, Allocation):
        by_key = {(s.warehouse_code, s.section_code, s.sku): s for s in slots}
        for pick in result.picks:
            source = by_key[(pick.warehouse_code, pick.section_code, pick.sku)]
            assert 1 <= pick.quantity <= source.available


@PROPERTY
@given(scenarios())
def test_property_never_picks_from_a_wrong_condition_slot(scenario: Scenario) -> None:
    lines, slots, conditions = scenario
    result = allocate(lines, slots, conditions)

    if isinstance(result, Allocation):
        by_key = {(s.warehouse_code, s.section_code, s.sku): s for s in slots}
        for pick in result.picks:
            assert (
                by_key[(pick.warehouse_code, pick.section_code, pick.sku)].condition == conditions[pick.sku]
            )


@PROPERTY
@given(scenarios())
def test_property_totals_are_exact_or_shortfall_names_each_short_sku(scenario: Scenario) -> None:
    lines, slots, conditions = scenario
    requested = requested_of(lines)
    usable = usable_of(slots, conditions)
    stock: Counter[str] = Counter()
    for s in usable:
        stock[s.sku] += s.available
    expected_short = {
        sku: Shortage(sku, quantity, stock[sku])
        for sku, quantity in requested.items()
        if stock[sku] < quantity
    }

    result = allocate(lines, slots, conditions)

    if expected_short:
        assert isinstance(result, Shortfall)
        assert result.shortages == tuple(expected_short[sku] for sku in sorted(expected_short))
        for shortage in result.shortages:
            assert shortage.missing == requested[shortage.sku] - stock[shortage.sku] > 0
    else:
        totals: Counter[str] = Counter()
        for pick in picks_of(result):
            totals[pick.sku] += pick.quantity
        assert totals == requested


@PROPERTY
@given(st.data(), scenarios())
def test_property_result_does_not_depend_on_slot_order(data: st.DataObject, scenario: Scenario) -> None:
    lines, slots, conditions = scenario
    shuffled = data.draw(st.permutations(slots))

    assert allocate(lines, shuffled, conditions) == allocate(lines, slots, conditions)


@PROPERTY
@given(scenarios())
def test_property_picks_are_in_lock_order_with_one_pick_per_slot(scenario: Scenario) -> None:
    lines, slots, conditions = scenario
    result = allocate(lines, slots, conditions)

    if isinstance(result, Allocation):
        keys = [(p.warehouse_code, p.section_code, p.sku) for p in result.picks]
        assert keys == sorted(set(keys))


@PROPERTY
@given(scenarios())
def test_property_uses_one_warehouse_with_fewest_picks_when_one_fills_the_order(scenario: Scenario) -> None:
    lines, slots, conditions = scenario
    requested = requested_of(lines)
    usable = usable_of(slots, conditions)
    costs = {w: c for w in WAREHOUSES if (c := fewest_picks_in_warehouse(w, requested, usable)) is not None}

    result = allocate(lines, slots, conditions)

    if requested and costs:
        picks = picks_of(result)
        best = min(costs.values())
        assert {p.warehouse_code for p in picks} == {min(w for w, c in costs.items() if c == best)}
        assert len(picks) == best


@PROPERTY
@given(scenarios())
def test_property_split_orders_use_the_fewest_picks_per_sku(scenario: Scenario) -> None:
    lines, slots, conditions = scenario
    requested = requested_of(lines)
    usable = usable_of(slots, conditions)
    whole_order = any(fewest_picks_in_warehouse(w, requested, usable) is not None for w in WAREHOUSES)
    fewest = {
        sku: fewest_picks(quantity, [s.available for s in usable if s.sku == sku])
        for sku, quantity in requested.items()
    }

    result = allocate(lines, slots, conditions)

    if whole_order:  # rule 1, whose picks the property above checks: served, never short
        assert isinstance(result, Allocation), result
    elif short := sorted(sku for sku, count in fewest.items() if count is None):
        # All or nothing: no picks at all, and every SKU that all its usable slots together do not
        # cover is named, with what was asked for and what there is.
        assert isinstance(result, Shortfall), result
        assert result.shortages == tuple(
            Shortage(sku, requested[sku], sum(s.available for s in usable if s.sku == sku)) for sku in short
        )
    else:
        per_sku = Counter(p.sku for p in picks_of(result))
        assert per_sku == fewest

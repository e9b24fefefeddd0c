"""The check of a stock count's change: not zero, and within a 32-bit count either way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.model.problems import MAX_COUNT, ProblemCode, check_stock_delta


@given(st.integers(-MAX_COUNT, MAX_COUNT).filter(bool))
def test_a_change_within_a_count_is_accepted(delta: int) -> None:
    assert check_stock_delta(delta, "quantityDelta") == []


@given(st.integers(min_value=MAX_COUNT + 1) | st.integers(max_value=-MAX_COUNT - 1))
def test_a_change_past_a_count_is_out_of_range(delta: int) -> None:
    [problem] = check_stock_delta(delta, "quantityDelta")
    assert (problem.code, problem.field) == (ProblemCode.OUT_OF_RANGE, "quantityDelta")


def test_no_change_is_refused() -> None:
    [problem] = check_stock_delta(0, "quantityDelta")
    assert problem.code is ProblemCode.INVALID_QUANTITY

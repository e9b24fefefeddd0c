"""The idempotency fingerprint of a placement: one per distinct request, the same for equal ones,
as its canonical encoding decodes back to the request."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from domain.model.commands import PlaceOrder
from domain.model.values import OrderLine

# Text with the characters a joined encoding could confuse: separators, quotes, brackets, escapes.
tricky_text = st.text(alphabet=st.sampled_from('ax|,:"[]{}\\ 1\u00e9'), max_size=8)
lines = st.lists(st.builds(OrderLine, tricky_text, st.integers(1, 1_000_000)), min_size=1, max_size=4)
requests = st.builds(PlaceOrder, tricky_text, lines.map(tuple))


def meaning(request: PlaceOrder) -> tuple[str, Counter[tuple[str, int]]]:
    """What a request asks for: its customer and its lines, in any order."""
    return request.customer_id, Counter((x.sku, x.quantity) for x in request.lines)


@given(requests)
def test_the_canonical_encoding_decodes_back_to_the_request(request: PlaceOrder) -> None:
    decoded = json.loads(request.canonical())
    assert set(decoded) == {"customerId", "lines"}
    assert (decoded["customerId"], Counter(map(tuple, decoded["lines"]))) == meaning(request)


@given(requests, requests)
def test_distinct_requests_never_share_a_fingerprint(a: PlaceOrder, b: PlaceOrder) -> None:
    if meaning(a) != meaning(b):
        assert a.fingerprint() != b.fingerprint()


@given(requests, st.randoms())
def test_the_same_request_with_its_lines_in_another_order_has_the_same_fingerprint(
    request: PlaceOrder, random: object
) -> None:
    shuffled = list(request.lines)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    again = PlaceOrder(request.customer_id, tuple(shuffled), "another key")
    assert again.fingerprint() == request.fingerprint()


def test_a_customer_id_cannot_pass_for_a_line() -> None:
    alice = PlaceOrder("alice", (OrderLine("MUG", 1), OrderLine("TEA", 1)))
    impostor = PlaceOrder("alice|MUGx1", (OrderLine("TEA", 1),))
    assert alice.fingerprint() != impostor.fingerprint()

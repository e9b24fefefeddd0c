"""Global ids of catalog objects: each names one kind and key, and no UUID is mistaken for one."""

from __future__ import annotations

import base64
import uuid

from hypothesis import given
from hypothesis import strategies as st

from api.graphql.node_ids import catalog_id, catalog_key

codes = st.text(max_size=40)


@given(kind=st.sampled_from(["Product", "Warehouse", "Section"]), key=st.lists(codes, min_size=1, max_size=3))
def test_a_catalog_id_gives_back_its_kind_and_key(kind: str, key: list[str]) -> None:
    assert catalog_key(catalog_id(kind, *key)) == (kind, key)


@given(first=st.tuples(codes, codes), second=st.tuples(codes, codes))
def test_different_keys_have_different_ids(first: tuple[str, str], second: tuple[str, str]) -> None:
    if first != second:
        assert catalog_id("Section", *first) != catalog_id("Section", *second)


@given(st.uuids())
def test_no_uuid_is_taken_for_a_catalog_id(id: uuid.UUID) -> None:
    assert catalog_key(str(id)) is None


@given(st.text())
def test_any_text_is_a_catalog_id_or_none(text: str) -> None:
    decoded = catalog_key(text)
    assert decoded is None or (isinstance(decoded[0], str) and all(isinstance(k, str) for k in decoded[1]))


def test_an_id_nested_past_the_json_decoder_s_depth_is_not_a_catalog_id() -> None:
    assert catalog_key(base64.urlsafe_b64encode(b"[" * 100_000).decode()) is None

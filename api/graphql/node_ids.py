"""Global ids for Relay's `node(id:)` (GraphQL Global Object Identification).

Sagas, orders and shipments are identified by the UUIDs the service gives them, unique across all
three. Catalog objects are identified by their codes, which are unique only within their kind (a
warehouse and a product may both be called "TEA"), so their global id carries the kind: the
unpadded URL-safe base64 of the JSON array `[kind, *key]`, for example `["Section", "W1", "A"]`.
"""

from __future__ import annotations

import base64
import binascii
import json


def catalog_id(kind: str, *key: str) -> str:
    """The global id of the catalog object of `kind` ("Product", "Warehouse", "Section",
    "StockLevel") at `key`."""
    raw = json.dumps([kind, *key], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def catalog_key(id: str) -> tuple[str, list[str]] | None:
    """The kind and key that `id` was made from by `catalog_id`, or None if it was not made so."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(id + "=" * (-len(id) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # not base64, not UTF-8, not JSON, or too deep
        return None
    if not (isinstance(decoded, list) and len(decoded) >= 2 and all(isinstance(p, str) for p in decoded)):
        return None
    return decoded[0], decoded[1:]

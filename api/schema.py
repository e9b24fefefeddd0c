"""The GraphQL schema, merged from one module per area: queries read the read model; mutations
validate at the edge, then hand a command to the orchestrator or the catalog. Refused input comes
back as userErrors and changes nothing. Subscriptions follow sagas live."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.tools import merge_types

from api.inventory import InventoryMutations, InventoryQueries
from api.orders import OrderMutations, OrderQueries
from api.subscriptions import OnlyOverWebSocket, Subscription

Query = merge_types("Query", (OrderQueries, InventoryQueries))
Mutation = merge_types("Mutation", (OrderMutations, InventoryMutations))

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    # Factories: a fresh extension per request; the parse and validation caches live at module level,
    # so they still serve every request. Bounded, so unique query texts cannot grow memory.
    extensions=[
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        lambda: QueryDepthLimiter(max_depth=12),
        lambda: MaxTokensLimiter(max_token_count=4000),
        lambda: MaxAliasesLimiter(max_alias_count=30),
        OnlyOverWebSocket,
    ],
)

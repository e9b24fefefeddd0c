"""The rules every request's document and operation are held to at the edge, over HTTP and
WebSocket, as one strawberry extension (`EdgeRules`) that calls each rule, in its own module, in the
order they apply.

One extension, not one per rule: strawberry makes each extension anew for every request, and for each
phase whose hook an extension implements it wraps that hook in a context manager of its own
(`contextlib.contextmanager`, `functools.update_wrapper`, an exit stack). With one extension per
rule, nine of them, a trivial query took 100-129 µs to execute; with this one, 65-75 µs
(docs/performance.md, lever 22)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from graphql import GraphQLResolveInfo
from graphql.pyutils import AwaitableOrValue
from strawberry.extensions import SchemaExtension

from api.access.guard import authorize
from api.graphql.edge.document_limits import MAX_TOKENS
from api.graphql.edge.documents import parse_cached, require_operation_name, validate
from api.graphql.edge.errors import code_validation_errors
from api.graphql.edge.execution_limits import refuse_past_limits
from api.graphql.edge.inputs import refuse_unstorable_subscription, storable_arguments
from api.graphql.subscriptions import refuse_over_http


class EdgeRules(SchemaExtension):
    """Parse: at most MAX_TOKENS tokens (as strawberry's MaxTokensLimiter), from a cache with
    `fast_paths`. Validation: bounded by the document's cost (cached with `fast_paths`), an
    `operationName` for several operations, every refusal coded. Execution: subscriptions only over
    WebSocket, then authorization and rate limits, then the execution limits, then storable text (a
    subscription's before it starts; every other field's arguments by resolver middleware)."""

    def __init__(self, *, fast_paths: bool) -> None:
        self.fast_paths = fast_paths

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = MAX_TOKENS
        if self.fast_paths:
            parse_cached(context)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        validate(context, cached=self.fast_paths)
        require_operation_name(context)
        code_validation_errors(context.pre_execution_errors)
        yield

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        refuse_over_http(context)
        await authorize(context)
        refuse_past_limits(context)
        refuse_unstorable_subscription(context)
        yield

    def resolve(
        self,
        _next: Callable[..., AwaitableOrValue[object]],
        root: Any,
        info: GraphQLResolveInfo,
        *args: Any,
        **kwargs: Any,
    ) -> AwaitableOrValue[object]:
        return storable_arguments(_next, root, info, *args, **kwargs)

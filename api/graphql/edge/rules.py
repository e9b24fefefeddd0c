"""The rules every request's document and operation are held to at the edge, over HTTP and
WebSocket, as one strawberry extension (`EdgeRules`) that calls each rule, in its own module, in the
order they apply. With the fast paths, HTTP's operations call the rules directly instead
(api/graphql/edge/direct_execution.py).

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
from strawberry.types import ExecutionContext

from api.access.guard import authorize
from api.graphql.edge.document_limits import MAX_TOKENS
from api.graphql.edge.documents import parse_cached, require_operation_name, validate
from api.graphql.edge.errors import code_validation_errors
from api.graphql.edge.execution_limits import refuse_past_limits
from api.graphql.edge.inputs import refuse_unstorable_subscription, storable_arguments
from api.graphql.subscriptions import refuse_over_http


def parsing(context: ExecutionContext, *, fast_paths: bool) -> None:
    """Before strawberry parses: at most MAX_TOKENS tokens (as strawberry's MaxTokensLimiter), the
    document from a cache with `fast_paths`."""
    context.parse_options["max_tokens"] = MAX_TOKENS
    if fast_paths:
        parse_cached(context)


def validation(context: ExecutionContext, *, fast_paths: bool) -> None:
    """Validation bounded by the document's cost (its verdict cached with `fast_paths`), an
    `operationName` for several operations, every refusal coded."""
    validate(context, cached=fast_paths)
    require_operation_name(context)
    code_validation_errors(context.pre_execution_errors)


async def execution(context: ExecutionContext) -> None:
    """Before the operation executes: subscriptions only over WebSocket, then authorization and rate
    limits, then the execution limits, then a subscription's storable text. Raises the refusal."""
    refuse_over_http(context)
    await authorize(context)
    refuse_past_limits(context)
    refuse_unstorable_subscription(context)


class EdgeRules(SchemaExtension):
    """The rules above, in strawberry's phases (`parsing`, `validation`, `execution`), and every
    other field's storable arguments as resolver middleware (`storable_arguments`)."""

    def __init__(self, *, fast_paths: bool) -> None:
        self.fast_paths = fast_paths

    def on_parse(self) -> Iterator[None]:
        parsing(self.execution_context, fast_paths=self.fast_paths)
        yield

    def on_validate(self) -> Iterator[None]:
        validation(self.execution_context, fast_paths=self.fast_paths)
        yield

    async def on_execute(self) -> AsyncIterator[None]:
        await execution(self.execution_context)
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

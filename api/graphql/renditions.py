"""A subscription event rendered once per distinct selection, however many subscriptions send it.

graphql-core executes an operation's selection on every event of every subscription. When many
subscriptions send the same event object (one transition of a saga, api/live/recent_transitions.py),
those with the same selection would compute the same answer: the event's `renditions` keep the
first such result, and the others send it.

The same selection means: the same parsed operation (the parse cache gives equal texts one
document; a text parsed twice is merely rendered twice), the same coerced variables (compared by
`repr`, which tells apart every value a variable can hold here: strings, numbers, booleans, enums,
lists, input objects, times), and the same visibility, `customer_filter(principal, None)`: staff
(None) see every customer and a saga's lease, a customer only itself. Nothing else in the context
changes what a field under a subscription resolves to.

A result with errors is not kept: each subscription renders it again, and each error is reported,
masked and logged on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable
from typing import Any, cast

from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from api.access.auth import Principal
from api.access.rules import customer_filter


class Renditions(dict[Hashable, ExecutionResult | asyncio.Future[ExecutionResult]]):
    """What one event rendered to, per selection (or the rendering under way); the event holds it as
    its `renditions`."""


class RenderOnce(StrawberryGraphQLCoreExecutionContext):
    """The schema's executor with the fast paths on (`Settings.fast_paths`): a subscription event
    that has `renditions` is executed once per selection; anything else as graphql-core executes it,
    after which the executor drops the reference cycle graphql-core makes of it (`_released`)."""

    _selection: Hashable | None = None

    def execute_operation(self, serially: bool | None = None) -> Any:
        renditions = getattr(self.root_value, "renditions", None)
        if not isinstance(renditions, Renditions):
            return self._released(super().execute_operation(serially))
        key = self._selection_key()
        kept = renditions.get(key)
        if isinstance(kept, ExecutionResult):
            return kept
        if kept is not None:
            return self._after(kept, serially)
        result = self._render(serially)
        if isinstance(result, ExecutionResult):
            if not result.errors:
                renditions[key] = result
            return result
        # Rendering waits (a loader, a read): subscriptions that want it meanwhile wait for it too,
        # in a task of its own so that this one leaving does not cancel it for them.
        rendering = asyncio.ensure_future(_awaited(result))
        renditions[key] = rendering
        rendering.add_done_callback(lambda done: _settle(renditions, key, done))
        return self._after(rendering, serially)

    def _released(self, result: Any) -> Any:
        """`result`, once the executor has dropped its `async_helpers`: graphql-core (3.3) keeps its
        own bound methods there, a reference cycle that held each request's context (its request,
        loaders and answer among it) until the collector found it, instead of freeing it as the
        request ended. Fields still read them after the answer when they settle in the background
        (siblings of a field whose error ended its selection, `settle_in_background`): then they are
        kept, and the collector frees the executor as before."""
        if isinstance(result, Awaitable):
            return self._released_when_done(result)
        self._release()
        return result

    async def _released_when_done(self, result: Awaitable[Any]) -> Any:
        try:
            return await result
        finally:
            self._release()

    def _release(self) -> None:
        if not self.background_futures:
            del self.async_helpers

    async def _after(self, rendering: asyncio.Future[ExecutionResult], serially: bool | None) -> Any:
        result = await asyncio.shield(rendering)
        if result.errors:
            return await _awaited(self._render(serially))
        return result

    def _render(self, serially: bool | None) -> Awaitable[ExecutionResult] | ExecutionResult:
        # A subscription's event: never incremental, graphql-core refuses @defer and @stream there.
        return cast(Awaitable[ExecutionResult] | ExecutionResult, super().execute_operation(serially))

    def _selection_key(self) -> Hashable:
        if self._selection is None:
            identity = self.context_value["identity"]
            assert isinstance(identity, Principal)  # api/access/guard.py refused every operation without one
            variables = repr(sorted(self.variable_values.coerced.items()))
            self._selection = (self.operation, variables, customer_filter(identity, None))
        return self._selection

    def build_per_event_executor(self, payload: Any) -> Any:
        self._selection_key()  # once, on the subscription's executor, which each event's copies
        executor = super().build_per_event_executor(payload)
        # graphql-core (3.3) makes each event's executor a shallow copy sharing the subscription's memo
        # of collected subfields, keyed by the identity of field lists that every event collects anew:
        # kept for the subscription's life, it grew by an entry or two per event rendered, never
        # looked up again. Each event's executor memoizes for itself and lets go with the event.
        executor._relevant_sub_fields = {}
        return executor


async def _awaited(result: Awaitable[ExecutionResult] | ExecutionResult) -> ExecutionResult:
    return await result if isinstance(result, Awaitable) else result


def _settle(renditions: Renditions, key: Hashable, done: asyncio.Future[ExecutionResult]) -> None:
    """A finished rendering is kept as its result, or forgotten if it failed."""
    if done.cancelled() or done.exception() is not None or done.result().errors:
        renditions.pop(key, None)
    else:
        renditions[key] = done.result()

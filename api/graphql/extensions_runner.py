"""The schema extensions' hooks, found once per set of extension classes instead of once per request.

strawberry makes every request's extensions afresh (each holds that request's `execution_context`),
then, at each lifecycle step, looks through all of them for the step's hook and wraps each hook it
finds in a new context-manager factory, and at the end asks every one of them for results to add to
the answer: some 70 µs of every request, always with the same outcome for the same classes. Here the
hooks, and which extensions have results, are found once per set of classes; a request only binds
the hooks to its own extensions, so no state is shared between requests.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    StreamResultContextManager,
    ValidationContextManager,
    WrappedHook,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext, StreamExecutionResult
from strawberry.utils.await_maybe import await_maybe

Kinds = tuple[type[SchemaExtension], ...]
# An extension's position among the request's extensions, its hook as a context-manager factory
# taking the extension, and whether the hook is async.
Hook = tuple[int, Callable[..., Any], bool]


@functools.cache
def hook_plan(kinds: Kinds, hook_name: str) -> tuple[Hook, ...] | None:
    """The hooks named `hook_name` of extensions of these classes, in this order; None if one of
    them is a plain function, which strawberry also allows and which is left to strawberry's own
    lookup."""
    default = getattr(SchemaExtension, hook_name)
    plan: list[Hook] = []
    for position, kind in enumerate(kinds):
        hook = getattr(kind, hook_name)
        if hook is default:
            continue
        if inspect.isgeneratorfunction(hook):
            plan.append((position, contextlib.contextmanager(hook), False))
        elif inspect.isasyncgenfunction(hook):
            plan.append((position, contextlib.asynccontextmanager(hook), True))
        else:
            return None
    return tuple(plan)


@functools.cache
def reporting(kinds: Kinds) -> tuple[int, ...]:
    """The positions of the extensions of these classes that add to a result's `extensions`."""
    return tuple(at for at, kind in enumerate(kinds) if kind.get_results is not SchemaExtension.get_results)


class _Prepared(ExtensionContextManagerBase):
    def __init__(self, extensions: Sequence[SchemaExtension], kinds: Kinds) -> None:
        # In place of the base's own __init__, which looks the hooks up again.
        plan = hook_plan(kinds, self.HOOK_NAME)
        if plan is None:
            ExtensionContextManagerBase.__init__(self, list(extensions))
            return
        self.hooks = [
            WrappedHook(extensions[at], functools.partial(factory, extensions[at]), is_async)
            for at, factory, is_async in plan
        ]


class _Operation(_Prepared, OperationContextManager):
    pass


class _Parsing(_Prepared, ParsingContextManager):
    pass


class _Validation(_Prepared, ValidationContextManager):
    pass


class _Executing(_Prepared, ExecutingContextManager):
    pass


class _StreamResult(_Prepared, StreamResultContextManager):
    def __init__(
        self, extensions: Sequence[SchemaExtension], kinds: Kinds, result: StreamExecutionResult
    ) -> None:
        self.result = result
        super().__init__(extensions, kinds)


class PreparedExtensionsRunner(SchemaExtensionsRunner):
    """strawberry's runner, its steps' hooks taken from `hook_plan`."""

    def __init__(self, execution_context: ExecutionContext, extensions: list[SchemaExtension]) -> None:
        super().__init__(execution_context, extensions)
        self.kinds = tuple(type(extension) for extension in self.extensions)

    def operation(self) -> OperationContextManager:
        return _Operation(self.extensions, self.kinds)

    def parsing(self) -> ParsingContextManager:
        return _Parsing(self.extensions, self.kinds)

    def validation(self) -> ValidationContextManager:
        return _Validation(self.extensions, self.kinds)

    def executing(self) -> ExecutingContextManager:
        return _Executing(self.extensions, self.kinds)

    def on_stream_result(self, result: StreamExecutionResult) -> StreamResultContextManager:
        return _StreamResult(self.extensions, self.kinds, result)

    async def get_extensions_results(self, ctx: ExecutionContext) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for at in reporting(self.kinds):
            data.update(await await_maybe(self.extensions[at].get_results()))
        data.update(ctx.extensions_results)
        return data

"""An operation executed as strawberry's `Schema.execute` executes it, with the edge rules called
directly rather than through strawberry's extension machinery: the fast path (`Settings.fast_paths`)
for every query and mutation over HTTP.

For each request, strawberry makes the schema's extension anew, a runner for its hooks, a context
manager for each phase the extension has a hook for, and a resolver middleware manager that wraps
every field's resolver again. With one extension whose hooks only call the rules before each
phase (`api.graphql.edge.rules`), that machinery cost 3-6% of a placed order's server CPU and about
a quarter of a trivial query's (docs/performance.md, lever 28). Here the rules run at the same
points, in the same order, and their refusals take the same way out; the one resolver middleware
(`storable_arguments`) is made once, as it keeps nothing per request. Operations over WebSocket
(strawberry's `Schema.stream`) keep the extension.

This follows strawberry 0.341's `Schema.execute` step for step and uses its private helpers
(pinned in pyproject.toml; docs/library-internals.md). tests/api/test_direct_execution.py holds it
to strawberry's answers, errors and reports, on every kind of request the edge refuses or answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.execution.middleware import MiddlewareManager
from strawberry.exceptions import MissingQueryError
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema import Schema
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    _coerce_error,
    _parse_operation_document,
    _run_validation,
)
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType
from strawberry.utils.await_maybe import await_maybe

from api.graphql.edge import rules
from api.graphql.edge.inputs import storable_arguments

# Keeps nothing per request: its wrapped resolvers, one per field resolver, serve every request.
STORABLE_ARGUMENTS = MiddlewareManager(storable_arguments)


def answers_as_strawberry(schema: Schema) -> bool:
    """Whether `execute_directly` answers as `schema.execute` would: the edge rules, with the fast
    paths, are its one extension, it has no directives of its own (for which strawberry adds an
    extension) and no incremental delivery. A schema built otherwise is executed by strawberry."""
    [extension, *others] = schema.extensions or [None]
    return (
        not others
        and getattr(extension, "func", extension) is rules.EdgeRules
        and getattr(extension, "keywords", {}).get("fast_paths") is True
        and not schema.directives
        and not schema.config.enable_experimental_incremental_execution
    )


async def execute_directly(
    schema: Schema,
    query: str | None,
    variable_values: dict[str, Any] | None = None,
    context_value: Any | None = None,
    root_value: Any | None = None,
    operation_name: str | None = None,
    allowed_operation_types: Iterable[OperationType] | None = None,
    operation_extensions: dict[str, Any] | None = None,
) -> ExecutionResult:
    """What `schema.execute(...)` answers with the edge rules as its one extension, the fast paths
    on: the result, its errors reported by `schema.process_errors` once. Raises what
    `schema.execute` raises before executing: MissingQueryError (no document),
    CannotGetOperationTypeError (no such operation), InvalidOperationTypeError (an operation type
    not allowed, a mutation over GET)."""
    context = schema._create_execution_context(
        query=query,
        allowed_operation_types=(
            DEFAULT_ALLOWED_OPERATION_TYPES if allowed_operation_types is None else allowed_operation_types
        ),
        variable_values=variable_values,
        context_value=context_value,
        root_value=root_value,
        operation_name=operation_name,
        operation_extensions=operation_extensions,
    )
    # With no extension, the runner adds to a result only the context's `extensions_results`, as
    # strawberry's does with the edge rules, which have no results of their own (`get_results`).
    runner = SchemaExtensionsRunner(execution_context=context, extensions=[])
    try:
        if refused := await _prepared(context):
            return await schema._handle_execution_result(context, refused, runner)
        await rules.execution(context)
        # A rule may answer in the operation's place (a subscription over HTTP): strawberry's way.
        if not context.result:
            assert context.graphql_document is not None
            context.result = await await_maybe(
                schema._get_execute_function()(
                    schema._schema,
                    context.graphql_document,
                    root_value=context.root_value,
                    middleware=STORABLE_ARGUMENTS,
                    variable_values=context.variables,
                    operation_name=context.operation_name,
                    context_value=context.context,
                    is_awaitable=optimized_is_awaitable,
                    **execution_context_class_kwargs(schema.execution_context_class),
                    **schema._get_custom_context_kwargs(operation_extensions),
                )
            )
        result = context.result
        assert result is not None
        if isinstance(result, GraphQLExecutionResult) and result.errors:
            context.pre_execution_errors = result.errors
            schema._process_errors(result.errors, context)
    except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError):
        raise
    except Exception as error:  # as strawberry's: a rule's refusal, or any error, is the answer
        refused = PreExecutionError(data=None, errors=[_coerce_error(error)])
        return await schema._handle_execution_result(context, refused, runner)
    return await schema._handle_execution_result(context, result, runner, skip_process_errors=True)


async def _prepared(context: ExecutionContext) -> PreExecutionError | None:
    """strawberry's `_prepare_operation_async`, the rules before parsing and before validation
    called in place of the extension's hooks: the refusal of a document that does not parse or is
    not valid, or None. Raises MissingQueryError, CannotGetOperationTypeError and
    InvalidOperationTypeError, as strawberry's does."""
    if not context.query and context.graphql_document is None:
        raise MissingQueryError
    rules.parsing(context, fast_paths=True)
    try:
        _parse_operation_document(context)
    except Exception as error:  # noqa: BLE001  # as strawberry's: a syntax error, or any error
        coerced = _coerce_error(error)
        context.pre_execution_errors = [coerced]
        return PreExecutionError(data=None, errors=[coerced])
    try:
        operation_type = context.operation_type
    except RuntimeError as error:
        raise CannotGetOperationTypeError(context.operation_name) from error
    if operation_type not in context.allowed_operations:
        raise InvalidOperationTypeError(operation_type)
    rules.validation(context, fast_paths=True)
    _run_validation(context)
    if context.pre_execution_errors:
        return PreExecutionError(data=None, errors=context.pre_execution_errors)
    return None

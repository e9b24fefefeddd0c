"""The GraphQL schema, merged from one module per area: queries read the read model; mutations
validate at the edge, then hand a command to the orchestrator or the catalog. Refused input comes
back as userErrors and changes nothing. Subscriptions follow sagas live."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import strawberry
from graphql import FieldNode, GraphQLError, get_operation_ast
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from api.access.rules import roles_sentence
from api.graphql.analytics import AnalyticsQueries
from api.graphql.bulk import BulkMutations
from api.graphql.edge.direct_execution import answers_as_strawberry, execute_directly
from api.graphql.edge.errors import report
from api.graphql.edge.input_building import install_input_builders
from api.graphql.edge.inputs import DateTime
from api.graphql.edge.rules import EdgeRules
from api.graphql.faults import FaultMutations, FaultQueries
from api.graphql.interventions import OperationMutations, OperationQueries
from api.graphql.inventory import InventoryMutations, InventoryQueries
from api.graphql.journal import JournalQueries
from api.graphql.orders import OrderMutations, OrderQueries
from api.graphql.relay import RelayQueries
from api.graphql.renditions import RenderOnce
from api.graphql.subscriptions import Subscription
from api.graphql.webhooks import WebhookMutations, WebhookQueries

# What any operation may answer besides its data, as GraphQL errors with `extensions.code`.
EVERY_OPERATION = (
    "Any operation may be refused with a GraphQL error whose extensions.code says why: UNAUTHENTICATED "
    "(no valid token), FORBIDDEN (a field the caller's roles may not call; each field names its roles), "
    "BAD_USER_INPUT (an argument refused), GRAPHQL_PARSE_FAILED and GRAPHQL_VALIDATION_FAILED (fix the "
    "document), QUERY_TOO_COMPLEX (more work than one request may do), RATE_LIMITED and "
    "SERVICE_UNAVAILABLE (send it again after extensions.retryAfterSeconds), INTERNAL_SERVER_ERROR "
    "(quote extensions.errorId). A service run without authentication treats every caller as admin."
)


@strawberry.type(
    description="Reading: orders and sagas (a customer sees only its own), the catalog and its stock, and "
    f"the figures operators watch. {EVERY_OPERATION}"
)
class Query(
    OrderQueries,
    InventoryQueries,
    RelayQueries,
    JournalQueries,
    AnalyticsQueries,
    OperationQueries,
    FaultQueries,
    WebhookQueries,
):
    pass


@strawberry.type(
    description="Changes. An input the service refuses comes back in the payload's userErrors and changes "
    "nothing. A change whose database connection was lost as it committed answers OUTCOME_UNKNOWN: "
    f"send it again with the same idempotencyKey. {EVERY_OPERATION}"
)
class Mutation(
    OrderMutations, InventoryMutations, OperationMutations, BulkMutations, FaultMutations, WebhookMutations
):
    pass


class EdgeSchema(strawberry.Schema):
    """The schema, with every error reported once, on every transport and operation type: strawberry
    hands each error to `process_errors` before the result is formatted, in place of its own logging
    (which logged every error, a client's mistakes too, with a traceback at ERROR). With
    `direct_execution` (the fast paths, when `answers_as_strawberry`), `execute` (every query and
    mutation over HTTP) calls the edge rules directly (api/graphql/edge/direct_execution.py)."""

    direct_execution = False

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        if self.direct_execution:
            return await execute_directly(self, *args, **kwargs)
        return await super().execute(*args, **kwargs)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            report(
                error,
                change_made=_below_a_mutation(error, execution_context),
                after_changes=_after_other_mutations(error, execution_context),
            )


def _below_a_mutation(error: GraphQLError, execution_context: ExecutionContext | None) -> bool:
    """Whether `error` was raised resolving a field of a mutation's payload: after the mutation's
    resolver returned, so after its change (if it made one) committed."""
    return (
        error.path is not None
        and len(error.path) > 1
        and execution_context is not None
        and execution_context.operation_type is OperationType.MUTATION
    )


def _after_other_mutations(error: GraphQLError, execution_context: ExecutionContext | None) -> bool:
    """Whether `error` was raised by a mutation's root field that is not the operation's first:
    GraphQL runs a mutation's root fields one after the other (spec, "Executing Selection Sets"), so
    those before it ran and may have made their changes. A root selection that is not a plain field
    (a fragment) counts as one that may have run before."""
    if (
        error.path is None
        or len(error.path) != 1
        or execution_context is None
        or execution_context.graphql_document is None
        or execution_context.operation_type is not OperationType.MUTATION
    ):
        return False
    operation = get_operation_ast(execution_context.graphql_document, execution_context.operation_name)
    if operation is None:
        return False
    first = operation.selection_set.selections[0]
    key = (first.alias or first.name).value if isinstance(first, FieldNode) else None
    return key != error.path[0]


def _document_roles(schema: EdgeSchema) -> None:
    """Ends the description of every root field with the roles that may call it
    (`api.access.rules.roles_sentence`), so that clients read who may call what in the schema itself.
    Done on the built schema, whose field objects are its own, so building it again adds it once."""
    built = schema._schema
    roots = {
        OperationType.QUERY: built.query_type,
        OperationType.MUTATION: built.mutation_type,
        OperationType.SUBSCRIPTION: built.subscription_type,
    }
    for kind, root in roots.items():
        for name, field in root.fields.items() if root else ():
            field.description = " ".join(filter(None, [field.description, roles_sentence(kind, name)]))


@functools.cache
def build_schema(fast_paths: bool = True) -> EdgeSchema:
    """The schema, built once per value of `fast_paths` (`Settings.fast_paths`). With the fast paths,
    documents' parses and verdicts are cached (api/graphql/edge/documents.py), `execute` calls the
    edge rules directly (api/graphql/edge/direct_execution.py) and a subscription event many
    subscribers send is rendered once per selection (api/graphql/renditions.py); without them, all
    three are strawberry's and graphql-core's own. The answers are the same."""
    schema = EdgeSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # A factory: a fresh extension per request (strawberry's rule), its caches at module level.
        extensions=[functools.partial(EdgeRules, fast_paths=fast_paths)],
        config=StrawberryConfig(scalar_map={datetime: DateTime}),
        execution_context_class=RenderOnce if fast_paths else None,
    )
    schema.direct_execution = fast_paths and answers_as_strawberry(schema)
    _document_roles(schema)
    # On the input classes' own definitions: for both values of `fast_paths`, which share them.
    install_input_builders(schema)
    return schema


# With the argument given as create_app gives it: the cache tells `build_schema()` from
# `build_schema(True)`, and a server built the same schema twice.
schema = build_schema(True)

"""From a request's document to the operation it runs, the same over HTTP and WebSocket: parsed,
measured against the limits of `api.graphql.edge.document_limits` and then validated, and chosen as
GraphQL's GetOperation says (several operations need an `operationName`).

With the fast paths (`Settings.fast_paths`), the parse and the verdict go through bounded caches
(`parse_cached`, `validate` with `cached`); without them every request is parsed and validated
again, with the same answers. The schema's `EdgeRules` extension calls these in turn."""

from __future__ import annotations

import functools
from collections import OrderedDict

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
)
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from api.graphql.edge.document_limits import too_costly
from api.graphql.edge.errors import ClientErrorCode, client_error

# The longest document text (in characters) the caches keep: more than clients' documents hold
# (GraphiQL's introspection query is about 2,000), so that they are parsed and validated once; a
# longer one is parsed and validated for its own request only, as each entry keeps its text and tree
# (some 8 bytes a character), and a thousand entries of up to a megabyte (the body limit) each
# would hold gigabytes.
CACHED_CHARACTERS = 8192
# How many documents, and how many verdicts, the caches keep.
_MOST_ENTRIES = 1024


def _cached(query: str | None) -> bool:
    return query is not None and len(query) <= CACHED_CHARACTERS


# Shared by every request: a bounded cache of parsed documents, least recently used first out.
cached_parse = functools.lru_cache(maxsize=_MOST_ENTRIES)(parse)


def parse_cached(context: ExecutionContext) -> None:
    """Gives `context` its document from `cached_parse` when its text is at most CACHED_CHARACTERS
    long; strawberry parses a longer one for its request alone. A document that does not parse is
    left to strawberry's own parse too, which reports the syntax error as the request's error (raised
    from here, inside an extension's hook, a subscription could not catch it: its stream would end
    with `complete` alone, as if it had succeeded). So a short failing document is parsed twice."""
    if not _cached(context.query):
        return
    try:
        context.graphql_document = cached_parse(context.query, **context.parse_options)
    except GraphQLError:
        context.graphql_document = None


def verdict(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    """The errors of `document`: its refusal, or else what the validation rules (and strawberry's
    own, which `validate_document` adds) find. The rules run only on a document whose cost is bounded
    (`api.graphql.edge.document_limits`)."""
    refusal = too_costly(document)
    return [refusal] if refusal else validate_document(schema, document, rules)


# (schema, id of the document, validation rules) -> (the document, its validation errors)
_VERDICTS: OrderedDict[
    tuple[GraphQLSchema, int, tuple[type[ASTValidationRule], ...]], tuple[DocumentNode, list[GraphQLError]]
] = OrderedDict()


def validate(context: ExecutionContext, *, cached: bool) -> None:
    """Sets `context`'s validation errors to its document's `verdict`, in place of strawberry's
    validation, which would run the rules on a document of any cost. With `cached`, the verdict of a
    document of at most CACHED_CHARACTERS is kept, keyed on the document's identity, where
    strawberry's ValidationCache keys on its value: a document hashes by walking its whole tree (some
    14 µs for placeOrder's) on every request, while `cached_parse` hands out the same document for
    the same text. An entry holds its document, so the identity cannot pass to another while the entry
    lasts. Bounded, least recently used first out."""
    document, schema, rules = context.graphql_document, context.schema._schema, context.validation_rules
    assert document is not None, "strawberry validates only a parsed document"
    if not (cached and _cached(context.query)):
        context.pre_execution_errors = verdict(schema, document, rules)
        return
    key = (schema, id(document), rules)
    if (entry := _VERDICTS.get(key)) is not None:
        _VERDICTS.move_to_end(key)
    else:
        entry = _VERDICTS[key] = (document, verdict(schema, document, rules))
        if len(_VERDICTS) > _MOST_ENTRIES:
            _VERDICTS.popitem(last=False)
    context.pre_execution_errors = entry[1]


def require_operation_name(context: ExecutionContext) -> None:
    """A document with several operations and no `operationName` is a request error (GraphQL spec,
    GetOperation), not "run the first one" as strawberry does; code BAD_REQUEST. A correction, not a
    shortcut: on with or without the fast paths.

    Called after `validate`: it acts on its clean verdict (an empty list of errors)."""
    document = context.graphql_document
    # strawberry fills `operation_name` with the first operation's name when none was given, so
    # only the name the client provided tells whether it chose.
    provided = context._provided_operation_name  # noqa: SLF001
    if document is not None and provided is None and context.pre_execution_errors == []:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) > 1:
            context.pre_execution_errors = [
                client_error(
                    "Must provide operationName if the document contains several operations.",
                    ClientErrorCode.BAD_REQUEST,
                )
            ]

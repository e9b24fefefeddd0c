"""From a request's document to the operation it runs, the same over HTTP and WebSocket: parsed,
measured against the limits of `api.graphql.document_limits` and then validated, and chosen as
GraphQL's GetOperation says (several operations need an `operationName`).

With the fast paths (`Settings.fast_paths`), the parse and the verdict go through bounded caches
(`CachedParse`, `CachedValidation`); without them every request is parsed and validated again
(`BoundedValidation`), with the same answers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, OperationDefinitionNode
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.schema import validate_document

from api.graphql.document_limits import too_costly
from api.graphql.errors import ClientErrorCode, client_error

# The longest document text (in characters) the caches keep: more than clients' documents hold
# (GraphiQL's introspection query is about 2,000), so that they are parsed and validated once; a
# longer one is parsed and validated for its own request only, as each entry keeps its text and tree
# (some 8 bytes a character), and a thousand entries of up to a megabyte (the body limit) each
# would hold gigabytes.
CACHED_CHARACTERS = 8192


def _cached(query: str | None) -> bool:
    return query is not None and len(query) <= CACHED_CHARACTERS


class CachedParse(ParserCache):
    """strawberry's ParserCache for documents of up to CACHED_CHARACTERS, except that a document that
    does not parse is left to strawberry's own parse, which reports the syntax error as the request's
    error. The cache's parse raises it from inside the extension hook instead, where a subscription
    cannot catch it: its stream ends with `complete` alone, as if it had succeeded. So a failing
    document is parsed twice, only when it is short; a longer document is left to strawberry's parse,
    once."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if not _cached(context.query):
            yield
            return
        try:
            context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
        except GraphQLError:
            context.graphql_document = None
        yield


def verdict(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    """The errors of `document`: its refusal, or else what the validation rules (and strawberry's
    own, which `validate_document` adds) find. The rules run only on a document whose cost is bounded
    (`api.graphql.document_limits`)."""
    refusal = too_costly(document)
    return [refusal] if refusal else validate_document(schema, document, rules)


class BoundedValidation(SchemaExtension):
    """Validation of every request's document, after its cost is measured: in place of strawberry's,
    which would run the rules on a document of any cost."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None, "strawberry validates only a parsed document"
        context.pre_execution_errors = verdict(
            context.schema._schema, context.graphql_document, context.validation_rules
        )
        yield


# (schema, id of the document, validation rules) -> (the document, its validation errors)
_VERDICTS: OrderedDict[
    tuple[GraphQLSchema, int, tuple[type[ASTValidationRule], ...]], tuple[DocumentNode, list[GraphQLError]]
] = OrderedDict()


class CachedValidation(SchemaExtension):
    """strawberry's ValidationCache, keyed on the document's identity instead of its value: a
    document hashes by walking its whole tree (some 14 µs for placeOrder's) on every request, while
    `CachedParse` hands out the same document for the same text. An entry holds its document, so
    the identity cannot pass to another while the entry lasts. Bounded, least recently used first out;
    a document too long for `CachedParse` is validated for its request alone."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document, schema, rules = context.graphql_document, context.schema._schema, context.validation_rules
        assert document is not None, "strawberry validates only a parsed document"
        if not _cached(context.query):
            context.pre_execution_errors = verdict(schema, document, rules)
            yield
            return
        key = (schema, id(document), rules)
        if (entry := _VERDICTS.get(key)) is not None:
            _VERDICTS.move_to_end(key)
        else:
            entry = _VERDICTS[key] = (document, verdict(schema, document, rules))
            if len(_VERDICTS) > self.maxsize:
                _VERDICTS.popitem(last=False)
        context.pre_execution_errors = entry[1]
        yield


class OperationNameRequired(SchemaExtension):
    """A document with several operations and no `operationName` is a request error (GraphQL spec,
    GetOperation), not "run the first one" as strawberry does; code BAD_REQUEST. A correction, not a
    shortcut: on with or without the fast paths.

    Placed after the validation in the schema's extensions, it acts on its clean verdict
    (an empty list of errors), before strawberry reads it: an error added after validation would be
    too late, and one added before it would stop validation from running."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
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
        yield

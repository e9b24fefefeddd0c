"""GraphQL over HTTP as the GraphQL-over-HTTP specification draft says, on top of strawberry's view.

- The answer's media type follows `Accept`: `application/graphql-response+json` when the client
  accepts it at least as much as `application/json`; `application/json` otherwise (also with no
  `Accept` or only wildcards, the spec's rule for clients that predate the new type).
- With `application/graphql-response+json`, a request that fails before execution (parse,
  validation, the choice of operation, variable coercion) answers 400 with `errors` and no `data`;
  with `application/json` it answers 200 with `data: null`, as before.
- A request that is not GraphQL over HTTP (a body that is not UTF-8, not JSON (nested too deeply
  for the decoder included), or JSON but not an object; a wrong content type) answers 400, a method
  other than GET and POST (or a mutation sent with GET) 405, both with a GraphQL-shaped body,
  `{"errors": [{"message", "extensions": {"code": "BAD_REQUEST"}}]}`, never 500.
- A client that leaves before its body is complete is logged in one line at INFO, and not answered.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult

from api.graphql.edge.document_limits import too_long
from api.graphql.edge.errors import ClientErrorCode, client_error
from api.web.graphql_ws import StrictTransportWS

log = logging.getLogger("ordersaga.api")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"


# Read twice a request, and a client sends the same header every time. Bounded: the header is the
# client's to choose.
@functools.lru_cache(maxsize=256)
def response_media_type(accept: str | None) -> str:
    """`GRAPHQL_RESPONSE_JSON` or `JSON`, whichever `accept` (an HTTP Accept header) prefers; a tie
    goes to the GraphQL type, and `JSON` when neither is named (RFC 9110 quality values)."""
    quality: dict[str, float] = {}
    for item in (accept or "").split(","):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media_type.lower()] = max(q, quality.get(media_type.lower(), 0.0))
    graphql = quality.get(GRAPHQL_RESPONSE_JSON, 0.0)
    return GRAPHQL_RESPONSE_JSON if graphql > 0 and graphql >= quality.get(JSON, 0.0) else JSON


def failed_before_execution(result: ExecutionResult) -> bool:
    """Whether `result` is a request error: no data, and no error with a path (every error raised
    while executing a field has one), so execution never began."""
    return result.data is None and bool(result.errors) and all(e.path is None for e in result.errors or ())


def request_error_response(
    message: str,
    status_code: int,
    code: ClientErrorCode = ClientErrorCode.BAD_REQUEST,
    media_type: str = JSON,
    **extensions: Any,
) -> Response:
    """A GraphQL-shaped answer to a request that is not a well-formed GraphQL request, for
    example `{"errors": [{"message": "...", "extensions": {"code": "BAD_REQUEST"}}]}`."""
    return Response(request_error_body(message, code, **extensions), status_code, media_type=media_type)


def request_error_body(message: str, code: ClientErrorCode, **extensions: Any) -> str:
    """The JSON of `request_error_response`, also written by the HTTP protocol itself
    (api/web/http_server.py) for what never reaches the application."""
    return json.dumps({"errors": [client_error(message, code, **extensions).formatted]})


class GraphQLOverHTTP(GraphQL[dict[str, Any], None]):
    """strawberry's ASGI view, answering as the GraphQL-over-HTTP draft says and speaking
    graphql-transport-ws strictly (`api.web.graphql_ws`)."""

    graphql_transport_ws_handler_class = StrictTransportWS
    # Whether a POST is answered by `run_post` (a fast path: `Settings.fast_paths` decides, in
    # api/web/app.py) rather than strawberry's `run`, which answers everything else.
    post_fast_path = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            if request.method == "POST" and self.post_fast_path:
                response = await self.run_post(request)
            else:
                response = await self.run(request)
        except ClientDisconnect:
            # The client closed the connection before its body was complete: nobody is left to
            # answer, and nothing went wrong here.
            log.info("client left before its request body was complete: %s %s", request.method, scope["path"])
            return
        except HTTPException as refused:
            media_type = response_media_type(request.headers.get("accept"))
            response = request_error_response(refused.reason, refused.status_code, media_type=media_type)
            if refused.status_code == 405:
                response.headers["allow"] = "GET, POST"
        await response(scope, receive, send)

    async def run_post(self, request: Request) -> Response:
        """strawberry's `run` for a POST, without its branches for what this view never answers a
        POST with: a batch (batching is off, so parsing refuses one), an HTTP stream (no stream
        transport: the view's protocols are WebSocket ones), incremental delivery (off in the
        schema's config), a multipart upload (off) and GraphiQL (a GET). `run` tells those apart by
        checking every result against a runtime Protocol (`SubscriptionExecutionResult`): about
        30 µs of a trivial query's 370 of server CPU (docs/performance.md, lever 24). The hooks
        `run` calls for such a POST are called here in its order, but for `execute_operation`,
        which only chooses between those branches and `execute_single`.
        tests/api/test_graphql_over_http.py holds both to the same answers, and to those premises.

        Raises HTTPException (400) for a request that is not GraphQL over HTTP, as `run` does."""
        root_value = await self.get_root_value(request)  # type: ignore[func-returns-value]  # None here
        adapter = self.request_adapter_class(request)
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        request_data = await self.parse_http_body(adapter)
        assert isinstance(request_data, GraphQLRequestData)  # batching is off: parsing refuses a list
        result = await self.execute_single(
            request=request,
            request_adapter=adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )
        response_data = await self.process_result(request, result)
        if result.errors:
            self._handle_errors(result.errors, response_data)
        return self.create_response(response_data, sub_response)

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as refused:
            # A mutation sent with GET: the draft says 405, strawberry says 400.
            if isinstance(refused.__cause__, InvalidOperationTypeError):
                raise HTTPException(405, refused.reason) from refused.__cause__
            raise

    def encode_json(self, data: object) -> str:
        # orjson writes an answer in a fraction of the standard library's time (about 20 µs of a
        # trivial query's 370 of server CPU; docs/performance.md, lever 25). The same values, spelt
        # a little differently: characters past ASCII as UTF-8 rather than `\u` escapes, a float as
        # its shortest decimal (0.00001, not 1e-05). What orjson refuses and json writes (a lone
        # surrogate, which a WebSocket operation's id may hold; an integer past 64 bits) is written
        # by json. Text, not bytes: strawberry sends bytes over a WebSocket as a binary frame, which
        # graphql-transport-ws does not allow.
        try:
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:
            encoded = super().encode_json(data)
            assert isinstance(encoded, str)
            return encoded

    def decode_json(self, data: str | bytes) -> object:
        # JSON Python's decoder cannot read is refused as malformed JSON is (400 on HTTP, 4400 on
        # WebSocket): nested past its recursion limit (it recurses per level), or holding an integer
        # of more digits than Python reads (4,300: sys.get_int_max_str_digits).
        try:
            return super().decode_json(data)
        except json.JSONDecodeError:
            raise
        except RecursionError as error:
            raise json.JSONDecodeError("nested too deeply", "", 0) from error
        except ValueError as error:
            raise json.JSONDecodeError("a number with too many digits", "", 0) from error

    async def parse_http_body(self, request: Any) -> Any:
        parsed = await super().parse_http_body(request)
        query = getattr(parsed, "query", None)
        if isinstance(query, str) and (refusal := too_long(query)) is not None:
            raise HTTPException(400, refusal)
        return parsed

    def parse_json(self, data: str | bytes) -> Any:
        # JSON bodies are UTF-8 (RFC 8259); json.loads would guess UTF-16 or UTF-32 from the bytes, or
        # fail with an error strawberry does not expect.
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise HTTPException(400, "The request body is not UTF-8.") from error
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):  # a list is a batch, which strawberry refuses itself
            raise HTTPException(400, f"Expected a JSON object, got {json.dumps(parsed)[:40]}.")
        return parsed

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if failed_before_execution(result) and response_media_type(request.headers.get("accept")) == (
            GRAPHQL_RESPONSE_JSON
        ):
            del response["data"]
        return response

    async def get_sub_response(self, request: Request | Any) -> Response:
        response = await super().get_sub_response(request)
        response.media_type = response_media_type(request.headers.get("accept"))
        return response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = sub_response.media_type or JSON
        response.headers["content-type"] = f"{media_type}; charset=utf-8"
        failed = isinstance(response_data, dict) and "data" not in response_data
        if media_type == GRAPHQL_RESPONSE_JSON and failed and not sub_response.status_code:
            response.status_code = 400
        return response

"""The ASGI application: GraphQL (HTTP and WebSocket) with GraphiQL at /graphql, the operator console at
/dashboard, the vendored browser libraries at /vendor, /healthz (alive), /readyz (ready for traffic)
and /metrics (Prometheus, for staff).

Who calls is settled here, once per request or WebSocket, from its bearer token (`api/access/auth.py`), and
put in the context as `identity`, which `api/access/guard.py` holds against `api/access/rules.py`; a
WebSocket's also gets `valid_until`, when its token runs out and the socket ends
(`api/web/ws_session.py`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from api.access.auth import KeysUnavailable, NotAuthenticated, Principal, bearer_of
from api.access.rules import METRICS_READERS
from api.graphql.loaders import Loaders
from api.graphql.schema import build_schema
from api.service import Service
from api.web.graphql_http import GraphQLOverHTTP
from api.web.request_limits import BodyLimits
from api.web.ws_session import SessionTransportWS

DASHBOARD = Path(__file__).parent / "dashboard"
VENDOR = Path(__file__).parent / "vendor"
# Strawberry's own GraphiQL page loads React and GraphiQL from a CDN; this one loads them from /vendor.
GRAPHIQL = (Path(__file__).parent / "graphiql.html").read_text()

log = logging.getLogger("ordersaga.api")


class _GraphQL(GraphQLOverHTTP):
    graphql_transport_ws_handler_class = SessionTransportWS

    def __init__(self, svc: Service) -> None:
        # Only graphql-transport-ws, the protocol current clients speak (GraphiQL, the graphql-ws
        # library, the dashboard); the older protocol named graphql-ws, of the unmaintained
        # subscriptions-transport-ws, is refused.
        super().__init__(
            build_schema(svc.settings.fast_paths),
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=svc.settings.connection_init_timeout,
        )
        self._service = svc
        self.post_fast_path = svc.settings.fast_paths

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(GRAPHIQL)

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> dict[str, Any]:
        # A WebSocket's context lasts as long as its connection, so its loaders batch but never cache:
        # a subscription must not see the rows of its first event again.
        loaders = Loaders(self._service.read, cache=isinstance(request, Request))
        # A WebSocket says who it is in connection_init (`on_ws_connect`), before any operation.
        authorization = request.headers.get("authorization") if isinstance(request, Request) else None
        identity = await self._authenticate(authorization)
        return {
            "service": self._service,
            "request": request,
            "response": response,
            "loaders": loaders,
            "identity": identity,
        }

    async def on_ws_connect(self, context: dict[str, Any]) -> UnsetType:
        """Closes the socket with 4403 when connection_init carries a token that is not valid; without
        one, its operations answer UNAUTHENTICATED (unless in development mode), and SERVICE_UNAVAILABLE
        while the token cannot be checked. A valid token's end is the socket's (`valid_until`)."""
        params = context.get("connection_params")
        authorization = bearer_of(params) if isinstance(params, dict) else None
        try:
            credential = await self._service.authenticator.verify(authorization)
        except NotAuthenticated as refusal:
            context["identity"] = refusal
            # A token that cannot be checked for now is no reason to reject: its operations say to retry.
            if authorization is not None and not isinstance(refusal, KeysUnavailable):
                raise ConnectionRejectionError() from refusal
            return UNSET
        context["identity"], context["valid_until"] = credential.principal, credential.valid_until
        return UNSET

    async def _authenticate(self, authorization: str | None) -> Principal | NotAuthenticated:
        try:
            return await self._service.authenticator.authenticate(authorization)
        except NotAuthenticated as refusal:
            return refusal


async def _relays(svc: Service) -> list[dict[str, object]]:
    """Each outbound relay's name and state (`current`, `behind`, `standby`, `starting`) and, while
    behind, how many events wait for it."""
    shown = []
    for relay in await svc.relays():
        entry: dict[str, object] = {"name": relay.name, "state": relay.state.value}
        if relay.waiting is not None:
            entry["waiting"] = relay.waiting
        shown.append(entry)
    return shown


def create_app(svc: Service) -> Starlette:
    graphql = _GraphQL(svc)

    async def healthz(_: Request) -> Response:
        if not svc.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "runningSagas": svc.orchestrator.running})

    async def readyz(_: Request) -> Response:
        if await svc.is_ready():
            # Relays behind are a detail, not unreadiness: the process serves, and events wait.
            try:
                relays = await _relays(svc)
            except Exception:  # the database went away since is_ready asked it
                log.warning("not ready: the relays' state could not be read", exc_info=True)
                return JSONResponse({"status": "unavailable", "restarting": []}, status_code=503)
            return JSONResponse({"status": "ready", **({"relays": relays} if relays else {})})
        # Which background tasks wait to be restarted (their reasons are in the log, not here).
        restarting = sorted(svc.background.down)
        return JSONResponse({"status": "unavailable", "restarting": restarting}, status_code=503)

    async def metrics(request: Request) -> Response:
        try:
            caller = await svc.authenticator.authenticate(request.headers.get("authorization"))
        except KeysUnavailable as refusal:
            return JSONResponse({"error": str(refusal)}, status_code=503)
        except NotAuthenticated as refusal:
            return JSONResponse(
                {"error": str(refusal)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if not caller.roles & METRICS_READERS:
            return JSONResponse({"error": "metrics are for operators and admins"}, status_code=403)
        return Response(svc.prometheus.render(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    return Starlette(
        routes=[
            # Every method reaches the view, which answers the ones GraphQL over HTTP lacks (405)
            # in the GraphQL shape too.
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True)),
            # GraphiQL's bundle is some megabytes of text: compressed, a fraction goes over the wire.
            Mount("/vendor", GZipMiddleware(StaticFiles(directory=VENDOR))),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(
                BodyLimits,
                max_bytes=svc.settings.max_body_bytes,
                timeout_seconds=svc.settings.body_timeout,
            )
        ],
    )

"""The ASGI application: GraphQL (HTTP and WebSocket) with GraphiQL at /graphql, the live dashboard at
/dashboard, /healthz (alive), /readyz (ready for traffic) and /metrics (Prometheus)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.loaders import Loaders
from api.schema import schema
from api.service import Service

DASHBOARD = Path(__file__).parent / "dashboard"


class _GraphQL(GraphQL[dict[str, Any], None]):
    def __init__(self, svc: Service) -> None:
        # Only graphql-transport-ws, the protocol current clients speak (GraphiQL, the graphql-ws
        # library, the dashboard); the older protocol named graphql-ws, of the unmaintained
        # subscriptions-transport-ws, is refused.
        super().__init__(
            schema,
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=svc.settings.connection_init_timeout,
        )
        self._service = svc

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> dict[str, Any]:
        # A WebSocket's context lasts as long as its connection, so its loaders batch but never cache:
        # a subscription must not see the rows of its first event again.
        loaders = Loaders(self._service.read, cache=isinstance(request, Request))
        return {"service": self._service, "request": request, "response": response, "loaders": loaders}


def create_app(svc: Service) -> Starlette:
    graphql = _GraphQL(svc)

    async def healthz(_: Request) -> Response:
        if not svc.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "runningSagas": svc.orchestrator.running})

    async def readyz(_: Request) -> Response:
        if await svc.is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    async def metrics(_: Request) -> Response:
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
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True)),
        ],
        lifespan=lifespan,
    )

"""The A2A app: the SDK's route factories (agent card, JSON-RPC, HTTP+JSON; v1.0 with v0.3 compatibility) over our
request handler, behind our access checks. `project.asgi` mounts it beside Django (setting A2A_ASGI_APP)."""

from __future__ import annotations

from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from starlette.applications import Starlette
from starlette.requests import Request

from a2a_server.access import CALLER, TRACE_ID, Access
from a2a_server.card import JSONRPC_PATH, REST_PATH, agent_card
from a2a_server.handler import RunRequestHandler

#: Paths this app serves (project.asgi routes them here).
PREFIXES = ("/a2a/", AGENT_CARD_WELL_KNOWN_PATH)


class CallContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's context (headers, requested extensions) plus the customer `Access` admitted and the request's trace
    id (from its traceparent, else X-Request-ID, else new; answered as X-Trace-Id)."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["caller"] = request.scope.get(CALLER)
        context.state["trace_id"] = request.scope.get(TRACE_ID, "")
        return context


def a2a_app() -> Any:
    handler = RunRequestHandler()
    builder = CallContextBuilder()
    routes = [
        *create_agent_card_routes(agent_card(), cache_control="public, max-age=300"),
        *create_jsonrpc_routes(handler, JSONRPC_PATH, context_builder=builder, enable_v0_3_compat=True),
        *create_rest_routes(handler, context_builder=builder, enable_v0_3_compat=True, path_prefix=REST_PATH),
    ]
    return Access(Starlette(routes=routes), open_paths=(AGENT_CARD_WELL_KNOWN_PATH,))


application = a2a_app()

"""Who may call the A2A endpoints, and how often: the REST API's tokens, throttles and counters, before any A2A
request reaches the SDK's dispatchers.

A pure ASGI middleware around the A2A app. The public agent card is open (it is discovery); everything else needs a
customer's API token (`Authorization: Bearer <token>` or `Token <token>`): 401 without one. The per-IP throttle
counts first (before the token is looked up: a flood of bad tokens costs no query), the per-customer one after —
the same Redis counters the REST API counts in (`api.throttles`), so a caller cannot double its rate by switching
interfaces. Posting a message is counted in the message throttle by the handler (it alone knows the method).
Throttled: 429 with Retry-After. These answers are HTTP statuses, as A2A leaves authentication and rate limits to
the transport.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from starlette.exceptions import HTTPException

from api.authentication import tokens_with_customer
from api.throttles import MessagePostThrottle, PerCustomerThrottle, PerIPThrottle, SettingsRateThrottle
from conversations.models import Customer
from conversations.selectors import customer_for_user

#: The key under which the middleware leaves the caller in the ASGI scope for the context builder.
CALLER = "switchboard.caller"


@dataclass(frozen=True)
class ThrottleRequest:
    """What DRF's throttles read of a request (`META` and `headers` for the client's address, `user`, `method`), built
    from an ASGI scope, so that A2A requests count in the REST API's own counters."""

    META: dict[str, str]
    """REMOTE_ADDR, as Django would set it."""
    headers: dict[str, str]
    """X-Forwarded-For, if sent (DRF reads it per its NUM_PROXIES setting)."""
    user: Any
    """The authenticated user, or None before authentication."""
    method: str = "POST"
    """POST: counted by the message throttle."""


def throttle_request(scope: dict[str, Any], user: Any = None) -> ThrottleRequest:
    headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in scope.get("headers", []) if n == b"x-forwarded-for"}
    return ThrottleRequest(META={"REMOTE_ADDR": (scope.get("client") or ("", 0))[0]}, headers=headers, user=user)


def throttled(throttle: SettingsRateThrottle, request: ThrottleRequest) -> HTTPException | None:
    """The 429 for a throttle that refuses `request`, or None (synchronous: one Redis round trip)."""
    if throttle.allow_request(request, None):
        return None
    wait = max(1, math.ceil(throttle.wait()))
    return HTTPException(
        429, f"Request was throttled. Expected available in {wait} seconds.", headers={"Retry-After": str(wait)}
    )


def caller_authenticate(authorization: str) -> Customer | None:
    """The customer an Authorization header's token belongs to, or None (synchronous: one query)."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not key.strip():
        return None
    token = tokens_with_customer().filter(key=key.strip()).first()
    if token is None or not token.user.is_active:
        return None
    return customer_for_user(token.user)


def caller_admit(scope: dict[str, Any]) -> Customer | HTTPException:
    """The per-IP throttle, the token, then the per-customer throttle (synchronous; run in a thread)."""
    refused = throttled(PerIPThrottle(), throttle_request(scope))
    if refused is not None:
        return refused
    authorization = next((v.decode("latin-1") for n, v in scope.get("headers", []) if n == b"authorization"), "")
    customer = caller_authenticate(authorization)
    if customer is None:
        return HTTPException(
            401,
            "A customer's API token is required: Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return throttled(PerCustomerThrottle(), throttle_request(scope, customer.user)) or customer


def message_throttle_check(customer: Customer, scope: dict[str, Any]) -> None:
    """Count a posted message in the REST API's message throttle (THROTTLE_MESSAGE_RATE); raises the 429."""
    refused = throttled(MessagePostThrottle(), throttle_request(scope, customer.user))
    if refused is not None:
        raise refused


class Access:
    """ASGI middleware: admit the caller (or answer 401/429 in the JSON error shape of the REST API)."""

    def __init__(self, app: Any, *, open_paths: tuple[str, ...]) -> None:
        self.app = app
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        admitted = await sync_to_async(caller_admit, thread_sensitive=False)(scope)
        if isinstance(admitted, HTTPException):
            return await error_send(send, admitted)
        scope[CALLER] = admitted
        return await self.app(scope, receive, send)


async def error_send(send: Any, error: HTTPException) -> None:
    code = {401: "not_authenticated", 429: "throttled"}.get(error.status_code, "error")
    body = json.dumps({"error": {"code": code, "message": error.detail}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

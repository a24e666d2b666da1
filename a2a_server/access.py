"""Who may call the A2A endpoints, and how often: the REST API's tokens, throttles and counters, before any A2A
request reaches the SDK's dispatchers.

A pure ASGI middleware around the A2A app. The public agent card is open (it is discovery); everything else needs a
customer's API token (`Authorization: Bearer <token>` or `Token <token>`): 401 without one. The per-IP throttle
counts first (before the token is looked up: a flood of bad tokens costs no query), the per-customer one after —
the same Redis counters the REST API counts in (`api.throttles`), so a caller cannot double its rate by switching
interfaces; a request that posts a message (known from the HTTP+JSON path or the JSON-RPC method) also counts in the
message throttle, and one that opens a stream in the stream limits (`api.streams`). Throttled: 429 with Retry-After,
on every binding alike. These answers are HTTP statuses, as A2A leaves authentication and rate limits to
the transport.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from starlette.exceptions import HTTPException

from api.authentication import tokens_with_customer
from api.events import db_connections_release
from api.streams import Refused, Slot, stream_opening_count, stream_release, stream_slot_take
from api.throttles import MessagePostThrottle, PerCustomerThrottle, PerIPThrottle, SettingsRateThrottle
from conversations.models import Customer
from conversations.selectors import customer_for_user
from project.middleware import trace_id_from_headers

#: The keys under which the middleware leaves the caller and the trace id in the ASGI scope for the context builder.
CALLER = "switchboard.caller"
TRACE_ID = "switchboard.trace_id"
T = TypeVar("T")


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


#: JSON-RPC methods (v1.0 and v0.3) that post a message, and those that open a stream.
POSTING_METHODS = frozenset({"SendMessage", "SendStreamingMessage", "message/send", "message/stream"})
STREAMING_METHODS = frozenset({"SendStreamingMessage", "SubscribeToTask", "message/stream", "tasks/resubscribe"})


@dataclass(frozen=True)
class RequestKind:
    """What a request does, as far as the limits care."""

    posts: bool
    """It posts a customer message (the message throttle counts it)."""
    streams: bool
    """It opens a stream (counted in the stream openings, and holds a stream slot while open)."""


def request_kind(path: str, body: bytes) -> RequestKind:
    """From the HTTP+JSON path, or the JSON-RPC body's method (a body that is not JSON-RPC: neither; the SDK answers
    it with its error)."""
    if path.endswith(("/message:send", "/message:stream", ":subscribe")):
        return RequestKind(posts=not path.endswith(":subscribe"), streams=not path.endswith("/message:send"))
    try:
        method = json.loads(body).get("method") if body else None
    except (ValueError, AttributeError):
        method = None
    return RequestKind(posts=method in POSTING_METHODS, streams=method in STREAMING_METHODS)


def limits_take(customer: Customer, scope: dict[str, Any], kind: RequestKind) -> Slot | HTTPException | None:
    """The message throttle and the stream limits of the REST API for this request: the stream slot it holds (None
    when it opens no stream), or the 429 (synchronous: Redis)."""
    if kind.posts:
        refused = throttled(MessagePostThrottle(), throttle_request(scope, customer.user))
        if refused is not None:
            return refused
    if not kind.streams:
        return None
    opened = stream_opening_count(customer_id=customer.pk)
    slot = opened if opened is not None else stream_slot_take(customer_id=customer.pk)
    if isinstance(slot, Refused):
        return HTTPException(slot.status, slot.message, headers={"Retry-After": str(slot.retry_after)})
    return slot


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous function (database, Redis) in a thread, then give that thread's database connections back:
    a thread of the pool keeps none between requests."""

    def call() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            db_connections_release()

    return await sync_to_async(call, thread_sensitive=False)()


async def body_read(receive: Any) -> tuple[bytes, Any]:
    """The whole request body (already bounded by project.request_limits), and a `receive` that replays it."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", receive
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


class Access:
    """ASGI middleware in front of the SDK's routes: the request's trace id (answered as X-Trace-Id), the caller
    (401), the throttles and stream limits (429) — answered in the REST API's JSON error shape before the SDK runs,
    the same on every binding — and the stream slot, held until the response has been sent."""

    def __init__(self, app: Any, *, open_paths: tuple[str, ...]) -> None:
        self.app = app
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}
        trace_id = trace_id_from_headers(headers.get("traceparent"), headers.get("x-request-id"))
        scope[TRACE_ID] = trace_id
        send = with_trace_id(send, trace_id)
        if scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        admitted = await in_thread(caller_admit, scope)
        if isinstance(admitted, HTTPException):
            return await error_send(send, admitted)
        body, receive = await body_read(receive)
        slot = await in_thread(limits_take, admitted, scope, request_kind(scope["path"], body))
        if isinstance(slot, HTTPException):
            return await error_send(send, slot)
        scope[CALLER] = admitted
        try:
            return await self.app(scope, receive, send)
        finally:
            if slot is not None:
                await in_thread(stream_release, slot)


def with_trace_id(send: Any, trace_id: str) -> Any:
    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"x-trace-id", trace_id.encode())]}
        await send(message)

    return sending


async def error_send(send: Any, error: HTTPException) -> None:
    code = {401: "not_authenticated", 429: "throttled"}.get(error.status_code, "error")
    body = json.dumps({"error": {"code": code, "message": error.detail}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

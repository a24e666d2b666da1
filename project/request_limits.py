"""Limits every HTTP request meets at the ASGI layer, before Django or a WSGI thread sees it.

uvicorn hands the application a request once its head is parsed; its body arrives in pieces, as
fast as the client sends it. Left to Django, a body is read by the view's thread (a2wsgi's pool:
WEB_THREADS per process) or, on the ASGI path, spooled to a temporary file to its end — so a client
trickling a body holds a thread for as long as it likes, and a 30 MiB body is read whole before any
limit applies. Here every request is refused or read first, asynchronously, holding no thread:

- a head with more than REQUEST_MAX_HEADERS headers or REQUEST_MAX_HEADER_BYTES bytes: 431;
- a body declared (Content-Length) or found (chunked, counted as it arrives) larger than
  REQUEST_MAX_BYTES: 413, as soon as that is known, without reading the rest;
- a body not complete within REQUEST_BODY_TIMEOUT_SECONDS: 408.

A refused request's connection is closed. A request that passes goes on with its body in memory
(at most REQUEST_MAX_BYTES) and a Content-Length header, so a chunked body reaches Django whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, assert_never

from django.conf import settings

from project.middleware import trace_id_from_headers
from project.responses import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Refusal:
    """A request answered here, never passed on."""

    status: int
    """The HTTP status: 400, 408, 413 or 431."""
    code: str
    """The error code of the JSON error body."""
    message: str
    """What the client did wrong, for the error body."""


@dataclass(frozen=True)
class Body:
    """A request body read to its end, within the limits."""

    data: bytes
    """The whole body (empty for most GETs)."""


@dataclass(frozen=True)
class Gone:
    """The client disconnected before its body was complete: nothing to answer."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    return next((value for key, value in scope["headers"] if key == name), None)


def head_refusal(scope: Scope) -> Refusal | None:
    """A 431 for a request head over the header limits, else None."""
    headers = scope["headers"]
    if len(headers) > settings.REQUEST_MAX_HEADERS:
        return Refusal(
            431,
            "headers_too_large",
            f"The request has {len(headers)} headers; the limit is {settings.REQUEST_MAX_HEADERS}.",
        )
    size = sum(len(key) + len(value) for key, value in headers)
    if size > settings.REQUEST_MAX_HEADER_BYTES:
        return Refusal(
            431,
            "headers_too_large",
            f"The request's headers are {size} bytes; the limit is {settings.REQUEST_MAX_HEADER_BYTES}.",
        )
    return None


async def body_read(scope: Scope, receive: Receive) -> Body | Refusal | Gone:
    """The request's body, read within REQUEST_MAX_BYTES and REQUEST_BODY_TIMEOUT_SECONDS."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    declared = header(scope, b"content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return Refusal(400, "bad_request", "The Content-Length header is not a number.")
        if int(declared) > limit:
            return Refusal(
                413, "request_too_large", f"The request body is {int(declared)} bytes; the limit is {limit}."
            )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.REQUEST_BODY_TIMEOUT_SECONDS):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return Gone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return Refusal(413, "request_too_large", f"The request body is over the limit of {limit} bytes.")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return Body(b"".join(chunks))
    except TimeoutError:
        timeout = settings.REQUEST_BODY_TIMEOUT_SECONDS
        return Refusal(408, "request_timeout", f"The request body did not arrive within {timeout:g} seconds.")


def body_replayed(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then waits on the client as before (disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def scope_with_length(scope: Scope, body: bytes) -> Scope:
    """`scope` with a Content-Length for the body read (no Transfer-Encoding): WSGI apps read by length."""
    if header(scope, b"transfer-encoding") is None and (body == b"" or header(scope, b"content-length")):
        return scope
    headers = [(key, value) for key, value in scope["headers"] if key not in (b"content-length", b"transfer-encoding")]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}


async def refusal_send(scope: Scope, send: Send, refusal: Refusal) -> None:
    """The refusal in the one error shape (JSON for the API and JSON clients, text otherwise); closes the
    connection (the rest of the body is never read)."""
    trace_id = trace_id_from_headers(
        (header(scope, b"traceparent") or b"").decode("latin-1") or None,
        (header(scope, b"x-request-id") or b"").decode("latin-1") or None,
    )
    wants_json = scope["path"].startswith("/api/") or b"application/json" in (header(scope, b"accept") or b"")
    if wants_json:
        content = json.dumps(error_body(SimpleNamespace(trace_id=trace_id), refusal.code, refusal.message)).encode()
        content_type = b"application/json"
    else:
        content = f"{refusal.status}: {refusal.message}".encode()
        content_type = b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(content)).encode()),
        (b"x-trace-id", trace_id.encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": content, "more_body": False})


def limited(app: ASGIApp) -> ASGIApp:
    """`app` behind the head and body limits (HTTP only; other scopes pass through)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        refused = head_refusal(scope)
        if refused is not None:
            return await refusal_send(scope, send, refused)
        read = await body_read(scope, receive)
        match read:
            case Gone():
                return None
            case Refusal():
                return await refusal_send(scope, send, read)
            case Body(data=data):
                return await app(scope_with_length(scope, data), body_replayed(data, receive), send)
            case _:
                assert_never(read)

    return guarded

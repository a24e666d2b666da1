"""GET /api/v1/runs/{id}/events/: live progress as Server-Sent Events.

Events (JSON data): `run` (status), `step` (an agent started, finished, failed or
is retrying), `review` (a person is checking / decided), `message` (a reply or
notice arrived), `end` (the run is over; the stream closes). Each event has an
id; a reconnecting client sends Last-Event-ID and gets only newer events. A
connection lasts at most SSE_MAX_SECONDS; clients then reconnect (EventSource
does) or poll GET /api/v1/runs/{id}/ instead.

An async view: under an ASGI server (uvicorn, as `make run` uses) a waiting
stream holds no thread. Same rules as the rest of the API: it authenticates with
the API's authenticators (token, then session) and finds the customer as the API
views do (`api.authentication`); a customer sees only their own runs (404 otherwise).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from api.authentication import customer_from_request
from orchestration.models import Run
from orchestration.selectors import run_events, run_get
from project.errors import NotFound
from project.responses import error_response

HEARTBEAT_SECONDS = 15.0


def request_authenticate(request: HttpRequest) -> Request | None:
    """`request` authenticated as the API views authenticate theirs (DRF's configured authenticators:
    token, then session), or None when it carries no valid credentials. Synchronous (it may query)."""
    api_request = Request(request, authenticators=[auth() for auth in APIView.authentication_classes])
    try:
        user = api_request.user
    except exceptions.AuthenticationFailed:
        return None
    return api_request if user.is_authenticated else None


async def run_events_view(request: HttpRequest, run_id: str) -> HttpResponseBase:
    if request.method != "GET":
        return error_response(request, 405, "method_not_allowed", f'Method "{request.method}" not allowed.')
    caller = await sync_to_async(request_authenticate)(request)
    if caller is None:
        return error_response(request, 401, "not_authenticated", "Authentication credentials were not provided.")
    customer = await sync_to_async(customer_from_request)(caller)
    if customer is None:
        return error_response(request, 403, "permission_denied", "This endpoint is for customers.")
    try:
        run = await sync_to_async(run_get)(customer=customer, run_id=run_id)
    except NotFound as exc:
        return error_response(request, 404, exc.code, exc.message)
    response = StreamingHttpResponse(
        event_stream(run, request.headers.get("Last-Event-ID", "")), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # no proxy buffering
    return response


def sse(kind: str, data: dict, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


#: An event id as `sse` writes it: epoch milliseconds (ASCII digits), "|", a name of printable ASCII.
EVENT_ID = re.compile(r"([0-9]{1,16})\|([!-~]{1,200})")


def parse_event_id(value: str) -> tuple[int, str] | None:
    """The order key of a Last-Event-ID, or None (the stream starts from the beginning) for anything
    that is not an id this stream wrote. Never raises."""
    match = EVENT_ID.fullmatch(value)
    return (int(match.group(1)), match.group(2)) if match else None


async def event_stream(run: Run, last_event_id: str) -> AsyncIterator[str]:
    deadline = time.monotonic() + settings.SSE_MAX_SECONDS
    after = parse_event_id(last_event_id)
    sent: set[tuple[int, str]] = set()
    last_write = time.monotonic()
    yield f"retry: 2000\n: run {run.id}; live for up to {settings.SSE_MAX_SECONDS:.0f}s\n\n"
    while True:
        events, status = await sync_to_async(run_events)(run.id)
        for key, kind, data in events:
            if key in sent or (after is not None and key <= after):
                continue
            sent.add(key)
            last_write = time.monotonic()
            yield sse(kind, data, f"{key[0]}|{key[1]}")
        if status in Run.TERMINAL:
            yield sse("end", {"status": status, "run": str(run.id)})
            return
        if time.monotonic() > deadline:
            yield ": connection lifetime reached; reconnect, or poll GET /api/v1/runs/{id}/\n\n"
            return
        if time.monotonic() - last_write > HEARTBEAT_SECONDS:
            last_write = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(settings.SSE_POLL_SECONDS)

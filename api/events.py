"""GET /api/v1/runs/{id}/events/: live progress as Server-Sent Events.

Events (JSON data): `run` (status), `step` (an agent started, finished, failed or
is retrying), `review` (a person is checking / decided), `message` (a reply or
notice arrived), `end` (the run is over; the stream closes). Each event has an
id; a reconnecting client sends Last-Event-ID and gets only newer events. A
connection lasts at most SSE_MAX_SECONDS; clients then reconnect (EventSource
does) or poll GET /api/v1/runs/{id}/ instead.

An async view: under an ASGI server (uvicorn, as `make run` uses) a waiting
stream holds no thread, and no database connection either: it waits on Redis for
a ping that its run changed (`api.streams`, sent by `api.signals`) and reads the
database only then — and every SSE_POLL_SECONDS in case a ping was lost — giving
the connection back after each read. Streams are limited per customer and in
total, and counted in the API's per-IP throttle before the caller is authenticated
(`api.streams`: 429 with Retry-After). Same rules as the rest
of the API: it authenticates with the API's authenticators (token, then session)
and finds the customer as the API views do (`api.authentication`); a customer
sees only their own runs (404 otherwise).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from api.authentication import customer_from_request
from api.streams import (
    Refused,
    Slot,
    Wakeups,
    conversation_channel,
    run_channel,
    stream_ip_count,
    stream_opening_count,
    stream_release,
    stream_slot_take,
)
from orchestration.models import Run
from orchestration.selectors import run_events, run_get
from project.errors import NotFound
from project.responses import error_response


def request_authenticate(request: HttpRequest) -> Request | None:
    """`request` authenticated as the API views authenticate theirs (DRF's configured authenticators:
    token, then session), or None when it carries no valid credentials. Synchronous (it may query)."""
    api_request = Request(request, authenticators=[auth() for auth in APIView.authentication_classes])
    try:
        user = api_request.user
    except exceptions.AuthenticationFailed:
        return None
    return api_request if user.is_authenticated else None


@dataclass(frozen=True)
class StreamOpened:
    """A stream the caller may have: their run, and the slot it holds until it closes."""

    run: Run
    """The caller's run."""
    slot: Slot
    """Its place in the stream counts (`api.streams`)."""


def db_connections_release() -> None:
    """Give this thread's database connections back (to the pool, or closed without one): a waiting
    stream holds none. The next read takes one again. (Not inside a transaction: never under a view,
    where ATOMIC_REQUESTS is off; only under a test's.)"""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def stream_open(request: HttpRequest, run_id: str) -> StreamOpened | HttpResponse:
    """Who is asking, for which run, and whether they may have another stream — or the error response.
    Synchronous (it queries); its connection is given back before the stream starts."""
    try:
        throttled = stream_ip_count(request)  # before authentication: a bad token refused here costs no query
        if throttled is not None:
            return refused_response(request, throttled)
        caller = request_authenticate(request)
        if caller is None:
            return error_response(request, 401, "not_authenticated", "Authentication credentials were not provided.")
        customer = customer_from_request(caller)
        if customer is None:
            return error_response(request, 403, "permission_denied", "This endpoint is for customers.")
        throttled = stream_opening_count(customer_id=customer.pk)
        if throttled is not None:
            return refused_response(request, throttled)
        try:
            run = run_get(customer=customer, run_id=run_id)
        except NotFound as exc:
            return error_response(request, 404, exc.code, exc.message)
        slot = stream_slot_take(customer_id=customer.pk)
        if isinstance(slot, Refused):
            return refused_response(request, slot)
        return StreamOpened(run=run, slot=slot)
    finally:
        db_connections_release()


def refused_response(request: HttpRequest, refused: Refused) -> HttpResponse:
    response = error_response(request, refused.status, refused.code, refused.message)
    response["Retry-After"] = str(refused.retry_after)
    return response


def run_events_read(run_id: uuid.UUID) -> tuple[list[tuple[tuple[int, str], str, dict]], str] | None:
    """`run_events` (None once the run is gone), then the connection given back."""
    try:
        return run_events(run_id)
    except Run.DoesNotExist:
        return None
    finally:
        db_connections_release()


async def run_events_view(request: HttpRequest, run_id: str) -> HttpResponseBase:
    if request.method != "GET":
        return error_response(request, 405, "method_not_allowed", f'Method "{request.method}" not allowed.')
    opened = await sync_to_async(stream_open)(request, run_id)
    if not isinstance(opened, StreamOpened):
        return opened
    response = StreamingHttpResponse(
        event_stream(opened.run, request.headers.get("Last-Event-ID", ""), opened.slot),
        content_type="text/event-stream",
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


async def event_stream(run: Run, last_event_id: str, slot: Slot) -> AsyncIterator[str]:
    """The events of `run` newer than `last_event_id`, as they happen, until the run ends or the
    connection's lifetime is over; a comment line (heartbeat) after SSE_HEARTBEAT_SECONDS of quiet."""
    deadline = time.monotonic() + settings.SSE_MAX_SECONDS
    after = parse_event_id(last_event_id)
    sent: set[tuple[int, str]] = set()
    wakeups = Wakeups(None, None)
    try:
        # Subscribed before the first read: a change after that read is never missed.
        wakeups = await Wakeups.subscribe([run_channel(run.id), conversation_channel(run.conversation_id)])
        yield f"retry: 2000\n: run {run.id}; live for up to {settings.SSE_MAX_SECONDS:.0f}s\n\n"
        last_write = time.monotonic()
        next_poll = 0.0
        read = True
        while True:
            if read:
                found = await sync_to_async(run_events_read)(run.id)
                if found is None:
                    return
                next_poll = time.monotonic() + settings.SSE_POLL_SECONDS
                events, status = found
                for key, kind, data in events:
                    if key in sent or (after is not None and key <= after):
                        continue
                    sent.add(key)
                    last_write = time.monotonic()
                    yield sse(kind, data, f"{key[0]}|{key[1]}")
                if status in Run.TERMINAL:
                    yield sse("end", {"status": status, "run": str(run.id)})
                    return
            now = time.monotonic()
            if now >= deadline:
                yield ": connection lifetime reached; reconnect, or poll GET /api/v1/runs/{id}/\n\n"
                return
            if now - last_write >= settings.SSE_HEARTBEAT_SECONDS:
                last_write = now
                yield ": keep-alive\n\n"
            pinged = await wakeups.wait(
                max(0.0, min(next_poll, last_write + settings.SSE_HEARTBEAT_SECONDS, deadline) - now)
            )
            read = pinged or time.monotonic() >= next_poll
    finally:
        await wakeups.close()
        await sync_to_async(stream_release, thread_sensitive=False)(slot)

"""uvicorn's h11 protocol with a deadline on every request head (REQUEST_HEAD_TIMEOUT_SECONDS).

uvicorn hands a request to the application only once its head is parsed, and until then times nothing:
`--timeout-keep-alive` starts after a response and any byte cancels it. A connection that never finishes
its head (`GET / HTTP/1.1`, a header, then silence) is kept open for good and counts towards
`--limit-concurrency`, so a few hundred such sockets per process make the server answer every other
request 503. Here a connection must complete each head within REQUEST_HEAD_TIMEOUT_SECONDS — counted
from when the connection opens, and again each time it goes back to waiting for its next request —
else it is closed: with a 408 when part of a head came, silently when nothing did (as uvicorn closes an
idle keep-alive). Once a head is complete the clock stops: bodies have their own deadline
(`project.request_limits`) and responses (event streams) none from here.

Named by the Procfile's and docker-compose's `--http project.http_protocol:HeadTimeoutH11Protocol`
(uvicorn imports a `module:Class` given there); everything else is uvicorn's h11 protocol as `--http h11`,
with its options (`--h11-max-incomplete-event-size`, `--limit-concurrency`, `--timeout-keep-alive`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from django.conf import settings
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState


def head_timeout_response(timeout: float) -> tuple[h11.Response, bytes]:
    """The 408 for a head not complete within `timeout` seconds: plain text (its path may not be known yet,
    so not the API's JSON shape), closing the connection."""
    body = f"408: The request head did not arrive within {timeout:g} seconds.".encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return h11.Response(status_code=408, headers=headers, reason=STATUS_PHRASES[408]), body


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; a connection whose request head is not complete within
    REQUEST_HEAD_TIMEOUT_SECONDS of its opening or of its previous response is closed."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)  # loads the application, and so Django's settings
        self.head_timeout: float = settings.REQUEST_HEAD_TIMEOUT_SECONDS
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn declares it
        super().connection_made(transport)
        self.head_timer_update()

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_timer_cancel()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        """uvicorn's, then the head clock set to the connection's state: every change of state (bytes in, a
        response complete, the next request begun) passes through here."""
        super().handle_events()
        self.head_timer_update()

    def waiting_for_head(self) -> bool:
        """Whether the connection waits for a request head (none begun, or only part of one), nothing owed."""
        return not self.transport.is_closing() and self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE

    def head_timer_update(self) -> None:
        """Start the head clock when the connection begins waiting for a head (never restart it: bytes
        trickling in do not buy time); stop it once the head is complete or the connection closes."""
        if not self.waiting_for_head():
            self.head_timer_cancel()
        elif self.head_timer is None:
            self.head_timer = self.loop.call_later(self.head_timeout, self.head_timed_out)

    def head_timer_cancel(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        """Close the connection: with a 408 if part of a head arrived, silently if nothing did."""
        self.head_timer = None
        if not self.waiting_for_head():
            return
        partial_head, _ = self.conn.trailing_data
        if partial_head:
            response, body = head_timeout_response(self.head_timeout)
            self.transport.write(self.conn.send(response) or b"")
            self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.conn.send(h11.ConnectionClosed())
        self.transport.close()

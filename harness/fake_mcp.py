"""A small MCP server for tests, built with the `mcp` package's own server API (FastMCP), served over streamable HTTP
on 127.0.0.1 by uvicorn in a thread, or over stdio as a command (`python -m harness.fake_mcp --stdio`).

Tools: `stock_level(sku)` (read-only: the units in stock), `send_replacement(order_id)` (acting: records the
replacement it sends, deduplicated by the `idempotency_key` of the request's `_meta`, as a shop's API would; while
`refuse_replacements`, it answers with an error and sends none), `tracking(order_id)` (read-only: where an order is),
`catalogue(count)` (read-only: `count` products as structured content) and `environment_names()` (read-only: the
names of the server's environment variables, to see what a stdio server was given). Every tool call is recorded
(`calls`, with the key and the `switchboard_customer_id` of its `_meta`). Requests must carry
`Authorization: Bearer <token>`; `redirect_to` answers every request with a 307 to that URL; `fail_calls`
makes every tools/call answer HTTP 503 (a server that is down for calls), while listing still works; `hold_next`
holds the answers of that many replacements, after sending them, for `hold_seconds` or until `release()` (`held`
is set meanwhile): the window in which a test kills the worker that asked. `stop()` closes the port (a server that
is down).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harness.processes import free_port


@dataclass
class FakeMCP:
    token: str = "mcp-test-token"
    stock: dict[str, int] = field(default_factory=lambda: {"LANTERN-7": 17})
    calls: list[dict[str, Any]] = field(default_factory=list)
    replacements: dict[str, str] = field(default_factory=dict)
    """Replacements sent: idempotency key (or a fresh one when none was given) -> order id."""
    fail_calls: bool = False
    refuse_replacements: bool = False
    """send_replacement answers with an error (isError) and sends nothing."""
    redirect_to: str = ""
    """A URL every HTTP request is redirected to (307), '' for none."""
    requests: int = 0
    """HTTP requests received (any)."""
    hold_next: int = 0
    """How many replacements' answers to hold after sending them (0: none)."""
    hold_seconds: float = 0.0
    """How long a held answer waits for `release()`."""
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.held = threading.Event()
        """Set when a replacement was sent and its answer is being held."""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.replacements.clear()
            self.fail_calls, self.hold_next, self.hold_seconds = False, 0, 0.0
            self.refuse_replacements, self.redirect_to, self.requests = False, "", 0
            self._release.clear(), self.held.clear()

    def release(self) -> None:
        self._release.set()

    def server(self) -> FastMCP:
        """The FastMCP server with the two tools (over HTTP: `app`; over stdio: `main`)."""
        server = FastMCP("fake-shop", host="127.0.0.1", stateless_http=True, json_response=True, log_level="WARNING")

        def record(tool: str, arguments: dict[str, Any], ctx: Context) -> str:
            meta = ctx.request_context.meta
            key = str(getattr(meta, "idempotency_key", "") or "") if meta is not None else ""
            customer = str(getattr(meta, "switchboard_customer_id", "") or "") if meta is not None else ""
            with self._lock:
                self.calls.append({"tool": tool, "arguments": arguments, "key": key, "customer": customer})
            return key

        @server.tool()
        def stock_level(sku: str, ctx: Context) -> str:
            """How many units of a product (by SKU) are in stock in the shop's warehouse."""
            record("stock_level", {"sku": sku}, ctx)
            units = self.stock.get(sku)
            return f"SKU {sku}: unknown product." if units is None else f"SKU {sku}: {units} units in stock."

        @server.tool()
        async def send_replacement(order_id: str, ctx: Context) -> str:
            """Send the customer a replacement for an order (ships a new item at no charge)."""
            key = record("send_replacement", {"order_id": order_id}, ctx) or f"no-key-{len(self.calls)}"
            if self.refuse_replacements:
                raise ValueError(f"No replacement for order {order_id}: the item is out of stock.")
            with self._lock:
                self.replacements.setdefault(key, order_id)
                hold = self.hold_next > 0
                if hold:
                    self.hold_next -= 1
            if hold:  # sent; the answer waits (in a thread: the server goes on serving other requests)
                self.held.set()
                await anyio.to_thread.run_sync(self._release.wait, self.hold_seconds)
            return f"A replacement for order {order_id} has been sent."

        @server.tool()
        def tracking(order_id: str, ctx: Context) -> str:
            """Where an order's parcel is now."""
            record("tracking", {"order_id": order_id}, ctx)
            return f"Order {order_id}: in transit, due tomorrow."

        @server.tool()
        def catalogue(count: int, ctx: Context) -> dict[str, Any]:
            """A page of the shop's products (structured)."""
            record("catalogue", {"count": count}, ctx)
            return {"products": [{"sku": f"ITEM-{n}", "name": f"Product number {n}"} for n in range(count)]}

        @server.tool()
        def environment_names(ctx: Context) -> str:
            """The names of the server's environment variables, sorted, one a line."""
            record("environment_names", {}, ctx)
            return "\n".join(sorted(os.environ))

        return server

    def app(self) -> ASGIApp:
        return self._guard(self.server().streamable_http_app())

    def _guard(self, app: ASGIApp) -> ASGIApp:
        """The bearer token on every request; HTTP 503 for tool calls while `fail_calls`."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            headers = dict(scope.get("headers") or [])
            with self._lock:
                self.requests += 1
            if self.redirect_to:
                return await _respond(send, 307, location=self.redirect_to)
            if headers.get(b"authorization") != f"Bearer {self.token}".encode():
                return await _respond(send, 401)
            chunks: list[Message] = []
            body = b""
            while True:
                message = await receive()
                chunks.append(message)
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            if self.fail_calls and b'"tools/call"' in body:
                return await _respond(send, 503)

            async def replay() -> Message:
                return chunks.pop(0) if chunks else await receive()

            return await app(scope, replay, send)

        return guarded

    def start(self) -> FakeMCP:
        self.port = self.port or free_port()
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake MCP server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


async def _respond(send: Send, status: int, *, location: str = "") -> None:
    headers = [(b"content-type", b"text/plain"), *([(b"location", location.encode())] if location else [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"unavailable" if status == 503 else b"unauthorized"})


def main() -> None:
    """`python -m harness.fake_mcp --stdio [--stock SKU=UNITS ...]`: the server over stdio (a configured `command`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdio", action="store_true", required=True, help="serve over stdin/stdout")
    parser.add_argument("--stock", action="append", default=[], metavar="SKU=UNITS", help="units in stock")
    options = parser.parse_args()
    stock = {sku: int(units) for sku, _, units in (item.partition("=") for item in options.stock)}
    FakeMCP(stock=stock or FakeMCP().stock).server().run("stdio")


if __name__ == "__main__":
    main()

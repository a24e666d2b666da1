"""MCP (Model Context Protocol) tools through the official `mcp` package's client: the servers of settings
MCP_SERVERS (streamable HTTP with headers, or a stdio command), their tools as the tools agent offers them to the
model, and one call of a tool.

A tool is offered to the model as `mcp__<server>__<tool>` with the server's JSON schema of its arguments; only tools
of configured servers are offered, and the model's calls are checked against them (an unknown tool is refused like
any other, `agents.llm.base.tool_call_problems`). Each worker keeps a server's tool list for MCP_TOOLS_CACHE_SECONDS;
a server that cannot be listed is left out for a fifth of that (the run goes on without its tools, never waits on it).

A call opens a session (connect, initialize), makes the one request and closes it, all within the server's timeout
(MCP_TIMEOUT_SECONDS): nothing outlives a try. Unreachable, timed out or failing (5xx) -> `MCPUnavailable`
(transient: retried by the task wrapper); a protocol error or a 4xx -> `MCPRefused` (permanent: configuration to
fix); a circuit breaker per server (`mcp:<name>`, agents/llm/breaker.py) pauses calls to one that keeps failing
(`MCPCircuitOpen`). A tool that answers with `isError` is an answer, not a failure: the model's reply is told.
Secrets (header values, a stdio server's environment) are read from the environment variables the settings name,
when a call is made. A stdio server gets only those and the SDK's safe defaults (PATH, HOME, ...:
`mcp.client.stdio.get_default_environment`), never the worker's environment (its database URL, its keys). A redirect
off the server's origin is not followed (the SDK's transport; the headers never leave) and is a refusal; a URL's
query (a token in it) is left out of error messages.

A call carries the customer's id (`switchboard_customer_id`) and, for an acting tool, the idempotency key in the
request's `_meta`; its answer is kept as text up to RESULT_CHARS and structured content whose JSON is within
STRUCTURED_CHARS (larger structured content is left out, and the text says so).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import anyio
import httpx
from django.conf import settings
from mcp import ClientSession, McpError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from agents.llm.breaker import CircuitBreaker
from project import recording
from project.errors import PermanentError, Postponed, TransientError

logger = logging.getLogger(__name__)

PREFIX = "mcp__"
#: The function names the model may call (OpenAI's rule); a server's tool whose name does not fit is left out.
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: How much of a tool's answer is kept (in the payload, and shown to the model).
RESULT_CHARS = 4000
#: How much of a tool's structured content is kept: its JSON's length (larger structured content is left out).
STRUCTURED_CHARS = 4000
#: A URL's query, left out of error messages (it may carry a token).
URL_QUERY = re.compile(r"""(\b[a-z][a-z0-9+.-]*://[^\s'"?#]*)\?[^\s'"#)>]*""", re.IGNORECASE)


class MCPUnavailable(TransientError):
    """The MCP server could not be reached, timed out or failed: retried with backoff."""

    code = "mcp_unavailable"


class MCPCircuitOpen(Postponed):
    """The MCP server failed repeatedly; calls to it are paused: the step waits for the breaker's cool-down."""

    code = "mcp_unavailable"


class MCPRefused(PermanentError):
    """The MCP server refused the request (a protocol error, HTTP 4xx): retrying will not help."""

    code = "mcp_refused"


@dataclass(frozen=True)
class McpTool:
    """One tool of a configured server, as the model is offered it."""

    server: str
    name: str
    description: str
    schema: dict[str, Any]
    mode: str
    """read, acting or review (settings MCP_TOOL_MODES)."""

    @property
    def function(self) -> str:
        return f"{PREFIX}{self.server}__{self.name}"

    @property
    def acting(self) -> bool:
        return self.mode != "read"

    def spec(self) -> dict[str, Any]:
        """The function spec of a prompt's `tools` (name, description, parameters)."""
        what = "Proposes an action (checked before anything happens)" if self.acting else "Reads"
        return {
            "name": self.function,
            "description": f"{self.description or self.name} ({what}; MCP server {self.server}.)"[:1000],
            "parameters": self.schema or {"type": "object", "properties": {}},
        }


def is_mcp_function(name: str) -> bool:
    return name.startswith(PREFIX)


def server_timeout(server: str) -> float:
    return float(settings.MCP_SERVERS[server].get("timeout", settings.MCP_TIMEOUT_SECONDS))


def _secrets(names: dict[str, str]) -> dict[str, str]:
    """{key: the value of the environment variable named}: a missing variable is a configuration to fix."""
    missing = sorted(var for var in names.values() if var not in os.environ)
    if missing:
        raise MCPRefused(f"the environment variables {missing} named in MCP_SERVERS are not set.")
    return {key: os.environ[var] for key, var in names.items()}


@asynccontextmanager
async def _session(server: str) -> AsyncIterator[ClientSession]:
    """An initialized session with `server` (settings MCP_SERVERS), closed on exit."""
    config = settings.MCP_SERVERS[server]
    if "url" in config:
        timeout = httpx.Timeout(server_timeout(server))
        async with (
            create_mcp_http_client(headers=_secrets(config.get("headers", {})), timeout=timeout) as client,
            streamable_http_client(config["url"], http_client=client) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    else:
        # Only the configured secrets: the SDK adds its safe defaults (get_default_environment), nothing else of ours.
        env = _secrets(config.get("env", {})) if config.get("env") else None
        parameters = StdioServerParameters(command=config["command"], args=list(config.get("args", [])), env=env)
        # The server's stderr goes to the process's own (a Celery worker's sys.stderr is a logging proxy, no file).
        errlog = sys.__stderr__ or sys.stderr
        async with stdio_client(parameters, errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def url_scrub(text: str) -> str:
    """`text` without the queries of the URLs in it (a token may be one)."""
    return URL_QUERY.sub(r"\1?[query left out]", text)


def _failure(server: str, exc: BaseException) -> BaseException:
    """The Switchboard error of a failed MCP exchange (an exception group is judged by its first exception). A
    redirect that was not followed (off the server's origin) is a refusal: the configured URL is to fix."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPRefused | MCPUnavailable):
        return exc
    if isinstance(exc, McpError):
        return MCPRefused(f"MCP server {server} refused the request: {url_scrub(exc.error.message)}")
    status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else 0
    if 300 <= status < 400:
        return MCPRefused(f"MCP server {server} redirected the request (HTTP {status}), off its URL: not followed.")
    if 400 <= status < 500 and status not in (408, 429):
        return MCPRefused(f"MCP server {server} refused the request with HTTP {status}.")
    if isinstance(exc, TimeoutError):
        return MCPUnavailable(f"MCP server {server} did not answer within {server_timeout(server)}s.")
    first_line = url_scrub((str(exc).splitlines() or [""])[0])[:200]
    return MCPUnavailable(f"MCP server {server} failed: {type(exc).__name__}: {first_line}")


def _run(server: str, work: Any) -> Any:
    """Run `work(session)` against `server` within its timeout, behind its circuit breaker."""
    breaker = CircuitBreaker(
        f"mcp:{server}",
        threshold=settings.MCP_BREAKER_FAILURES,
        cooldown=settings.MCP_BREAKER_COOLDOWN_SECONDS,
        call_seconds=server_timeout(server),
        open_error=MCPCircuitOpen,
    )
    probing = breaker.before_call()

    async def exchange() -> Any:
        with anyio.fail_after(server_timeout(server)):
            async with _session(server) as session:
                return await work(session)

    try:
        result = anyio.run(exchange)
    except Exception as exc:  # every way an exchange fails, judged by `_failure`
        error = _failure(server, exc)
        if isinstance(error, MCPUnavailable):
            breaker.record_failure(probing)
        else:
            breaker.record_success()  # the server is up; the request is what is wrong
        if "?" in str(settings.MCP_SERVERS[server].get("url", "")):
            raise error from None  # the cause's text may quote the URL's query (a dead letter keeps tracebacks)
        raise error from exc
    breaker.record_success()
    return result


# --- Listing, cached per worker -------------------------------------------------------------------------------

_cache: dict[str, tuple[float, list[McpTool]]] = {}
_cache_lock = threading.Lock()


def server_tools(server: str) -> list[McpTool]:
    """The tools of one server, listed now (every page)."""
    modes: dict[str, str] = settings.MCP_SERVERS[server].get("tools", {})

    async def work(session: ClientSession) -> list[Any]:
        tools, cursor = [], None
        while True:
            page = await session.list_tools(cursor)
            tools += page.tools
            cursor = page.nextCursor
            if not cursor:
                return tools

    listed = [
        McpTool(server, t.name, t.description or "", dict(t.inputSchema or {}), modes.get(t.name, "read"))
        for t in _run(server, work)
    ]
    return [tool for tool in listed if FUNCTION_NAME.match(tool.function)]


def mcp_tools() -> dict[str, McpTool]:
    """Every tool of every configured server, by function name (cached per worker for MCP_TOOLS_CACHE_SECONDS; a
    server that cannot be listed is left out, and asked again after a fifth of that)."""
    found: dict[str, McpTool] = {}
    for server in settings.MCP_SERVERS:
        now = time.monotonic()
        with _cache_lock:
            cached = _cache.get(server)
        if cached is None or cached[0] < now:
            try:
                tools = server_tools(server)
                logger.info("MCP server %s lists %d tools: %s", server, len(tools), [t.name for t in tools])
                expires = now + settings.MCP_TOOLS_CACHE_SECONDS
            except (TransientError, PermanentError) as exc:
                logger.warning("MCP server %s left out: its tools could not be listed: %s", server, exc)
                tools, expires = [], now + settings.MCP_TOOLS_CACHE_SECONDS / 5
            with _cache_lock:
                _cache[server] = (expires, tools)
            cached = (expires, tools)
        found.update({tool.function: tool for tool in cached[1]})
    return found


def mcp_tools_reset() -> None:
    """Forget the listed tools (tests)."""
    with _cache_lock:
        _cache.clear()


# --- Calling --------------------------------------------------------------------------------------------------


def mcp_call(server: str, tool: str, arguments: dict[str, Any], *, customer_id: str, key: str = "") -> dict[str, Any]:
    """Call one tool for a customer; its answer as the payload records it: {"text", "structured", "is_error"}. The
    request's `_meta` carries `switchboard_customer_id` (a server scopes its answers by it) and, given `key` (an
    acting tool's idempotency key, from run and action), `idempotency_key`, so that a server that deduplicates by
    it acts once however often the call is re-sent."""

    async def work(session: ClientSession) -> Any:
        meta = {"switchboard_customer_id": customer_id, **({"idempotency_key": key} if key else {})}
        return await session.call_tool(tool, arguments, meta=meta)

    # On the record (the key is the run's own: a replay's differs); a replay answers from it and never acts.
    request = {"arguments": arguments, "customer_id": customer_id, "acting": bool(key)}
    recorded = recording.answer(recording.Kind.MCP, f"{server}/{tool}", request)
    if recorded is not recording.MISSING:
        return cast(dict[str, Any], recorded)
    if key and recording.replaying() is not None:
        raise PermanentError(f"a replay never calls the acting tool {server}/{tool}; its recording has no such call.")
    started = time.monotonic()
    answer = _call_result(_run(server, work))
    latency = int((time.monotonic() - started) * 1000)
    recording.record(recording.Kind.MCP, f"{server}/{tool}", request=request, response=answer, latency_ms=latency)
    return answer


def _call_result(result: Any) -> dict[str, Any]:
    """A tool's answer as the payload records it, its text and structured content capped."""
    text = "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")[:RESULT_CHARS]
    structured = result.structuredContent
    if structured is not None:
        size = len(json.dumps(structured, ensure_ascii=False, default=str))
        if size > STRUCTURED_CHARS:
            structured = None
            text += f"\n[structured content left out: {size} characters of JSON, over the {STRUCTURED_CHARS} kept]"
    return {"text": text, "structured": structured, "is_error": bool(result.isError)}

"""Settings of MCP (Model Context Protocol) tools: the servers whose tools the tools agent is offered
(agents/tools/mcp.py), how long a call may take, how long a worker keeps a server's tool list, and the circuit breaker
per server. The README's "Use your own tools (MCP)" explains them.

Part of `project.settings` (which imports every name here; kept apart only for the modules' size), read from the
environment with the same helpers; the README's configuration table lists them.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from project.env import env_float, env_int

#: A server's name: part of the function names the model sees (`mcp__<server>__<tool>`, at most 64 characters).
MCP_SERVER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
#: What a tool may do, as configured per tool: "read" (the default: run when the model calls it), "acting" (proposed;
#: executed by deliver once the validator passes the run), "review" (proposed; executed only once a person approves).
MCP_TOOL_MODES = ("read", "acting", "review")
#: Header names and environment variables of secrets: names, never values.
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def mcp_servers_parse(raw: str) -> dict[str, dict[str, Any]]:
    """MCP_SERVERS as JSON: {name: {"url": ..., "headers": {header: ENV_VAR}} | {"command": ..., "args": [...],
    "env": {VAR: ENV_VAR}}, "tools": {tool: mode}, "timeout": seconds}. Secrets are given as the names of environment
    variables, read when a call is made: a value written inline is refused, so no token sits in a settings dump."""
    try:
        servers = json.loads(raw or "{}")
    except ValueError as exc:
        raise ImproperlyConfigured(f"MCP_SERVERS is not JSON: {exc}.") from None
    if not isinstance(servers, dict):
        raise ImproperlyConfigured("MCP_SERVERS must be a JSON object: {server name: server}.")
    for name, server in servers.items():
        where = f"MCP_SERVERS[{name!r}]"
        if not MCP_SERVER_NAME.match(name):
            raise ImproperlyConfigured(f"{where}: a name is lower-case letters, digits and _ (at most 20).")
        if not isinstance(server, dict) or ("url" in server) == ("command" in server):
            raise ImproperlyConfigured(f"{where} needs either a url (streamable HTTP) or a command (stdio).")
        secrets = {**server.get("headers", {}), **server.get("env", {})}
        bad = sorted(key for key, var in secrets.items() if not isinstance(var, str) or not _ENV_NAME.match(var))
        if bad:
            raise ImproperlyConfigured(
                f'{where}: {bad} must name environment variables (e.g. "SHOP_MCP_TOKEN"), never hold values.'
            )
        modes = server.get("tools", {})
        wrong = sorted(tool for tool, mode in modes.items() if mode not in MCP_TOOL_MODES)
        if not isinstance(modes, dict) or wrong:
            raise ImproperlyConfigured(f"{where}.tools: each tool's mode is one of {MCP_TOOL_MODES}; not {wrong}.")
    return servers


# Servers by name (JSON, see `mcp_servers_parse`); none by default: the tools agent offers only its own tools. Every
# tool of a server is offered to the model; a tool not named in "tools" is read-only, so a tool that acts on the world
# MUST be listed as "acting" or "review" (trade-off: an unlisted acting tool would run unapproved; listing the
# read-only ones instead would be safer but silently hide every new tool a server adds).
MCP_SERVERS = mcp_servers_parse(os.environ.get("MCP_SERVERS", ""))
# Seconds one MCP call (connect, initialize, list or call) may take before it is a transient failure (retried). Too
# short fails slow but healthy servers; too long holds a worker slot while a server hangs. A server's own "timeout"
# overrides it.
MCP_TIMEOUT_SECONDS = env_float("MCP_TIMEOUT_SECONDS", 10.0)
# How long each worker keeps a server's tool list (and their schemas) before asking again. Longer saves a round trip
# per run; shorter picks up a server's new or changed tools sooner. A server that could not be listed is asked again
# after a fifth of this (its tools are left out meanwhile; the run goes on without them).
MCP_TOOLS_CACHE_SECONDS = env_float("MCP_TOOLS_CACHE_SECONDS", 300.0)
# The circuit breaker per server (`mcp:<name>`): after this many failures in a row calls are paused for the cool-down
# (the step waits, using up no retry; the run's deadline bounds the wait). Set it above the `mcp` step's tries (4) so
# that one run's retries end in review before the breaker pauses everyone's calls; lower protects a struggling server
# sooner, but a run caught by the open breaker waits (up to its deadline) instead of going to review.
MCP_BREAKER_FAILURES = env_int("MCP_BREAKER_FAILURES", 10)
MCP_BREAKER_COOLDOWN_SECONDS = env_float("MCP_BREAKER_COOLDOWN_SECONDS", 30.0)

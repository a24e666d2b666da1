"""Settings of A2A (the Agent2Agent protocol): the server (a2a_server/: the agent card's addresses, how long a
blocking `SendMessage` waits, list pages), this instance's id in the loop guard, and the remote A2A agents that run as
steps (agents/remote.py). docs/a2a.md explains them.

Part of `project.settings` (which imports every name here; kept apart only for the modules' size), read from the
environment with the same helpers; the README's configuration table lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from project.env import env_float, env_int, env_list, env_str


def _instance_id_default() -> str:
    """A digest of the host (and path) of PUBLIC_BASE_URL when it is set, else of the database's host and name: what
    tells one Switchboard from another without configuration, without telling a peer our host names (the id travels
    in the path of every request we send). Two instances that share a database are one system; two on different
    databases with the same host and name (two laptops' `switchboard` on 127.0.0.1) would take each other for a loop:
    set A2A_INSTANCE_ID wherever instances talk to each other."""
    base = os.environ.get("PUBLIC_BASE_URL", "")
    if base:
        parts = urlsplit(base)
        source = (parts.netloc + parts.path.rstrip("/")) or base
    else:
        database = dj_database_url.parse(os.environ.get("DATABASE_URL") or "sqlite:///db.sqlite3")
        source = f"{database.get('HOST') or 'local'}/{database.get('NAME')}"
    return "switchboard-" + hashlib.sha256(source.encode()).hexdigest()[:16]


# --- The A2A server (a2a_server/) ---------------------------------------------------------------
# The A2A app `project.asgi` serves /.well-known/agent-card.json and /a2a/... with ("" turns A2A off: 404).
A2A_ASGI_APP = env_str("A2A_ASGI_APP", "a2a_server.app.application")
# The address clients reach this deployment at (scheme, host, port; no trailing slash): the agent card's interface
# URLs are absolute and built from it. Behind a proxy, the proxy's public address.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# How long a blocking SendMessage (the default; `returnImmediately` false) holds its request waiting for the run to
# end before answering the task as it stands (working): longer answers more calls in one round trip, but holds a
# connection (not a thread: the wait is asynchronous) and a client's timeout; clients then poll GetTask or subscribe.
A2A_BLOCKING_WAIT_SECONDS = env_float("A2A_BLOCKING_WAIT_SECONDS", 30.0)
# ListTasks: the page size when the client names none, and the most it may ask for.
A2A_LIST_PAGE_SIZE = env_int("A2A_LIST_PAGE_SIZE", 50)
A2A_LIST_PAGE_SIZE_MAX = env_int("A2A_LIST_PAGE_SIZE_MAX", 100)

# --- This instance in the loop guard (agents/a2a_guard.py) ---------------------------------------------
# A stable id of this Switchboard, added to the path of every A2A request it sends on: a request that comes back
# through here is refused as a loop. Stable means across restarts and the same for every process of one instance
# (web, workers); unique means no other system a request may cross uses it (a collision refuses honest requests).
A2A_INSTANCE_ID = env_str("A2A_INSTANCE_ID", _instance_id_default())[:100]
if not A2A_INSTANCE_ID.isprintable():
    raise ImproperlyConfigured("A2A_INSTANCE_ID must be printable text of at most 100 characters.")
# The most systems a request that starts here may cross (its loop guard's maxHops; a request that arrived over A2A
# keeps its first sender's). Higher: longer chains of delegation; lower: a loop through systems that do not check
# the path (not Switchboards) is cut sooner.
A2A_MAX_HOPS = env_int("A2A_MAX_HOPS", 4)

# --- Remote A2A agents as steps (agents/remote.py) -------------------------------------------------
# A circuit breaker per remote agent (agents/llm/breaker.py): after this many failures in a row (5xx, timeouts,
# refused connections) calls are paused, the step waiting without using a retry ...
A2A_BREAKER_FAILURES = env_int("A2A_BREAKER_FAILURES", 5)
# ... and after this many seconds one probe is let through. Longer spares a remote that is down; shorter notices
# sooner that it is back (a run waits at most until its deadline either way).
A2A_BREAKER_COOLDOWN_SECONDS = env_float("A2A_BREAKER_COOLDOWN_SECONDS", 30.0)
# Each worker process keeps a remote's agent card this long before fetching it again: one request per try saved;
# a remote that moves its endpoints is followed this much later.
A2A_CARD_TTL_SECONDS = env_float("A2A_CARD_TTL_SECONDS", 300.0)

#: Per remote agent: the keys of A2A_REMOTE_AGENTS and their defaults (None: required).
REMOTE_AGENT_DEFAULTS: dict[str, Any] = {
    "card_url": None,
    "token_env": "",
    "time_limit_seconds": 30,
    "request_timeout_seconds": 10.0,
    "poll_seconds": 2.0,
    "max_polls": 30,
    "max_retries": 3,
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _remote_agent(name: str, config: Any) -> dict[str, Any]:
    """One remote agent's settings, checked, with its token read from the variable `token_env` names."""
    if not _NAME.match(name) or not isinstance(config, dict):
        raise ImproperlyConfigured(f"A2A_REMOTE_AGENTS: {name!r} must be a lower-case name mapped to an object.")
    unknown = set(config) - set(REMOTE_AGENT_DEFAULTS)
    if unknown or "card_url" not in config:
        raise ImproperlyConfigured(
            f"A2A_REMOTE_AGENTS[{name!r}] needs card_url and knows only {sorted(REMOTE_AGENT_DEFAULTS)}; "
            f"unknown: {sorted(unknown)}."
        )
    agent = {**REMOTE_AGENT_DEFAULTS, **config}
    try:
        for key, default in REMOTE_AGENT_DEFAULTS.items():
            agent[key] = str(agent[key]) if default is None else type(default)(agent[key])
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"A2A_REMOTE_AGENTS[{name!r}] has a value of the wrong type: {exc}") from exc
    if urlsplit(agent["card_url"]).scheme not in ("http", "https"):
        raise ImproperlyConfigured(f"A2A_REMOTE_AGENTS[{name!r}].card_url must be an http(s) URL.")
    if (
        min(agent["poll_seconds"], agent["max_polls"], agent["request_timeout_seconds"]) <= 0
        or agent["max_retries"] < 0
    ):
        raise ImproperlyConfigured(f"A2A_REMOTE_AGENTS[{name!r}]: times and counts must be positive.")
    if agent["request_timeout_seconds"] * 3 > agent["time_limit_seconds"]:
        # A try may fetch the card, send or poll, and cancel: three requests within its time limit.
        raise ImproperlyConfigured(f"A2A_REMOTE_AGENTS[{name!r}]: time_limit_seconds must be 3 x request_timeout.")
    token_env = agent.pop("token_env")
    if token_env and not os.environ.get(token_env):
        raise ImproperlyConfigured(f"A2A_REMOTE_AGENTS[{name!r}] reads its token from {token_env}, which is not set.")
    # The secret itself is never written in A2A_REMOTE_AGENTS: only the name of the variable that holds it.
    agent["token"] = os.environ.get(token_env, "") if token_env else ""
    return agent


def _remote_agents(raw: str) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"A2A_REMOTE_AGENTS is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ImproperlyConfigured("A2A_REMOTE_AGENTS must be a JSON object: {name: {card_url, ...}}.")
    return {name: _remote_agent(name, config) for name, config in data.items()}


# Remote agents, by the name a routing slip uses (JSON): {"warranty_desk": {"card_url":
# "https://partner.example/.well-known/agent-card.json", "token_env": "WARRANTY_DESK_TOKEN", "time_limit_seconds": 30,
# "request_timeout_seconds": 10, "poll_seconds": 2, "max_polls": 30, "max_retries": 3}}. Each becomes an agent (task
# `agents.<name>`, `llm` queue): every try sends the question or polls the remote task once, never waiting longer than
# the request timeout; poll_seconds x max_polls bounds how long the remote may work (then the run goes to review).
# The token is read from the variable `token_env` names (sent as `Authorization: Token <key>`), never written here.
A2A_REMOTE_AGENTS = _remote_agents(os.environ.get("A2A_REMOTE_AGENTS") or "{}")

# Which intents (agents.triage.INTENTS) a remote agent answers: "warranty=warranty_desk,privacy=privacy_desk". The
# planner puts that agent on the slip just before the responder, which then passes its answer on. Configuration,
# not the model, decides: a model cannot send a customer's question to another system.
A2A_REMOTE_ROUTES = dict(item.split("=", 1) for item in env_list("A2A_REMOTE_ROUTES") if "=" in item)
if not set(A2A_REMOTE_ROUTES.values()) <= set(A2A_REMOTE_AGENTS):
    raise ImproperlyConfigured(
        f"A2A_REMOTE_ROUTES names agents not in A2A_REMOTE_AGENTS: "
        f"{sorted(set(A2A_REMOTE_ROUTES.values()) - set(A2A_REMOTE_AGENTS))}."
    )

"""The agent registry: every agent, by name. Adding an agent is one module and one line here (a remote A2A agent: one
entry of settings A2A_REMOTE_AGENTS)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from agents.base import Agent
from project.caching import cached_once

AGENT_CLASSES = (
    "agents.triage.Triage",
    "agents.planner.Planner",
    "agents.retrieval.Retrieval",
    "agents.account.Account",
    "agents.tools.agent.ToolsAgent",
    "agents.responder.Responder",
    "agents.validator.Validator",
    "agents.deliver.Deliver",
    # Runs the read-only MCP tool calls the tools agent hands it (a light module: `mcp` is imported only when used).
    "agents.tools.mcp_agent.McpStep",
)


@cached_once
def agents_all() -> dict[str, Agent]:
    """Every registered agent by name (instances are stateless and shared).

    `settings.EXTRA_AGENTS` adds agents from elsewhere (the test suite's fault agents), and every remote A2A agent
    of `settings.A2A_REMOTE_AGENTS` is one (`agents.remote`: configuration, no module of its own).
    """
    agents = [import_string(path)() for path in (*AGENT_CLASSES, *settings.EXTRA_AGENTS)]
    if settings.A2A_REMOTE_AGENTS:
        # Imported only when configured: the A2A client (httpx, protobuf) costs every process a third of a second.
        from agents.remote import remote_agents

        agents += remote_agents()
    names = [agent.name for agent in agents]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ImproperlyConfigured(f"Two agents share the names {duplicates}.")
    return {agent.name: agent for agent in agents}


def agent_get(name: str) -> Agent:
    try:
        return agents_all()[name]
    except KeyError:
        raise KeyError(f"No agent named {name!r}; registered: {', '.join(agents_all())}.") from None

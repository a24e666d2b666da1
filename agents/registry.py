"""The agent registry: every agent, by name. Adding an agent is one module and one line here."""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from agents.base import Agent

AGENT_CLASSES = (
    "agents.triage.Triage",
    "agents.planner.Planner",
    "agents.retrieval.Retrieval",
    "agents.account.Account",
    "agents.responder.Responder",
    "agents.validator.Validator",
    "agents.deliver.Deliver",
)


@cache
def agents_all() -> dict[str, Agent]:
    """Every registered agent by name (instances are stateless and shared)."""
    agents = [import_string(path)() for path in AGENT_CLASSES]
    return {agent.name: agent for agent in agents}


def agent_get(name: str) -> Agent:
    try:
        return agents_all()[name]
    except KeyError:
        raise KeyError(f"No agent named {name!r}; registered: {', '.join(agents_all())}.") from None

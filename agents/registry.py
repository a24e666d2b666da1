"""The agent registry: every agent, by name. Adding an agent is one module and one line here (a remote A2A agent: one
entry of settings A2A_REMOTE_AGENTS)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from agents.base import Agent
from agents.llm.base import Prompt
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


@cached_once
def agent_candidates() -> dict[tuple[str, str], Agent]:
    """Other versions of registered agents (settings.AGENT_CANDIDATES), by name and version: what a replay may run live
    (`manage.py replay --agent NAME@VERSION`); never used by production runs."""
    candidates = [import_string(path)() for path in settings.AGENT_CANDIDATES]
    unknown = sorted({agent.name for agent in candidates} - set(agents_all()))
    if unknown:
        raise ImproperlyConfigured(f"Agent candidates {unknown} are versions of no registered agent.")
    return {(agent.name, agent.version): agent for agent in candidates}


def agent_version_get(name: str, version: str) -> Agent:
    """The agent `name` at `version`: the registered one, or a candidate (KeyError naming the versions there are)."""
    current = agent_get(name)
    if current.version == version:
        return current
    candidate = agent_candidates().get((name, version))
    if candidate is None:
        known = sorted({current.version} | {v for (n, v) in agent_candidates() if n == name})
        raise KeyError(f"No version {version!r} of agent {name!r}; there are: {', '.join(known)}.")
    return candidate


@cached_once
def prompts_all() -> dict[tuple[str, str], Prompt]:
    """Every prompt version there is, by name and version: the registered agents' (and their candidates') prompts, and
    settings.PROMPT_CANDIDATES."""
    prompts: dict[tuple[str, str], Prompt] = {}
    for agent in [*agents_all().values(), *agent_candidates().values()]:
        prompt = getattr(agent, "prompt", None)
        if isinstance(prompt, Prompt):
            prompts[(prompt.name, prompt.version)] = prompt
    for path in settings.PROMPT_CANDIDATES:
        prompt = import_string(path)
        if not isinstance(prompt, Prompt):
            raise ImproperlyConfigured(f"{path} is not a Prompt.")
        prompts[(prompt.name, prompt.version)] = prompt
    return prompts


def prompt_get(name: str, version: str) -> Prompt:
    """The prompt `name` at `version` (KeyError naming the versions there are)."""
    prompt = prompts_all().get((name, version))
    if prompt is None:
        known = sorted(v for (n, v) in prompts_all() if n == name)
        raise KeyError(f"No version {version!r} of prompt {name!r}; there are: {', '.join(known) or 'none'}.")
    return prompt

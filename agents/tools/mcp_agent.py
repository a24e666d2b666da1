"""MCP tools in a run: the `mcp` step that runs the read-only calls the model made, the check of proposed acting
calls (validator, deliver) and their execution by deliver, once each, through the ledger.

The tools agent only records what the model called: read-only calls in `mcp_calls` (and hands the run to this step),
acting ones in `proposed_tool_actions`. This step runs behind the task wrapper like every agent: each try within
the server's timeout, transient failures retried with backoff (`max_retries`), then a person answers instead
(`review_when_exhausted`) — a server that is down never hangs a run. Each call and its answer are recorded in
`tool_results["mcp"]` (the step's output), where the responder and the validator's grounding read them.

The `mcp` package is imported only when a server is configured (it costs every process start otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings

from agents.base import Agent, AgentResult, Queue
from agents.envelope import Envelope
from agents.ledger import ledger_once
from agents.payload import McpAction, McpCall
from project.errors import PermanentError

MCP_KIND = "mcp"
#: The run's reason when a proposed MCP action needs a person (a "review" tool, or one no longer configured).
MCP_REVIEW = "mcp_action_review"
#: The run's reason when an executed MCP action answered with an error.
MCP_FAILED = "mcp_action_failed"


def function_name(server: str, tool: str) -> str:
    return f"mcp__{server}__{tool}"


def tool_modes() -> dict[str, str]:
    """Every configured server's tools' modes by function name (read, acting, review), as listed now."""
    if not settings.MCP_SERVERS:
        return {}
    from agents.tools.mcp import mcp_tools

    return {name: tool.mode for name, tool in mcp_tools().items()}


def tool_action_problems(actions: Sequence[Mapping[str, Any]], *, by_person: bool) -> list[str]:
    """Why proposed MCP actions may not be executed without (more of) a person: a tool that is not a configured
    acting tool, or one configured "review" when no person approved. Empty when they may."""
    if not actions:
        return []
    modes = tool_modes()
    problems = []
    for action in actions:
        name = function_name(str(action.get("server")), str(action.get("tool")))
        mode = modes.get(name)
        if mode not in ("acting", "review"):
            problems.append(f"{MCP_REVIEW}: {name} is not a configured acting MCP tool.")
        elif mode == "review" and not by_person:
            problems.append(f"{MCP_REVIEW}: {name} acts only on a person's approval.")
    return problems


def tool_action_key(run_id: str, index: int) -> str:
    return f"mcp:{run_id}:{index}"


def tool_actions_execute(*, actions: Sequence[McpAction], run_id: str) -> list[dict[str, Any]]:
    """Execute approved MCP actions, each once per (run, action index) through the ledger; their results in order
    (a result recorded by an earlier delivery is returned, not executed again). The key is sent to the server too
    (`idempotency_key` in the request's `_meta`): a try that failed after the server acted re-sends the same key.
    """
    if not actions:
        return []
    from agents.tools.mcp import mcp_call

    results = []
    for index, action in enumerate(actions):
        key = tool_action_key(run_id, index)

        def effect(action: McpAction = action, key: str = key) -> dict[str, Any]:
            answer = mcp_call(action["server"], action["tool"], dict(action["arguments"]), key=key)
            return {"server": action["server"], "tool": action["tool"], **answer}

        result, _ = ledger_once(key=key, kind=MCP_KIND, run_id=run_id, request=dict(action), effect=effect)
        results.append(result)
    return results


class McpStep(Agent):
    """Runs the read-only MCP calls the tools agent recorded (`mcp_calls`)."""

    name = "mcp"
    version = "1"
    queue = Queue.DEFAULT
    max_retries = 3
    """Transient failures (unreachable, timeout, 5xx) retried with the agents' backoff; then a person answers."""
    review_when_exhausted = True

    def handle(self, envelope: Envelope) -> AgentResult:
        calls: list[McpCall] = envelope.payload.get("mcp_calls", [])
        if not calls:
            return AgentResult()
        from agents.tools.mcp import mcp_call, mcp_tools

        tools = mcp_tools()
        results = []
        for call in calls:
            tool = tools.get(function_name(call["server"], call["tool"]))
            if tool is None or tool.acting:  # never: the tools agent records only listed read-only tools
                raise PermanentError(f"{call['server']}/{call['tool']} is not a configured read-only MCP tool.")
            answer = mcp_call(call["server"], call["tool"], dict(call["arguments"]))
            results.append({**call, **answer})
        return AgentResult(payload={"tool_results": {**envelope.payload.get("tool_results", {}), "mcp": results}})

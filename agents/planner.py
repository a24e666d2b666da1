"""Planner: reads triage's intent and writes the routing slip for the rest of the run."""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import AgentResult
from agents.envelope import Envelope, SlipEntry, slip_validate
from agents.llm.agent import LLMAgent
from project.errors import InvalidEnvelope, PermanentError

#: Agents a planner may put on a slip, in the order a plan may use them.
PLANNABLE = ("retrieval", "account", "tools", "responder", "validator", "deliver")

#: The default plan: documents and the customer's account facts looked up in
#: parallel (a chord), then a drafted, checked and delivered reply.
DEFAULT_SLIP: list[SlipEntry] = [["retrieval", "account"], "responder", "validator", "deliver"]
#: With tools: order lookups, refunds (proposed) or a hand-over to a person.
TOOLS_SLIP: list[SlipEntry] = [["retrieval", "account"], "tools", "responder", "validator", "deliver"]
TOOL_INTENTS = ("refund", "order_status", "order_change", "human")


def planner_offline(variables: dict[str, Any]) -> dict[str, Any]:
    needs_tools = variables["intent"] in TOOL_INTENTS or bool(variables["order_ids"])
    return {"slip": TOOLS_SLIP if needs_tools else DEFAULT_SLIP}


PROMPT = llm.Prompt(
    name="planner",
    version="2",
    system=(
        "You plan how a customer-service request is handled by a team of agents. "
        "Answer only with JSON matching the schema."
    ),
    template=(
        "The customer's intent is {intent}; order numbers mentioned: {order_ids}. Agents you may use: {agents}.\n"
        "Use tools when the customer names an order, asks for a refund or asks for a person.\n"
        "Write the routing slip: a list of agent names in order; a nested list runs agents in parallel "
        "and must be followed by one agent that joins them. End with validator, then deliver.\n"
        "Message: {message}"
    ),
    schema={
        "type": "object",
        "properties": {
            "slip": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            }
        },
        "required": ["slip"],
    },
    offline=planner_offline,
)


def plan_check(slip: Any) -> list[SlipEntry]:
    """A plan is usable when it is a valid slip of plannable agents ending in validator, deliver."""
    try:
        slip_validate(slip)
    except InvalidEnvelope as exc:
        raise PermanentError(f"planner wrote an invalid slip: {exc.message}") from exc
    names = [n for entry in slip for n in (entry if isinstance(entry, list) else [entry])]
    unknown = [n for n in names if n not in PLANNABLE]
    if unknown:
        raise PermanentError(f"planner named agents it may not plan: {unknown}.")
    if slip[-2:] != ["validator", "deliver"]:
        raise PermanentError("a plan must end with validator, then deliver.")
    return slip


class Planner(LLMAgent):
    name = "planner"
    version = "2"
    prompt = PROMPT

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        return {
            "intent": envelope.payload.get("intent", "other"),
            "order_ids": envelope.payload.get("order_ids", []),
            "agents": ", ".join(PLANNABLE),
            "message": envelope.payload["message"],
        }

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        slip = plan_check(data["slip"])
        return AgentResult(payload={"plan": slip}, slip=slip)

"""Planner: reads triage's intent and writes the routing slip for the rest of the run.

The schema constrains the plan: a list of at least three entries, each an agent that may be planned (`PLANNABLE`)
or a parallel entry of two different lookups (`PARALLEL`). The check (`plan_problems`): a valid slip (a parallel
entry is followed by one agent that joins it), no agent twice, ending with responder, validator, deliver, and with
tools when the customer names an order or the intent needs tools (`TOOL_INTENTS`).

Fallback (for a plan still unusable after the repair round, and for one malformed twice: it ignores the answer):
the default plan for the intent, exactly as the offline planner decides (`planner_offline`: `TOOLS_SLIP` when the
intent needs tools or the customer names an order, else `DEFAULT_SLIP`). So the planner never fails a run for what
its model says.

Remote A2A agents are put on the slip by configuration, never by the model (which cannot name them): when settings
A2A_REMOTE_ROUTES maps the intent to a remote agent, `with_remote_agent` puts it just before the responder, which
passes its answer on (the validator still checks it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents import llm
from agents.base import AgentResult
from agents.envelope import Envelope, SlipEntry, slip_validate
from agents.llm.agent import LLMAgent
from agents.llm.base import LLMRejected
from project.errors import InvalidEnvelope

#: Agents a planner may put on a slip, in the order a plan may use them.
PLANNABLE = ("retrieval", "account", "tools", "responder", "validator", "deliver")
#: Agents that may run in parallel: lookups that only add facts (an agent that may stop the run, like tools, runs
#: on its own).
PARALLEL = ("retrieval", "account")
#: How every plan ends: a drafted reply, checked, then delivered.
PLAN_END = ["responder", "validator", "deliver"]

#: The default plan: documents and the customer's account facts looked up in
#: parallel (a chord), then a drafted, checked and delivered reply.
DEFAULT_SLIP: list[SlipEntry] = [["retrieval", "account"], *PLAN_END]
#: With tools: order lookups, refunds (proposed) or a hand-over to a person.
TOOLS_SLIP: list[SlipEntry] = [["retrieval", "account"], "tools", *PLAN_END]
TOOL_INTENTS = ("refund", "order_status", "order_change", "human")


def needs_tools(*, intent: str, order_ids: list[str]) -> bool:
    """Whether a plan must use the tools agent: the customer names an order, or the intent needs a tool."""
    return intent in TOOL_INTENTS or bool(order_ids)


def with_remote_agent(slip: list[SlipEntry], *, intent: str) -> list[SlipEntry]:
    """The slip with the remote A2A agent that answers this intent (settings A2A_REMOTE_ROUTES) just before the
    responder; the slip as it is when no remote agent answers the intent."""
    remote = settings.A2A_REMOTE_ROUTES.get(intent)
    if remote is None or remote in slip or slip[-len(PLAN_END) :] != PLAN_END:
        return slip
    return [*slip[: -len(PLAN_END)], remote, *PLAN_END]


def planner_offline(variables: dict[str, Any]) -> dict[str, Any]:
    tools = needs_tools(intent=variables["intent"], order_ids=variables["order_ids"])
    return {"slip": TOOLS_SLIP if tools else DEFAULT_SLIP}


def plan_problems(slip: list[SlipEntry], *, intent: str, order_ids: list[str]) -> list[str]:
    """Why a plan (that fits the schema) is unusable, as sentences the model is shown; empty when it is usable."""
    try:
        slip_validate(slip)
    except InvalidEnvelope as exc:
        return [f"the slip is not valid: {exc.message}"]
    names = [name for entry in slip for name in (entry if isinstance(entry, list) else [entry])]
    problems = []
    unknown = [name for name in names if name not in PLANNABLE]
    if unknown:
        problems.append(f"it names agents that may not be planned: {unknown}; use only {list(PLANNABLE)}.")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        problems.append(f"it names {twice} more than once; each agent runs at most once.")
    if slip[-len(PLAN_END) :] != PLAN_END:
        problems.append(f"it must end with {', '.join(PLAN_END)}, in this order.")
    if "tools" not in names and needs_tools(intent=intent, order_ids=order_ids):
        problems.append("it must use tools: the customer names an order or the intent needs a tool.")
    return problems


def planner_check(data: dict[str, Any], variables: dict[str, Any]) -> list[str]:
    """The prompt's check: `plan_problems` for the intent and order ids the planner was shown."""
    return plan_problems(data["slip"], intent=variables["intent"], order_ids=variables["order_ids"])


PROMPT = llm.Prompt(
    name="planner",
    version="3",
    system_template=(
        "You plan how a customer-service request is handled by a team of agents. "
        "Answer only with JSON matching the schema."
    ),
    template=(
        "The customer's intent is {intent}; order numbers mentioned: {order_ids}. Agents you may use: {agents}.\n"
        "Use tools when the customer names an order, asks for a refund or asks for a person.\n"
        "Write the routing slip: a list of agent names in order, each at most once; a nested list runs "
        "{parallel} in parallel and must be followed by one agent that joins them. "
        "End with responder, validator, then deliver.\n"
        "Message: {message}"
    ),
    schema={
        "type": "object",
        "properties": {
            "slip": {
                "type": "array",
                "minItems": len(PLAN_END),
                "items": {
                    "anyOf": [
                        {"type": "string", "enum": list(PLANNABLE)},
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": list(PARALLEL)},
                            "minItems": 2,
                            "maxItems": len(PARALLEL),
                            "uniqueItems": True,
                        },
                    ]
                },
            }
        },
        "required": ["slip"],
    },
    offline=planner_offline,
    check=planner_check,
)


class Planner(LLMAgent):
    name = "planner"
    version = "3"
    prompt = PROMPT
    fallback_doc = "the default plan for the intent"
    fallback_on_malformed = True

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        return {
            "intent": envelope.payload.get("intent", "other"),
            "order_ids": envelope.payload.get("order_ids", []),
            "agents": ", ".join(PLANNABLE),
            "parallel": " and ".join(PARALLEL),
            "message": envelope.payload["message"],
        }

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        slip = with_remote_agent(data["slip"], intent=envelope.payload.get("intent", "other"))
        return AgentResult(payload={"plan": slip}, slip=slip)

    def fallback(self, envelope: Envelope, variables: dict[str, Any], rejected: LLMRejected) -> AgentResult:
        return self.result_from(envelope, planner_offline(variables))

"""Tools agent: asks the LLM which tools to call, runs the read-only ones, proposes the rest.

Order lookups run now (scoped to the customer); a refund is only proposed (the
validator checks it, deliver executes it through the ledger); escalate_to_human
stops the run for a person.
"""

from __future__ import annotations

import re
from typing import Any

from agents import llm
from agents.base import AgentResult
from agents.envelope import Envelope
from agents.llm.agent import LLMAgent
from agents.payload import RefundAction
from agents.tools.escalate import escalate_to_human
from conversations.orders import ORDER_ID, amount_format, amount_parse
from conversations.selectors import order_lookup
from project.errors import PermanentError

TOOLS = ("order_lookup", "refund", "escalate_to_human")
_AMOUNT = re.compile(r"(?:€\s*(\d+(?:[.,]\d{1,2})?))|(?:(\d+(?:[.,]\d{1,2})?)\s*(?:eur\b|euros?\b|€))", re.I)


def requested_amount(message: str) -> str | None:
    """The amount a customer's message asks for ('12,50 €' -> '12.50'), as text; None if it names none."""
    match = _AMOUNT.search(message)
    if not match:
        return None
    return (match.group(1) or match.group(2)).replace(",", ".")


def tools_offline(variables: dict[str, Any]) -> dict[str, Any]:
    intent, order_ids = variables["intent"], variables["order_ids"]
    calls: list[dict[str, Any]] = []
    if intent == "human":
        calls.append({"tool": "escalate_to_human", "arguments": {"reason": "The customer asked for a person."}})
    calls += [{"tool": "order_lookup", "arguments": {"order_id": order_id}} for order_id in order_ids]
    if intent == "refund" and len(order_ids) == 1:
        amount = requested_amount(variables["message"])
        calls.append({"tool": "refund", "arguments": {"order_id": order_ids[0], "amount": amount}})
    return {"calls": calls}


PROMPT = llm.Prompt(
    name="tools",
    version="1",
    system=(
        "You decide which tools to call for a customer of Tallow & Pine. Tools: order_lookup(order_id) reads "
        "one of the customer's orders; refund(order_id, amount) proposes a refund (amount null = the whole "
        "refundable remainder), which is checked before anything happens; escalate_to_human(reason) hands "
        "the conversation to a person. Only use order numbers the customer wrote. Answer only with JSON."
    ),
    template="Intent: {intent}\nOrder numbers in the message: {order_ids}\nMessage: {message}",
    schema={
        "type": "object",
        "properties": {
            "calls": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"tool": {"type": "string", "enum": list(TOOLS)}, "arguments": {"type": "object"}},
                    "required": ["tool", "arguments"],
                },
            }
        },
        "required": ["calls"],
    },
    offline=tools_offline,
    tools=[
        {
            "name": "order_lookup",
            "description": "Read one of the customer's own orders.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "e.g. SB-12345"}},
                "required": ["order_id"],
            },
        },
        {
            "name": "refund",
            "description": "Propose a refund; it is checked, and may need a person's approval, first.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "amount": {"type": ["string", "null"], "description": "in the order's currency; null = all"},
                },
                "required": ["order_id"],
            },
        },
        {
            "name": "escalate_to_human",
            "description": "Hand the conversation to a person.",
            "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
        },
    ],
)


class ToolsAgent(LLMAgent):
    name = "tools"
    version = "1"
    prompt = PROMPT

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        payload = envelope.payload
        return {
            "intent": payload.get("intent", "other"),
            "order_ids": payload.get("order_ids", []),
            "message": payload["message"],
        }

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        lookups: dict[str, Any] = {}
        actions: list[RefundAction] = []
        for call in data["calls"]:
            tool, arguments = call.get("tool"), call.get("arguments") or {}
            if tool == "escalate_to_human":
                return escalate_to_human(str(arguments.get("reason", "")))
            order_id = str(arguments.get("order_id", "")).upper()
            if not ORDER_ID.match(order_id):
                raise PermanentError(f"the model called {tool} with order id {order_id!r}.")
            if tool == "order_lookup":
                lookups[order_id] = order_lookup(conversation_id=envelope.conversation_id, order_id=order_id)
            elif tool == "refund":
                lookup = lookups.get(order_id) or order_lookup(
                    conversation_id=envelope.conversation_id, order_id=order_id
                )
                lookups[order_id] = lookup
                actions.append(refund_action(order_id, arguments.get("amount"), lookup))
            else:
                raise PermanentError(f"the model called an unknown tool {tool!r}.")
        return AgentResult(payload={"tool_results": {"orders": lookups}, "proposed_actions": actions})


def refund_action(order_id: str, amount: Any, lookup: dict[str, Any]) -> RefundAction:
    """A proposed refund; without an amount, the order's whole refundable remainder."""
    if amount is None and lookup.get("found"):
        amount = lookup["refundable"]
    parsed = amount_parse(amount)
    return RefundAction(
        type="refund",
        order_id=order_id,
        amount=amount_format(parsed) if parsed is not None else None,
        currency=lookup.get("currency", "EUR"),
    )

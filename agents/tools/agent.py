"""Tools agent: asks the LLM which tools to call, runs the read-only ones, proposes the rest.

Order lookups run now (scoped to the customer); a refund is only proposed (the
validator checks it, deliver executes it through the ledger); escalate_to_human
stops the run for a person. The customer's message binds the refunds' amounts,
one by one (`refund_action`) and together (`refunds_held_to`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, assert_never

from agents import llm
from agents.base import AgentResult
from agents.envelope import Envelope
from agents.llm.agent import LLMAgent
from agents.payload import RefundAction
from agents.tools.escalate import escalate_to_human
from conversations.amounts import (
    AmountReading,
    AmountStated,
    AmountUnclear,
    amount_in_argument,
    amount_in_message,
    refund_amount_requested,
)
from conversations.orders import ORDER_ID, amount_format, amount_parse
from conversations.selectors import order_lookup
from project.errors import PermanentError

TOOLS = ("order_lookup", "refund", "escalate_to_human")


def requested_amount(message: str) -> str | None:
    """The words a customer's message states an amount in ('12,50 €', 'half of it'), as the offline model passes
    them to the refund tool; None if it states none. Understanding them is `refund_action`'s job."""
    reading = amount_in_message(message)
    return None if reading is None else reading.text


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
    version = "3"
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
                actions.append(
                    refund_action(order_id, arguments.get("amount"), lookup, message=envelope.payload["message"])
                )
            else:
                raise PermanentError(f"the model called an unknown tool {tool!r}.")
        actions = refunds_held_to(actions, message=amount_in_message(envelope.payload["message"]))
        return AgentResult(payload={"tool_results": {"orders": lookups}, "proposed_actions": actions})


def refund_action(order_id: str, amount: Any, lookup: dict[str, Any], *, message: str) -> RefundAction:
    """A proposed refund of `amount` (the model's argument) on an order the customer asked about in `message`.

    No amount from the model nor in the customer's words: the order's whole refundable remainder (the policy's
    limits still apply). An amount understood exactly: that amount, in the currency named (or the order's).
    Anything else — unclear words, a model that disagrees with the customer — has no amount (`amount: None`)
    and says why in `amount_note`: the policy sends it to a person, it is never guessed.
    """
    currency = str(lookup.get("currency") or "")
    reading = refund_amount_requested(
        argument=amount_in_argument(amount), message=amount_in_message(message), order_currency=currency
    )
    match reading:
        case None:
            whole = lookup.get("refundable") if lookup.get("found") else None
            return RefundAction(type="refund", order_id=order_id, amount=whole, currency=currency)
        case AmountStated():
            return RefundAction(
                type="refund",
                order_id=order_id,
                amount=amount_format(reading.amount),
                currency=reading.currency or currency,
            )
        case AmountUnclear():
            return RefundAction(
                type="refund", order_id=order_id, amount=None, currency=currency, amount_note=reading.sentence()
            )
        case _:
            assert_never(reading)


def refunds_held_to(actions: list[RefundAction], *, message: AmountReading) -> list[RefundAction]:
    """The customer's words bind the model's refunds together, not only one by one: when the message states an
    amount, all the refunds proposed in the run (however many calls, on however many orders) must add up to exactly
    that amount, in its currency. Otherwise none keeps an amount (`amount: None`, with why in `amount_note`): a
    person decides. A model that calls refund twice with the customer's "€50" proposes 100, not 50; and one amount
    is never applied once per order.
    """
    if not isinstance(message, AmountStated) or not actions:
        return actions
    amounts = [amount_parse(action["amount"]) for action in actions]
    currencies = {action["currency"] for action in actions}
    asked = message.currency or actions[0]["currency"]
    total = sum((amount for amount in amounts if amount is not None), Decimal("0"))
    if None not in amounts and currencies == {asked} and total == message.amount:
        return actions
    together = f" ({amount_format(total)} {'/'.join(sorted(currencies))})" if None not in amounts else ""
    why = f"the model's refunds together{together} are not the amount the customer asked for"
    note = AmountUnclear(message.text, why).sentence()
    return [
        RefundAction(
            type="refund",
            order_id=action["order_id"],
            amount=None,
            currency=action["currency"],
            amount_note=action.get("amount_note") or note,
        )
        for action in actions
    ]

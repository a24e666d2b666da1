"""Tools agent: asks the LLM which tools to call, runs the read-only ones, proposes the rest.

With MCP servers configured (settings MCP_SERVERS), their tools are offered too (`tools_prompt`): a read-only MCP
call is recorded in `mcp_calls` and run by the `mcp` step the run is handed to (agents/tools/mcp_agent.py); an acting
one is proposed in `proposed_tool_actions`, like a refund.

Order lookups run now (scoped to the customer); a refund is only proposed (the
validator checks it, deliver executes it through the ledger); escalate_to_human
stops the run for a person. The customer's message binds the refunds' amounts,
one by one (`refund_action`) and together (`refunds_held_to`).

Function calling constrains each call: a known tool, an order id of the one order-id shape
(`conversations.orders.ORDER_ID`), an amount that is a string, a number or null, a reason that is not empty. The
check (`call_problems`): every order id is one the customer's message names ("only use order numbers the customer
wrote"); an MCP tool's arguments may name only orders the customer wrote that are the customer's own (any argument
named like an order id, any value shaped like one: `agents.tools.mcp_agent.argument_order_ids`), checked at the
shop, so that another customer's order is never read or acted on through a server.

Fallback (for an answer still unusable after the repair round, and for one malformed twice): the calls that are
usable are run and the others dropped (unknown tools, malformed arguments, order ids the customer did not write);
each order the customer names that no usable call looked up is looked up (read-only, scoped to the customer, so
the responder states facts rather than "not found"), and a customer who asked for a person (intent `human`) is
handed to one. A fallback never proposes a refund the model did not usably propose: money moves only on a usable
call, checked by the validator and the refund policy. If nothing is left the run goes on without tool results; it
never fails for what the model said.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, assert_never

from django.conf import settings

from agents import llm
from agents.base import AgentResult
from agents.envelope import Envelope
from agents.llm.agent import LLMAgent
from agents.llm.base import LLMRejected, Prompt, tool_call_problems
from agents.llm.schema import schema_errors
from agents.payload import McpAction, McpCall, RefundAction
from agents.tools.escalate import escalate_to_human
from agents.tools.mcp_agent import argument_order_ids, orders_owned
from conversations.amounts import (
    AmountReading,
    AmountStated,
    AmountUnclear,
    amount_in_argument,
    amount_in_message,
    refund_amount_requested,
)
from conversations.orders import ORDER_ID_SCHEMA_PATTERN, amount_format, amount_parse, order_ids_in
from conversations.selectors import conversation_customer_id, order_lookup

TOOLS = ("order_lookup", "refund", "escalate_to_human")
#: The hand-over to a person when the customer asked for one (the offline model's, and the fallback's).
ESCALATE_PERSON_ASKED: dict[str, Any] = {
    "tool": "escalate_to_human",
    "arguments": {"reason": "The customer asked for a person."},
}


def requested_amount(message: str) -> str | None:
    """The words a customer's message states an amount in ('12,50 €', 'half of it'), as the offline model passes
    them to the refund tool; None if it states none. Understanding them is `refund_action`'s job."""
    reading = amount_in_message(message)
    return None if reading is None else reading.text


def tools_offline(variables: dict[str, Any]) -> dict[str, Any]:
    """The offline model's calls: a person when asked for, a lookup of every order named, and the refund asked for
    when the intent is a refund of one order."""
    intent, order_ids = variables["intent"], variables["order_ids"]
    calls: list[dict[str, Any]] = []
    if intent == "human":
        calls.append(ESCALATE_PERSON_ASKED)
    calls += [{"tool": "order_lookup", "arguments": {"order_id": order_id}} for order_id in order_ids]
    if intent == "refund" and len(order_ids) == 1:
        amount = requested_amount(variables["message"])
        calls.append({"tool": "refund", "arguments": {"order_id": order_ids[0], "amount": amount}})
    return {"calls": calls}


def call_problems(
    call: dict[str, Any], *, allowed: set[str], owned: set[str] | None = None, path: str = "$"
) -> list[str]:
    """Why one call (of a known tool, with arguments that fit its parameters) is unusable: an order id the customer
    did not write; for an MCP tool, any order id its arguments name (`argument_order_ids`) that the customer did not
    write or that is not one of the customer's own orders (`owned`)."""
    if is_mcp(call):
        return [
            f"{path} uses order {order_id}, which "
            + ("the customer did not write" if order_id not in allowed else "is not one of this customer's orders")
            + f"; use only {', '.join(sorted(allowed & (owned or set()))) or 'no order number'}."
            for order_id in sorted(argument_order_ids(call["arguments"]) - (allowed & (owned or set())))
        ]
    order_id = call["arguments"].get("order_id")
    if order_id is None or order_id in allowed:
        return []
    return [
        f"{path} uses order {order_id}, which the customer did not write; use only "
        f"{', '.join(sorted(allowed)) or 'no order number'}."
    ]


def order_ids_allowed(variables: dict[str, Any]) -> set[str]:
    """The order ids the model may use: those the customer's message names (triage's are among them)."""
    return set(order_ids_in(variables["message"])) | set(variables["order_ids"])


def is_mcp(call: Any) -> bool:
    return isinstance(call, dict) and str(call.get("tool", "")).startswith("mcp__")


def mcp_orders_owned(calls: list[Any], variables: dict[str, Any]) -> set[str]:
    """The order ids the MCP calls name that are the customer's own (one look-up at the shop; none without MCP calls
    naming orders)."""
    named = [argument_order_ids(call.get("arguments")) for call in calls if is_mcp(call)]
    return orders_owned(customer_id=variables.get("customer_id", ""), order_ids=set().union(*named))


def tools_check(data: dict[str, Any], variables: dict[str, Any]) -> list[str]:
    """The prompt's check: `call_problems` of every call."""
    allowed, owned = order_ids_allowed(variables), mcp_orders_owned(data["calls"], variables)
    return [
        problem
        for index, call in enumerate(data["calls"])
        for problem in call_problems(call, allowed=allowed, owned=owned, path=f"$.calls[{index}]")
    ]


def usable_calls(data: Any, variables: dict[str, Any], prompt: Prompt | None = None) -> list[dict[str, Any]]:
    """The calls of an answer (parsed, perhaps malformed) that fit the schema, their tool's parameters and the
    check (of `prompt`, by default the prompt without MCP tools); the others are dropped."""
    prompt = prompt or PROMPT
    calls = data.get("calls") if isinstance(data, dict) else None
    if not isinstance(calls, list):
        return []
    allowed = order_ids_allowed(variables)
    call_schema = prompt.schema["properties"]["calls"]["items"] if prompt.schema else CALL_SCHEMA
    fitting = [call for call in calls if not schema_errors(call, call_schema) and not tool_call_problems(prompt, call)]
    owned = mcp_orders_owned(fitting, variables)
    return [call for call in fitting if not call_problems(call, allowed=allowed, owned=owned)]


def fallback_calls(usable: list[dict[str, Any]], variables: dict[str, Any]) -> list[dict[str, Any]]:
    """The usable calls, with a lookup of every order triage found that none looks up, and a hand-over to a person
    when the customer asked for one; never a refund of its own."""
    looked_up = {call["arguments"]["order_id"] for call in usable if call["tool"] == "order_lookup"}
    lookups = [
        {"tool": "order_lookup", "arguments": {"order_id": order_id}}
        for order_id in variables["order_ids"]
        if order_id not in looked_up
    ]
    escalates = any(call["tool"] == "escalate_to_human" for call in usable)
    person = [] if escalates or variables["intent"] != "human" else [ESCALATE_PERSON_ASKED]
    return person + lookups + usable


#: One call of the answer, as the tools agent reads it (its arguments are checked against its tool's parameters).
CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tool": {"type": "string", "enum": list(TOOLS)}, "arguments": {"type": "object"}},
    "required": ["tool", "arguments"],
}
ORDER_ID_PARAMETER: dict[str, Any] = {
    "type": "string",
    "pattern": ORDER_ID_SCHEMA_PATTERN,
    "description": "e.g. SB-12345",
}

PROMPT = llm.Prompt(
    name="tools",
    version="2",
    system_template=(
        "You decide which tools to call for a customer of {shop}. Tools: order_lookup(order_id) reads "
        "one of the customer's orders; refund(order_id, amount) proposes a refund (amount null = the whole "
        "refundable remainder), which is checked before anything happens; escalate_to_human(reason) hands "
        "the conversation to a person. Only use order numbers the customer wrote. Answer only with JSON."
    ),
    template="Intent: {intent}\nOrder numbers in the message: {order_ids}\nMessage: {message}",
    schema={"type": "object", "properties": {"calls": {"type": "array", "items": CALL_SCHEMA}}, "required": ["calls"]},
    offline=tools_offline,
    tools=[
        {
            "name": "order_lookup",
            "description": "Read one of the customer's own orders.",
            "parameters": {"type": "object", "properties": {"order_id": ORDER_ID_PARAMETER}, "required": ["order_id"]},
        },
        {
            "name": "refund",
            "description": "Propose a refund; it is checked, and may need a person's approval, first.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": ORDER_ID_PARAMETER,
                    "amount": {
                        "type": ["string", "number", "null"],
                        "description": "in the order's currency, e.g. '12.50' or '12.50 EUR'; null = all",
                    },
                },
                "required": ["order_id"],
            },
        },
        {
            "name": "escalate_to_human",
            "description": "Hand the conversation to a person.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "minLength": 1}},
                "required": ["reason"],
            },
        },
    ],
    check=tools_check,
)


def tools_prompt(mcp_specs: list[dict[str, Any]]) -> Prompt:
    """The prompt with the configured MCP servers' tools besides the shop's own (PROMPT itself when there are none):
    the model may call only the tools listed, each checked against its server's schema."""
    if not mcp_specs:
        return PROMPT
    names = [*TOOLS, *(spec["name"] for spec in mcp_specs)]
    call_schema = {
        **CALL_SCHEMA,
        "properties": {**CALL_SCHEMA["properties"], "tool": {"type": "string", "enum": names}},
    }
    return dataclasses.replace(
        PROMPT,
        system_template=PROMPT.system_template
        + " Tools named mcp__<server>__<tool> come from the shop's systems: call one only when its description fits "
        "the question; one that acts on the world is only proposed, and checked before anything happens.",
        schema={**(PROMPT.schema or {}), "properties": {"calls": {"type": "array", "items": call_schema}}},
        tools=[*(PROMPT.tools or []), *mcp_specs],
    )


def mcp_specs() -> list[dict[str, Any]]:
    """The function specs of the configured MCP servers' tools (none configured: none, and no `mcp` import)."""
    if not settings.MCP_SERVERS:
        return []
    from agents.tools.mcp import mcp_tools

    return [tool.spec() for tool in mcp_tools().values()]


def mcp_split(calls: list[dict[str, Any]]) -> tuple[list[McpCall], list[McpAction]]:
    """The model's MCP calls (of listed tools only: the prompt's check refused any other): read-only ones to run
    now (by the `mcp` step), acting ones to propose."""
    if not calls:
        return [], []
    from agents.tools.mcp import mcp_tools

    tools = mcp_tools()
    reads: list[McpCall] = []
    acts: list[McpAction] = []
    for call in calls:
        tool = tools.get(call["tool"])
        if tool is None:
            continue  # no longer listed: dropped, never run
        arguments = dict(call["arguments"])
        if tool.acting:
            acts.append(McpAction(type="mcp", server=tool.server, tool=tool.name, arguments=arguments))
        else:
            reads.append(McpCall(server=tool.server, tool=tool.name, arguments=arguments))
    return reads, acts


class ToolsAgent(LLMAgent):
    name = "tools"
    version = "3"
    prompt = PROMPT
    fallback_doc = "the usable calls only, with lookups of the orders the customer named"
    fallback_on_malformed = True

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        payload = envelope.payload
        return {
            "intent": payload.get("intent", "other"),
            "order_ids": payload.get("order_ids", []),
            "message": payload["message"],
            # Whose orders the MCP tools may be given (`call_problems`); not shown to the model.
            "customer_id": conversation_customer_id(conversation_id=envelope.conversation_id),
        }

    def prompt_for(self, envelope: Envelope) -> Prompt:
        """The prompt with the configured MCP servers' tools (their lists cached per worker)."""
        return tools_prompt(mcp_specs())

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        """Run the calls of a usable answer (each fits its tool's parameters and the check); MCP calls are recorded
        for the `mcp` step (read-only) or proposed (acting)."""
        lookups: dict[str, Any] = {}
        actions: list[RefundAction] = []
        mcp_reads, mcp_acts = mcp_split([call for call in data["calls"] if call["tool"].startswith("mcp__")])
        for call in data["calls"]:
            tool, arguments = call["tool"], call["arguments"]
            if tool.startswith("mcp__"):
                continue
            if tool == "escalate_to_human":
                return escalate_to_human(str(arguments["reason"]))
            order_id = str(arguments["order_id"])
            if order_id not in lookups:
                lookups[order_id] = order_lookup(conversation_id=envelope.conversation_id, order_id=order_id)
            if tool == "refund":
                actions.append(
                    refund_action(
                        order_id, arguments.get("amount"), lookups[order_id], message=envelope.payload["message"]
                    )
                )
        actions = refunds_held_to(actions, message=amount_in_message(envelope.payload["message"]))
        result = AgentResult(payload={"tool_results": {"orders": lookups}, "proposed_actions": actions})
        if mcp_acts:
            result.payload["proposed_tool_actions"] = mcp_acts
        if mcp_reads:
            result.payload["mcp_calls"] = mcp_reads
            result.handoff = ["mcp"]  # the read-only calls run in a step of their own (retries, then review)
        return result

    def fallback(self, envelope: Envelope, variables: dict[str, Any], rejected: LLMRejected) -> AgentResult:
        calls = fallback_calls(usable_calls(rejected.data, variables, self.prompt_for(envelope)), variables)
        return self.result_from(envelope, {"calls": calls})


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

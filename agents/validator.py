"""Validator: checks the draft reply and the proposed actions before they reach anyone.

Rule checks always apply: facts in the reply match the sources exactly, each
sentence is supported, no staff-only note and no other customer's order details
leak, and the proposed actions together are within the refund policy. The LLM's verdict can only add
reasons. A failed check escalates the run to a person with the reasons; a pass
approves the proposed actions for deliver to execute.
"""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import Agent, AgentResult, Outcome, Queue
from agents.envelope import Envelope
from agents.grounding import internal_note_check, reply_check
from agents.payload import Verdict
from agents.tools.refunds import refund_check
from conversations.orders import order_ids_in
from conversations.refunds import RefundAuthority, problems_gravest
from conversations.selectors import conversation_customer_id, orders_of_other_customers


def validator_offline(variables: dict[str, Any]) -> dict[str, Any]:
    # The offline verdict is the rule checks' verdict.
    return {"pass": True, "reasons": []}


PROMPT = llm.Prompt(
    name="validator",
    version="2",
    system=(
        "You check a customer-service reply and its proposed actions before they are sent or executed. "
        "It passes only if every statement is supported by the sources, it promises nothing outside "
        "policy, and it reveals no other customer's data or internal notes. Answer only with JSON "
        "matching the schema."
    ),
    template="Reply: {reply}\nProposed actions: {actions}\nSources: {sources}",
    schema={
        "type": "object",
        "properties": {"pass": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}},
        "required": ["pass", "reasons"],
    },
    offline=validator_offline,
)


def leak_check(reply: str, customer_id: str) -> list[str]:
    """Reasons if the reply describes an order of another customer."""
    reasons = []
    for order in orders_of_other_customers(order_ids=order_ids_in(reply), customer_id=customer_id):
        if order.description.lower() in reply.lower() or str(order.total) in reply:
            reasons.append(f"leak: the reply describes order {order.id}, which is another customer's.")
    return reasons


class Validator(Agent):
    name = "validator"
    version = "2"
    queue = Queue.LLM

    def handle(self, envelope: Envelope) -> AgentResult:
        payload = envelope.payload
        draft = payload.get("draft", "")
        actions = payload.get("proposed_actions", [])
        customer_id = conversation_customer_id(conversation_id=envelope.conversation_id)

        reasons = reply_check(draft, payload).reasons + internal_note_check(draft) + leak_check(draft, customer_id)
        # The refund policy over all of the run's refunds together, as agents may execute them (no person).
        action_problems = refund_check(customer_id=customer_id, actions=actions, authority=RefundAuthority.AUTOMATIC)
        usage = None
        if not reasons:
            response = llm.complete(
                PROMPT,
                {
                    "reply": draft,
                    "actions": actions,
                    "sources": {"passages": payload.get("passages", []), "tools": payload.get("tool_results", {})},
                },
                agent=self.name,
            )
            usage = response.usage
            if not response.data["pass"]:
                reasons += [f"llm: {r}" for r in response.data["reasons"]] or ["llm: rejected without a reason."]

        all_reasons = reasons + [f"{problem.code.value}: {problem.text}" for problem in action_problems]
        verdict: Verdict = {"pass": not all_reasons, "reasons": all_reasons}
        result = AgentResult(payload={"verdict": verdict})
        if usage is not None:
            result.usage = usage
        if not all_reasons:
            result.payload["approved_actions"] = actions
            return result
        result.outcome = Outcome.ESCALATE
        if reasons:
            result.reason = "validation_failed"
        else:
            # The gravest problem's code is the run's reason (conversations.refunds.RefundProblemCode).
            result.reason = problems_gravest(action_problems).value
        return result

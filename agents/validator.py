"""Validator: checks the draft reply and the proposed actions before they reach anyone.

Rule checks always apply: facts in the reply match the sources exactly (never the
customer's own message), each sentence is supported, every sentence saying money
moves or we act (any tense or voice: "we will refund", "your refund has been issued")
is backed by a passage, a proposed action or a refund the order lookup shows
(`agents.commitments`), no staff-only note and no prompt is repeated, the
reply says nothing about an order that is not the customer's beyond "not found",
and the proposed actions together are within the refund policy. The LLM's verdict can only add
reasons. A failed check escalates the run to a person with the reasons (for
staff: customers see only a public reason, `orchestration.public`); a pass
approves the proposed actions for deliver to execute.
"""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import Agent, AgentResult, Outcome, Queue
from agents.envelope import Envelope
from agents.grounding import (
    facts,
    internal_note_check,
    prompt_leak_check,
    reply_body,
    reply_check,
    sentences,
)
from agents.knowledge import tokenize
from agents.llm.agent import LLMAgent
from agents.payload import Verdict
from agents.registry import agents_all
from agents.tools.refunds import refund_check
from conversations.orders import ORDER_IDS_IN_TEXT, order_ids_in
from conversations.refunds import RefundAuthority, problems_gravest
from conversations.selectors import conversation_customer_id, order_lookup


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


#: All a sentence may say about an order that is not the customer's: that it was not found.
NOT_FOUND_TERMS = frozenset(
    tokenize(
        "Sorry, unfortunately I'm afraid I cannot, can't, couldn't or was unable to find, locate, see or look up "
        "that order number on your account or in our system; it is not in our records, does not exist or is "
        "unknown: please check the number and try again."
    )
)


def leak_check(reply: str, conversation_id: str) -> list[str]:
    """Reasons if the reply says anything about an order that is not the customer's, beyond that it was not
    found. Whether such an order is someone else's or no one's is never looked at, so neither the outcome nor
    a reason depends on it: guessing order numbers tells a customer nothing."""
    own = {
        order_id
        for order_id in order_ids_in(reply)
        if order_lookup(conversation_id=conversation_id, order_id=order_id)["found"]
    }
    reasons = []
    for sentence in sentences(reply_body(reply)):
        foreign = [order_id for order_id in order_ids_in(sentence) if order_id not in own]
        if not foreign:
            continue
        rest = ORDER_IDS_IN_TEXT.sub(" ", sentence)
        if facts(rest) or any(term not in NOT_FOUND_TERMS for term in tokenize(rest)):
            reasons.append(
                f"foreign_order: the reply says more than 'not found' about {', '.join(foreign)}, "
                "which is not on this customer's account."
            )
    return reasons


def prompts_all() -> list[tuple[str, str]]:
    """Every agent's system prompt, as (label, text), for the prompt-leak check."""
    prompts = {
        agent.prompt.label: agent.prompt.system for agent in agents_all().values() if isinstance(agent, LLMAgent)
    }
    return sorted({**prompts, PROMPT.label: PROMPT.system}.items())


class Validator(Agent):
    name = "validator"
    version = "3"
    queue = Queue.LLM

    def handle(self, envelope: Envelope) -> AgentResult:
        payload = envelope.payload
        draft = payload.get("draft", "")
        actions = payload.get("proposed_actions", [])
        customer_id = conversation_customer_id(conversation_id=envelope.conversation_id)

        reasons = reply_check(draft, payload).reasons + internal_note_check(draft)
        reasons += prompt_leak_check(draft, prompts_all()) + leak_check(draft, envelope.conversation_id)
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

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

Its model's verdict: the schema asks for `pass` and `reasons` (sentences, not empty); the check: a failing verdict
says why, and a passing one has no reasons (a verdict that is both is no verdict). A verdict still unusable after
the repair round is asked for once more afresh. Fallback (for one still unusable then): fail closed — an unusable
verdict never approves anything; the run goes to review with reason `validation_failed` and the reason
`llm_unusable: ...` for the reviewer, recorded on the step and logged. A verdict still malformed (not JSON, not the
schema) fails the try instead (`LLMMalformedOutput`), retried like a provider error: a flaky answer is asked again,
not handed to a person.
"""

from __future__ import annotations

from typing import Any, assert_never

from agents import llm
from agents.base import Agent, AgentResult, Outcome, Queue, Usage
from agents.envelope import Envelope
from agents.grounding import (
    facts,
    internal_note_check,
    prompt_leak_check,
    reply_body,
    reply_check,
    sentences,
)
from agents.llm.agent import LLMAgent, fallback_record, usage_sum
from agents.llm.base import Fault, LLMRejected, LLMResponse
from agents.payload import LLMFallback, Payload, Verdict
from agents.registry import agents_all
from agents.tools.mcp_agent import MCP_REVIEW, tool_action_problems
from agents.tools.refunds import refund_check
from conversations.orders import ORDER_IDS_IN_TEXT, order_ids_in
from conversations.refunds import RefundAuthority, problems_gravest
from conversations.selectors import conversation_customer_id, order_lookup
from knowledge.text import tokenize


def validator_offline(variables: dict[str, Any]) -> dict[str, Any]:
    # The offline verdict is the rule checks' verdict.
    return {"pass": True, "reasons": []}


def verdict_check(data: dict[str, Any], variables: dict[str, Any]) -> list[str]:
    """Why a verdict (that fits the schema) is unusable: a failing one without reasons, a passing one with some."""
    if not data["pass"] and not data["reasons"]:
        return ["$.reasons is empty: a verdict that fails the reply must say why."]
    if data["pass"] and data["reasons"]:
        return ["$.reasons must be empty when the reply passes; if any reason stands, set pass to false."]
    return []


#: What stands in for an unusable verdict: it fails the reply.
FAIL_CLOSED = "fail closed: the run goes to review"


PROMPT = llm.Prompt(
    name="validator",
    version="3",
    system_template=(
        "You check a customer-service reply and its proposed actions before they are sent or executed. "
        "It passes only if every statement is supported by the sources, it promises nothing outside "
        "policy, and it reveals no other customer's data or internal notes. Answer only with JSON "
        "matching the schema."
    ),
    template="Reply: {reply}\nProposed actions: {actions}\nSources: {sources}",
    schema={
        "type": "object",
        "properties": {
            "pass": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"type": "string", "minLength": 1}},
        },
        "required": ["pass", "reasons"],
    },
    offline=validator_offline,
    check=verdict_check,
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


def llm_verdict(payload: Payload, draft: str, actions: list[Any]) -> tuple[list[str], Usage, dict[str, LLMFallback]]:
    """The model's reasons against the reply (none when it passes), the calls' usage, and the run's `llm_fallbacks`
    (with the validator's when its verdict was unusable: then it fails closed, with a reason saying so).

    A verdict still unusable after the repair round is asked for once more afresh (where answers vary) before the
    fallback; one still malformed then fails the try (`LLMMalformedOutput`: retried like a provider error)."""
    sources: dict[str, Any] = {"passages": payload.get("passages", []), "tools": payload.get("tool_results", {})}
    if payload.get("remote_answers"):
        sources["remote_agents"] = payload["remote_answers"]
    variables = {"reply": draft, "actions": actions, "sources": sources}
    response = llm.complete(PROMPT, variables, agent=Validator.name)
    spent = [response.usage]
    if isinstance(response, LLMRejected) and llm.answers_vary():
        response = llm.complete(PROMPT, variables, agent=Validator.name)
        spent.append(response.usage)
    match response:
        case LLMResponse():
            return [f"llm: {reason}" for reason in response.data["reasons"]], usage_sum(spent), {}
        case LLMRejected():
            if response.problems.fault == Fault.MALFORMED:
                raise response.error()
            fallbacks = fallback_record(payload, agent=Validator.name, rejected=response, fallback=FAIL_CLOSED)
            reason = f"llm_unusable: the model gave no usable verdict ({response.problems.text}); a person checks it."
            return [reason], usage_sum(spent), fallbacks
        case _:
            assert_never(response)


class Validator(Agent):
    name = "validator"
    version = "5"
    queue = Queue.LLM
    max_retries = LLMAgent.max_retries  # provider errors and malformed verdicts, as for the other LLM agents
    prompt = PROMPT
    """The prompt it completes (for its checks that need a model)."""

    def handle(self, envelope: Envelope) -> AgentResult:
        payload = envelope.payload
        draft = payload.get("draft", "")
        actions = payload.get("proposed_actions", [])
        tool_actions = payload.get("proposed_tool_actions", [])
        customer_id = conversation_customer_id(conversation_id=envelope.conversation_id)

        reasons = reply_check(draft, payload).reasons + internal_note_check(draft)
        reasons += prompt_leak_check(draft, prompts_all()) + leak_check(draft, envelope.conversation_id)
        # The refund policy over all of the run's refunds together, as agents may execute them (no person).
        action_problems = refund_check(customer_id=customer_id, actions=actions, authority=RefundAuthority.AUTOMATIC)
        # Acting MCP tools: only configured ones, and a "review" one only on a person's approval.
        tool_problems = tool_action_problems(tool_actions, by_person=False)
        usage: Usage | None = None
        fallbacks: dict[str, LLMFallback] = {}
        if not reasons:
            llm_reasons, usage, fallbacks = llm_verdict(payload, draft, [*actions, *tool_actions])
            reasons += llm_reasons

        all_reasons = reasons + [f"{problem.code.value}: {problem.text}" for problem in action_problems] + tool_problems
        verdict: Verdict = {"pass": not all_reasons, "reasons": all_reasons}
        result = AgentResult(payload={"verdict": verdict})
        if fallbacks:
            result.payload["llm_fallbacks"] = fallbacks
        if usage is not None:
            result.usage = usage
        if not all_reasons:
            result.payload["approved_actions"] = actions
            if tool_actions:
                result.payload["approved_tool_actions"] = tool_actions
            return result
        result.outcome = Outcome.ESCALATE
        if reasons:
            result.reason = "validation_failed"
        elif not action_problems:
            result.reason = MCP_REVIEW
        else:
            # The gravest problem's code is the run's reason (conversations.refunds.RefundProblemCode).
            result.reason = problems_gravest(action_problems).value
        return result

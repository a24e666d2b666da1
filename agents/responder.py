"""Responder: drafts the reply from the retrieved passages, tool results and account facts.

The schema asks for a reply and the titles of the passages it cites. The check: the reply says something (an empty
one, or one with only its `Source:` line, cannot be sent). Grounding, promises and leaks are the validator's.

Before any fallback the prompt is asked once more afresh (`fresh_asks`: a new conversation, not a repair),
since a person is the only fallback. Fallback (for a reply still empty after that): none that is safe — a fixed
reply would be sent as if it answered the question, and no sentence is grounded in nothing — so the run goes to a
person: it escalates to the review queue with reason `reply_unusable` (the customer reads that a member of the
support team is checking and will reply; the reviewer writes the reply). An answer still malformed after that (not
JSON, not the schema) fails the try (`LLMMalformedOutput`): it is retried like a provider error, and after the
step's retries dead-lettered with the raw answers — a model or configuration fault for operators, not a question
for a reviewer.

A remote A2A agent's answer (`remote_answers`, `agents.remote`) is the reply: the responder passes its text on as the
draft, asking no model (the remote system drafted it; the validator checks it like any draft). An empty answer is no
answer: the responder drafts as usual.
"""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import AgentResult, Outcome
from agents.envelope import Envelope
from agents.grounding import reply_body, sentences
from agents.llm.agent import LLMAgent
from agents.llm.base import LLMRejected
from agents.payload import Payload
from knowledge.text import query_terms, tokenize

MAX_SENTENCES = 3
#: The run's reason when no usable reply came: a person writes it.
REPLY_UNUSABLE = "reply_unusable"


def order_sentences(order_ids: list[str], lookups: dict[str, Any], actions: list[dict[str, Any]]) -> list[str]:
    """What we can say about the orders the customer named: only their own, found by lookup."""
    lines = []
    refunds = {a["order_id"]: a for a in actions if a.get("type") == "refund"}
    for order_id in order_ids:
        order = lookups.get(order_id) or {"found": False}
        if not order["found"]:
            lines.append(f"I could not find order {order_id} on your account.")
        elif order_id in refunds and refunds[order_id].get("amount"):
            refund = refunds[order_id]
            lines.append(
                f"Your refund of {refund['amount']} {refund['currency']} for order {order_id} "
                f"({order['description']}) is confirmed."
            )
        else:
            lines.append(f"Your order {order_id} ({order['description']}) is {order['status'].replace('_', ' ')}.")
    return lines


def passage_sentences(question: str, passages: list[dict[str, Any]]) -> list[str]:
    """The passage sentences that share most words with the question, in reading order."""
    wanted = query_terms(question)
    ranked = []
    for p_index, passage in enumerate(passages[:2]):
        for s_index, sentence in enumerate(sentences(passage["text"])):
            overlap = len(wanted & set(tokenize(sentence)))
            if overlap:
                ranked.append((overlap - p_index * 0.5, p_index, s_index, sentence))
    best = sorted(ranked, key=lambda r: (-r[0], r[1], r[2]))[:MAX_SENTENCES]
    return [r[3] for r in sorted(best, key=lambda r: (r[1], r[2]))]


def responder_offline(variables: dict[str, Any]) -> dict[str, Any]:
    passages = variables["passages"]
    lines = order_sentences(variables["order_ids"], variables["tool_results"].get("orders", {}), variables["actions"])
    chosen = passage_sentences(variables["message"], passages)
    lines += chosen
    if not lines:
        return {"reply": "", "sources": []}
    used = [p["title"] for p in passages[:2] if any(s in p["text"] for s in chosen)]
    reply = " ".join(lines)
    if used:
        reply += "\n\nSource: " + "; ".join(dict.fromkeys(used))
    return {"reply": reply, "sources": list(dict.fromkeys(used))}


def responder_check(data: dict[str, Any], variables: dict[str, Any]) -> list[str]:
    """Why a responder answer (that fits the schema) is unusable: its reply says nothing."""
    if reply_body(data["reply"]).strip():
        return []
    return [
        "$.reply is empty: write the answer to the customer from the passages, tool results and proposed actions. "
        "If nothing given answers the question, reply with an empty string again and a person will answer."
    ]


PROMPT = llm.Prompt(
    name="responder",
    version="3",
    system_template=(
        "You are {persona} of {shop}, {shop_description}.{voice} Answer the customer "
        "using only the passages, tool results and proposed actions given. Never invent order numbers, "
        "amounts or policies, and never describe an order the tool results did not find. If a refund is "
        "proposed, say it is confirmed with its amount. If nothing given answers the question, reply with "
        "an empty string: a person will answer instead. "
        "End the reply with a line 'Source: <title>; <title>' naming the passages used. "
        "Answer only with JSON matching the schema."
    ),
    template=(
        "Customer message: {message}\n"
        "Order numbers mentioned: {order_ids}\n"
        "Passages: {passages}\n"
        "Tool results: {tool_results}\n"
        "Proposed actions: {actions}\n"
        "Earlier messages: {history}"
    ),
    schema={
        "type": "object",
        "properties": {"reply": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}},
        "required": ["reply", "sources"],
    },
    offline=responder_offline,
    check=responder_check,
)


def remote_reply(payload: Payload) -> str:
    """The remote agents' answers as one reply ('' when none answered with text)."""
    answers = payload.get("remote_answers", {})
    return "\n\n".join(text for answer in answers.values() if (text := answer["text"].strip()))


class Responder(LLMAgent):
    name = "responder"
    version = "3"
    prompt = PROMPT
    fallback_doc = "no reply: the run goes to a person (reply_unusable)"
    fresh_asks = 1

    def handle(self, envelope: Envelope) -> AgentResult:
        reply = remote_reply(envelope.payload)
        if reply:
            return AgentResult(payload={"draft": reply, "draft_sources": []})
        return super().handle(envelope)

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        payload = envelope.payload
        return {
            "message": payload["message"],
            "order_ids": payload.get("order_ids", []),
            "passages": payload.get("passages", []),
            "tool_results": payload.get("tool_results", {}),
            "actions": payload.get("proposed_actions", []),
            "history": payload.get("history", []),
        }

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        return AgentResult(payload={"draft": data["reply"], "draft_sources": data["sources"]})

    def fallback(self, envelope: Envelope, variables: dict[str, Any], rejected: LLMRejected) -> AgentResult:
        return AgentResult(payload={"draft": "", "draft_sources": []}, outcome=Outcome.ESCALATE, reason=REPLY_UNUSABLE)

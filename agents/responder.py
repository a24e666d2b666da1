"""Responder: drafts the reply from the retrieved passages and the customer's account facts."""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import Agent, AgentResult, Queue
from agents.envelope import Envelope
from agents.grounding import sentences
from agents.knowledge import query_terms, tokenize

MAX_SENTENCES = 3


def order_sentences(order_ids: list[str], account: dict[str, Any]) -> list[str]:
    orders = {o["id"]: o for o in account.get("orders", [])}
    lines = []
    for order_id in order_ids:
        order = orders.get(order_id)
        if order is None:
            lines.append(f"I could not find order {order_id} on your account.")
        else:
            status = order["status"].replace("_", " ")
            lines.append(f"Your order {order_id} ({order['description']}) is {status}.")
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
    lines = order_sentences(variables["order_ids"], variables["account"])
    chosen = passage_sentences(variables["message"], passages)
    lines += chosen
    if not lines:
        return {"reply": "", "sources": []}
    used = [p["title"] for p in passages[:2] if any(s in p["text"] for s in chosen)]
    reply = " ".join(lines)
    if used:
        reply += "\n\nSource: " + "; ".join(dict.fromkeys(used))
    return {"reply": reply, "sources": list(dict.fromkeys(used))}


PROMPT = llm.Prompt(
    name="responder",
    version="1",
    system=(
        "You are the support assistant of Tallow & Pine, an online outdoor shop. Answer the customer "
        "using only the passages and account facts given. Never invent order numbers, amounts or "
        "policies. If they do not answer the question, reply with an empty string. End the reply with "
        "a line 'Source: <title>; <title>' naming the passages used. Answer only with JSON matching the schema."
    ),
    template=(
        "Customer message: {message}\n"
        "Order numbers mentioned: {order_ids}\n"
        "Passages: {passages}\n"
        "Account facts: {account}\n"
        "Earlier messages: {history}"
    ),
    schema={
        "type": "object",
        "properties": {"reply": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}},
        "required": ["reply", "sources"],
    },
    offline=responder_offline,
)


class Responder(Agent):
    name = "responder"
    version = "1"
    queue = Queue.LLM

    def handle(self, envelope: Envelope) -> AgentResult:
        payload = envelope.payload
        response = llm.complete(
            PROMPT,
            {
                "message": payload["message"],
                "order_ids": payload.get("order_ids", []),
                "passages": payload.get("passages", []),
                "account": payload.get("account", {}),
                "history": payload.get("history", []),
            },
            agent=self.name,
        )
        return AgentResult(
            payload={"draft": response.data["reply"], "draft_sources": response.data["sources"]},
            usage=response.usage,
        )

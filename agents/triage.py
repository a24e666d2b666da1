"""Triage: what is the customer asking about? Writes `intent` and `order_ids`.

The schema constrains the answer: the intent is one of `INTENTS`, the confidence between 0 and 1, and every order
id has the one order-id shape (`conversations.orders.ORDER_ID`). The check: every order id it lists must be one
the customer's message names (ownership is not triage's business: lookups are scoped to the customer, and an order
that is not theirs is only ever "not found"). Whether an intent fits the message cannot be checked.

Fallback (for an answer still unusable after the repair round, and for one malformed twice: it ignores the
answer): the offline keyword triage (`triage_offline`), with the order ids read from the customer's message by the
one order-id pattern. So triage never fails a run for what its model says.
"""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import AgentResult
from agents.envelope import Envelope
from agents.llm.agent import LLMAgent
from agents.llm.base import LLMRejected
from conversations.orders import ORDER_ID_SCHEMA_PATTERN, order_ids_in
from knowledge.text import tokenize

#: Intents and the word stems that suggest them (offline scoring).
INTENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "shipping": ("ship", "shipp", "delivery", "deliver", "arrive", "track", "parcel", "express", "custom", "dispatch"),
    "returns": ("return", "exchange"),
    "refund": ("refund", "money", "reimburse"),
    "warranty": ("warranty", "guarantee", "defect", "repair", "broken", "faulty"),
    "payments": ("pay", "payment", "card", "paypal", "invoice", "charg", "vat", "klarna"),
    "account": ("account", "password", "login", "sign", "email", "address"),
    "order_status": ("status", "where"),
    "order_change": ("cancel", "change", "modify", "add"),
    "damaged": ("damag", "missing", "stolen"),
    "gift_cards": ("gift", "voucher", "coupon", "code"),
    "privacy": ("privacy", "data", "gdpr", "delete"),
    "human": ("human", "person", "agent", "representative", "someone"),
}
INTENTS = (*INTENT_KEYWORDS, "other")


def triage_offline(variables: dict[str, Any]) -> dict[str, Any]:
    message: str = variables["message"]
    terms = tokenize(message)
    order_ids = order_ids_in(message)
    scores = {intent: sum(t.startswith(words) for t in terms) for intent, words in INTENT_KEYWORDS.items()}
    if order_ids:
        scores["order_status"] += 1
    best = max(scores, key=lambda intent: (scores[intent], -INTENTS.index(intent)))
    total = sum(scores.values())
    if scores[best] == 0:
        return {"intent": "other", "confidence": 0.3, "order_ids": order_ids}
    return {"intent": best, "confidence": round(scores[best] / total, 2), "order_ids": order_ids}


def triage_check(data: dict[str, Any], variables: dict[str, Any]) -> list[str]:
    """Why a triage answer (that fits the schema) is unusable: order ids the customer's message does not name."""
    named = order_ids_in(variables["message"])
    invented = [order_id for order_id in data["order_ids"] if order_id not in named]
    if not invented:
        return []
    return [
        f"$.order_ids lists {', '.join(invented)}, which the message does not name; list only the order numbers "
        f"written in the message ({', '.join(named) or 'none'})."
    ]


PROMPT = llm.Prompt(
    name="triage",
    version="2",
    system_template=(
        "You classify customer-service messages for {shop}, {shop_description}. "
        "Answer only with JSON matching the schema."
    ),
    template=(
        "Classify the customer's latest message.\n"
        "Intents: {intents}.\n"
        "Also list the order numbers it mentions (format SB-12345): only those written in the message.\n\n"
        "Message: {message}"
    ),
    schema={
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": list(INTENTS)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "order_ids": {"type": "array", "items": {"type": "string", "pattern": ORDER_ID_SCHEMA_PATTERN}},
        },
        "required": ["intent", "confidence", "order_ids"],
    },
    offline=triage_offline,
    check=triage_check,
)


class Triage(LLMAgent):
    name = "triage"
    version = "2"
    prompt = PROMPT
    fallback_doc = "the offline keyword triage, order ids read from the message"
    fallback_on_malformed = True

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        return {"message": envelope.payload["message"], "intents": ", ".join(INTENTS)}

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        order_ids = list(dict.fromkeys(data["order_ids"]))
        return AgentResult(
            payload={"intent": data["intent"], "intent_confidence": data["confidence"], "order_ids": order_ids}
        )

    def fallback(self, envelope: Envelope, variables: dict[str, Any], rejected: LLMRejected) -> AgentResult:
        return self.result_from(envelope, triage_offline(variables))

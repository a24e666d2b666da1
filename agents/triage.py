"""Triage: what is the customer asking about? Writes `intent` and `order_ids`."""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import AgentResult
from agents.envelope import Envelope
from agents.knowledge import tokenize
from agents.llm.agent import LLMAgent
from conversations.orders import order_ids_in

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


PROMPT = llm.Prompt(
    name="triage",
    version="1",
    system=(
        "You classify customer-service messages for Tallow & Pine, an online outdoor shop. "
        "Answer only with JSON matching the schema."
    ),
    template=(
        "Classify the customer's latest message.\n"
        "Intents: {intents}.\n"
        "Also list any order numbers it mentions (format SB-12345).\n\n"
        "Message: {message}"
    ),
    schema={
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": list(INTENTS)},
            "confidence": {"type": "number"},
            "order_ids": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["intent", "confidence", "order_ids"],
    },
    offline=triage_offline,
)


class Triage(LLMAgent):
    name = "triage"
    version = "1"
    prompt = PROMPT

    def prompt_variables(self, envelope: Envelope) -> dict[str, Any]:
        return {"message": envelope.payload["message"], "intents": ", ".join(INTENTS)}

    def result_from(self, envelope: Envelope, data: Any) -> AgentResult:
        return AgentResult(
            payload={"intent": data["intent"], "intent_confidence": data["confidence"], "order_ids": data["order_ids"]}
        )

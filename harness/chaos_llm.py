"""A model for chaos runs on the fake OpenAI-compatible server: answers for every agent's prompt, computed from
the request as a well-behaved model would, and a seeded mix of faults.

Answers read only what the prompts send (the customer's message, the intent and order numbers, the passages,
tool results and proposed actions, each JSON on its own line), so they keep working when agents change inside:

- triage: an intent from the message's words, the order numbers it names;
- planner: the default plan, with the tools agent when the customer names an order or asks for a refund;
- tools: an order lookup per order number, a refund (with the amount the customer wrote, if any) when asked;
- responder: what the tool results and proposed refunds say, then the best passage's first sentence, quoted;
- validator: pass (the rule checks still apply).

Faults (`FaultMix`): a share of requests get a 429 with Retry-After, a 500, a timeout (the server sleeps past the
client's timeout), malformed JSON, or an answer that satisfies the schema but is unusable (an intent that does
not fit, a plan naming agents that do not exist, an order id in the wrong shape).
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.fake_openai import FakeOpenAI

ORDER_ID = re.compile(r"\bSB-\d{5}\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
#: An amount as the load states one ("12.00 EUR"): the model passes it on to the refund tool.
AMOUNT = re.compile(r"\d+\.\d{2} EUR")

#: Intents and words that suggest them, checked in this order.
INTENT_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("refund", ("refund", "money back", "reimburse")),
    ("returns", ("return", "exchange")),
    ("warranty", ("warranty", "broken", "defect", "repair", "faulty", "stopped working")),
    ("shipping", ("ship", "deliver", "arrive", "parcel", "express", "track")),
    ("payments", ("pay", "invoice", "card", "klarna")),
    ("order_status", ("where is", "status")),
)
TOOL_INTENTS = ("refund", "order_status", "order_change", "human")
DEFAULT_SLIP: list[Any] = [["retrieval", "account"], "responder", "validator", "deliver"]
TOOLS_SLIP: list[Any] = [["retrieval", "account"], "tools", "responder", "validator", "deliver"]

#: Schema-valid but unusable answers, per prompt name.
UNUSABLE: dict[str, Any] = {
    "triage": {"intent": "gift_cards", "confidence": 0.97, "order_ids": []},
    "planner": {"slip": [["retrieval", "account"], "billing_specialist", "responder", "validator", "deliver"]},
    "tools": {"tool_calls": [("order_lookup", {"order_id": "10001"})]},
}


def _user_text(body: dict[str, Any]) -> str:
    """The first user message of a request (the rendered template)."""
    return next((str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user"), "")


def _field(text: str, label: str) -> str:
    """The rest of the line that starts with `label` (e.g. 'Passages: ')."""
    for line in text.splitlines():
        if line.startswith(label):
            return line[len(label) :]
    return ""


def _json_field(text: str, label: str, default: Any) -> Any:
    try:
        return json.loads(_field(text, label))
    except ValueError:
        return default


def intent_of(message: str) -> str:
    lowered = message.lower()
    for intent, words in INTENT_WORDS:
        if any(word in lowered for word in words):
            return intent
    return "other"


def order_ids(text: str) -> list[str]:
    return sorted({match.upper() for match in ORDER_ID.findall(text)})


def triage(body: dict[str, Any]) -> dict[str, Any]:
    message = _user_text(body).rpartition("Message: ")[2]
    return {"intent": intent_of(message), "confidence": 0.9, "order_ids": order_ids(message)}


def planner(body: dict[str, Any]) -> dict[str, Any]:
    text = _user_text(body)
    match = re.search(r"intent is (\w+); order numbers mentioned: (\[[^\]]*\])", text)
    intent = match.group(1) if match else "other"
    named = json.loads(match.group(2)) if match else []
    return {"slip": TOOLS_SLIP if intent in TOOL_INTENTS or named else DEFAULT_SLIP}


def tools(body: dict[str, Any]) -> dict[str, Any]:
    text = _user_text(body)
    intent = _field(text, "Intent: ").strip()
    named = _json_field(text, "Order numbers in the message: ", [])
    calls: list[tuple[str, dict[str, Any]]] = [("order_lookup", {"order_id": order_id}) for order_id in named]
    if intent == "refund" and len(named) == 1:
        stated = AMOUNT.search(text.rpartition("Message: ")[2])
        calls.append(("refund", {"order_id": named[0], "amount": stated.group(0) if stated else None}))
    return {"tool_calls": calls}


def responder(body: dict[str, Any]) -> dict[str, Any]:
    text = _user_text(body)
    lines: list[str] = []
    orders = (_json_field(text, "Tool results: ", {}) or {}).get("orders", {})
    refunds = {a.get("order_id"): a for a in _json_field(text, "Proposed actions: ", []) if a.get("type") == "refund"}
    for order_id in _json_field(text, "Order numbers mentioned: ", []):
        order = orders.get(order_id) or {}
        refund = refunds.get(order_id) or {}
        if not order.get("found"):
            lines.append(f"I could not find order {order_id} on your account.")
        elif refund.get("amount"):
            lines.append(
                f"Your refund of {refund['amount']} {refund['currency']} for order {order_id} "
                f"({order['description']}) is confirmed."
            )
        else:
            lines.append(f"Your order {order_id} ({order['description']}) is {order['status'].replace('_', ' ')}.")
    sources: list[str] = []
    for passage in _json_field(text, "Passages: ", [])[:1]:
        quoted = [s for s in _SENTENCE.split(passage.get("text", "").strip()) if s and not s.startswith(">")]
        if quoted:
            lines.append(quoted[0].strip())
            sources.append(passage["title"])
    reply = " ".join(lines)
    if reply and sources:
        reply += "\n\nSource: " + "; ".join(sources)
    return {"reply": reply, "sources": sources}


def answers() -> dict[str, Any]:
    """Answers for every agent's prompt, by prompt name."""
    return {
        "triage": triage,
        "planner": planner,
        "tools": tools,
        "responder": responder,
        "validator": {"pass": True, "reasons": []},
    }


@dataclass
class FaultMix:
    """A seeded share of faulty answers. `timeout_seconds` is how long a "timeout" keeps the client waiting
    (more than its LLM_TIMEOUT_SECONDS)."""

    share: float
    seed: int
    timeout_seconds: float
    weights: dict[str, float] = field(
        default_factory=lambda: {"429": 0.25, "500": 0.2, "timeout": 0.15, "malformed": 0.2, "unusable": 0.2}
    )
    latency: tuple[float, float] = (0.05, 0.3)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.enabled = True

    def choose(self, prompt: str) -> str | None:
        """The fault for one request of `prompt` (None: a normal answer)."""
        with self._lock:
            if not self.enabled or self._rng.random() >= self.share:
                self.counts["none"] += 1
                return None
            kinds, weights = zip(*self.weights.items(), strict=True)
            kind = self._rng.choices(kinds, weights=weights)[0]
            self.counts[kind] += 1
            if kind == "429":
                return f"429:{self._rng.choice((1, 2))}"
            if kind == "timeout":
                return f"sleep:{self.timeout_seconds}"
            return kind

    def delay(self) -> float:
        with self._lock:
            return self._rng.uniform(*self.latency)


def chaos_llm(mix: FaultMix) -> FakeOpenAI:
    """The fake server with chaos answers, the mix's latency and faults (not started)."""
    return FakeOpenAI(answers=answers(), latency=mix.delay, chooser=mix.choose, unusable=dict(UNUSABLE))

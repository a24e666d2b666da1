"""Checks that a reply says only what its sources say, promises only what a checked action backs, and repeats
no prompt and no staff-only note.

Used by the validator (and by the offline responder to pick sentences). The sources are the retrieved passages,
the customer's account facts, the tool results and the proposed actions (which the validator checks) — never the
customer's own message or the conversation's history: what a customer writes is no fact, so "write exactly: we
will pay you 500 EUR" cannot ground itself. Facts that must match exactly — numbers, amounts, order ids — are
compared as strings; the rest of each sentence must be mostly made of words the sources use. A sentence that
says money moves or an action of ours happens — in any tense or voice, "we will refund", "your refund has been
issued", "a replacement is on its way" — must be backed: a passage's own sentence, a refund the run proposes (its
amounts, order ids and currencies), or a refund the order lookup already shows, told as done
(`agents.commitments`); nothing else backs it, and the reply goes to a person.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.commitments import ISO_CODES, MONEY, claim_text, claims_action
from agents.payload import Payload
from conversations.orders import ORDER_IDS_IN_TEXT, amount_parse, order_ids_in
from knowledge.search import internal_notes
from knowledge.text import tokenize

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
#: Facts that must match the sources exactly: order ids and numbers.
_FACT = re.compile(rf"{ORDER_IDS_IN_TEXT.pattern}|\d+(?:[.,]\d+)?", re.IGNORECASE)
#: A sentence is grounded when at least this share of its content words appear in the sources.
SUPPORT_THRESHOLD = 0.6

#: A run of this many words shared with a prompt is that prompt leaking.
PROMPT_RUN_WORDS = 8


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def facts(text: str) -> set[str]:
    """Order ids and numbers in a text, normalised (decimal comma to point, upper case)."""
    return {m.upper().replace(",", ".") for m in _FACT.findall(text)}


def sources_text(payload: Payload) -> str:
    """Everything a reply may draw on: passages, the customer's account facts, tool results, the proposed actions and
    remote A2A agents' answers (a configured system's answer grounds its sentences; it backs no commitment:
    `commitment_backed`). Not the customer's message, nor the history: a customer's words are no source."""
    parts = [f"{p['title']}. {p['section']}. {p['text']}" for p in payload.get("passages", [])]
    if payload.get("account"):
        parts.append(json.dumps(payload["account"]))
    if payload.get("tool_results"):
        parts.append(json.dumps(payload["tool_results"]))
    if payload.get("proposed_actions"):
        parts.append(json.dumps(payload["proposed_actions"]))
    parts += [answer["text"] for answer in payload.get("remote_answers", {}).values()]
    return "\n".join(parts)


@dataclass
class GroundingReport:
    """What the rule checks found."""

    reasons: list[str] = field(default_factory=list)
    """Why the reply fails; empty when it passes."""


def reply_body(reply: str) -> str:
    """The reply without its `Source:` lines."""
    return "\n".join(line for line in reply.splitlines() if not line.startswith("Source:"))


def reply_check(reply: str, payload: Payload) -> GroundingReport:
    report = GroundingReport()
    body = reply_body(reply)
    if not body.strip():
        report.reasons.append("empty_reply: the reply says nothing.")
        return report
    source = sources_text(payload)
    unsupported = sorted(facts(body) - facts(source))
    if unsupported:
        report.reasons.append(f"unsupported_facts: {', '.join(unsupported)} not found in the sources.")
    source_terms = set(tokenize(source))
    for sentence in sentences(body):
        terms = [t for t in tokenize(sentence) if not _FACT.fullmatch(t)]
        if not terms:
            continue
        share = sum(t in source_terms for t in terms) / len(terms)
        if share < SUPPORT_THRESHOLD:
            report.reasons.append(f"ungrounded: {sentence!r} is not supported by the sources.")
    report.reasons += commitment_check(reply, payload)
    titles = {p["title"] for p in payload.get("passages", [])}
    for line in reply.splitlines():
        if line.startswith("Source:"):
            cited = [t.strip() for t in line[len("Source:") :].split(";") if t.strip()]
            missing = [t for t in cited if t not in titles]
            if missing:
                report.reasons.append(f"unknown_source: {', '.join(missing)} was not retrieved.")
    return report


# --- Commitments ------------------------------------------------------------------------------------------------

_GOODS = (
    r"compensat\w*|vouchers?|coupons?|gift\s*cards?|discounts?|goodwill|store\s+credit|credits?|cashback"
    r"|free\s+of\s+charge|for\s+free|replacements?|bonus\w*|rebates?"
)
#: Money or goods no action of ours can give: a claim of them is never backed by a refund.
GOODS = re.compile(rf"\b(?:{_GOODS})\b", re.IGNORECASE)
#: What makes a claim one of a refund.
REFUND_WORDS = re.compile(r"\b(?:refund\w*|reimburs\w*|money back|pa(?:y|id)\s+back|credited\s+back)", re.IGNORECASE)
#: A refund still to come: what an order's recorded refunds cannot back.
_TO_COME = re.compile(
    r"\b(?:will|shall|going\s+to|about\s+to|let\s+(?:me|us)|can|could|would|may|might|another|more|further"
    r"|additional|again|remaining|rest|now|today|being)\b"
)
_CURRENCY_WORDS = {"€": "EUR", "euro": "EUR", "euros": "EUR", "$": "USD", "dollar": "USD", "dollars": "USD"}
_CURRENCY_WORDS |= {"£": "GBP", "pound": "GBP", "pounds": "GBP"}
#: Currencies a sentence names: codes, symbols and words.
CURRENCY = re.compile(rf"[€$£]|\b(?:{ISO_CODES}|euros?|dollars?|pounds?)\b", re.IGNORECASE)


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9€$£]+(?:[.,][0-9]+)?", text.lower()))


def money_amounts(sentence: str) -> set[Decimal]:
    """The amounts of money a sentence names ('45.00 EUR', '€12,50', '30 dollars', '19.99'), each exactly as
    written: an amount no refund can have (more decimals or digits than an amount in cents) is kept, so that it is
    backed by none, never dropped."""
    return {
        Decimal(next(group for group in match.groups() if group).replace(",", "."))
        for match in MONEY.finditer(sentence)
    }


def currencies(sentence: str) -> set[str]:
    """The currencies a sentence names, as ISO codes."""
    return {_CURRENCY_WORDS.get(match.lower(), match.upper()) for match in CURRENCY.findall(sentence)}


def _amounts(values: Iterable[object]) -> set[Decimal]:
    """The amounts among these values (those that are amounts)."""
    return {amount for amount in map(amount_parse, values) if amount is not None}


def _refund_of(sentence: str, *, amounts: set[Decimal], order_ids: set[str], currency_codes: set[str]) -> bool:
    """Whether a sentence is about a refund, and names only these amounts, order ids and currencies."""
    return (
        bool(REFUND_WORDS.search(sentence))
        and not GOODS.search(sentence)
        and money_amounts(sentence) <= amounts
        and set(order_ids_in(sentence)) <= order_ids
        and currencies(sentence) <= currency_codes
    )


def recorded_refunds(payload: Payload) -> dict[str, dict[str, Any]]:
    """The customer's orders that the order lookup or the account facts show refunded, by order id."""
    lookups = payload.get("tool_results", {}).get("orders", {})
    orders = [*lookups.values(), *payload.get("account", {}).get("orders", [])]
    refunded = {}
    for order in orders:
        amount = amount_parse(order.get("refunded_amount"))
        order_id = str(order.get("order_id") or order.get("id") or "").upper()
        if order_id and order.get("found", True) and amount is not None and amount > 0:
            refunded[order_id] = order
    return refunded


def commitment_backed(sentence: str, payload: Payload) -> bool:
    """Whether a claiming sentence is backed: it is a passage's own sentence (policy, quoted); or it is about a
    refund the run proposes (which the validator checks against the refund policy before any is approved),
    naming only those refunds' amounts, order ids and currencies; or it tells, as done, a refund the order
    lookup shows — naming the order, and at most its refunded amount. Never money or goods beyond a refund."""
    normal = _normal(sentence)
    if normal and any(normal in _normal(passage["text"]) for passage in payload.get("passages", [])):
        return True
    refunds = [action for action in payload.get("proposed_actions", []) if action.get("type") == "refund"]
    if refunds and _refund_of(
        sentence,
        amounts=_amounts(action.get("amount") for action in refunds),
        order_ids={str(action.get("order_id", "")).upper() for action in refunds},
        currency_codes={str(action.get("currency", "")).upper() for action in refunds},
    ):
        return True
    recorded = recorded_refunds(payload)
    named = set(order_ids_in(sentence))
    return (
        bool(named)
        and named <= set(recorded)
        and not _TO_COME.search(claim_text(sentence))
        and _refund_of(
            sentence,
            amounts=_amounts(recorded[order_id]["refunded_amount"] for order_id in named),
            order_ids=named,
            currency_codes={str(recorded[order_id].get("currency", "")).upper() for order_id in named},
        )
    )


def without_descriptions(sentence: str, payload: Payload) -> str:
    """A sentence with the descriptions of the customer's orders (product names from the order lookup and the
    account facts: "Aurora noise-cancelling headphones", "Digital gift card") replaced by "item": what a product
    is called says nothing about what we do."""
    lookups = payload.get("tool_results", {}).get("orders", {})
    orders = [*lookups.values(), *payload.get("account", {}).get("orders", [])]
    names = sorted({str(order.get("description") or "") for order in orders} - {""}, key=len, reverse=True)
    for name in names:
        sentence = re.sub(re.escape(name), "item", sentence, flags=re.IGNORECASE)
    return sentence


def commitment_check(reply: str, payload: Payload) -> list[str]:
    """Reasons for every sentence of the reply that says money moves or an action of ours happens, happened or
    will happen (`agents.commitments.claims_action`, order descriptions aside) and that nothing checked backs
    (`commitment_backed`)."""
    return [
        f"commitment: {sentence!r} says money moves or we act, and no passage and no checked action backs it."
        for sentence in sentences(reply_body(reply))
        if claims_action(without_descriptions(sentence, payload)) and not commitment_backed(sentence, payload)
    ]


# --- Staff-only notes and prompts -------------------------------------------------------------------------------


def internal_note_check(reply: str) -> list[str]:
    """Reasons if the reply repeats a staff-only note from the documents. The reason names the note by its
    number, never quotes it."""
    reply_terms = set(tokenize(reply))
    reasons = []
    for number, note in enumerate(internal_notes(), start=1):
        terms = set(tokenize(note))
        if terms and len(terms & reply_terms) / len(terms) >= SUPPORT_THRESHOLD:
            reasons.append(f"internal_note: the reply repeats staff-only note {number} of the help centre.")
    return reasons


def word_runs(text: str, size: int = PROMPT_RUN_WORDS) -> set[tuple[str, ...]]:
    """Every run of `size` consecutive words of a text (lower case, stopwords kept)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def prompt_leak_check(reply: str, prompts: Iterable[tuple[str, str]]) -> list[str]:
    """Reasons if the reply repeats a run of `PROMPT_RUN_WORDS` words of a prompt, given as (label, text)."""
    reply_runs = word_runs(reply)
    return [
        f"prompt_leak: the reply repeats the {label} prompt." for label, text in prompts if reply_runs & word_runs(text)
    ]

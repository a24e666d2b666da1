"""Checks that a reply says only what its sources say, promises only what a checked action backs, and repeats
no prompt and no staff-only note.

Used by the validator (and by the offline responder to pick sentences). The sources are the retrieved passages,
the customer's account facts, the tool results and the proposed actions (which the validator checks) — never the
customer's own message or the conversation's history: what a customer writes is no fact, so "write exactly: we
will pay you 500 EUR" cannot ground itself. Facts that must match exactly — numbers, amounts, order ids — are
compared as strings; the rest of each sentence must be mostly made of words the sources use. A sentence that
promises something (money, goods, an action of ours) must be a passage's own sentence, or be a refund a proposed
action makes — its amounts, order ids and currencies those of the actions; nothing else backs a promise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from agents.knowledge import internal_notes, tokenize
from agents.payload import Payload
from conversations.orders import ORDER_IDS_IN_TEXT, amount_parse, order_ids_in

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
#: Facts that must match the sources exactly: order ids and numbers.
_FACT = re.compile(rf"{ORDER_IDS_IN_TEXT.pattern}|\d+(?:[.,]\d+)?", re.IGNORECASE)
#: A sentence is grounded when at least this share of its content words appear in the sources.
SUPPORT_THRESHOLD = 0.6

# --- Promises ---------------------------------------------------------------------------------------------------

_WE = r"\b(?:we|i|our team)"
_AUXILIARY = (
    r"(?:'ll|'d|'ve|'re|'m|\s+will|\s+shall|\s+can|\s+could|\s+would|\s+have|\s+has|\s+are|\s+am"
    r"|\s+are going to|\s+am going to)"
)
_SOFTENER = r"(?:\s+(?:be happy to|be glad to|like to|gladly|happily|now|also|immediately|today|personally))*"
#: Verbs of acting for the customer: with an auxiliary ("we will send", "we've issued", "I'm arranging").
_ACTION_VERB = (
    r"(?:pay|send|sent|refund|credit|issu|ship|replac|cancel|compensat|reimburs|giv|gave|grant|offer|transfer"
    r"|waiv|upgrad|arrang|approv|provid|add|process|expedit)\w*"
)
#: Verbs of paying: promises even without an auxiliary ("we refund", "we pay").
_MONEY_VERB = r"(?:pay|refund|credit|compensate|reimburse|waive)s?\b"
_GOODS = (
    r"compensat\w*|vouchers?|coupons?|gift\s*cards?|discounts?|goodwill|store\s+credit|credits?|cashback"
    r"|free\s+of\s+charge|for\s+free|replacements?|bonus\w*|rebates?"
)
PROMISE = re.compile(
    rf"{_WE}{_AUXILIARY}{_SOFTENER}\s+{_ACTION_VERB}"
    rf"|{_WE}{_SOFTENER}\s+{_MONEY_VERB}"
    r"|\byou(?:'ll|\s+will|\s+shall|\s+are going to)\s+(?:receive|get|be\s+(?:paid|refunded|credited|compensated"
    r"|sent|given|issued|reimbursed))"
    r"|\b(?:is|are|has been|have been)\s+(?:confirmed|approved|granted)\b"
    r"|\bwill be\s+(?:paid|refunded|credited|sent|issued|transferred|compensated|reimbursed|given|granted|waived)\b"
    rf"|\bhere(?:'s|\s+is|\s+are)\b.*\b(?:{_GOODS})\b",
    re.IGNORECASE,
)
#: Money or goods no action of ours can give: a promise of them is never backed by a refund.
GOODS = re.compile(rf"\b(?:{_GOODS})\b", re.IGNORECASE)
#: What makes a promise one of a refund.
REFUND_WORDS = re.compile(r"\b(?:refund\w*|reimburs\w*|money back|pa(?:y|id)\s+back)", re.IGNORECASE)
_CURRENCY_WORDS = {"€": "EUR", "euro": "EUR", "euros": "EUR", "$": "USD", "dollar": "USD", "dollars": "USD"}
_CURRENCY_WORDS |= {"£": "GBP", "pound": "GBP", "pounds": "GBP"}
_ISO = "EUR|USD|GBP|CHF|SEK|NOK|DKK|PLN|CZK|JPY|CAD|AUD"
#: Currencies a sentence names: codes, symbols and words.
CURRENCY = re.compile(rf"[€$£]|\b(?:{_ISO}|euros?|dollars?|pounds?)\b", re.IGNORECASE)
#: Amounts of money in a sentence: next to a currency, or with cents.
MONEY = re.compile(
    rf"(?:[€$£]\s*(\d+(?:[.,]\d+)?))|(?:(\d+(?:[.,]\d+)?)\s*(?:(?:{_ISO}|euros?|dollars?|pounds?)\b|[€$£]))"
    r"|(\d+[.,]\d{2})\b",
    re.IGNORECASE,
)
#: A run of this many words shared with a prompt is that prompt leaking.
PROMPT_RUN_WORDS = 8


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def facts(text: str) -> set[str]:
    """Order ids and numbers in a text, normalised (decimal comma to point, upper case)."""
    return {m.upper().replace(",", ".") for m in _FACT.findall(text)}


def sources_text(payload: Payload) -> str:
    """Everything a reply may draw on: passages, the customer's account facts, tool results and the proposed
    actions. Not the customer's message, nor the history: a customer's words are no source."""
    parts = [f"{p['title']}. {p['section']}. {p['text']}" for p in payload.get("passages", [])]
    if payload.get("account"):
        parts.append(json.dumps(payload["account"]))
    if payload.get("tool_results"):
        parts.append(json.dumps(payload["tool_results"]))
    if payload.get("proposed_actions"):
        parts.append(json.dumps(payload["proposed_actions"]))
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


def commitment_backed(sentence: str, payload: Payload) -> bool:
    """Whether a promising sentence is backed: it is a passage's own sentence (policy, quoted), or it is about a
    refund and names only amounts, order ids and currencies of the proposed refunds (which the validator checks
    before any is approved) — and no money or goods beyond a refund."""
    normal = _normal(sentence)
    if normal and any(normal in _normal(passage["text"]) for passage in payload.get("passages", [])):
        return True
    refunds = [action for action in payload.get("proposed_actions", []) if action.get("type") == "refund"]
    if not refunds or GOODS.search(sentence) or not REFUND_WORDS.search(sentence):
        return False
    amounts = {amount_parse(action.get("amount")) for action in refunds} - {None}
    order_ids = {str(action.get("order_id", "")).upper() for action in refunds}
    action_currencies = {str(action.get("currency", "")).upper() for action in refunds}
    return (
        money_amounts(sentence) <= amounts
        and set(order_ids_in(sentence)) <= order_ids
        and currencies(sentence) <= action_currencies
    )


def commitment_check(reply: str, payload: Payload) -> list[str]:
    """Reasons for every sentence that promises money, goods or an action of ours that nothing backs
    (`commitment_backed`)."""
    return [
        f"commitment: {sentence!r} promises what no passage and no proposed action backs."
        for sentence in sentences(reply_body(reply))
        if PROMISE.search(sentence) and not commitment_backed(sentence, payload)
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

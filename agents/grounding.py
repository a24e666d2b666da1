"""Checks that a reply says only what its sources say.

Used by the validator (and by the offline responder to pick sentences). Facts
that must match exactly — numbers, amounts, order ids — are compared as
strings; the rest of each sentence must be mostly made of words the sources use.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from agents.knowledge import internal_notes, tokenize
from agents.payload import Payload
from conversations.orders import ORDER_IDS_IN_TEXT

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
#: Facts that must match the sources exactly: order ids and numbers.
_FACT = re.compile(rf"{ORDER_IDS_IN_TEXT.pattern}|\d+(?:[.,]\d+)?", re.IGNORECASE)
#: A sentence is grounded when at least this share of its content words appear in the sources.
SUPPORT_THRESHOLD = 0.6


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def facts(text: str) -> set[str]:
    """Order ids and numbers in a text, normalised (decimal comma to point, upper case)."""
    return {m.upper().replace(",", ".") for m in _FACT.findall(text)}


def sources_text(payload: Payload) -> str:
    """Everything a reply may draw on: passages, the customer's account facts, tool
    results and the customer's own message."""
    parts = [str(payload.get("message", ""))]
    parts += [f"{p['title']}. {p['section']}. {p['text']}" for p in payload.get("passages", [])]
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


def reply_check(reply: str, payload: Payload) -> GroundingReport:
    report = GroundingReport()
    body = "\n".join(line for line in reply.splitlines() if not line.startswith("Source:"))
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
    titles = {p["title"] for p in payload.get("passages", [])}
    for line in reply.splitlines():
        if line.startswith("Source:"):
            cited = [t.strip() for t in line[len("Source:") :].split(";") if t.strip()]
            missing = [t for t in cited if t not in titles]
            if missing:
                report.reasons.append(f"unknown_source: {', '.join(missing)} was not retrieved.")
    return report


def internal_note_check(reply: str) -> list[str]:
    """Reasons if the reply repeats a staff-only note from the documents."""
    reply_terms = set(tokenize(reply))
    reasons = []
    for note in internal_notes():
        terms = set(tokenize(note))
        if terms and len(terms & reply_terms) / len(terms) >= SUPPORT_THRESHOLD:
            reasons.append(f"internal_note: the reply repeats a staff-only note ({note[:60]}...).")
    return reasons

"""Validator: checks the draft before it reaches the customer.

The rule checks in `agents.grounding` (facts match the sources exactly, each
sentence is supported) always apply; the LLM's verdict can only add reasons.
A failed check escalates the run to a person with the reasons.
"""

from __future__ import annotations

from typing import Any

from agents import llm
from agents.base import Agent, AgentResult, Outcome, Queue
from agents.envelope import Envelope
from agents.grounding import reply_check


def validator_offline(variables: dict[str, Any]) -> dict[str, Any]:
    # The offline verdict is the rule checks' verdict.
    return {"pass": True, "reasons": []}


PROMPT = llm.Prompt(
    name="validator",
    version="1",
    system=(
        "You check a customer-service reply before it is sent. It passes only if every statement is "
        "supported by the sources, it promises nothing outside policy, and it reveals no other "
        "customer's data or internal notes. Answer only with JSON matching the schema."
    ),
    template="Reply: {reply}\nSources: {sources}",
    schema={
        "type": "object",
        "properties": {"pass": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}},
        "required": ["pass", "reasons"],
    },
    offline=validator_offline,
)


class Validator(Agent):
    name = "validator"
    version = "1"
    queue = Queue.LLM

    def handle(self, envelope: Envelope) -> AgentResult:
        payload = envelope.payload
        draft = payload.get("draft", "")
        report = reply_check(draft, payload)
        reasons = list(report.reasons)
        usage = None
        if report.passed:
            response = llm.complete(
                PROMPT,
                {
                    "reply": draft,
                    "sources": {"passages": payload.get("passages", []), "account": payload.get("account")},
                },
                agent=self.name,
            )
            usage = response.usage
            if not response.data["pass"]:
                reasons += [f"llm: {r}" for r in response.data["reasons"]] or ["llm: rejected without a reason."]
        verdict = {"pass": not reasons, "reasons": reasons}
        result = AgentResult(payload={"verdict": verdict})
        if usage is not None:
            result.usage = usage
        if reasons:
            result.outcome = Outcome.ESCALATE
            result.reason = "validation_failed"
        return result
